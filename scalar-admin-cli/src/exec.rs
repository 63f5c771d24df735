//! `--exec`: the backup command run while every pod is paused, in a process group of
//! its own that is killed whole when the command ends, passes its timeout, or the window
//! is interrupted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use scalar_admin::unix_micros;
use scalar_admin::window::Paused;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::guardian::Notifier;
use crate::java::java_instant;

/// The longest line of the command's output relayed as one line; longer ones are split.
const MAX_LINE: usize = 4096;

/// How long a killed command may take to be reaped.
const REAP: Duration = Duration::from_secs(5);

/// How long the output may still be read once the command's process group is gone.
const DRAIN: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) enum Program {
    /// `sh -c CMD`.
    Shell(String),
    /// An argument vector, run as is.
    Argv(Vec<String>),
}

/// The command and its time limit.
#[derive(Debug, Clone)]
pub(crate) struct Exec {
    pub(crate) program: Program,
    pub(crate) timeout: Duration,
}

/// How one run of the command went.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExecResult {
    pub(crate) attempt: usize,
    /// Its exit code, when it exited.
    pub(crate) exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub(crate) signal: Option<i32>,
    /// Whether it was killed at `--exec-timeout`.
    pub(crate) timed_out: bool,
    pub(crate) duration_us: u64,
    /// Why it could not run, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    #[serde(skip)]
    pub(crate) duration: Duration,
    #[serde(skip)]
    pub(crate) timeout: Duration,
}

impl ExecResult {
    /// Whether the command succeeded (exit 0).
    pub(crate) fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && self.error.is_none()
    }

    /// What happened, without the duration: `exit 0`, `killed at its 2 s timeout`.
    pub(crate) fn what(&self) -> String {
        if let Some(e) = &self.error {
            format!("cannot run: {e}")
        } else if self.timed_out {
            format!(
                "killed at its {} s timeout",
                trim_secs(self.timeout.as_secs_f64())
            )
        } else if let Some(code) = self.exit_code {
            format!("exit {code}")
        } else if let Some(signal) = self.signal {
            format!("killed by signal {signal}")
        } else {
            "ended".to_owned()
        }
    }

    /// The text output's line: `Exec: exit 0 in 1.234 s`.
    pub(crate) fn line(&self) -> String {
        format!(
            "Exec: {} in {:.3} s",
            self.what(),
            self.duration.as_secs_f64()
        )
    }
}

fn trim_secs(s: f64) -> String {
    let text = format!("{s:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Kills the command's whole process group when dropped: at its end, its timeout, or
/// when the window drops the action (a signal); the guardian, told of the group when it
/// started, hears of its end then.
struct GroupKill(Option<rustix::process::Pid>, Option<Notifier>);

impl GroupKill {
    fn new(pgid: Option<rustix::process::Pid>, guardian: Option<&Notifier>) -> Self {
        let guardian = guardian.cloned();
        if let (Some(pgid), Some(guardian)) = (pgid, &guardian) {
            guardian.started(pgid);
        }
        Self(pgid, guardian)
    }

    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // ESRCH: nothing of the group is left.
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
        if let Some(guardian) = &self.1 {
            guardian.ended();
        }
    }
}

/// The pods file, removed when dropped.
struct PodsFile(PathBuf);

impl PodsFile {
    /// Writes the pods file on a blocking thread, at most `within`: the hold's timers and
    /// signals run on this thread, and a temporary directory on a hung disk must not
    /// stall them.
    async fn write(paused: &Paused, within: Duration) -> std::io::Result<PodsFile> {
        use std::io::Write as _;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "scalar-admin-pods-{}-{}-{nanos}.json",
            std::process::id(),
            paused.attempt()
        ));
        let doc = serde_json::json!({
            "attempt": paused.attempt(),
            "pause_completed_at_us": unix_micros(paused.pause_completed_at()),
            "groups": paused.groups(),
        });
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            // `create_new`: never through a link someone left in the temporary directory.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)?;
            let file_guard = PodsFile(target);
            file.write_all(text.as_bytes())?;
            Ok(file_guard)
        });
        match tokio::time::timeout(within, written).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{} not written within {within:?}", path.display()),
            )),
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PodsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the command for this window, its output relayed to stderr line by line; the
/// guardian, if any, is told its process group, to kill it if this process dies.
pub(crate) async fn run(exec: &Exec, paused: &Paused, guardian: Option<&Notifier>) -> ExecResult {
    let started = Instant::now();
    let mut result = ExecResult {
        attempt: paused.attempt(),
        exit_code: None,
        signal: None,
        timed_out: false,
        duration_us: 0,
        error: None,
        duration: Duration::ZERO,
        timeout: exec.timeout,
    };
    if let Err(e) = run_inner(exec, paused, guardian, &mut result).await {
        result.error = Some(e);
    }
    result.duration = started.elapsed();
    result.duration_us = u64::try_from(result.duration.as_micros()).unwrap_or(u64::MAX);
    result
}

