//! The guardian: a second process that ends this run's pause when the tool cannot.
//!
//! SIGTERM and SIGINT make the tool unpause, but SIGKILL, an OOM kill or a crash during a
//! window's hold would leave every pod paused, and a paused ScalarDB refuses every
//! transaction. So before a window's first Pause the tool starts a guardian: the same
//! binary in a hidden mode ([`ROLE`]` = guardian`), in a session of its own so that a
//! signal to the tool's process group does not reach it, holding one end of a socket
//! pair as its standard input. Right before each attempt's first Pause the tool sends it
//! the pods and a lease and waits for its answer; once the attempt holds nothing, it
//! says so. When the socket closes while an attempt is armed, the tool has died: the
//! guardian kills the `--exec` command's process group, unpauses the pods with the
//! confirmed rollback ([`Fleet::adopt`]), says so on stderr, and exits. When the lease
//! passes it does the same, whatever the tool is doing, and tells the tool, whose window
//! then ends interrupted. The tool watches the socket too: when the guardian dies, its
//! window is interrupted and unpaused at once.
//!
//! As PID 1 of a container the tool cannot be the one that survives: when PID 1 dies, the
//! kernel kills its whole PID namespace. There the first process becomes the guardian, as
//! tini-style init processes do (it forwards signals and reaps orphans), and runs the
//! tool as its child ([`ROLE`]` = worker`), linked the same way through the child's
//! standard input. An OOM kill picks the largest process, the worker; the guardian then
//! unpauses.
//!
//! `-c PAUSE --max-hold` gives a plain pause the same lease: the tool hands the paused
//! pods over ("detach") and exits as usual; the guardian checks them every second, lets
//! go of each one it sees unpaused (someone ran UNPAUSE; a later pause is someone
//! else's), and unpauses the rest when the lease ends.

use std::os::fd::OwnedFd;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions};
use scalar_admin::{Fleet, Host, Rollback, Target};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::args::Config;

/// The environment variable that starts the binary in a hidden role.
pub(crate) const ROLE: &str = "SCALAR_ADMIN_ROLE";

/// The longest message on the link: a thousand pods take about 150 KiB.
const MAX_MESSAGE: u64 = 16 << 20;

/// How long the tool waits for the guardian to start, or to take an attempt's pods.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// How often a detached lease checks whether its pods are still paused.
const POLL: Duration = Duration::from_secs(1);

/// How long the worker may take to exit once its link closed, before it is killed.
const WORKER_EXIT: Duration = Duration::from_secs(10);

/// This process's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The tool, started by the user.
    Tool,
    /// The guardian of a tool that runs on.
    Guardian,
    /// The tool, started by a guardian that is PID 1.
    Worker,
}

pub(crate) fn role() -> Role {
    match std::env::var_os(ROLE).as_deref().and_then(|r| r.to_str()) {
        Some("guardian") => Role::Guardian,
        Some("worker") => Role::Worker,
        _ => Role::Tool,
    }
}

/// One pod as the link carries it: everything [`Target::from_parts`] needs.
#[derive(Debug, Serialize, Deserialize)]
struct Pod {
    name: String,
    address: String,
    authority: String,
}

impl Pod {
    fn of(target: &Target) -> Self {
        Self {
            name: target.name().to_owned(),
            address: target.address(),
            authority: target.authority(),
        }
    }

    fn target(&self) -> Result<Target, String> {
        let address: Target = self.address.parse().map_err(|e| format!("{e}"))?;
        let authority: Target = self.authority.parse().map_err(|e| format!("{e}"))?;
        let tls_name: Host = authority.host().clone();
        Ok(Target::from_parts(
            self.name.clone(),
            address.host().clone(),
            address.port(),
            tls_name,
        ))
    }
}

/// What the tool tells its guardian.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToGuardian {
    /// An attempt's Pause is about to leave for these pods; unpause them if the tool
    /// dies, or when the lease passes.
    Arm {
        attempt: usize,
        lease_ms: u64,
        pods: Vec<Pod>,
    },
    /// The `--exec` command's process group started (`Some`), or ended (`None`).
    Exec { pgid: Option<i32> },
    /// The attempt holds nothing any more.
    Disarm,
    /// A plain pause that outlives the tool: hold these pods until the lease passes.
    Detach { lease_ms: u64, pods: Vec<Pod> },
}

/// What the guardian tells the tool.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToTool {
    /// Started; or, after Arm, the pods are taken.
    Ready,
    /// The lease passed: the guardian unpauses the pods now.
    LeaseEnded { lease_ms: u64 },
}

