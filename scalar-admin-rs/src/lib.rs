//! Pause, unpause and check every pod of a ScalarDB or ScalarDL deployment, for backups
//! that are transactionally consistent across databases.
//!
//! Brief overview: find the pods from the product's DNS SRV record ([`resolve_srv`]) or
//! an address list ([`parse_addresses`]), connect to all of them ([`Fleet::connect`]),
//! then call Pause, Unpause or CheckPaused on every pod at once. Each call returns a
//! [`Report`] with every pod's outcome and the instants a backup needs: when the last pod
//! finished pausing, and when unpausing started. A Pause that fails on any pod is rolled
//! back, so a cluster is never left half-paused by accident, and a rollback never ends a
//! pause this run did not make. [`window::Window`] runs a whole backup window.
//!
//! The wire protocol is the Scalar Admin gRPC interface (`proto/admin.proto`, package
//! `rpc`), so this crate talks to ScalarDB Cluster and ScalarDL Ledger and Auditor as the
//! Java `scalar-admin` tool does. Everything a pod sends is checked as the
//! gRPC-over-HTTP/2 rules say before it counts.
//!
//! # Layout
//!
//! - [`discovery`]: SRV name to pod endpoints ([`Target`]), through hickory-resolver.
//! - [`Fleet`]: one connection per pod, every call at once, and the confirmed rollback.
//! - `state`: what this run believes about each pod, changed only by the pod's answers;
//!   the rollback rule reads nothing else.
//! - [`Report`], [`Rollback`]: what a fan-out did, and what a rollback left.
//! - [`window`]: a whole backup window: pause every product, hold, verify, unpause.
//! - [`contract`]: what clients and servers agree on: calls, status codes, reasons.
//! - `gate` (feature `server`): what a Rust service embeds to answer the admin calls.
//! - [`pb`]: the protobuf messages (and with feature `server`, the tonic service).
//!
//! Inside, the wire client is split as the protocol is: `dial` (TCP), `tls`, and `wire`
//! (the gRPC unary exchange over h2, and the checks on every reply).
//!
//! Each module imports only those below it: `contract`; `error` (one call's error,
//! discovery's, bad input); `target`; `state`; `report`; `failure` ([`Error`]); `fleet`;
//! `window`.
//!
//! # Features
//!
//! - `server`: the [`gate`](crate#layout) module, with the tonic service and tower layer.
//! - `serde`: `Serialize` for reports, for callers that print them as JSON.
//! - `kubernetes`: the `kubernetes` module: pods found through the Kubernetes API
//!   (kube-rs) by Helm release, label selector or Deployment, with a snapshot of their
//!   restarts, UIDs and owners to compare after a window.
//!
//! Without features the crate needs no tonic at all: its client speaks HTTP/2 itself.
//!
//! # Example
//!
//! Runs against two loopback pods served by the gate (hidden), with feature `server`.
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
//! #         let gate = scalar_admin::gate::Gate::new();
//! #         tokio::spawn(serve(listener, gate));
//! #     }
//! #     pods
//! # }
//! # async fn serve(listener: tokio::net::TcpListener, gate: scalar_admin::gate::Gate) {
//! #     let incoming = tonic::transport::server::TcpIncoming::from(listener);
//! #     let _ = tonic::transport::Server::builder()
//! #         .add_service(gate.admin_server())
//! #         .serve_with_incoming(incoming)
//! #         .await;
//! # }
//! ```

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
pub mod contract;
mod dial;
pub mod discovery;
mod error;
mod failure;
mod fleet;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod gate;
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub mod kubernetes;
pub mod pb;
mod report;
mod state;
mod target;
mod tls;
pub mod window;
mod wire;

pub use client::{ClientConfig, PAUSE_DEADLINE_MARGIN, PauseOptions};
pub use contract::{Code, Operation};
pub use discovery::{DnsConfig, resolve_srv};
pub use error::{
    CallError, CallErrorKind, ConnectFailure, DiscoveryError, DiscoveryErrorKind, GrpcStatus,
    InvalidInput, Violation, panic_message,
};
pub use failure::Error;
pub use fleet::{FRESH_FOR, Fleet, PauseGuard};
pub use report::{KeptPod, PodReport, Report, Rollback, StuckPod, Unconfirmed, unix_micros};
pub use state::{Kept, Reply};
pub use target::{Host, Target, parse_addresses};
pub use tls::Tls;
