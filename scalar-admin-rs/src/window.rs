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
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::Fuse;
use tracing::{error, info, warn};

use crate::client::{ClientConfig, PauseOptions};
use crate::discovery::{DnsConfig, dedup_sorted, resolve_srv};
use crate::error::{CallError, DiscoveryError, DiscoveryErrorKind};
use crate::failure::Error;
use crate::fleet::{Fleet, PauseGuard};
use crate::report::{Report, Rollback};
use crate::target::Target;

/// One product's pods: an SRV name, re-resolved at verification, or a fixed list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Group {
    /// Pods listed by a DNS SRV name.
    Srv(String),
    /// Pods at fixed addresses.
    Addresses(Vec<Target>),
    /// Pods found through the Kubernetes API.
    #[cfg(feature = "kubernetes")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
    Kubernetes(crate::kubernetes::KubeGroup),
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Srv(name) => f.write_str(name),
            Group::Addresses(targets) => {
                let names: Vec<&str> = targets.iter().map(Target::name).collect();
                f.write_str(&names.join(","))
            }
            #[cfg(feature = "kubernetes")]
            Group::Kubernetes(group) => write!(f, "{group}"),
        }
    }
}

impl Group {
    /// Pods listed by the SRV name `name` (full, or short with the search list).
    pub fn srv(name: impl Into<String>) -> Self {
        Group::Srv(name.into())
    }

    /// Pods at fixed addresses.
    pub fn addresses(targets: Vec<Target>) -> Self {
        Group::Addresses(targets)
    }

    /// The group's pods now: the SRV name resolved afresh, the fixed list, or the
    /// Kubernetes API asked again (refusing unless every selected pod is Running and
    /// ready). Every command resolves its pods here.
    pub async fn resolve(&self, dns: &DnsConfig) -> Result<Vec<Target>, Error> {
        Ok(self.resolve_with_snapshot(dns).await?.0)
    }

    /// Every pod of the group that can be called now, ready or not: what an Unpause or
    /// a CheckPaused reaches (a pod that stopped being ready, or is terminating, may
    /// still be paused). The same as [`resolve`](Self::resolve) but for the Kubernetes
    /// API, which does not refuse here.
    pub async fn reachable(&self, dns: &DnsConfig) -> Result<Vec<Target>, Error> {
        match self {
            #[cfg(feature = "kubernetes")]
            Group::Kubernetes(group) => Ok(group.discover().await?.into_parts().0),
            _ => self.resolve(dns).await,
        }
    }

    /// [`resolve`](Self::resolve), with the Kubernetes snapshot when there is one.
    async fn resolve_with_snapshot(
        &self,
        dns: &DnsConfig,
    ) -> Result<(Vec<Target>, Snapshot), Error> {
        match self {
            Group::Srv(name) => Ok((resolve_srv(name, dns).await?, Snapshot::default())),
            Group::Addresses(targets) => Ok((targets.clone(), Snapshot::default())),
            #[cfg(feature = "kubernetes")]
            Group::Kubernetes(group) => {
                let (targets, snapshot) = group.resolve().await?.into_parts();
                Ok((targets, Some(snapshot)))
            }
        }
    }

    /// The group's pods and snapshot now, without the readiness check: what a window
    /// compares with what it paused. `None` for a fixed list.
    async fn rediscover(&self, dns: &DnsConfig) -> Option<Result<(Vec<Target>, Snapshot), Error>> {
        match self {
            Group::Srv(name) => Some(
                resolve_srv(name, dns)
                    .await
                    .map(|t| (t, Snapshot::default())),
            ),
            Group::Addresses(_) => None,
            #[cfg(feature = "kubernetes")]
            Group::Kubernetes(group) => Some(group.discover().await.map(|found| {
                let (targets, snapshot) = found.into_parts();
                (targets, Some(snapshot))
            })),
        }
    }
}

/// A Kubernetes group's snapshot (always `None` without the feature).
#[cfg(feature = "kubernetes")]
type Snapshot = Option<crate::kubernetes::Snapshot>;
#[cfg(not(feature = "kubernetes"))]
type Snapshot = Option<std::convert::Infallible>;

/// A group and the pods it had when the window was paused.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GroupPods {
    group: Group,
    pods: Vec<Target>,
    /// What the Kubernetes API showed when the window was paused.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    snapshot: Snapshot,
}

impl GroupPods {
    /// The group as given.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Its pods when the window was paused.
    pub fn pods(&self) -> &[Target] {
        &self.pods
    }

    /// What the Kubernetes API showed of them just before the pause.
    #[cfg(feature = "kubernetes")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
    pub fn snapshot(&self) -> Option<&crate::kubernetes::Snapshot> {
        self.snapshot.as_ref()
    }
}

