//! Admin pods: our own gate and admin service on a loopback port, recording each call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use scalar_admin::Target;
use scalar_admin::gate::{AdminService, Gate, Pass};
use scalar_admin::pb::admin_server::{Admin, AdminServer};
use scalar_admin::pb::{CheckPausedResponse, PauseRequest};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// One admin call as the pod saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Pause, with the request's fields.
    Pause {
        /// `wait_outstanding`.
        wait_outstanding: bool,
        /// `max_pause_wait_time`, when set.
        max_pause_wait_time: Option<i64>,
    },
    /// Unpause.
    Unpause,
    /// CheckPaused.
    CheckPaused,
}

/// Records every call, with the instant it arrived, then lets the gate answer, or
/// answers Pause with a set status instead, or misbehaves as a buggy or slow server does.
#[derive(Clone)]
struct Recording {
    inner: AdminService,
    gate: Gate,
    calls: mpsc::UnboundedSender<(Call, Instant)>,
    fail_pause: Option<(tonic::Code, String)>,
    quirks: Quirks,
    /// Set once the call that stops its checks arrived.
    hanging: Arc<AtomicBool>,
    /// When each late Pause closed the gate.
    landed: Arc<watch::Sender<Vec<Instant>>>,
}

/// Ways a pod misbehaves, set on its builder.
#[derive(Clone, Copy, Default)]
struct Quirks {
    late_pause: Option<Duration>,
    ignore_unpause: bool,
    /// Never answer CheckPaused once a call of this kind arrived.
    hang_checks_after: Option<Hang>,
}

/// After which call a pod stops answering CheckPaused.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hang {
    Pause,
    Unpause,
}

impl Recording {
    fn record(&self, call: Call) {
        // The receiver lives in the `Pod`; after it is gone nobody is listening.
        let _ = self.calls.send((call, Instant::now()));
    }
}

#[tonic::async_trait]
impl Admin for Recording {
    async fn pause(&self, request: Request<PauseRequest>) -> Result<Response<()>, Status> {
        let r = request.get_ref();
        if self.quirks.hang_checks_after == Some(Hang::Pause) {
            self.hanging.store(true, Ordering::SeqCst);
        }
        self.record(Call::Pause {
            wait_outstanding: r.wait_outstanding,
            max_pause_wait_time: r.max_pause_wait_time,
        });
        if let Some((code, message)) = &self.fail_pause {
            return Err(Status::new(*code, message.clone()));
        }
        if let Some(delay) = self.quirks.late_pause {
            // As a Java server does: the handler keeps running after the client gave up
            // (a task of its own), and closes the gate only after `delay`.
            let (gate, landed) = (self.gate.clone(), self.landed.clone());
            let late = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = gate.pause(scalar_admin::gate::Drain::Skip).await;
                landed.send_modify(|at| at.push(Instant::now()));
            });
            let _ = late.await;
            return Ok(Response::new(()));
        }
        self.inner.pause(request).await
    }

    async fn unpause(&self, request: Request<()>) -> Result<Response<()>, Status> {
        self.record(Call::Unpause);
        if self.quirks.hang_checks_after == Some(Hang::Unpause) {
            self.hanging.store(true, Ordering::SeqCst);
        }
        if self.quirks.ignore_unpause {
            return Ok(Response::new(()));
        }
        self.inner.unpause(request).await
    }

    async fn check_paused(
        &self,
        request: Request<()>,
    ) -> Result<Response<CheckPausedResponse>, Status> {
        self.record(Call::CheckPaused);
        if self.hanging.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.check_paused(request).await
    }
}

/// Configures a pod before it starts.
#[derive(Default)]
pub struct PodBuilder {
    addr: Option<SocketAddr>,
    tls: Option<Identity>,
    fail_pause: Option<(tonic::Code, String)>,
    quirks: Quirks,
}

impl PodBuilder {
    /// Listens on `addr` (port 0 for any) instead of `127.0.0.1:0`.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Serves TLS with this certificate and key.
    pub fn tls(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.tls = Some(Identity::from_pem(cert_pem, key_pem));
        self
    }

    /// Answers every Pause with this status, without pausing.
    pub fn fail_pause(mut self, code: tonic::Code, message: &str) -> Self {
        self.fail_pause = Some((code, message.to_owned()));
        self
    }

    /// Answers Pause only after `delay`, closing the gate then, from a task that goes on
    /// after the client gave up: a Pause that lands after the client's deadline.
    pub fn late_pause(mut self, delay: Duration) -> Self {
        self.quirks.late_pause = Some(delay);
        self
    }

    /// Answers Unpause OK and leaves the gate closed.
    pub fn ignore_unpause(mut self) -> Self {
        self.quirks.ignore_unpause = true;
        self
    }

    /// Never answers CheckPaused once an Unpause arrived.
    pub fn hang_checks_after_unpause(mut self) -> Self {
        self.quirks.hang_checks_after = Some(Hang::Unpause);
        self
    }

