//! What this run believes about each pod, and how every answer changes it.
//!
//! One [`PodState`] per pod, changed only by [`PodState::next`], a pure function fed by
//! every answer the pod gives: the connection probe and every CheckPaused (reconnects
//! included), each Pause outcome, each Unpause outcome. The rollback rule reads nothing
//! else:
//!
//! - an observed "unpaused" means nobody holds the pod;
//! - "paused" observed while no Pause of this run may be pending means someone else holds
//!   it, and a rollback leaves it as found;
//! - a Pause of this run that was written and has no answer saying what it did (a
//!   time-out, a broken connection, a dropped future) may be this run's, now or later: a
//!   server may keep running the handler after the client gave up, so the gate can close
//!   after this run's Unpause. Such a pod is *in doubt*; a rollback unpauses it and
//!   watches it for a while before it counts as confirmed.
//!
//! What the state cannot know is what happens between an answer and the next request: a
//! pod paused by someone else in that gap is taken for this run's by a Pause that
//! follows. `Fleet::pause` narrows the gap by deciding from an answer at most
//! [`FRESH_FOR`](crate::fleet::FRESH_FOR) old, and the rollback's watch narrows the other
//! one (a Pause of this run landing after its Unpause).

use std::fmt;

use crate::contract::reason;
use crate::error::{CallError, CallErrorKind};

/// What a pod answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Pause or Unpause succeeded.
    Done,
    /// CheckPaused's answer (also the connection probe's).
    Paused(bool),
}

/// Why a rollback left a pod paused on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kept {
    /// The pod already reported paused before this run paused it: that pause is
    /// someone else's, and ending it is not this run's business.
    PausedBefore,
    /// The pod answered `TIMED_OUT_STILL_PAUSED`: the server keeps the gate closed for
    /// an earlier pause.
    EarlierPause,
    /// The pod answered `ABORTED` with `PAUSE_IN_PROGRESS`: another pause holds its gate.
    PauseInProgress,
    /// The pod reported paused again after this run's Unpause took effect: someone else
    /// paused it since.
    PausedSince,
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kept::PausedBefore => "already paused before this run",
            Kept::EarlierPause => "the server keeps an earlier pause",
            Kept::PauseInProgress => "another pause is in progress",
            Kept::PausedSince => "paused by someone else after this run unpaused it",
        })
    }
}

/// Who holds a pod's gate, as far as this run knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// The pod has not answered yet.
    Unknown,
    /// Last seen open.
    Nobody,
    /// Paused by someone else.
    Others(Kept),
    /// Paused by this run: its Pause was answered OK, or it took the pod over.
    Us,
    /// This run's Unpause was answered OK: not proof that the gate is open (a Pause may
    /// still land), so it waits for a CheckPaused.
    Released,
}

/// What this run believes about one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PodState {
    pub(crate) holder: Holder,
    /// A Pause of this run was written and no answer said what it did: it may have closed
    /// the gate, or may close it later.
    pub(crate) in_doubt: bool,
}

/// One thing a pod answered, or one thing this run did to it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<'a> {
    /// The pod answered CheckPaused: the connection probe, a check, a reconnect's probe.
    Observed(bool),
    /// A Pause of this run ended. `written`: whether the request may have left;
    /// `outcome`: its answer, `None` when the call was abandoned (a dropped future, a
    /// panic); `take_over`: whether someone else's pause counts as this run's.
    Paused {
        written: bool,
        outcome: Option<&'a Result<Reply, CallError>>,
        take_over: bool,
    },
    /// An Unpause of this run ended.
    Unpaused(&'a Result<Reply, CallError>),
    /// The rollback watched a pod in doubt long enough after it was seen open: a Pause
    /// of this run is no longer expected to land.
    Settled,
}

/// What a Pause's answer says it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// The request never reached the handler.
    Nothing,
    /// The gate is closed by this Pause (OK).
    Closed,
    /// The server reopened the gate, or an Unpause did meanwhile (`TIMED_OUT`,
    /// `GATE_OPEN`).
    Reopened,
    /// An earlier pause keeps the gate closed (`TIMED_OUT_STILL_PAUSED`).
    EarlierPause,
    /// Another pause is in progress and holds the gate (`PAUSE_IN_PROGRESS`).
    InProgress,
    /// Unknown: the Pause may have closed the gate, now or later.
    Unknown,
}

