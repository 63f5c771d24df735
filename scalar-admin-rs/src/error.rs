//! The errors below an operation: one call to one pod ([`CallError`]), discovery
//! ([`DiscoveryError`]) and bad input ([`InvalidInput`]). They name no pod and hold no
//! report, so every other module can use them; what an operation returns is
//! [`Error`](crate::Error), one layer up.
//!
//! [`CallError`] is what went wrong with one call to one pod: the operation, a
//! [`CallErrorKind`] with the cause as data, and the underlying error as its
//! [`source`](std::error::Error::source). It does not name the pod, since the
//! [`PodReport`](crate::PodReport) that holds it does.
//!
//! Everything a pod sends is untrusted: status messages and reasons are stored with
//! control characters escaped and their length capped, so that a reply can neither
//! break the one-line output nor pass for a line of it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::contract::{Code, Operation, reason};

/// An underlying error, shared so that reports stay cheap to clone.
pub(crate) type Source = Arc<dyn std::error::Error + Send + Sync>;

fn shared(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Option<Source> {
    Some(Arc::from(source.into()))
}

fn as_source(source: &Option<Source>) -> Option<&(dyn std::error::Error + 'static)> {
    source
        .as_deref()
        .map(|e| e as &(dyn std::error::Error + 'static))
}

/// Why one call to one pod failed.
#[derive(Debug, Clone)]
pub struct CallError {
    operation: Operation,
    kind: CallErrorKind,
    source: Option<Source>,
}

/// The kinds of [`CallError`], each with its cause as data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// The pod could not be connected to: nothing was sent.
    Connect(ConnectFailure),
    /// No answer within the deadline. The request may have reached the pod, so its state
    /// is unknown.
    Timeout(Duration),
    /// The pod answered with a gRPC status other than OK.
    Status(GrpcStatus),
    /// An HTTP status other than 200 and no gRPC status: a proxy answered, not the pod.
    /// The request may have reached the pod.
    Http {
        /// The HTTP status code.
        status: u16,
    },
    /// The reply broke the gRPC-over-HTTP/2 rules. The request may have reached the pod.
    Protocol(Violation),
    /// The connection broke during the call. The request may have reached the pod.
    Transport,
    /// The pod did not process the request: its stream was refused (`REFUSED_STREAM`),
    /// or it came after the pod's `GOAWAY`, on the first connection and on a fresh one.
    NotProcessed,
    /// Not sent, because another pod could not be reached and pausing the rest would
    /// only have to be rolled back.
    NotSent,
    /// A Pause not sent: the pod's connection was made again inside the call, and its
    /// probe said someone else has paused it.
    PausedByOthers,
    /// This crate's code handling the call panicked (a bug). The request may have been
    /// sent.
    Panicked(String),
}

/// The step at which connecting to a pod failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The host name did not resolve.
    Resolve,
    /// The TCP connection failed (refused, unreachable).
    Tcp,
    /// The host cannot be used as a TLS server name.
    ServerName,
    /// The TLS handshake failed (an untrusted or expired certificate, a wrong name).
    Tls,
    /// The HTTP/2 handshake failed.
    Http2,
    /// The connection was made, but the pod did not answer CheckPaused as an admin
    /// server does (the [`source`](std::error::Error::source) says how).
    Probe,
    /// Connecting took longer than the connect timeout.
    TimedOut(Duration),
}

/// How a reply broke the gRPC-over-HTTP/2 rules (grpc/grpc `doc/PROTOCOL-HTTP2.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// The content-type is not `application/grpc` (or `application/grpc+...`); `None`
    /// when there was none.
    ContentType(Option<String>),
    /// The reply ended without a `grpc-status`.
    MissingStatus,
    /// The `grpc-status` is not a status code.
    BadStatus(String),
    /// A unary reply with no message.
    NoMessage,
    /// A unary reply with more than one message, or bytes after its message.
    ExtraData,
    /// A message larger than the limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A compressed message (this flag byte), though no compression was negotiated.
    Compressed(u8),
    /// The reply ended inside a message.
    Truncated,
    /// The message does not decode as the reply type.
    Undecodable,
}

/// A gRPC status a pod answered with, and the reason its `google.rpc.ErrorInfo` details
/// gave, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcStatus {
    code: Code,
    message: String,
    reason: Option<String>,
    domain: Option<String>,
}

