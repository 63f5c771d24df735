//! Takes a "snapshot" while every pod is paused: the backup action of a window. The
//! snapshot here is a file holding the pause-completed instant and the pods; a real tool
//! would snapshot its database nodes or start an on-demand backup instead. The window
//! still verifies (nothing restarted, no pod added) and unpauses.
//!
//! ```sh
//! cargo run -p scalar-admin --example snapshot_while_paused -- <SRV name> --dns <ip:port> [FILE]
//! ```

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use scalar_admin::DnsConfig;
use scalar_admin::window::{Group, Paused, Window};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut groups = Vec::new();
    let mut dns = DnsConfig::default();
    let mut file = std::env::temp_dir().join("scalar-admin-snapshot.json");
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
        } else if arg.starts_with('_') {
            groups.push(Group::srv(arg));
        } else {
            file = arg.into();
        }
    }
    if groups.is_empty() {
        eprintln!("usage: snapshot_while_paused <SRV name>... [--dns <ip:port>] [FILE]");
        return ExitCode::from(2);
    }

    let window = Window::new(groups)
        .dns(dns)
        .hold(Duration::from_millis(500));
    let snapshot = |paused: Paused| {
        let file = file.clone();
        async move {
            let at_ms = paused
                .pause_completed_at()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            let pods: Vec<String> = paused.pods().map(|p| format!("\"{}\"", p.name())).collect();
            let text = format!(
                "{{\"pause_completed_at_ms\": {at_ms}, \"attempt\": {}, \"pods\": [{}]}}\n",
                paused.attempt(),
                pods.join(", ")
            );
            tokio::task::spawn_blocking(move || std::fs::write(&file, text))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?
        }
    };
    match window.run_with(tokio::signal::ctrl_c(), snapshot).await {
        Ok(windows) => {
            let last = windows.last().expect("at least one window");
            for finding in last.verdict().findings() {
                println!("  {finding}");
            }
            let took = last.action().map_or(Duration::ZERO, |a| a.duration());
            println!(
                "{}: snapshot {} written in {took:?} while paused; restore point {} ms",
                if last.verdict().is_valid() {
                    "VALID"
                } else {
                    "INVALID"
                },
                file.display(),
                last.midpoint()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            );
            if last.verdict().is_valid() {
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
