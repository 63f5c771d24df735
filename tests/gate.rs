//! The server-side gate: directly, through its gRPC interface, and through its layer in
//! front of a real tonic service.

use std::time::Duration;

use scalar_admin::gate::{Drain, DrainError, Gate, GateLayer};
use scalar_admin::{ClientConfig, Code, Fleet, PauseOptions};
use scalar_admin_rig::Pod;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::util::bounded;

/// A Pause on the gate in a task of its own, so the test can act during the drain.
fn spawn_pause(gate: &Gate, drain: Drain) -> tokio::task::JoinHandle<Result<(), DrainError>> {
    let gate = gate.clone();
    tokio::spawn(async move { gate.pause(drain).await })
}

#[tokio::test]
async fn drain_limit_reopens_the_gate() {
    bounded(async {
        let gate = Gate::new();
        let pass = gate.enter().unwrap();
        let err = gate
            .pause(Drain::UpTo(Duration::from_millis(50)))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("1 outstanding requests were not drained"),
            "{err}"
        );
        assert_eq!(err.reason(), "TIMED_OUT");
        assert!(!gate.is_paused());
        assert!(gate.enter().is_ok(), "reopened");
        drop(pass);
    })
    .await
}

#[tokio::test]
async fn a_gate_an_earlier_pause_closed_stays_closed_past_the_limit() {
    bounded(async {
        let gate = Gate::new();
        let _pass = gate.enter().unwrap();
        gate.pause(Drain::Skip).await.unwrap();
        let err = gate
            .pause(Drain::UpTo(Duration::from_millis(50)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                DrainError::TimedOut {
                    still_paused: true,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.reason(), "TIMED_OUT_STILL_PAUSED");
        assert!(
            err.to_string()
                .contains("the gate stays closed by an earlier pause")
        );
        assert!(gate.is_paused());
    })
    .await
}

#[tokio::test]
async fn pause_returns_when_the_last_request_leaves() {
    bounded(async {
        let gate = Gate::new();
        let passes = [gate.enter().unwrap(), gate.enter().unwrap()];
        let pausing = spawn_pause(&gate, Drain::default());
        gate.wait_until_paused(true).await;
        assert_eq!(gate.in_flight(), 2);
        // On this one-thread runtime a yield lets the pausing task run until it waits:
        // with requests in flight it must still be waiting, after one leaves too.
        tokio::task::yield_now().await;
        assert!(!pausing.is_finished(), "returned with 2 requests in flight");
        let [a, b] = passes;
        drop(a);
        tokio::task::yield_now().await;
        assert!(!pausing.is_finished(), "returned with 1 request in flight");
        drop(b);
        pausing.await.unwrap().unwrap();
        assert!(gate.is_paused(), "a completed drain stays paused");
        assert_eq!(gate.in_flight(), 0);
        let refused: tonic::Status = gate.enter().unwrap_err().into();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
    })
    .await
}

#[tokio::test]
async fn unpause_during_a_drain_ends_the_wait() {
    bounded(async {
        let gate = Gate::new();
        let _pass = gate.enter().unwrap();
        let pausing = spawn_pause(&gate, Drain::UpTo(Duration::from_secs(50)));
        gate.wait_until_paused(true).await;
        gate.unpause();
        let err = pausing.await.unwrap().unwrap_err();
        assert_eq!(err.reason(), "GATE_OPEN");
        assert!(!gate.is_paused());
    })
    .await
}

#[tokio::test]
async fn a_pause_cancelled_during_its_drain_reopens_the_gate() {
    bounded(async {
        let gate = Gate::new();
        let _pass = gate.enter().unwrap();
        let pausing = spawn_pause(&gate, Drain::UpTo(Duration::from_secs(50)));
        gate.wait_until_paused(true).await;
        pausing.abort();
        gate.wait_until_paused(false).await;
        assert!(gate.enter().is_ok());

        // A cancelled Pause that did not close the gate leaves it as it was.
        gate.pause(Drain::Skip).await.unwrap();
        let pausing = spawn_pause(&gate, Drain::UpTo(Duration::from_secs(50)));
        // On this one-thread runtime the yield runs the task until it waits in its drain.
        tokio::task::yield_now().await;
        assert!(!pausing.is_finished(), "still draining");
        pausing.abort();
        let _ = pausing.await;
        assert!(gate.is_paused(), "an earlier pause was ended");
    })
    .await
}

#[tokio::test]
async fn a_client_that_gives_up_on_a_draining_pause_leaves_the_gate_open() {
    bounded(async {
        let pod = Pod::start().await;
        let _work = pod.begin_work();
        // The client's deadline passes during the drain and it resets the stream; with
        // rollback off, only the server's own cancellation can reopen the gate.
        let config = ClientConfig::default().call_timeout(Duration::from_millis(200));
        let mut fleet = Fleet::connect(vec![pod.target()], config).await;
        let options = PauseOptions::default()
            .max_pause_wait(Duration::from_secs(50))
            .rollback(false);
        let err = fleet.pause(options).await.unwrap_err();
        assert!(err.reports()[0].pods()[0].error().unwrap().is_timeout());
        pod.gate().wait_until_paused(false).await;
    })
    .await
}

#[tokio::test]
async fn the_admin_service_sends_the_reason_with_a_failed_drain() {
    bounded(async {
        let pod = Pod::start().await;
        let _work = pod.begin_work();
        let mut fleet = Fleet::connect(vec![pod.target()], ClientConfig::default()).await;
        let err = fleet
            .pause(PauseOptions::default().max_pause_wait(Duration::from_millis(50)))
            .await
            .unwrap_err();
        let error = err.reports()[0].pods()[0].error().unwrap().clone();
        assert_eq!(error.code(), Code::FailedPrecondition);
        assert_eq!(error.reason(), Some("TIMED_OUT"));
        assert_eq!(error.status().unwrap().domain(), Some("scalar-admin.gate"));
    })
    .await
}

/// A tonic server with the health service as the application, behind the gate's layer.
async fn gated_server(gate: &Gate) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let router = tonic::transport::Server::builder()
        .layer(GateLayer::new(gate.clone()))
        .add_service(gate.admin_server())
        .add_service(health);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _reporter = reporter;
        router.serve_with_incoming(incoming).await
    });
    addr
}

#[tokio::test]
async fn the_layer_refuses_requests_while_paused_and_counts_those_in_flight() {
    bounded(async {
        let gate = Gate::new();
        let addr = gated_server(&gate).await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel);
        let check = || HealthCheckRequest {
            service: String::new(),
        };
        let status = health.check(check()).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32);

        // A Watch stream is a request in flight until its body ends.
        let watch = health.watch(check()).await.unwrap();
        assert_eq!(gate.in_flight(), 1);
        let mut fleet = Fleet::connect(
            vec![scalar_admin::Target::from_socket_addr(addr)],
            ClientConfig::default(),
        )
        .await;
        let err = fleet
            .pause(PauseOptions::default().max_pause_wait(Duration::from_millis(100)))
            .await
            .unwrap_err();
        assert_eq!(
            err.reports()[0].pods()[0].error().unwrap().reason(),
            Some("TIMED_OUT")
        );
        drop(watch);

        // Once the stream is gone the waiting Pause completes, and requests are refused.
        fleet.pause(PauseOptions::default()).await.unwrap();
        assert_eq!(gate.in_flight(), 0);
        let refused = health.check(check()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert_eq!(refused.message(), "the service is paused");
        fleet.unpause().await.unwrap();
        health.check(check()).await.unwrap();
    })
    .await
}
