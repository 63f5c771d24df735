//! `scalar-admin`: pause, unpause or check every pod of a ScalarDB or ScalarDL
//! deployment. A drop-in for the Java tool's command line; see `--help`.
//!
//! This file only wires things up: parse flags, call the library, print the outcome.

/// `println!` that never panics: a script that stopped reading (a closed pipe) must not
/// turn into a panic after the pods were paused; the exit status still tells.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics nor blocks: the line is queued for stderr
/// ([`stderr`]), and dropped if stderr is not being read.
macro_rules! tell {
    ($($arg:tt)*) => {
        $crate::stderr::line(format!($($arg)*))
    };
}

mod args;
mod exec;
mod guardian;
mod java;
mod journal;
mod limits;
mod output;
mod recovery;
mod runtime;
mod sak;
mod stderr;

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::rc::Rc;

use clap::Parser;
use futures::FutureExt;
use scalar_admin::{Error, Fleet, PauseGuard as _, Target, panic_message};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::{EnvFilter, Layer};

use args::{Command, Config, LowArgs};
use exec::ExecResult;
use guardian::{Guardian, Role};
use journal::Journal;
use output::ExitStatus;

/// How long the exit waits for stderr to take what is queued for it.
const EXIT_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> ExitCode {
    stderr::route_panics();
    // On every way out, a panic's unwinding included.
    let _flush = stderr::FlushOnExit(EXIT_FLUSH);
    run_main()
}

fn run_main() -> ExitCode {
    let (role, args) = match guardian::role() {
        Ok(role) => role,
        Err(e) => {
            tell!("error: {e}; nothing was contacted");
            return ExitStatus::Usage.into();
        }
    };
    if role == Role::Guardian {
        // The link carries everything the guardian needs; it reads no flag.
        guardian::leave_the_tools_session();
        init_logging(false, 0, false);
        return guardian::main();
    }
    // Started as `scalar-admin-for-kubernetes`: that tool's command line.
    if role == Role::Tool && sak::is_invoked() {
        return sak::main();
    }
    let low = match parse::<LowArgs>(&args) {
        Ok(low) => low,
        Err(status) => return status,
    };
    let config = match Config::from_low_args(&low) {
        Ok(config) => config,
        Err(e) => {
            tell!("error: {e}");
            return ExitStatus::Usage.into();
        }
    };
    init_logging(
        low.quiet,
        low.verbose,
        config.inject_panic.as_deref() == Some("pod"),
    );
    let pid_1 = std::process::id() == 1;
    if pid_1 && role == Role::Tool && config.command == Command::Pause && config.lease.is_some() {
        tell!(
            "error: -c PAUSE --max-hold as PID 1 of a container: the container (and whatever waits \
             for it) would last until the lease ends; run it in a long-lived pod (kubectl exec), \
             or use -c WINDOW"
        );
        return ExitStatus::Usage.into();
    }
    if role == Role::Tool && pid_1 && config.lease.is_some() {
        // PID 1 of a container: the first process stays the guardian, since the
        // kernel kills the whole PID namespace when PID 1 dies.
        return guardian::init(&args[1..]);
    }
    // HISTORY reads the journal only: no pod, no runtime.
    if config.command == Command::History {
        return journal::history(&config).into();
    }
    // The journal must take the window's record before anything is paused.
    let journal = match (&config.journal, config.command) {
        (Some(place), Command::Window) => {
            match Journal::open(place, config.journal_retain, config.window_bound) {
                Ok(journal) => Some(journal),
                Err(e) => {
                    tell!("error: {e}; nothing was paused");
                    return ExitStatus::Failure.into();
                }
            }
        }
        _ => None,
    };
    let Some(current_thread) = runtime::Background::start() else {
        tell!("error: cannot start the runtime");
        return ExitStatus::Failure.into();
    };
    let resolved = current_thread.block_on(futures::future::try_join_all(
        config.groups.iter().map(|g| async {
            match config.command {
                Command::Unpause | Command::CheckPaused => g.reachable(&config.dns).await,
                Command::Pause | Command::Window | Command::History => g.resolve(&config.dns).await,
            }
        }),
    ));
    let mut resolved = match resolved {
        Ok(resolved) => resolved,
        Err(e) if config.command == Command::Window => {
            return output::windows(&config, &Err(e), &[]).into();
        }
        Err(e) => return output::report(&config, &Err(e)).into(),
    };
    let pods: usize = resolved.iter().map(Vec::len).sum();
    let targets = match config.command {
        Command::Window => None,
        _ => resolved.pop(),
    };
    if let Err(message) = limits::open_files_for(pods) {
        tell!("error: {message}; no pod was contacted");
        return ExitStatus::Failure.into();
    }
    // One thread: it starts fastest (a command runs per backup step), and on a small
    // machine it closes the gates closer together than a pool does, since no second
    // thread competes for the cores the pods and the kernel need (README, bench section).
    let runtime = current_thread;
    runtime
        .block_on(run(config, targets, journal, role == Role::Worker))
        .into()
}