/// A backup window, configured with a builder, run with [`Window::run`].
///
/// ```no_run
/// # async fn run() -> Result<(), scalar_admin::Error> {
/// use std::time::Duration;
/// use scalar_admin::window::{Group, Window};
///
/// let windows = Window::new([
///     Group::srv("_scalardl-admin._tcp.ledger-headless"),
///     Group::srv("_scalardl-auditor-admin._tcp.auditor-headless"),
/// ])
/// .hold(Duration::from_secs(10))
/// .run(tokio::signal::ctrl_c())
/// .await?;
/// let last = windows.last().unwrap();
/// println!("{:?}: restore to {:?}", last.verdict(), last.midpoint());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Window {
    groups: Vec<Group>,
    client: ClientConfig,
    dns: DnsConfig,
    hold: Duration,
    force: bool,
    attempts: usize,
    pause: PauseOptions,
    on_action_error: OnActionError,
}

impl Window {
    /// A window over these groups, with the defaults below.
    pub fn new(groups: impl IntoIterator<Item = Group>) -> Self {
        Self {
            groups: groups.into_iter().collect(),
            client: ClientConfig::default(),
            dns: DnsConfig::default(),
            hold: Duration::from_secs(10),
            force: false,
            attempts: 1,
            pause: PauseOptions::default(),
            on_action_error: OnActionError::Fail,
        }
    }

    /// How pods are called, and how long the window's release may take to unpause and
    /// confirm ([`ClientConfig::rollback_budget`]). [`ClientConfig::default`] by default.
    pub fn client(mut self, client: ClientConfig) -> Self {
        self.client = client;
        self
    }

    /// How SRV names are resolved. [`DnsConfig::default`] (the system's) by default.
    pub fn dns(mut self, dns: DnsConfig) -> Self {
        self.dns = dns;
        self
    }

    /// Sets how long the pods stay paused: the period point-in-time recovery can restore
    /// to. 10 seconds by default, as the backup guide suggests.
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// Starts even when a pod already reports paused, and takes such pods over: the
    /// window's end (or its rollback) unpauses them too. Off by default: a pod paused by
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

    /// Sets the Pause options. [`PauseOptions::default`] by default; rollback always stays
    /// on, since a window never leaves pods paused on purpose.
    pub fn pause_options(mut self, pause: PauseOptions) -> Self {
        self.pause = pause;
        self
    }

    /// Sets what a failed action ([`run_with`](Self::run_with)) does to the window:
    /// [`OnActionError::Fail`] (the default) makes it INVALID, [`OnActionError::Continue`]
    /// only reports the error.
    pub fn on_action_error(mut self, on_error: OnActionError) -> Self {
        self.on_action_error = on_error;
        self
    }

    /// Runs windows until one is VALID or the attempts are used, and returns every window
    /// tried; the last is the one that counts.
    ///
    /// Fails, with every pause this run made undone and confirmed unless the error says
    /// otherwise, when the pods cannot be found, a pod reports paused by someone else
    /// (unless forced: [`Error::AlreadyPaused`]), Pause fails (rolled back), `cancel`
    /// completes (any future: a signal, a timer; [`Error::Interrupted`]), or the
    /// window's Unpause cannot be confirmed on every pod ([`Error::Release`], naming the
    /// pods that may still be paused). `cancel` is honoured at every step: connecting,
    /// pausing, the hold, the verification, and the confirmation of the Unpause.
    ///
    /// # Cancel safety
    ///
    /// Dropping this future while pods are paused leaves them paused: pass the signal as
    /// `cancel` instead, which unpauses them.
    pub async fn run<C: Future>(&self, cancel: C) -> Result<Vec<WindowReport>, Error> {
        self.run_inner(cancel, None::<fn(Paused) -> NoAction>, &mut ())
            .await
    }

