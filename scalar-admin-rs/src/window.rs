//! A whole backup window: pause every product together, hold, verify nothing changed,
//! unpause, and say whether the paused period can be restored to.
//!
//! This is the backup guide's procedure in one call. Every group (an SRV name or an
//! address list per product: ScalarDB Cluster, ScalarDL Ledger, Auditor) is paused in
//! one fan-out so that all of them share one quiet period. Just before unpausing, the
//! window is verified: each SRV name is resolved again and compared with the pods that
//! were paused (a pod added meanwhile runs unpaused), and every pod is asked whether it
//! is still paused (a restarted pod comes back unpaused). Only a window that passes both
//! is [`Verdict::Valid`]. The restore point to use is the middle of the window, since
//! node clocks are never perfectly in sync.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::client::{ClientConfig, PauseOptions};
use crate::discovery::{DnsConfig, dedup_sorted, resolve_srv};
use crate::error::Error;
use crate::fanout::{Fleet, Report};
use crate::target::Target;

/// One product's pods: an SRV name, re-resolved at verification, or a fixed list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
pub enum Group {
    /// Pods listed by a DNS SRV name.
    Srv(String),
    /// Pods at fixed addresses.
    Addresses(Vec<Target>),
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Srv(name) => f.write_str(name),
            Group::Addresses(targets) => {
                let names: Vec<&str> = targets.iter().map(Target::name).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl Group {
    /// The group's pods now: the SRV name resolved afresh, or the fixed list.
    pub async fn resolve(&self, dns: &DnsConfig) -> Result<Vec<Target>, Error> {
        match self {
            Group::Srv(name) => resolve_srv(name, dns).await,
            Group::Addresses(targets) => Ok(targets.clone()),
        }
    }
}

/// A group and the pods it had when the window was paused.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GroupPods {
    /// The group as given.
    pub group: Group,
    /// Its pods.
    pub pods: Vec<Target>,
}

/// How a window runs.
#[derive(Debug, Clone)]
pub struct WindowOptions {
    hold: Duration,
    force: bool,
    attempts: usize,
    unpause_attempts: usize,
    unpause_backoff: Duration,
    pause: PauseOptions,
}

impl Default for WindowOptions {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(10),
            force: false,
            attempts: 1,
            unpause_attempts: 3,
            unpause_backoff: Duration::from_millis(500),
            pause: PauseOptions::default(),
        }
    }
}

impl WindowOptions {
    /// Sets how long the pods stay paused: the period point-in-time recovery can restore
    /// to. 10 seconds by default, as the backup guide suggests.
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// Starts even when a pod already reports paused. Off by default: a pod paused by
    /// someone else would be unpaused at the end of this window.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Sets how many windows to try while they come out INVALID. 1 by default.
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Sets how many times Unpause is tried, and the wait before the first retry (it
    /// doubles after each). 3 attempts from 500 ms by default.
    pub fn unpause_retries(mut self, attempts: usize, backoff: Duration) -> Self {
        self.unpause_attempts = attempts.max(1);
        self.unpause_backoff = backoff;
        self
    }

    /// Sets the Pause options (rollback always stays on: a window never leaves pods
    /// paused on purpose).
    pub fn pause(mut self, pause: PauseOptions) -> Self {
        self.pause = pause.rollback(true);
        self
    }
}

/// Whether the paused period can be restored to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(tag = "verdict", content = "reasons")
)]
pub enum Verdict {
    /// Every pod stayed paused and no pod was added or removed.
    #[cfg_attr(feature = "serde", serde(rename = "VALID"))]
    Valid,
    /// Something changed during the window; each reason in plain words.
    #[cfg_attr(feature = "serde", serde(rename = "INVALID"))]
    Invalid(Vec<String>),
}

impl Verdict {
    /// Whether the window is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid)
    }
}