/// Parses the command line `args`, or prints clap's message and says how to exit: --help
/// and --version are "errors" that print to stdout and exit 0, the rest exit 2.
pub(crate) fn parse<T: Parser>(args: &[std::ffi::OsString]) -> Result<T, ExitCode> {
    T::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitStatus::Usage.into()
        } else {
            ExitCode::SUCCESS
        }
    })
}

async fn run(
    config: Config,
    targets: Option<Vec<Target>>,
    journal: Option<Journal>,
    worker: bool,
) -> ExitStatus {
    // Take over SIGINT and SIGTERM before anything is sent: from here on a signal never
    // kills the process mid-command. During a pause it triggers the rollback; during
    // an unpause or a check it is ignored, since finishing (within the call deadlines)
    // is the safe thing to do.
    let interrupted = match interrupted() {
        Ok(interrupted) => interrupted,
        Err(message) => {
            tell!("error: {message}");
            return ExitStatus::Failure;
        }
    };
    // The guardian, before anything is paused; when it dies or its lease passes, this
    // run ends as if interrupted.
    let mut guardian = match config.lease {
        Some(lease) => match Guardian::start(lease, config.guardian.clone(), worker).await {
            Ok(guardian) => Some(guardian),
            Err(e) => {
                tell!("error: {e}; nothing was paused (--no-guardian runs a window without one)");
                return ExitStatus::Failure;
            }
        },
        None => None,
    };
    let lost = guardian.as_ref().map(Guardian::lost);
    let interrupted = async move {
        let lost = async {
            match lost {
                Some(lost) => lost.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = interrupted => {}
            why = lost => tell!("error: {why}; ending this run"),
        }
    };
    tokio::pin!(interrupted);

    let Some(targets) = targets else {
        // The window undoes its own pause if anything in it panics, then lets the panic
        // go on; it logs what it left.
        let window = AssertUnwindSafe(window(&config, journal, &mut guardian, interrupted));
        let status = window.catch_unwind().await.unwrap_or_else(|panic| {
            tell!("error: internal error: {}", panic_message(&*panic));
            ExitStatus::Failure
        });
        if let Some(guardian) = guardian {
            guardian.finish().await;
        }
        return status;
    };
    let connect = Fleet::connect(targets, config.client.clone());
    let mut fleet = tokio::select! {
        fleet = connect => fleet,
        () = &mut interrupted => {
            tell!("error: interrupted while connecting, before any Pause was sent; nothing was changed");
            return ExitStatus::Failure;
        }
    };
    // The pods whose lease let go of them for this pause.
    let mut let_go: Vec<Target> = Vec::new();
    // A panic anywhere from the first Pause byte to the last line of output (a bug, or
    // a broken terminal) must not strand pods: catch it and undo this run's pause.
    let command = AssertUnwindSafe(async {
        let result: Result<_, Error> = match config.command {
            Command::Pause => {
                let mut watch = guardian::PauseWatch::new(&mut guardian, 1, &mut let_go);
                fleet
                    .pause_guarded(config.pause, interrupted, &mut watch)
                    .await
            }
            Command::Unpause => {
                // The operator's UNPAUSE ends a lease's pause whatever the lease says.
                let targets: Vec<Target> = fleet.targets().cloned().collect();
                if let Err(e) = guardian::revoke_leases(&targets).await {
                    tracing::warn!("{e}");
                }
                fleet.unpause().await
            }
            Command::CheckPaused => fleet.check_paused().await,
            Command::Window | Command::History => unreachable!("handled above"),
        };
        if config.inject_panic.as_deref() == Some("output") {
            panic!("injected panic before the output");
        }
        result
    });
    let (status, held) = match command.catch_unwind().await {
        Ok(mut result) => {
            // A paused lease goes to the guardian before the pause is reported: the
            // guardian holds it from now on, whatever becomes of this process. A lease
            // it cannot take is no pause to leave behind.
            if let Some(mut guardian) = guardian {
                match (&result, config.lease) {
                    (Ok(_), Some(lease)) => {
                        let held: Vec<Target> = fleet.held().cloned().collect();
                        if let Err(e) = guardian.detach(&held, lease).await {
                            tell!(
                                "error: the guardian did not take the pause's lease: {e}; unpausing"
                            );
                            let rollback = fleet.release().await;
                            result = Err(Error::Interrupted {
                                rollback: Box::new(rollback),
                            });
                        }
                    }
                    _ => {
                        guardian
                            .let_go(result.as_ref().err().and_then(Error::rollback))
                            .await;
                        guardian.finish().await;
                    }
                }
            }
            let status = output::report(&config, &result);
            if let Err(e) = &result {
                tell_unleased(&config, &let_go, e);
            }
            (status, fleet.into_paused())
        }
        Err(panic) => {
            let rollback = fleet.release().await;
            if let Some(mut guardian) = guardian {
                guardian.let_go(Some(&rollback)).await;
                guardian.finish().await;
            }
            output::panicked(&config, &panic_message(&*panic), &rollback);
            (ExitStatus::Failure, fleet.into_paused())
        }
    };
    // A plain pause is meant to outlive the command, and whatever else is still held has
    // been named in the output with its recovery command.
    drop(held);
    status
}

/// Names, after a failed pause's output, the pods a lease let go of for it and that it
/// left paused by the earlier pause ([`recovery::unleased`]).
fn tell_unleased(config: &Config, let_go: &[Target], error: &Error) {
    let text = recovery::unleased(&config.tls_flags, let_go, error);
    if !text.is_empty() {
        tell!("{}", text.trim_end());
    }
}

/// Tells the guardian what each attempt holds, and writes the journal's close line as
/// each attempt ends.
struct Watch<'a> {
    guardian: &'a mut Option<Guardian>,
    /// The pods whose lease let go of them for the current attempt: an earlier attempt
    /// ended with its pods confirmed unpaused, or the run ended.
    let_go: Vec<Target>,
    journal: Rc<RefCell<Option<Journal>>>,
    execs: Rc<RefCell<Vec<ExecResult>>>,
    /// Whether the guardian was told of the attempt's release.
    released: bool,
}

