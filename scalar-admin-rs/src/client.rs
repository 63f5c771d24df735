//! The wire client for one pod: connection, TLS and per-call deadlines.
//!
//! Each pod gets one HTTP/2 connection made here (TCP, then TLS with rustls when asked,
//! then the HTTP/2 handshake with the h2 crate) and driven by a task of its own; the
//! three unary calls are written out over it (see `PodClient`'s comment on why not
//! tonic's `Channel` or hyper).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::Status;
use tracing::debug;

use crate::error::{CallError, CallErrorKind, InvalidInput};
use crate::pb::{CheckPausedResponse, PauseRequest};
use crate::target::{Host, Target};

/// The pod's own drain limit when Pause leaves `max_pause_wait_time` unset or 0.
pub const SERVER_DEFAULT_MAX_PAUSE_WAIT: Duration = Duration::from_secs(30);

/// Slack added to the drain limit for Pause's deadline: the pod reports a drain that
/// took the whole limit only after the limit, and the reply still has to travel back.
pub const PAUSE_DEADLINE_MARGIN: Duration = Duration::from_secs(5);

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings. Verification is always on: with TLS there is never a plaintext fallback.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    authority: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Tls {
    // Never print certificates: they clutter logs and are not ours to publish.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS verified against the system's root certificates.
    pub fn system_roots() -> Result<Self, InvalidInput> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(InvalidInput::new(
                "system root certificates",
                "",
                "none found; give the CA with --ca-root-cert-path or --ca-root-cert-pem",
            ));
        }
        Self::with_roots(roots)
    }

    /// TLS verified against the CA certificates in `pem`.
    ///
    /// Fails unless `pem` holds at least one well-formed `CERTIFICATE` block, so a bad
    /// certificate is caught before any pod is contacted. The error never repeats the
    /// PEM text.
    pub fn with_ca_pem(pem: impl AsRef<[u8]>) -> Result<Self, InvalidInput> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |reason: String| InvalidInput::new("CA certificate", "<pem>", reason);
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_ref()) {
            let cert = cert.map_err(|e| bad(format!("malformed PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("no CERTIFICATE block found".into()));
        }
        Self::with_roots(roots)
    }

    /// TLS verified against the CA certificates in the PEM file at `path`.
    pub fn with_ca_file(path: impl AsRef<std::path::Path>) -> Result<Self, InvalidInput> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let pem = std::fs::read(path)
            .map_err(|e| InvalidInput::new("CA certificate file", &shown, e.to_string()))?;
        Self::with_ca_pem(pem)
            .map_err(|e| InvalidInput::new("CA certificate file", &shown, e.reason().to_owned()))
    }

    fn with_roots(roots: rustls::RootCertStore) -> Result<Self, InvalidInput> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| InvalidInput::new("TLS configuration", "", e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            authority: None,
        })
    }

    /// Expects `name` in the server certificate instead of the host connected to. For
    /// pods reached by IP whose certificates name the service. Unset by default.
    pub fn authority(mut self, name: &str) -> Result<Self, InvalidInput> {
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| InvalidInput::new("authority", name, e.to_string()))?;
        self.authority = Some(server_name);
        Ok(self)
    }

    fn server_name(&self, target: &Target) -> Result<ServerName<'static>, CallError> {
        if let Some(name) = &self.authority {
            return Ok(name.clone());
        }
        match target.host() {
            Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
            Host::Name(name) => ServerName::try_from(name.clone())
                .map_err(|e| connect_error(format!("invalid TLS server name {name:?}: {e}"))),
        }
    }
}

/// How pods are called: transport security and time limits.
///
/// ```
/// use std::time::Duration;
/// use scalar_admin::ClientConfig;
///
/// let config = ClientConfig::default().connect_timeout(Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    tls: Option<Tls>,
    connect_timeout: Duration,
    call_timeout: Option<Duration>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            tls: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            call_timeout: None,
        }
    }
}