    /// [`run`](Self::run), with a backup action run while every pod is paused: a
    /// snapshot, an on-demand backup, a copy of the data.
    ///
    /// `action` is called once per attempt, as soon as every pod is paused, with what
    /// the backup needs ([`Paused`]: the pause-completed instant, the attempt, the groups
    /// and their pods). The hold lasts at least [`hold`](Self::hold) and until the
    /// action's future ends; then the window is verified and unpaused as always, so the
    /// checks stay here. An error from the action is in [`WindowReport::action`], and
    /// makes the window INVALID ([`Finding::ActionFailed`]) unless
    /// [`on_action_error`](Self::on_action_error) says [`OnActionError::Continue`].
    /// The pods are unpaused in every case. When `cancel` completes during the action,
    /// the action's future is dropped (stopping it), the pods are unpaused, and the
    /// result is [`Error::Interrupted`]; a panic in the action unpauses them too before
    /// the panic goes on.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), scalar_admin::Error> {
    /// use std::time::Duration;
    /// use scalar_admin::window::{Group, Paused, Window};
    ///
    /// let windows = Window::new([Group::srv("_scalardb._tcp.scalardb-headless")])
    ///     .hold(Duration::from_secs(1))
    ///     .run_with(tokio::signal::ctrl_c(), |paused: Paused| async move {
    ///         // Take the snapshot of every database node here.
    ///         println!("paused at {:?}, {} pods", paused.pause_completed_at(), paused.pods().count());
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As for [`run`](Self::run): pass the signal as `cancel` rather than dropping this
    /// future.
    pub async fn run_with<C, A, F, E>(
        &self,
        cancel: C,
        action: A,
    ) -> Result<Vec<WindowReport>, Error>
    where
        C: Future,
        A: FnMut(Paused) -> F,
        F: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        self.run_inner(cancel, Some(action), &mut ()).await
    }

    /// [`run_with`](Self::run_with), telling `guard` what each attempt may hold: right
    /// before its first Pause is sent, and once it holds nothing any more. A guard that
    /// refuses to arm stops the run with nothing paused ([`Error::Guard`]).
    ///
    /// # Cancel safety
    ///
    /// As for [`run`](Self::run).
    pub async fn run_guarded<C, A, F, E, G>(
        &self,
        cancel: C,
        action: A,
        guard: &mut G,
    ) -> Result<Vec<WindowReport>, Error>
    where
        C: Future,
        A: FnMut(Paused) -> F,
        F: Future<Output = Result<(), E>>,
        E: fmt::Display,
        G: Guard,
    {
        self.run_inner(cancel, Some(action), guard).await
    }

    async fn run_inner<C, A, F, E, G>(
        &self,
        cancel: C,
        mut action: Option<A>,
        guard: &mut G,
    ) -> Result<Vec<WindowReport>, Error>
    where
        C: Future,
        A: FnMut(Paused) -> F,
        F: Future<Output = Result<(), E>>,
        E: fmt::Display,
        G: Guard,
    {
        let cancel = async {
            cancel.await;
        }
        .fuse();
        tokio::pin!(cancel);
        let mut windows = Vec::new();
        for attempt in 1..=self.attempts {
            let window = self
                .run_once(attempt, cancel.as_mut(), action.as_mut(), guard)
                .await?;
            let valid = window.verdict.is_valid();
            if !valid {
                // The findings in words: a log line, not the groups' inner structures.
                let reasons: Vec<String> = match &window.verdict {
                    Verdict::Invalid(findings) => {
                        findings.iter().map(ToString::to_string).collect()
                    }
                    Verdict::Valid => Vec::new(),
                };
                warn!(attempt, reasons = %reasons.join("; "), "window INVALID");
            }
            windows.push(window);
            if valid {
                break;
            }
        }
        Ok(windows)
    }

    /// Every group's pods now, resolved concurrently: the whole takes at most one
    /// resolution's time limit ([`DnsConfig::timeout`] and its tries), however many
    /// groups there are.
    async fn resolve_all(&self) -> Vec<(Group, Result<(Vec<Target>, Snapshot), Error>)> {
        let resolved = futures::future::join_all(
            self.groups
                .iter()
                .map(|g| g.resolve_with_snapshot(&self.dns)),
        )
        .await;
        self.groups.iter().cloned().zip(resolved).collect()
    }

    async fn run_once<A, F, E, G>(
        &self,
        attempt: usize,
        mut cancel: Pin<&mut Fuse<impl Future<Output = ()>>>,
        action: Option<&mut A>,
        guard: &mut G,
    ) -> Result<WindowReport, Error>
    where
        A: FnMut(Paused) -> F,
        F: Future<Output = Result<(), E>>,
        E: fmt::Display,
        G: Guard,
    {
        let looked = tokio::time::Instant::now();
        let resolved = tokio::select! {
            biased;
            () = cancel.as_mut() => {
                return Err(Error::Interrupted { rollback: Box::default() });
            }
            resolved = self.resolve_all() => resolved,
        };
        let mut groups = Vec::with_capacity(self.groups.len());
        for (group, found) in resolved {
            let (pods, snapshot) = found?;
            groups.push(GroupPods {
                group,
                pods,
                snapshot,
            });
        }
        #[cfg(feature = "kubernetes")]
        refuse_addresses_shared_across_clusters(&groups)?;
        let all = dedup_sorted(groups.iter().flat_map(|g| g.pods.iter().cloned()).collect());
        let connect = Fleet::connect(all, self.client.clone());
        let mut fleet = tokio::select! {
            biased;
            () = cancel.as_mut() => {
                return Err(Error::Interrupted { rollback: Box::default() });
            }
            fleet = connect => fleet,
        };

        // The checks before the Unpause do what this took (the API asked, every pod
        // asked): they are scheduled to end when the hold does.
        let lead = looked.elapsed();
        // From the first Pause on, a panic must not strand pods: undo this run's pause,
        // say what is left, then let the panic go on.
        let mut armed = false;
        let paused = AssertUnwindSafe(self.pause_and_verify(
            &mut fleet, attempt, groups, cancel, action, guard, &mut armed, lead,
        ));
        match paused.catch_unwind().await {
            Ok(result) => {
                // Released (or never paused): the guard may let go.
                if armed {
                    guard.disarm(attempt, result.as_ref()).await;
                }
                result
            }
            Err(panic) => {
                let rollback = fleet.release().await;
                error!(state = %rollback, "a panic interrupted the backup window");
                if armed {
                    guard.released(attempt, &rollback).await;
                }
                std::panic::resume_unwind(panic)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn pause_and_verify<A, F, E, G>(
        &self,
        fleet: &mut Fleet,
        attempt: usize,
        groups: Vec<GroupPods>,
        mut cancel: Pin<&mut Fuse<impl Future<Output = ()>>>,
        action: Option<&mut A>,
        guard: &mut G,
        armed: &mut bool,
        lead: Duration,
    ) -> Result<WindowReport, Error>
    where
        A: FnMut(Paused) -> F,
        F: Future<Output = Result<(), E>>,
        E: fmt::Display,
        G: Guard,
    {
        let mut attempt_guard = AttemptGuard {
            guard: &mut *guard,
            attempt,
            armed,
        };
        // `Fleet::pause` decides from the pods' fresh answers, and refuses pods paused
        // by someone else unless forced; the guard hears of the pods after that
        // decision, right before the first Pause leaves.
        let options = self.pause.rollback(true).take_over(self.force);
        let pause = fleet
            .pause_guarded(options, cancel.as_mut(), &mut attempt_guard)
            .await?;
        info!(completed_at = ?pause.completed_at(), "window open");

        // The hold, and the action alongside it: the window lasts until both are over.
        let run_action = async {
            let action = action?;
            let started = std::time::Instant::now();
            let result = action(Paused {
                attempt,
                pause_completed_at: pause.completed_at(),
                groups: groups.clone(),
            })
            .await;
            let outcome = ActionOutcome {
                duration: started.elapsed(),
                error: result.err().map(|e| e.to_string()),
            };
            match &outcome.error {
                None => info!(duration = ?outcome.duration, "backup action done"),
                Some(e) => warn!(error = %e, "backup action failed"),
            }
            Some(outcome)
        };
        // The pods stay paused for the hold asked, not the hold plus the checks: the
        // comparison with the groups (the API asked again) starts `lead` before the hold
        // ends, once the action is over, so that it ends about when the hold does; the
        // CheckPaused sweep, one round trip on open connections, goes at the hold's end,
        // so that it covers the whole hold. The Unpause waits for both. What changes in
        // the groups after the comparison, the snapshot after the Unpause still sees.
        let hold_end = tokio::time::Instant::now() + self.hold;
        let compare_at = hold_end
            .checked_sub(lead.min(self.hold))
            .unwrap_or(hold_end);
        let held_and_verified = async {
            let (outcome, ()) =
                futures::future::join(run_action, tokio::time::sleep_until(compare_at)).await;
            let verified = self.verify(fleet, &groups, hold_end).await;
            (outcome, verified)
        };
        let held = tokio::select! {
            biased;
            () = cancel.as_mut() => None,
            held = held_and_verified => Some(held),
        };
        let Some((action, (verify, mut verify_findings, before_unpause))) = held else {
            warn!("interrupted during the window; unpausing every pod this run paused");
            return Err(Error::Interrupted {
                rollback: Box::new(fleet.release().await),
            });
        };
        let mut findings = Vec::new();
        if let Some(error) = action.as_ref().and_then(|a| a.error.clone())
            && self.on_action_error == OnActionError::Fail
        {
            findings.push(Finding::ActionFailed { error });
        }
        findings.append(&mut verify_findings);

        // The confirmation honours the cancel too: cut short, it says what it confirmed.
        let release = fleet.release_until(cancel.as_mut()).await;
        guard.released(attempt, &release).await;
        if release.was_interrupted() {
            return Err(Error::Interrupted {
                rollback: Box::new(release),
            });
        }
        if !release.is_complete() {
            return Err(Error::Release {
                rollback: Box::new(release),
            });
        }
        // The backup guide's last step: the pods again, after the Unpause, against what
        // was paused (only the Kubernetes API has more to say than the check above).
        let groups_have_snapshots = groups.iter().any(|g| g.snapshot.is_some());
        let (after, after_unpause) = if groups_have_snapshots {
            self.compare(&groups).await
        } else {
            (Vec::new(), Vec::new())
        };
        for finding in after {
            if !findings
                .iter()
                .any(|f| f.to_string() == finding.to_string())
            {
                findings.push(finding);
            }
        }

        let verdict = if findings.is_empty() {
            Verdict::Valid
        } else {
            Verdict::Invalid(findings)
        };
        Ok(WindowReport {
            hold: self.hold,
            groups,
            pause,
            verify,
            release,
            before_unpause: if groups_have_snapshots {
                before_unpause
            } else {
                Vec::new()
            },
            after_unpause,
            action,
            verdict,
        })
    }

    /// Re-resolves every SRV group and asks the Kubernetes API again, and asks every pod
    /// whether it is still paused, no earlier than `check_at` (and after the comparison
    /// if that takes longer).
    async fn verify(
        &self,
        fleet: &mut Fleet,
        groups: &[GroupPods],
        check_at: tokio::time::Instant,
    ) -> (Report, Vec<Finding>, Vec<Snapshot>) {
        let check = async {
            tokio::time::sleep_until(check_at).await;
            fleet.check_report().await
        };
        let ((mut findings, snapshots), verify) = futures::join!(self.compare(groups), check);
        for pod in verify.pods() {
            match pod.outcome() {
                Ok(_) if pod.paused() == Some(true) => {}
                Ok(_) => findings.push(Finding::Unpaused {
                    pod: pod.target().clone(),
                }),
                Err(e) => findings.push(Finding::Unchecked {
                    pod: pod.target().clone(),
                    error: e.clone(),
                }),
            }
        }
        (verify, findings, snapshots)
    }

    /// What changed in the groups since they were paused: the SRV answer's pods, and
    /// the Kubernetes API's pods, restarts, UIDs and owners. Every group at once.
    /// Returns the findings, and each group's snapshot now.
    async fn compare(&self, groups: &[GroupPods]) -> (Vec<Finding>, Vec<Snapshot>) {
        let now =
            futures::future::join_all(groups.iter().map(|g| g.group.rediscover(&self.dns))).await;
        let mut findings = Vec::new();
        let mut snapshots = Vec::new();
        for (then, now) in groups.iter().zip(now) {
            let group = &then.group;
            match now {
                None => {}
                Some(Ok((pods, snapshot))) => {
                    if let Some((added, removed)) = set_change(&then.pods, &pods) {
                        findings.push(Finding::EndpointsChanged {
                            group: group.clone(),
                            added,
                            removed,
                        });
                    }
                    #[cfg(feature = "kubernetes")]
                    if let (Some(before), Some(after)) = (&then.snapshot, &snapshot) {
                        findings.extend(before.changes(after).into_iter().map(|change| {
                            Finding::Changed {
                                group: group.clone(),
                                change,
                            }
                        }));
                    }
                    snapshots.push(snapshot);
                    continue;
                }
                Some(Err(e)) => findings.push(Finding::NotResolved {
                    group: group.clone(),
                    error: as_discovery_error(&group.to_string(), e),
                }),
            }
            snapshots.push(None);
        }
        (findings, snapshots)
    }
}

fn as_discovery_error(name: &str, error: Error) -> DiscoveryError {
    match error {
        Error::Discovery(e) => e,
        other => {
            DiscoveryError::new(name, DiscoveryErrorKind::Other).with_source(other.to_string())
        }
    }
}

/// Whether the paused period can be restored to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Verdict {
    /// Every pod stayed paused and no pod was added or removed.
    Valid,
    /// Something changed during the window.
    Invalid(Vec<Finding>),
}

impl Verdict {
    /// Whether the window is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid)
    }

    /// What made the window invalid; empty for a valid one.
    pub fn findings(&self) -> &[Finding] {
        match self {
            Verdict::Valid => &[],
            Verdict::Invalid(findings) => findings,
        }
    }
}

