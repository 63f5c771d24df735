//! Pause, unpause and check every pod of a ScalarDB or ScalarDL deployment, for backups
//! that are transactionally consistent across databases.
//!
//! Brief overview: find the pods from the product's DNS SRV record ([`resolve_srv`]) or
//! an address list ([`parse_addresses`]), connect to all of them ([`Fleet::connect`]),
//! then call Pause, Unpause or CheckPaused on every pod at once. Each call returns a
//! [`Report`] with every pod's outcome and the instants a backup needs: when the last pod
//! finished pausing, and when unpausing started. A Pause that fails on any pod is rolled
//! back, so a cluster is never left half-paused by accident.
//!
//! The wire protocol is the Scalar Admin gRPC interface (`proto/admin.proto`, package
//! `rpc`), so this crate talks to ScalarDB Cluster and ScalarDL Ledger and Auditor as the
//! Java `scalar-admin` tool does.
//!
//! # Layout
//!
//! - [`discovery`]: SRV name or address list to pod endpoints ([`Target`]).
//! - [`client`]: connection, TLS and deadlines for one pod.
//! - [`fanout`]: one call to every pod at once, and its [`Report`].
//! - [`window`]: a whole backup window: pause every product, hold, verify, unpause.
//! - [`gate`] (feature `server`): what a Rust service embeds to answer the admin calls.
//! - [`pb`]: the generated protobuf messages, client and server.
//!
//! # Example
//!
//! Runs against two loopback pods served by [`gate`] (hidden), with feature `server`.
//!
#![cfg_attr(feature = "server", doc = "```")]
#![cfg_attr(not(feature = "server"), doc = "```ignore")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use scalar_admin::{ClientConfig, Fleet, PauseOptions};
//! # let pods = serve_two_pods().await;
//!
//! // `pods` are `Target`s, e.g. from `parse_addresses("10.0.0.5:60051,10.0.0.6:60051")`
//! // or `resolve_srv("_scalardb._tcp.scalardb-headless", &DnsConfig::default())`.
//! let mut fleet = Fleet::connect(pods, ClientConfig::default()).await;
//! let pause = fleet.pause(PauseOptions::default()).await?;
//! println!("Pause completed at {:?}", pause.completed_at());
//!
//! let check = fleet.check_paused().await?;
//! assert!(check.pods().iter().all(|p| p.paused() == Some(true)));
//!
//! let unpause = fleet.unpause().await?;
//! println!("Unpause started at {:?}", unpause.started_at());
//! # Ok(()) }
//! # async fn serve_two_pods() -> Vec<scalar_admin::Target> {
//! #     let mut pods = Vec::new();
//! #     for _ in 0..2 {
//! #         let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #         pods.push(scalar_admin::Target::from_socket_addr(listener.local_addr().unwrap()));
//! #         let service = scalar_admin::gate::Gate::new().admin_server();
//! #         tokio::spawn(tonic::transport::Server::builder().add_service(service)
//! #             .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
//! #     }
//! #     pods
//! # }
//! ```

#![deny(missing_docs)]

pub mod client;
mod codec;
pub mod discovery;
mod error;
pub mod fanout;
#[cfg(feature = "server")]
pub mod gate;
mod target;
pub mod window;

/// The generated protobuf messages, client (`admin_client`) and server (`admin_server`).
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all)]
    tonic::include_proto!("rpc");
}

pub use client::{ClientConfig, PauseOptions, Tls};
pub use discovery::{DnsConfig, resolve_srv};
pub use error::{CallError, CallErrorKind, DiscoveryError, Error, InvalidInput, code_name};
pub use fanout::{Fleet, Operation, PodReport, Reply, Report};
pub use target::{Host, Target, parse_addresses};
