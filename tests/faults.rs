//! Faults a pod, a proxy or a real server can show during a pause. Each ends in bounded
//! time, with an error that names the pod; the healthy pods are unpaused again, and a pod
//! that was paused before the run is left paused.

use std::time::Duration;

use scalar_admin::gate::Drain;
use scalar_admin::{
    CallErrorKind, ClientConfig, Code, Error, Fleet, Kept, PauseOptions, Target, Violation,
};
use scalar_admin_rig::{Break, Call, Fault, HostilePod, Pod, break_pause};

use crate::util::{bounded, scalar_admin};

fn quick() -> ClientConfig {
    ClientConfig::default()
        .connect_timeout(Duration::from_secs(2))
        .call_timeout(Duration::from_secs(5))
}

/// Every status but OK, as a server may send it.
const CODES: [tonic::Code; 16] = [
    tonic::Code::Cancelled,
    tonic::Code::Unknown,
    tonic::Code::InvalidArgument,
    tonic::Code::DeadlineExceeded,
    tonic::Code::NotFound,
    tonic::Code::AlreadyExists,
    tonic::Code::PermissionDenied,
    tonic::Code::ResourceExhausted,
    tonic::Code::FailedPrecondition,
    tonic::Code::Aborted,
    tonic::Code::OutOfRange,
    tonic::Code::Unimplemented,
    tonic::Code::Internal,
    tonic::Code::Unavailable,
    tonic::Code::DataLoss,
    tonic::Code::Unauthenticated,
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
            let ours = Code::from_i32(code as i32).unwrap();
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
            let error = failures[0].error().unwrap();
            assert_eq!(error.code(), ours);
            assert_eq!(error.to_string(), format!("{ours}: scripted failure"));
            assert!(rollback.as_ref().unwrap().is_complete(), "{code:?}");
            assert!(
                err.to_string().contains("no pod is left paused"),
                "{code:?}: {err}"
            );
            assert!(healthy.iter().all(|p| !p.gate().is_paused()), "{code:?}");
        }
    })
    .await
}

/// What a hostile pod's fault must come out as.
struct Expect {
    fault: Fault,
    kind: fn(&CallErrorKind) -> bool,
    /// On the pod's line of stderr.
    text: &'static str,
    /// Whether the hostile pod may have paused, so the rollback unpauses it.
    unpaused: bool,
    /// Why the rollback leaves it paused, when it does.
    kept: Option<Kept>,
}

fn expectations() -> Vec<Expect> {
    use CallErrorKind as K;
    vec![
        Expect {
            fault: Fault::MalformedDetails,
            kind: |k| matches!(k, K::Status(s) if s.code() == Code::FailedPrecondition && s.reason().is_none()),
            text: "FAILED_PRECONDITION: drain failed",
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::HtmlOk,
            kind: |k| matches!(k, K::Protocol(Violation::ContentType(Some(ct))) if ct == "text/html"),
            text: r#"content-type "text/html" is not application/grpc"#,
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::Http503,
            kind: |k| matches!(k, K::Http { status: 503 }),
            text: "UNAVAILABLE: HTTP status 503",
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::TwoMessages,
            kind: |k| matches!(k, K::Protocol(Violation::ExtraData)),
            text: "more than one message in a unary reply",
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::EndlessBody,
            kind: |k| matches!(k, K::Protocol(Violation::ExtraData)),
            text: "more than one message in a unary reply",
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::TrailersOnlyOk,
            kind: |k| matches!(k, K::Protocol(Violation::NoMessage)),
            text: "no message in a unary reply",
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::BadStatus,
            kind: |k| matches!(k, K::Protocol(Violation::BadStatus(v)) if v == "OK"),
            text: r#"UNKNOWN: malformed reply: grpc-status "OK" is not a status code"#,
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::Compressed,
            kind: |k| matches!(k, K::Protocol(Violation::Compressed(1))),
            text: "compressed message (flag 1)",
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::RefusedStream,
            kind: |k| matches!(k, K::NotProcessed),
            text: "not processed",
            unpaused: false,
            kept: None,
        },
        Expect {
            fault: Fault::GoAwayAfter,
            kind: |k| matches!(k, K::Transport),
            text: "transport error",
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::HalfReply,
            kind: |k| matches!(k, K::Transport),
            text: "transport error",
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::Oversized,
            kind: |k| matches!(k, K::Protocol(Violation::TooLarge { limit: 1024 })),
            text: "RESOURCE_EXHAUSTED: malformed reply: a message over the 1024-byte limit",
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::NoStatus,
            kind: |k| matches!(k, K::Protocol(Violation::MissingStatus)),
            text: "UNKNOWN: malformed reply: no grpc-status",
            unpaused: true,
            kept: None,
        },
        Expect {
            fault: Fault::Status {
                code: 10,
                reason: "PAUSE_IN_PROGRESS",
            },
            kind: |k| matches!(k, K::Status(s) if s.code() == Code::Aborted),
            text: "another pause is in progress: ABORTED (PAUSE_IN_PROGRESS): scripted",
            unpaused: false,
            kept: Some(Kept::PauseInProgress),
        },
        Expect {
            fault: Fault::Status {
                code: 9,
                reason: "TIMED_OUT_STILL_PAUSED",
            },
            kind: |k| matches!(k, K::Status(s) if s.reason() == Some("TIMED_OUT_STILL_PAUSED")),
            text: "FAILED_PRECONDITION (TIMED_OUT_STILL_PAUSED): scripted",
            unpaused: false,
            kept: Some(Kept::EarlierPause),
        },
    ]
}