/// Something that makes a window invalid. `Display` says it in plain words.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Finding {
    /// The SRV name lists other pods than those paused: a pod added meanwhile ran
    /// unpaused, or a removed one may be restarting.
    EndpointsChanged {
        /// The group.
        group: Group,
        /// Pods listed now and not paused.
        added: Vec<Target>,
        /// Pods paused and no longer listed.
        removed: Vec<Target>,
    },
    /// The SRV name could not be resolved again, so the pod set is unknown.
    NotResolved {
        /// The group.
        group: Group,
        /// Why.
        error: DiscoveryError,
    },
    /// A pod reported unpaused during the window: it restarted, or someone unpaused it.
    Unpaused {
        /// The pod.
        pod: Target,
    },
    /// The Kubernetes API shows a change: a pod restarted, replaced, added, removed or
    /// no longer ready, or its Deployment rolled out.
    #[cfg(feature = "kubernetes")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
    Changed {
        /// The group.
        group: Group,
        /// What changed.
        change: crate::kubernetes::Change,
    },
    /// The backup action ([`Window::run_with`]) failed, and
    /// [`Window::on_action_error`] is [`OnActionError::Fail`].
    ActionFailed {
        /// The action's error, in words.
        error: String,
    },
    /// A pod could not be asked whether it was still paused.
    Unchecked {
        /// The pod.
        pod: Target,
        /// Why.
        error: CallError,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |pods: &[Target]| -> String {
            pods.iter().map(Target::name).collect::<Vec<_>>().join(", ")
        };
        match self {
            Finding::EndpointsChanged {
                group,
                added,
                removed,
            } => {
                write!(f, "{group}: endpoint set changed:")?;
                if !added.is_empty() {
                    write!(f, " added {}", names(added))?;
                }
                if !removed.is_empty() {
                    write!(f, " removed {}", names(removed))?;
                }
                Ok(())
            }
            Finding::NotResolved { error, .. } => write!(f, "could not re-resolve: {error}"),
            Finding::Unpaused { pod } => {
                write!(f, "{pod} reported unpaused during the window: restarted?")
            }
            #[cfg(feature = "kubernetes")]
            Finding::Changed { change, .. } => write!(f, "{change}"),
            Finding::ActionFailed { error } => write!(f, "the backup action failed: {error}"),
            Finding::Unchecked { pod, error } => {
                write!(f, "{pod} could not be checked: {}", error.chain())
            }
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Verdict", 2)?;
        st.serialize_field("verdict", if self.is_valid() { "VALID" } else { "INVALID" })?;
        let reasons: Vec<String> = self.findings().iter().map(ToString::to_string).collect();
        st.serialize_field("reasons", &reasons)?;
        st.end()
    }
}