/// Escapes control characters and caps the length of text a peer sent.
pub(crate) fn sanitize(text: &str, limit: usize) -> String {
    let mut out = String::with_capacity(text.len().min(limit));
    for c in text.chars() {
        if out.len() >= limit {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl GrpcStatus {
    pub(crate) fn new(code: Code, message: &str) -> Self {
        Self {
            code,
            message: sanitize(message, 1024),
            reason: None,
            domain: None,
        }
    }

    pub(crate) fn with_reason(mut self, reason: &str, domain: &str) -> Self {
        if !reason.is_empty() {
            self.reason = Some(sanitize(reason, 128));
        }
        if !domain.is_empty() {
            self.domain = Some(sanitize(domain, 128));
        }
        self
    }

    /// The status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The status message (`grpc-message`, percent-decoded).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `ErrorInfo` reason from `grpc-status-details-bin`, such as
    /// [`TIMED_OUT_STILL_PAUSED`](reason::TIMED_OUT_STILL_PAUSED).
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The `ErrorInfo` domain, such as `com.scalar.dl.admin`.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }
}

impl fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.as_deref() == Some(reason::PAUSE_IN_PROGRESS) {
            f.write_str("another pause is in progress: ")?;
        }
        write!(f, "{}", self.code)?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl CallError {
    pub(crate) fn new(operation: Operation, kind: CallErrorKind) -> Self {
        Self {
            operation,
            kind,
            source: None,
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = shared(source);
        self
    }

    pub(crate) fn connect(failure: ConnectFailure) -> Self {
        Self::new(Operation::Connect, CallErrorKind::Connect(failure))
    }

    /// The same error, reported for another operation (a connection made inside a Pause
    /// fan-out fails the Pause).
    pub(crate) fn during(mut self, operation: Operation) -> Self {
        self.operation = operation;
        self
    }

    /// The call that failed.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// What went wrong.
    pub fn kind(&self) -> &CallErrorKind {
        &self.kind
    }

    /// The gRPC status code a gRPC client reports for this failure: the pod's own code
    /// when it sent one, else the code gRPC gives the fault (`DEADLINE_EXCEEDED` for a
    /// time-out, `UNAVAILABLE` for a connection that failed or broke, the HTTP status
    /// mapping for a proxy's answer, and so on).
    pub fn code(&self) -> Code {
        match &self.kind {
            CallErrorKind::Connect(_) | CallErrorKind::Transport | CallErrorKind::NotProcessed => {
                Code::Unavailable
            }
            CallErrorKind::Timeout(_) => Code::DeadlineExceeded,
            CallErrorKind::Status(status) => status.code,
            CallErrorKind::Http { status } => Code::from_http_status(*status),
            CallErrorKind::Protocol(v) => match v {
                Violation::ContentType(_) | Violation::MissingStatus | Violation::BadStatus(_) => {
                    Code::Unknown
                }
                Violation::TooLarge { .. } => Code::ResourceExhausted,
                _ => Code::Internal,
            },
            CallErrorKind::NotSent => Code::Cancelled,
            CallErrorKind::PausedByOthers => Code::FailedPrecondition,
            CallErrorKind::Panicked(_) => Code::Internal,
        }
    }

    /// The status the pod answered with, when it answered with one.
    pub fn status(&self) -> Option<&GrpcStatus> {
        match &self.kind {
            CallErrorKind::Status(status) => Some(status),
            _ => None,
        }
    }

    /// The `ErrorInfo` reason the pod gave, when it gave one.
    pub fn reason(&self) -> Option<&str> {
        self.status().and_then(GrpcStatus::reason)
    }

    /// Whether the call ran out of time, leaving the pod's state unknown.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, CallErrorKind::Timeout(_))
    }

    /// Whether the pod could not be connected to.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, CallErrorKind::Connect(_))
    }

    /// Whether the connection the call used still works as far as this call shows: the
    /// pod answered (with any status), or the request never got onto it. A time-out, a
    /// broken stream or a malformed reply says nothing good of it.
    pub fn is_connection_sound(&self) -> bool {
        matches!(
            self.kind,
            CallErrorKind::Status(_)
                | CallErrorKind::NotSent
                | CallErrorKind::NotProcessed
                | CallErrorKind::PausedByOthers
        )
    }

    /// Whether the request certainly never reached the pod's handler: nothing was sent,
    /// or the pod refused it unprocessed.
    pub fn is_unprocessed(&self) -> bool {
        matches!(
            self.kind,
            CallErrorKind::Connect(_)
                | CallErrorKind::NotSent
                | CallErrorKind::NotProcessed
                | CallErrorKind::PausedByOthers
        )
    }

    /// This error and its sources, joined by `": "`, on one line.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&sanitize(&e.to_string(), 512));
            next = e.source();
        }
        out
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            CallErrorKind::Connect(failure) => write!(f, "cannot connect: {failure}"),
            CallErrorKind::Timeout(d) => write!(f, "no answer within the {d:?} deadline"),
            CallErrorKind::Status(status) => write!(f, "{status}"),
            CallErrorKind::Http { status } => write!(
                f,
                "{}: HTTP status {status} instead of a gRPC reply (from a proxy?)",
                Code::from_http_status(*status)
            ),
            CallErrorKind::Protocol(v) => write!(f, "{}: malformed reply: {v}", self.code()),
            CallErrorKind::Transport => f.write_str("transport error"),
            CallErrorKind::NotProcessed => f.write_str(
                "not processed: the pod refused the request unprocessed, \
                 also on a fresh connection",
            ),
            CallErrorKind::NotSent => f.write_str("not sent: another pod was unreachable"),
            CallErrorKind::PausedByOthers => {
                f.write_str("not sent: the pod, connected again, reports paused by someone else")
            }
            CallErrorKind::Panicked(message) => {
                write!(f, "internal error: the call panicked: {message}")
            }
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        as_source(&self.source)
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Resolve => f.write_str("cannot resolve the host name"),
            ConnectFailure::Tcp => f.write_str("TCP connect failed"),
            ConnectFailure::ServerName => f.write_str("invalid TLS server name"),
            ConnectFailure::Tls => f.write_str("TLS handshake failed"),
            ConnectFailure::Http2 => f.write_str("HTTP/2 handshake failed"),
            ConnectFailure::Probe => f.write_str("no admin interface there"),
            ConnectFailure::TimedOut(d) => write!(f, "timed out after {d:?}"),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ContentType(Some(ct)) => {
                write!(f, "content-type {ct:?} is not application/grpc")
            }
            Violation::ContentType(None) => f.write_str("no content-type: not a gRPC reply"),
            Violation::MissingStatus => f.write_str("no grpc-status"),
            Violation::BadStatus(value) => write!(f, "grpc-status {value:?} is not a status code"),
            Violation::NoMessage => f.write_str("no message in a unary reply"),
            Violation::ExtraData => f.write_str("more than one message in a unary reply"),
            Violation::TooLarge { limit } => write!(f, "a message over the {limit}-byte limit"),
            Violation::Compressed(flag) => {
                write!(
                    f,
                    "compressed message (flag {flag}), but no compression was negotiated"
                )
            }
            Violation::Truncated => f.write_str("the reply ended inside a message"),
            Violation::Undecodable => f.write_str("the message does not decode"),
        }
    }
}

