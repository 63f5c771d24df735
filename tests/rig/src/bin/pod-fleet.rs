//! `pod-fleet`: admin pods on loopback ports, and a DNS server publishing the first three
//! as a Kubernetes headless service, in a process of their own.
//!
//! ```text
//! pod-fleet --demo [N]          a demo cluster of N pods (3 by default) to try the
//!                               `scalar-admin` command against; prints the commands,
//!                               logs each admin call, stops on Ctrl-C
//! pod-fleet --pods N [--busy I,J] [--threads T] [--rtt-us D --jitter-us J]
//! ```
//!
//! `--threads` sets the runtime's worker threads (the benches run the fleet on one
//! core, with one thread). `--rtt-us` makes every call take that round trip, plus or
//! minus `--jitter-us`, as pods on other nodes do: half before the pod acts (the
//! request in flight), half after (the reply). The TCP and HTTP/2 handshakes are not
//! delayed.
//!
//! With `--pods` (for the benches and the interop tests) it prints one JSON line on
//! stdout, `{"pods": ["127.0.0.1:port", ...], "dns": "ip:port", "srv": "<SRV name>"}`,
//! then answers commands on stdin, one per line: `spreads` prints `{"spreads_us": [...]}`,
//! the gate-closing spread of each Pause round since the last `spreads` (first to last
//! Pause arrival, measured here on the server side); end of input stops the fleet. Pods
//! listed by `--busy` (0-based) hold a request in flight forever, so a waiting Pause
//! fails there with FAILED_PRECONDITION.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use scalar_admin::gate::{AdminService, Gate};
use scalar_admin::pb::admin_server::{Admin, AdminServer};
use scalar_admin::pb::{CheckPausedResponse, PauseRequest};
use scalar_admin_rig::{Delay, DelayLine, DnsServer, raise_open_files};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Pause arrivals grouped into rounds: an Unpause closes the round.
#[derive(Default)]
struct Rounds {
    current: Option<(Instant, Instant)>,
    done: Vec<u64>,
}

impl Rounds {
    fn pause(&mut self, at: Instant) {
        let (first, last) = self.current.get_or_insert((at, at));
        *first = (*first).min(at);
        *last = (*last).max(at);
    }

    fn unpause(&mut self) {
        if let Some((first, last)) = self.current.take() {
            self.done
                .push(last.duration_since(first).as_micros() as u64);
        }
    }
}

/// A pod: the gate's admin service, noting when each Pause arrives. Kept lean (no
/// per-call channel or task), so the fleet spends little CPU beside the client's.
struct Timed {
    inner: AdminService,
    rounds: Arc<Mutex<Rounds>>,
    /// In demo mode, each call is logged with the pod's address.
    log: Option<SocketAddr>,
    /// Half a round trip, waited before the pod acts and again before it answers.
    travel: Option<DelayLine>,
    calls: std::sync::atomic::AtomicU64,
}

impl Timed {
    async fn travel(&self) {
        if let Some(line) = &self.travel {
            let seed = self
                .calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            line.wait(seed).await;
        }
    }

    fn log(&self, what: std::fmt::Arguments<'_>) {
        if let Some(addr) = self.log {
            println!("pod {addr}: {what}");
        }
    }
}

#[tonic::async_trait]
impl Admin for Timed {
    async fn pause(&self, request: Request<PauseRequest>) -> Result<Response<()>, Status> {
        self.travel().await;
        self.rounds.lock().unwrap().pause(Instant::now());
        let r = *request.get_ref();
        let result = self.inner.pause(request).await;
        self.travel().await;
        self.log(format_args!(
            "Pause (wait_outstanding {}, max_pause_wait_time {:?}): {}",
            r.wait_outstanding,
            r.max_pause_wait_time,
            result
                .as_ref()
                .map_or_else(|s| s.message().to_owned(), |_| "paused".into())
        ));
        result
    }

    async fn unpause(&self, request: Request<()>) -> Result<Response<()>, Status> {
        self.travel().await;
        self.rounds.lock().unwrap().unpause();
        self.log(format_args!("Unpause: unpaused"));
        let result = self.inner.unpause(request).await;
        self.travel().await;
        result
    }

