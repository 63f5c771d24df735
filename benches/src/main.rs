//! The bench report, from one command:
//!
//! ```sh
//! cargo run --release -p scalar-admin-bench -- --pods 1,10,100,1000
//! ```
//!
//! Starts a `pod-fleet` process with the largest N pods, then for each N runs a client
//! process of its own (this binary again, in client mode), so that each N's peak RSS is
//! the client's alone. Prints, per N: connect, pause and unpause wall times (p50, p99),
//! the gate-closing spread seen by the pods (first to last Pause arrival), the client's
//! peak RSS, and a one-pod-at-a-time baseline with the speed-up. Then times the whole
//! `scalar-admin` process pausing and unpausing 3 pods found through SRV.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scalar_admin::pb::CheckPausedResponse;
use scalar_admin::{ClientConfig, Fleet, PauseOptions, Target};
use scalar_admin_bench::{FleetProcess, build_binaries, raise_open_files};
use serde::{Deserialize, Serialize};

/// What one client process measured, in microseconds.
#[derive(Serialize, Deserialize, Default)]
struct ClientStats {
    connect: Vec<u64>,
    pause: Vec<u64>,
    unpause: Vec<u64>,
    baseline: Vec<u64>,
    peak_rss_kb: u64,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn percentile(values: &[u64], p: usize) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    v[((v.len() - 1) * p + 50) / 100]
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// Peak resident set size of this process, from /proc.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Client mode: targets on stdin, stats as JSON on stdout.
fn client(mode: &str, rounds: usize) {
    raise_open_files();
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let targets: Vec<Target> = scalar_admin::parse_addresses(input.trim()).unwrap();
    // The same runtime as the `scalar-admin` binary.
    let runtime = if mode == "tonic" {
        // The calibration as the issue describes it: tokio's default runtime.
        tokio::runtime::Runtime::new().unwrap()
    } else {
        // The `scalar-admin` binary's runtime.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let mut stats = ClientStats::default();
    runtime.block_on(async {
        match mode {
            "concurrent" => {
                for _ in 0..rounds {
                    let t0 = Instant::now();
                    let mut fleet = Fleet::connect(targets.clone(), ClientConfig::default()).await;
                    let t1 = Instant::now();
                    fleet.pause(PauseOptions::default()).await.expect("pause");
                    let t2 = Instant::now();
                    fleet.unpause().await.expect("unpause");
                    let t3 = Instant::now();
                    stats.connect.push(us(t1 - t0));
                    stats.pause.push(us(t2 - t1));
                    stats.unpause.push(us(t3 - t2));
                }
            }
            "tonic" => {
                // Plain tonic: a `Channel` per pod, `join_all` to connect, then one
                // unary call each; what the targets were calibrated against.
                for _ in 0..rounds {
                    let t0 = Instant::now();
                    let channels = futures::future::join_all(targets.iter().map(|t| async move {
                        let uri = format!("http://{}", t.name());
                        tonic::transport::Endpoint::from_shared(uri)
                            .unwrap()
                            .connect()
                            .await
                            .unwrap()
                    }))
                    .await;
                    let t1 = Instant::now();
                    futures::future::join_all(channels.iter().map(|channel| async move {
                        let mut grpc = tonic::client::Grpc::new(channel.clone());
                        grpc.ready().await.unwrap();
                        let codec = tonic_prost::ProstCodec::<(), CheckPausedResponse>::default();
                        let path = http::uri::PathAndQuery::from_static("/rpc.Admin/CheckPaused");
                        grpc.unary(tonic::Request::new(()), path, codec)
                            .await
                            .unwrap();
                    }))
                    .await;
                    stats.connect.push(us(t1 - t0));
                    stats.pause.push(us(t1.elapsed()));
                }
            }
            _ => {
                // One pod at a time: connect and pause each in turn, then unpause each.
                for _ in 0..rounds {
                    let t0 = Instant::now();
                    let mut fleets = Vec::with_capacity(targets.len());
                    for target in &targets {
                        let mut fleet =
                            Fleet::connect(vec![target.clone()], ClientConfig::default()).await;
                        fleet.pause(PauseOptions::default()).await.expect("pause");
                        fleets.push(fleet);
                    }
                    for fleet in &mut fleets {
                        fleet.unpause().await.expect("unpause");
                    }
                    stats.baseline.push(us(t0.elapsed()));
                }
            }
        }
    });
    stats.peak_rss_kb = peak_rss_kb();
    println!("{}", serde_json::to_string(&stats).unwrap());
}

fn run_client(mode: &str, rounds: usize, targets: &[Target]) -> ClientStats {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["client", mode, &rounds.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let list: Vec<String> = targets.iter().map(|t| t.name().to_owned()).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.join(",").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "client {mode} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        client(&args[2], args[3].parse().unwrap());
        return;
    }
    let value = |flag: &str| args.iter().skip_while(|a| *a != flag).nth(1).cloned();
    let sizes: Vec<usize> = value("--pods")
        .unwrap_or_else(|| "1,10,100,1000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("--pods 1,10,100,1000"))
        .collect();
    let rounds: usize = value("--rounds").map_or(30, |r| r.parse().expect("--rounds N"));
    let max = *sizes.iter().max().unwrap();

    raise_open_files();
    let (pod_fleet, binary) = build_binaries();
    let mut fleet = FleetProcess::start(&pod_fleet, max.max(3));
    println!("Machine: {}", machine());
    println!(
        "Rounds per N: {rounds} (plus 2 warm-up rounds); pods in a separate process; loopback\n"
    );
    println!(
        "| pods | connect p50 / p99 ms | pause p50 / p99 ms | unpause p50 / p99 ms | gate spread p50 / p99 ms \
         | client peak RSS MB | plain tonic connect + call p50 ms | one pod at a time ms | speed-up |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &sizes {
        let targets = fleet.targets(n);
        let stats = run_client("concurrent", rounds + 2, &targets);
        let skip = |v: &[u64]| v[2..].to_vec();
        let (connect, pause, unpause) = (
            skip(&stats.connect),
            skip(&stats.pause),
            skip(&stats.unpause),
        );
        let spreads = fleet.spreads();
        let spreads = spreads[spreads.len().saturating_sub(rounds)..].to_vec();
        let baseline_rounds = if n >= 1000 { 3 } else { 10 };
        let baseline = run_client("sequential", baseline_rounds, &targets);
        let tonic = run_client("tonic", rounds.min(10) + 2, &targets);
        fleet.spreads();
        let tonic_total = percentile(&tonic.connect[2..], 50) + percentile(&tonic.pause[2..], 50);
        let concurrent_total =
            percentile(&connect, 50) + percentile(&pause, 50) + percentile(&unpause, 50);
        let base = percentile(&baseline.baseline, 50);
        println!(
            "| {n} | {} / {} | {} / {} | {} / {} | {} / {} | {:.1} | {} + {} = {} | {} | {:.1}x |",
            ms(percentile(&connect, 50)),
            ms(percentile(&connect, 99)),
            ms(percentile(&pause, 50)),
            ms(percentile(&pause, 99)),
            ms(percentile(&unpause, 50)),
            ms(percentile(&unpause, 99)),
            ms(percentile(&spreads, 50)),
            ms(percentile(&spreads, 99)),
            stats.peak_rss_kb as f64 / 1024.0,
            ms(percentile(&tonic.connect[2..], 50)),
            ms(percentile(&tonic.pause[2..], 50)),
            ms(tonic_total),
            ms(base),
            base as f64 / concurrent_total.max(1) as f64,
        );
    }

    let dns = fleet.dns.to_string();
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, command) in ["pause", "unpause"].iter().enumerate() {
            let t0 = Instant::now();
            let out = Command::new(&binary)
                .args(["-c", command, "-s", &fleet.srv, "--dns-server", &dns])
                .output()
                .unwrap();
            times[i].push(us(t0.elapsed()));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    println!(
        "\nWhole `scalar-admin` process, 3 pods via SRV: pause p50 {} ms (p99 {}), unpause p50 {} ms (p99 {})",
        ms(percentile(&times[0], 50)),
        ms(percentile(&times[0], 99)),
        ms(percentile(&times[1], 50)),
        ms(percentile(&times[1], 99)),
    );
}
