//! `pod-fleet --pods N [--busy I,J]`: N admin pods on loopback ports, plus a DNS server
//! publishing the first three as a headless service, in one process apart from the
//! client. Pods listed by `--busy` (0-based) hold a request in flight forever, so a
//! waiting Pause fails there with FAILED_PRECONDITION (the interop tests use this).
//!
//! Prints one JSON line on stdout: `{"pods": ["127.0.0.1:port", ...], "dns": "ip:port",
//! "srv": "<SRV name of the first three pods>"}`. Then answers commands on stdin, one
//! per line: `spreads` prints `{"spreads_us": [...]}`, the gate-closing spread of each
//! Pause round since the last `spreads` (first to last Pause arrival, measured here on
//! the server side); end of input stops the fleet.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use scalar_admin::gate::{AdminService, Gate};
use scalar_admin::pb::admin_server::{Admin, AdminServer};
use scalar_admin::pb::{CheckPausedResponse, PauseRequest};
use scalar_admin_rig::DnsServer;
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
}

#[tonic::async_trait]
impl Admin for Timed {
    async fn pause(&self, request: Request<PauseRequest>) -> Result<Response<()>, Status> {
        self.rounds.lock().unwrap().pause(Instant::now());
        self.inner.pause(request).await
    }

    async fn unpause(&self, request: Request<()>) -> Result<Response<()>, Status> {
        self.rounds.lock().unwrap().unpause();
        self.inner.unpause(request).await
    }

    async fn check_paused(
        &self,
        request: Request<()>,
    ) -> Result<Response<CheckPausedResponse>, Status> {
        self.inner.check_paused(request).await
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().skip_while(|a| *a != flag).nth(1).cloned();
    let n: usize = value("--pods")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: pod-fleet --pods N [--busy I,J]");
            std::process::exit(2);
        });
    let busy: Vec<usize> = value("--busy")
        .map(|list| {
            list.split(',')
                .filter_map(|i| i.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // Each pod holds a listener and a connection.
    scalar_admin_bench::raise_open_files();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let rounds = Arc::new(Mutex::new(Rounds::default()));
    let _dns = runtime.block_on(async {
        let mut addrs = Vec::with_capacity(n);
        for i in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addrs.push(listener.local_addr().unwrap());
            let gate = Gate::new();
            if busy.contains(&i) {
                // A request that never finishes.
                std::mem::forget(gate.enter());
            }
            let service = AdminServer::new(Timed {
                inner: gate.admin_service(),
                rounds: rounds.clone(),
            });
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            tokio::spawn(
                Server::builder()
                    .add_service(service)
                    .serve_with_incoming(incoming),
            );
        }
        let dns = DnsServer::start().await;
        let srv = dns.headless_service(
            "scalardb",
            "scalardb",
            "bench",
            &addrs[..addrs.len().min(3)],
        );
        let hello = serde_json::json!({
            "pods": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "dns": dns.addr().to_string(),
            "srv": srv,
        });
        println!("{hello}");
        std::io::stdout().flush().unwrap();
        dns
    });

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
