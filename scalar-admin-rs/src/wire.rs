//! The gRPC unary exchange, spoken over one HTTP/2 connection with the h2 crate: request
//! framing, and the checks a reply passes before it counts (grpc/grpc
//! `doc/PROTOCOL-HTTP2.md` and `doc/http-grpc-status-mapping.md`).
//!
//! Why not tonic's `Channel` or hyper: a unary call is small enough to write out here
//! (HEADERS, one DATA frame with the length-prefixed message, then the reply and its
//! trailers), and going through hyper costs a spawned task and two socket writes per
//! call. Here the DATA frame is queued with the HEADERS and both leave in one write; at
//! a thousand pods that is the difference between the gates closing together and not.
//!
//! Every byte of a reply is untrusted. Nothing here can panic on it, hold more than
//! [`MAX_REPLY_SIZE`] of it, or take it for a success unless it is one: HTTP status 200,
//! a gRPC content-type, exactly one uncompressed message, and `grpc-status: 0`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use http::HeaderMap;
use tokio::time::Instant;
use tracing::debug;

use crate::contract::{Code, MAX_REPLY_SIZE, Operation};
use crate::error::{CallError, CallErrorKind, ConnectFailure, GrpcStatus, Violation};
use crate::pb::google_rpc;

const USER_AGENT: &str = concat!("scalar-admin/", env!("CARGO_PKG_VERSION"));

/// The largest header block a pod may send. h2's default is 16 MiB; an admin reply's
/// headers and trailers are a few hundred bytes, and gRPC's own default is 8 KiB.
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// The receive window of each stream: room for the largest reply accepted, framed (the
/// 5-byte gRPC prefix and [`MAX_REPLY_SIZE`]), and no more. A pod can make the client
/// buffer at most this much of a stream's body before `read_reply` has judged it;
/// beyond that it must wait for a WINDOW_UPDATE, which comes only for bytes a reply
/// could still use, or break flow control, which h2 treats as a connection error.
/// (The connection window stays at the protocol's initial 65 535 bytes: HTTP/2 can
/// only grow it.)
const STREAM_WINDOW: u32 = 5 + MAX_REPLY_SIZE as u32;

/// One HTTP/2 connection to a pod, driven by a task of its own.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    send: SendRequest<Bytes>,
    /// When the connection last handed a request to the kernel.
    stamp: Arc<Stamp>,
    /// `scheme://authority`, the prefix of every request URI; the authority is the
    /// overridden one when TLS names one, as grpc-java sends it.
    origin: Arc<str>,
    /// Set by the connection's task when the connection ends.
    closed: Arc<AtomicBool>,
    /// Set by [`abort`](Self::abort): the socket is closed with `SO_LINGER` 0.
    abort: Arc<AtomicBool>,
    /// Wakes the connection's task to close the socket at once.
    stop: Arc<tokio::sync::Notify>,
}

