//! What a fan-out did: every pod's outcome with its timestamps ([`Report`]), and what a
//! rollback left behind ([`Rollback`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::contract::Operation;
use crate::error::CallError;
use crate::target::Target;

/// What a pod answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Pause or Unpause succeeded.
    Done,
    /// CheckPaused's answer (also the connection probe's).
    Paused(bool),
}

/// One pod's part in a fan-out.
#[derive(Debug, Clone)]
pub struct PodReport {
    pub(crate) target: Target,
    pub(crate) sent_at: SystemTime,
    pub(crate) received_at: SystemTime,
    pub(crate) outcome: Result<Reply, CallError>,
}

impl PodReport {
    /// The pod.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// What the pod answered, or why the call failed.
    pub fn outcome(&self) -> &Result<Reply, CallError> {
        &self.outcome
    }

    /// The error, when the call failed.
    pub fn error(&self) -> Option<&CallError> {
        self.outcome.as_ref().err()
    }

    /// CheckPaused's answer, when this was a successful CheckPaused (or probe).
    pub fn paused(&self) -> Option<bool> {
        match self.outcome {
            Ok(Reply::Paused(p)) => Some(p),
            _ => None,
        }
    }

    /// UTC wall-clock time the request was handed to the kernel (for a connection, the
    /// probe's): the socket write that carried it. A request that never got that far
    /// counts from when it was handed to the connection.
    pub fn sent_at(&self) -> SystemTime {
        self.sent_at
    }

    /// UTC wall-clock time the reply (or the failure) arrived.
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// Time from sending to the reply.
    pub fn latency(&self) -> Duration {
        self.received_at
            .duration_since(self.sent_at)
            .unwrap_or_default()
    }
}

impl fmt::Display for PodReport {
    /// `<pod>: <outcome>`, the error with its causes, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(Reply::Done) => write!(f, "{}: ok", self.target),
            Ok(Reply::Paused(p)) => write!(f, "{}: paused={p}", self.target),
            Err(e) => write!(f, "{}: {}", self.target, e.chain()),
        }
    }
}

/// The result of one fan-out: every pod's outcome and the instants that matter for a
/// backup.
///
/// All timestamps come from one wall-clock reading plus a monotonic clock, so they are
/// ordered even if the system clock steps during the fan-out: every `sent_at` is at or
/// after [`started_at`](Self::started_at), every `received_at` at or after its `sent_at`,
/// and [`completed_at`](Self::completed_at) at or after every reply.
#[derive(Debug, Clone)]
pub struct Report {
    pub(crate) operation: Operation,
    pub(crate) started_at: SystemTime,
    pub(crate) completed_at: SystemTime,
    pub(crate) pods: Vec<PodReport>,
}

impl Report {
    /// Which call this was.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// Every pod, in target order.
    pub fn pods(&self) -> &[PodReport] {
        &self.pods
    }

    /// The pods whose call failed.
    pub fn failures(&self) -> impl Iterator<Item = &PodReport> {
        self.pods.iter().filter(|p| p.outcome.is_err())
    }

    /// Whether every pod's call succeeded.
    pub fn is_success(&self) -> bool {
        self.failures().next().is_none()
    }

    /// Taken right before the first request was written. For Unpause this is the
    /// instant the paused period ends ("Unpause started at").
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// Taken right after the last reply. For Pause this is the instant from which every
    /// pod is quiet ("Pause completed at").
    pub fn completed_at(&self) -> SystemTime {
        self.completed_at
    }

    /// Time between the first and the last successful reply: how far apart the pods'
    /// gates closed, as seen by the client. `None` without successful replies.
    pub fn reply_spread(&self) -> Option<Duration> {
        spread(
            self.pods
                .iter()
                .filter(|p| p.outcome.is_ok())
                .map(|p| p.received_at),
        )
    }

    /// Time between the first and the last request handed to the kernel: the client's
    /// own part of how far apart the gates close.
    pub fn send_spread(&self) -> Option<Duration> {
        spread(self.pods.iter().map(|p| p.sent_at))
    }

    /// Time from the first request to the last reply.
    pub fn wall_time(&self) -> Duration {
        self.completed_at
            .duration_since(self.started_at)
            .unwrap_or_default()
    }
}

fn spread(times: impl Iterator<Item = SystemTime> + Clone) -> Option<Duration> {
    let first = times.clone().min()?;
    let last = times.max()?;
    last.duration_since(first).ok()
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
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kept::PausedBefore => "already paused before this run",
            Kept::EarlierPause => "the server keeps an earlier pause",
            Kept::PauseInProgress => "another pause is in progress",
        })
    }
}

/// A pod a rollback left paused on purpose, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptPod {
    pub(crate) target: Target,
    pub(crate) why: Kept,
}

impl KeptPod {
    /// The pod.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Why it was left paused.
    pub fn why(&self) -> Kept {
        self.why
    }
}

/// What became of the pods a run may have paused, once it gave up: which it unpaused
/// again, which it left paused because the pause was not its own, and which may still
/// be paused because unpausing them failed (or rollback was turned off).
///
/// A rollback restores the state it found: it never ends a pause this run did not make.
#[derive(Debug, Clone, Default)]
pub struct Rollback {
    pub(crate) unpause: Option<Report>,
    pub(crate) kept: Vec<KeptPod>,
    /// Pods this run may have paused and did not try to unpause (rollback turned off).
    pub(crate) left: Vec<Target>,
}

impl Rollback {
    /// The Unpause fan-out, over the pods this run may have paused; `None` when there was
    /// none to unpause, or rollback was turned off.
    pub fn report(&self) -> Option<&Report> {
        self.unpause.as_ref()
    }

