//! The server-side gate, through its gRPC interface and directly.

use std::time::Duration;

use scalar_admin::gate::Gate;

use crate::util::bounded;

#[tokio::test]
async fn drain_limit_reopens_the_gate() {
    bounded(async {
        let gate = Gate::new();
        let pass = gate.enter().unwrap();
        let err = gate
            .pause(true, Some(Duration::from_millis(50)))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("1 requests still in flight"),
            "{err}"
        );
        assert!(!gate.is_paused());
        assert!(gate.enter().is_ok(), "reopened");
        drop(pass);
    })
    .await
}

#[tokio::test]
async fn pause_returns_when_the_last_request_leaves() {
    bounded(async {
        let gate = Gate::new();
        let passes = [gate.enter().unwrap(), gate.enter().unwrap()];
        let pausing = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.pause(true, None).await })
        };
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
        assert!(gate.is_paused());
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
        let pausing = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.pause(true, Some(Duration::from_secs(50))).await })
        };
        gate.wait_until_paused(true).await;
        gate.unpause();
        pausing.await.unwrap().unwrap_err();
        assert!(!gate.is_paused());
    })
    .await
}
