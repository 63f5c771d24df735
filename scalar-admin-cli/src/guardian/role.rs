//! Which part this process plays, and how a process is started in a hidden one.
//!
//! The role travels as a hidden first argument ([`MARKER`]), never in the environment:
//! an environment variable is inherited by every child (the `--exec` command, a
//! Kubernetes credential plugin, a `scalar-admin` run inside `--exec`), and one that
//! falls back to the ordinary tool when something is off turns a guardian into a second,
//! invisible tool. A process started in a hidden role whose parent is not the one the
//! argument names, or whose standard input is not a socket (the link), exits at once
//! with status 2, having contacted nothing.

use std::ffi::OsString;
use std::os::fd::{AsFd as _, OwnedFd};
use std::process::Stdio;

use tokio::net::UnixStream;

/// The hidden first argument: `--scalar-admin-role=guardian:<the tool's pid>`, or
/// `worker:<the guardian's pid>`.
const MARKER: &str = "--scalar-admin-role=";

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

/// This process's role, and the command line without the hidden argument; an error (to
/// exit 2 with) when a hidden role is not what it claims.
pub(crate) fn role() -> Result<(Role, Vec<OsString>), String> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let Some(value) = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|a| a.strip_prefix(MARKER))
    else {
        return Ok((Role::Tool, args));
    };
    let refuse = |why: &str| format!("{MARKER}{value}: {why}; this is an internal role");
    let (role, parent) = value
        .split_once(':')
        .ok_or_else(|| refuse("not ROLE:PID"))?;
    let role = match role {
        "guardian" => Role::Guardian,
        "worker" => Role::Worker,
        _ => return Err(refuse("no such role")),
    };
    let parent_is = rustix::process::getppid()
        .is_some_and(|ppid| parent.parse::<i32>().ok() == Some(ppid.as_raw_nonzero().get()));
    if !parent_is {
        return Err(refuse(
            "the process that started it is gone or not its parent",
        ));
    }
    let link = rustix::net::sockopt::socket_type(std::io::stdin().as_fd());
    if link != Ok(rustix::net::SocketType::STREAM) {
        return Err(refuse("its standard input is not the link"));
    }
    args.remove(1);
    Ok((role, args))
}

/// Called first thing in the guardian role: out of the tool's session and process group
/// at once, so that a Ctrl-C to that group, or the end of its terminal, does not reach
/// this process. (It cannot fail here: a process spawned into the tool's group is no
/// group leader.)
pub(crate) fn leave_the_tools_session() {
    let _ = rustix::process::setsid();
}

/// A socket pair end given as a child's standard input, which it reads and writes.
pub(super) fn socket_pair() -> Result<(UnixStream, OwnedFd), String> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| format!("cannot create the guardian's socket: {e}"))?;
    ours.set_nonblocking(true)
        .map_err(|e| format!("cannot set up the guardian's socket: {e}"))?;
    let ours = UnixStream::from_std(ours)
        .map_err(|e| format!("cannot set up the guardian's socket: {e}"))?;
    Ok((ours, OwnedFd::from(theirs)))
}

/// This same binary in `role`, linked through its standard input, with `args` after the
/// hidden one: none for a guardian (the link carries what it needs), the user's own
/// for a worker.
pub(super) fn this_binary(
    role: &str,
    stdin: OwnedFd,
    args: &[OsString],
) -> Result<std::process::Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg(format!("{MARKER}{role}:{}", std::process::id()))
        .args(args)
        .stdin(Stdio::from(stdin));
    Ok(command)
}

/// The standard input as the link, in the guardian and in a worker.
pub(super) fn stdin_link() -> Result<UnixStream, String> {
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