fn effect(outcome: Option<&Result<Reply, CallError>>) -> Effect {
    let error = match outcome {
        None => return Effect::Unknown,
        Some(Ok(_)) => return Effect::Closed,
        Some(Err(error)) => error,
    };
    if error.is_unprocessed() {
        return Effect::Nothing;
    }
    if let CallErrorKind::Status(status) = error.kind() {
        match status.reason() {
            Some(reason::TIMED_OUT_STILL_PAUSED) => return Effect::EarlierPause,
            Some(reason::PAUSE_IN_PROGRESS) => return Effect::InProgress,
            Some(reason::TIMED_OUT | reason::GATE_OPEN) => return Effect::Reopened,
            _ => {}
        }
    }
    // Any other failure: ScalarDB reopens the gate on a drain that failed without
    // saying so, a proxy's error says nothing; the gate may be closed.
    Effect::Unknown
}

impl PodState {
    /// Before the pod's first answer.
    pub(crate) const NEW: Self = Self {
        holder: Holder::Unknown,
        in_doubt: false,
    };

    /// The state after `event`.
    pub(crate) fn next(self, event: Event<'_>) -> Self {
        let Self { holder, in_doubt } = self;
        let holder = match event {
            Event::Observed(false) => Holder::Nobody,
            Event::Observed(true) => match holder {
                // The gate may be closed by this run's Pause.
                _ if in_doubt => Holder::Us,
                Holder::Us | Holder::Others(_) => holder,
                Holder::Released => Holder::Others(Kept::PausedSince),
                Holder::Unknown | Holder::Nobody => Holder::Others(Kept::PausedBefore),
            },
            Event::Paused { written: false, .. } => holder,
            Event::Paused {
                outcome, take_over, ..
            } => {
                // A Pause sent to a pod someone else holds changes nothing of this run's
                // (`Fleet::pause` sends none unless taking over).
                if matches!(holder, Holder::Others(_)) && !take_over {
                    return self;
                }
                let ours_before = holder == Holder::Us || in_doubt;
                return match effect(outcome) {
                    Effect::Nothing => self,
                    // Any earlier Pause of this run is moot: the gate is this run's.
                    Effect::Closed => Self {
                        holder: Holder::Us,
                        in_doubt: false,
                    },
                    Effect::Reopened => Self {
                        holder: Holder::Nobody,
                        in_doubt,
                    },
                    // The earlier pause, or the one in progress, may be this run's own.
                    Effect::EarlierPause | Effect::InProgress if ours_before => Self {
                        holder: Holder::Us,
                        in_doubt,
                    },
                    Effect::EarlierPause => Self {
                        holder: Holder::Others(Kept::EarlierPause),
                        in_doubt,
                    },
                    Effect::InProgress => Self {
                        holder: Holder::Others(Kept::PauseInProgress),
                        in_doubt,
                    },
                    // Whatever the pod said before, this run may hold it now.
                    Effect::Unknown => Self {
                        holder: Holder::Us,
                        in_doubt: true,
                    },
                };
            }
            Event::Unpaused(Ok(_)) => Holder::Released,
            // Failed: it may or may not have opened the gate; the next check tells.
            Event::Unpaused(Err(_)) => holder,
            Event::Settled => {
                return Self {
                    holder,
                    in_doubt: false,
                };
            }
        };
        Self { holder, in_doubt }
    }

    /// Whether this run may hold the pod paused: what a rollback unpauses.
    pub(crate) fn may_hold(self) -> bool {
        self.holder == Holder::Us || self.in_doubt
    }

    /// Why the pod is left paused on purpose, when someone else holds it.
    pub(crate) fn kept(self) -> Option<Kept> {
        match self.holder {
            Holder::Others(why) if !self.in_doubt => Some(why),
            _ => None,
        }
    }

