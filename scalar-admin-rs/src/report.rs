//! What a fan-out did: every pod's outcome with its timestamps ([`Report`]), and what a
//! rollback left behind ([`Rollback`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::contract::Operation;
use crate::error::CallError;
use crate::state::{Kept, Reply};
use crate::target::Target;

/// Microseconds since the Unix epoch, negative before it: how JSON output gives
/// instants, so that scripts need no date parsing.
pub fn unix_micros(t: SystemTime) -> i64 {
    let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => micros(d),
        Err(e) => -micros(e.duration()),
    }
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

/// Why a rollback could not say a pod is unpaused: it may still be paused by this run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Unconfirmed {
    /// Rollback was turned off: no Unpause was sent.
    NotTried,
    /// It still reported paused at the rollback's last check.
    StillPaused,
    /// The last call to it failed.
    Failed(CallError),
    /// No check answered before the rollback was interrupted or ran out of time.
    Unchecked,
    /// Its Unpause answered OK, and no check confirmed it (none answered, or one
    /// failed) before the rollback was interrupted or ran out of time: most likely
    /// unpaused, and a pause seen on it later is someone else's, so it is never unpaused
    /// again for this run (a guardian does not retry it either).
    UnpausedUnchecked,
    /// Seen unpaused, but a Pause of this run to it has no known outcome and the
    /// rollback ended before its watch did: that Pause may still land.
    NotWatched,
    /// It reported paused again after its Unpause answered OK: someone else paused it
    /// since, or the Unpause did not take. Left alone, since the pause may not be this
    /// run's.
    PausedAgain,
}

impl fmt::Display for Unconfirmed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unconfirmed::NotTried => f.write_str("rollback turned off"),
            Unconfirmed::StillPaused => f.write_str("still reports paused after Unpause"),
            Unconfirmed::Failed(e) => write!(f, "{}: {}", e.operation(), e.chain()),
            Unconfirmed::Unchecked => f.write_str("Unpause not confirmed by any check"),
            Unconfirmed::UnpausedUnchecked => {
                f.write_str("Unpause answered OK, not confirmed by any check")
            }
            Unconfirmed::NotWatched => f.write_str(
                "seen unpaused, but a Pause of this run to it may still land (the rollback ended before its watch)",
            ),
            Unconfirmed::PausedAgain => f.write_str(
                "reported paused again after its Unpause answered OK (someone else's pause since, or an Unpause that did not take); left alone",
            ),
        }
    }
}

/// A pod that may still be paused by this run, and why.
#[derive(Debug, Clone)]
pub struct StuckPod {
    pub(crate) target: Target,
    pub(crate) why: Unconfirmed,
}

impl StuckPod {
    /// The pod.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Why it is not known to be unpaused.
    pub fn why(&self) -> &Unconfirmed {
        &self.why
    }
}

impl fmt::Display for StuckPod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.why)
    }
}

/// What became of the pods a run may have paused, once it gave up: which it unpaused
/// again, as confirmed by CheckPaused; which it left paused because the pause was not
/// its own; and which may still be paused because unpausing them failed, was not
/// confirmed, or was not tried (rollback turned off).
///
/// A rollback restores the state it found: it never ends a pause this run did not make.
#[derive(Debug, Clone, Default)]
pub struct Rollback {
    /// Unpause rounds, in order: the first over every pod this run may have paused, the
    /// later ones over pods that reported paused again.
    pub(crate) unpauses: Vec<Report>,
    /// CheckPaused rounds, one after each settling delay.
    pub(crate) checks: Vec<Report>,
    /// Pods a check confirmed unpaused.
    pub(crate) unpaused: Vec<Target>,
    pub(crate) kept: Vec<KeptPod>,
    pub(crate) stuck: Vec<StuckPod>,
    /// Pods a Pause of this run was sent to and never answered, within the rollback's
    /// wait for it, with what it did.
    pub(crate) late: Vec<Target>,
    pub(crate) interrupted: bool,
}

impl Rollback {
    /// The first Unpause fan-out, over every pod this run may have paused; `None` when
    /// there was none to unpause, or rollback was turned off.
    pub fn report(&self) -> Option<&Report> {
        self.unpauses.first()
    }

    /// The Unpause rounds, in order.
    pub fn unpauses(&self) -> &[Report] {
        &self.unpauses
    }

    /// The CheckPaused rounds that confirmed them, in order.
    pub fn checks(&self) -> &[Report] {
        &self.checks
    }

