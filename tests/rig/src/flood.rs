//! A pod that tries to grow its client: during the connection probe it sends thousands
//! of PUSH_PROMISE frames, each promising a stream with a large header block, then the
//! pushed streams' response headers and some DATA, and only then answers the probe.
//!
//! Written frame by frame on the raw socket (RFC 9113 §4.1, PUSH_PROMISE §6.6, header
//! blocks as HPACK literals without indexing, RFC 7541 §6.2.2): a client that turned
//! push off makes the h2 crate's server refuse to push, and a hostile peer does not ask.
//! Every later request on a connection is answered as an admin server answers an
//! empty-reply call, so a client that accepts the flood goes on to pause the pod.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use scalar_admin::Target;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// The bytes of the one large header each promise carries: under the client's 16 KiB
/// header-list limit, so that a client accepting pushes keeps every one.
const PROMISE_HEADER_BYTES: usize = 15_000;

#[derive(Default)]
struct State {
    /// Request HEADERS frames received, on every connection.
    requests: AtomicUsize,
    /// Requests after a connection's first (the probe): anything that may pause.
    after_probe: AtomicUsize,
    /// PUSH_PROMISE frames written to a socket.
    promised: AtomicUsize,
}

/// The flooding pod. Serves until dropped.
pub struct PushFlood {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for PushFlood {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PushFlood {
    /// Binds `127.0.0.1:0`; each connection's probe is met by `promises` pushes.
    pub async fn start(promises: usize) -> PushFlood {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(tcp, shared.clone(), promises));
            }
        });
        PushFlood { addr, state, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// It as a target.
    pub fn target(&self) -> Target {
        Target::from_socket_addr(self.addr)
    }

    /// Requests received after a connection's probe: 0 means nothing was paused.
    pub fn calls_after_probe(&self) -> usize {
        self.state.after_probe.load(Ordering::SeqCst)
    }

    /// Request HEADERS received in all.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// PUSH_PROMISE frames written so far.
    pub fn promised(&self) -> usize {
        self.state.promised.load(Ordering::SeqCst)
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK integer with an `n`-bit prefix under `first` (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, with a literal name (RFC 7541 §6.2.2).
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    integer(out, 0, 7, name.len());
    out.extend_from_slice(name);
    integer(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// A literal without indexing whose name is static-table entry `index`.
fn literal_indexed_name(out: &mut Vec<u8>, index: usize, value: &[u8]) {
    integer(out, 0, 4, index);
    integer(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// The header block of one promised request: `GET https://flood.test/pushed/<n>` and
/// one large header.
fn promised_request(n: usize, big: &[u8]) -> Vec<u8> {
    let mut block = Vec::with_capacity(big.len() + 64);
    block.push(0x82); // :method GET
    block.push(0x87); // :scheme https
    literal_indexed_name(&mut block, 1, b"flood.test"); // :authority
    literal_indexed_name(&mut block, 4, format!("/pushed/{n}").as_bytes()); // :path
    literal(&mut block, b"x-flood", big);
    block
}

/// An admin server's reply to an empty-reply call (and to CheckPaused: not paused).
fn reply(out: &mut Vec<u8>, stream: u32) {
    let mut head = vec![0x88]; // :status 200
    literal_indexed_name(&mut head, 31, b"application/grpc"); // content-type
    frame(out, HEADERS, END_HEADERS, stream, &head);
    frame(out, DATA, 0, stream, &[0, 0, 0, 0, 0]);
    let mut trailers = Vec::new();
    literal(&mut trailers, b"grpc-status", b"0");
    frame(out, HEADERS, END_HEADERS | END_STREAM, stream, &trailers);
}

/// Reads one frame: `(kind, flags, stream, payload)`.
async fn read_frame(io: &mut (impl AsyncRead + Unpin)) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// Writes the flood on `stream`: each promise, then the pushed stream's response
/// headers and 8 bytes of DATA (well inside the connection's flow-control window).
async fn flood(
    io: &mut (impl AsyncWrite + Unpin),
    stream: u32,
    promises: usize,
    state: &State,
) -> std::io::Result<()> {
    let big = vec![b'a'; PROMISE_HEADER_BYTES];
    let mut out = Vec::with_capacity(256 * 1024);
    for n in 0..promises {
        let promised = 2 * (n as u32 + 1);
        let mut payload = promised.to_be_bytes().to_vec();
        payload.extend_from_slice(&promised_request(n, &big));
        frame(&mut out, PUSH_PROMISE, END_HEADERS, stream, &payload);
        frame(&mut out, HEADERS, END_HEADERS, promised, &[0x88]);
        frame(&mut out, DATA, END_STREAM, promised, b"pushed!!");
        if out.len() >= 128 * 1024 || n + 1 == promises {
            io.write_all(&out).await?;
            out.clear();
        }
        state.promised.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

async fn serve(mut io: tokio::net::TcpStream, state: Arc<State>, promises: usize) {
    let mut preface = [0u8; 24];
    if io.read_exact(&mut preface).await.is_err() || &preface != PREFACE {
        return;
    }
    let mut out = Vec::new();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    if io.write_all(&out).await.is_err() {
        return;
    }
    let mut probed = false;
    while let Some((kind, flags, stream, payload)) = read_frame(&mut io).await {
        let mut out = Vec::new();
        match kind {
            SETTINGS if flags & ACK == 0 => frame(&mut out, SETTINGS, ACK, 0, &[]),
            PING if flags & ACK == 0 => frame(&mut out, PING, ACK, 0, &payload),
            GOAWAY => return,
            HEADERS => {
                state.requests.fetch_add(1, Ordering::SeqCst);
                if probed {
                    state.after_probe.fetch_add(1, Ordering::SeqCst);
                } else {
                    probed = true;
                    if flood(&mut io, stream, promises, &state).await.is_err() {
                        return;
                    }
                }
                reply(&mut out, stream);
            }
            _ => {}
        }
        if !out.is_empty() && io.write_all(&out).await.is_err() {
            return;
        }
    }
}
