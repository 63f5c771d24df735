//! The guardian: a second process that ends this run's pause when the tool cannot.
//!
//! SIGTERM and SIGINT make the tool unpause, but SIGKILL, an OOM kill or a crash during a
//! window's hold would leave every pod paused, and a paused ScalarDB refuses every
//! transaction. So before a window's first Pause the tool starts a guardian: the same
//! binary in a hidden role ([`role`]), in a session of its own so that a signal to the
//! tool's process group does not reach it, holding one end of a socket pair as its
//! standard input ([`link`]). The tool first sends it everything it needs to reach the
//! pods; right before each attempt's first Pause it sends the pods and a lease and waits
//! for the answer; once the Pause is answered it says so, and once the attempt's
//! Unpause is confirmed it lets go (or hands over only the pods it could not confirm).
//! When the socket closes while an attempt is armed, the tool has died: the guardian
//! kills the `--exec` command's process group, unpauses the pods with the confirmed
//! rollback ([`Fleet::adopt`]), and only then says so on stderr. When the lease passes,
//! or a signal stops the guardian, it tells the tool and does the same; the tool's
//! window then ends interrupted. The tool watches the socket too: when the guardian
//! dies, its window is interrupted and unpaused at once.
//!
//! As PID 1 of a container the tool cannot be the one that survives: when PID 1 dies, the
//! kernel kills its whole PID namespace. There the first process becomes the guardian, as
//! tini-style init processes do ([`init`]), and runs the tool as its child (a worker),
//! linked the same way through the child's standard input. An OOM kill picks the largest
//! process, the worker; the guardian then unpauses.
//!
//! `-c PAUSE --max-hold` gives a plain pause the same lease ([`lease`]): the tool hands
//! the paused pods over ("detach") and exits as usual.

mod init;
mod lease;
mod link;
mod role;

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use scalar_admin::{ClientConfig, Fleet, Rollback, Target, Unconfirmed};
use tokio::io::AsyncWriteExt as _;
use tokio::net::UnixStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub(crate) use init::init;
pub(crate) use lease::revoke as revoke_leases;
pub(crate) use link::{Setup, TlsSetup};
pub(crate) use role::{Role, leave_the_tools_session, role};

use link::{Pod, ToGuardian, ToTool, pods_of, reader, send, targets_of};

/// How long the tool waits for the guardian to start, or to answer a message.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// How long the worker may take to exit once its link closed, before it is killed.
const WORKER_EXIT: Duration = Duration::from_secs(10);

/// The tool's side of the link.
pub(crate) struct Guardian {
    to: mpsc::UnboundedSender<ToGuardian>,
    answers: mpsc::UnboundedReceiver<Result<(), String>>,
    lost: watch::Receiver<Option<String>>,
    writer: tokio::task::JoinHandle<()>,
    lease: Duration,
    /// An answer did not come in time: a late one must not pass for the next one's.
    broken: bool,
}

/// Hands the guardian the `--exec` command's process group.
#[derive(Clone)]
pub(crate) struct Notifier(mpsc::UnboundedSender<ToGuardian>);

impl Notifier {
    pub(crate) fn started(&self, pgid: Pid) {
        let _ = self.0.send(ToGuardian::Exec {
            pgid: Some(pgid.as_raw_nonzero().get()),
        });
    }

    pub(crate) fn ended(&self) {
        let _ = self.0.send(ToGuardian::Exec { pgid: None });
    }

    /// Every pod answered the Pause (the action runs only then).
    pub(crate) fn answered(&self) {
        let _ = self.0.send(ToGuardian::Answered);
    }
}