    /// Every Unpause and CheckPaused fan-out of the rollback, in the order they ran.
    pub fn reports(&self) -> Vec<&Report> {
        let mut all: Vec<&Report> = self.unpauses.iter().chain(&self.checks).collect();
        all.sort_by_key(|r| r.started_at);
        all
    }

    /// The pods this rollback unpaused, each confirmed by a CheckPaused that answered
    /// unpaused.
    pub fn unpaused(&self) -> impl Iterator<Item = &Target> {
        self.unpaused.iter()
    }

    /// The pods left paused on purpose, as they were found.
    pub fn kept(&self) -> &[KeptPod] {
        &self.kept
    }

    /// The pods that may still be paused by this run, and why.
    pub fn stuck(&self) -> &[StuckPod] {
        &self.stuck
    }

    /// Every pod that may still be paused by this run.
    pub fn maybe_paused(&self) -> Vec<&Target> {
        self.stuck.iter().map(|s| &s.target).collect()
    }

    /// The pods a Pause of this run was sent to that never said what it did: no answer
    /// came within the rollback's wait for it (its connection was then closed
    /// abortively), or the answer was a broken connection or an unexplained error. A
    /// handler that starts late (a busy executor) may still close such a pod's gate
    /// after this rollback, whatever it confirmed.
    pub fn may_land_late(&self) -> &[Target] {
        &self.late
    }

    /// `may still be paused if a Pause sent to <pods> lands late`, when
    /// [`may_land_late`](Self::may_land_late) names any.
    pub fn late_line(&self) -> Option<String> {
        if self.late.is_empty() {
            return None;
        }
        let names: Vec<&str> = self.late.iter().map(Target::name).collect();
        Some(format!(
            "may still be paused if a Pause sent to {} lands late",
            names.join(", ")
        ))
    }

    /// Whether every pod this run may have paused is confirmed unpaused. A Pause that
    /// may still land late is not counted here: see [`may_land_late`](Self::may_land_late).
    pub fn is_complete(&self) -> bool {
        self.stuck.is_empty()
    }

    /// Whether a cancel cut the rollback short (no more waiting between rounds).
    pub fn was_interrupted(&self) -> bool {
        self.interrupted
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
        let names: Vec<&str> = self.stuck.iter().map(|s| s.target.name()).collect();
        let late = match self.late_line() {
            None => String::new(),
            Some(line) => format!("; {line}"),
        };
        let state = if self
            .stuck
            .iter()
            .any(|s| matches!(s.why, Unconfirmed::NotTried))
        {
            format!("rollback disabled: {} pods may be left paused", names.len())
        } else if !names.is_empty() {
            format!(
                "rollback not confirmed: may still be paused: {}",
                names.join(", ")
            )
        } else if !self.late.is_empty() {
            "rolled back".to_owned()
        } else if !self.unpaused.is_empty() {
            "rolled back: no pod is left paused by this run".to_owned()
        } else {
            "no pod is held paused by this run".to_owned()
        };
        write!(f, "{state}{late}{kept}")
    }
}

/// JSON shapes for reports: timestamps as microseconds since the Unix epoch (UTC),
/// durations in microseconds, so that scripts need no date parsing.
#[cfg(feature = "serde")]
mod json {
    use std::time::Duration;

    use serde::ser::{Serialize, SerializeStruct, Serializer};

    use super::{KeptPod, PodReport, Reply, Report, Rollback, StuckPod, unix_micros as micros};
    use crate::error::{CallErrorKind, Violation};

    fn us(d: Duration) -> u64 {
        u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
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
            CallErrorKind::PausedByOthers => "paused_by_others",
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

    impl Serialize for StuckPod {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("StuckPod", 2)?;
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
            let mut st = s.serialize_struct("Rollback", 8)?;
            st.serialize_field("unpaused", &names(&mut self.unpaused()))?;
            st.serialize_field("left_paused", &self.kept)?;
            st.serialize_field("maybe_paused", &names(&mut self.maybe_paused().into_iter()))?;
            st.serialize_field("stuck", &self.stuck)?;
            st.serialize_field("may_land_late", &names(&mut self.late.iter()))?;
            st.serialize_field("interrupted", &self.interrupted)?;
            st.serialize_field("unpause", &self.report())?;
            st.serialize_field("rounds", &self.reports())?;
            st.end()
        }
    }
}
