//! A plain pause's lease (`-c PAUSE --max-hold`), and its revocation by this tool's
//! later commands.
//!
//! The guardian holding a lease listens on one abstract Unix socket per pod address,
//! named `scalar-admin-lease/<address>/<uid>/<its pid>-<random token>`: unique per
//! guardian, so that two leases on one pod never share (or steal) a name. A PAUSE,
//! UNPAUSE or WINDOW of this tool finds every lease on its pods in `/proc/net/unix` and
//! revokes each of its own user's before it touches them. Both sides check that the
//! other runs as the same user (`SO_PEERCRED`), so another user can neither revoke a
//! lease nor answer for one. Another user's lease (by the uid in its name, or by the
//! listener's credentials) cannot be revoked, and its guardian could end a later pause:
//! PAUSE and WINDOW refuse with nothing sent (an UNPAUSE goes on). A lease that cannot
//! listen on every pod is no lease: the hand-over fails, and the tool unpauses.
//!
//! Revocation has two phases, so that a command that is refused revokes nothing:
//! [`prepare`] connects to every lease and has each say that it is there (`hi`), or
//! ending (`end`), revoking nothing; only once every lease answered, and everything else
//! that can refuse the pause did not, [`Prepared::commit`] sends each one byte, and
//! then only does a lease let go of its pod (`ok`, or `end` once it is ending). A
//! revoker that goes away before the commit (refused, cancelled, killed) closes its
//! connections, and the leases hold on.
//!
//! Revocations are answered by the listeners themselves, under one lock shared with
//! the lease's end, never behind a pod call: a revocation answered `ok` is honoured
//! even when the lease ends right after, and one that comes after the end is answered
//! `end`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use scalar_admin::{Fleet, Target};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use super::{Armed, Signals, Unpause};

/// The start of every lease's socket name.
const PREFIX: &str = "scalar-admin-lease/";

/// How long the commands that revoke leases wait for every answer, all pods together,
/// in each phase.
const REVOKE_WITHIN: Duration = Duration::from_secs(1);

/// How long a lease waits for a revoker's commit once it said it is there: longer than
/// what may come between the phases (the guardian's answer to the attempt's arming, 5 s).
const COMMIT_WITHIN: Duration = Duration::from_secs(10);

/// What a lease says: it is there and holds its pod (phase 1); it let go (phase 2); it is
/// ending (either phase), and may be unpausing its pods.
const HERE: &[u8] = b"hi\n";
const LET_GO: &[u8] = b"ok\n";
const ENDING: &[u8] = b"end\n";

/// The byte a revoker sends to commit.
const REVOKE: u8 = b'r';

/// How often a lease checks whether its pods are still paused.
const POLL: Duration = Duration::from_millis(250);

/// The pods whose lease was revoked, and whether the lease is ending.
#[derive(Default)]
pub(super) struct Revoked {
    addresses: HashSet<String>,
    ending: bool,
}

pub(super) type Shared = Arc<Mutex<Revoked>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Revoked> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What makes this guardian's lease names its own: its pid and 64 random bits.
fn suffix() -> String {
    use std::io::Read as _;
    // The tests of a name already taken choose it (`fault-injection` builds only).
    #[cfg(feature = "fault-injection")]
    if let Ok(suffix) = std::env::var("SCALAR_ADMIN_LEASE_SUFFIX") {
        return suffix;
    }
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // No /dev/urandom: the time still tells two guardians of one pid apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (nanos as u64).to_le_bytes();
    }
    format!("{}-{:016x}", std::process::id(), u64::from_le_bytes(bytes))
}

/// Listens for revocations of a lease on every address of every pod; an error, naming
/// the pod, when one cannot be listened on (the lease could not be revoked).
pub(super) async fn listen(pods: &[Target]) -> Result<Shared, String> {
    use std::os::linux::net::SocketAddrExt as _;
    let shared = Shared::default();
    let addresses = futures::future::join_all(pods.iter().map(addresses_of)).await;
    let uid = rustix::process::getuid().as_raw();
    let suffix = format!("{uid}/{}", suffix());
    for (pod, addresses) in pods.iter().zip(addresses) {
        if addresses.is_empty() {
            return Err(format!("{pod}: its address does not resolve"));
        }
        for address in addresses {
            let name = format!("{PREFIX}{address}/{suffix}");
            let listener = std::os::unix::net::SocketAddr::from_abstract_name(&name)
                .and_then(|n| std::os::unix::net::UnixListener::bind_addr(&n))
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::UnixListener::from_std(l)
                })
                .map_err(|e| format!("{pod}: cannot listen for revocations: {e}"))?;
            let (pod, shared) = (pod.address(), shared.clone());
            tokio::spawn(async move {
                loop {
                    // An error (out of files for a moment) must not drop the listener:
                    // its name is what makes the lease revocable.
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let same_user = stream.peer_cred().is_ok_and(|c| c.uid() == uid);
                    if !same_user {
                        continue;
                    }
                    // Each revoker on a task of its own: it holds its connection between
                    // its two phases, and others must not wait behind it.
                    tokio::spawn(answer(stream, pod.clone(), shared.clone()));
                }
            });
        }
    }
    Ok(shared)
}

