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
    /// The answer of a Pause of this run that was still in flight when its call was
    /// given up (its deadline, a cancel), read later by the rollback. Unless it says
    /// nothing of what the Pause did, nothing more of that Pause can land.
    /// `ours_before`: whether this run held the pod, or was in doubt, when that Pause
    /// was sent; otherwise the earlier pause an answer speaks of is someone else's.
    Answered {
        outcome: &'a Result<Reply, CallError>,
        ours_before: bool,
    },
    /// An Unpause of this run ended.
    Unpaused(&'a Result<Reply, CallError>),
    /// The rollback watched a pod in doubt long enough after it was seen open: a Pause
    /// of this run is no longer expected to land.
    Settled,
}

/// What a rollback makes of a pod after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Seen open, and no Pause of this run is expected to land any more: unpaused.
    Confirmed,
    /// Paused again after this run's Unpause answered OK: not this run's to end, nor to
    /// call unpaused.
    PausedAgain,
    /// Someone else's pause: left as found.
    Kept,
    /// Not settled yet: unpause again, or check again.
    Pending,
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
                    // The gate is this run's. An earlier Pause of this run still in doubt
                    // may land after the Unpause that ends this one: the doubt stays.
                    Effect::Closed => Self {
                        holder: Holder::Us,
                        in_doubt,
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
            Event::Answered {
                outcome,
                ours_before,
            } => {
                return match effect(Some(outcome)) {
                    // Never reached the handler: what was seen since stands.
                    Effect::Nothing => Self {
                        holder,
                        in_doubt: false,
                    },
                    // The gate closed when the answer was sent: whatever Unpause came
                    // before may have come first, so another follows. So for an earlier
                    // pause that was this run's when this Pause was sent.
                    Effect::Closed => Self {
                        holder: Holder::Us,
                        in_doubt: false,
                    },
                    Effect::EarlierPause | Effect::InProgress if ours_before => Self {
                        holder: Holder::Us,
                        in_doubt: false,
                    },
                    // Someone else's pause holds the gate, taken since this run last
                    // saw it (its Unpause may have opened it): not this run's to end.
                    Effect::EarlierPause => Self {
                        holder: Holder::Others(Kept::EarlierPause),
                        in_doubt: false,
                    },
                    Effect::InProgress => Self {
                        holder: Holder::Others(Kept::PauseInProgress),
                        in_doubt: false,
                    },
                    Effect::Reopened => Self {
                        holder: Holder::Nobody,
                        in_doubt: false,
                    },
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

    /// Whether a rollback must (again) send Unpause: this run may hold the pod, and no
    /// Unpause of this run took effect since (`Released`), nor did the pod answer open.
    pub(crate) fn needs_unpause(self) -> bool {
        self.holder == Holder::Us
    }

    /// What a rollback makes of the pod after one of its checks. `watched`: the pod was
    /// checked for the whole watch since this run's last Unpause to it, or the rollback
    /// is on its last round.
    pub(crate) fn settle(self, watched: bool) -> Settle {
        match self.holder {
            Holder::Nobody if !self.in_doubt || watched => Settle::Confirmed,
            Holder::Others(Kept::PausedSince) => Settle::PausedAgain,
            Holder::Others(_) => Settle::Kept,
            _ => Settle::Pending,
        }
    }

    /// Whether an Unpause of this run was answered OK and no CheckPaused has said since
    /// whether the gate opened: a rollback checks it (and never unpauses it again: a
    /// pause seen since is someone else's).
    pub(crate) fn is_released_unconfirmed(self) -> bool {
        self.holder == Holder::Released
    }

    /// Whether this run may hold the pod paused: what a rollback unpauses.
    pub(crate) fn may_hold(self) -> bool {
        self.holder == Holder::Us || self.in_doubt
    }

    /// Why the pod is left paused on purpose, when someone else holds it. Not for a pod
    /// paused again after this run's Unpause, which may as well be this run's own
    /// ([`paused_again`](Self::paused_again)).
    pub(crate) fn kept(self) -> Option<Kept> {
        match self.holder {
            Holder::Others(Kept::PausedSince) => None,
            Holder::Others(why) if !self.in_doubt => Some(why),
            _ => None,
        }
    }

    /// Whether the pod reported paused again after this run's Unpause answered OK.
    pub(crate) fn paused_again(self) -> bool {
        self.holder == Holder::Others(Kept::PausedSince)
    }

    /// Whether the pod's last answers say someone else paused it: a Pause does not go
    /// over it unless taking it over.
    pub(crate) fn is_others(self) -> bool {
        matches!(self.holder, Holder::Others(_))
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
    fn an_answered_pause_keeps_the_doubt_of_an_earlier_one_in_flight() {
        let timeout = Err(CallError::new(
            Operation::Pause,
            CallErrorKind::Timeout(Default::default()),
        ));
        let ok = Ok(Reply::Done);
        let first = paused(OPEN, Some(&timeout)).next(Event::Observed(false));
        let second = paused(first, Some(&ok));
        assert!(second.in_doubt);
        let after = second
            .next(Event::Unpaused(&ok))
            .next(Event::Observed(false));
        assert_eq!(after.settle(false), Settle::Pending, "watched first");
        assert_eq!(after.settle(true), Settle::Confirmed);
    }

    #[test]
    fn a_late_answer_ends_the_doubt_unless_it_says_nothing() {
        let timeout = Err(CallError::new(
            Operation::Pause,
            CallErrorKind::Timeout(Default::default()),
        ));
        let ok = Ok(Reply::Done);
        // Unpaused and seen open while the Pause was in flight; then it answers OK.
        let waiting = paused(OPEN, Some(&timeout))
            .next(Event::Unpaused(&ok))
            .next(Event::Observed(false));
        let closed = waiting.next(Event::Answered {
            outcome: &ok,
            ours_before: false,
        });
        assert!(
            !closed.in_doubt && closed.needs_unpause(),
            "unpaused after it"
        );
        let after = closed
            .next(Event::Unpaused(&ok))
            .next(Event::Observed(false));
        assert_eq!(after.settle(false), Settle::Confirmed, "no watch needed");
        let reopened = status(Code::FailedPrecondition, reason::TIMED_OUT);
        assert!(
            waiting
                .next(Event::Answered {
                    outcome: &reopened,
                    ours_before: false
                })
                .is_settled_open()
        );
        // An answer that says nothing of what the Pause did leaves the doubt.
        let broken = Err(CallError::new(Operation::Pause, CallErrorKind::Transport));
        assert!(
            waiting
                .next(Event::Answered {
                    outcome: &broken,
                    ours_before: false
                })
                .in_doubt
        );
    }

    /// A Pause to an open pod times out (its handler queued); the rollback unpauses the
    /// pod and sees it open; someone else pauses it; then the queued handler answers that
    /// a pause is in progress, or that an earlier pause keeps the gate: that pause is
    /// theirs, and the rollback must not unpause it. Had this run held the pod when the
    /// Pause was sent, the earlier pause would be its own.
    #[test]
    fn a_late_answer_names_an_earlier_pause_ours_only_if_it_was_ours_when_sent() {
        let timeout = Err(CallError::new(
            Operation::Pause,
            CallErrorKind::Timeout(Default::default()),
        ));
        let ok = Ok(Reply::Done);
        let ours_before = OPEN.may_hold();
        let seen_open = paused(OPEN, Some(&timeout))
            .next(Event::Unpaused(&ok))
            .next(Event::Observed(false));
        let in_progress = status(Code::Aborted, reason::PAUSE_IN_PROGRESS);
        let still = status(Code::FailedPrecondition, reason::TIMED_OUT_STILL_PAUSED);
        for (answer, why) in [
            (&in_progress, Kept::PauseInProgress),
            (&still, Kept::EarlierPause),
        ] {
            let late = seen_open.next(Event::Answered {
                outcome: answer,
                ours_before,
            });
            assert!(!late.needs_unpause() && !late.may_hold(), "{why:?}");
            assert_eq!(late.kept(), Some(why));
            assert_eq!(late.settle(false), Settle::Kept);
            // Sent while this run held the pod: the earlier pause is its own.
            let held = paused(OPEN, Some(&ok));
            let ours = held.next(Event::Answered {
                outcome: answer,
                ours_before: held.may_hold(),
            });
            assert!(ours.needs_unpause(), "{why:?}");
        }
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
        assert!(released.next(Event::Observed(true)).paused_again());
        // A pause in doubt makes a paused answer this run's, even after its Unpause.
        let doubt = paused(OPEN, None).next(Event::Unpaused(&ok));
        assert!(doubt.next(Event::Observed(true)).may_hold());
        let seen_open = doubt.next(Event::Observed(false));
        assert!(seen_open.may_hold() && !seen_open.is_settled_open());
        assert!(seen_open.next(Event::Settled).is_settled_open());
    }

    /// A model of one pod and the world around it, driven by random interleavings of
    /// this run's calls (with lost replies and delayed Pauses) and another operator's
    /// pause and unpause. The client side is this module's state and the rollback's
    /// decisions (`needs_unpause`, `settle`), as `Fleet::release` uses them.
    mod model {
        use proptest::prelude::*;

        use super::*;

        /// Who closed the gate on the server.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Who {
            Us,
            Them,
        }

        /// How a Pause of this run fares.
        #[derive(Debug, Clone, Copy)]
        enum Fate {
            /// Lands and is answered OK.
            Answered,
            /// Lands; the reply is lost (a time-out).
            ReplyLost,
            /// Held up in the network, lands later (within the rollback's watch); the
            /// client times out.
            Delayed,
            /// Refused unprocessed.
            Refused,
            /// Lands and cannot drain: `TIMED_OUT` (the gate reopened) or, on a gate an
            /// earlier pause closed, `TIMED_OUT_STILL_PAUSED`.
            Reopened,
        }

        #[derive(Debug, Clone)]
        enum Step {
            OtherPause,
            OtherUnpause,
            Check {
                lost: bool,
            },
            Pause(Fate),
            Deliver,
            /// A rollback: per round, whether the Unpause reply and the check reply are
            /// lost, and whether a delayed Pause lands in this round.
            Release(Vec<(bool, bool, bool)>),
        }

        fn step() -> impl Strategy<Value = Step> {
            let fate = prop_oneof![
                Just(Fate::Answered),
                Just(Fate::ReplyLost),
                Just(Fate::Delayed),
                Just(Fate::Refused),
                Just(Fate::Reopened),
            ];
            prop_oneof![
                Just(Step::OtherPause),
                Just(Step::OtherUnpause),
                any::<bool>().prop_map(|lost| Step::Check { lost }),
                fate.prop_map(Step::Pause),
                Just(Step::Deliver),
                prop::collection::vec(any::<(bool, bool, bool)>(), 1..8).prop_map(Step::Release),
            ]
        }

        /// Rounds of a rollback after which a pod in doubt counts as watched; the
        /// rollback's budget allows more rounds than that.
        const WATCH: usize = 2;

        struct World {
            gate: Option<Who>,
            /// Pauses of this run held up in the network, each landing later.
            delayed: usize,
            client: PodState,
            /// An Unpause of this run whose reply was lost, not yet followed by a check:
            /// the client cannot tell the gate's state.
            unpause_unknown: bool,
        }

        fn ok() -> Result<Reply, CallError> {
            Ok(Reply::Done)
        }

        fn timeout(op: Operation) -> Result<Reply, CallError> {
            Err(CallError::new(
                op,
                CallErrorKind::Timeout(Default::default()),
            ))
        }

        impl World {
            /// A Pause of this run reaches the server.
            fn land(&mut self) {
                if self.gate.is_none() {
                    self.gate = Some(Who::Us);
                }
            }

            /// One delayed Pause of this run lands.
            fn deliver(&mut self) {
                if self.delayed > 0 {
                    self.delayed -= 1;
                    self.land();
                }
            }

            fn observe(&mut self) {
                self.client = self.client.next(Event::Observed(self.gate.is_some()));
                self.unpause_unknown = false;
            }

            /// Another operator acts only when this run's belief can tell them apart:
            /// no Pause of this run in doubt, no Unpause of unknown effect. Inside those
            /// gaps, a paused answer is this run's by rule: the documented race.
            fn other_may_act(&self) -> bool {
                !self.client.in_doubt && self.delayed == 0 && !self.unpause_unknown
            }

            fn pause(&mut self, fate: Fate) {
                // `Fleet::pause`: a fresh answer first; someone else's pause is refused.
                self.observe();
                if self.client.is_others() {
                    return;
                }
                let outcome = match fate {
                    Fate::Answered => {
                        self.land();
                        ok()
                    }
                    Fate::ReplyLost => {
                        self.land();
                        timeout(Operation::Pause)
                    }
                    Fate::Delayed => {
                        self.delayed += 1;
                        timeout(Operation::Pause)
                    }
                    Fate::Refused => Err(CallError::new(
                        Operation::Pause,
                        CallErrorKind::NotProcessed,
                    )),
                    // ScalarDL: the gate reopens when this Pause closed it, else it stays
                    // closed for the earlier pause.
                    Fate::Reopened if self.gate.is_none() => {
                        status(Code::FailedPrecondition, reason::TIMED_OUT)
                    }
                    Fate::Reopened => {
                        status(Code::FailedPrecondition, reason::TIMED_OUT_STILL_PAUSED)
                    }
                };
                self.client = self.client.next(Event::Paused {
                    written: true,
                    outcome: Some(&outcome),
                    take_over: false,
                });
            }

            /// `Fleet::release`, round by round. Returns what the rollback reports for
            /// the pod.
            fn release(&mut self, rounds: &[(bool, bool, bool)]) -> Result<Settle, String> {
                if !self.client.may_hold() {
                    return Ok(Settle::Kept);
                }
                // A delayed Pause lands within the watch, in the round the case says (or
                // the last one inside the watch).
                let land_at = rounds.iter().take(WATCH).position(|r| r.2).unwrap_or(0);
                let mut since_unpause = 0;
                for (round, &(unpause_lost, check_lost, _)) in rounds.iter().enumerate() {
                    if self.client.needs_unpause() {
                        if self.gate == Some(Who::Them) {
                            return Err(format!("round {round}: ended a foreign pause"));
                        }
                        self.gate = None;
                        let outcome = if unpause_lost {
                            timeout(Operation::Unpause)
                        } else {
                            ok()
                        };
                        self.unpause_unknown = unpause_lost;
                        self.client = self.client.next(Event::Unpaused(&outcome));
                        since_unpause = 0;
                    }
                    if round == land_at {
                        while self.delayed > 0 {
                            self.deliver();
                        }
                    }
                    since_unpause += 1;
                    // Only a check answered in this round settles anything.
                    if check_lost {
                        continue;
                    }
                    self.observe();
                    let last = round + 1 == rounds.len();
                    let watched = last || since_unpause > WATCH;
                    match self.client.settle(watched) {
                        Settle::Confirmed => {
                            self.client = self.client.next(Event::Settled);
                            return Ok(Settle::Confirmed);
                        }
                        Settle::Pending => {}
                        other => return Ok(other),
                    }
                }
                Ok(Settle::Pending)
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            #[test]
            fn a_rollback_never_ends_a_foreign_pause_nor_hides_its_own(
                steps in prop::collection::vec(step(), 1..24)
            ) {
                let mut world = World {
                    gate: None,
                    delayed: 0,
                    client: PodState::NEW,
                    unpause_unknown: false,
                };
                world.observe();
                for step in &steps {
                    match step {
                        Step::OtherPause if world.other_may_act() && world.gate.is_none() => {
                            world.gate = Some(Who::Them);
                        }
                        Step::OtherUnpause if world.other_may_act() && world.gate == Some(Who::Them) => {
                            world.gate = None;
                        }
                        Step::OtherPause | Step::OtherUnpause => {}
                        Step::Check { lost } => {
                            if !lost {
                                world.observe();
                            }
                        }
                        Step::Pause(fate) => world.pause(*fate),
                        // Before a rollback, a delayed Pause may land at any time.
                        Step::Deliver => world.deliver(),
                        Step::Release(rounds) => {
                            let said = world.release(rounds).map_err(TestCaseError::fail)?;
                            // Whatever the rollback says, the gate bears it out: it calls
                            // unpaused only what is open, and this run's own pause is
                            // never left behind as someone else's or as nothing held.
                            match said {
                                Settle::Confirmed => prop_assert_ne!(world.gate, Some(Who::Us), "confirmed, yet paused by us"),
                                Settle::Kept => prop_assert_ne!(world.gate, Some(Who::Us), "ours filed as someone else's"),
                                Settle::PausedAgain | Settle::Pending => {}
                            }
                            prop_assert_eq!(world.delayed, 0, "a delayed Pause outlived the watch");
                            if said != Settle::Pending {
                                // A pod the rollback is done with: still this run's only
                                // if the rollback said it may be.
                                prop_assert!(
                                    world.gate != Some(Who::Us) || said == Settle::PausedAgain,
                                    "{said:?} with the gate ours"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