impl Connection {
    /// The HTTP/2 handshake over `io`; the connection is then driven by a task of its
    /// own, which ends when every handle is dropped, the pod closes the connection, or
    /// [`abort`](Self::abort) is called. `abort` is the flag `io`'s socket reads when it
    /// is dropped, to close abortively (`dial::PodSocket`).
    pub(crate) async fn handshake<IO>(
        io: IO,
        origin: String,
        abort: Arc<AtomicBool>,
    ) -> Result<Self, CallError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let stamp = Arc::new(Stamp::default());
        let io = Stamped::new(io, stamp.clone());
        let (send, connection) = h2::client::Builder::new()
            // Requests are a few bytes: no need for h2's default 1 MiB send buffer.
            .max_send_buffer_size(16 * 1024)
            // Replies are a few bytes too: see `STREAM_WINDOW`.
            .initial_window_size(STREAM_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST_SIZE)
            // No stream the pod opens is ever read, so none may exist: h2 enables push
            // by default and keeps every promised request (and the pushed response, a
            // window of its body) until the parent stream's handle asks for them, which
            // ours never does, so thousands of PUSH_PROMISEs during one probe held
            // 160 MB. With push off (SETTINGS_ENABLE_PUSH 0) a PUSH_PROMISE is a
            // connection error (RFC 9113 §8.4), and SETTINGS_MAX_CONCURRENT_STREAMS 0
            // tells the pod that no stream of its own is welcome either (§5.1.2).
            .enable_push(false)
            .max_concurrent_streams(0)
            .handshake(io)
            .await
            .map_err(|e| CallError::connect(ConnectFailure::Http2).with_source(e))?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    debug!(error = %e, "connection ended");
                },
                // The connection, and with it the socket, is dropped here.
                () = stopped.notified() => debug!("connection closed abortively"),
            }
            flag.store(true, Ordering::Release);
        });
        Ok(Self {
            send,
            stamp,
            origin: origin.into(),
            closed,
            abort,
            stop,
        })
    }

    /// Closes the connection abortively: the socket is closed with `SO_LINGER` 0, so the
    /// kernel sends RST and drops what it still holds to send, and a request stuck
    /// behind a partition is never delivered later. Every stream on it fails.
    pub(crate) fn abort(&self) {
        self.abort.store(true, Ordering::Release);
        self.stop.notify_one();
    }

    /// Whether the connection is gone (the pod closed it or restarted), so the next call
    /// needs a new one.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// One unary call, with `deadline` sent as `grpc-timeout` (the time left when the
    /// request is built), so that the pod stops working on a call the client gave up on.
    /// The caller enforces the deadline locally, for a whole fan-out at once.
    ///
    /// `writing` runs just before the request is handed to the connection: from then on
    /// it may reach the pod. Returns, with the outcome, the instant the request was
    /// handed to the kernel (when it got that far).
    pub(crate) async fn call<M, R>(
        &self,
        operation: Operation,
        message: &M,
        deadline: Instant,
        writing: impl FnOnce(),
    ) -> (Option<Instant>, Result<R, CallError>)
    where
        M: prost::Message,
        R: prost::Message + Default,
    {
        match self.start(operation, message, deadline, writing).await {
            Ok(exchange) => exchange.answer().await,
            Err(e) => (self.stamp.take(), Err(e)),
        }
    }

    /// The first half of [`call`](Self::call): hands the request to the connection and
    /// returns the exchange, whose answer is awaited on its own. Dropping this future
    /// before it returns sends nothing; the [`Exchange`] it returns owns the stream, so
    /// that the answer can be awaited after the caller's deadline (a Pause whose handler
    /// may still close the gate).
    pub(crate) async fn start<M>(
        &self,
        operation: Operation,
        message: &M,
        deadline: Instant,
        writing: impl FnOnce(),
    ) -> Result<Exchange, CallError>
    where
        M: prost::Message,
    {
        let fail = |kind| CallError::new(operation, kind);
        self.stamp.arm();
        let left = deadline.saturating_duration_since(Instant::now());
        let request = http::Request::post(format!("{}{}", self.origin, operation.path()))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header(http::header::USER_AGENT, USER_AGENT)
            .header("grpc-timeout", grpc_timeout(left))
            .body(())
            .map_err(|e| fail(CallErrorKind::NotProcessed).with_source(e))?;
        // Until the request is handed over, any failure means it never left.
        let mut send = self
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| fail(CallErrorKind::NotProcessed).with_source(e))?;
        writing();
        let (response, mut body) = send
            .send_request(request, false)
            .map_err(|e| fail(CallErrorKind::NotProcessed).with_source(e))?;
        // Queued with the HEADERS, so both leave in one write.
        body.send_data(frame(message), true)
            .map_err(|e| fail(stream_error(&e)).with_source(e))?;
        Ok(Exchange {
            operation,
            response,
            body,
            stamp: self.stamp.clone(),
        })
    }
}

/// A request handed to its connection, and the stream its answer comes on. Dropping it
/// before the answer resets the stream (RST_STREAM CANCEL).
#[derive(Debug)]
pub(crate) struct Exchange {
    operation: Operation,
    response: h2::client::ResponseFuture,
    /// Kept until the answer, with the stream.
    body: h2::SendStream<Bytes>,
    stamp: Arc<Stamp>,
}

impl Exchange {
    /// Waits for the answer and checks it. Returns, with the outcome, the instant the
    /// request was handed to the kernel (when it got that far).
    pub(crate) async fn answer<R>(self) -> (Option<Instant>, Result<R, CallError>)
    where
        R: prost::Message + Default,
    {
        let Exchange {
            operation,
            response,
            body,
            stamp,
        } = self;
        let fail = |kind| CallError::new(operation, kind);
        let outcome = async {
            let response = response
                .await
                .map_err(|e| fail(stream_error(&e)).with_source(e))?;
            read_reply(response).await.map_err(|(kind, source)| {
                let error = fail(kind);
                match source {
                    Some(source) => error.with_source(source),
                    None => error,
                }
            })
        }
        .await;
        drop(body);
        (stamp.take(), outcome)
    }
}

