//! The bench report, from one command:
//!
//! ```sh
//! cargo run --release -p scalar-admin-bench -- --pods 1,10,100,1000
//! ```
//!
//! Options: `--rounds R` (30 per N), `--rtt-us D` and `--jitter-us J` (the simulated
//! network, 500 ± 100 µs), `--no-pin`.
//!
//! Starts a `pod-fleet` process with the largest N pods, pinned to core 1 with one
//! runtime thread, then for each N runs a client process of its own pinned to core 0
//! (this binary again, in client mode), so that each N's peak RSS is the client's alone
//! and the client's CPU is apart from the pods'. Each round connects to every pod
//! (with the probe), pauses, and unpauses. Per N it prints connect and pause (p50,
//! p99), the client's send spread (first to last Pause request handed to the kernel),
//! the pods' gate spread (first to last Pause arrival, measured by the pods), the
//! client's peak RSS, plain tonic's connect and call on the same fleet, the ratio to
//! it, and one pod at a time. It does so twice: on plain loopback, and with pods that
//! take a network-like round trip. Then it writes the figures as an SVG chart
//! (`benches/report.svg`) and times the whole `scalar-admin` process.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use scalar_admin::pb::CheckPausedResponse;
use scalar_admin::{ClientConfig, Fleet, PauseOptions, Target};
use scalar_admin_bench::chart::{self, Series};
use scalar_admin_bench::{FleetProcess, build_binaries, can_pin, pinned, raise_open_files};
use serde::{Deserialize, Serialize};