/// Two healthy pods and the hostile one. (A pod paused by someone else before the run
/// makes Pause refuse before anything is sent: `a_pod_paused_by_someone_else_...`.)
struct Scene {
    healthy: Vec<Pod>,
    hostile: HostilePod,
}

impl Scene {
    async fn new(fault: Fault) -> Scene {
        Scene {
            healthy: Pod::start_many(2).await,
            hostile: HostilePod::start(fault).await,
        }
    }

    fn targets(&self) -> Vec<Target> {
        let mut targets: Vec<Target> = self.healthy.iter().map(Pod::target).collect();
        targets.push(self.hostile.target());
        targets
    }

    fn list(&self) -> String {
        let names: Vec<String> = self.targets().iter().map(|t| t.name().to_owned()).collect();
        names.join(",")
    }

    /// The state the run must leave: healthy pods open, the hostile pod unpaused again
    /// (or never paused).
    fn assert_state_restored(&mut self, expect: &Expect) {
        let fault = &expect.fault;
        for pod in &self.healthy {
            assert!(
                !pod.gate().is_paused(),
                "{fault:?}: {} left paused",
                pod.addr()
            );
        }
        assert!(
            !self.hostile.is_paused(),
            "{fault:?}: hostile pod left paused"
        );
        let unpaused = self.hostile.take_calls().contains(&Call::Unpause);
        assert_eq!(
            unpaused, expect.unpaused,
            "{fault:?}: Unpause to the hostile pod"
        );
    }
}

#[tokio::test]
async fn hostile_replies_through_the_library() {
    bounded(async {
        for expect in expectations() {
            let mut scene = Scene::new(expect.fault.clone()).await;
            let mut fleet = Fleet::connect(scene.targets(), quick()).await;
            let err = fleet.pause(PauseOptions::default()).await.unwrap_err();
            let fault = &expect.fault;
            let Error::Pause { pause, rollback } = &err else {
                panic!("{fault:?}: {err}")
            };
            let failures: Vec<_> = pause.failures().collect();
            assert_eq!(failures.len(), 1, "{fault:?}: {err}");
            assert_eq!(failures[0].target(), &scene.hostile.target());
            let error = failures[0].error().unwrap();
            assert!((expect.kind)(error.kind()), "{fault:?}: {error:?}");
            assert!(
                failures[0].to_string().contains(expect.text),
                "{fault:?}: {}",
                failures[0]
            );
            assert!(!failures[0].to_string().contains('\n'), "one line");

            let rollback = rollback.as_ref().unwrap();
            assert!(rollback.is_complete(), "{fault:?}");
            assert!(err.maybe_paused().is_empty(), "{fault:?}");
            let mut kept: Vec<(Target, Kept)> = rollback
                .kept()
                .iter()
                .map(|k| (k.target().clone(), k.why()))
                .collect();
            kept.sort_by(|a, b| a.0.cmp(&b.0));
            let mut expected = Vec::new();
            if let Some(why) = expect.kept {
                expected.push((scene.hostile.target(), why));
            }
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(kept, expected, "{fault:?}");
            if expect.fault == Fault::EndlessBody {
                assert!(
                    scene.hostile.client_resets() >= 1,
                    "the endless reply was not cut off"
                );
            }
            scene.assert_state_restored(&expect);
        }
    })
    .await
}