/// One revoker of this user: says the lease is here, and lets go of `pod` only on the
/// revoker's commit. A revoker that closes its connection first revokes nothing.
async fn answer(mut stream: tokio::net::UnixStream, pod: String, shared: Shared) {
    let ending = lock(&shared).ending;
    let hello = if ending { ENDING } else { HERE };
    let said = tokio::time::timeout(REVOKE_WITHIN, stream.write_all(hello)).await;
    if ending || !matches!(said, Ok(Ok(()))) {
        return;
    }
    let mut byte = [0u8; 1];
    let committed = tokio::time::timeout(COMMIT_WITHIN, stream.read_exact(&mut byte)).await;
    if !matches!(committed, Ok(Ok(_))) || byte[0] != REVOKE {
        return;
    }
    let word = {
        let mut revoked = lock(&shared);
        if revoked.ending {
            ENDING
        } else {
            revoked.addresses.insert(pod.clone());
            LET_GO
        }
    };
    if word == LET_GO {
        tracing::info!(pod = %pod, "lease revoked by another command");
    }
    let _ = tokio::time::timeout(REVOKE_WITHIN, stream.write_all(word)).await;
}

/// A plain pause's lease: check the pods every [`POLL`], let go of those seen unpaused or
/// revoked, and unpause the rest when the lease passes or a signal says stop.
pub(super) async fn hold(held: Armed, revoked: Shared, unpause: &Unpause, signals: &mut Signals) {
    let_go_of_a_piped_stderr();
    let mut fleet = Fleet::adopt(held.pods.clone(), unpause.client.clone(), held.answered).await;
    let holding = |fleet: &Fleet, revoked: &Revoked| -> Vec<Target> {
        fleet
            .held()
            .filter(|t| !revoked.addresses.contains(&t.address()))
            .cloned()
            .collect()
    };
    let lease = held.lease.as_secs_f64();
    let stop = async {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(held.until) => {
                    break format!("the pause's lease (--max-hold {lease} s) passed");
                }
                _ = signals.term.recv() => break "the guardian received SIGTERM".to_owned(),
                _ = signals.int.recv() => break "the guardian received SIGINT".to_owned(),
                _ = signals.hup.recv() => {}
                _ = signals.children.recv() => {
                    // PID 1: orphans of the worker.
                    while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
                }
            }
        }
    };
    tokio::pin!(stop);
    let why = loop {
        if holding(&fleet, &lock(&revoked)).is_empty() {
            tell!(
                "guardian: every pod of the pause was unpaused, or its lease revoked; the lease ends"
            );
            let _ = fleet.into_paused();
            return;
        }
        // The check may wait on a slow pod; the lease's end and signals do not.
        let poll = async {
            tokio::time::sleep(POLL).await;
            let _ = fleet.check_paused().await;
        };
        tokio::select! {
            why = &mut stop => break why,
            () = poll => {}
        }
    };
    // From here on a revocation is answered `end`; those answered `ok` are let go.
    let left = {
        let mut revoked = lock(&revoked);
        revoked.ending = true;
        holding(&fleet, &revoked)
    };
    let _ = fleet.into_paused();
    // What is left was last seen paused by this run, every Pause answered.
    unpause.run(&why, left, true, Instant::now()).await;
}

