//! What an operation returns when it failed: [`Error`], one line that says what failed
//! and the state the cluster is left in, with the reports and the rollback inside.

use crate::error::{DiscoveryError, InvalidInput};
use crate::report::{Report, Rollback};
use crate::target::Target;

/// What an operation returns when it failed.
///
/// `Display` is one line: the operation, how many pods failed, and the state the cluster
/// is left in. The [`Report`]s and the [`Rollback`] inside give each pod's outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input, found before any pod was contacted.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// The pods could not be discovered; none was contacted.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Pause failed on at least one pod. `rollback` says what became of the pods this
    /// run may have paused (undone, unless rollback was turned off); `None` when no Pause
    /// request was sent.
    #[error("{}", pause_summary(pause, rollback.as_deref()))]
    Pause {
        /// The Pause fan-out.
        pause: Box<Report>,
        /// What the rollback unpaused, left as found, or could not unpause.
        rollback: Option<Box<Rollback>>,
    },
    /// Unpause failed on at least one pod.
    #[error(
        "unpause failed on {} of {} pods; {}",
        unpause.failures().count(),
        unpause.pods().len(),
        may_still_be_paused(unpause)
    )]
    Unpause {
        /// The Unpause fan-out.
        unpause: Box<Report>,
    },
    /// The operation was interrupted (by a signal, say); `rollback` undid what this run
    /// had paused by then.
    #[error("interrupted; {rollback}")]
    Interrupted {
        /// What the rollback unpaused, left as found, or could not unpause.
        rollback: Box<Rollback>,
    },
    /// Pause (or a backup window) did not start because pods report paused by someone
    /// else: another backup may be running, and this run's Unpause would end theirs.
    /// Nothing was sent.
    #[error(
        "{} pod(s) already report paused by someone else: {}; no Pause was sent and nothing was changed",
        pods.len(),
        join(pods)
    )]
    AlreadyPaused {
        /// The pods reporting paused.
        pods: Vec<Target>,
    },
    /// The guard of a pause refused to arm (a guardian process that cannot be reached,
    /// say): a [`Guard`](crate::window::Guard) of a window, or the hook of
    /// [`Fleet::pause_guarded`](crate::Fleet::pause_guarded). No Pause was sent; what
    /// the guard did outside the pods, it says in `reason`.
    #[error("the guard refused the pause: {reason}; no Pause was sent")]
    Guard {
        /// Why, as the guard said.
        reason: String,
    },
    /// A backup window's Unpause could not be confirmed on every pod it paused.
    /// `rollback` names the pods that may still be paused and why.
    #[error("the window ended, but {rollback}")]
    Release {
        /// What the window's release unpaused (confirmed), left as found, or could not
        /// confirm.
        rollback: Box<Rollback>,
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
                .chain(
                    rollback
                        .as_deref()
                        .map(Rollback::reports)
                        .unwrap_or_default(),
                )
                .collect(),
            Error::Unpause { unpause } => vec![unpause],
            Error::Check { check } => vec![check],
            Error::Interrupted { rollback } | Error::Release { rollback } => rollback.reports(),
            Error::InvalidInput(_)
            | Error::Discovery(_)
            | Error::AlreadyPaused { .. }
            | Error::Guard { .. } => Vec::new(),
        }
    }

    /// The rollback this error carries, if one ran.
    pub fn rollback(&self) -> Option<&Rollback> {
        match self {
            Error::Pause { rollback, .. } => rollback.as_deref(),
            Error::Interrupted { rollback } | Error::Release { rollback } => Some(rollback),
            _ => None,
        }
    }

    /// Pods that may still be paused by this run after this error: empty when every pause
    /// this run made is known to be undone. Pods left paused as they were found are not
    /// here; [`Rollback::kept`] lists them.
    pub fn maybe_paused(&self) -> Vec<&Target> {
        match self {
            Error::Unpause { unpause } => unpause.failures().map(|p| p.target()).collect(),
            _ => self
                .rollback()
                .map(Rollback::maybe_paused)
                .unwrap_or_default(),
        }
    }
}

fn join(pods: &[Target]) -> String {
    let names: Vec<&str> = pods.iter().map(Target::name).collect();
    names.join(", ")
}

fn pause_summary(pause: &Report, rollback: Option<&Rollback>) -> String {
    let state = match rollback {
        Some(r) => r.to_string(),
        None => "no Pause request was sent: nothing was changed".to_owned(),
    };
    format!(
        "pause failed on {} of {} pods; {state}",
        pause.failures().count(),
        pause.pods().len()
    )
}

fn may_still_be_paused(report: &Report) -> String {
    let stuck: Vec<Target> = report.failures().map(|p| p.target().clone()).collect();
    if stuck.is_empty() {
        "no pod is left paused".to_owned()
    } else {
        format!("may still be paused: {}", join(&stuck))
    }
}
