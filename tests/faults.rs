//! Faults a pod can show during a pause: each ends in bounded time, with an error that
//! names the pod, and nothing left paused.

use std::time::Duration;

use scalar_admin::{CallErrorKind, ClientConfig, Error, Fleet, PauseOptions, Target, code_name};
use scalar_admin_rig::{Pod, reset_proxy};
use tonic::Code;

use crate::util::bounded;

fn quick() -> ClientConfig {
    ClientConfig::default()
        .connect_timeout(Duration::from_secs(2))
        .call_timeout(Duration::from_secs(5))
}

/// Every status but OK, as a server may send it.
const CODES: [Code; 16] = [
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

#[tokio::test]
async fn every_status_a_pod_sends_is_reported_and_rolled_back() {
    bounded(async {
        let healthy = [Pod::start().await, Pod::start().await];
        for code in CODES {
            let failing = Pod::builder()
                .fail_pause(code, "scripted failure")
                .start()
                .await;
            let mut targets: Vec<Target> = healthy.iter().map(Pod::target).collect();
            targets.push(failing.target());
            let mut fleet = Fleet::connect(targets, quick()).await;
            let err = fleet.pause(PauseOptions::default()).await.unwrap_err();
            let Error::Pause { pause, rollback } = &err else {
                panic!("{code:?}: {err}")
            };
            let failures: Vec<_> = pause.failures().collect();
            assert_eq!(failures.len(), 1, "{code:?}");
            assert_eq!(failures[0].target(), &failing.target());
            let error = failures[0].outcome().as_ref().unwrap_err();
            assert_eq!(error.code(), Some(code));
            assert_eq!(
                error.to_string(),
                format!("{}: scripted failure", code_name(code))
            );
            assert!(rollback.as_ref().unwrap().is_success(), "{code:?}");
            assert!(
                err.to_string().contains("no pod is left paused"),
                "{code:?}: {err}"
            );
            assert!(healthy.iter().all(|p| !p.gate().is_paused()), "{code:?}");
        }
    })
    .await
}

#[tokio::test]
async fn a_connection_reset_in_the_middle_of_pause_is_reported_and_rolled_back() {
    bounded(async {
        let pods = [Pod::start().await, Pod::start().await, Pod::start().await];
        // The third pod's connection is reset when its second request (the Pause, after
        // the connection probe) starts.
        let (proxy, _task) = reset_proxy(pods[2].addr(), 2).await;
        let broken = Target::from_socket_addr(proxy);
        let targets = vec![pods[0].target(), pods[1].target(), broken.clone()];
        let mut fleet = Fleet::connect(targets, quick()).await;
        let err = fleet.pause(PauseOptions::default()).await.unwrap_err();
        let Error::Pause { pause, rollback } = &err else {
            panic!("{err}")
        };
        let failures: Vec<_> = pause.failures().collect();
        assert_eq!(failures.len(), 1, "{err}");
        assert_eq!(failures[0].target(), &broken);
        let error = failures[0].outcome().as_ref().unwrap_err();
        assert!(
            matches!(error.kind(), CallErrorKind::Transport(_)),
            "{error}"
        );
        assert!(
            rollback.as_ref().unwrap().is_success(),
            "the pod is reached again: {err}"
        );
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}