/// The instant of the first write to the socket after a call was armed: when the
/// request left for the kernel, which is what "sent" means in a report. One atomic
/// compare-and-swap per write; the clock is read only for the stamped write.
#[derive(Debug, Default)]
struct Stamp {
    /// Nanoseconds since [`epoch`], plus one (0: not written yet); `ARMED` while
    /// waiting for the write.
    at: std::sync::atomic::AtomicU64,
}

const ARMED: u64 = u64::MAX;

/// The process's reference instant for stamps.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Stamp {
    fn arm(&self) {
        self.at.store(ARMED, Ordering::Release);
    }

    fn wrote(&self) {
        if self.at.load(Ordering::Relaxed) == ARMED {
            let nanos = epoch().elapsed().as_nanos() as u64 + 1;
            let _ = self
                .at
                .compare_exchange(ARMED, nanos, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn take(&self) -> Option<Instant> {
        match self.at.swap(0, Ordering::AcqRel) {
            0 | ARMED => None,
            nanos => Some(epoch() + Duration::from_nanos(nanos - 1)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The connection's socket. It stamps writes (see [`Stamp`]), and holds back the
    /// HTTP/2 preface, h2's first write, to send it with the next one: the preface,
    /// the SETTINGS and the probe then leave in one segment, and the pod reads them in
    /// one go instead of waking twice.
    struct Stamped<IO> {
        #[pin]
        io: IO,
        stamp: Arc<Stamp>,
        // `None` until the first write, then the bytes still held back.
        held: Option<Vec<u8>>,
    }
}

impl<IO> Stamped<IO> {
    fn new(io: IO, stamp: Arc<Stamp>) -> Self {
        Self {
            io,
            stamp,
            held: None,
        }
    }
}

impl<IO: tokio::io::AsyncWrite> Stamped<IO> {
    /// Writes the held bytes and then `buf`, as one vectored write when it can.
    /// Returns how much of `buf` went out.
    fn poll_write_held(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::io::IoSlice;
        use std::task::{Poll, ready};
        let mut this = self.project();
        loop {
            let held = match this.held.as_mut() {
                Some(held) if !held.is_empty() => held,
                _ if buf.is_empty() => return Poll::Ready(Ok(0)),
                _ => return this.io.as_mut().poll_write(cx, buf),
            };
            let slices = [IoSlice::new(held), IoSlice::new(buf)];
            let n = ready!(this.io.as_mut().poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            if n >= held.len() {
                let sent = n - held.len();
                held.clear();
                if sent > 0 || buf.is_empty() {
                    return Poll::Ready(Ok(sent));
                }
            } else {
                held.drain(..n);
            }
        }
    }
}

impl<IO: tokio::io::AsyncRead> tokio::io::AsyncRead for Stamped<IO> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<IO: tokio::io::AsyncWrite> tokio::io::AsyncWrite for Stamped<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.held.is_none() {
            // The preface: hold it for the next write.
            *self.as_mut().project().held = Some(buf.to_vec());
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        let written = self.as_mut().poll_write_held(cx, buf);
        if let std::task::Poll::Ready(Ok(_)) = written {
            self.stamp.wrote();
        }
        written
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        // h2 writes its frames through here; the first non-empty slice carries on any
        // held bytes, the rest go as they are.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        if self.held.as_ref().is_none_or(|h| !h.is_empty()) {
            return self.poll_write(cx, first);
        }
        let this = self.project();
        let written = this.io.poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(_)) = written {
            this.stamp.wrote();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        // A flush sends what is held (h2 writes its SETTINGS before it first flushes,
        // so the preface has gone with them by then).
        std::task::ready!(self.as_mut().poll_write_held(cx, &[]))?;
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.as_mut().poll_write_held(cx, &[]))?;
        self.project().io.poll_shutdown(cx)
    }
}

/// What a stream error says about the request: refused before processing (RST_STREAM
/// with REFUSED_STREAM, or above the last stream id of the pod's GOAWAY; RFC 9113 §8.7),
/// or broken after it may have reached the pod.
fn stream_error(e: &h2::Error) -> CallErrorKind {
    let refused = e.is_remote()
        && (e.is_go_away() || (e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)));
    if refused {
        CallErrorKind::NotProcessed
    } else {
        CallErrorKind::Transport
    }
}

type ReplyError = (
    CallErrorKind,
    Option<Box<dyn std::error::Error + Send + Sync>>,
);

fn violation(v: Violation) -> ReplyError {
    (CallErrorKind::Protocol(v), None)
}

/// Reads a reply to its end: the head, at most one message, the trailers.
async fn read_reply<R: prost::Message + Default>(
    response: http::Response<h2::RecvStream>,
) -> Result<R, ReplyError> {
    let (head, mut body) = response.into_parts();
    if let Some(status) = check_head(head.status, &head.headers)? {
        // Trailers-only: the status came in the headers and there is no message.
        status?;
        return Err(violation(Violation::NoMessage));
    }
    let mut message = Message::default();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| (stream_error(&e), Some(e.into())))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        message.push(&chunk).map_err(violation)?;
    }
    let trailers = body
        .trailers()
        .await
        .map_err(|e| (stream_error(&e), Some(e.into())))?;
    parse_status(trailers.as_ref().unwrap_or(&HeaderMap::new()))?;
    let message = message.finish().map_err(violation)?;
    R::decode(message).map_err(|e| {
        (
            CallErrorKind::Protocol(Violation::Undecodable),
            Some(e.into()),
        )
    })
}