/// One window that was paused and unpaused.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WindowReport {
    /// The pods of each group, as paused.
    pub groups: Vec<GroupPods>,
    /// The Pause fan-out over every group.
    pub pause: Report,
    /// CheckPaused just before unpausing.
    pub verify: Report,
    /// The Unpause fan-outs, one per attempt.
    pub unpause: Vec<Report>,
    /// CheckPaused after unpausing.
    pub confirm: Option<Report>,
    /// The verdict.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub verdict: Verdict,
}

impl WindowReport {
    /// When the last pod finished pausing: the window's start.
    pub fn pause_completed_at(&self) -> SystemTime {
        self.pause.completed_at()
    }

    /// When unpausing began: the window's end.
    pub fn unpause_started_at(&self) -> SystemTime {
        self.unpause
            .first()
            .map_or(self.pause.completed_at(), Report::started_at)
    }

    /// The middle of the window, the safest restore point.
    pub fn midpoint(&self) -> SystemTime {
        let start = self.pause_completed_at();
        start + self.length() / 2
    }

    /// The window's length.
    pub fn length(&self) -> Duration {
        self.unpause_started_at()
            .duration_since(self.pause_completed_at())
            .unwrap_or_default()
    }
}

/// Runs backup windows over `groups` until one is VALID or `options.attempts` are used.
///
/// Returns every window tried; the last is the one that counts. Fails, with every pod
/// unpaused unless the error says otherwise, when the pods cannot be found, a pod
/// already reports paused (unless forced), Pause fails (rolled back), `cancel`
/// completes (every pod is unpaused: [`Error::Interrupted`]), or Unpause still fails
/// after its retries ([`Error::Unpause`], naming the pods that may still be paused).
///
/// ```no_run
/// # async fn run() -> Result<(), scalar_admin::Error> {
/// use scalar_admin::window::{Group, WindowOptions, run_windows};
/// use scalar_admin::{ClientConfig, DnsConfig};
///
/// let groups = [
///     Group::Srv("_scalardl-admin._tcp.ledger-headless".into()),
///     Group::Srv("_scalardl-auditor-admin._tcp.auditor-headless".into()),
/// ];
/// let windows = run_windows(
///     &groups,
///     &ClientConfig::default(),
///     &DnsConfig::default(),
///     &WindowOptions::default(),
///     tokio::signal::ctrl_c(),
/// )
/// .await?;
/// let last = windows.last().unwrap();
/// println!("{:?}: restore to {:?}", last.verdict, last.midpoint());
/// # Ok(()) }
/// ```
pub async fn run_windows<C, T>(
    groups: &[Group],
    client: &ClientConfig,
    dns: &DnsConfig,
    options: &WindowOptions,
    cancel: C,
) -> Result<Vec<WindowReport>, Error>
where
    C: Future<Output = T>,
{
    let cancel = async {
        cancel.await;
    };
    tokio::pin!(cancel);
    let mut windows = Vec::new();
    for attempt in 1..=options.attempts {
        let window = run_window(groups, client, dns, options, cancel.as_mut()).await?;
        let valid = window.verdict.is_valid();
        if !valid {
            warn!(attempt, verdict = ?window.verdict, "window INVALID");
        }
        windows.push(window);
        if valid {
            break;
        }
    }
    Ok(windows)
}

