//! PID 1 of a container: the first process stays the guardian and runs the tool as its
//! child (the worker), as tini-style init processes do: it forwards TERM, INT and HUP,
//! reaps orphans, and exits with the worker's status (137 when it was SIGKILLed).

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions};
use tokio::time::Instant;

use super::{Signals, role, runtime, serve};

/// The tool this guardian started, when it is PID 1.
pub(super) struct Worker {
    pid: Pid,
    /// How it ended, once reaped: its exit code, or 128 plus the signal.
    pub(super) status: Option<u8>,
}

impl Worker {
    /// Reaps every child that ended (PID 1 inherits orphans), noting the worker's end.
    pub(super) fn reap(&mut self) {
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

    pub(super) fn kill(&self, signal: Signal) {
        let _ = rustix::process::kill_process(self.pid, signal);
    }

    /// Waits for the worker's end: after `patience` it is killed, and after as long
    /// again it is given up on (a process stuck in the kernel), as status 1.
    pub(super) async fn exit(
        &mut self,
        children: &mut tokio::signal::unix::Signal,
        patience: Duration,
    ) -> u8 {
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

/// Passes a signal to the worker; `false` when there is none, so the guardian itself is
/// the one told.
pub(super) fn forward(worker: &Option<Worker>, signal: Signal) -> bool {
    match worker {
        Some(w) if w.status.is_none() => {
            w.kill(signal);
            true
        }
        _ => false,
    }
}

/// PID 1 of a container: become the guardian, and run the tool (`args`, the command
/// line without the program) as its child. The signal handlers come first: a SIGTERM
/// that reaches PID 1 while the worker starts is then forwarded, not lost.
pub(crate) fn init(args: &[OsString]) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let spawned = Signals::install().and_then(|signals| {
            let (ours, theirs) = role::socket_pair()?;
            let child = role::this_binary("worker", theirs, args)?
                .spawn()
                .map_err(|e| format!("cannot start the tool's process: {e}"))?;
            let pid = i32::try_from(child.id())
                .ok()
                .and_then(Pid::from_raw)
                .ok_or("the tool's process has no pid")?;
            Ok((ours, pid, signals))
        });
        match spawned {
            Ok((link, pid, signals)) => {
                serve(link, Some(Worker { pid, status: None }), signals).await
            }
            Err(e) => {
                tell!("error: {e}; nothing was paused");
                ExitCode::FAILURE
            }
        }
    })
}