#[tokio::test]
async fn hostile_replies_through_the_binary() {
    bounded(async {
        for expect in expectations() {
            let mut scene = Scene::new(expect.fault.clone()).await;
            for output in ["text", "json"] {
                let run = scalar_admin(&[
                    "-c",
                    "pause",
                    "-a",
                    &scene.list(),
                    "--timeout",
                    "5s",
                    "--output",
                    output,
                ])
                .await;
                let fault = &expect.fault;
                run.assert_status(1);
                assert!(
                    !run.stderr.contains("panicked"),
                    "{fault:?}: {}",
                    run.stderr
                );
                let hostile = scene.hostile.target();
                let line = run
                    .stderr
                    .lines()
                    .find(|l| l.starts_with(&format!("{hostile}: ")))
                    .unwrap_or_else(|| panic!("{fault:?}: no line for the pod in {}", run.stderr));
                assert!(line.contains(expect.text), "{fault:?}: {line}");
                match expect.kept {
                    Some(Kept::PauseInProgress) => assert!(
                        run.stderr
                            .contains(&format!("another pause is in progress on {hostile}")),
                        "{}",
                        run.stderr
                    ),
                    Some(Kept::EarlierPause) => assert!(
                        run.stderr.contains(&format!(
                            "left paused: {hostile} (the server keeps an earlier pause)"
                        )),
                        "{}",
                        run.stderr
                    ),
                    _ => {}
                }
                assert!(
                    !run.stderr.contains("may still be paused"),
                    "{}",
                    run.stderr
                );
                if output == "json" {
                    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
                    assert_eq!(doc["ok"], false);
                    assert_eq!(doc["maybe_paused"], serde_json::json!([]));
                    let left = doc["rollback"]["left_paused"].as_array().unwrap();
                    assert_eq!(left.len(), usize::from(expect.kept.is_some()), "{doc}");
                    let pod = doc["reports"][0]["pods"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|p| p["pod"] == hostile.name())
                        .unwrap();
                    assert_eq!(pod["ok"], false);
                    if let Fault::Status { reason, .. } = expect.fault {
                        assert_eq!(pod["reason"], reason, "{pod}");
                    }
                }
                scene.assert_state_restored(&expect);
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_stream_refused_once_is_sent_again_on_a_fresh_connection() {
    bounded(async {
        let mut hostile = HostilePod::start(Fault::RefusedOnce).await;
        let healthy = Pod::start().await;
        let mut fleet = Fleet::connect(vec![healthy.target(), hostile.target()], quick()).await;
        let report = fleet.pause(PauseOptions::default()).await.unwrap();
        assert!(report.is_success());
        assert!(hostile.is_paused() && healthy.gate().is_paused());
        let pauses = hostile
            .take_calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Pause { .. }))
            .count();
        assert_eq!(pauses, 2, "refused, then sent again");
    })
    .await
}

#[tokio::test]
async fn a_pause_above_the_goaway_is_sent_again_on_a_fresh_connection() {
    bounded(async {
        let mut pod = Pod::start().await;
        let (proxy, _task) = break_pause(pod.addr(), Break::GoAwayBeforePause, false).await;
        let mut fleet = Fleet::connect(vec![Target::from_socket_addr(proxy)], quick()).await;
        fleet.pause(PauseOptions::default()).await.unwrap();
        assert!(pod.gate().is_paused());
        let pauses = pod
            .take_calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Pause { .. }))
            .count();
        assert_eq!(pauses, 1, "the refused one never reached the pod");
    })
    .await
}

#[tokio::test]
async fn a_pause_never_processed_is_not_rolled_back() {
    bounded(async {
        let mut pod = Pod::start().await;
        let mut healthy = Pod::start_many(2).await;
        let (proxy, _task) = break_pause(pod.addr(), Break::GoAwayBeforePause, true).await;
        let broken = Target::from_socket_addr(proxy);
        let mut targets: Vec<Target> = healthy.iter().map(Pod::target).collect();
        targets.push(broken.clone());
        let mut fleet = Fleet::connect(targets, quick()).await;
        let err = fleet.pause(PauseOptions::default()).await.unwrap_err();
        let Error::Pause { pause, rollback } = &err else {
            panic!("{err}")
        };
        let failure = pause.failures().next().unwrap();
        assert_eq!(failure.target(), &broken);
        assert_eq!(
            *failure.error().unwrap().kind(),
            CallErrorKind::NotProcessed
        );
        let rollback = rollback.as_ref().unwrap();
        assert!(
            !rollback.unpaused().any(|t| t == &broken),
            "not ours to unpause"
        );
        assert_eq!(rollback.unpaused().count(), 2);
        assert!(!pod.take_calls().iter().any(|c| *c != Call::CheckPaused));
        for pod in &mut healthy {
            assert!(!pod.gate().is_paused());
        }
    })
    .await
}

#[tokio::test]
async fn a_connection_reset_after_the_pod_paused_is_rolled_back() {
    bounded(async {
        let mut pods = Pod::start_many(3).await;
        // The third pod's connection is reset when its reply to Pause starts: the pod
        // has paused, and the client cannot know.
        let (proxy, _task) = break_pause(pods[2].addr(), Break::ResetAfterPause, false).await;
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
        assert_eq!(
            *failures[0].error().unwrap().kind(),
            CallErrorKind::Transport
        );
        assert!(
            rollback.as_ref().unwrap().is_complete(),
            "reached again: {err}"
        );
        // The pod did pause, and was unpaused by the rollback on a new connection.
        let calls = pods[2].take_calls();
        let paused_at = calls.iter().position(|c| matches!(c, Call::Pause { .. }));
        let unpaused_at = calls.iter().position(|c| *c == Call::Unpause);
        assert!(paused_at < unpaused_at && paused_at.is_some(), "{calls:?}");
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn a_connection_reset_before_the_pause_arrives_is_rolled_back() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let (proxy, _task) = break_pause(pods[1].addr(), Break::ResetBeforePause, false).await;
        let broken = Target::from_socket_addr(proxy);
        let mut fleet = Fleet::connect(vec![pods[0].target(), broken.clone()], quick()).await;
        let err = fleet.pause(PauseOptions::default()).await.unwrap_err();
        let failure = err.reports()[0].failures().next().unwrap().clone();
        assert_eq!(failure.target(), &broken);
        // The client cannot tell a reset before the pod from one after it.
        assert_eq!(*failure.error().unwrap().kind(), CallErrorKind::Transport);
        assert!(err.rollback().unwrap().is_complete());
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn a_pod_paused_by_someone_else_is_refused_and_taken_over_only_when_asked() {
    bounded(async {
        let mut healthy = Pod::start_many(2).await;
        // Paused by someone else, with a request in flight.
        let mut earlier = Pod::start().await;
        let _work = earlier.begin_work();
        earlier.gate().pause(Drain::Skip).await.unwrap();
        let mut targets: Vec<Target> = healthy.iter().map(Pod::target).collect();
        targets.push(earlier.target());
        let mut fleet = Fleet::connect(targets, quick()).await;
        let options = PauseOptions::default().max_pause_wait(Duration::from_millis(100));

        // Refused: nothing is sent to any pod.
        let err = fleet.pause(options).await.unwrap_err();
        let Error::AlreadyPaused { pods } = &err else {
            panic!("{err}")
        };
        assert_eq!(pods, &[earlier.target()]);
        assert!(err.to_string().contains("no Pause was sent"), "{err}");
        for pod in healthy.iter_mut().chain([&mut earlier]) {
            let calls = pod.take_calls();
            assert!(calls.iter().all(|c| *c == Call::CheckPaused), "{calls:?}");
        }

        // Taken over: this run's waiting Pause times out, and the gate stays closed for
        // the earlier pause, which the rollback leaves as found.
        let err = fleet.pause(options.take_over(true)).await.unwrap_err();
        let failure = err.reports()[0].failures().next().unwrap().clone();
        assert_eq!(
            failure.error().unwrap().reason(),
            Some("TIMED_OUT_STILL_PAUSED")
        );
        let kept = err.rollback().unwrap().kept().to_vec();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].target(), &earlier.target());
        assert_eq!(kept[0].why(), Kept::EarlierPause);
        assert!(earlier.gate().is_paused());
        assert!(!earlier.take_calls().contains(&Call::Unpause));
        assert!(healthy.iter().all(|p| !p.gate().is_paused()));
        let _ = fleet.into_paused();
    })
    .await
}

#[tokio::test]
async fn a_cancel_before_any_pause_was_sent_changes_nothing() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let mut fleet = Fleet::connect(pods.iter().map(Pod::target).collect(), quick()).await;
        let err = fleet
            .pause_with_cancel(PauseOptions::default(), std::future::ready(()))
            .await
            .unwrap_err();
        let Error::Interrupted { rollback } = &err else {
            panic!("{err}")
        };
        assert!(rollback.report().is_none(), "nothing to unpause");
        assert!(
            err.to_string()
                .contains("no pod is held paused by this run"),
            "{err}"
        );
        for pod in &mut pods {
            assert_eq!(pod.take_calls(), [Call::CheckPaused], "only the probe");
        }
    })
    .await
}