/// Checks the response head. `Some` holds the status of a trailers-only response.
fn check_head(
    status: http::StatusCode,
    headers: &HeaderMap,
) -> Result<Option<Result<(), ReplyError>>, ReplyError> {
    let has_status = headers.contains_key("grpc-status");
    if status != http::StatusCode::OK {
        // A grpc-status, when there is one, wins over the HTTP status (the mapping is
        // "only for responses that did not include grpc-status").
        if has_status {
            return Ok(Some(parse_status(headers)));
        }
        return Err((
            CallErrorKind::Http {
                status: status.as_u16(),
            },
            None,
        ));
    }
    let content_type = headers.get(http::header::CONTENT_TYPE);
    if !content_type.is_some_and(|ct| is_grpc_content_type(ct.as_bytes())) {
        let shown = content_type
            .map(|ct| crate::error::sanitize(&String::from_utf8_lossy(ct.as_bytes()), 100));
        return Err(violation(Violation::ContentType(shown)));
    }
    Ok(has_status.then(|| parse_status(headers)))
}

/// `application/grpc`, optionally followed by `+<format>` or `;<parameters>`.
fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// Reads `grpc-status`, `grpc-message` and `grpc-status-details-bin`: `Ok` for status 0,
/// the status otherwise. A missing or unparsable status is a violation (reported as
/// UNKNOWN). Never panics, whatever the bytes.
pub(crate) fn parse_status(headers: &HeaderMap) -> Result<(), ReplyError> {
    let Some(value) = headers.get("grpc-status") else {
        return Err(violation(Violation::MissingStatus));
    };
    let code = std::str::from_utf8(value.as_bytes())
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<i32>().ok())
        .and_then(Code::from_i32)
        .ok_or_else(|| {
            let shown = crate::error::sanitize(&String::from_utf8_lossy(value.as_bytes()), 32);
            violation(Violation::BadStatus(shown))
        })?;
    if code == Code::Ok {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(|m| percent_encoding::percent_decode(m.as_bytes()).decode_utf8_lossy())
        .unwrap_or_default();
    let mut status = GrpcStatus::new(code, &message);
    if let Some(info) = headers
        .get("grpc-status-details-bin")
        .and_then(|v| error_info(v.as_bytes(), code))
    {
        status = status.with_reason(&info.reason, &info.domain);
    }
    Err((CallErrorKind::Status(status), None))
}

