//! A plain pause's lease (`-c PAUSE --max-hold`), and its revocation by this tool's
//! later commands.
//!
//! The guardian holding a lease listens on one abstract Unix socket per pod address,
//! named `scalar-admin-lease/<address>/<uid>/<its pid>-<random token>`: unique per
//! guardian, so that two leases on one pod never share (or steal) a name. A PAUSE,
//! UNPAUSE or WINDOW of this tool finds every lease on its pods in `/proc/net/unix` and
//! connects to each of its own user's before it touches them; the guardian lets go of
//! that pod and answers `ok`, or `end` once its lease is ending. Both sides check that
//! the other runs as the same user (`SO_PEERCRED`), so another user can neither revoke
//! a lease nor answer for one. Another user's lease (by the uid in its name, or by the
//! listener's credentials) cannot be revoked, and its guardian could end a later pause:
//! PAUSE and WINDOW refuse with nothing sent (an UNPAUSE goes on). A lease that cannot
//! listen on every pod is no lease: the hand-over fails, and the tool unpauses.
//!
//! Revocations are answered by the listeners themselves, under one lock shared with
//! the lease's end, never behind a pod call: a revocation answered `ok` is honoured
//! even when the lease ends right after, and one that comes after the end is answered
//! `end`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use scalar_admin::{Fleet, Target};
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;

use super::{Armed, Signals, Unpause};

/// The start of every lease's socket name.
const PREFIX: &str = "scalar-admin-lease/";

/// How long the commands that revoke leases wait for every answer, all pods together.
const REVOKE_WITHIN: Duration = Duration::from_secs(1);

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
                    let Ok((mut stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let same_user = stream.peer_cred().is_ok_and(|c| c.uid() == uid);
                    if !same_user {
                        continue;
                    }
                    let word: &[u8] = {
                        let mut revoked = lock(&shared);
                        if revoked.ending {
                            b"end\n"
                        } else {
                            revoked.addresses.insert(pod.clone());
                            b"ok\n"
                        }
                    };
                    if word == b"ok\n" {
                        tracing::info!(pod = %pod, "lease revoked by another command");
                    }
                    let _ = tokio::time::timeout(REVOKE_WITHIN, stream.write_all(word)).await;
                }
            });
        }
    }
    Ok(shared)
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
/// before this command touches them: a later pause is not the lease's to end, and an
/// UNPAUSE ends it. Reaches the guardians of this network namespace (an ops pod, one
/// host) that run as this user. Fails, within twice [`REVOKE_WITHIN`], when a lease did
/// not answer that it let go (it may be ending, unpausing its pods): a Pause must not
/// start then.
pub(crate) async fn revoke(pods: &[Target]) -> Result<(), String> {
    // The usual case, no lease in this network namespace, costs one read of a file.
    let Some(here) = leases_here() else {
        tracing::warn!("cannot read /proc/net/unix: a pause lease on these pods cannot be found");
        return Ok(());
    };
    if here.is_empty() {
        return Ok(());
    }
    let addresses = futures::future::join_all(pods.iter().map(addresses_of)).await;
    let leased: Vec<(String, String)> = pods
        .iter()
        .zip(addresses)
        .flat_map(|(pod, addresses)| {
            let names: Vec<(String, String)> = addresses
                .iter()
                .flat_map(|address| {
                    let prefix = format!("{PREFIX}{address}/");
                    here.iter()
                        .filter(move |name| name.starts_with(&prefix))
                        .map(|name| (pod.to_string(), name.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            names
        })
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
            .filter(|name| name.starts_with(PREFIX))
            .map(str::to_owned)
            .collect(),
    )
}

/// Revokes each `(pod, lease name)` of this user, each answer awaited until one shared
/// deadline. Another user's lease (by the uid its name says, never connected to, or by
/// the credentials of a listener whose name claims this user) is not revoked, and makes
/// this fail: its guardian could end a later pause.
fn revoke_blocking(leased: &[(String, String)]) -> Result<(), String> {
    use std::io::Read as _;
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let deadline = std::time::Instant::now() + REVOKE_WITHIN;
    let uid = rustix::process::getuid();
    let mut unanswered = Vec::new();
    // Another user's leases first, before anything is revoked: a command that is refused
    // for them leaves this user's leases as they were.
    let mut foreign: Vec<String> = leased
        .iter()
        .filter(|(_, name)| owner(name) != Some(uid.as_raw()))
        .map(|(pod, name)| format!("{pod} ({name})"))
        .collect();
    if !foreign.is_empty() {
        return Err(foreign_error(&foreign));
    }
    for (pod, name) in leased {
        let Ok(address) = SocketAddr::from_abstract_name(name) else {
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
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let mut answer = [0u8; 3];
        if stream.read_exact(&mut answer).is_ok() && &answer == b"ok\n" {
            tracing::info!(pod = %pod, "a pause lease on the pod let go of it");
        } else {
            unanswered.push(pod.clone());
        }
    }
    let mut errors = Vec::new();
    if !foreign.is_empty() {
        errors.push(foreign_error(&foreign));
    }
    if !unanswered.is_empty() {
        errors.push(format!(
            "a pause lease on {} did not let go (its guardian may be unpausing it)",
            unanswered.join(", ")
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
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
