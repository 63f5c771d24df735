//! A tonic service that embeds the gate through its layer: every request of the server
//! passes the gate, the admin calls answer Pause, Unpause and CheckPaused, and a paused
//! server refuses requests until it is unpaused.
//!
//! ```sh
//! cargo run -p scalar-admin --features server --example gated_service
//! ```
//!
//! The application here is the standard gRPC health service; the example serves it on a
//! loopback port, then plays the operator against it with a [`Fleet`], and exits.

use std::time::Duration;

use scalar_admin::gate::{Gate, GateLayer};
use scalar_admin::{ClientConfig, Fleet, PauseOptions, Target};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The server: the application behind the gate, and the admin interface beside it.
    let gate = Gate::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .layer(GateLayer::new(gate.clone()))
        .add_service(gate.admin_server())
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    println!("serving on {addr}");

    // A client of the application.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut app = HealthClient::new(channel);
    let request = || HealthCheckRequest {
        service: String::new(),
    };
    app.check(request()).await?;
    println!("open: the application answers");

    // The operator pauses it, as `scalar-admin -c pause -a <addr>` would.
    let mut fleet = Fleet::connect(
        vec![Target::from_socket_addr(addr)],
        ClientConfig::default().call_timeout(Duration::from_secs(5)),
    )
    .await;
    fleet.pause(PauseOptions::default()).await?;
    let refused = app.check(request()).await.expect_err("paused");
    println!(
        "paused: the application answers {:?}: {}",
        refused.code(),
        refused.message()
    );
    assert_eq!(refused.code(), tonic::Code::Unavailable);

    fleet.unpause().await?;
    app.check(request()).await?;
    println!("unpaused: the application answers again");
    Ok(())
}