impl scalar_admin::window::Guard for Watch<'_> {
    async fn arm(&mut self, attempt: usize, pods: &[Target]) -> Result<(), String> {
        self.released = false;
        self.let_go.clear();
        guardian::PauseWatch::new(self.guardian, attempt, &mut self.let_go)
            .arm(pods)
            .await
    }

    async fn narrow(&mut self, _: usize, holding: &[Target]) {
        // The window calls this only for an attempt it armed.
        if let Some(guardian) = self.guardian.as_mut() {
            guardian
                .narrow(&guardian::with_let_go(holding, &self.let_go))
                .await;
        }
    }

    fn leave(&mut self, _: usize, pod: &Target) {
        // A pod a lease let go of for this attempt stays the guardian's.
        if let (false, Some(guardian)) = (self.let_go.contains(pod), self.guardian.as_ref()) {
            guardian.leave(pod);
        }
    }

    async fn released(&mut self, _: usize, rollback: &scalar_admin::Rollback) {
        self.released = true;
        if let Some(guardian) = self.guardian.as_mut() {
            guardian.let_go(Some(rollback)).await;
        }
    }

    async fn disarm(
        &mut self,
        attempt: usize,
        outcome: Result<&scalar_admin::window::WindowReport, &Error>,
    ) {
        if !self.released
            && let Some(guardian) = self.guardian.as_mut()
        {
            guardian
                .let_go(outcome.err().and_then(Error::rollback))
                .await;
        }
        let written = self.journal.borrow_mut().as_mut().map(|journal| {
            let execs = self.execs.borrow();
            match outcome {
                Ok(w) => journal.closed(attempt, w, execs.iter().find(|e| e.attempt == attempt)),
                Err(e) => journal.failed(&e.to_string(), &execs),
            }
        });
        if let Some(written) = written {
            written.wait().await;
        }
    }
}

