//! The guardian: a second process that ends this run's pause when the tool cannot.
//!
//! SIGTERM and SIGINT make the tool unpause, but SIGKILL, an OOM kill or a crash during a
//! window's hold would leave every pod paused, and a paused ScalarDB refuses every
//! transaction. So before a window's first Pause the tool starts a guardian: the same
//! binary in a hidden mode ([`ROLE`]` = guardian:<the tool's pid>`), in a session of its
//! own so that a signal to the tool's process group does not reach it, holding one end
//! of a socket pair as its standard input. Right before each attempt's first Pause the
//! tool sends it the pods and a lease and waits for its answer; once the Pause is
//! answered it says so, and once the attempt's Unpause is confirmed it lets go (or hands
//! over only the pods it could not confirm). When the socket closes while an attempt is
//! armed, the tool has died: the guardian kills the `--exec` command's process group,
//! unpauses the pods with the confirmed rollback ([`Fleet::adopt`]), says so on stderr,
//! and exits. When the lease passes, or a signal stops the guardian, it tells the tool
//! and does the same; the tool's window then ends interrupted. The tool watches the
//! socket too: when the guardian dies, its window is interrupted and unpaused at once.
//!
//! As PID 1 of a container the tool cannot be the one that survives: when PID 1 dies, the
//! kernel kills its whole PID namespace. There the first process becomes the guardian, as
//! tini-style init processes do (it forwards signals and reaps orphans), and runs the
//! tool as its child ([`ROLE`]` = worker:<its pid>`), linked the same way through the
//! child's standard input. An OOM kill picks the largest process, the worker; the
//! guardian then unpauses.
//!
//! `-c PAUSE --max-hold` gives a plain pause the same lease: the tool hands the paused
//! pods over ("detach") and exits as usual. The guardian checks them every [`POLL`], lets
//! go of each one it sees unpaused or whose lease another command of this tool revokes
//! ([`revoke_leases`]: PAUSE, UNPAUSE and WINDOW do before they touch a pod), and unpauses
//! the rest when the lease ends.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions};
use scalar_admin::{Fleet, Host, Rollback, Target, Unconfirmed};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::args::Config;

/// The environment variable that starts the binary in a hidden role; its value names the
/// process that set it, which must be this process's parent.
pub(crate) const ROLE: &str = "SCALAR_ADMIN_ROLE";

/// The longest message on the link: a thousand pods take about 150 KiB.
const MAX_MESSAGE: u64 = 16 << 20;

/// How long the tool waits for the guardian to start, or to answer a message.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// How often a detached lease checks whether its pods are still paused.
const POLL: Duration = Duration::from_millis(250);

/// How long the worker may take to exit once its link closed, before it is killed.
const WORKER_EXIT: Duration = Duration::from_secs(10);

/// The abstract socket name of a plain pause's lease on one pod.
const LEASE_PREFIX: &str = "scalar-admin-lease/";

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

/// This process's role: a hidden one only when the parent that set it started this
/// process, so that the variable left in a user's environment changes nothing.
pub(crate) fn role() -> Role {
    let Some(value) = std::env::var_os(ROLE) else {
        return Role::Tool;
    };
    let value = value.to_string_lossy();
    let Some((role, parent)) = value.split_once(':') else {
        return Role::Tool;
    };
    let parent_is = rustix::process::getppid()
        .is_some_and(|ppid| parent.parse::<i32>().ok() == Some(ppid.as_raw_nonzero().get()));
    match role {
        "guardian" if parent_is => Role::Guardian,
        "worker" if parent_is => Role::Worker,
        _ => Role::Tool,
    }
}

/// Called first thing in the guardian role: out of the tool's session and process group
/// at once, so that a Ctrl-C to that group, or the end of its terminal, does not reach
/// this process. (It cannot fail here: a process spawned into the tool's group is no
/// group leader.)
pub(crate) fn leave_the_tools_session() {
    let _ = rustix::process::setsid();
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

fn pods_of(targets: &[Target]) -> Vec<Pod> {
    targets.iter().map(Pod::of).collect()
}

/// What the tool tells its guardian. Arm, Keep and Disarm are answered (Ready).
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
    /// Every pod answered the attempt's Pause: no Pause of it can land later.
    Answered,
    /// The `--exec` command's process group started (`Some`), or ended (`None`).
    Exec { pgid: Option<i32> },
    /// The attempt's release could not confirm these pods: keep them, and try once
    /// more when the tool exits.
    Keep { pods: Vec<Pod> },
    /// The attempt holds nothing any more.
    Disarm,
    /// A plain pause that outlives the tool: hold these pods until the lease passes.
    Detach { lease_ms: u64, pods: Vec<Pod> },
}

