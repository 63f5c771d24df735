//! A hostile admin pod: a raw HTTP/2 server (the h2 crate's server side) that answers
//! the connection probe and Unpause as an admin server does, and misbehaves on Pause in
//! one chosen way, as a sidecar, a proxy or a buggy server may.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use scalar_admin::Target;
use scalar_admin::pb::{CheckPausedResponse, google_rpc};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Call;

/// How the pod answers Pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `FAILED_PRECONDITION` with a `grpc-status-details-bin` that is not base64.
    MalformedDetails,
    /// A gRPC status with an `ErrorInfo` reason, as ScalarDL sends it. Not paused.
    Status {
        /// The gRPC code.
        code: i32,
        /// The reason.
        reason: &'static str,
    },
    /// Pauses, then answers HTTP 200 with `content-type: text/html`, no message and
    /// `grpc-status: 0`.
    HtmlOk,
    /// Answers HTTP 503 from "a proxy": not paused.
    Http503,
    /// Pauses, then answers two messages and junk under `grpc-status: 0`.
    TwoMessages,
    /// Pauses, then streams a reply body that never ends.
    EndlessBody,
    /// Pauses, then answers trailers-only `grpc-status: 0`: no message.
    TrailersOnlyOk,
    /// Pauses, then answers `grpc-status: OK`, not a number.
    BadStatus,
    /// Pauses, then answers one message with the compressed flag set.
    Compressed,
    /// Refuses every Pause stream with RST_STREAM REFUSED_STREAM: not processed.
    RefusedStream,
    /// Refuses the first Pause stream with REFUSED_STREAM, then pauses normally.
    RefusedOnce,
    /// Pauses, then sends GOAWAY covering the stream and closes the connection before
    /// replying.
    GoAwayAfter,
    /// Pauses, sends the reply's headers and half of its message, then closes the
    /// connection.
    HalfReply,
    /// Pauses, then starts a 16 MiB message, over the 1 KiB limit.
    Oversized,
    /// Pauses, then ends the reply without a `grpc-status`.
    NoStatus,
    /// Closes the gate and never answers the first Pause, as a drain that outlasts the
    /// client; later Pauses answer `ABORTED` with `PAUSE_IN_PROGRESS`, as ScalarDL does
    /// while that first Pause still drains.
    DrainsForever,
    /// Someone else's pause takes the gate as this Pause arrives: the gate closes (and
    /// CheckPaused says so from then on) and the Pause answers `ABORTED` with
    /// `PAUSE_IN_PROGRESS`, as ScalarDL does while another pause drains.
    ForeignPauseInProgress,
    /// No fault: answers Pause as an admin server does.
    None,
}

/// What a request carried, as the pod saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The path.
    pub path: String,
    /// The `:authority`.
    pub authority: Option<String>,
    /// The `user-agent` header.
    pub user_agent: Option<String>,
    /// The `grpc-timeout` header.
    pub grpc_timeout: Option<String>,
}

/// Shared state: the gate, the calls seen, how many Pause streams the client reset.
#[derive(Default)]
struct State {
    paused: AtomicBool,
    pauses: AtomicUsize,
    client_resets: AtomicUsize,
    seen: std::sync::Mutex<Vec<Seen>>,
}

/// The hostile pod. Serves until dropped.
pub struct HostilePod {
    addr: SocketAddr,
    state: Arc<State>,
    calls: mpsc::UnboundedReceiver<Call>,
    task: JoinHandle<()>,
}

impl Drop for HostilePod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostilePod {
    /// Binds `127.0.0.1:0` and serves with this fault on Pause.
    pub async fn start(fault: Fault) -> HostilePod {
        Self::start_with(fault, None).await
    }

    /// The same, over TLS with this certificate.
    pub async fn start_tls(fault: Fault, cert: &crate::ServerCert) -> HostilePod {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self::start_with(
            fault,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn start_with(fault: Fault, tls: Option<tokio_rustls::TlsAcceptor>) -> HostilePod {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (tx, calls) = mpsc::unbounded_channel();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (state, tx, fault, tls) =
                    (shared.clone(), tx.clone(), fault.clone(), tls.clone());
                tokio::spawn(async move {
                    let _ = match tls {
                        None => serve(tcp, state, tx, fault).await,
                        Some(tls) => match tls.accept(tcp).await {
                            Ok(stream) => serve(stream, state, tx, fault).await,
                            Err(_) => Ok(()),
                        },
                    };
                });
            }
        });
        HostilePod {
            addr,
            state,
            calls,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// It as a target.
    pub fn target(&self) -> Target {
        Target::from_socket_addr(self.addr)
    }

    /// Whether its gate is closed.
    pub fn is_paused(&self) -> bool {
        self.state.paused.load(Ordering::SeqCst)
    }

    /// How many Pause streams the client reset (RST_STREAM) before the reply ended.
    pub fn client_resets(&self) -> usize {
        self.state.client_resets.load(Ordering::SeqCst)
    }

    /// What every request so far carried.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Every call received so far and not yet taken.
    pub fn take_calls(&mut self) -> Vec<Call> {
        let mut calls = Vec::new();
        while let Ok(call) = self.calls.try_recv() {
            calls.push(call);
        }
        calls
    }
}

fn framed(message: &[u8], flag: u8) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + message.len());
    buf.put_u8(flag);
    buf.put_u32(message.len() as u32);
    buf.put_slice(message);
    buf.freeze()
}