impl Guardian {
    /// Starts the guardian with each attempt's `lease`, hands it the `setup`, and waits
    /// until it is ready: as a process of its own, or, in a `worker`, the parent that
    /// started this process.
    pub(crate) async fn start(
        lease: Duration,
        setup: Setup,
        worker: bool,
    ) -> Result<Guardian, String> {
        let link = if worker {
            role::stdin_link()?
        } else {
            let (ours, theirs) = role::socket_pair()?;
            // Not waited for: it outlives this process on purpose.
            role::this_binary("guardian", theirs, &[])?
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start the guardian process: {e}"))?;
            ours
        };
        let (read, mut write) = link.into_split();
        let (to, mut outbox) = mpsc::unbounded_channel::<ToGuardian>();
        let writer = tokio::spawn(async move {
            while let Some(message) = outbox.recv().await {
                if send(&mut write, &message).await.is_err() {
                    break;
                }
            }
            let _ = write.shutdown().await;
        });
        let (answered, answers) = mpsc::unbounded_channel();
        let (lose, lost) = watch::channel(None);
        let mut messages = reader::<ToTool>(read);
        tokio::spawn(async move {
            let why = loop {
                match messages.recv().await {
                    Some(Ok(Some(ToTool::Ready))) => {
                        let _ = answered.send(Ok(()));
                    }
                    Some(Ok(Some(ToTool::Refused { why }))) => {
                        let _ = answered.send(Err(why));
                    }
                    Some(Ok(Some(ToTool::Unpausing { why }))) => break why,
                    Some(Ok(None)) | None => break "the guardian process ended".to_owned(),
                    Some(Err(e)) => break format!("the guardian's link broke: {e}"),
                }
            };
            let _ = lose.send(Some(why));
        });
        let mut guardian = Guardian {
            to,
            answers,
            lost,
            writer,
            lease,
            broken: false,
        };
        guardian
            .ask(ToGuardian::Setup(setup))
            .await
            .map_err(|e| format!("the guardian did not start: {e}"))?;
        Ok(guardian)
    }

    async fn answer(&mut self) -> Result<(), String> {
        if self.broken {
            return Err("it did not answer in time before".to_owned());
        }
        let mut lost = self.lost.clone();
        let answer = tokio::select! {
            // An answer already read wins over the end of the link that followed it.
            biased;
            answer = tokio::time::timeout(ANSWER_WITHIN, self.answers.recv()) => match answer {
                Ok(Some(answer)) => answer,
                Ok(None) => Err("the guardian process ended".to_owned()),
                Err(_) => Err(format!("no answer within {} s", ANSWER_WITHIN.as_secs())),
            },
            why = lost.wait_for(Option::is_some) => {
                Err(why.ok().and_then(|w| w.clone()).unwrap_or_default())
            }
        };
        self.broken = answer.is_err();
        answer
    }

    /// Sends `message` and waits for its answer.
    async fn ask(&mut self, message: ToGuardian) -> Result<(), String> {
        self.to
            .send(message)
            .map_err(|_| "the guardian's link closed".to_owned())?;
        self.answer().await
    }