/// One window that was paused and unpaused.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WindowReport {
    /// The hold asked for ([`Window::hold`]).
    #[cfg_attr(feature = "serde", serde(skip))]
    hold: Duration,
    groups: Vec<GroupPods>,
    pause: Report,
    verify: Report,
    release: Rollback,
    /// Each group's Kubernetes snapshot just before the Unpause, and after it (empty
    /// without one).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    before_unpause: Vec<Snapshot>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    after_unpause: Vec<Snapshot>,
    /// The backup action's outcome, when there was one.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    action: Option<ActionOutcome>,
    #[cfg_attr(feature = "serde", serde(flatten))]
    verdict: Verdict,
}

impl WindowReport {
    /// The hold asked for ([`Window::hold`]), to compare with what each pod saw
    /// ([`paused_per_pod`](Self::paused_per_pod)).
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// How long each pod was paused, as this side of the wire can bound it: at least
    /// from its answer to the Pause to the Unpause leaving for it, at most from the
    /// Pause leaving to its answer to the Unpause. In the Pause's order; a pod without
    /// both answers (none in a window that completed) is left out.
    pub fn paused_per_pod(&self) -> Vec<PodPause> {
        let Some(unpause) = self.release.report() else {
            return Vec::new();
        };
        self.pause
            .pods()
            .iter()
            .filter(|p| p.outcome().is_ok())
            .filter_map(|paused| {
                let unpaused = unpause
                    .pods()
                    .iter()
                    .find(|u| u.target() == paused.target() && u.outcome().is_ok())?;
                let span =
                    |from: SystemTime, to: SystemTime| to.duration_since(from).unwrap_or_default();
                Some(PodPause {
                    target: paused.target().clone(),
                    at_least: span(paused.received_at(), unpaused.sent_at()),
                    at_most: span(paused.sent_at(), unpaused.received_at()),
                })
            })
            .collect()
    }