/// Makes every plain-pause lease a guardian of this tool holds on these pods let go,
/// before this command touches them (an UNPAUSE ends a lease's pause whatever the lease
/// says): the leases that answered are revoked even when others did not, and the error
/// names those.
pub(crate) async fn revoke(pods: &[Target]) -> Result<(), String> {
    let (prepared, problems) = find_and_prepare(pods).await;
    let committed = prepared.commit(&mut Vec::new()).await;
    let errors: Vec<String> = problems.into_iter().chain(committed.err()).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Phase 1 of revoking the plain-pause leases this tool's guardians hold on these pods,
/// before a Pause: connects to each and has it say it is there, revoking nothing.
/// Reaches the guardians of this network namespace (an ops pod, one host) that run as
/// this user. Fails, within twice [`REVOKE_WITHIN`], when a lease is another user's or
/// did not answer that it is there (it may be ending, unpausing its pods): a Pause must
/// not start then. Dropped uncommitted, it revokes nothing.
pub(crate) async fn prepare(pods: &[Target]) -> Result<Prepared, String> {
    let (prepared, problems) = find_and_prepare(pods).await;
    if problems.is_empty() {
        Ok(prepared)
    } else {
        Err(problems.join("; "))
    }
}

/// The leases of these pods, each connected to and answered `hi`, and what kept the
/// others from being so.
async fn find_and_prepare(pods: &[Target]) -> (Prepared, Vec<String>) {
    // The usual case, no lease in this network namespace, costs one read of a file.
    let Some(here) = leases_here() else {
        tracing::warn!("cannot read /proc/net/unix: a pause lease on these pods cannot be found");
        return (Prepared::default(), Vec::new());
    };
    if here.is_empty() {
        return (Prepared::default(), Vec::new());
    }
    let addresses = futures::future::join_all(pods.iter().map(addresses_of)).await;
    let leased: Vec<(Target, String)> = pods
        .iter()
        .zip(addresses)
        .flat_map(|(pod, addresses)| {
            let names: Vec<(Target, String)> = addresses
                .iter()
                .flat_map(|address| {
                    let prefix = format!("{PREFIX}{address}/");
                    here.iter()
                        .filter(move |name| name.starts_with(&prefix))
                        .map(|name| (pod.clone(), name.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            names
        })
        .collect();
    if leased.is_empty() {
        return (Prepared::default(), Vec::new());
    }
    // Blocking calls (a connect to a full backlog) run aside, and are abandoned a second
    // after the answers' own deadline. Abandoned, their connections close when they
    // end, uncommitted: nothing is revoked.
    let prepare = tokio::task::spawn_blocking(move || prepare_blocking(leased));
    let backstop = REVOKE_WITHIN.saturating_mul(2);
    match tokio::time::timeout(backstop, prepare).await {
        Ok(Ok(prepared)) => prepared,
        _ => (
            Prepared::default(),
            vec![format!(
                "a pause lease on these pods did not answer within {} s",
                backstop.as_secs()
            )],
        ),
    }
}

/// The leases of a command's pods, connected to, each of which said it is there: what
/// [`commit`](Self::commit) revokes.
#[derive(Default)]
pub(crate) struct Prepared {
    leases: Vec<(Target, std::os::unix::net::UnixStream)>,
}

impl Prepared {
    /// Phase 2: revokes every lease prepared. The revocations leave all at once, within
    /// one poll (a cancel cannot split them), and each pod whose lease may have let go is
    /// added to `let_go` before any answer is awaited: whatever happens next, the caller
    /// knows which pods no lease holds any more. Fails when a lease did not answer that
    /// it let go (it may be ending, unpausing its pod).
    pub(crate) async fn commit(self, let_go: &mut Vec<Target>) -> Result<(), String> {
        use std::io::Write as _;
        if self.leases.is_empty() {
            return Ok(());
        }
        let mut sent = Vec::with_capacity(self.leases.len());
        // A lease that closed its end (it waited too long for the byte, or it is ending)
        // may still hold its pod: that is a lease that did not let go, never none.
        let mut unwritten = Vec::new();
        for (pod, mut stream) in self.leases {
            // One byte on a connection nothing else was written to: never blocks.
            if stream.write_all(&[REVOKE]).is_ok() {
                if !let_go.contains(&pod) {
                    let_go.push(pod.clone());
                }
                sent.push((pod, stream));
            } else {
                unwritten.push(pod);
            }
        }
        let sent_to: Vec<Target> = sent.iter().map(|(pod, _)| pod.clone()).collect();
        let read = tokio::task::spawn_blocking(move || answers_blocking(sent));
        let backstop = REVOKE_WITHIN.saturating_mul(2);
        let (ending, unanswered) = match tokio::time::timeout(backstop, read).await {
            Ok(Ok(answers)) => answers,
            _ => {
                return Err(format!(
                    "a pause lease on these pods did not answer within {} s",
                    backstop.as_secs()
                ));
            }
        };
        // A lease that answered that it is ending did not let go: its guardian unpauses
        // its pods itself. A pod another lease of it may have let go of (answered `ok`,
        // or nothing) stays named.
        let count = |pods: &[Target], pod: &Target| pods.iter().filter(|p| *p == pod).count();
        // One whose revocation went unanswered may have let go: named too.
        for pod in &ending {
            if count(&sent_to, pod) <= count(&ending, pod) {
                let_go.retain(|p| p != pod);
            }
        }
        let not_let_go: Vec<String> = ending
            .iter()
            .chain(&unanswered)
            .chain(&unwritten)
            .map(ToString::to_string)
            .collect();
        if not_let_go.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "a pause lease on {} did not let go (its guardian may be unpausing it)",
                not_let_go.join(", ")
            ))
        }
    }
}

/// Reads one short line (`hi`, `ok`, `end`) by `deadline`.
fn read_word(stream: &mut std::os::unix::net::UnixStream, deadline: std::time::Instant) -> Vec<u8> {
    use std::io::Read as _;
    let mut word = Vec::new();
    let mut byte = [0u8; 1];
    while word.len() < 8 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .is_err()
        {
            break;
        }
        match stream.read(&mut byte) {
            Ok(1) => {
                word.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            _ => break,
        }
    }
    word
}

/// Each committed lease's answer, all by one shared deadline: the pods whose lease said
/// it is ending, and those whose lease did not answer.
fn answers_blocking(
    sent: Vec<(Target, std::os::unix::net::UnixStream)>,
) -> (Vec<Target>, Vec<Target>) {
    let deadline = std::time::Instant::now() + REVOKE_WITHIN;
    let (mut ending, mut unanswered) = (Vec::new(), Vec::new());
    for (pod, mut stream) in sent {
        match read_word(&mut stream, deadline).as_slice() {
            LET_GO => tracing::info!(pod = %pod, "a pause lease on the pod let go of it"),
            ENDING => ending.push(pod),
            _ => unanswered.push(pod),
        }
    }
    (ending, unanswered)
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
            .filter(|name| name.starts_with(PREFIX))
            .map(str::to_owned)
            .collect(),
    )
}

/// Connects to each `(pod, lease name)` of this user and reads its `hi`, each by one
/// shared deadline, revoking nothing. Another user's lease (by the uid its name says,
/// never connected to, or by the credentials of a listener whose name claims this user)
/// cannot be revoked: a problem, since its guardian could end a later pause; so is a
/// lease that did not say it is there.
fn prepare_blocking(leased: Vec<(Target, String)>) -> (Prepared, Vec<String>) {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let deadline = std::time::Instant::now() + REVOKE_WITHIN;
    let uid = rustix::process::getuid();
    let mut prepared = Prepared::default();
    let mut unanswered = Vec::new();
    let mut foreign: Vec<String> = leased
        .iter()
        .filter(|(_, name)| owner(name) != Some(uid.as_raw()))
        .map(|(pod, name)| format!("{pod} ({name})"))
        .collect();
    for (pod, name) in leased {
        if owner(&name) != Some(uid.as_raw()) {
            continue;
        }
        let Ok(address) = SocketAddr::from_abstract_name(&name) else {
            continue;
        };
        // No lease (any more): refused at once.
        let Ok(mut stream) = UnixStream::connect_addr(&address) else {
            continue;
        };
        match rustix::net::sockopt::socket_peercred(&stream) {
            Ok(peer) if peer.uid == uid => {}
            _ => {
                foreign.push(format!("{pod} ({name}, listened on by another user)"));
                continue;
            }
        }
        if read_word(&mut stream, deadline) == HERE {
            prepared.leases.push((pod, stream));
        } else {
            unanswered.push(pod.to_string());
        }
    }
    let mut problems = Vec::new();
    if !foreign.is_empty() {
        problems.push(foreign_error(&foreign));
    }
    if !unanswered.is_empty() {
        problems.push(format!(
            "a pause lease on {} did not let go (its guardian may be unpausing it)",
            unanswered.join(", ")
        ));
    }
    (prepared, problems)
}

fn foreign_error(foreign: &[String]) -> String {
    format!(
        "a pause lease of another user holds {}: this user cannot revoke it, and it could \
         end a later pause (that user's UNPAUSE revokes it)",
        foreign.join(", ")
    )
}

/// The uid a lease name says its guardian runs as.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.rsplitn(3, '/');
    let _suffix = parts.next()?;
    parts.next()?.parse().ok()
}

/// A pod's socket addresses, so that its leases are found however a command named it
/// (`-a` with a name or an address, `-s`, `-r`). A name that does not resolve within
/// [`REVOKE_WITHIN`] has none.
async fn addresses_of(pod: &Target) -> Vec<std::net::SocketAddr> {
    match pod.socket_addr() {
        Some(address) => vec![address],
        None => tokio::time::timeout(REVOKE_WITHIN, tokio::net::lookup_host(pod.address()))
            .await
            .ok()
            .and_then(Result::ok)
            .map(Iterator::collect)
            .unwrap_or_default(),
    }
}

/// Stops writing to the tool's stderr when whoever reads it would wait for its end (a
/// pipe: `$(...)`, `| tee`, `kubectl exec`): a lease must not hold the caller until it
/// ends. A terminal or a file keeps the guardian's messages.
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
