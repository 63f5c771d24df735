//! A TCP proxy that relays HTTP/2 frame by frame and breaks a Pause call in a chosen way,
//! as a pod crashing or a proxy shutting down looks from the client. A Pause is told
//! from the other admin calls by its message: PauseRequest with `wait_outstanding` is
//! two bytes, the others' messages are empty.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the proxy breaks the Pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// Resets the connection (TCP RST) instead of forwarding the Pause: it never
    /// reaches the pod.
    ResetBeforePause,
    /// Answers the Pause with a GOAWAY whose last stream id is below it, then closes the
    /// connection: the pod never processed it.
    GoAwayBeforePause,
    /// Forwards the Pause, then resets the connection when the pod's reply starts: the
    /// pod has paused, the client never hears so.
    ResetAfterPause,
    /// Forwards the Pause, then drops every byte in both directions while keeping the
    /// socket open, as a one-way black hole or a conntrack reset looks: the pod has
    /// paused, and nothing on this connection gets through any more.
    BlackHoleAfterPause,
}

/// Relays to `upstream`, breaking the Pause on the first connection (or on every one,
/// with `every`). Serves until the handle is dropped.
pub async fn break_pause(
    upstream: SocketAddr,
    how: Break,
    every: bool,
) -> (SocketAddr, JoinHandle<()>) {
    let (addr, task, _) = break_pause_watched(upstream, how, every).await;
    (addr, task)
}

/// How a client ended a connection the proxy broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEnd {
    /// A normal close (FIN), or the proxy ended it.
    Closed,
    /// An abortive close: the client's socket sent RST.
    Reset,
}

/// [`break_pause`], also telling how the client ended the first broken connection.
pub async fn break_pause_watched(
    upstream: SocketAddr,
    how: Break,
    every: bool,
) -> (
    SocketAddr,
    JoinHandle<()>,
    watch::Receiver<Option<ClientEnd>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (ended, watched) = watch::channel(None);
    let ended = Arc::new(ended);
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let armed = every || !done.swap(true, Ordering::SeqCst);
            let ended = armed.then(|| ended.clone());
            tokio::spawn(async move {
                let end = relay(client, server, armed.then_some(how)).await;
                if let Some(ended) = ended {
                    ended.send_if_modified(|e| e.is_none() && e.replace(end).is_none());
                }
            });
        }
    });
    (addr, task, watched)
}

struct Frame {
    bytes: BytesMut,
}

impl Frame {
    fn kind(&self) -> u8 {
        self.bytes[3]
    }

    fn stream(&self) -> u32 {
        u32::from_be_bytes([self.bytes[5], self.bytes[6], self.bytes[7], self.bytes[8]])
            & 0x7fff_ffff
    }

    fn payload_len(&self) -> usize {
        self.bytes.len() - 9
    }
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;

/// Reads whole frames; cancel-safe, so two directions can be relayed in one task.
struct Frames {
    buf: BytesMut,
    /// Set when the peer ended the connection with a reset (RST), not a close.
    reset: bool,
}

impl Frames {
    fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(16 * 1024),
            reset: false,
        }
    }

    async fn next(&mut self, from: &mut (impl AsyncRead + Unpin)) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    return Some(Frame {
                        bytes: self.buf.split_to(9 + len),
                    });
                }
            }
            match from.read_buf(&mut self.buf).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    self.reset = e.kind() == std::io::ErrorKind::ConnectionReset;
                    return None;
                }
            }
        }
    }
}

enum End {
    Closed,
    Reset,
    /// The client reset the connection.
    ClientReset,
}

async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    mut armed: Option<Break>,
) -> ClientEnd {
    let end = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        relay_frames(
            &mut client_read,
            &mut client_write,
            &mut server_read,
            &mut server_write,
            &mut armed,
        )
        .await
    };
    if let End::Reset = end {
        // Zero linger makes the close a reset. Its blocking-on-drop caveat does not apply
        // with nothing left to send.
        #[allow(deprecated)]
        let _ = client.set_linger(Some(std::time::Duration::ZERO));
    }
    match end {
        End::ClientReset => ClientEnd::Reset,
        End::Closed | End::Reset => ClientEnd::Closed,
    }
}

async fn relay_frames(
    client_read: &mut (impl AsyncRead + Unpin),
    client_write: &mut (impl AsyncWrite + Unpin),
    server_read: &mut (impl AsyncRead + Unpin),
    server_write: &mut (impl AsyncWrite + Unpin),
    armed: &mut Option<Break>,
) -> End {
    let mut preface = [0u8; 24];
    if client_read.read_exact(&mut preface).await.is_err()
        || server_write.write_all(&preface).await.is_err()
    {
        return End::Closed;
    }
    let (mut from_client, mut from_server) = (Frames::new(), Frames::new());
    // A request's HEADERS, held until its DATA shows whether it is a Pause.
    let mut held: Option<Frame> = None;
    // The Pause whose reply triggers the reset.
    let mut paused_stream = None;
    let mut black_hole = false;
    loop {
        tokio::select! {
            frame = from_client.next(client_read) => {
                let Some(frame) = frame else {
                    return if from_client.reset { End::ClientReset } else { End::Closed };
                };
                if black_hole {
                    continue;
                }
                if armed.is_some() && frame.kind() == HEADERS {
                    held = Some(frame);
                    continue;
                }
                let mut out = Vec::new();
                if let Some(headers) = held.take_if(|h| frame.kind() == DATA && h.stream() == frame.stream()) {
                    let is_pause = frame.payload_len() > 5;
                    match armed.filter(|_| is_pause) {
                        Some(Break::ResetBeforePause) => return End::Reset,
                        Some(Break::GoAwayBeforePause) => {
                            let last = frame.stream().saturating_sub(2);
                            let mut goaway = vec![0, 0, 8, 7, 0, 0, 0, 0, 0];
                            goaway.extend_from_slice(&last.to_be_bytes());
                            goaway.extend_from_slice(&[0, 0, 0, 0]);
                            let _ = client_write.write_all(&goaway).await;
                            let _ = client_write.shutdown().await;
                            return End::Closed;
                        }
                        Some(Break::ResetAfterPause) => {
                            paused_stream = Some(frame.stream());
                            *armed = None;
                        }
                        Some(Break::BlackHoleAfterPause) => {
                            black_hole = true;
                            *armed = None;
                        }
                        None => {}
                    }
                    out.extend_from_slice(headers.bytes.chunk());
                }
                out.extend_from_slice(frame.bytes.chunk());
                if server_write.write_all(&out).await.is_err() {
                    return End::Closed;
                }
            }
            frame = from_server.next(server_read) => {
                let Some(frame) = frame else { return End::Closed };
                if black_hole {
                    continue;
                }
                if frame.kind() == HEADERS && paused_stream == Some(frame.stream()) {
                    return End::Reset;
                }
                if client_write.write_all(&frame.bytes).await.is_err() {
                    return End::Closed;
                }
            }
        }
    }
}

/// Relays to `upstream`, holding back every byte the pod sends for `delay`: a pod whose
/// answers come late. Serves until the handle is dropped.
pub async fn slow_replies(
    upstream: SocketAddr,
    delay: std::time::Duration,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let down = tokio::spawn(async move {
                    while let Some((at, chunk)) = rx.recv().await {
                        tokio::time::sleep_until(at + delay).await;
                        let chunk: Vec<u8> = chunk;
                        if client_write.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                });
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                    let _ = tx.send((tokio::time::Instant::now(), buf[..n].to_vec()));
                }
                drop(tx);
                let _ = down.await;
                up.abort();
            });
        }
    });
    (addr, task)
}