impl ClientConfig {
    /// Uses TLS. Plaintext by default.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the time allowed to establish a connection (TCP, TLS and HTTP/2). 5 seconds
    /// by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the deadline of every call, overriding the defaults: 10 seconds for Unpause,
    /// CheckPaused and Pause without waiting; for a waiting Pause, the drain limit
    /// (30 seconds when unset) plus a 5-second margin, so that the pod can report a
    /// drain that failed instead of the client giving up first.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// The deadline of a Pause call with these options.
    pub fn pause_deadline(&self, pause: &PauseOptions) -> Duration {
        self.call_timeout.unwrap_or_else(|| {
            if pause.wait_outstanding {
                pause.drain_limit() + PAUSE_DEADLINE_MARGIN
            } else {
                DEFAULT_CALL_TIMEOUT
            }
        })
    }

    pub(crate) fn connect_timeout_value(&self) -> Duration {
        self.connect_timeout
    }

    /// The deadline of an Unpause or CheckPaused call.
    pub fn call_deadline(&self) -> Duration {
        self.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT)
    }
}

/// How Pause behaves on each pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PauseOptions {
    wait_outstanding: bool,
    max_pause_wait: Option<Duration>,
    rollback: bool,
}

impl Default for PauseOptions {
    fn default() -> Self {
        Self {
            wait_outstanding: true,
            max_pause_wait: None,
            rollback: true,
        }
    }
}

impl PauseOptions {
    /// Whether each pod waits for its in-flight requests to finish before answering.
    /// On by default; off is the Java tool's `--no-wait`.
    pub fn wait_outstanding(mut self, wait: bool) -> Self {
        self.wait_outstanding = wait;
        self
    }

    /// Sets how long each pod waits for in-flight requests before giving up with
    /// `FAILED_PRECONDITION`. Unset by default: the pod's own limit, 30 seconds. Sent in
    /// whole milliseconds.
    pub fn max_pause_wait(mut self, limit: Duration) -> Self {
        self.max_pause_wait = Some(limit);
        self
    }

    /// Whether a Pause that failed on any pod is undone by unpausing every pod. On by
    /// default: a half-paused cluster serves some requests and refuses others, and a
    /// backup taken then is not consistent.
    pub fn rollback(mut self, rollback: bool) -> Self {
        self.rollback = rollback;
        self
    }

    pub(crate) fn rollback_enabled(&self) -> bool {
        self.rollback
    }

    fn drain_limit(&self) -> Duration {
        match self.max_pause_wait {
            Some(d) if !d.is_zero() => d,
            _ => SERVER_DEFAULT_MAX_PAUSE_WAIT,
        }
    }

