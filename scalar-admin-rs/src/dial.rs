//! Dialling a pod: TCP to its address (or each address its host name resolves to), then
//! TLS when configured, then the HTTP/2 handshake. No time limit here: callers connect
//! many pods under one deadline.

use std::net::SocketAddr;

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
    // The authority names the pod as the Java tool does (the SRV target host name with
    // `-s`, the host as given with `-a`), not the address connected to.
    match config.tls_config() {
        // The handshakes are boxed: their futures hold codecs and TLS state that the
        // rest of a connection's life does not need room for.
        None => {
            Box::pin(Connection::handshake(
                tcp,
                format!("http://{}", target.authority()),
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