async fn send(w: &mut (impl AsyncWrite + Unpin), message: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

/// The next message, `None` at the end of the stream; a message longer than
/// [`MAX_MESSAGE`] or not one of `T` is an error.
async fn receive<T: DeserializeOwned>(
    r: &mut BufReader<impl AsyncRead + Unpin>,
) -> Result<Option<T>, String> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_MESSAGE)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err("a message was cut short or too long".to_owned());
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| format!("not a message: {e}"))
}

/// A socket pair end given as a child's standard input, which it reads and writes.
fn socket_pair() -> Result<(UnixStream, OwnedFd), String> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| format!("cannot create the guardian's socket: {e}"))?;
    ours.set_nonblocking(true)
        .map_err(|e| format!("cannot set up the guardian's socket: {e}"))?;
    let ours = UnixStream::from_std(ours)
        .map_err(|e| format!("cannot set up the guardian's socket: {e}"))?;
    Ok((ours, OwnedFd::from(theirs)))
}

/// This same binary, with this same command line, in `role`.
fn this_binary(role: &str, stdin: OwnedFd) -> Result<std::process::Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .env(ROLE, role)
        .stdin(Stdio::from(stdin));
    Ok(command)
}

/// The standard input as the link, in the guardian and in a worker.
fn stdin_link() -> Result<UnixStream, String> {
    use std::os::fd::AsFd as _;
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot take the guardian's link: {e}"))?;
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream
        .set_nonblocking(true)
        .and_then(|()| UnixStream::from_std(stream))
        .map_err(|e| format!("the standard input is not the guardian's link: {e}"))
}

/// The tool's side of the link.
pub(crate) struct Guardian {
    to: mpsc::UnboundedSender<ToGuardian>,
    answers: mpsc::UnboundedReceiver<()>,
    lost: watch::Receiver<Option<String>>,
    writer: tokio::task::JoinHandle<()>,
    lease: Duration,
}

/// Hands the guardian the `--exec` command's process group.
#[derive(Clone)]
pub(crate) struct ExecGroup(mpsc::UnboundedSender<ToGuardian>);

impl ExecGroup {
    pub(crate) fn started(&self, pgid: Option<Pid>) {
        let _ = self.0.send(ToGuardian::Exec {
            pgid: pgid.map(Pid::as_raw_nonzero).map(i32::from),
        });
    }

    pub(crate) fn ended(&self) {
        let _ = self.0.send(ToGuardian::Exec { pgid: None });
    }
}