/// The `ErrorInfo` in a `grpc-status-details-bin` value: base64 (padded or not) of a
/// `google.rpc.Status` whose code matches the header's. `None` for anything else: the
/// details only add a reason, so a malformed value is dropped, not an error.
fn error_info(value: &[u8], code: Code) -> Option<google_rpc::ErrorInfo> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const BASE64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = match BASE64.decode(value) {
        Ok(bytes) => bytes,
        Err(e) => {
            debug!(error = %e, "grpc-status-details-bin is not base64; ignored");
            return None;
        }
    };
    let status = match <google_rpc::Status as prost::Message>::decode(bytes.as_slice()) {
        Ok(status) if status.code == code.as_i32() => status,
        Ok(status) => {
            debug!(
                details = status.code,
                "grpc-status-details-bin has another code; ignored"
            );
            return None;
        }
        Err(e) => {
            debug!(error = %e, "grpc-status-details-bin does not decode; ignored");
            return None;
        }
    };
    status
        .details
        .iter()
        .filter(|any| any.type_url.ends_with("/google.rpc.ErrorInfo"))
        .find_map(|any| {
            <google_rpc::ErrorInfo as prost::Message>::decode(any.value.as_slice()).ok()
        })
}

/// The one message of a unary reply, collected as its DATA frames arrive. Fails as soon
/// as the bytes cannot be a single uncompressed message within [`MAX_REPLY_SIZE`], so a
/// pod streaming an endless reply is cut off at once.
#[derive(Debug, Default)]
pub(crate) struct Message {
    buf: BytesMut,
}

impl Message {
    /// Adds bytes of the reply body.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), Violation> {
        let declared = self.declared_len();
        if let Some(len) = declared
            && self.buf.len() + chunk.len() > 5 + len
        {
            return Err(Violation::ExtraData);
        }
        self.buf.extend_from_slice(chunk);
        if declared.is_none() && self.buf.len() >= 5 {
            match self.buf[0] {
                0 => {}
                flag => return Err(Violation::Compressed(flag)),
            }
            let len = self.declared_len().unwrap_or_default();
            if len > MAX_REPLY_SIZE {
                return Err(Violation::TooLarge {
                    limit: MAX_REPLY_SIZE,
                });
            }
            if self.buf.len() > 5 + len {
                return Err(Violation::ExtraData);
            }
        }
        Ok(())
    }

    /// The length the message's prefix declares, once the prefix is in.
    fn declared_len(&self) -> Option<usize> {
        let prefix = self.buf.get(1..5)?;
        Some(u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize)
    }

    /// The message, once the body has ended.
    pub(crate) fn finish(self) -> Result<Bytes, Violation> {
        match self.declared_len() {
            _ if self.buf.is_empty() => Err(Violation::NoMessage),
            Some(len) if self.buf.len() == 5 + len => {
                let mut buf = self.buf.freeze();
                buf.advance(5);
                Ok(buf)
            }
            _ => Err(Violation::Truncated),
        }
    }
}

