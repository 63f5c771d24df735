//! Errors, from one pod's failed call up to the operation that failed.
//!
//! [`CallError`] is what one call to one pod can go wrong with; it does not name the pod,
//! since its caller knows. A [`Report`] pairs every pod with its outcome, and [`Error`]
//! is what an operation returns: its `Display` is one line saying what failed and the
//! state the cluster is left in, and the reports inside give per-pod detail.

use std::fmt;
use std::time::Duration;

use crate::fanout::{PodReport, Report};
use crate::target::Target;

/// Why one call to one pod failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    kind: CallErrorKind,
}

/// The kinds of [`CallError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// The connection could not be established within the connect timeout, or was
    /// refused (the pod is down, or nothing listens on the port).
    Connect(String),
    /// The call did not complete within its deadline. The request may have reached the
    /// pod, so its state is unknown.
    Timeout(Duration),
    /// The pod answered with a gRPC status other than OK.
    Status {
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message the pod sent.
        message: String,
    },
    /// The connection broke during the call (reset, protocol error, TLS failure).
    Transport(String),
    /// The call was not sent, because another pod could not be reached and pausing the
    /// rest would only have to be rolled back.
    NotSent,
}

impl CallError {
    pub(crate) fn new(kind: CallErrorKind) -> Self {
        Self { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> &CallErrorKind {
        &self.kind
    }

    /// The gRPC status code, when the pod answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self.kind {
            CallErrorKind::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the call ran out of time, leaving the pod's state unknown.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, CallErrorKind::Timeout(_))
    }

    /// Whether the pod could not be connected to.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, CallErrorKind::Connect(_))
    }

    /// Whether the request may have reached the pod. Only such pods can have paused.
    pub(crate) fn may_have_reached_pod(&self) -> bool {
        !matches!(
            self.kind,
            CallErrorKind::Connect(_) | CallErrorKind::NotSent
        )
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            CallErrorKind::Connect(cause) => write!(f, "cannot connect: {cause}"),
            CallErrorKind::Timeout(d) => write!(f, "no answer within the {d:?} deadline"),
            CallErrorKind::Status { code, message } => {
                write!(f, "{}: {message}", code_name(*code))
            }
            CallErrorKind::Transport(cause) => write!(f, "transport error: {cause}"),
            CallErrorKind::NotSent => f.write_str("not sent: another pod was unreachable"),
        }
    }
}

impl std::error::Error for CallError {}

/// The canonical upper-case name of a gRPC status code, as gRPC tools print it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Input rejected before any pod is contacted: a malformed address, name, certificate or
/// duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?}: {reason}")]
pub struct InvalidInput {
    what: &'static str,
    value: String,
    reason: String,
}

impl InvalidInput {
    pub(crate) fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            what,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// What is wrong with the value.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Pod discovery through DNS failed; no pod was contacted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot resolve {name}: {cause}")]
pub struct DiscoveryError {
    name: String,
    cause: String,
}

impl DiscoveryError {
    pub(crate) fn new(name: &str, cause: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            cause: cause.into(),
        }
    }

    /// The DNS name that failed to resolve.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What an operation returns when it failed.
///
/// `Display` is one line: the operation, how many pods failed, and the state the cluster
/// is left in. The [`Report`]s inside give each pod's outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input, found before any pod was contacted.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// The pods could not be discovered; none was contacted.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Pause failed on at least one pod. `rollback` is the Unpause sent to every pod
    /// afterwards, unless rollback was turned off or no Pause request was sent.
    #[error("{}", pause_summary(pause, rollback.as_deref()))]
    Pause {
        /// The Pause fan-out.
        pause: Box<Report>,
        /// The rollback Unpause fan-out.
        rollback: Option<Box<Report>>,
    },
    /// Unpause failed on at least one pod.
    #[error(
        "unpause failed on {} of {} pods; {}",
        unpause.failures().count(),
        unpause.pods().len(),
        left_paused(unpause)
    )]
    Unpause {
        /// The Unpause fan-out.
        unpause: Box<Report>,
    },
    /// The operation was interrupted (by a signal, say) while pods may have been paused;
    /// `rollback` is the Unpause then sent to every pod.
    #[error("interrupted; {}", rollback_state(rollback))]
    Interrupted {
        /// The Unpause fan-out sent after the interruption.
        rollback: Box<Report>,
    },
    /// A backup window did not start because pods already report paused: someone else
    /// may be running a backup, and this window's Unpause would end theirs.
    #[error(
        "{} pod(s) already report paused: {}; the window did not start and nothing was changed",
        pods.len(),
        pods.join(", ")
    )]
    AlreadyPaused {
        /// The pods reporting paused.
        pods: Vec<String>,
    },
    /// CheckPaused failed on at least one pod.
    #[error(
        "check failed on {} of {} pods; the pods' state is unchanged",
        check.failures().count(),
        check.pods().len()
    )]
    Check {
        /// The CheckPaused fan-out.
        check: Box<Report>,
    },
}

impl Error {
    /// Whether the input was rejected before any pod was contacted.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidInput(_))
    }

    /// The fan-out reports this error carries, in the order they ran.
    pub fn reports(&self) -> Vec<&Report> {
        match self {
            Error::Pause { pause, rollback } => std::iter::once(&**pause)
                .chain(rollback.as_deref())
                .collect(),
            Error::Unpause { unpause } => vec![unpause],
            Error::Check { check } => vec![check],
            Error::Interrupted { rollback } => vec![rollback],
            Error::InvalidInput(_) | Error::Discovery(_) | Error::AlreadyPaused { .. } => {
                Vec::new()
            }
        }
    }

    /// Pods that may still be paused after this error: empty when the cluster is known
    /// to be unpaused.
    pub fn maybe_paused(&self) -> Vec<&Target> {
        match self {
            Error::Pause {
                pause,
                rollback: None,
            } => pause
                .pods()
                .iter()
                .filter(|p| may_have_paused(p))
                .map(|p| p.target())
                .collect(),
            Error::Pause {
                rollback: Some(r), ..
            } => r.failures().map(|p| p.target()).collect(),
            Error::Unpause { unpause } => unpause.failures().map(|p| p.target()).collect(),
            Error::Interrupted { rollback } => rollback.failures().map(|p| p.target()).collect(),
            _ => Vec::new(),
        }
    }
}

fn pause_summary(pause: &Report, rollback: Option<&Report>) -> String {
    let failed = pause.failures().count();
    let total = pause.pods().len();
    let state = match rollback {
        Some(r) => rollback_state(r),
        None => match pause.pods().iter().filter(|p| may_have_paused(p)).count() {
            0 => "no Pause request was sent: no pod is paused".to_owned(),
            paused => format!("rollback disabled: {paused} pods may be left paused"),
        },
    };
    format!("pause failed on {failed} of {total} pods; {state}")
}

/// Whether Pause may have closed this pod's gate: it answered OK, or its request may
/// have reached it before the call failed (a time-out, a broken connection).
fn may_have_paused(pod: &PodReport) -> bool {
    pod.outcome()
        .as_ref()
        .map_or_else(CallError::may_have_reached_pod, |_| true)
}

fn rollback_state(rollback: &Report) -> String {
    if rollback.is_success() {
        "rolled back: no pod is left paused".to_owned()
    } else {
        format!("rollback failed: {}", left_paused(rollback))
    }
}

fn left_paused(report: &Report) -> String {
    let stuck: Vec<String> = report.failures().map(|p| p.target().to_string()).collect();
    if stuck.is_empty() {
        "no pod is left paused".to_owned()
    } else {
        format!("may still be paused: {}", stuck.join(", "))
    }
}