impl Guardian {
    /// Starts the guardian with each attempt's `lease`, and waits until it is ready: as
    /// a process of its own, or, when this process is a worker, the parent that started
    /// it.
    pub(crate) async fn start(lease: Duration) -> Result<Guardian, String> {
        let link = if role() == Role::Worker {
            stdin_link()?
        } else {
            let (ours, theirs) = socket_pair()?;
            // Not waited for: it outlives this process on purpose.
            this_binary("guardian", theirs)?
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
        tokio::spawn(async move {
            let mut read = BufReader::new(read);
            let why = loop {
                match receive::<ToTool>(&mut read).await {
                    Ok(Some(ToTool::Ready)) => {
                        let _ = answered.send(());
                    }
                    Ok(Some(ToTool::LeaseEnded { lease_ms })) => {
                        break format!(
                            "the guardian's lease of {} s passed; it unpauses the pods",
                            lease_ms as f64 / 1000.0
                        );
                    }
                    Ok(None) => break "the guardian process ended".to_owned(),
                    Err(e) => break format!("the guardian's link broke: {e}"),
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
        };
        guardian
            .answer()
            .await
            .map_err(|e| format!("the guardian did not start: {e}"))?;
        Ok(guardian)
    }

    async fn answer(&mut self) -> Result<(), String> {
        let mut lost = self.lost.clone();
        tokio::select! {
            answer = tokio::time::timeout(ANSWER_WITHIN, self.answers.recv()) => match answer {
                Ok(Some(())) => Ok(()),
                Ok(None) => Err("the guardian process ended".to_owned()),
                Err(_) => Err(format!("no answer within {} s", ANSWER_WITHIN.as_secs())),
            },
            why = lost.wait_for(Option::is_some) => {
                Err(why.ok().and_then(|w| w.clone()).unwrap_or_default())
            }
        }
    }

    /// Completes when the guardian can no longer guard: it died, or its lease passed.
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

    pub(crate) fn exec_group(&self) -> ExecGroup {
        ExecGroup(self.to.clone())
    }

    /// Hands `pods` over before their Pause leaves; the pause must not start unless the
    /// guardian took them.
    pub(crate) async fn arm(&mut self, attempt: usize, pods: &[Target]) -> Result<(), String> {
        let message = ToGuardian::Arm {
            attempt,
            lease_ms: millis(self.lease),
            pods: pods.iter().map(Pod::of).collect(),
        };
        self.to
            .send(message)
            .map_err(|_| "the guardian's link closed".to_owned())?;
        self.answer()
            .await
            .map_err(|e| format!("the guardian did not take the pods: {e}"))
    }

    pub(crate) fn disarm(&self) {
        let _ = self.to.send(ToGuardian::Disarm);
    }

    /// Hands a plain pause's pods over for the guardian to hold until `lease` passes,
    /// after this process exits.
    pub(crate) async fn detach(self, pods: &[Target], lease: Duration) {
        let _ = self.to.send(ToGuardian::Detach {
            lease_ms: millis(lease),
            pods: pods.iter().map(Pod::of).collect(),
        });
        self.finish().await;
    }

    /// Closes the link once everything sent is written: the guardian, disarmed, exits.
    pub(crate) async fn finish(self) {
        let Guardian { to, writer, .. } = self;
        drop(to);
        let _ = tokio::time::timeout(ANSWER_WITHIN, writer).await;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the guardian holds.
struct Armed {
    pods: Vec<Target>,
    lease: Duration,
    until: Instant,
}

impl Armed {
    fn new(lease_ms: u64, pods: &[Pod]) -> Result<Armed, String> {
        let lease = Duration::from_millis(lease_ms);
        Ok(Armed {
            pods: pods.iter().map(Pod::target).collect::<Result<_, _>>()?,
            lease,
            until: Instant::now().checked_add(lease).unwrap_or_else(far_future),
        })
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// The tool this guardian started, when it is PID 1.
struct Worker {
    pid: Pid,
    /// How it ended, once reaped: its exit code, or 128 plus the signal.
    status: Option<u8>,
}

impl Worker {
    /// Reaps every child that ended (PID 1 inherits orphans), noting the worker's end.
    fn reap(&mut self) {
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            if pid == self.pid {
                let code = match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => code,
                    (None, Some(signal)) => 128 + signal,
                    (None, None) => 1,
                };
                self.status = Some(u8::try_from(code).unwrap_or(1));
            }
        }
    }

    fn kill(&self, signal: Signal) {
        let _ = rustix::process::kill_process(self.pid, signal);
    }

    /// Waits for the worker's end, killing it after `patience`.
    async fn exit(&mut self, children: &mut tokio::signal::unix::Signal, patience: Duration) -> u8 {
        let give_up = Instant::now() + patience;
        loop {
            self.reap();
            if let Some(status) = self.status {
                return status;
            }
            tokio::select! {
                _ = children.recv() => {}
                () = tokio::time::sleep_until(give_up) => self.kill(Signal::KILL),
            }
        }
    }
}

/// The hidden `guardian` role: guard the tool that started this process.
pub(crate) fn main(config: &Config) -> ExitCode {
    // Out of the tool's session and process group: a signal to those, or the end of its
    // terminal, does not reach this process. Fails only for a group leader, which this
    // process, spawned into the tool's group, is not.
    let _ = rustix::process::setsid();
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        match stdin_link() {
            Ok(link) => serve(link, None, config).await,
            Err(e) => {
                tell!("guardian: error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// PID 1 of a container: become the guardian, and run the tool as its child.
pub(crate) fn init(config: &Config) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let spawned = socket_pair().and_then(|(ours, theirs)| {
            let child = this_binary("worker", theirs)?
                .spawn()
                .map_err(|e| format!("cannot start the tool's process: {e}"))?;
            let pid = i32::try_from(child.id())
                .ok()
                .and_then(Pid::from_raw)
                .ok_or("the tool's process has no pid")?;
            Ok((ours, pid))
        });
        match spawned {
            Ok((link, pid)) => serve(link, Some(Worker { pid, status: None }), config).await,
            Err(e) => {
                tell!("error: {e}; nothing was paused");
                ExitCode::FAILURE
            }
        }
    })
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    if runtime.is_err() {
        tell!("guardian: error: cannot start the runtime");
    }
    runtime.ok()
}

/// The guardian's loop: take what the tool arms, and unpause it when the tool dies, the
/// lease passes, or a signal says stop.
async fn serve(link: UnixStream, mut worker: Option<Worker>, config: &Config) -> ExitCode {
    let (Ok(mut terms), Ok(mut ints), Ok(mut hups), Ok(mut children)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::child()),
    ) else {
        tell!("guardian: error: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let (read, mut write) = link.into_split();
    let mut read = BufReader::new(read);
    if send(&mut write, &ToTool::Ready).await.is_err() {
        return ExitCode::FAILURE;
    }
    let mut armed: Option<Armed> = None;
    let mut exec: Option<Pid> = None;
    let ended = loop {
        let until = armed.as_ref().map_or_else(far_future, |a| a.until);
        tokio::select! {
            message = receive::<ToGuardian>(&mut read) => match message {
                Ok(Some(ToGuardian::Arm { attempt, lease_ms, pods })) => match Armed::new(lease_ms, &pods) {
                    Ok(taken) => {
                        tracing::debug!(attempt, pods = taken.pods.len(), "guardian armed");
                        armed = Some(taken);
                        if send(&mut write, &ToTool::Ready).await.is_err() {
                            break Ended::ToolDied;
                        }
                    }
                    // Unanswered: the tool does not pause.
                    Err(e) => tell!("guardian: error: cannot take attempt {attempt}'s pods: {e}"),
                },
                Ok(Some(ToGuardian::Exec { pgid })) => exec = pgid.and_then(Pid::from_raw),
                Ok(Some(ToGuardian::Disarm)) => {
                    armed = None;
                    exec = None;
                }
                Ok(Some(ToGuardian::Detach { lease_ms, pods })) => match Armed::new(lease_ms, &pods) {
                    Ok(held) => break Ended::Detached(held),
                    Err(e) => {
                        tell!("guardian: error: cannot take the paused pods: {e}");
                        break Ended::ToolDied;
                    }
                },
                Ok(None) => break Ended::ToolDied,
                Err(e) => {
                    tell!("guardian: error: the tool's link broke: {e}");
                    break Ended::ToolDied;
                }
            },
            () = tokio::time::sleep_until(until) => {
                let lease_ms = armed.as_ref().map_or(0, |a| millis(a.lease));
                let _ = send(&mut write, &ToTool::LeaseEnded { lease_ms }).await;
                break Ended::LeasePassed;
            }
            _ = terms.recv() => if !forward(&worker, Signal::TERM) { break Ended::Signal("SIGTERM") },
            _ = ints.recv() => if !forward(&worker, Signal::INT) { break Ended::Signal("SIGINT") },
            _ = hups.recv() => { forward(&worker, Signal::HUP); }
            _ = children.recv() => if let Some(w) = &mut worker { w.reap() },
        }
    };
    let why = match &ended {
        Ended::Detached(held) => {
            let status = match &mut worker {
                Some(w) => w.exit(&mut children, WORKER_EXIT).await,
                None => 0,
            };
            hold_detached(held, config, &mut terms, &mut ints).await;
            return ExitCode::from(status);
        }
        // Unpause first; the worker's status can wait.
        Ended::ToolDied => "the tool's process ended while its window was open".to_owned(),
        Ended::LeasePassed => {
            let lease = armed.as_ref().map_or(Duration::ZERO, |a| a.lease);
            format!(
                "the window's lease (--max-hold {} s) passed with the pods still paused",
                lease.as_secs_f64()
            )
        }
        Ended::Signal(name) => format!("the guardian received {name}"),
    };
    let mut status = 0;
    if let Some(held) = armed {
        if let Some(group) = exec {
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
            tell!("guardian: killed the --exec command's process group {group:?}");
        }
        let rollback = unpause(&why, held.pods, config).await;
        if !rollback.is_complete() {
            status = 1;
        }
        if matches!(ended, Ended::LeasePassed) {
            status = 1;
        }
    }
    if let Some(w) = &mut worker {
        w.reap();
        if w.status.is_none() && !matches!(ended, Ended::ToolDied) {
            // The lease passed, or a signal ended this guardian: the window is over.
            w.kill(Signal::TERM);
        }
        status = w.exit(&mut children, WORKER_EXIT).await.max(status);
    }
    ExitCode::from(status)
}

/// How the guardian's watch ended.
enum Ended {
    ToolDied,
    LeasePassed,
    Signal(&'static str),
    Detached(Armed),
}

/// Passes a signal to the worker; `false` when there is none, so the guardian itself is
/// the one told.
fn forward(worker: &Option<Worker>, signal: Signal) -> bool {
    match worker {
        Some(w) if w.status.is_none() => {
            w.kill(signal);
            true
        }
        _ => false,
    }
}

/// Raises the open-files limit for `pods` connections, as the tool did for its own.
fn enough_open_files(pods: usize) {
    if let Err(e) = crate::open_files_for(pods) {
        tell!("guardian: warning: {e}");
    }
}

/// Unpauses `pods` with the confirmed rollback, and says so on stderr.
async fn unpause(why: &str, pods: Vec<Target>, config: &Config) -> Rollback {
    let names: Vec<&str> = pods.iter().map(Target::name).collect();
    tell!(
        "guardian: {why}; unpausing the {} pod(s) this run paused: {}",
        pods.len(),
        names.join(", ")
    );
    let started = std::time::Instant::now();
    enough_open_files(pods.len());
    let mut fleet = Fleet::adopt(pods, config.client.clone(), false).await;
    let rollback = fleet.release().await;
    crate::output::rolled_back(config, "guardian", &rollback);
    tell!(
        "guardian: done in {:.3} s (connect, Unpause, and CheckPaused until confirmed)",
        started.elapsed().as_secs_f64()
    );
    let _ = fleet.keep_paused();
    rollback
}

/// A plain pause's lease: check the pods every [`POLL`], let go of those seen unpaused,
/// and unpause the rest when the lease passes or a signal says stop.
async fn hold_detached(
    held: &Armed,
    config: &Config,
    terms: &mut tokio::signal::unix::Signal,
    ints: &mut tokio::signal::unix::Signal,
) {
    enough_open_files(held.pods.len());
    // Handed over after every Pause was answered OK: none can land later.
    let mut fleet = Fleet::adopt(held.pods.clone(), config.client.clone(), true).await;
    let why = loop {
        let holding: Vec<String> = fleet.held().map(ToString::to_string).collect();
        if holding.is_empty() {
            tell!("guardian: every pod of the pause was unpaused; the lease ends");
            let _ = fleet.keep_paused();
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {
                let _ = fleet.check_paused().await;
                for pod in fleet.targets().filter(|t| holding.contains(&t.to_string())) {
                    if !fleet.held().any(|h| h == pod) {
                        tracing::info!(pod = %pod, "seen unpaused; the lease no longer holds it");
                    }
                }
            }
            () = tokio::time::sleep_until(held.until) => {
                break format!("the pause's lease (--max-hold {} s) passed", held.lease.as_secs_f64());
            }
            _ = terms.recv() => break "the guardian received SIGTERM".to_owned(),
            _ = ints.recv() => break "the guardian received SIGINT".to_owned(),
        }
    };
    let names: Vec<&str> = fleet.held().map(Target::name).collect();
    tell!(
        "guardian: {why}; unpausing the {} pod(s) still paused by this run: {}",
        names.len(),
        names.join(", ")
    );
    let rollback = fleet.release().await;
    crate::output::rolled_back(config, "guardian", &rollback);
    let _ = fleet.keep_paused();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_crosses_the_link_whole() {
        let ip: std::net::IpAddr = "fd00::5".parse().unwrap();
        let srv = Target::from_parts(
            "db-0.db-headless.ns.svc.cluster.local:60051",
            Host::Ip(ip),
            60051,
            Host::Name("db-0.db-headless.ns.svc.cluster.local".to_owned()),
        );
        let plain: Target = "10.0.0.5:60051".parse().unwrap();
        for target in [srv, plain] {
            let pod: Pod =
                serde_json::from_str(&serde_json::to_string(&Pod::of(&target)).unwrap()).unwrap();
            let back = pod.target().unwrap();
            assert_eq!(back, target);
            assert_eq!(back.tls_name(), target.tls_name());
            assert_eq!(back.host(), target.host());
        }
    }

    async fn one(bytes: &[u8]) -> Result<Option<ToGuardian>, String> {
        receive(&mut BufReader::new(bytes)).await
    }

    #[tokio::test]
    async fn the_link_refuses_what_is_not_a_whole_message() {
        assert!(matches!(
            one(b"{\"type\":\"disarm\"}\n").await,
            Ok(Some(ToGuardian::Disarm))
        ));
        assert!(matches!(one(b"").await, Ok(None)));
        assert!(one(b"{\"type\":\"disarm\"}").await.is_err(), "cut short");
        assert!(one(b"not json\n").await.is_err());
        assert!(
            one(b"{\"type\":\"arm\"}\n").await.is_err(),
            "fields missing"
        );
        // Longer than the bound: an error, after reading no more than the bound.
        let flood = vec![b'a'; MAX_MESSAGE as usize + 10];
        assert!(one(&flood).await.is_err());
    }
}