    /// Never answers CheckPaused once a Pause arrived.
    pub fn hang_checks_after_pause(mut self) -> Self {
        self.quirks.hang_checks_after = Some(Hang::Pause);
        self
    }

    /// Binds, then serves in a background task. The listener is bound before this
    /// returns, so the pod accepts connections at once: no sleep needed.
    pub async fn start(self) -> Pod {
        let addr = self.addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let listener = TcpListener::bind(addr).await.expect("bind pod");
        let addr = listener.local_addr().unwrap();
        let gate = Gate::new();
        let (tx, calls) = mpsc::unbounded_channel();
        let landed = Arc::new(watch::Sender::new(Vec::new()));
        let service = AdminServer::new(Recording {
            inner: gate.admin_service(),
            gate: gate.clone(),
            calls: tx,
            fail_pause: self.fail_pause,
            quirks: self.quirks,
            hanging: Arc::new(AtomicBool::new(false)),
            landed: landed.clone(),
        });
        let (shutdown, stop) = oneshot::channel::<()>();
        let mut server = Server::builder();
        if let Some(identity) = self.tls {
            server = server
                .tls_config(ServerTlsConfig::new().identity(identity))
                .expect("server TLS config");
        }
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let task = tokio::spawn(server.add_service(service).serve_with_incoming_shutdown(
            incoming,
            async {
                let _ = stop.await;
            },
        ));
        Pod {
            addr,
            gate,
            calls,
            landed,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }
}

/// An admin pod serving on a loopback port until dropped or stopped.
pub struct Pod {
    addr: SocketAddr,
    gate: Gate,
    calls: mpsc::UnboundedReceiver<(Call, Instant)>,
    landed: Arc<watch::Sender<Vec<Instant>>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl Pod {
    /// A plaintext pod on `127.0.0.1:0`.
    pub async fn start() -> Pod {
        Self::builder().start().await
    }

    /// A TLS pod on `127.0.0.1:0` serving this certificate.
    pub async fn start_tls(cert: &crate::ServerCert) -> Pod {
        Self::builder()
            .tls(&cert.cert_pem, &cert.key_pem)
            .start()
            .await
    }

    /// `n` plaintext pods.
    pub async fn start_many(n: usize) -> Vec<Pod> {
        let mut pods = Vec::with_capacity(n);
        for _ in 0..n {
            pods.push(Pod::start().await);
        }
        pods
    }

    /// Configures a pod.
    pub fn builder() -> PodBuilder {
        PodBuilder::default()
    }

    /// Where the pod listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The pod as a target.
    pub fn target(&self) -> Target {
        Target::from_socket_addr(self.addr)
    }

    /// The pod's gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Simulated in-flight work: the request counts until the pass is dropped.
    pub fn begin_work(&self) -> Pass {
        self.gate.enter().expect("gate open")
    }

    /// Waits until `n` late Pauses ([`PodBuilder::late_pause`]) closed the gate, and
    /// returns when each did.
    pub async fn late_pauses_landed(&self, n: usize) -> Vec<Instant> {
        match self
            .landed
            .subscribe()
            .wait_for(|landed| landed.len() >= n)
            .await
        {
            Ok(landed) => landed.clone(),
            Err(_) => Vec::new(),
        }
    }

    /// Waits for the next admin call.
    pub async fn next_call(&mut self) -> (Call, Instant) {
        self.calls.recv().await.expect("pod running")
    }

    /// Waits for the next Pause, skipping other calls (the connection probe, checks).
    pub async fn next_pause(&mut self) {
        while !matches!(self.next_call().await.0, Call::Pause { .. }) {}
    }

    /// Every admin call received so far and not yet taken, with the instant each
    /// arrived.
    pub fn take_calls_at(&mut self) -> Vec<(Call, Instant)> {
        let mut calls = Vec::new();
        while let Ok(call) = self.calls.try_recv() {
            calls.push(call);
        }
        calls
    }

    /// Every admin call received so far and not yet taken.
    pub fn take_calls(&mut self) -> Vec<Call> {
        let mut calls = Vec::new();
        while let Ok((call, _)) = self.calls.try_recv() {
            calls.push(call);
        }
        calls
    }

    /// Stops serving and waits until the port is closed.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut task) = self.task.take() {
            // Graceful: open connections get GOAWAY and close, so clients reconnect to
            // whatever listens next. Bounded, in case a call never finishes.
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Restarts the pod on the same port with a fresh, open gate, as a container that
    /// restarts comes back unpaused.
    pub async fn restart(&mut self) {
        self.stop().await;
        let fresh = Pod::builder().addr(self.addr).start().await;
        *self = fresh;
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// An address where nothing listens: the port was bound, then released.
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A pod that accepts TCP connections and never says a word: no HTTP/2, no reply.
/// Connections are held until the returned handle is dropped.
pub async fn blackhole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}