async fn run_window(
    groups: &[Group],
    client: &ClientConfig,
    dns: &DnsConfig,
    options: &WindowOptions,
    mut cancel: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<WindowReport, Error> {
    let mut resolved = Vec::with_capacity(groups.len());
    for group in groups {
        resolved.push(GroupPods {
            group: group.clone(),
            pods: group.resolve(dns).await?,
        });
    }
    let all = dedup_sorted(
        resolved
            .iter()
            .flat_map(|g| g.pods.iter().cloned())
            .collect(),
    );
    let mut fleet = Fleet::connect(all, client.clone()).await;

    if !options.force {
        let check = fleet.check_paused().await?;
        let paused: Vec<&str> = check
            .pods()
            .iter()
            .filter(|p| p.paused() == Some(true))
            .map(|p| p.target().name())
            .collect();
        if !paused.is_empty() {
            return Err(Error::AlreadyPaused {
                pods: paused.into_iter().map(str::to_owned).collect(),
            });
        }
    }

    let pause = fleet
        .pause_with_cancel(options.pause, cancel.as_mut())
        .await?;
    info!(completed_at = ?pause.completed_at(), "window open");

    let interrupted = tokio::select! {
        () = tokio::time::sleep(options.hold) => false,
        () = cancel.as_mut() => true,
    };
    if interrupted {
        warn!("interrupted during the hold; unpausing every pod");
        let mut attempts = unpause_with_retries(&mut fleet, options).await;
        let last = attempts.pop().expect("at least one attempt");
        return Err(Error::Interrupted {
            rollback: Box::new(last),
        });
    }

    // Verify just before unpausing, so the check covers the whole window.
    let mut reasons = Vec::new();
    for GroupPods { group, pods } in &resolved {
        if let Group::Srv(_) = group {
            match group.resolve(dns).await {
                Ok(now) => {
                    if let Some(change) = set_change(pods, &now) {
                        reasons.push(format!("{group}: endpoint set changed: {change}"));
                    }
                }
                Err(e) => reasons.push(format!("could not re-resolve: {e}")),
            }
        }
    }
    let verify = fleet.check_report().await;
    for pod in verify.pods() {
        match pod.outcome() {
            Ok(_) if pod.paused() == Some(true) => {}
            Ok(_) => reasons.push(format!(
                "{} reported unpaused during the window: restarted?",
                pod.target()
            )),
            Err(e) => reasons.push(format!("{} could not be checked: {e}", pod.target())),
        }
    }

    let mut unpause = unpause_with_retries(&mut fleet, options).await;
    if unpause.last().is_some_and(|last| !last.is_success()) {
        let last = unpause.pop().expect("at least one attempt");
        return Err(Error::Unpause {
            unpause: Box::new(last),
        });
    }
    let confirm = fleet.check_paused().await.ok();
    match &confirm {
        Some(report) if report.pods().iter().all(|p| p.paused() == Some(false)) => {}
        Some(report) => {
            for pod in report.pods().iter().filter(|p| p.paused() == Some(true)) {
                reasons.push(format!(
                    "{} still reports paused after Unpause",
                    pod.target()
                ));
            }
        }
        None => reasons.push("could not confirm that every pod is unpaused".into()),
    }

    let verdict = if reasons.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Invalid(reasons)
    };
    Ok(WindowReport {
        groups: resolved,
        pause,
        verify,
        unpause,
        confirm,
        verdict,
    })
}

/// Unpauses every pod, retrying with a doubling backoff while any pod fails. Returns
/// every attempt; the last one says how it ended.
async fn unpause_with_retries(fleet: &mut Fleet, options: &WindowOptions) -> Vec<Report> {
    let mut attempts = Vec::new();
    let mut backoff = options.unpause_backoff;
    for attempt in 1..=options.unpause_attempts {
        let report = fleet.unpause_report().await;
        let done = report.is_success();
        attempts.push(report);
        if done || attempt == options.unpause_attempts {
            break;
        }
        warn!(attempt, ?backoff, "unpause failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    attempts
}

/// `+added, -removed` between two endpoint sets, compared by address and name.
fn set_change(before: &[Target], after: &[Target]) -> Option<String> {
    let key = |t: &Target| (t.socket_addr(), t.name().to_owned());
    let before: BTreeSet<_> = before.iter().map(key).collect();
    let after_set: BTreeSet<_> = after.iter().map(key).collect();
    let mut changes: Vec<String> = after_set
        .difference(&before)
        .map(|(_, name)| format!("+{name}"))
        .collect();
    changes.extend(
        before
            .difference(&after_set)
            .map(|(_, name)| format!("-{name}")),
    );
    (!changes.is_empty()).then(|| changes.join(", "))
}