/// A gRPC message frame: no compression, the length, the message.
pub(crate) fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    // Cannot fail: the buffer was sized for the message.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// `grpc-timeout`: the finest unit whose value fits in 8 digits, rounded up, so that a
/// live deadline is never sent as 0.
pub(crate) fn grpc_timeout(left: Duration) -> String {
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = left.as_nanos().max(1);
    for (per_unit, unit) in UNITS {
        let value = nanos.div_ceil(per_unit);
        if value < 100_000_000 {
            return format!("{value}{unit}");
        }
    }
    "99999999H".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    fn details(code: i32, reason: &str) -> String {
        use base64::Engine as _;
        let status = google_rpc::Status::with_error_info(code, "m", reason, "com.scalar.dl.admin");
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(prost::Message::encode_to_vec(&status))
    }

    fn status_of(h: &HeaderMap) -> GrpcStatus {
        match parse_status(h) {
            Err((CallErrorKind::Status(s), _)) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_with_message_and_reason() {
        let d = details(9, "TIMED_OUT_STILL_PAUSED");
        let s = status_of(&headers(&[
            ("grpc-status", b"9"),
            ("grpc-message", b"gate%20stays%20closed%0A"),
            ("grpc-status-details-bin", d.as_bytes()),
        ]));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(
            s.message(),
            "gate stays closed\\n",
            "percent-decoded, control escaped"
        );
        assert_eq!(s.reason(), Some("TIMED_OUT_STILL_PAUSED"));
        assert_eq!(s.domain(), Some("com.scalar.dl.admin"));
    }

    #[test]
    fn malformed_details_are_dropped_not_fatal() {
        for bad in [&b"%%%not base64"[..], b"AAAA", b"", b"////"] {
            let s = status_of(&headers(&[
                ("grpc-status", b"10"),
                ("grpc-status-details-bin", bad),
            ]));
            assert_eq!(s.code(), Code::Aborted);
            assert_eq!(s.reason(), None);
        }
        // Details whose code disagrees with the header are not trusted.
        let d = details(10, "PAUSE_IN_PROGRESS");
        let s = status_of(&headers(&[
            ("grpc-status", b"9"),
            ("grpc-status-details-bin", d.as_bytes()),
        ]));
        assert_eq!(s.reason(), None);
    }

    #[test]
    fn missing_or_unparsable_status_is_unknown() {
        for h in [
            headers(&[]),
            headers(&[("grpc-status", b"x")]),
            headers(&[("grpc-status", b"17")]),
            headers(&[("grpc-status", b"-1")]),
            headers(&[("grpc-status", b"")]),
        ] {
            let (kind, _) = parse_status(&h).unwrap_err();
            let error = CallError::new(Operation::Pause, kind);
            assert_eq!(error.code(), Code::Unknown, "{error}");
        }
        assert!(parse_status(&headers(&[("grpc-status", b"0")])).is_ok());
    }

    #[test]
    fn head_checks() {
        let grpc = headers(&[("content-type", b"application/grpc")]);
        assert!(matches!(check_head(http::StatusCode::OK, &grpc), Ok(None)));
        let proto = headers(&[("content-type", b"application/grpc+proto")]);
        assert!(matches!(check_head(http::StatusCode::OK, &proto), Ok(None)));
        let html = headers(&[("content-type", b"text/html"), ("grpc-status", b"0")]);
        let Err((CallErrorKind::Protocol(Violation::ContentType(Some(ct))), _)) =
            check_head(http::StatusCode::OK, &html)
        else {
            panic!()
        };
        assert_eq!(ct, "text/html");
        let grpcweb = headers(&[("content-type", b"application/grpc-web")]);
        assert!(check_head(http::StatusCode::OK, &grpcweb).is_err());
        let plain = headers(&[("content-type", b"text/plain")]);
        let Err((CallErrorKind::Http { status: 503 }, _)) =
            check_head(http::StatusCode::SERVICE_UNAVAILABLE, &plain)
        else {
            panic!()
        };
        // A grpc-status wins over the HTTP status.
        let with_status = headers(&[("grpc-status", b"14")]);
        let Ok(Some(Err((CallErrorKind::Status(s), _)))) =
            check_head(http::StatusCode::SERVICE_UNAVAILABLE, &with_status)
        else {
            panic!()
        };
        assert_eq!(s.code(), Code::Unavailable);
    }

    #[test]
    fn timeouts_are_never_zero_and_fit_eight_digits() {
        assert_eq!(grpc_timeout(Duration::ZERO), "1n");
        assert_eq!(grpc_timeout(Duration::from_micros(300)), "300000n");
        assert_eq!(grpc_timeout(Duration::from_secs(35)), "35000000u");
        assert_eq!(grpc_timeout(Duration::from_secs(86_400 * 365)), "31536000S");
        assert_eq!(grpc_timeout(Duration::from_secs(86_400 * 3650)), "5256000M");
        assert_eq!(grpc_timeout(Duration::MAX), "99999999H");
    }

    /// The preface is held and leaves with the next write, in order, whatever the
    /// socket accepts at a time; the write after it is stamped.
    #[tokio::test]
    async fn the_preface_leaves_with_the_first_frames() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A pipe that takes 5 bytes at a time: every write is partial.
        let (near, mut far) = tokio::io::duplex(5);
        let stamp = Arc::new(Stamp::default());
        let mut io = Stamped::new(near, stamp.clone());
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.unwrap();
            all
        });
        io.write_all(b"PREFACE").await.unwrap();
        stamp.arm();
        let frames = [
            std::io::IoSlice::new(b"SETTINGS"),
            std::io::IoSlice::new(b"HEADERS"),
        ];
        let mut sent = 0;
        while sent < 15 {
            let rest: Vec<u8> = b"SETTINGSHEADERS"[sent..].to_vec();
            sent += if sent == 0 {
                io.write_vectored(&frames).await.unwrap()
            } else {
                io.write(&rest).await.unwrap()
            };
        }
        io.shutdown().await.unwrap();
        assert!(stamp.take().is_some(), "the frames' write is stamped");
        assert_eq!(reader.await.unwrap(), b"PREFACESETTINGSHEADERS");
    }

    fn collect(chunks: &[&[u8]]) -> Result<Bytes, Violation> {
        let mut m = Message::default();
        for c in chunks {
            m.push(c)?;
        }
        m.finish()
    }

    #[test]
    fn exactly_one_uncompressed_message() {
        assert_eq!(collect(&[&[0, 0, 0, 0, 2, 8, 1]]).unwrap(), &[8, 1][..]);
        assert_eq!(collect(&[&[0, 0, 0], &[0, 0]]).unwrap(), &[][..]);
        assert_eq!(collect(&[]), Err(Violation::NoMessage));
        assert_eq!(collect(&[&[0, 0, 0, 0, 2, 8]]), Err(Violation::Truncated));
        assert_eq!(collect(&[&[0, 0]]), Err(Violation::Truncated));
        assert_eq!(
            collect(&[&[0, 0, 0, 0, 0], &[0, 0, 0, 0, 0]]),
            Err(Violation::ExtraData)
        );
        assert_eq!(collect(&[&[0, 0, 0, 0, 0, 1]]), Err(Violation::ExtraData));
        assert_eq!(collect(&[&[1, 0, 0, 0, 0]]), Err(Violation::Compressed(1)));
        assert_eq!(
            collect(&[&[0, 0, 0x40, 0, 1]]),
            Err(Violation::TooLarge {
                limit: MAX_REPLY_SIZE
            })
        );
        // The limit itself is accepted, one byte more is not, from the prefix alone.
        let mut largest = vec![0, 0, 0, 4, 0];
        largest.resize(5 + MAX_REPLY_SIZE, 7);
        assert_eq!(collect(&[&largest]).unwrap().len(), MAX_REPLY_SIZE);
        assert_eq!(
            collect(&[&[0, 0, 0, 4, 1]]),
            Err(Violation::TooLarge { limit: 1024 })
        );
        // A whole reply of the largest size fits the stream window, and no more does.
        assert_eq!(STREAM_WINDOW as usize, largest.len());
    }

    proptest! {
        #[test]
        fn any_message_round_trips_in_any_split(paused in any::<bool>(), split in 0usize..8) {
            let message = crate::pb::CheckPausedResponse { paused };
            let framed = frame(&message);
            let split = split.min(framed.len());
            let body = collect(&[&framed[..split], &framed[split..]]).unwrap();
            let decoded = <crate::pb::CheckPausedResponse as prost::Message>::decode(body).unwrap();
            prop_assert_eq!(decoded, message);
        }

        #[test]
        fn any_body_is_one_message_or_rejected(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6)) {
            let all: Vec<u8> = chunks.concat();
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            match collect(&refs) {
                Ok(message) => {
                    // Accepted only as one uncompressed frame covering the whole body.
                    prop_assert_eq!(all[0], 0);
                    let len = u32::from_be_bytes([all[1], all[2], all[3], all[4]]) as usize;
                    prop_assert_eq!(all.len(), 5 + len);
                    prop_assert_eq!(&message[..], &all[5..]);
                }
                Err(Violation::Compressed(flag)) => prop_assert!(flag != 0),
                Err(_) => {}
            }
        }

        #[test]
        fn any_status_headers_parse_without_panic(
            status in prop::collection::vec(any::<u8>(), 0..6),
            message in prop::collection::vec(any::<u8>(), 0..60),
            details in prop::collection::vec(any::<u8>(), 0..120),
        ) {
            let value = |b: &[u8]| http::HeaderValue::from_bytes(b).ok();
            let mut h = HeaderMap::new();
            for (name, bytes) in [("grpc-status", &status), ("grpc-message", &message), ("grpc-status-details-bin", &details)] {
                if let Some(v) = value(bytes) {
                    h.insert(name, v);
                }
            }
            match parse_status(&h) {
                Ok(()) => prop_assert_eq!(h.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..])),
                Err((CallErrorKind::Status(s), _)) => {
                    prop_assert_ne!(s.code(), Code::Ok);
                    prop_assert!(!s.message().contains('\n'));
                }
                Err((CallErrorKind::Protocol(Violation::MissingStatus | Violation::BadStatus(_)), _)) => {}
                Err(other) => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn details_round_trip(code in 1i32..17, reason in "[A-Z_]{1,30}") {
            let d = details(code, &reason);
            let code_text = code.to_string();
            let s = status_of(&headers(&[("grpc-status", code_text.as_bytes()), ("grpc-status-details-bin", d.as_bytes())]));
            prop_assert_eq!(s.reason(), Some(reason.as_str()));
        }
    }
}
