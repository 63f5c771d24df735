//! The wire client for one pod: connection, TLS and per-call deadlines.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};
use tracing::debug;

use crate::error::{CallError, CallErrorKind, InvalidInput};
use crate::pb::PauseRequest;
use crate::pb::admin_client::AdminClient;
use crate::target::Target;

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
    ca: Option<Certificate>,
    authority: Option<String>,
}

impl std::fmt::Debug for Tls {
    // Never print certificate text: it clutters logs and is not ours to publish.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca.as_ref().map(|_| "<pem>"))
            .field("authority", &self.authority)
            .finish()
    }
}

impl Tls {
    /// TLS verified against the system's root certificates.
    pub fn system_roots() -> Self {
        Self {
            ca: None,
            authority: None,
        }
    }

    /// TLS verified against the CA certificates in `pem`.
    ///
    /// Fails unless `pem` holds at least one well-formed `CERTIFICATE` block, so a bad
    /// certificate is caught before any pod is contacted.
    pub fn with_ca_pem(pem: impl AsRef<[u8]>) -> Result<Self, InvalidInput> {
        let pem = pem.as_ref();
        validate_ca_pem(pem)?;
        Ok(Self {
            ca: Some(Certificate::from_pem(pem)),
            authority: None,
        })
    }

    /// TLS verified against the CA certificates in the PEM file at `path`.
    pub fn with_ca_file(path: impl AsRef<std::path::Path>) -> Result<Self, InvalidInput> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| {
            InvalidInput::new(
                "CA certificate file",
                &path.display().to_string(),
                e.to_string(),
            )
        })?;
        Self::with_ca_pem(pem).map_err(|e| {
            InvalidInput::new(
                "CA certificate file",
                &path.display().to_string(),
                e.reason().to_owned(),
            )
        })
    }

    /// Expects `name` in the server certificate instead of the host connected to. For
    /// pods reached by IP whose certificates name the service. Unset by default.
    pub fn authority(mut self, name: impl Into<String>) -> Self {
        self.authority = Some(name.into());
        self
    }
}

fn validate_ca_pem(pem: &[u8]) -> Result<(), InvalidInput> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |reason: String| InvalidInput::new("CA certificate", "<pem>", reason);
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| bad(format!("malformed PEM: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    Ok(())
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

    /// The deadline of an Unpause or CheckPaused call.
    pub fn call_deadline(&self) -> Duration {
        self.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT)
    }

    pub(crate) fn endpoint(&self, target: &Target) -> Result<Endpoint, CallError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let uri = format!("{scheme}://{}", target.authority());
        let connect_err =
            |e: &dyn std::fmt::Display| CallError::new(CallErrorKind::Connect(e.to_string()));
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| connect_err(&e))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            let mut config = ClientTlsConfig::new();
            config = match &tls.ca {
                Some(ca) => config.ca_certificate(ca.clone()),
                None => config.with_native_roots(),
            };
            if let Some(authority) = &tls.authority {
                config = config.domain_name(authority.clone());
            }
            endpoint = endpoint.tls_config(config).map_err(|e| connect_err(&e))?;
        }
        Ok(endpoint)
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

/// A connected admin client for one pod.
#[derive(Debug, Clone)]
pub(crate) struct PodClient {
    inner: AdminClient<Channel>,
}

impl PodClient {
    /// Connects: TCP, then TLS, then the HTTP/2 handshake, within the connect timeout.
    pub(crate) async fn connect(config: &ClientConfig, target: &Target) -> Result<Self, CallError> {
        let endpoint = config.endpoint(target)?;
        let channel = match tokio::time::timeout(config.connect_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(CallError::new(CallErrorKind::Connect(chain(&e)))),
            Err(_) => {
                return Err(CallError::new(CallErrorKind::Connect(format!(
                    "timed out after {:?}",
                    config.connect_timeout
                ))));
            }
        };
        Ok(Self {
            inner: AdminClient::new(channel),
        })
    }

    pub(crate) async fn pause(
        &self,
        req: PauseRequest,
        deadline: Duration,
    ) -> Result<(), CallError> {
        let mut client = self.inner.clone();
        call(deadline, async move {
            client.pause(with_deadline(req, deadline)).await
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn unpause(&self, deadline: Duration) -> Result<(), CallError> {
        let mut client = self.inner.clone();
        call(deadline, async move {
            client.unpause(with_deadline((), deadline)).await
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn check_paused(&self, deadline: Duration) -> Result<bool, CallError> {
        let mut client = self.inner.clone();
        let reply = call(deadline, async move {
            client.check_paused(with_deadline((), deadline)).await
        })
        .await?;
        Ok(reply.paused)
    }
}

/// Sends the deadline to the pod as `grpc-timeout`, so it stops working on a call the
/// client has given up on.
fn with_deadline<T>(message: T, deadline: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(deadline);
    request
}

/// Enforces the deadline locally too: `grpc-timeout` only helps with a pod that reads
/// it, and a pod that accepted the connection but never answers must not hang the call.
async fn call<T>(
    deadline: Duration,
    fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(status)) => Err(from_status(status, deadline)),
        Err(_) => Err(CallError::new(CallErrorKind::Timeout(deadline))),
    }
}

fn from_status(status: Status, deadline: Duration) -> CallError {
    debug!(code = ?status.code(), message = status.message(), "call failed");
    // A status the pod sent has no source; one tonic made from a local failure (the
    // deadline it enforces from `grpc-timeout`, a broken connection) has.
    if status.message() == "Timeout expired" {
        CallError::new(CallErrorKind::Timeout(deadline))
    } else if std::error::Error::source(&status).is_some() {
        CallError::new(CallErrorKind::Transport(chain(&status)))
    } else {
        CallError::new(CallErrorKind::Status {
            code: status.code(),
            message: status.message().to_owned(),
        })
    }
}

/// An error with its sources, `a: b: c`, for errors that bury the cause.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
