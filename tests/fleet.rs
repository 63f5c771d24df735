//! Pause, check and unpause against real pods: timestamps, draining, rollback, faults.

use std::time::Duration;

use scalar_admin::contract::reason;
use scalar_admin::{ClientConfig, Code, Error, Fleet, Operation, PauseOptions, Report, Target};
use scalar_admin_rig::{Call, Pod, blackhole, refused_addr};

use crate::util::bounded;

fn targets(pods: &[Pod]) -> Vec<Target> {
    pods.iter().map(Pod::target).collect()
}

fn quick() -> ClientConfig {
    ClientConfig::default()
        .connect_timeout(Duration::from_secs(2))
        .call_timeout(Duration::from_secs(5))
}

fn assert_ordered(report: &Report) {
    for pod in report.pods() {
        assert!(
            report.started_at() <= pod.sent_at(),
            "{}: sent before start",
            pod.target()
        );
        assert!(
            pod.sent_at() <= pod.received_at(),
            "{}: received before sent",
            pod.target()
        );
        assert!(
            pod.received_at() <= report.completed_at(),
            "{}: reply after completion",
            pod.target()
        );
        assert_eq!(
            pod.latency(),
            pod.received_at().duration_since(pod.sent_at()).unwrap()
        );
    }
}

#[tokio::test]
async fn pause_check_unpause_by_addresses() {
    bounded(async {
        let mut pods = Pod::start_many(3).await;
        let list = pods
            .iter()
            .map(|p| p.addr().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut fleet =
            Fleet::connect(scalar_admin::parse_addresses(&list).unwrap(), quick()).await;

        let pause = fleet.pause(PauseOptions::default()).await.unwrap();
        assert_eq!(pause.operation(), Operation::Pause);
        assert_eq!(pause.pods().len(), 3);
        assert_ordered(&pause);
        assert!(pause.reply_spread().unwrap() <= pause.wall_time());
        for pod in &mut pods {
            assert!(pod.gate().is_paused());
            // The CheckPaused is the connection probe.
            assert_eq!(
                pod.take_calls(),
                [
                    Call::CheckPaused,
                    Call::Pause {
                        wait_outstanding: true,
                        max_pause_wait_time: None
                    }
                ]
            );
        }

        let check = fleet.check_paused().await.unwrap();
        assert_ordered(&check);
        assert!(check.pods().iter().all(|p| p.paused() == Some(true)));

        let unpause = fleet.unpause().await.unwrap();
        assert_ordered(&unpause);
        assert!(unpause.started_at() >= pause.completed_at());
        assert!(pods.iter().all(|p| !p.gate().is_paused()));

        let check = fleet.check_paused().await.unwrap();
        assert!(check.pods().iter().all(|p| p.paused() == Some(false)));
    })
    .await
}

#[tokio::test]
async fn no_wait_and_max_pause_wait_reach_the_wire() {
    bounded(async {
        let mut pods = Pod::start_many(1).await;
        let mut fleet = Fleet::connect(targets(&pods), quick()).await;
        fleet
            .pause(PauseOptions::default().wait_outstanding(false))
            .await
            .unwrap();
        fleet
            .pause(PauseOptions::default().max_pause_wait(Duration::from_millis(1500)))
            .await
            .unwrap();
        assert_eq!(
            pods[0].take_calls(),
            [
                Call::CheckPaused,
                Call::Pause {
                    wait_outstanding: false,
                    max_pause_wait_time: None
                },
                Call::Pause {
                    wait_outstanding: true,
                    max_pause_wait_time: Some(1500)
                },
            ]
        );
    })
    .await
}

#[tokio::test]
async fn ipv6_pod() {
    bounded(async {
        let pod = Pod::builder()
            .addr("[::1]:0".parse().unwrap())
            .start()
            .await;
        let list = format!("[::1]:{}", pod.addr().port());
        let targets = scalar_admin::parse_addresses(&list).unwrap();
        assert_eq!(targets[0].name(), list);
        let mut fleet = Fleet::connect(targets, quick()).await;
        fleet.pause(PauseOptions::default()).await.unwrap();
        assert!(pod.gate().is_paused());
        fleet.unpause().await.unwrap();
        assert!(!pod.gate().is_paused());
    })
    .await
}

#[tokio::test]
async fn pause_waits_for_in_flight_work() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let work = pods[0].begin_work();
        let mut fleet = Fleet::connect(targets(&pods), quick()).await;
        let pause = tokio::spawn(async move { fleet.pause(PauseOptions::default()).await });

        // The pod has the call and its gate is closed, but the work is still running.
        pods[0].next_call().await;
        pods[0].gate().wait_until_paused(true).await;
        assert!(
            pods[0].gate().enter().is_err(),
            "new requests are refused while draining"
        );
        assert!(!pause.is_finished());

        let released = std::time::SystemTime::now();
        drop(work);
        let report = pause.await.unwrap().unwrap();
        assert!(
            report.completed_at() >= released,
            "pause completed before the work ended"
        );
        assert!(pods.iter().all(|p| p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn pod_that_cannot_drain_fails_and_the_rest_roll_back() {
    bounded(async {
        let mut pods = Pod::start_many(3).await;
        let _work = pods[1].begin_work();
        let mut fleet = Fleet::connect(targets(&pods), quick()).await;
        let err = fleet
            .pause(PauseOptions::default().max_pause_wait(Duration::from_millis(200)))
            .await
            .unwrap_err();

        let Error::Pause { pause, rollback } = &err else {
            panic!("{err:?}")
        };
        let failures: Vec<_> = pause.failures().collect();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].target(), &pods[1].target());
        let error = failures[0].error().unwrap();
        assert_eq!(error.code(), Code::FailedPrecondition);
        assert_eq!(error.reason(), Some(reason::TIMED_OUT), "{error}");
        let rollback = rollback.as_ref().expect("rolled back");
        let unpause = rollback.report().unwrap();
        assert_eq!(unpause.operation(), Operation::Unpause);
        assert!(unpause.is_success());
        // The pod that timed out reopened its own gate: nothing to undo there.
        let unpaused: Vec<&Target> = rollback.unpaused().collect();
        assert_eq!(unpaused, [&pods[0].target(), &pods[2].target()]);
        assert!(rollback.kept().is_empty());
        assert!(err.maybe_paused().is_empty());
        let message = err.to_string();
        assert!(message.contains("pause failed on 1 of 3 pods"), "{message}");
        assert!(
            message.contains("no pod is left paused by this run"),
            "{message}"
        );

        for (i, pod) in pods.iter_mut().enumerate() {
            assert!(!pod.gate().is_paused(), "{} left paused", pod.addr());
            let calls = pod.take_calls();
            let pause = calls
                .iter()
                .rposition(|c| matches!(c, Call::Pause { .. }))
                .unwrap();
            let after: Vec<&Call> = calls[pause + 1..].iter().collect();
            if i == 1 {
                assert!(after.is_empty(), "the pod that failed: {after:?}");
            } else {
                // Unpaused, then confirmed.
                assert_eq!(after, [&Call::Unpause, &Call::CheckPaused]);
            }
        }
    })
    .await
}

#[tokio::test]
async fn without_rollback_the_paused_pods_stay_paused_and_are_named() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let _work = pods[1].begin_work();
        let mut fleet = Fleet::connect(targets(&pods), quick()).await;
        let err = fleet
            .pause(
                PauseOptions::default()
                    .max_pause_wait(Duration::from_millis(100))
                    .rollback(false),
            )
            .await
            .unwrap_err();
        assert!(pods[0].gate().is_paused());
        assert!(!pods[1].gate().is_paused(), "the pod reopens its own gate");
        assert!(err.maybe_paused().contains(&&pods[0].target()));
        assert!(err.to_string().contains("rollback disabled"), "{err}");
        fleet.unpause().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn a_pod_that_is_down_stops_pause_before_any_pod_is_paused() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let mut all = targets(&pods);
        let down = Target::from_socket_addr(refused_addr().await);
        all.push(down.clone());
        let mut fleet = Fleet::connect(all, quick()).await;
        let err = fleet.pause(PauseOptions::default()).await.unwrap_err();

        let Error::Pause { pause, rollback } = &err else {
            panic!("{err:?}")
        };
        assert!(rollback.is_none());
        let failed: Vec<_> = pause.failures().collect();
        assert_eq!(failed.len(), 3, "the unreachable pod, and two not sent");
        let down_report = pause.pods().iter().find(|p| p.target() == &down).unwrap();
        assert!(down_report.outcome().as_ref().unwrap_err().is_connect());
        assert!(
            err.to_string().contains("no Pause request was sent"),
            "{err}"
        );
        assert!(err.maybe_paused().is_empty());
        for pod in &mut pods {
            let calls = pod.take_calls();
            assert!(
                !calls.iter().any(|c| matches!(c, Call::Pause { .. })),
                "{} got {calls:?}",
                pod.addr()
            );
        }

        // Unpause still reaches every pod that is up, and names the one that is down.
        let err = fleet.unpause().await.unwrap_err();
        let Error::Unpause { unpause } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            unpause.failures().map(|p| p.target()).collect::<Vec<_>>(),
            [&down]
        );
    })
    .await
}