fn grpc_head(status: StatusCode, content_type: &str) -> Response<()> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(())
        .unwrap()
}

fn trailers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

/// A normal unary reply: one message, `grpc-status: 0`.
fn reply_ok(respond: &mut SendResponse<Bytes>, message: &[u8]) -> Result<(), h2::Error> {
    let mut stream = respond.send_response(grpc_head(StatusCode::OK, "application/grpc"), false)?;
    stream.send_data(framed(message, 0), false)?;
    stream.send_trailers(trailers(&[("grpc-status", "0")]))
}

async fn serve<IO>(
    io: IO,
    state: Arc<State>,
    calls: mpsc::UnboundedSender<Call>,
    fault: Fault,
) -> Result<(), h2::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut connection = h2::server::handshake(io).await?;
    while let Some(request) = connection.accept().await {
        let (request, mut respond) = request?;
        let path = request.uri().path().to_owned();
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        state.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            authority: request.uri().authority().map(|a| a.to_string()),
            user_agent: header("user-agent"),
            grpc_timeout: header("grpc-timeout"),
        });
        // Read the request body to its end, so the stream is in the state a real
        // server's would be in.
        let mut body = request.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        match path.as_str() {
            "/rpc.Admin/CheckPaused" => {
                let _ = calls.send(Call::CheckPaused);
                let paused = state.paused.load(Ordering::SeqCst);
                let message = prost::Message::encode_to_vec(&CheckPausedResponse { paused });
                reply_ok(&mut respond, &message)?;
            }
            "/rpc.Admin/Unpause" => {
                let _ = calls.send(Call::Unpause);
                state.paused.store(false, Ordering::SeqCst);
                reply_ok(&mut respond, &[])?;
            }
            "/rpc.Admin/Pause" => {
                let _ = calls.send(Call::Pause {
                    wait_outstanding: true,
                    max_pause_wait_time: None,
                });
                let nth = state.pauses.fetch_add(1, Ordering::SeqCst);
                if pause(&mut connection, respond, &state, &fault, nth).await? {
                    // The connection was closed on purpose.
                    return Ok(());
                }
            }
            _ => {
                let mut head = grpc_head(StatusCode::OK, "application/grpc");
                head.headers_mut()
                    .insert("grpc-status", HeaderValue::from_static("12"));
                respond.send_response(head, true)?;
            }
        }
    }
    Ok(())
}