/// PUSH_PROMISE frames the flooding pod sends during one probe: each holds a 15 KB
/// header, so a client that accepted them would hold about 60 MB per connection.
const PUSHES: usize = 4_000;

/// Asserts that the flooding pod's probe failed with a connection error naming it, and
/// returns the error text.
fn flood_refused(fleet: &Fleet, flood: &scalar_admin_rig::PushFlood) -> String {
    let unreachable: Vec<_> = fleet.unreachable().collect();
    assert_eq!(unreachable.len(), 1, "the flood was accepted");
    let (target, error) = unreachable[0];
    assert_eq!(target, &flood.target());
    assert!(
        matches!(error.kind(), CallErrorKind::Connect(_)),
        "{}",
        error.chain()
    );
    error.chain()
}

#[tokio::test]
async fn a_push_promise_flood_during_the_probe_fails_the_pod_and_pauses_nothing() {
    bounded(async {
        let flood = scalar_admin_rig::PushFlood::start(PUSHES).await;
        let healthy = Pod::start().await;
        let mut fleet = Fleet::connect(vec![healthy.target(), flood.target()], quick()).await;
        let message = flood_refused(&fleet, &flood);
        println!("{message}");
        assert!(message.contains("cannot connect"), "{message}");
        assert!(
            flood.promised() < PUSHES,
            "the client read the whole flood: {message}"
        );

        // Pause refuses to start while a pod is unreachable; the pod is tried again,
        // and refused again.
        let err = fleet.pause(PauseOptions::default()).await.unwrap_err();
        let failure = err.reports()[0]
            .failures()
            .find(|f| f.target() == &flood.target())
            .unwrap_or_else(|| panic!("no failure for the flooding pod: {err}"));
        assert!(failure.to_string().contains("cannot connect"), "{failure}");
        assert!(err.rollback().is_none_or(|r| r.unpaused().count() == 0));
        assert_eq!(flood.calls_after_probe(), 0, "a call beyond the probe");
        assert!(!healthy.gate().is_paused());
    })
    .await
}

