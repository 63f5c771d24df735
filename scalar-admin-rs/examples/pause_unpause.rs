//! Pauses and unpauses every pod behind an SRV name, printing each pod's outcome.
//!
//! ```sh
//! cargo run -p scalar-admin --example pause_unpause -- _scalardb._tcp.scalardb-headless
//! # against the demo cluster (`cargo run -p scalar-admin-rig --bin pod-fleet -- --demo`):
//! cargo run -p scalar-admin --example pause_unpause -- <SRV name> <DNS server ip:port>
//! ```
//!
//! Ctrl-C during the pause undoes it: the pods this run paused are unpaused again.

use std::process::ExitCode;

use scalar_admin::{ClientConfig, DnsConfig, Fleet, PauseOptions, Report, resolve_srv};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(name) = args.next() else {
        eprintln!("usage: pause_unpause <SRV name> [<DNS server ip:port>]");
        return ExitCode::from(2);
    };
    let mut dns = DnsConfig::default();
    if let Some(server) = args.next() {
        match server.parse() {
            Ok(addr) => dns = dns.name_server(addr),
            Err(e) => {
                eprintln!("bad DNS server {server:?}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match run(&name, &dns).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // Each pod's outcome, and what the rollback left, are in the error.
            for report in e.reports() {
                for pod in report.failures() {
                    eprintln!("  {pod}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(name: &str, dns: &DnsConfig) -> Result<(), scalar_admin::Error> {
    let pods = resolve_srv(name, dns).await?;
    println!("{name}: {} pods", pods.len());

    let mut fleet = Fleet::connect(pods, ClientConfig::default()).await;
    for (pod, error) in fleet.unreachable() {
        println!("  unreachable: {pod}: {}", error.chain());
    }
    for pod in fleet.already_paused() {
        println!("  already paused by someone else: {pod}");
    }

    let pause = fleet
        .pause_with_cancel(PauseOptions::default(), tokio::signal::ctrl_c())
        .await?;
    print("pause", &pause);
    let unpause = fleet.unpause().await?;
    print("unpause", &unpause);
    Ok(())
}

fn print(what: &str, report: &Report) {
    println!(
        "{what}: {} pods in {:?}, replies {:?} apart; started at {} ms, completed at {} ms \
         (UTC, since the epoch)",
        report.pods().len(),
        report.wall_time(),
        report.reply_spread().unwrap_or_default(),
        epoch_ms(report.started_at()),
        epoch_ms(report.completed_at()),
    );
    for pod in report.pods() {
        println!("  {pod} ({:?})", pod.latency());
    }
}

fn epoch_ms(t: std::time::SystemTime) -> u128 {
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}