async fn run_inner(
    exec: &Exec,
    paused: &Paused,
    guardian: Option<&Notifier>,
    result: &mut ExecResult,
) -> Result<(), String> {
    use std::os::unix::process::ExitStatusExt as _;
    let pods = PodsFile::write(paused, exec.timeout)
        .await
        .map_err(|e| format!("cannot write the pods file: {e}"))?;
    let (name, mut command) = match &exec.program {
        Program::Shell(script) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(script);
            ("sh".to_owned(), c)
        }
        Program::Argv(argv) => {
            let mut c = tokio::process::Command::new(&argv[0]);
            c.args(&argv[1..]);
            (argv[0].clone(), c)
        }
    };
    let (at, ms) = java_instant(paused.pause_completed_at());
    command
        .env("SCALAR_ADMIN_PAUSE_COMPLETED_MS", ms.to_string())
        .env("SCALAR_ADMIN_PAUSE_COMPLETED_AT", at)
        .env(
            "SCALAR_ADMIN_PAUSE_COMPLETED_US",
            unix_micros(paused.pause_completed_at()).to_string(),
        )
        .env("SCALAR_ADMIN_ATTEMPT", paused.attempt().to_string())
        .env("SCALAR_ADMIN_PODS_FILE", pods.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that it and everything it starts die together,
        // and a signal to the tool's group does not reach it before the tool decides.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let group = GroupKill::new(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw),
        guardian,
    );
    let out = child.stdout.take().map(|r| tokio::spawn(relay(r)));
    let err = child.stderr.take().map(|r| tokio::spawn(relay(r)));
    let status = match tokio::time::timeout(exec.timeout, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            result.timed_out = true;
            tracing::warn!(timeout = ?exec.timeout, "the --exec command passed its timeout; killing its process group");
            group.kill();
            // A process stuck in the kernel (an NFS mount, a dying disk) may outlive even
            // SIGKILL: the window does not wait for it past a bound.
            match tokio::time::timeout(REAP, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    return Err(format!(
                        "{name} did not end within {} s of SIGKILL (stuck in the kernel?); left behind",
                        REAP.as_secs()
                    ));
                }
            }
        }
    };
    // Whatever it left running in its group goes too: nothing of it outlives the hold.
    group.kill();
    let status = status.map_err(|e| format!("cannot wait for {name}: {e}"))?;
    result.exit_code = status.code();
    result.signal = status.signal();
    let drain = async {
        for task in [out, err].into_iter().flatten() {
            let _ = task.await;
        }
    };
    let _ = tokio::time::timeout(DRAIN, drain).await;
    drop(pods);
    Ok(())
}

/// Copies the command's output to stderr, each line prefixed `exec: `, a line at most
/// [`MAX_LINE`] bytes.
async fn relay(mut reader: impl AsyncRead + Unpin) {
    let mut buf = vec![0u8; 8192];
    let mut line = Vec::with_capacity(256);
    // Through the queue that never blocks: a chatty command must not stall the hold.
    let emit = |line: &[u8]| {
        crate::stderr::relay(format!("exec: {}", String::from_utf8_lossy(line)));
    };
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                emit(&line);
                line.clear();
            } else {
                line.push(b);
                if line.len() >= MAX_LINE {
                    emit(&line);
                    line.clear();
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&line);
    }
}
