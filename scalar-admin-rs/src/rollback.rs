//! The rule a failed or interrupted run follows to undo its pause: which pods it may
//! hold paused, and which it must leave as it found them.
//!
//! A rollback restores the state it found. It unpauses a pod only when this run's Pause
//! may have closed that pod's gate, and never a pod whose pause is someone else's: one
//! that reported paused before this run (unless the caller takes such pods over), or
//! one whose answer says another pause holds its gate.

use crate::contract::reason;
use crate::error::{CallError, CallErrorKind};
use crate::report::{Kept, Reply};

/// What this run holds on one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// No pause of this run's: nothing to undo.
    Nothing,
    /// This run's Pause may have closed the gate: a rollback unpauses the pod.
    Paused,
    /// The pod is (or may be) paused, but not by this run: a rollback leaves it.
    NotOurs(Kept),
}

/// Whose pause, if any, a pod's gate held when a Pause of this run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Before {
    /// Open (as far as this run knows).
    Open,
    /// Paused by someone else: it reported paused before this run paused it.
    Others,
    /// Paused by an earlier Pause of this run.
    Ours,
}

/// What a Pause may have left on a pod.
///
/// - `written`: whether the request may have left (it was handed to the connection);
/// - `outcome`: its answer, or `None` when the call was abandoned (a signal, a panic);
/// - `before`: whose pause the gate held when this Pause started;
/// - `take_over`: whether someone else's pause counts as this run's.
pub(crate) fn after_pause(
    written: bool,
    outcome: Option<&Result<Reply, CallError>>,
    before: Before,
    take_over: bool,
) -> Hold {
    if !written {
        return Hold::Nothing;
    }
    if let Some(Err(error)) = outcome {
        if error.is_unprocessed() {
            return Hold::Nothing;
        }
        if let CallErrorKind::Status(status) = error.kind() {
            match status.reason() {
                // The server keeps the gate closed for an earlier pause, which may be
                // this run's own.
                Some(reason::TIMED_OUT_STILL_PAUSED) if before == Before::Ours => {
                    return Hold::Paused;
                }
                Some(reason::TIMED_OUT_STILL_PAUSED) => {
                    return Hold::NotOurs(Kept::EarlierPause);
                }
                // Another operator's pause holds the gate.
                Some(reason::PAUSE_IN_PROGRESS) => return Hold::NotOurs(Kept::PauseInProgress),
                // The server reopened the gate (or someone's Unpause did): nothing is
                // left of this Pause.
                Some(reason::TIMED_OUT | reason::GATE_OPEN) => return Hold::Nothing,
                _ => {}
            }
        }
    }
    // It answered OK, or the request may have closed the gate before the call failed.
    match before {
        Before::Others if !take_over => Hold::NotOurs(Kept::PausedBefore),
        _ => Hold::Paused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Code, Operation};
    use crate::error::{ConnectFailure, GrpcStatus};

    fn status(code: Code, reason: &str) -> Option<&'static Result<Reply, CallError>> {
        let status = GrpcStatus::new(code, "m").with_reason(reason, "d");
        let error = CallError::new(Operation::Pause, CallErrorKind::Status(status));
        Some(Box::leak(Box::new(Err(error))))
    }

    #[test]
    fn the_rule() {
        use Before::{Open, Others, Ours};
        let rule = |written, outcome, before| after_pause(written, outcome, before, false);
        let ok = Some(&Ok(Reply::Done));
        assert_eq!(rule(false, ok, Open), Hold::Nothing);
        assert_eq!(rule(true, ok, Open), Hold::Paused);
        assert_eq!(rule(true, ok, Others), Hold::NotOurs(Kept::PausedBefore));
        assert_eq!(
            after_pause(true, ok, Others, true),
            Hold::Paused,
            "taken over"
        );
        assert_eq!(rule(true, ok, Ours), Hold::Paused);
        assert_eq!(rule(true, None, Open), Hold::Paused, "abandoned");
        let refused = Err(CallError::new(
            Operation::Pause,
            CallErrorKind::NotProcessed,
        ));
        assert_eq!(rule(true, Some(&refused), Open), Hold::Nothing);
        let connect = Err(CallError::connect(ConnectFailure::Tcp));
        assert_eq!(rule(true, Some(&connect), Open), Hold::Nothing);
        let timeout = Err(CallError::new(
            Operation::Pause,
            CallErrorKind::Timeout(Default::default()),
        ));
        assert_eq!(rule(true, Some(&timeout), Open), Hold::Paused);
        let still_paused = status(Code::FailedPrecondition, reason::TIMED_OUT_STILL_PAUSED);
        assert_eq!(
            after_pause(true, still_paused, Open, true),
            Hold::NotOurs(Kept::EarlierPause),
            "kept even when taking over"
        );
        assert_eq!(
            rule(true, still_paused, Ours),
            Hold::Paused,
            "our own earlier pause"
        );
        let in_progress = status(Code::Aborted, reason::PAUSE_IN_PROGRESS);
        assert_eq!(
            rule(true, in_progress, Open),
            Hold::NotOurs(Kept::PauseInProgress)
        );
        let timed_out = status(Code::FailedPrecondition, reason::TIMED_OUT);
        assert_eq!(rule(true, timed_out, Open), Hold::Nothing);
        assert_eq!(rule(true, status(Code::Internal, ""), Open), Hold::Paused);
    }
}
