//! Runs one backup window over one or more SRV names: pause every pod together, hold,
//! check that no pod was added or restarted, unpause, and print the restore point.
//!
//! ```sh
//! cargo run -p scalar-admin --example backup_window -- \
//!     _scalardl-admin._tcp.ledger-headless _scalardl-auditor-admin._tcp.auditor-headless
//! # against the demo cluster, with its DNS server:
//! cargo run -p scalar-admin --example backup_window -- <SRV name> --dns <ip:port>
//! ```
//!
//! The window has a cancel of its own: Ctrl-C, or two minutes passing, whichever comes
//! first, ends it and unpauses what it paused.

use std::process::ExitCode;
use std::time::Duration;

use scalar_admin::DnsConfig;
use scalar_admin::window::{Group, Window};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut groups = Vec::new();
    let mut dns = DnsConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--dns" {
            match args.next().map(|a| a.parse()) {
                Some(Ok(addr)) => dns = dns.name_server(addr),
                _ => {
                    eprintln!("--dns takes ip:port");
                    return ExitCode::from(2);
                }
            }
        } else {
            groups.push(Group::srv(arg));
        }
    }
    if groups.is_empty() {
        eprintln!("usage: backup_window <SRV name>... [--dns <ip:port>]");
        return ExitCode::from(2);
    }

    let cancel = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => println!("interrupted"),
            () = tokio::time::sleep(Duration::from_secs(120)) => println!("gave up"),
        }
    };
    let window = Window::new(groups)
        .dns(dns)
        .hold(Duration::from_secs(2))
        .attempts(2);
    match window.run(cancel).await {
        Ok(windows) => {
            let last = windows.last().expect("at least one window");
            for finding in last.verdict().findings() {
                println!("  {finding}");
            }
            let valid = last.verdict().is_valid();
            println!(
                "{} after {} attempt(s): paused from {} to {} ms; restore to {} ms \
                 (UTC, since the epoch)",
                if valid { "VALID" } else { "INVALID" },
                windows.len(),
                epoch_ms(last.pause_completed_at()),
                epoch_ms(last.unpause_started_at()),
                epoch_ms(last.midpoint()),
            );
            if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn epoch_ms(t: std::time::SystemTime) -> u128 {
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}