/// What one client process measured, in microseconds.
#[derive(Serialize, Deserialize, Default)]
struct ClientStats {
    connect: Vec<u64>,
    pause: Vec<u64>,
    unpause: Vec<u64>,
    send_spread: Vec<u64>,
    /// Connect start to the last probe handed to the kernel: the client's part of
    /// connecting, apart from waiting for the pods' answers.
    probes_sent: Vec<u64>,
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

/// Client mode: targets on stdin, stats as JSON on stdout. Warm-up rounds are dropped
/// here.
fn client(mode: &str, rounds: usize, warm_up: usize) {
    raise_open_files();
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let targets: Vec<Target> = scalar_admin::parse_addresses(input.trim()).unwrap();
    // `BENCH_RUNTIME=multi` runs our client on tokio's default runtime too, to see
    // whether more threads help once the pods have a core of their own.
    let multi = std::env::var("BENCH_RUNTIME").is_ok_and(|v| v == "multi");
    let runtime = if mode == "tonic" || multi {
        // The calibration as a tonic user writes it: tokio's default runtime.
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
        for round in 0..warm_up + rounds {
            let keep = round >= warm_up;
            match mode {
                "concurrent" => {
                    let t0 = Instant::now();
                    let mut fleet = Fleet::connect(targets.clone(), ClientConfig::default()).await;
                    let t1 = Instant::now();
                    let pause = fleet.pause(PauseOptions::default()).await.expect("pause");
                    let t2 = Instant::now();
                    fleet.unpause().await.expect("unpause");
                    let t3 = Instant::now();
                    if keep {
                        let connected = fleet.connect_report();
                        let last_probe = connected.pods().iter().map(|p| p.sent_at()).max();
                        let probes_sent =
                            last_probe.and_then(|t| t.duration_since(connected.started_at()).ok());
                        stats.connect.push(us(t1 - t0));
                        stats.pause.push(us(t2 - t1));
                        stats.unpause.push(us(t3 - t2));
                        stats.send_spread.push(pause.send_spread().map_or(0, us));
                        stats.probes_sent.push(probes_sent.map_or(0, us));
                    }
                }
                "tonic" => {
                    // Plain tonic: a `Channel` per pod, `join_all` to connect, then one
                    // unary call each.
                    let t0 = Instant::now();
                    let channels = futures::future::join_all(targets.iter().map(|t| async move {
                        let uri = format!("http://{}", t.address());
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
                    if keep {
                        stats.connect.push(us(t1 - t0));
                        stats.pause.push(us(t1.elapsed()));
                    }
                }
                "floor" => {
                    // What the kernel alone costs: a blocking TCP connect to each pod,
                    // then one 24-byte write to each (the HTTP/2 preface, so the pods
                    // read something sensible), with no HTTP/2 or runtime at all.
                    use std::io::Write as _;
                    let t0 = Instant::now();
                    let mut sockets: Vec<std::net::TcpStream> = targets
                        .iter()
                        .map(|t| {
                            let s = std::net::TcpStream::connect(t.socket_addr().unwrap()).unwrap();
                            s.set_nodelay(true).unwrap();
                            s
                        })
                        .collect();
                    let t1 = Instant::now();
                    for socket in &mut sockets {
                        socket
                            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                            .unwrap();
                    }
                    if keep {
                        stats.connect.push(us(t1 - t0));
                        stats.send_spread.push(us(t1.elapsed()));
                    }
                }
                _ => {
                    // One pod at a time: connect and pause each in turn, then unpause
                    // each.
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
                    if keep {
                        stats.baseline.push(us(t0.elapsed()));
                    }
                }
            }
        }
    });
    stats.peak_rss_kb = peak_rss_kb();
    println!("{}", serde_json::to_string(&stats).unwrap());
}

fn run_client(mode: &str, rounds: usize, targets: &[Target], core: Option<usize>) -> ClientStats {
    let exe = std::env::current_exe().unwrap();
    let mut child = pinned(&exe, core)
        .args([
            "client",
            mode,
            &rounds.to_string(),
            if rounds > 1 { "2" } else { "0" },
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let list: Vec<String> = targets.iter().map(Target::address).collect();
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

/// One N's figures, in microseconds (p50, p99) and kilobytes.
struct Row {
    n: usize,
    connect: (u64, u64),
    pause: (u64, u64),
    send_spread: (u64, u64),
    gate_spread: (u64, u64),
    rss_kb: u64,
    tonic: (u64, u64),
    sequential: u64,
    /// Where the time goes.
    probes_sent: u64,
    pods_cpu_per_round: u64,
    floor_connect: u64,
    floor_write: u64,
}

impl Row {
    fn print(&self) {
        let ours = self.connect.0 + self.pause.0;
        let tonic = self.tonic.0 + self.tonic.1;
        println!(
            "| {} | {} / {} | {} / {} | {} / {} | {} / {} | {:.1} | {} + {} = {} | {:.2} | {} ({:.1}x) |",
            self.n,
            ms(self.connect.0),
            ms(self.connect.1),
            ms(self.pause.0),
            ms(self.pause.1),
            ms(self.send_spread.0),
            ms(self.send_spread.1),
            ms(self.gate_spread.0),
            ms(self.gate_spread.1),
            self.rss_kb as f64 / 1024.0,
            ms(self.tonic.0),
            ms(self.tonic.1),
            ms(tonic),
            ours as f64 / tonic.max(1) as f64,
            ms(self.sequential),
            self.sequential as f64 / ours.max(1) as f64,
        );
    }

    fn print_breakdown(&self) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            self.n,
            ms(self.connect.0),
            ms(self.probes_sent),
            ms(self.pods_cpu_per_round),
            ms(self.floor_connect),
            ms(self.send_spread.0),
            ms(self.floor_write),
        );
    }
}

fn pair(values: &[u64]) -> (u64, u64) {
    (percentile(values, 50), percentile(values, 99))
}

/// Every N against one fleet.
fn measure(
    fleet: &mut FleetProcess,
    sizes: &[usize],
    rounds: usize,
    client_core: Option<usize>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in sizes {
        let targets = fleet.targets(n);
        fleet.spreads();
        let cpu = fleet.cpu_time();
        let stats = run_client("concurrent", rounds, &targets, client_core);
        let pods_cpu = fleet.cpu_time().saturating_sub(cpu) / (rounds as u32 + 2);
        let spreads = fleet.spreads();
        let spreads = &spreads[spreads.len().saturating_sub(rounds)..];
        // Peak RSS as the `scalar-admin` binary has it: one process, one round.
        let once = run_client("concurrent", 1, &targets, client_core);
        let tonic = run_client("tonic", rounds.min(10), &targets, client_core);
        let sequential_rounds = if n >= 1000 { 3 } else { 10 };
        let baseline = run_client("sequential", sequential_rounds, &targets, client_core);
        let floor = run_client("floor", rounds.min(10), &targets, client_core);
        let row = Row {
            n,
            connect: pair(&stats.connect),
            pause: pair(&stats.pause),
            send_spread: pair(&stats.send_spread),
            gate_spread: pair(spreads),
            rss_kb: once.peak_rss_kb,
            tonic: (percentile(&tonic.connect, 50), percentile(&tonic.pause, 50)),
            sequential: percentile(&baseline.baseline, 50),
            probes_sent: percentile(&stats.probes_sent, 50),
            pods_cpu_per_round: us(pods_cpu),
            floor_connect: percentile(&floor.connect, 50),
            floor_write: percentile(&floor.send_spread, 50),
        };
        row.print();
        rows.push(row);
    }
    rows
}

fn header() {
    println!(
        "| pods | connect p50 / p99 ms | pause p50 / p99 ms | client send spread p50 / p99 ms \
         | pods' gate spread p50 / p99 ms | client peak RSS MB | plain tonic connect + call p50 ms \
         | ours / tonic | one pod at a time p50 ms (fan-out speed-up) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

fn series(rows: &[Row], suffix: &str, dashed: bool) -> Vec<Series> {
    let line = |label: &str, color, f: &dyn Fn(&Row) -> u64| Series {
        label: format!("{label}{suffix}"),
        points: rows
            .iter()
            .map(|r| (r.n as f64, f(r) as f64 / 1000.0))
            .collect(),
        color,
        dashed,
    };
    vec![
        line("connect + probe", "#1f77b4", &|r| r.connect.0),
        line("pause", "#d62728", &|r| r.pause.0),
        line("connect + pause", "#9467bd", &|r| r.connect.0 + r.pause.0),
        line("tonic connect + call", "#7f7f7f", &|r| {
            r.tonic.0 + r.tonic.1
        }),
        line("one pod at a time", "#2ca02c", &|r| r.sequential),
        line("pods' gate spread", "#ff7f0e", &|r| r.gate_spread.0),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        client(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap());
        return;
    }
    let value = |flag: &str| args.iter().skip_while(|a| *a != flag).nth(1).cloned();
    let number = |flag: &str, default: u64| value(flag).map_or(default, |v| v.parse().expect(flag));
    let sizes: Vec<usize> = value("--pods")
        .unwrap_or_else(|| "1,10,100,1000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("--pods 1,10,100,1000"))
        .collect();
    let rounds = number("--rounds", 30) as usize;
    let (rtt_us, jitter_us) = (number("--rtt-us", 500), number("--jitter-us", 100));
    let pin = !args.iter().any(|a| a == "--no-pin") && can_pin();
    let (fleet_core, client_core) = if pin {
        (Some(1), Some(0))
    } else {
        (None, None)
    };
    let max = *sizes.iter().max().unwrap();

    raise_open_files();
    let (pod_fleet, binary) = build_binaries();
    println!("Machine: {}", machine());
    println!(
        "Rounds per N: {rounds} (after 2 warm-up rounds), each a new connection to every pod, \
         Pause, Unpause; {}\n",
        if pin {
            "pods pinned to core 1 (one thread), each client to core 0"
        } else {
            "not pinned"
        }
    );

    let networks = [
        ("Loopback".to_owned(), Vec::new()),
        (
            format!("A network like a cluster's: every call takes {rtt_us} ± {jitter_us} µs"),
            vec![
                "--rtt-us".to_owned(),
                rtt_us.to_string(),
                "--jitter-us".to_owned(),
                jitter_us.to_string(),
            ],
        ),
    ];
    let mut lines = Vec::new();
    let mut srv = None;
    for (i, (name, fleet_args)) in networks.iter().enumerate() {
        let mut fleet = FleetProcess::start_with(&pod_fleet, max.max(3), fleet_core, fleet_args);
        println!("{name}:\n");
        header();
        let rows = measure(&mut fleet, &sizes, rounds, client_core);
        println!(
            "\nWhere the time goes ({name}): the client's part of connecting (until every probe \
             was handed to the kernel), the pods' CPU per round (connect, pause, unpause), and \
             the kernel's floor on this machine: blocking TCP connects to every pod one after \
             another, and one bare 24-byte write to each.\n"
        );
        println!(
            "| pods | connect p50 ms | of which until every probe left ms | pods' CPU per round ms \
             | floor: bare TCP connects ms | client send spread p50 ms | floor: bare writes ms |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for row in &rows {
            row.print_breakdown();
        }
        println!();
        let suffix = if i == 0 { "" } else { " (network)" };
        lines.extend(series(&rows, suffix, i > 0));
        if i == 0 {
            srv = Some(whole_process(&fleet, &binary, rounds));
        }
    }
    if let Some(line) = srv {
        println!("{line}");
    }
    let chart = chart::svg(
        &format!(
            "scalar-admin fan-out, p50 (solid: loopback; dashed: {rtt_us} ± {jitter_us} µs round trips)"
        ),
        &format!("{}; pods on one core, the client on the other", machine()),
        &lines,
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("report.svg");
    std::fs::write(&path, chart).unwrap();
    println!("\nChart: {}", path.display());
}

/// Times the whole `scalar-admin` process pausing and unpausing the 3 pods the fleet's
/// DNS server publishes.
fn whole_process(fleet: &FleetProcess, binary: &Path, rounds: usize) -> String {
    let dns = fleet.dns.to_string();
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, command) in ["pause", "unpause"].iter().enumerate() {
            let t0 = Instant::now();
            let out = std::process::Command::new(binary)
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
    format!(
        "Whole `scalar-admin` process, 3 pods via SRV (loopback): pause p50 {} ms (p99 {}), unpause p50 {} ms (p99 {})",
        ms(percentile(&times[0], 50)),
        ms(percentile(&times[0], 99)),
        ms(percentile(&times[1], 50)),
        ms(percentile(&times[1], 99)),
    )
}
