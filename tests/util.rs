//! Helpers shared by the test modules.

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

/// Every test body runs under this limit, so a hang fails the test instead of CI.
pub(crate) const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Runs a test body with a time limit, after installing test tracing once.
pub(crate) async fn bounded<T>(body: impl Future<Output = T>) -> T {
    subscribe();
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test exceeded its time limit")
}

/// Once per process: a tracing subscriber writing through the test harness, and
/// enough open files.
pub(crate) fn subscribe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Tests run in parallel, some with hundreds of pods in this process.
        scalar_admin_rig::raise_open_files();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// The outcome of one `scalar-admin` run.
pub(crate) struct Run {
    pub(crate) args: Vec<String>,
    pub(crate) status: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Panics, showing the command and its output, unless it exited with `code`.
    pub(crate) fn assert_status(&self, code: i32) {
        assert_eq!(
            self.status,
            Some(code),
            "scalar-admin {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
    }

    /// Asserts exit status 0 and returns the run.
    pub(crate) fn success(self) -> Self {
        self.assert_status(0);
        self
    }
}

/// A `scalar-admin` process still running.
pub(crate) struct Child {
    args: Vec<String>,
    child: tokio::process::Child,
}

impl Child {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends a signal (`TERM`, `INT`) to the process.
    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Takes its stderr, for a test that holds it unread: `wait` then collects stdout
    /// only.
    pub(crate) fn take_stderr(&mut self) -> tokio::process::ChildStderr {
        self.child.stderr.take().expect("stderr piped")
    }

    /// Takes its stdout, for a test that reads it as it comes: `wait` then collects
    /// stderr only.
    pub(crate) fn take_stdout(&mut self) -> tokio::process::ChildStdout {
        self.child.stdout.take().expect("stdout piped")
    }

    /// Waits for the process to exit and collects its output.
    pub(crate) async fn wait(self) -> Run {
        let out = self
            .child
            .wait_with_output()
            .await
            .expect("scalar-admin ran");
        Run {
            args: self.args,
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Starts the `scalar-admin` binary built with these tests.
pub(crate) fn start_scalar_admin(args: &[&str]) -> Child {
    start(env!("CARGO_BIN_EXE_scalar-admin"), args, &[])
}

/// Starts the `scalar-admin` binary with these environment variables too.
pub(crate) fn start_scalar_admin_env(args: &[&str], env: &[(&str, &str)]) -> Child {
    start(env!("CARGO_BIN_EXE_scalar-admin"), args, env)
}

/// Starts any program, as `start_scalar_admin` does.
pub(crate) fn start_program(program: &str, args: &[&str]) -> Child {
    start(program, args, &[])
}

/// Runs any program to completion, as `scalar_admin` does.
pub(crate) async fn run_program(program: &str, args: &[&str]) -> Run {
    start_program(program, args).wait().await
}

/// Runs any program to completion with these environment variables.
pub(crate) async fn run_program_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    start(program, args, env).wait().await
}

/// Runs the `scalar-admin` binary to completion with these environment variables.
pub(crate) async fn scalar_admin_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    start(env!("CARGO_BIN_EXE_scalar-admin"), args, env)
        .wait()
        .await
}

fn start(program: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    let child = tokio::process::Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start scalar-admin");
    Child {
        args: args.iter().map(|a| a.to_string()).collect(),
        child,
    }
}

/// Runs the `scalar-admin` binary to completion.
pub(crate) async fn scalar_admin(args: &[&str]) -> Run {
    start_scalar_admin(args).wait().await
}
