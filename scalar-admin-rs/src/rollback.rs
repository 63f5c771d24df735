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

/// What a Pause may have left on a pod.
///
/// - `written`: whether the request may have left (it was handed to the connection);
/// - `outcome`: its answer, or `None` when the call was abandoned (a signal, a panic);
/// - `found_paused`: whether the pod reported paused before this run paused it;
/// - `take_over`: whether such pods count as this run's.
pub(crate) fn after_pause(
    written: bool,
    outcome: Option<&Result<Reply, CallError>>,
    found_paused: bool,
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
                // The server keeps the gate closed for an earlier pause.
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
    if found_paused && !take_over {
        Hold::NotOurs(Kept::PausedBefore)
    } else {
        Hold::Paused
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
        let ok = Some(&Ok(Reply::Done));
        assert_eq!(after_pause(false, ok, false, false), Hold::Nothing);
        assert_eq!(after_pause(true, ok, false, false), Hold::Paused);
        assert_eq!(
            after_pause(true, ok, true, false),
            Hold::NotOurs(Kept::PausedBefore)
        );
        assert_eq!(after_pause(true, ok, true, true), Hold::Paused);
        assert_eq!(
            after_pause(true, None, false, false),
            Hold::Paused,
            "abandoned"
        );
        let refused = Err(CallError::new(
            Operation::Pause,
            CallErrorKind::NotProcessed,
        ));
        assert_eq!(
            after_pause(true, Some(&refused), false, false),
            Hold::Nothing
        );
        let connect = Err(CallError::connect(ConnectFailure::Tcp));
        assert_eq!(
            after_pause(true, Some(&connect), false, false),
            Hold::Nothing
        );
        let timeout = Err(CallError::new(
            Operation::Pause,
            CallErrorKind::Timeout(Default::default()),
        ));
        assert_eq!(
            after_pause(true, Some(&timeout), false, false),
            Hold::Paused
        );
        assert_eq!(
            after_pause(
                true,
                status(Code::FailedPrecondition, reason::TIMED_OUT_STILL_PAUSED),
                false,
                true
            ),
            Hold::NotOurs(Kept::EarlierPause),
            "kept even when taking over"
        );
        assert_eq!(
            after_pause(
                true,
                status(Code::Aborted, reason::PAUSE_IN_PROGRESS),
                false,
                false
            ),
            Hold::NotOurs(Kept::PauseInProgress)
        );
        assert_eq!(
            after_pause(
                true,
                status(Code::FailedPrecondition, reason::TIMED_OUT),
                false,
                false
            ),
            Hold::Nothing
        );
        assert_eq!(
            after_pause(true, status(Code::Internal, ""), false, false),
            Hold::Paused
        );
    }
}