#[tokio::test]
async fn a_pod_that_never_answers_is_cut_off_at_the_deadline_and_rolled_back() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        // Pause on pod 0 waits for work that never ends, with a drain limit far beyond
        // the client's deadline: the call is accepted and never answered in time.
        let _work = pods[0].begin_work();
        let config = quick().call_timeout(Duration::from_millis(300));
        let mut fleet = Fleet::connect(targets(&pods), config).await;
        let err = fleet
            .pause(PauseOptions::default().max_pause_wait(Duration::from_secs(50)))
            .await
            .unwrap_err();
        let Error::Pause { pause, rollback } = &err else {
            panic!("{err:?}")
        };
        let failure = pause.failures().next().unwrap();
        assert_eq!(failure.target(), &pods[0].target());
        assert!(failure.outcome().as_ref().unwrap_err().is_timeout());
        assert!(rollback.as_ref().unwrap().is_complete());
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn a_pod_that_never_speaks_http2_is_found_before_any_pause() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let (silent, _hold) = blackhole().await;
        let mut all = targets(&pods);
        all.push(Target::from_socket_addr(silent));
        // A long call deadline: were Pause sent, the healthy pods would stay paused
        // until it passed. The connection probe finds the silent pod first.
        let config = ClientConfig::default()
            .connect_timeout(Duration::from_millis(300))
            .call_timeout(Duration::from_secs(50));
        let mut fleet = Fleet::connect(all, config).await;
        let err = fleet.pause(PauseOptions::default()).await.unwrap_err();
        let Error::Pause { pause, rollback } = &err else {
            panic!("{err:?}")
        };
        assert!(rollback.is_none());
        let failure = pause
            .pods()
            .iter()
            .find(|p| p.target().socket_addr() == Some(silent))
            .unwrap();
        let error = failure.outcome().as_ref().unwrap_err();
        assert!(error.is_connect(), "{error}");
        assert!(
            error.to_string().contains("timed out after 300ms"),
            "{error}"
        );
        assert!(
            err.to_string().contains("no Pause request was sent"),
            "{err}"
        );
        for pod in &mut pods {
            assert_eq!(pod.take_calls(), [Call::CheckPaused], "only the probe");
        }
    })
    .await
}