    pub(crate) fn request(&self) -> PauseRequest {
        PauseRequest {
            wait_outstanding: self.wait_outstanding,
            max_pause_wait_time: self
                .max_pause_wait
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// A connected admin client for one pod: one HTTP/2 connection, spoken through the h2
/// crate directly.
///
/// A unary gRPC call is small enough to write out here: HEADERS, then one DATA frame
/// with the length-prefixed message, then the reply and its trailers. Going through
/// hyper and tonic's client instead costs two spawned tasks and two socket writes per
/// call (hyper sends the body from a task of its own once the stream is open, so
/// HEADERS and DATA leave separately); here the DATA frame is queued with the request
/// and both leave in one write. At a thousand pods that is the difference between the
/// gates closing together and not (README, bench section).
#[derive(Debug, Clone)]
pub(crate) struct PodClient {
    send: SendRequest<Bytes>,
    /// `scheme://host:port`, the prefix of every request URI.
    origin: Arc<str>,
    /// Set by the connection's task when the connection ends.
    closed: Arc<AtomicBool>,
}

fn connect_error(cause: impl Into<String>) -> CallError {
    CallError::new(CallErrorKind::Connect(cause.into()))
}

fn transport_error(cause: impl Into<String>) -> CallError {
    CallError::new(CallErrorKind::Transport(cause.into()))
}

impl PodClient {
    /// Connects: TCP, then TLS, then the HTTP/2 handshake, within the connect timeout.
    /// For one pod; a fleet connects all of its pods under one deadline.
    pub(crate) async fn connect(config: &ClientConfig, target: &Target) -> Result<Self, CallError> {
        match tokio::time::timeout(config.connect_timeout, Self::open(config, target)).await {
            Ok(result) => result,
            Err(_) => Err(connect_error(format!(
                "timed out after {:?}",
                config.connect_timeout
            ))),
        }
    }

    /// Connects with no time limit: the caller sets one.
    pub(crate) async fn open(config: &ClientConfig, target: &Target) -> Result<Self, CallError> {
        let tcp = tcp_connect(target).await?;
        // Requests are single small frames: send them now, not after a delayed ACK.
        let _ = tcp.set_nodelay(true);
        let closed = Arc::new(AtomicBool::new(false));
        let (send, scheme) = match &config.tls {
            None => (handshake(tcp, closed.clone()).await?, "http"),
            Some(tls) => {
                let name = tls.server_name(target)?;
                let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| connect_error(format!("TLS handshake failed: {e}")))?;
                (handshake(stream, closed.clone()).await?, "https")
            }
        };
        let client = Self {
            send,
            origin: format!("{scheme}://{}", target.authority()).into(),
            closed,
        };
        // One CheckPaused before the connection counts as made. It completes the HTTP/2
        // handshake on both sides (the SETTINGS exchange, which would otherwise happen
        // inside the first Pause and add a write and a read per pod there), and proves
        // the pod answers the admin interface, so a port that accepts TCP but is no
        // admin server is found before any Pause is sent.
        client
            .check_paused(config.connect_timeout)
            .await
            .map_err(|e| connect_error(format!("no admin interface there: {e}")))?;
        Ok(client)
    }

    /// Whether the connection is gone (the pod closed it or restarted), so the next call
    /// needs a new one.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) async fn pause(
        &self,
        request: PauseRequest,
        deadline: Duration,
    ) -> Result<(), CallError> {
        self.unary::<_, ()>("/rpc.Admin/Pause", &request, deadline)
            .await
    }

    pub(crate) async fn unpause(&self, deadline: Duration) -> Result<(), CallError> {
        self.unary::<_, ()>("/rpc.Admin/Unpause", &(), deadline)
            .await
    }

    pub(crate) async fn check_paused(&self, deadline: Duration) -> Result<bool, CallError> {
        let reply: CheckPausedResponse =
            self.unary("/rpc.Admin/CheckPaused", &(), deadline).await?;
        Ok(reply.paused)
    }

    /// One unary call. The deadline goes to the pod as `grpc-timeout`, so it stops
    /// working on a call the client gave up on; the caller enforces it locally, for a
    /// whole fan-out at once (`fanout::all_within`).
    async fn unary<M, R>(&self, path: &str, message: &M, deadline: Duration) -> Result<R, CallError>
    where
        M: prost::Message,
        R: prost::Message + Default,
    {
        let request = http::Request::post(format!("{}{path}", self.origin))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header("grpc-timeout", grpc_timeout(deadline))
            .body(())
            .map_err(|e| transport_error(format!("cannot build the request: {e}")))?;
        let mut send = self
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| transport_error(e.to_string()))?;
        let (response, mut body) = send
            .send_request(request, false)
            .map_err(|e| transport_error(e.to_string()))?;
        // Queued with the HEADERS, so both leave in one write.
        body.send_data(frame(message), true)
            .map_err(|e| transport_error(e.to_string()))?;
        let response = response.await.map_err(|e| transport_error(e.to_string()))?;
        let (head, mut reply) = response.into_parts();
        // A failure is often "trailers-only": the status comes in the headers.
        if let Some(status) = Status::from_header_map(&head.headers)
            && status.code() != tonic::Code::Ok
        {
            return Err(status_error(status));
        }
        if head.status != http::StatusCode::OK {
            return Err(transport_error(format!(
                "HTTP status {} instead of a gRPC reply",
                head.status
            )));
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = reply.data().await {
            let chunk = chunk.map_err(|e| transport_error(e.to_string()))?;
            let _ = reply.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = reply
            .trailers()
            .await
            .map_err(|e| transport_error(e.to_string()))?;
        match trailers.as_ref().and_then(Status::from_header_map) {
            Some(status) if status.code() == tonic::Code::Ok => {}
            Some(status) => return Err(status_error(status)),
            None => return Err(transport_error("the reply ended without a grpc-status")),
        }
        unframe(&data)
    }
}

/// A gRPC message frame: no compression, the length, the message.
fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    message
        .encode(&mut buf)
        .expect("the buffer has room for the message");
    buf.freeze()
}

fn unframe<R: prost::Message + Default>(data: &[u8]) -> Result<R, CallError> {
    let bad = |why: &str| transport_error(format!("malformed reply: {why}"));
    if data.len() < 5 {
        return Err(bad("shorter than a message frame"));
    }
    if data[0] != 0 {
        return Err(bad("compressed, which was not asked for"));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let message = data
        .get(5..5 + len)
        .ok_or_else(|| bad("truncated message"))?;
    R::decode(message).map_err(|e| bad(&e.to_string()))
}

/// `grpc-timeout`: at most 8 digits and a unit.
fn grpc_timeout(deadline: Duration) -> String {
    let ms = deadline.as_millis();
    if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", deadline.as_secs().min(99_999_999))
    }
}

fn status_error(status: Status) -> CallError {
    debug!(code = ?status.code(), message = status.message(), "call failed");
    CallError::new(CallErrorKind::Status {
        code: status.code(),
        message: status.message().to_owned(),
    })
}

/// Connects to the target's address, or to each address its host name resolves to in
/// turn.
async fn tcp_connect(target: &Target) -> Result<TcpStream, CallError> {
    let addrs: Vec<SocketAddr> = match target.host() {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port())],
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), target.port()))
            .await
            .map_err(|e| connect_error(format!("cannot resolve {name}: {e}")))?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(format!("tcp connect to {addr}: {e}")),
        }
    }
    Err(connect_error(
        last.unwrap_or_else(|| "no address to connect to".into()),
    ))
}