    async fn check_paused(
        &self,
        request: Request<()>,
    ) -> Result<Response<CheckPausedResponse>, Status> {
        let response = self.inner.check_paused(request).await?;
        self.log(format_args!(
            "CheckPaused: paused={}",
            response.get_ref().paused
        ));
        Ok(response)
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: pod-fleet --demo [N] | pod-fleet --pods N [--busy I,J] [--threads T] \
         [--rtt-us D --jitter-us J]"
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().skip_while(|a| *a != flag).nth(1).cloned();
    let demo = args.iter().any(|a| a == "--demo");
    let n: usize = if demo {
        value("--demo").map_or(Some(3), |v| v.parse().ok())
    } else {
        value("--pods").and_then(|v| v.parse().ok())
    }
    .unwrap_or_else(|| usage());
    let busy: Vec<usize> = value("--busy")
        .map(|list| {
            list.split(',')
                .filter_map(|i| i.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let micros = |flag: &str| {
        value(flag).map_or(std::time::Duration::ZERO, |v| {
            std::time::Duration::from_micros(v.parse().unwrap_or_else(|_| usage()))
        })
    };
    let (rtt, jitter) = (micros("--rtt-us"), micros("--jitter-us"));
    let travel = (!rtt.is_zero()).then(|| {
        DelayLine::start(Delay {
            base: rtt / 2,
            jitter: jitter / 2,
        })
    });
    // Each pod holds a listener and a connection.
    raise_open_files();

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = value("--threads") {
        runtime.worker_threads(threads.parse().unwrap_or_else(|_| usage()));
    }
    let runtime = runtime.enable_all().build().expect("runtime");
    let rounds = Arc::new(Mutex::new(Rounds::default()));
    let (addrs, dns, srv) = runtime.block_on(async {
        let mut addrs = Vec::with_capacity(n);
        for i in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();
            addrs.push(addr);
            let gate = Gate::new();
            if busy.contains(&i) {
                // A request that never finishes.
                std::mem::forget(gate.enter());
            }
            let service = AdminServer::new(Timed {
                inner: gate.admin_service(),
                rounds: rounds.clone(),
                log: demo.then_some(addr),
                travel: travel.clone(),
                calls: std::sync::atomic::AtomicU64::new(i as u64 * 1_000_003),
            });
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            tokio::spawn(
                Server::builder()
                    .add_service(service)
                    .serve_with_incoming(incoming),
            );
        }
        let dns = DnsServer::start().await;
        let srv = dns.headless_service("scalardb", "scalardb", "demo", &addrs[..n.min(3)]);
        (addrs, dns, srv)
    });

    if demo {
        print_guide(&addrs, dns.addr(), &srv);
        let _ = runtime.block_on(tokio::signal::ctrl_c());
        runtime.shutdown_background();
        return;
    }

    let hello = serde_json::json!({
        "pods": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "dns": dns.addr().to_string(),
        "srv": srv,
    });
    println!("{hello}");
    std::io::stdout().flush().unwrap();
    // The runtime's worker threads serve the pods; this thread reads commands.
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "spreads" {
            let spreads = std::mem::take(&mut rounds.lock().unwrap().done);
            println!("{}", serde_json::json!({ "spreads_us": spreads }));
            std::io::stdout().flush().unwrap();
        }
    }
    runtime.shutdown_background();
}

fn print_guide(addrs: &[SocketAddr], dns: SocketAddr, srv: &str) {
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let list = list.join(",");
    let s = format!("-s {srv} --dns-server {dns}");
    println!(
        "A demo cluster: {} admin pods on loopback, and a DNS server publishing the first \
         three as a headless service. Ctrl-C stops it.\n\
         \n\
         pods:        {list}\n\
         SRV name:    {srv}\n\
         DNS server:  {dns}\n\
         \n\
         Try, in another terminal (each admin call is logged here):\n\
         \n\
         \x20 scalar-admin -c check_paused -a {list}\n\
         \x20 scalar-admin -c pause {s}\n\
         \x20 scalar-admin -c check_paused {s}\n\
         \x20 scalar-admin -c unpause {s}\n\
         \x20 scalar-admin -c window {s} --duration 2s\n\
         \x20 scalar-admin -c pause -a {list} --output json\n",
        addrs.len()
    );
    let _ = std::io::stdout().flush();
}