    /// Completes when the guardian can no longer guard: it died, or it is unpausing the
    /// pods itself (its lease passed, a signal).
    pub(crate) fn lost(&self) -> impl Future<Output = String> + 'static {
        let mut lost = self.lost.clone();
        async move {
            match lost.wait_for(Option::is_some).await {
                Ok(why) => why.clone().unwrap_or_default(),
                // The reader is gone without a word: so is the link.
                Err(_) => "the guardian's link closed".to_owned(),
            }
        }
    }

    pub(crate) fn notifier(&self) -> Notifier {
        Notifier(self.to.clone())
    }

    /// Hands `pods` over before their Pause leaves; the pause must not start unless the
    /// guardian took them.
    pub(crate) async fn arm(&mut self, attempt: usize, pods: &[Target]) -> Result<(), String> {
        let message = ToGuardian::Arm {
            attempt,
            lease_ms: millis(self.lease),
            pods: pods_of(pods),
        };
        self.ask(message)
            .await
            .map_err(|e| format!("the guardian did not take the pods: {e}"))
    }

    /// The attempt's Pause failed: only `holding` may hold it now (a pod that answered
    /// that someone else's pause holds it is not this run's to unpause, even if this
    /// process dies during its rollback).
    pub(crate) async fn narrow(&mut self, holding: &[Target]) {
        let message = ToGuardian::Narrow {
            pods: pods_of(holding),
        };
        if let Err(e) = self.ask(message).await {
            tracing::warn!(error = %e, "the guardian did not answer");
        }
    }

    /// A pod's answer to the Pause says that this run does not hold it: the guardian
    /// drops it at once, unanswered, so that this process dying before the fan-out ends
    /// cannot make the guardian unpause it.
    pub(crate) fn leave(&self, pod: &Target) {
        let _ = self.to.send(ToGuardian::Leave { pod: Pod::of(pod) });
    }

    /// The attempt's rollback (`Fleet::release`) is over: the guardian lets go, except of
    /// the pods `rollback` could not confirm unpaused (and that may be this run's), which
    /// it tries once more when this process exits.
    pub(crate) async fn let_go(&mut self, rollback: Option<&Rollback>) {
        let stuck: Vec<Target> = rollback
            .map(|r| r.stuck())
            .unwrap_or_default()
            .iter()
            // Unpaused by this run (its Unpause answered OK): a pause seen on it later is
            // someone else's, which the guardian must not end.
            .filter(|s| {
                !matches!(
                    s.why(),
                    Unconfirmed::PausedAgain | Unconfirmed::UnpausedUnchecked
                )
            })
            .map(|s| s.target().clone())
            .collect();
        let message = if stuck.is_empty() {
            ToGuardian::Disarm
        } else {
            ToGuardian::Retry {
                pods: pods_of(&stuck),
            }
        };
        if let Err(e) = self.ask(message).await {
            tracing::warn!(error = %e, "the guardian did not answer");
        }
    }

    /// Hands a plain pause's pods over for the guardian to hold until `lease` passes,
    /// after this process exits; an error when it did not take them.
    pub(crate) async fn detach(mut self, pods: &[Target], lease: Duration) -> Result<(), String> {
        let taken = self
            .ask(ToGuardian::Detach {
                lease_ms: millis(lease),
                pods: pods_of(pods),
            })
            .await;
        self.finish().await;
        taken
    }

    /// Closes the link once everything sent is written: the guardian, if disarmed, exits.
    pub(crate) async fn finish(self) {
        let Guardian { to, writer, .. } = self;
        drop(to);
        let _ = tokio::time::timeout(ANSWER_WITHIN, writer).await;
    }
}

/// This run's guard of one pause attempt: a lease of an earlier pause on the pods is
/// revoked (the pods are this run's now), and the guardian, if any, takes them right
/// before the Pause leaves and is narrowed before a rollback.
pub(crate) struct PauseWatch<'a> {
    guardian: &'a mut Option<Guardian>,
    attempt: usize,
    /// The pods whose lease let go of them for this attempt ([`lease::Prepared::commit`]):
    /// those this attempt's Pause then does not take are left paused by the earlier
    /// pause with no lease to end it, and must be named ([`crate::recovery::unleased`]).
    let_go: &'a mut Vec<Target>,
    /// Whether [`arm`](scalar_admin::PauseGuard::arm) was called: only then is there
    /// anything of this attempt's to narrow.
    armed: bool,
}

impl<'a> PauseWatch<'a> {
    pub(crate) fn new(
        guardian: &'a mut Option<Guardian>,
        attempt: usize,
        let_go: &'a mut Vec<Target>,
    ) -> Self {
        Self {
            guardian,
            attempt,
            let_go,
            armed: false,
        }
    }
}

impl scalar_admin::PauseGuard for PauseWatch<'_> {
    async fn arm(&mut self, pods: &[Target]) -> Result<(), String> {
        // Everything that can refuse comes before any lease lets go: a refused pause
        // leaves each lease holding its pod. The leases are asked first (nothing is
        // revoked yet), then the guardian takes the pods, and only then do the leases
        // let go, right before the Pause leaves.
        self.armed = true;
        let prepared = lease::prepare(pods).await?;
        if let Some(guardian) = self.guardian.as_mut() {
            guardian.arm(self.attempt, pods).await?;
        }
        prepared.commit(self.let_go).await
    }

    async fn narrow(&mut self, holding: &[Target]) {
        // A cancel before the arming has nothing of this attempt's to narrow, and must
        // not narrow away pods the guardian still holds for an earlier one (`Retry`).
        if !self.armed {
            return;
        }
        if let Some(guardian) = self.guardian.as_mut() {
            guardian.narrow(&with_let_go(holding, self.let_go)).await;
        }
    }

    fn leave(&mut self, pod: &Target) {
        // A pod a lease let go of for this pause is the forced pause's own: if this
        // process dies, the guardian unpauses it, since no lease will any more.
        if self.let_go.contains(pod) {
            return;
        }
        if let (true, Some(guardian)) = (self.armed, self.guardian.as_ref()) {
            guardian.leave(pod);
        }
    }
}