/// The HTTP/2 handshake; the connection is then driven by a task of its own, which ends
/// when the client is dropped or the pod closes the connection, and then sets `closed`.
async fn handshake<IO>(io: IO, closed: Arc<AtomicBool>) -> Result<SendRequest<Bytes>, CallError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        // Admin replies are tiny: no need for h2's default 1 MiB send buffer per stream.
        .max_send_buffer_size(16 * 1024)
        .handshake(io)
        .await
        .map_err(|e| connect_error(format!("HTTP/2 handshake failed: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "connection ended");
        }
        closed.store(true, Ordering::Release);
    });
    Ok(send)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_bytes_as_a_ca_fail_cleanly(bytes in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..2000)) {
            let _ = Tls::with_ca_pem(&bytes);
        }

        #[test]
        fn pem_shaped_garbage_fails_cleanly(body in "[A-Za-z0-9+/=\\n]{0,400}") {
            let pem = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
            if let Err(e) = Tls::with_ca_pem(&pem) {
                let message = e.to_string();
                proptest::prop_assert!(message.starts_with("CA certificate"));
                proptest::prop_assert!(body.len() < 16 || !message.contains(&body), "PEM text echoed");
            }
        }

        #[test]
        fn any_authority_is_accepted_or_rejected_cleanly(name in "\\PC{0,100}") {
            let _ = TLS.clone().authority(&name);
        }
    }

    static TLS: std::sync::LazyLock<Tls> =
        std::sync::LazyLock::new(|| Tls::with_ca_pem(ca_pem()).unwrap());

    fn ca_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()])
            .unwrap()
            .cert
            .pem()
    }

    #[test]
    fn a_generated_certificate_loads() {
        Tls::with_ca_pem(ca_pem())
            .unwrap()
            .authority("scalardb.ns.svc")
            .unwrap();
        assert!(
            Tls::with_ca_pem(ca_pem())
                .unwrap()
                .authority("not a name!")
                .is_err()
        );
    }
}