    /// Whether the pod was last seen open and nothing of this run's may close it.
    #[cfg(test)]
    pub(crate) fn is_settled_open(self) -> bool {
        self.holder == Holder::Nobody && !self.in_doubt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Code, Operation};
    use crate::error::{ConnectFailure, GrpcStatus};

    fn status(code: Code, reason: &str) -> Result<Reply, CallError> {
        let status = GrpcStatus::new(code, "m").with_reason(reason, "d");
        Err(CallError::new(
            Operation::Pause,
            CallErrorKind::Status(status),
        ))
    }

    fn paused(state: PodState, outcome: Option<&Result<Reply, CallError>>) -> PodState {
        state.next(Event::Paused {
            written: true,
            outcome,
            take_over: false,
        })
    }

    const OPEN: PodState = PodState {
        holder: Holder::Nobody,
        in_doubt: false,
    };

    #[test]
    fn pause_outcomes() {
        let ok = Ok(Reply::Done);
        assert_eq!(paused(OPEN, Some(&ok)).holder, Holder::Us);
        assert!(paused(OPEN, None).may_hold(), "abandoned");
        let refused = Err(CallError::new(
            Operation::Pause,
            CallErrorKind::NotProcessed,
        ));
        assert_eq!(paused(OPEN, Some(&refused)), OPEN);
        let connect = Err(CallError::connect(ConnectFailure::Tcp));
        assert_eq!(paused(OPEN, Some(&connect)), OPEN);
        let timeout = Err(CallError::new(
            Operation::Pause,
            CallErrorKind::Timeout(Default::default()),
        ));
        let doubt = paused(OPEN, Some(&timeout));
        assert!(doubt.in_doubt && doubt.may_hold());
        for reopened in [reason::TIMED_OUT, reason::GATE_OPEN] {
            let s = paused(OPEN, Some(&status(Code::FailedPrecondition, reopened)));
            assert!(s.is_settled_open(), "{reopened}");
        }
        let still = status(Code::FailedPrecondition, reason::TIMED_OUT_STILL_PAUSED);
        assert_eq!(paused(OPEN, Some(&still)).kept(), Some(Kept::EarlierPause));
        let held = paused(OPEN, Some(&ok));
        assert_eq!(paused(held, Some(&still)).holder, Holder::Us, "our own");
        let in_progress = status(Code::Aborted, reason::PAUSE_IN_PROGRESS);
        assert_eq!(
            paused(OPEN, Some(&in_progress)).kept(),
            Some(Kept::PauseInProgress)
        );
        assert!(
            paused(doubt, Some(&in_progress)).may_hold(),
            "our own earlier Pause is the one in progress"
        );
        assert!(paused(OPEN, Some(&status(Code::Internal, ""))).may_hold());
    }

    #[test]
    fn observations() {
        let foreign = OPEN.next(Event::Observed(true));
        assert_eq!(foreign.kept(), Some(Kept::PausedBefore));
        assert!(!foreign.may_hold());
        // Someone else's pause is not this run's, unless taken over.
        let ok = Ok(Reply::Done);
        assert_eq!(paused(foreign, Some(&ok)), foreign);
        let taken = foreign.next(Event::Paused {
            written: true,
            outcome: Some(&ok),
            take_over: true,
        });
        assert!(taken.may_hold());
        // An OK to Unpause is not proof; the check after it is.
        let released = taken.next(Event::Unpaused(&ok));
        assert_eq!(released.holder, Holder::Released);
        assert!(released.next(Event::Observed(false)).is_settled_open());
        assert_eq!(
            released.next(Event::Observed(true)).kept(),
            Some(Kept::PausedSince)
        );
        // A pause in doubt makes a paused answer this run's, even after its Unpause.
        let doubt = paused(OPEN, None).next(Event::Unpaused(&ok));
        assert!(doubt.next(Event::Observed(true)).may_hold());
        let seen_open = doubt.next(Event::Observed(false));
        assert!(seen_open.may_hold() && !seen_open.is_settled_open());
        assert!(seen_open.next(Event::Settled).is_settled_open());
    }
}
