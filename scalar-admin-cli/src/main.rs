//! `scalar-admin`: pause, unpause or check every pod of a ScalarDB or ScalarDL
//! deployment. A drop-in for the Java tool's command line; see `--help`.
//!
//! This file only wires things up: parse flags, call the library, print the outcome.

mod args;
mod output;

use std::process::ExitCode;

use clap::Parser;
use scalar_admin::window::run_windows;
use scalar_admin::{Error, Fleet};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use args::{Command, Config, LowArgs};
use output::ExitStatus;

fn main() -> ExitCode {
    let low = match LowArgs::try_parse() {
        Ok(low) => low,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and exit 0.
            let _ = e.print();
            return if e.use_stderr() {
                ExitStatus::Usage.into()
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(&low);
    let config = match Config::from_low_args(&low) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Usage.into();
        }
    };
    // One thread: the work is waiting on sockets, and a current-thread runtime starts
    // faster and smaller than a pool, which matters for a command run per backup step.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitStatus::Failure.into();
        }
    };
    let status = runtime.block_on(run(config));
    // Connection tasks may linger after the last reply; they must not delay the exit.
    runtime.shutdown_background();
    status.into()
}

async fn run(config: Config) -> ExitStatus {
    // Take over SIGINT and SIGTERM before anything is sent: from here on a signal never
    // kills the process mid-command. During a pause it triggers the rollback; during
    // an unpause or a check it is ignored, since finishing (within the call deadlines)
    // is the safe thing to do.
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        return ExitStatus::Failure;
    };
    let interrupted = async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    };

    if config.command == Command::Window {
        let result = run_windows(
            &config.groups,
            &config.client,
            &config.dns,
            &config.window,
            interrupted,
        )
        .await;
        return output::windows(&config, &result);
    }
    // The Java commands take exactly one group; `Config` checked that.
    let targets = match config.groups[0].resolve(&config.dns).await {
        Ok(targets) => targets,
        Err(e) => return output::report(&config, &Err(e)),
    };
    let mut fleet = Fleet::connect(targets, config.client.clone()).await;
    let result: Result<_, Error> = match config.command {
        Command::Pause => fleet.pause_with_cancel(config.pause, interrupted).await,
        Command::Unpause => fleet.unpause().await,
        Command::CheckPaused => fleet.check_paused().await,
        Command::Window => unreachable!("handled above"),
    };
    output::report(&config, &result)
}

fn init_tracing(low: &LowArgs) {
    let default = match (low.quiet, low.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "scalar_admin=debug,info",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