/// Input rejected before any pod is contacted: a malformed address, name, certificate or
/// duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?}: {reason}")]
pub struct InvalidInput {
    what: &'static str,
    value: String,
    reason: String,
}

impl InvalidInput {
    pub(crate) fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            what,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// What the value was meant to be: `"address"`, `"SRV name"`, `"CA certificate"`...
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The offending value, as given (never certificate text: `<pem>` stands for it).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What is wrong with the value.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Pod discovery through DNS failed; no pod was contacted.
#[derive(Debug, Clone)]
pub struct DiscoveryError {
    name: String,
    /// Boxed: the Kubernetes kinds carry several strings, and every `Result` of
    /// discovery should stay small.
    kind: Box<DiscoveryErrorKind>,
    source: Option<Source>,
}

/// The kinds of [`DiscoveryError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryErrorKind {
    /// The resolver could not be set up (no system configuration, a bad search domain).
    Config,
    /// No candidate name exists (NXDOMAIN).
    NoSuchName,
    /// This name exists but holds no SRV record.
    NoRecords(String),
    /// This SRV target has no address.
    NoAddress(String),
    /// The answer did not fit one DNS message: acting on part of the pods would break
    /// the backup's consistency.
    Truncated,
    /// The name server answered with this error code (SERVFAIL, REFUSED...).
    ServerError(String),
    /// This name server sent a message that does not decode.
    Malformed(String),
    /// No answer in time.
    TimedOut(Duration),
    /// The Kubernetes API refused this request: the service account (or user) lacks
    /// the permission.
    Forbidden {
        /// `get` or `list`.
        verb: String,
        /// The resource, with its API group (`endpointslices.discovery.k8s.io`).
        resource: String,
        /// The namespace.
        namespace: String,
    },
    /// This Kubernetes API request failed otherwise.
    Api {
        /// `get` or `list`.
        verb: String,
        /// The resource, with its API group.
        resource: String,
        /// The namespace.
        namespace: String,
        /// What the API server answered (code, reason, message), or why the request
        /// did not get there; one line.
        cause: String,
    },
    /// The Kubernetes API did not answer in time.
    ApiTimedOut(Duration),
    /// The Kubernetes client could not be set up from the kubeconfig or the service
    /// account (why, on one line).
    KubeConfig(String),
    /// No pod matches (what was looked for).
    NoPods(String),
    /// These pods (with their state) are not Running and ready: a backup would not
    /// cover them.
    NotReady(Vec<String>),
    /// What the Kubernetes API shows does not add up (a pod without its product label,
    /// no admin port, a ready pod no EndpointSlice lists...).
    Inconsistent(String),
    /// Anything else the resolver reported.
    Other,
}