    /// The pods of each group, as paused.
    pub fn groups(&self) -> &[GroupPods] {
        &self.groups
    }

    /// The Pause fan-out over every group.
    pub fn pause(&self) -> &Report {
        &self.pause
    }

    /// CheckPaused just before unpausing.
    pub fn verify(&self) -> &Report {
        &self.verify
    }

    /// Each group's Kubernetes snapshot just before the Unpause, in group order (empty
    /// when no group came from the Kubernetes API).
    #[cfg(feature = "kubernetes")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
    pub fn snapshots_before_unpause(
        &self,
    ) -> impl Iterator<Item = Option<&crate::kubernetes::Snapshot>> {
        self.before_unpause.iter().map(Option::as_ref)
    }

    /// Each group's Kubernetes snapshot after the Unpause, in group order (empty when
    /// no group came from the Kubernetes API).
    #[cfg(feature = "kubernetes")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
    pub fn snapshots_after_unpause(
        &self,
    ) -> impl Iterator<Item = Option<&crate::kubernetes::Snapshot>> {
        self.after_unpause.iter().map(Option::as_ref)
    }

    /// The window's release: its Unpause and CheckPaused rounds, and the pods each
    /// confirmed unpaused.
    pub fn release(&self) -> &Rollback {
        &self.release
    }

    /// How the backup action went ([`Window::run_with`]); `None` without one.
    pub fn action(&self) -> Option<&ActionOutcome> {
        self.action.as_ref()
    }

    /// The verdict.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// When the last pod finished pausing: the window's start.
    pub fn pause_completed_at(&self) -> SystemTime {
        self.pause.completed_at()
    }

    /// When unpausing began: the window's end. Taken on the same monotonic-anchored
    /// clock as [`pause_completed_at`](Self::pause_completed_at), so the window's length
    /// is true even if the system clock stepped during the hold.
    pub fn unpause_started_at(&self) -> SystemTime {
        self.release
            .report()
            .map_or(self.pause.completed_at(), Report::started_at)
    }

    /// The middle of the window, the safest restore point.
    pub fn midpoint(&self) -> SystemTime {
        let start = self.pause_completed_at();
        start.checked_add(self.length() / 2).unwrap_or(start)
    }

    /// The window's length.
    pub fn length(&self) -> Duration {
        self.unpause_started_at()
            .duration_since(self.pause_completed_at())
            .unwrap_or_default()
    }
}