#[tokio::test]
async fn a_push_promise_flood_through_the_binary_exits_1_naming_the_pod() {
    bounded(async {
        let flood = scalar_admin_rig::PushFlood::start(PUSHES).await;
        let healthy = Pod::start().await;
        let list = format!("{},{}", healthy.target(), flood.target());
        let run = scalar_admin(&["-c", "pause", "-a", &list, "--timeout", "5s"]).await;
        run.assert_status(1);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        let pod = flood.target();
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with(&format!("{pod}: cannot connect"))),
            "{}",
            run.stderr
        );
        assert_eq!(flood.calls_after_probe(), 0, "a call beyond the probe");
        assert!(!healthy.gate().is_paused());
    })
    .await
}

/// The peak resident memory of this process, in kB.
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Run alone, in a process of its own (see the test below), so that the peak memory
/// it measures is its own and no other test's.
#[tokio::test]
#[ignore = "measures this process's memory: run by push_promise_flood_leaves_memory_bounded"]
async fn push_promise_flood_alone() {
    bounded(async {
        let flood = scalar_admin_rig::PushFlood::start(PUSHES).await;
        let before = peak_rss_kb();
        let fleet = Fleet::connect(vec![flood.target()], quick()).await;
        let after = peak_rss_kb();
        println!(
            "push flood: peak RSS {before} kB before, {after} kB after ({} promises written)",
            flood.promised()
        );
        assert!(
            after < before + 16 * 1024,
            "a flood of pushes grew the client's peak memory from {before} kB to {after} kB"
        );
        flood_refused(&fleet, &flood);
    })
    .await
}

#[tokio::test]
async fn push_promise_flood_leaves_memory_bounded() {
    bounded(async {
        let me = std::env::current_exe().unwrap();
        let run = crate::util::run_program(
            me.to_str().unwrap(),
            &[
                "--ignored",
                "--exact",
                "faults::push_promise_flood_alone",
                "--nocapture",
                "--test-threads=1",
            ],
        )
        .await
        .success();
        assert!(run.stdout.contains("1 passed"), "{}", run.stdout);
        assert!(
            run.stdout.contains("push flood: peak RSS"),
            "{}",
            run.stdout
        );
    })
    .await
}