/// `holding` and the pods whose lease let go of them for this pause (a forced pause's
/// own, which no lease ends any more).
pub(crate) fn with_let_go(holding: &[Target], let_go: &[Target]) -> Vec<Target> {
    let mut pods = holding.to_vec();
    for pod in let_go {
        if !pods.contains(pod) {
            pods.push(pod.clone());
        }
    }
    pods
}

/// Adds to `pods` the ones handed over for a retry (`retried`) that it lacks.
fn keep_retried(pods: &mut Vec<Target>, retried: &[Target]) {
    for pod in retried {
        if !pods.iter().any(|p| p.address() == pod.address()) {
            pods.push(pod.clone());
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the guardian holds.
struct Armed {
    pods: Vec<Target>,
    lease: Duration,
    until: Instant,
    /// Whether every Pause of the attempt was answered: none can land later.
    answered: bool,
}

impl Armed {
    fn new(lease_ms: u64, pods: &[Pod]) -> Result<Armed, String> {
        let lease = Duration::from_millis(lease_ms);
        Ok(Armed {
            pods: targets_of(pods)?,
            lease,
            until: Instant::now().checked_add(lease).unwrap_or_else(far_future),
            answered: false,
        })
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// The signals the guardian handles.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    children: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installed before anything else, a child included: from here on these signals
    /// are events, never the end of the process.
    fn install() -> Result<Signals, String> {
        let install =
            |kind| signal(kind).map_err(|e| format!("cannot install signal handlers: {e}"));
        Ok(Signals {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
            hup: install(SignalKind::hangup())?,
            children: install(SignalKind::child())?,
        })
    }
}

/// How the guardian's watch ended.
enum Ended {
    /// The link closed: the tool exited, or died.
    ToolGone,
    LeasePassed,
    Signal(&'static str),
    Detached(Armed),
}

/// How the guardian reaches the pods and reports what it did.
struct Unpause {
    client: ClientConfig,
    recovery_flags: Vec<String>,
}

impl Unpause {
    /// Unpauses `pods` with the confirmed rollback, then says so on stderr: acting comes
    /// first, and no message waits on stderr anyway ([`crate::stderr`]).
    async fn run(&self, why: &str, pods: Vec<Target>, answered: bool, since: Instant) -> Rollback {
        enough_open_files(pods.len());
        let names: Vec<String> = pods.iter().map(|t| t.name().to_owned()).collect();
        let mut fleet = Fleet::adopt(pods, self.client.clone(), answered).await;
        let rollback = fleet.release().await;
        let _ = fleet.into_paused();
        tell!(
            "guardian: {why}; rollback of the {} pod(s) this run may have paused: {}",
            names.len(),
            names.join(", ")
        );
        crate::recovery::rolled_back(&self.recovery_flags, "guardian", &rollback);
        tell!(
            "guardian: done in {:.3} s (connect, Unpause, and CheckPaused until confirmed)",
            since.elapsed().as_secs_f64()
        );
        rollback
    }
}

/// Raises the open-files limit for `pods` connections, as the tool did for its own.
fn enough_open_files(pods: usize) {
    if let Err(e) = crate::limits::open_files_for(pods) {
        tell!("guardian: warning: {e}");
    }
}

/// The guardian's loop: take the setup, then what the tool arms, and unpause it when
/// the tool dies, the lease passes, or a signal says stop.
async fn serve(
    link: UnixStream,
    mut worker: Option<init::Worker>,
    mut signals: Signals,
) -> ExitCode {
    let (read, mut write) = link.into_split();
    let mut messages = reader::<ToGuardian>(read);
    // The first message says how to reach the pods; until it came, nothing is armed.
    let setup = match messages.recv().await {
        Some(Ok(Some(ToGuardian::Setup(setup)))) => setup,
        _ => {
            if let Some(w) = &mut worker {
                return ExitCode::from(w.exit(&mut signals.children, WORKER_EXIT).await);
            }
            tell!("guardian: error: the tool sent no setup; nothing is guarded");
            return ExitCode::from(2);
        }
    };
    let unpause = match setup.client() {
        Ok(client) => Unpause {
            client,
            recovery_flags: setup.recovery_flags,
        },
        Err(e) => {
            let _ = send(&mut write, &ToTool::Refused { why: e }).await;
            return ExitCode::FAILURE;
        }
    };
    if send(&mut write, &ToTool::Ready).await.is_err() {
        return ExitCode::FAILURE;
    }
    let mut armed: Option<Armed> = None;
    // The pods the tool handed over as not confirmed unpaused (`Retry`): held, and tried
    // once more when the tool exits; a later attempt's `Arm`, `Narrow` or `Disarm` does
    // not drop them.
    let mut retry: Vec<Target> = Vec::new();
    let mut exec: Option<Pid> = None;
    let ended = loop {
        let until = armed.as_ref().map_or_else(far_future, |a| a.until);
        let mut answer = None;
        tokio::select! {
            message = messages.recv() => match message {
                Some(Ok(Some(ToGuardian::Setup(_)))) => {
                    answer = Some(ToTool::Refused { why: "set up already".to_owned() });
                }
                Some(Ok(Some(ToGuardian::Arm { attempt, lease_ms, pods }))) => match Armed::new(lease_ms, &pods) {
                    Ok(mut taken) => {
                        tracing::debug!(attempt, pods = taken.pods.len(), "guardian armed");
                        keep_retried(&mut taken.pods, &retry);
                        armed = Some(taken);
                        answer = Some(ToTool::Ready);
                    }
                    // The tool does not pause.
                    Err(e) => answer = Some(ToTool::Refused { why: format!("cannot take attempt {attempt}'s pods: {e}") }),
                },
                Some(Ok(Some(ToGuardian::Answered))) => {
                    if let Some(a) = &mut armed {
                        a.answered = true;
                    }
                }
                Some(Ok(Some(ToGuardian::Exec { pgid }))) => exec = pgid.and_then(Pid::from_raw),
                Some(Ok(Some(ToGuardian::Leave { pod }))) => {
                    // Someone else's pause, or a reopened gate: never this run's to end.
                    if let (Some(a), Ok(pod)) = (&mut armed, pod.target()) {
                        let retried = retry.iter().any(|r| r.address() == pod.address());
                        if !retried {
                            a.pods.retain(|p| p.address() != pod.address());
                            tracing::debug!(%pod, "guardian: not this run's to unpause");
                        }
                    }
                }
                Some(Ok(Some(ToGuardian::Narrow { pods }))) => {
                    // The Pause failed: the pods that reported someone else's pause are
                    // not this run's, whatever happens next.
                    if let (Some(a), Ok(holding)) = (&mut armed, targets_of(&pods)) {
                        a.pods.retain(|p| holding.iter().any(|h| h.address() == p.address()));
                        keep_retried(&mut a.pods, &retry);
                    }
                    answer = Some(ToTool::Ready);
                }
                Some(Ok(Some(ToGuardian::Retry { pods }))) => {
                    if let (Some(a), Ok(pods)) = (&mut armed, targets_of(&pods)) {
                        a.pods = pods;
                        a.answered = false;
                        retry = a.pods.clone();
                    }
                    exec = None;
                    answer = Some(ToTool::Ready);
                }
                Some(Ok(Some(ToGuardian::Disarm))) => {
                    // The attempt is over; the pods of an earlier one that were not
                    // confirmed unpaused are still tried at the end.
                    armed = armed.take().filter(|_| !retry.is_empty()).map(|mut a| {
                        a.pods.clone_from(&retry);
                        a.answered = false;
                        a
                    });
                    exec = None;
                    answer = Some(ToTool::Ready);
                }
                Some(Ok(Some(ToGuardian::Detach { lease_ms, pods }))) => match Armed::new(lease_ms, &pods) {
                    Ok(mut held) => {
                        // Handed over after every Pause was answered OK.
                        held.answered = true;
                        break Ended::Detached(held);
                    }
                    Err(e) => {
                        let why = format!("cannot take the paused pods: {e}");
                        let _ = send(&mut write, &ToTool::Refused { why }).await;
                        break Ended::ToolGone;
                    }
                },
                Some(Ok(None)) | None => break Ended::ToolGone,
                Some(Err(e)) => {
                    tracing::warn!("guardian: the tool's link broke: {e}");
                    break Ended::ToolGone;
                }
            },
            () = tokio::time::sleep_until(until) => break Ended::LeasePassed,
            _ = signals.term.recv() => if !init::forward(&worker, Signal::TERM) { break Ended::Signal("SIGTERM") },
            _ = signals.int.recv() => if !init::forward(&worker, Signal::INT) { break Ended::Signal("SIGINT") },
            _ = signals.hup.recv() => { init::forward(&worker, Signal::HUP); }
            _ = signals.children.recv() => if let Some(w) = &mut worker { w.reap() },
        }
        if let Some(answer) = answer
            && send(&mut write, &answer).await.is_err()
        {
            break Ended::ToolGone;
        }
    };
    if let Ended::Detached(held) = ended {
        // The lease is taken once it can be revoked, and once it can reach every pod:
        // then the tool reports its pause. One that cannot be is refused, and the tool
        // unpauses. A lease holds a listener per pod address and a connection per pod.
        if let Err(e) = crate::limits::open_files_for(held.pods.len().saturating_mul(3)) {
            let why = format!("the lease cannot reach every pod: {e}");
            let _ = send(&mut write, &ToTool::Refused { why }).await;
            return ExitCode::FAILURE;
        }
        let revoked = match lease::listen(&held.pods).await {
            Ok(revoked) => revoked,
            Err(why) => {
                let why = format!("the lease could not be made revocable: {why}");
                let _ = send(&mut write, &ToTool::Refused { why }).await;
                return ExitCode::FAILURE;
            }
        };
        let _ = send(&mut write, &ToTool::Ready).await;
        let _ = write.shutdown().await;
        drop(write);
        let status = match &mut worker {
            Some(w) => w.exit(&mut signals.children, WORKER_EXIT).await,
            None => 0,
        };
        lease::hold(held, revoked, &unpause, &mut signals).await;
        return ExitCode::from(status);
    }
    let why = match &ended {
        Ended::ToolGone if !retry.is_empty() => {
            "the tool ended with pods it could not confirm unpaused; trying once more".to_owned()
        }
        Ended::ToolGone => "the tool's process ended while its window was open".to_owned(),
        Ended::LeasePassed => {
            let lease = armed.as_ref().map_or(Duration::ZERO, |a| a.lease);
            format!(
                "the window's lease (--max-hold {} s) passed with the pods still paused",
                lease.as_secs_f64()
            )
        }
        Ended::Signal(name) => format!("the guardian received {name}"),
        Ended::Detached(_) => unreachable!("returned above"),
    };
    let mut status = 0;
    if let Some(held) = armed {
        let since = Instant::now();
        // First the backup command, which must not run on with the pods unpaused.
        if let Some(group) = exec {
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
        }
        if !matches!(ended, Ended::ToolGone) {
            // The tool's window is over: it must not go on believing it holds the pods.
            let _ = send(&mut write, &ToTool::Unpausing { why: why.clone() }).await;
            status = 1;
        }
        let rollback = unpause.run(&why, held.pods, held.answered, since).await;
        if let Some(group) = exec {
            tell!("guardian: killed the --exec command's process group {group:?}");
        }
        if !rollback.is_complete() {
            status = 1;
        }
    }
    if let Some(w) = &mut worker {
        w.reap();
        if w.status.is_none() && !matches!(ended, Ended::ToolGone) {
            // The lease passed, or a signal ended this guardian: the window is over.
            w.kill(Signal::TERM);
        }
        status = w.exit(&mut signals.children, WORKER_EXIT).await.max(status);
    }
    ExitCode::from(status)
}

/// The hidden `guardian` role: guard the tool that started this process.
pub(crate) fn main() -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let started = Signals::install().and_then(|signals| Ok((role::stdin_link()?, signals)));
        match started {
            Ok((link, signals)) => serve(link, None, signals).await,
            Err(e) => {
                tell!("guardian: error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn runtime() -> Option<crate::runtime::Background> {
    let runtime = crate::runtime::Background::start();
    if runtime.is_none() {
        tell!("guardian: error: cannot start the runtime");
    }
    runtime
}