    /// The pods this rollback unpaused.
    pub fn unpaused(&self) -> impl Iterator<Item = &Target> {
        self.unpause
            .iter()
            .flat_map(|r| r.pods.iter())
            .filter(|p| p.outcome.is_ok())
            .map(|p| &p.target)
    }

    /// The pods left paused on purpose, as they were found.
    pub fn kept(&self) -> &[KeptPod] {
        &self.kept
    }

    /// The pods whose Unpause failed: they may still be paused by this run.
    pub fn failed(&self) -> impl Iterator<Item = &PodReport> {
        self.unpause.iter().flat_map(|r| r.failures())
    }

    /// Every pod that may still be paused by this run: those whose Unpause failed, and
    /// with rollback turned off, those it did not try.
    pub fn maybe_paused(&self) -> Vec<&Target> {
        self.failed().map(|p| &p.target).chain(&self.left).collect()
    }

    /// Whether no pod is left paused by this run.
    pub fn is_complete(&self) -> bool {
        self.maybe_paused().is_empty()
    }
}

impl fmt::Display for Rollback {
    /// The state in a few words: `rolled back: no pod is left paused by this run`, or
    /// what is left.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = match self.kept.len() {
            0 => String::new(),
            n => format!("; {n} pod(s) paused by someone else left paused as found"),
        };
        let maybe = self.maybe_paused();
        let state = if !self.left.is_empty() {
            format!("rollback disabled: {} pods may be left paused", maybe.len())
        } else if !maybe.is_empty() {
            let names: Vec<&str> = maybe.iter().map(|t| t.name()).collect();
            format!("rollback failed: may still be paused: {}", names.join(", "))
        } else if self.unpause.is_some() {
            "rolled back: no pod is left paused by this run".to_owned()
        } else {
            "no pod was paused by this run".to_owned()
        };
        write!(f, "{state}{kept}")
    }
}

/// JSON shapes for reports: timestamps as microseconds since the Unix epoch (UTC),
/// durations in microseconds, so that scripts need no date parsing.
#[cfg(feature = "serde")]
mod json {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::ser::{Serialize, SerializeStruct, Serializer};

    use super::{KeptPod, PodReport, Reply, Report, Rollback};
    use crate::error::{CallErrorKind, Violation};

    /// Microseconds since the Unix epoch; negative before it.
    fn micros(t: SystemTime) -> i64 {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_micros() as i64,
            Err(e) => -(e.duration().as_micros() as i64),
        }
    }

    fn us(d: Duration) -> u64 {
        d.as_micros() as u64
    }

    fn kind_name(kind: &CallErrorKind) -> &'static str {
        match kind {
            CallErrorKind::Connect(_) => "connect",
            CallErrorKind::Timeout(_) => "timeout",
            CallErrorKind::Status(_) => "status",
            CallErrorKind::Http { .. } => "http",
            CallErrorKind::Protocol(Violation::ContentType(_)) => "content_type",
            CallErrorKind::Protocol(_) => "protocol",
            CallErrorKind::Transport => "transport",
            CallErrorKind::NotProcessed => "not_processed",
            CallErrorKind::NotSent => "not_sent",
            CallErrorKind::Panicked(_) => "panicked",
        }
    }

    impl Serialize for PodReport {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("PodReport", 10)?;
            st.serialize_field("pod", self.target.name())?;
            st.serialize_field("address", &self.target.address())?;
            st.serialize_field("ok", &self.outcome.is_ok())?;
            match &self.outcome {
                Ok(Reply::Paused(p)) => st.serialize_field("paused", p)?,
                Ok(Reply::Done) => st.skip_field("paused")?,
                Err(e) => {
                    st.serialize_field("error_kind", kind_name(e.kind()))?;
                    st.serialize_field("code", &e.code())?;
                    st.serialize_field("reason", &e.reason())?;
                    st.serialize_field("error", &e.chain())?;
                }
            }
            let (sent, received) = (micros(self.sent_at), micros(self.received_at));
            st.serialize_field("sent_at_us", &sent)?;
            st.serialize_field("received_at_us", &received)?;
            // From the rounded timestamps, so that the three fields agree exactly.
            st.serialize_field("latency_us", &(received - sent))?;
            st.end()
        }
    }

    impl Serialize for Report {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("Report", 8)?;
            st.serialize_field("operation", &self.operation)?;
            st.serialize_field("ok", &self.is_success())?;
            st.serialize_field("started_at_us", &micros(self.started_at))?;
            st.serialize_field("completed_at_us", &micros(self.completed_at))?;
            st.serialize_field("wall_time_us", &us(self.wall_time()))?;
            st.serialize_field("send_spread_us", &self.send_spread().map(us))?;
            st.serialize_field("reply_spread_us", &self.reply_spread().map(us))?;
            st.serialize_field("pods", &self.pods)?;
            st.end()
        }
    }

    impl Serialize for KeptPod {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("KeptPod", 2)?;
            st.serialize_field("pod", self.target.name())?;
            st.serialize_field("why", &self.why.to_string())?;
            st.end()
        }
    }

    impl Serialize for Rollback {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let names = |it: &mut dyn Iterator<Item = &crate::Target>| -> Vec<String> {
                it.map(|t| t.name().to_owned()).collect()
            };
            let mut st = s.serialize_struct("Rollback", 4)?;
            st.serialize_field("unpaused", &names(&mut self.unpaused()))?;
            st.serialize_field("left_paused", &self.kept)?;
            st.serialize_field("maybe_paused", &names(&mut self.maybe_paused().into_iter()))?;
            st.serialize_field("unpause", &self.unpause)?;
            st.end()
        }
    }
}