/// Runs the windows, with the --exec command as their action, the guardian told what
/// each attempt holds, and the journal's lines at each window's open and close, and
/// prints them.
async fn window(
    config: &Config,
    journal: Option<Journal>,
    guardian: &mut Option<Guardian>,
    interrupted: impl Future<Output = ()>,
) -> ExitStatus {
    let journal = Rc::new(RefCell::new(journal));
    let execs: Rc<RefCell<Vec<ExecResult>>> = Rc::default();
    let notifier = guardian.as_ref().map(Guardian::notifier);
    let action = |paused: scalar_admin::window::Paused| {
        let (journal, execs, notifier) = (journal.clone(), execs.clone(), notifier.clone());
        async move {
            // Called once every pod answered the Pause OK.
            if let Some(group) = &notifier {
                group.answered();
            }
            let written = journal.borrow_mut().as_mut().map(|j| j.opened(&paused));
            if let Some(written) = written {
                written.wait().await;
            }
            let Some(exec) = &config.exec else {
                return Ok(());
            };
            let result = exec::run(exec, &paused, notifier.as_ref()).await;
            let outcome = if result.ok() {
                Ok(())
            } else {
                Err(format!("--exec {}", result.what()))
            };
            execs.borrow_mut().push(result);
            outcome
        }
    };
    let mut watch = Watch {
        guardian,
        let_go: Vec::new(),
        journal: journal.clone(),
        execs: execs.clone(),
        released: false,
    };
    let result = config
        .window
        .run_guarded(interrupted, action, &mut watch)
        .await;
    let finished = journal.borrow_mut().take().map(Journal::finish);
    if let Some(finished) = finished {
        finished.wait().await;
    }
    let status = output::windows(config, &result, &execs.take());
    if let Err(e) = &result {
        tell_unleased(config, &watch.let_go, e);
    }
    status
}

/// A future that completes at the first SIGINT or SIGTERM; the handlers are installed
/// at once, so from here on those signals no longer kill the process.
pub(crate) fn interrupted() -> Result<impl Future<Output = ()>, String> {
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return Err("cannot install signal handlers".to_owned());
    };
    Ok(async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    })
}

/// Logs to stderr at the level the flags ask for; `panic_in_pod_call` is for the tests
/// of panic safety only.
pub(crate) fn init_logging(quiet: bool, verbose: u8, panic_in_pod_call: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "scalar_admin=debug,info",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(stderr::Records)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(filter);
    let inject =
        panic_in_pod_call.then(|| PanicInPodCall(std::sync::atomic::AtomicBool::new(false)));
    tracing_subscriber::registry().with(fmt).with(inject).init();
}

/// For the tests of panic safety only (`SCALAR_ADMIN_INJECT_PANIC=pod`): panics once,
/// inside the first pod call that got a reply, as a bug in the library would.
struct PanicInPodCall(std::sync::atomic::AtomicBool);

impl<S> tracing_subscriber::Layer<S> for PanicInPodCall
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let in_call = ctx
            .event_span(event)
            .is_some_and(|span| span.name() == "call");
        if in_call
            && event.metadata().target().starts_with("scalar_admin")
            && event.metadata().level() == &tracing::Level::DEBUG
            && !self.0.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("injected panic in a pod call");
        }
    }
}