/// How long one pod of a window was paused ([`WindowReport::paused_per_pod`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPause {
    target: Target,
    at_least: Duration,
    at_most: Duration,
}

impl PodPause {
    /// The pod.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// From its answer to the Pause to the Unpause leaving for it: it was paused at
    /// least this long.
    pub fn at_least(&self) -> Duration {
        self.at_least
    }

    /// From the Pause leaving for it to its answer to the Unpause: at most this long.
    pub fn at_most(&self) -> Duration {
        self.at_most
    }
}

/// What a backup action ([`Window::run_with`]) gets once every pod is paused.
#[derive(Debug, Clone)]
pub struct Paused {
    attempt: usize,
    pause_completed_at: SystemTime,
    groups: Vec<GroupPods>,
}

impl Paused {
    /// When the last pod finished pausing: the window's start, the instant a snapshot
    /// taken now stands for.
    pub fn pause_completed_at(&self) -> SystemTime {
        self.pause_completed_at
    }

    /// Which attempt this is, from 1 ([`Window::attempts`]).
    pub fn attempt(&self) -> usize {
        self.attempt
    }

    /// Every group and the pods it had when paused.
    pub fn groups(&self) -> &[GroupPods] {
        &self.groups
    }

    /// Every paused pod, group after group.
    pub fn pods(&self) -> impl Iterator<Item = &Target> {
        self.groups.iter().flat_map(|g| g.pods.iter())
    }
}

/// What a failed backup action does to its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnActionError {
    /// The window is INVALID ([`Finding::ActionFailed`]): do not restore to it.
    #[default]
    Fail,
    /// The error is reported, and the verdict comes from the checks alone.
    Continue,
}

/// How a backup action went.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    duration: Duration,
    error: Option<String>,
}

impl ActionOutcome {
    /// How long the action ran.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Its error, in words; `None` when it succeeded.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether it succeeded.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ActionOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ActionOutcome", 3)?;
        st.serialize_field("ok", &self.is_ok())?;
        st.serialize_field(
            "duration_us",
            &u64::try_from(self.duration.as_micros()).unwrap_or(u64::MAX),
        )?;
        st.serialize_field("error", &self.error)?;
        st.end()
    }
}

/// Told what a window may hold, so that someone outside it can end the pause when this
/// process cannot: a guardian process that unpauses when the tool is killed or its lease
/// runs out (the CLI's), a journal of the windows.
///
/// [`arm`](Self::arm) comes before anything of the attempt is paused, and
/// [`disarm`](Self::disarm) once it holds nothing: what happens between the two is the
/// guard's to cover. A guard that must act on the pods reaches them with
/// [`Fleet::adopt`], which treats every pod given as this run's.
pub trait Guard {
    /// Called once per attempt, after the decision to pause (no pod is paused by someone
    /// else, unless forced) and right before the first Pause leaves, with the pods it
    /// goes to. An error stops the window with nothing sent ([`Error::Guard`]).
    fn arm(&mut self, attempt: usize, pods: &[Target]) -> impl Future<Output = Result<(), String>>;

    /// Called when an armed attempt's Pause failed or was interrupted, before its
    /// rollback starts (an attempt interrupted before its arming is not narrowed), with
    /// the pods that may hold this run's pause: those that answered that
    /// someone else's pause holds them are no longer this attempt's. Does nothing by
    /// default.
    fn narrow(&mut self, attempt: usize, holding: &[Target]) -> impl Future<Output = ()> {
        let _ = (attempt, holding);
        async {}
    }

    /// Called during an armed attempt's Pause, the moment a pod's answer says that this
    /// run does not hold it ([`PauseGuard::leave`]): it must not wait. Does nothing by
    /// default.
    fn leave(&mut self, attempt: usize, pod: &Target) {
        let _ = (attempt, pod);
    }

    /// Called as soon as an attempt's window was released (its Unpause confirmed, or
    /// not: `rollback` says which pods may still be paused), before the comparison
    /// that follows the Unpause; [`disarm`](Self::disarm) comes once the attempt has
    /// its verdict. Does nothing by default.
    fn released(&mut self, attempt: usize, rollback: &Rollback) -> impl Future<Output = ()> {
        let _ = (attempt, rollback);
        async {}
    }

    /// Called when an armed attempt is over: its window was released (`Ok`, whatever
    /// the verdict), or it failed and what it paused was rolled back (`Err`, whose
    /// rollback says what may still be paused). Not called after a panic, which
    /// unpauses, calls [`released`](Self::released), and then goes on.
    fn disarm(
        &mut self,
        attempt: usize,
        outcome: Result<&WindowReport, &Error>,
    ) -> impl Future<Output = ()>;
}

