//! Dialling a pod: TCP to its address (or each address its host name resolves to), then
//! TLS when configured, then the HTTP/2 handshake. No time limit here: callers connect
//! many pods under one deadline.
//!
//! Every pod socket has `TCP_USER_TIMEOUT` (Linux) below the rollback's watch, and can be
//! closed abortively ([`Connection::abort`]): a request the kernel still holds after a
//! partition is then dropped, never delivered after the rollback is done.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::client::ClientConfig;
use crate::error::{CallError, ConnectFailure};
use crate::target::{Host, Target};
use crate::wire::Connection;

/// Opens an HTTP/2 connection to `target`.
pub(crate) async fn dial(config: &ClientConfig, target: &Target) -> Result<Connection, CallError> {
    let tcp = tcp(target).await?;
    // Requests are single small frames: send them now, not after a delayed ACK.
    let _ = tcp.set_nodelay(true);
    set_user_timeout(&tcp, config.user_timeout());
    let abort = Arc::new(AtomicBool::new(false));
    let tcp = PodSocket {
        tcp,
        abort: abort.clone(),
    };
    // The authority names the pod as the Java tool does (the SRV target host name with
    // `-s`, the host as given with `-a`), not the address connected to.
    match config.tls_config() {
        // The handshakes are boxed: their futures hold codecs and TLS state that the
        // rest of a connection's life does not need room for.
        None => {
            Box::pin(Connection::handshake(
                tcp,
                format!("http://{}", target.authority()),
                abort,
            ))
            .await
        }
        Some(tls) => {
            let authority = tls
                .authority_header()
                .map_or_else(|| target.authority(), str::to_owned);
            let stream = Box::pin(tls.connect(target, tcp)).await?;
            Box::pin(Connection::handshake(
                stream,
                format!("https://{authority}"),
                abort,
            ))
            .await
        }
    }
}

/// Connects to the target's address, or to each address its host name resolves to in
/// turn.
async fn tcp(target: &Target) -> Result<TcpStream, CallError> {
    let addrs: Vec<SocketAddr> = match target.host() {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port())],
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), target.port()))
            .await
            .map_err(|e| CallError::connect(ConnectFailure::Resolve).with_source(e))?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => CallError::connect(ConnectFailure::Tcp).with_source(e),
        None => CallError::connect(ConnectFailure::Resolve).with_source("no address"),
    })
}

/// `TCP_USER_TIMEOUT`: how long data the kernel sent may stay unacknowledged before it
/// gives the connection up (RFC 5482), instead of retransmitting for many minutes. A
/// request stuck behind a partition is then never delivered after the rollback. Linux
/// only; elsewhere the kernel's own retransmission limit stays.
fn set_user_timeout(tcp: &TcpStream, timeout: Duration) {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout)) {
        tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
    let _ = (tcp, timeout);
}

/// A pod's TCP socket, closed abortively (`SO_LINGER` 0, so the kernel sends RST and
/// drops whatever it still holds to send) once `abort` is set.
#[derive(Debug)]
pub(crate) struct PodSocket {
    tcp: TcpStream,
    abort: Arc<AtomicBool>,
}

impl Drop for PodSocket {
    fn drop(&mut self) {
        if self.abort.load(Ordering::Acquire)
            && let Err(e) = socket2::SockRef::from(&self.tcp).set_linger(Some(Duration::ZERO))
        {
            tracing::debug!(error = %e, "cannot set SO_LINGER 0");
        }
    }
}

impl AsyncRead for PodSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PodSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;

    #[tokio::test]
    async fn every_pod_socket_gives_up_unacknowledged_data_before_the_watch_ends() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let config = ClientConfig::default();
        assert_eq!(config.user_timeout(), Duration::from_millis(750));
        set_user_timeout(&tcp, config.user_timeout());
        #[cfg(target_os = "linux")]
        assert_eq!(
            socket2::SockRef::from(&tcp).tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(750))
        );
        let tiny = ClientConfig::default().rollback_watch(Duration::from_millis(10));
        assert_eq!(tiny.user_timeout(), Duration::from_millis(250), "a floor");
        let huge = ClientConfig::default().rollback_watch(Duration::MAX);
        assert_eq!(huge.user_timeout(), Duration::from_secs(30), "a ceiling");
    }
}