/// Answers one Pause with the fault. True when the connection must close now.
async fn pause<IO>(
    connection: &mut h2::server::Connection<IO, Bytes>,
    mut respond: SendResponse<Bytes>,
    state: &State,
    fault: &Fault,
    nth: usize,
) -> Result<bool, h2::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let pauses = |paused: bool| state.paused.store(paused, Ordering::SeqCst);
    match fault {
        Fault::MalformedDetails => {
            let mut head = grpc_head(StatusCode::OK, "application/grpc");
            let h = head.headers_mut();
            h.insert("grpc-status", HeaderValue::from_static("9"));
            h.insert("grpc-message", HeaderValue::from_static("drain%20failed"));
            h.insert(
                "grpc-status-details-bin",
                HeaderValue::from_static("%%%-not*base64!"),
            );
            respond.send_response(head, true)?;
        }
        Fault::Status { code, reason } => {
            let details = google_rpc::Status::with_error_info(
                *code,
                "scripted",
                reason,
                "com.scalar.dl.admin",
            );
            let encoded = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                prost::Message::encode_to_vec(&details),
            );
            let mut head = grpc_head(StatusCode::OK, "application/grpc");
            let h = head.headers_mut();
            h.insert(
                "grpc-status",
                HeaderValue::from_str(&code.to_string()).unwrap(),
            );
            h.insert("grpc-message", HeaderValue::from_static("scripted"));
            h.insert(
                "grpc-status-details-bin",
                HeaderValue::from_str(&encoded).unwrap(),
            );
            respond.send_response(head, true)?;
        }
        Fault::HtmlOk => {
            pauses(true);
            let mut stream =
                respond.send_response(grpc_head(StatusCode::OK, "text/html"), false)?;
            stream.send_trailers(trailers(&[("grpc-status", "0")]))?;
        }
        Fault::Http503 => {
            let mut stream = respond.send_response(
                grpc_head(StatusCode::SERVICE_UNAVAILABLE, "text/plain"),
                false,
            )?;
            stream.send_data(Bytes::from_static(b"upstream connect error"), true)?;
        }
        Fault::TwoMessages => {
            pauses(true);
            let mut stream =
                respond.send_response(grpc_head(StatusCode::OK, "application/grpc"), false)?;
            stream.send_data(framed(&[], 0), false)?;
            stream.send_data(framed(&[], 0), false)?;
            stream.send_data(Bytes::from_static(b"junk"), false)?;
            stream.send_trailers(trailers(&[("grpc-status", "0")]))?;
        }
        Fault::EndlessBody => {
            pauses(true);
            let mut stream =
                respond.send_response(grpc_head(StatusCode::OK, "application/grpc"), false)?;
            let chunk = Bytes::from(vec![0u8; 16 * 1024]);
            // Until the client resets the stream (or the connection goes).
            loop {
                stream.reserve_capacity(chunk.len());
                let granted = std::future::poll_fn(|cx| {
                    // Drive the connection while waiting for flow-control capacity.
                    let _ = connection.poll_closed(cx);
                    stream.poll_capacity(cx)
                })
                .await;
                match granted {
                    Some(Ok(n)) if n > 0 => {
                        if stream.send_data(chunk.slice(..n), false).is_err() {
                            state.client_resets.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        state.client_resets.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
            }
        }
        Fault::TrailersOnlyOk => {
            pauses(true);
            let mut head = grpc_head(StatusCode::OK, "application/grpc");
            head.headers_mut()
                .insert("grpc-status", HeaderValue::from_static("0"));
            respond.send_response(head, true)?;
        }
        Fault::BadStatus => {
            pauses(true);
            let mut stream =
                respond.send_response(grpc_head(StatusCode::OK, "application/grpc"), false)?;
            stream.send_data(framed(&[], 0), false)?;
            stream.send_trailers(trailers(&[("grpc-status", "OK")]))?;
        }
        Fault::Compressed => {
            pauses(true);
            let mut stream =
                respond.send_response(grpc_head(StatusCode::OK, "application/grpc"), false)?;
            stream.send_data(framed(&[1, 2, 3], 1), false)?;
            stream.send_trailers(trailers(&[("grpc-status", "0")]))?;
        }
        Fault::DrainsForever if nth == 0 => {
            pauses(true);
            std::future::pending::<()>().await;
        }
        Fault::ForeignPauseInProgress => {
            pauses(true);
            let in_progress = Fault::Status {
                code: 10,
                reason: "PAUSE_IN_PROGRESS",
            };
            return Box::pin(pause(connection, respond, state, &in_progress, nth)).await;
        }
        Fault::DrainsForever => {
            let in_progress = Fault::Status {
                code: 10,
                reason: "PAUSE_IN_PROGRESS",
            };
            return Box::pin(pause(connection, respond, state, &in_progress, nth)).await;
        }
        Fault::RefusedStream => respond.send_reset(h2::Reason::REFUSED_STREAM),
        Fault::RefusedOnce if nth == 0 => respond.send_reset(h2::Reason::REFUSED_STREAM),
        Fault::RefusedOnce | Fault::None => {
            pauses(true);
            reply_ok(&mut respond, &[])?;
        }
        Fault::Oversized => {
            pauses(true);
            let mut stream =
                respond.send_response(grpc_head(StatusCode::OK, "application/grpc"), false)?;
            let mut start = BytesMut::from(&[0u8, 1, 0, 0, 0][..]);
            start.extend_from_slice(&[0; 1024]);
            stream.send_data(start.freeze(), false)?;
            stream.send_trailers(trailers(&[("grpc-status", "0")]))?;
        }
        Fault::NoStatus => {
            pauses(true);
            let mut stream =
                respond.send_response(grpc_head(StatusCode::OK, "application/grpc"), false)?;
            stream.send_data(framed(&[], 0), false)?;
            stream.send_trailers(trailers(&[("grpc-message", "done")]))?;
        }
        Fault::GoAwayAfter => {
            pauses(true);
            connection.abrupt_shutdown(h2::Reason::NO_ERROR);
            // Flush the GOAWAY, then close without a reply.
            let _ = std::future::poll_fn(|cx| connection.poll_closed(cx)).await;
            return Ok(true);
        }
        Fault::HalfReply => {
            pauses(true);
            let mut stream =
                respond.send_response(grpc_head(StatusCode::OK, "application/grpc"), false)?;
            // A prefix announcing 10 bytes, and 3 of them.
            stream.send_data(Bytes::from_static(&[0, 0, 0, 0, 10, 1, 2, 3]), false)?;
            // One poll writes the queued frames to the socket; then the connection is
            // dropped, closing it in the middle of the reply.
            std::future::poll_fn(|cx| {
                let _ = connection.poll_closed(cx);
                std::task::Poll::Ready(())
            })
            .await;
            return Ok(true);
        }
    }
    Ok(false)
}