/// Refuses, before anything is sent, an address that groups of two different Kubernetes
/// configurations (two clusters) both give: clusters often share a pod network range, and
/// the one pod this host reaches at that address would be paused and checked for both,
/// while the other cluster's pod is never paused.
#[cfg(feature = "kubernetes")]
fn refuse_addresses_shared_across_clusters(groups: &[GroupPods]) -> Result<(), Error> {
    let mut seen: std::collections::HashMap<(crate::target::Host, u16), (&GroupPods, &Target)> =
        std::collections::HashMap::new();
    for group in groups {
        let Group::Kubernetes(kube) = &group.group else {
            continue;
        };
        for pod in &group.pods {
            let key = (pod.host().clone(), pod.port());
            match seen.get(&key) {
                Some((other, first)) => {
                    let Group::Kubernetes(other_kube) = &other.group else {
                        continue;
                    };
                    if other_kube.config() != kube.config() {
                        let why = format!(
                            "{} ({}) and {} ({}) are both at {}: the clusters' pod networks \
                             overlap, and this host reaches one pod there; pause them \
                             from a host in each cluster",
                            first.name(),
                            other.group,
                            pod.name(),
                            group.group,
                            pod.address()
                        );
                        return Err(DiscoveryError::new(
                            &group.group.to_string(),
                            DiscoveryErrorKind::Inconsistent(why),
                        )
                        .into());
                    }
                }
                None => {
                    seen.insert(key, (group, pod));
                }
            }
        }
    }
    Ok(())
}

/// One attempt's [`Guard`] as the fleet's [`PauseGuard`].
struct AttemptGuard<'a, G> {
    guard: &'a mut G,
    attempt: usize,
    armed: &'a mut bool,
}

impl<G: Guard> PauseGuard for AttemptGuard<'_, G> {
    async fn arm(&mut self, pods: &[Target]) -> Result<(), String> {
        // Armed from the call on: a guard that fails or is cancelled half-way is still
        // told to let go.
        *self.armed = true;
        self.guard.arm(self.attempt, pods).await
    }

    async fn narrow(&mut self, holding: &[Target]) {
        // Only what this attempt armed: a cancel before the arming narrows nothing (an
        // earlier attempt's pods the guard still holds are not this attempt's).
        if *self.armed {
            self.guard.narrow(self.attempt, holding).await;
        }
    }

    fn leave(&mut self, pod: &Target) {
        if *self.armed {
            self.guard.leave(self.attempt, pod);
        }
    }
}

/// No guard: what [`Window::run`] and [`Window::run_with`] use.
impl Guard for () {
    async fn arm(&mut self, _: usize, _: &[Target]) -> Result<(), String> {
        Ok(())
    }

    async fn disarm(&mut self, _: usize, _: Result<&WindowReport, &Error>) {}
}

/// The action of a window without one.
type NoAction = std::future::Ready<Result<(), std::convert::Infallible>>;

/// The pods added and removed between two endpoint sets, compared by address and name.
fn set_change(before: &[Target], after: &[Target]) -> Option<(Vec<Target>, Vec<Target>)> {
    let key = |t: &Target| (t.address(), t.name().to_owned());
    let before_keys: BTreeSet<_> = before.iter().map(key).collect();
    let after_keys: BTreeSet<_> = after.iter().map(key).collect();
    let added: Vec<Target> = after
        .iter()
        .filter(|t| !before_keys.contains(&key(t)))
        .cloned()
        .collect();
    let removed: Vec<Target> = before
        .iter()
        .filter(|t| !after_keys.contains(&key(t)))
        .cloned()
        .collect();
    (!added.is_empty() || !removed.is_empty()).then_some((added, removed))
}

#[cfg(all(test, feature = "kubernetes"))]
mod tests {
    use super::*;
    use crate::kubernetes::{KubeConfig, KubeGroup, Selector};

    fn group(context: &str, release: &str, pods: Vec<Target>) -> GroupPods {
        GroupPods {
            group: Group::Kubernetes(KubeGroup::new(
                KubeConfig::default().context(context),
                Selector::Release(release.to_owned()),
            )),
            pods,
            snapshot: None,
        }
    }

    #[test]
    fn an_address_two_clusters_both_give_is_refused_before_anything_is_sent() {
        let pod: Target = "10.244.0.5:60051".parse().unwrap();
        let other: Target = "10.244.0.6:60051".parse().unwrap();
        let error = refuse_addresses_shared_across_clusters(&[
            group("tokyo", "ledger", vec![pod.clone()]),
            group("osaka", "auditor", vec![other.clone(), pod.clone()]),
        ])
        .unwrap_err();
        assert!(
            error.to_string().contains("pod networks overlap"),
            "{error}"
        );
        // One cluster's groups, or two clusters without a shared address, go on.
        let one_cluster = [
            group("tokyo", "ledger", vec![pod.clone()]),
            group("tokyo", "auditor", vec![pod.clone()]),
        ];
        assert!(refuse_addresses_shared_across_clusters(&one_cluster).is_ok());
        let apart = [
            group("tokyo", "ledger", vec![pod]),
            group("osaka", "auditor", vec![other]),
        ];
        assert!(refuse_addresses_shared_across_clusters(&apart).is_ok());
    }
}