/// What the guardian tells the tool.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToTool {
    /// Started; or the message is taken.
    Ready,
    /// The guardian unpauses the pods now, for this reason (its lease passed, a signal).
    Unpausing { why: String },
}

async fn send(w: &mut (impl AsyncWrite + Unpin), message: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

/// The next message, `None` at the end of the stream; a message longer than
/// [`MAX_MESSAGE`] or not one of `T` is an error. Not cancel safe: run it in a task of
/// its own ([`reader`]).
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

/// Reads messages in a task of its own, so that a `select!` never drops half of one; the
/// stream's end or an error is the last item.
fn reader<T: DeserializeOwned + Send + 'static>(
    read: impl AsyncRead + Unpin + Send + 'static,
) -> mpsc::Receiver<Result<Option<T>, String>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut read = BufReader::new(read);
        loop {
            let message = receive::<T>(&mut read).await;
            let last = !matches!(message, Ok(Some(_)));
            if tx.send(message).await.is_err() || last {
                break;
            }
        }
    });
    rx
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
        .env(ROLE, format!("{role}:{}", std::process::id()))
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
        let mut messages = reader::<ToTool>(read);
        tokio::spawn(async move {
            let why = loop {
                match messages.recv().await {
                    Some(Ok(Some(ToTool::Ready))) => {
                        let _ = answered.send(());
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
            .answer()
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
                Ok(Some(())) => Ok(()),
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

    /// The attempt's release is over: let go, except of the pods `rollback` could not
    /// confirm unpaused (and that may be this run's), which the guardian tries once more
    /// when this process exits.
    pub(crate) async fn release(&mut self, rollback: Option<&Rollback>) {
        let stuck: Vec<Target> = rollback
            .map(|r| r.stuck())
            .unwrap_or_default()
            .iter()
            .filter(|s| !matches!(s.why(), Unconfirmed::PausedAgain))
            .map(|s| s.target().clone())
            .collect();
        let message = if stuck.is_empty() {
            ToGuardian::Disarm
        } else {
            ToGuardian::Keep {
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How long the commands that revoke leases wait for every answer, all pods together.
const REVOKE_WITHIN: Duration = Duration::from_secs(1);

/// Makes every plain-pause lease a guardian of this tool holds on these pods let go,
/// before this command touches them: a later pause is not the lease's to end, and an
/// UNPAUSE ends it. Reaches the guardians of this network namespace (an ops pod, one
/// host). Fails, within twice [`REVOKE_WITHIN`], when a lease did not answer that it let go
/// (it may be ending, unpausing its pods): a Pause must not start then.
pub(crate) async fn revoke_leases(pods: &[Target]) -> Result<(), String> {
    // The usual case, no lease in this network namespace, costs one read of a file.
    let here = leases_here();
    if here.as_ref().is_some_and(HashSet::is_empty) {
        return Ok(());
    }
    let names = futures::future::join_all(pods.iter().map(lease_names)).await;
    let leased: Vec<(String, String)> = pods
        .iter()
        .zip(names)
        .flat_map(|(pod, names)| names.into_iter().map(move |n| (pod.to_string(), n)))
        .filter(|(_, name)| here.as_ref().is_none_or(|h| h.contains(name)))
        .collect();
    if leased.is_empty() {
        return Ok(());
    }
    // Blocking calls (a connect to a full backlog) run aside, and are abandoned a second
    // after the answers' own deadline.
    let revoke = tokio::task::spawn_blocking(move || revoke_blocking(&leased));
    let backstop = REVOKE_WITHIN.saturating_mul(2);
    match tokio::time::timeout(backstop, revoke).await {
        Ok(Ok(result)) => result,
        _ => Err(format!(
            "a pause lease on these pods did not answer within {} s",
            backstop.as_secs()
        )),
    }
}

/// The lease names bound in this network namespace, from `/proc/net/unix`; `None` when it
/// cannot be read.
fn leases_here() -> Option<HashSet<String>> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    Some(
        table
            .lines()
            .filter_map(|line| line.split_whitespace().nth(7))
            .filter_map(|path| path.strip_prefix('@'))
            .filter(|name| name.starts_with(LEASE_PREFIX))
            .map(str::to_owned)
            .collect(),
    )
}

/// Revokes each `(pod, lease name)`, each answer awaited until one shared deadline.
fn revoke_blocking(leased: &[(String, String)]) -> Result<(), String> {
    use std::io::Read as _;
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let deadline = std::time::Instant::now() + REVOKE_WITHIN;
    let mut unanswered = Vec::new();
    for (pod, name) in leased {
        let Ok(name) = SocketAddr::from_abstract_name(name) else {
            continue;
        };
        // No lease (any more): refused at once.
        let Ok(mut stream) = UnixStream::connect_addr(&name) else {
            continue;
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let mut answer = [0u8; 3];
        if stream.read_exact(&mut answer).is_ok() && &answer == b"ok\n" {
            tracing::info!(pod = %pod, "a pause lease on the pod let go of it");
        } else {
            unanswered.push(pod.clone());
        }
    }
    if unanswered.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "a pause lease on {} did not let go (its guardian may be unpausing it)",
            unanswered.join(", ")
        ))
    }
}

/// A pod's lease names: one per address it resolves to, so that the pod is named alike
/// however a command gave it (`-a` with a name or an address, `-s`, `-r`). A name that
/// does not resolve within [`REVOKE_WITHIN`] has none.
async fn lease_names(pod: &Target) -> Vec<String> {
    let addresses: Vec<std::net::SocketAddr> = match pod.socket_addr() {
        Some(address) => vec![address],
        None => tokio::time::timeout(REVOKE_WITHIN, tokio::net::lookup_host(pod.address()))
            .await
            .ok()
            .and_then(Result::ok)
            .map(Iterator::collect)
            .unwrap_or_default(),
    };
    addresses
        .into_iter()
        .map(|a| format!("{LEASE_PREFIX}{a}"))
        .collect()
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
            pods: pods.iter().map(Pod::target).collect::<Result<_, _>>()?,
            lease,
            until: Instant::now().checked_add(lease).unwrap_or_else(far_future),
            answered: false,
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

    /// Waits for the worker's end: after `patience` it is killed, and after as long
    /// again it is given up on (a process stuck in the kernel), as status 1.
    async fn exit(&mut self, children: &mut tokio::signal::unix::Signal, patience: Duration) -> u8 {
        let mut killed = false;
        let mut give_up = Instant::now() + patience;
        loop {
            self.reap();
            if let Some(status) = self.status {
                return status;
            }
            tokio::select! {
                _ = children.recv() => {}
                () = tokio::time::sleep_until(give_up) => {
                    if killed {
                        tell!("guardian: the tool's process {:?} does not end; giving up on it", self.pid);
                        return 1;
                    }
                    self.kill(Signal::KILL);
                    killed = true;
                    give_up = Instant::now() + patience;
                }
            }
        }
    }
}

/// The hidden `guardian` role: guard the tool that started this process.
pub(crate) fn main(config: &Config) -> ExitCode {
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

/// The signals the guardian handles.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    children: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Option<Signals> {
        Some(Signals {
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
            hup: signal(SignalKind::hangup()).ok()?,
            children: signal(SignalKind::child()).ok()?,
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

/// The guardian's loop: take what the tool arms, and unpause it when the tool dies, the
/// lease passes, or a signal says stop.
async fn serve(link: UnixStream, mut worker: Option<Worker>, config: &Config) -> ExitCode {
    let Some(mut signals) = Signals::install() else {
        tell!("guardian: error: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let (read, mut write) = link.into_split();
    let mut messages = reader::<ToGuardian>(read);
    if send(&mut write, &ToTool::Ready).await.is_err() {
        return ExitCode::FAILURE;
    }
    let mut armed: Option<Armed> = None;
    // Whether the tool handed over pods it could not confirm unpaused (`Keep`).
    let mut kept = false;
    let mut exec: Option<Pid> = None;
    let ended = loop {
        let until = armed.as_ref().map_or_else(far_future, |a| a.until);
        let mut answer = false;
        tokio::select! {
            message = messages.recv() => match message {
                Some(Ok(Some(ToGuardian::Arm { attempt, lease_ms, pods }))) => match Armed::new(lease_ms, &pods) {
                    Ok(taken) => {
                        tracing::debug!(attempt, pods = taken.pods.len(), "guardian armed");
                        armed = Some(taken);
                        answer = true;
                    }
                    // Unanswered: the tool does not pause.
                    Err(e) => tell!("guardian: error: cannot take attempt {attempt}'s pods: {e}"),
                },
                Some(Ok(Some(ToGuardian::Answered))) => {
                    if let Some(a) = &mut armed {
                        a.answered = true;
                    }
                }
                Some(Ok(Some(ToGuardian::Exec { pgid }))) => exec = pgid.and_then(Pid::from_raw),
                Some(Ok(Some(ToGuardian::Keep { pods }))) => {
                    let pods: Result<Vec<Target>, String> = pods.iter().map(Pod::target).collect();
                    if let (Some(a), Ok(pods)) = (&mut armed, pods) {
                        a.pods = pods;
                        a.answered = false;
                        kept = true;
                    }
                    exec = None;
                    answer = true;
                }
                Some(Ok(Some(ToGuardian::Disarm))) => {
                    armed = None;
                    exec = None;
                    answer = true;
                }
                Some(Ok(Some(ToGuardian::Detach { lease_ms, pods }))) => match Armed::new(lease_ms, &pods) {
                    Ok(mut held) => {
                        // Handed over after every Pause was answered OK.
                        held.answered = true;
                        break Ended::Detached(held);
                    }
                    Err(e) => {
                        tell!("guardian: error: cannot take the paused pods: {e}");
                        break Ended::ToolGone;
                    }
                },
                Some(Ok(None)) | None => break Ended::ToolGone,
                Some(Err(e)) => {
                    tell!("guardian: error: the tool's link broke: {e}");
                    break Ended::ToolGone;
                }
            },
            () = tokio::time::sleep_until(until) => break Ended::LeasePassed,
            _ = signals.term.recv() => if !forward(&worker, Signal::TERM) { break Ended::Signal("SIGTERM") },
            _ = signals.int.recv() => if !forward(&worker, Signal::INT) { break Ended::Signal("SIGINT") },
            _ = signals.hup.recv() => { forward(&worker, Signal::HUP); }
            _ = signals.children.recv() => if let Some(w) = &mut worker { w.reap() },
        }
        if answer && send(&mut write, &ToTool::Ready).await.is_err() {
            break Ended::ToolGone;
        }
    };
    if let Ended::Detached(held) = ended {
        // The lease is taken once it can be revoked: then the tool reports its pause.
        let (revoke, revoked) = mpsc::unbounded_channel();
        for warning in listen_for_revocation(&held.pods, &revoke).await {
            tell!("guardian: warning: this lease cannot be revoked by UNPAUSE on {warning}");
        }
        let _ = send(&mut write, &ToTool::Ready).await;
        drop(write);
        let status = match &mut worker {
            Some(w) => w.exit(&mut signals.children, WORKER_EXIT).await,
            None => 0,
        };
        hold_detached(held, revoked, config, &mut signals).await;
        return ExitCode::from(status);
    }
    let why = match &ended {
        // Unpause first; the worker's status can wait.
        Ended::ToolGone if kept => {
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
        if !matches!(ended, Ended::ToolGone) {
            // The tool's window is over: it must not go on believing it holds the pods.
            let _ = send(&mut write, &ToTool::Unpausing { why: why.clone() }).await;
            status = 1;
        }
        if let Some(group) = exec {
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
            tell!("guardian: killed the --exec command's process group {group:?}");
        }
        let rollback = unpause(&why, held.pods, held.answered, config).await;
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
async fn unpause(why: &str, pods: Vec<Target>, answered: bool, config: &Config) -> Rollback {
    let names: Vec<&str> = pods.iter().map(Target::name).collect();
    tell!(
        "guardian: {why}; unpausing the {} pod(s) this run paused: {}",
        pods.len(),
        names.join(", ")
    );
    let started = std::time::Instant::now();
    enough_open_files(pods.len());
    let mut fleet = Fleet::adopt(pods, config.client.clone(), answered).await;
    let rollback = fleet.release().await;
    crate::output::rolled_back(config, "guardian", &rollback);
    tell!(
        "guardian: done in {:.3} s (connect, Unpause, and CheckPaused until confirmed)",
        started.elapsed().as_secs_f64()
    );
    let _ = fleet.keep_paused();
    rollback
}

/// Stops writing to the tool's stderr when whoever reads it would wait for its end (a
/// pipe: `$(...)`, `| tee`, `kubectl exec`): a detached lease must not hold the caller
/// until it ends. A terminal or a file keeps the guardian's messages.
fn let_go_of_a_piped_stderr() {
    use std::io::IsTerminal as _;
    use std::os::fd::AsFd as _;
    let stderr = std::io::stderr();
    if stderr.is_terminal() {
        return;
    }
    let is_file = stderr
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_file());
    if is_file {
        return;
    }
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stderr(&null);
    }
}

/// A plain pause's lease: check the pods every [`POLL`], let go of those seen unpaused or
/// revoked, and unpause the rest when the lease passes or a signal says stop.
async fn hold_detached(
    held: Armed,
    mut revoked: mpsc::UnboundedReceiver<Revocation>,
    config: &Config,
    signals: &mut Signals,
) {
    let_go_of_a_piped_stderr();
    enough_open_files(held.pods.len());
    let mut fleet = Fleet::adopt(held.pods.clone(), config.client.clone(), held.answered).await;
    let mut gone: HashSet<String> = HashSet::new();
    let holding = |fleet: &Fleet, gone: &HashSet<String>| -> Vec<Target> {
        fleet
            .held()
            .filter(|t| !gone.contains(&t.address()))
            .cloned()
            .collect()
    };
    let why = loop {
        if holding(&fleet, &gone).is_empty() {
            tell!(
                "guardian: every pod of the pause was unpaused, or its lease revoked; the lease ends"
            );
            let _ = fleet.keep_paused();
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {
                let _ = fleet.check_paused().await;
            }
            Some((address, mut stream)) = revoked.recv() => {
                tracing::info!(pod = %address, "lease revoked by another command");
                gone.insert(address);
                answer(&mut stream, b"ok\n").await;
            }
            () = tokio::time::sleep_until(held.until) => {
                break format!("the pause's lease (--max-hold {} s) passed", held.lease.as_secs_f64());
            }
            _ = signals.term.recv() => break "the guardian received SIGTERM".to_owned(),
            _ = signals.int.recv() => break "the guardian received SIGINT".to_owned(),
            _ = signals.hup.recv() => {}
            _ = signals.children.recv() => {
                // PID 1: orphans of the worker.
                while let Ok(Some(_)) = rustix::process::wait(WaitOptions::NOHANG) {}
            }
        }
    };
    // From here on a revocation is answered `end`: the lease is ending.
    revoked.close();
    while let Ok((_, mut stream)) = revoked.try_recv() {
        answer(&mut stream, b"end\n").await;
    }
    let left = holding(&fleet, &gone);
    let _ = fleet.keep_paused();
    // What is left was last seen paused by this run, every Pause answered.
    unpause(&why, left, true, config).await;
}

/// A pod's lease revoked (its address as the lease has it), and the revoker to answer.
type Revocation = (String, UnixStream);

/// Listens on every lease name of every pod; a command of this tool (the same user)
/// that connects revokes the lease on that pod, and is answered `ok` once the guardian
/// let go, or `end` once the lease is ending. Returns why a pod's lease cannot be
/// revoked, if one cannot.
async fn listen_for_revocation(
    pods: &[Target],
    revoke: &mpsc::UnboundedSender<Revocation>,
) -> Vec<String> {
    use std::os::linux::net::SocketAddrExt as _;
    let names = futures::future::join_all(pods.iter().map(lease_names)).await;
    let uid = rustix::process::getuid();
    let mut warnings = Vec::new();
    for (pod, names) in pods.iter().zip(names) {
        if names.is_empty() {
            warnings.push(format!("{pod}: its address does not resolve"));
        }
        for name in names {
            let listener = std::os::unix::net::SocketAddr::from_abstract_name(&name)
                .and_then(|n| std::os::unix::net::UnixListener::bind_addr(&n))
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::UnixListener::from_std(l)
                });
            let listener = match listener {
                Ok(listener) => listener,
                Err(e) => {
                    warnings.push(format!("{pod}: {e}"));
                    continue;
                }
            };
            let (address, revoke) = (pod.address(), revoke.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let same_user = stream.peer_cred().is_ok_and(|c| c.uid() == uid.as_raw());
                    if !same_user {
                        continue;
                    }
                    if let Err(mpsc::error::SendError((_, mut stream))) =
                        revoke.send((address.clone(), stream))
                    {
                        answer(&mut stream, b"end\n").await;
                    }
                }
            });
        }
    }
    warnings
}

async fn answer(stream: &mut UnixStream, word: &[u8]) {
    let _ = tokio::time::timeout(REVOKE_WITHIN, stream.write_all(word)).await;
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