impl DiscoveryError {
    pub(crate) fn new(name: &str, kind: DiscoveryErrorKind) -> Self {
        Self {
            name: name.to_owned(),
            kind: Box::new(kind),
            source: None,
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = shared(source);
        self
    }

    /// The DNS name that failed to resolve, as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What went wrong.
    pub fn kind(&self) -> &DiscoveryErrorKind {
        &self.kind
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot resolve {}: ", self.name)?;
        match &*self.kind {
            DiscoveryErrorKind::Config => f.write_str("the resolver cannot be set up"),
            DiscoveryErrorKind::NoSuchName => f.write_str("no such name (NXDOMAIN)"),
            DiscoveryErrorKind::NoRecords(candidate) => {
                write!(f, "{candidate} exists but holds no SRV record")
            }
            DiscoveryErrorKind::NoAddress(target) => {
                write!(f, "SRV target {target} has no address")
            }
            DiscoveryErrorKind::Truncated => f.write_str(
                "the answer was truncated (more SRV records than one DNS message holds, \
                 about 850); refusing to act on part of the pods",
            ),
            DiscoveryErrorKind::ServerError(code) => write!(f, "the name server answered {code}"),
            DiscoveryErrorKind::Malformed(server) => write!(f, "malformed answer from {server}"),
            DiscoveryErrorKind::TimedOut(d) => {
                write!(f, "the name server did not answer within {d:?}")
            }
            DiscoveryErrorKind::Forbidden {
                verb,
                resource,
                namespace,
            } => write!(
                f,
                "forbidden to {verb} {resource} in namespace {namespace}: the Role needs verb {verb} on {resource}"
            ),
            DiscoveryErrorKind::Api {
                verb,
                resource,
                namespace,
                cause,
            } => write!(
                f,
                "cannot {verb} {resource} in namespace {namespace}: {cause}"
            ),
            DiscoveryErrorKind::ApiTimedOut(d) => {
                write!(f, "the Kubernetes API did not answer within {d:?}")
            }
            DiscoveryErrorKind::KubeConfig(why) => {
                write!(f, "cannot set up the Kubernetes client: {why}")
            }
            DiscoveryErrorKind::NoPods(what) => f.write_str(what),
            DiscoveryErrorKind::NotReady(pods) => write!(
                f,
                "{} pod(s) not Running and ready: {}; nothing was paused",
                pods.len(),
                pods.join(", ")
            ),
            DiscoveryErrorKind::Inconsistent(what) => f.write_str(what),
            DiscoveryErrorKind::Other => f.write_str("lookup failed"),
        }
    }
}

impl std::error::Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        as_source(&self.source)
    }
}

/// The text of a panic's payload, as a report shows a caught panic. For callers that
/// catch panics around a fleet, as the CLI does, to say what happened.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
