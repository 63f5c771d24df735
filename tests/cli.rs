//! The `scalar-admin` binary, run as a user runs it, against real pods and DNS.

use std::net::SocketAddr;

use scalar_admin::gate::Drain;
use scalar_admin_rig::{Ca, Call, DnsServer, Pod, blackhole};
use serde_json::Value;

use crate::util::{bounded, scalar_admin, scalar_admin_env, start_scalar_admin};

fn address_list(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| p.addr().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `<what> at <ISO instant> UTC (<epoch ms>)` out of stdout and checks that both
/// forms name the same millisecond.
fn instant_from(stdout: &str, what: &str) -> i64 {
    let line = stdout
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} line in {stdout:?}"));
    let rest = &line[line.find(what).unwrap() + what.len()..];
    let rest = rest.strip_prefix(" at ").expect("' at '");
    let (iso, rest) = rest.split_once(" UTC (").expect("' UTC ('");
    let ms: i64 = rest
        .strip_suffix(')')
        .expect("')'")
        .parse()
        .expect("epoch ms");
    assert_eq!(iso.len(), "2026-11-24T20:01:48.123Z".len(), "{iso}");
    let parsed: jiff::Timestamp = iso.parse().expect("ISO-8601 instant");
    assert_eq!(parsed.as_millisecond(), ms, "{line}");
    ms
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[tokio::test]
async fn pause_check_unpause_by_addresses_print_what_scripts_read() {
    bounded(async {
        let mut pods = Pod::start_many(3).await;
        let list = address_list(&pods);

        let before = now_ms();
        let run = scalar_admin(&["-c", "PAUSE", "-a", &list]).await.success();
        let paused_at = instant_from(&run.stdout, "Pause completed");
        assert!(before <= paused_at && paused_at <= now_ms());
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

        let run = scalar_admin(&["-c", "check_paused", "-a", &list])
            .await
            .success();
        let check: Value = serde_json::from_str(run.stdout.trim()).unwrap();
        for pod in &pods {
            assert_eq!(check[pod.addr().to_string()], "true", "{check}");
        }

        let run = scalar_admin(&["--command", "Unpause", "--addresses", &list])
            .await
            .success();
        assert!(instant_from(&run.stdout, "Unpause started") >= paused_at);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));

        let run = scalar_admin(&["-c", "CHECK_PAUSED", "-a", &list])
            .await
            .success();
        let check: Value = serde_json::from_str(run.stdout.trim()).unwrap();
        assert_eq!(check.as_object().unwrap().len(), 3);
        assert!(check.as_object().unwrap().values().all(|v| v == "false"));
    })
    .await
}

#[tokio::test]
async fn srv_keys_are_target_names_with_ports() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let dns = DnsServer::start().await;
        let addrs: Vec<SocketAddr> = pods.iter().map(Pod::addr).collect();
        let name = dns.headless_service("scalardl-admin", "ledger", "ns", &addrs);
        let server = dns.addr().to_string();

        scalar_admin(&["-c", "pause", "-s", &name, "--dns-server", &server])
            .await
            .success();
        assert!(pods.iter().all(|p| p.gate().is_paused()));

        let run = scalar_admin(&["-c", "check_paused", "-s", &name, "--dns-server", &server])
            .await
            .success();
        let check: Value = serde_json::from_str(run.stdout.trim()).unwrap();
        let keys: Vec<&String> = check.as_object().unwrap().keys().collect();
        let expected: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                format!(
                    "ledger-{i}.ledger-headless.ns.svc.cluster.local:{}",
                    a.port()
                )
            })
            .collect();
        assert_eq!(keys, expected.iter().collect::<Vec<_>>());
        assert!(check.as_object().unwrap().values().all(|v| v == "true"));

        scalar_admin(&["-c", "unpause", "-s", &name, "--dns-server", &server])
            .await
            .success();
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn pause_flags_reach_the_wire() {
    bounded(async {
        let mut pods = Pod::start_many(1).await;
        let list = address_list(&pods);
        scalar_admin(&["-c", "pause", "-a", &list, "-n"])
            .await
            .success();
        // Paused by an earlier run: a new run refuses it unless told to take it over.
        scalar_admin(&["-c", "pause", "-a", &list, "-m", "2500"])
            .await
            .assert_status(1);
        scalar_admin(&["-c", "pause", "-a", &list, "-m", "2500", "--force"])
            .await
            .success();
        pods[0].gate().unpause();
        scalar_admin(&[
            "-c",
            "pause",
            "-a",
            &list,
            "--no-wait",
            "--max-pause-wait-time",
            "7",
        ])
        .await
        .success();
        let pauses: Vec<Call> = pods[0]
            .take_calls()
            .into_iter()
            .filter(|c| *c != Call::CheckPaused)
            .collect();
        assert_eq!(
            pauses,
            [
                Call::Pause {
                    wait_outstanding: false,
                    max_pause_wait_time: None
                },
                Call::Pause {
                    wait_outstanding: true,
                    max_pause_wait_time: Some(2500)
                },
                Call::Pause {
                    wait_outstanding: false,
                    max_pause_wait_time: Some(7)
                },
            ]
        );
    })
    .await
}

#[tokio::test]
async fn json_output_for_every_command() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let list = address_list(&pods);

        let run = scalar_admin(&["-c", "pause", "-a", &list, "--output", "json"])
            .await
            .success();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(doc["command"], "pause");
        assert_eq!(doc["ok"], true);
        let report = &doc["reports"][0];
        assert_eq!(report["operation"], "pause");
        let completed = doc["pause_completed_at_us"].as_i64().unwrap();
        assert_eq!(completed, report["completed_at_us"].as_i64().unwrap());
        assert!(report["reply_spread_us"].as_u64().is_some());
        for (pod, json) in pods.iter().zip(report["pods"].as_array().unwrap()) {
            assert_eq!(json["pod"], pod.addr().to_string());
            assert_eq!(json["ok"], true);
            let sent = json["sent_at_us"].as_i64().unwrap();
            let received = json["received_at_us"].as_i64().unwrap();
            assert!(sent <= received && received <= completed);
            assert_eq!(json["latency_us"].as_i64().unwrap(), received - sent);
        }

        let run = scalar_admin(&["-c", "check_paused", "-a", &list, "--output", "json"])
            .await
            .success();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert!(
            doc["reports"][0]["pods"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["paused"] == true)
        );

        let run = scalar_admin(&["-c", "unpause", "-a", &list, "--output", "json"])
            .await
            .success();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert!(doc["unpause_started_at_us"].as_i64().unwrap() >= completed);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn a_pod_that_cannot_drain_fails_the_command_and_nothing_stays_paused() {
    bounded(async {
        let pods = Pod::start_many(3).await;
        let _work = pods[2].begin_work();
        let list = address_list(&pods);
        for output in ["text", "json"] {
            let run =
                scalar_admin(&["-c", "pause", "-a", &list, "-m", "100", "--output", output]).await;
            run.assert_status(1);
            let stuck = pods[2].addr().to_string();
            assert!(
                run.stderr
                    .contains(&format!("{stuck}: FAILED_PRECONDITION (TIMED_OUT): ")),
                "{}",
                run.stderr
            );
            assert!(
                run.stderr.contains("no pod is left paused"),
                "{}",
                run.stderr
            );
            assert!(!run.stdout.contains("Pause completed"));
            if output == "json" {
                let doc: Value = serde_json::from_str(&run.stdout).unwrap();
                assert_eq!(doc["ok"], false);
                assert_eq!(doc["maybe_paused"], Value::Array(vec![]));
                assert_eq!(doc["reports"][1]["operation"], "unpause");
                assert_eq!(doc["reports"][0]["pods"][2]["code"], "FAILED_PRECONDITION");
            }
            assert!(pods.iter().all(|p| !p.gate().is_paused()));
        }
    })
    .await
}

#[tokio::test]
async fn no_rollback_names_the_paused_pods_and_the_command_that_recovers_them() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let _work = pods[1].begin_work();
        let list = address_list(&pods);
        let run = scalar_admin(&["-c", "pause", "-a", &list, "-m", "100", "--no-rollback"]).await;
        run.assert_status(1);
        assert!(pods[0].gate().is_paused());
        let recovery = run
            .stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("scalar-admin "))
            .unwrap_or_else(|| panic!("no recovery command in {}", run.stderr));
        assert!(recovery.contains(&pods[0].addr().to_string()), "{recovery}");
        let args: Vec<&str> = recovery.split_whitespace().collect();
        scalar_admin(&args).await.success();
        assert!(!pods[0].gate().is_paused());
    })
    .await
}

#[tokio::test]
async fn a_pod_that_is_down_fails_with_its_name_and_nobody_is_paused() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let down = scalar_admin_rig::refused_addr().await;
        let list = format!("{},{down}", address_list(&pods));
        let run = scalar_admin(&["-c", "pause", "-a", &list, "--connect-timeout", "2s"]).await;
        run.assert_status(1);
        assert!(
            run.stderr.contains(&format!("{down}: cannot connect")),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("no Pause request was sent"),
            "{}",
            run.stderr
        );
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn usage_errors_exit_2_before_any_pod_is_contacted() {
    bounded(async {
        let mut pods = Pod::start_many(1).await;
        let dns = DnsServer::start().await;
        let pod = pods[0].addr().to_string();
        let dns_server = dns.addr().to_string();
        let cert_dir =
            std::env::temp_dir().join(format!("scalar-admin-test-{}", std::process::id()));
        std::fs::create_dir_all(&cert_dir).unwrap();
        let garbage = cert_dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let garbage = garbage.to_str().unwrap().to_owned();

        let cases: Vec<Vec<String>> = vec![
            vec!["-c", "pause"],
            vec!["-c", "pause", "-a", &pod, "-s", "_x._tcp.svc"],
            vec!["-c", "stop", "-a", &pod],
            vec!["-a", &pod],
            vec!["-c", "pause", "-a", &format!("{pod},bad_entry")],
            vec!["-c", "pause", "-a", &format!("{pod},[::1:5")],
            vec!["-c", "pause", "-a", &format!("{pod},,{pod}")],
            vec!["-c", "pause", "-a", &pod, "-m", "soon"],
            vec!["-c", "pause", "-a", &pod, "-m", "-5"],
            vec!["-c", "pause", "-a", &pod, "--timeout", "10parsecs"],
            vec!["-c", "pause", "-a", &pod, "--connect-timeout", "0s"],
            vec![
                "-c",
                "pause",
                "-a",
                &pod,
                "--tls",
                "--ca-root-cert-path",
                "/nonexistent.pem",
            ],
            vec![
                "-c",
                "pause",
                "-a",
                &pod,
                "--tls",
                "--ca-root-cert-path",
                &garbage,
            ],
            vec![
                "-c",
                "pause",
                "-a",
                &pod,
                "--tls",
                "--ca-root-cert-pem",
                "-----BEGIN CERTIFICATE-----\\n%%%\\n-----END CERTIFICATE-----",
            ],
            vec!["-c", "pause", "-a", &pod, "--ca-root-cert-path", &garbage],
            vec!["-c", "pause", "-a", &pod, "--dns-server", "localhost"],
            vec![
                "-c",
                "pause",
                "-s",
                "_scalardb._tcp..svc",
                "--dns-server",
                &dns_server,
            ],
            vec!["-c", "pause", "-s", "bad name", "--dns-server", &dns_server],
            vec!["-c", "pause", "-a", &pod, "--output", "yaml"],
            vec!["-c", "pause", "-a", &pod, "--bogus"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        for args in &cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = scalar_admin(&args).await;
            run.assert_status(2);
            assert!(run.stdout.is_empty(), "stdout for {args:?}: {}", run.stdout);
            let first = run.stderr.lines().next().unwrap_or_default();
            assert!(first.starts_with("error:"), "{args:?}: {}", run.stderr);
        }
        assert!(pods[0].take_calls().is_empty(), "a pod was contacted");
        assert_eq!(dns.queries(), 0, "DNS was queried");
        std::fs::remove_dir_all(&cert_dir).unwrap();
    })
    .await
}

#[tokio::test]
async fn help_and_version() {
    bounded(async {
        let run = scalar_admin(&["--help"]).await.success();
        assert!(run.stdout.contains("--srv-service-url"));
        let run = scalar_admin(&["-V"]).await.success();
        assert!(run.stdout.starts_with("scalar-admin "), "{}", run.stdout);
    })
    .await
}

#[tokio::test]
async fn tls_with_pem_text_and_override_authority() {
    bounded(async {
        let ca = Ca::new("test CA");
        let cert = ca.server_cert(&["ledger.scalar.test"]);
        let pod = Pod::start_tls(&cert).await;
        let list = pod.addr().to_string();
        // The Java tool's users pass PEM text with literal \n sequences.
        let pem_text = ca.cert_pem().trim_end().replace('\n', "\\n");

        let run = scalar_admin(&[
            "-c",
            "pause",
            "-a",
            &list,
            "--tls",
            "--ca-root-cert-pem",
            &pem_text,
        ])
        .await;
        run.assert_status(1);
        assert!(run.stderr.contains("certificate"), "{}", run.stderr);
        assert!(
            !run.stderr.contains("BEGIN CERTIFICATE"),
            "PEM text in the message"
        );
        assert!(!pod.gate().is_paused());

        scalar_admin(&[
            "-c",
            "pause",
            "-a",
            &list,
            "--tls",
            "--ca-root-cert-pem",
            &pem_text,
            "--override-authority",
            "ledger.scalar.test",
        ])
        .await
        .success();
        assert!(pod.gate().is_paused());

        let path = std::env::temp_dir().join(format!("scalar-admin-ca-{}.pem", std::process::id()));
        std::fs::write(&path, ca.cert_pem()).unwrap();
        scalar_admin(&[
            "-c",
            "unpause",
            "-a",
            &list,
            "--tls",
            "--ca-root-cert-path",
            path.to_str().unwrap(),
            "--override-authority",
            "ledger.scalar.test",
        ])
        .await
        .success();
        std::fs::remove_file(&path).unwrap();
        assert!(!pod.gate().is_paused());
    })
    .await
}

#[tokio::test]
async fn sigterm_during_pause_unpauses_every_pod() {
    bounded(async {
        let mut pods = Pod::start_many(3).await;
        // Pod 0 cannot drain, so the pause is still running when the signal comes.
        let _work = pods[0].begin_work();
        let list = address_list(&pods);
        let child = start_scalar_admin(&["-c", "pause", "-a", &list]);
        for pod in &mut pods {
            pod.next_pause().await;
        }
        assert!(pods[1].gate().is_paused());
        child.signal("TERM");
        let run = child.wait().await;
        run.assert_status(1);
        assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
        assert!(
            run.stderr.contains("no pod is left paused"),
            "{}",
            run.stderr
        );
        for pod in &mut pods {
            assert!(!pod.gate().is_paused(), "{} left paused", pod.addr());
            // Pod 0's Pause is still in flight on its connection (the rollback reads
            // its answer there): its Unpause goes on a fresh one, after the probe.
            let mut next = pod.next_call().await.0;
            while next == Call::CheckPaused {
                next = pod.next_call().await.0;
            }
            assert_eq!(next, Call::Unpause);
        }
    })
    .await
}

#[tokio::test]
async fn check_paused_reports_each_pods_real_state() {
    bounded(async {
        let pods = Pod::start_many(3).await;
        pods[1].gate().pause(Drain::Skip).await.unwrap();
        let run = scalar_admin(&["-c", "check_paused", "-a", &address_list(&pods)])
            .await
            .success();
        let check: Value = serde_json::from_str(run.stdout.trim()).unwrap();
        for pod in &pods {
            let expected = pod.gate().is_paused().to_string();
            assert_eq!(
                check[pod.addr().to_string()],
                Value::String(expected),
                "{check}"
            );
        }
        assert_eq!(check[pods[1].addr().to_string()], "true");
    })
    .await
}

#[tokio::test]
async fn timeout_cuts_off_a_pod_that_never_answers() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        // Pod 0 accepts Pause and, with work that never ends and a one-minute drain
        // limit, would answer only after a minute.
        let _work = pods[0].begin_work();
        let list = address_list(&pods);
        let run = scalar_admin(&[
            "-c",
            "pause",
            "-a",
            &list,
            "-m",
            "60000",
            "--timeout",
            "300ms",
        ])
        .await;
        run.assert_status(1);
        let line = format!("{}: no answer within the 300ms deadline", pods[0].addr());
        assert!(run.stderr.contains(&line), "{}", run.stderr);
        assert!(
            run.stderr.contains("no pod is left paused"),
            "{}",
            run.stderr
        );
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn logs_go_to_stderr_and_stdout_stays_parseable() {
    bounded(async {
        let pods = Pod::start_many(1).await;
        let list = address_list(&pods);
        let run = scalar_admin(&["-c", "pause", "-a", &list, "-v"])
            .await
            .success();
        assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
        assert!(run.stderr.contains("pause completed"), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("pod={}", pods[0].addr())),
            "{}",
            run.stderr
        );

        let run = scalar_admin(&["-c", "unpause", "-a", &list, "-q"])
            .await
            .success();
        assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
        assert!(run.stderr.is_empty(), "{}", run.stderr);
    })
    .await
}

/// Runs `scalar-admin` under `ulimit` settings, through the shell.
async fn scalar_admin_with_ulimit(ulimit: &str, args: &[&str]) -> crate::util::Run {
    let script = format!("ulimit {ulimit} && exec \"$0\" \"$@\"");
    let mut all = vec!["-c", &script, env!("CARGO_BIN_EXE_scalar-admin")];
    all.extend_from_slice(args);
    crate::util::run_program("sh", &all).await
}

#[tokio::test]
async fn a_low_open_files_soft_limit_is_raised_for_1000_pods() {
    bounded(async {
        let pods = Pod::start_many(1000).await;
        let list = address_list(&pods);
        let run = scalar_admin_with_ulimit("-Sn 256", &["-c", "pause", "-a", &list]).await;
        run.assert_status(0);
        assert!(pods.iter().all(|p| p.gate().is_paused()));
        scalar_admin_with_ulimit("-Sn 256", &["-c", "unpause", "-a", &list])
            .await
            .assert_status(0);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
        // A window raises it too.
        let window = ["-c", "window", "-a", &list, "--duration", "50ms"];
        let run = scalar_admin_with_ulimit("-Sn 256", &window).await;
        run.assert_status(0);
        assert!(run.stdout.contains("Verdict: VALID"), "{}", run.stdout);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn an_open_files_limit_too_low_for_the_pods_fails_before_any_pod_is_contacted() {
    bounded(async {
        let mut pods = Pod::start_many(1).await;
        // 300 distinct addresses, one of them a real pod.
        let port = pods[0].addr().port();
        let mut list = vec![pods[0].addr().to_string()];
        list.extend((1..300).map(|i| format!("127.0.{}.{}:{port}", 1 + i / 250, 1 + i % 250)));
        for command in ["pause", "window"] {
            let run =
                scalar_admin_with_ulimit("-n 256", &["-c", command, "-a", &list.join(",")]).await;
            run.assert_status(1);
            assert!(run.stderr.contains("300 pods need about"), "{}", run.stderr);
            assert!(run.stderr.contains("ulimit -n"), "{}", run.stderr);
        }
        assert!(pods[0].take_calls().is_empty());
    })
    .await
}

#[tokio::test]
async fn no_certificate_or_key_text_reaches_the_logs() {
    bounded(async {
        let ca = Ca::new("test CA");
        let cert = ca.server_cert(&["127.0.0.1"]);
        let pod = Pod::start_tls(&cert).await;
        let pem_text = ca.cert_pem().trim_end().replace('\n', "\\n");
        let list = pod.addr().to_string();
        // Every base64 line of the CA, the certificate and the key.
        let secrets: Vec<String> = [ca.cert_pem(), cert.cert_pem.clone(), cert.key_pem.clone()]
            .iter()
            .flat_map(|pem| {
                pem.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        for args in [
            vec![
                "-c",
                "pause",
                "-a",
                &list,
                "--tls",
                "--ca-root-cert-pem",
                &pem_text,
                "-vv",
            ],
            vec![
                "-c",
                "unpause",
                "-a",
                &list,
                "--tls",
                "--ca-root-cert-pem",
                &pem_text,
                "-vv",
            ],
            // A wrong CA: the failure path logs too.
            vec![
                "-c",
                "pause",
                "-a",
                &list,
                "--tls",
                "--ca-root-cert-pem",
                &Ca::new("other").cert_pem(),
                "-vv",
            ],
        ] {
            let run = scalar_admin(&args).await;
            assert!(
                run.stderr.lines().count() > 10,
                "trace logging is on: {}",
                run.stderr
            );
            for secret in &secrets {
                assert!(
                    !run.stderr.contains(secret),
                    "certificate or key text in the log: {secret}"
                );
                assert!(!run.stdout.contains(secret));
            }
            assert!(!run.stderr.contains("BEGIN"), "{}", run.stderr);
        }
        assert!(!pod.gate().is_paused());
    })
    .await
}

#[tokio::test]
async fn a_closed_stdout_does_not_panic_after_the_pause() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_scalar-admin"))
            .args(["-c", "pause", "-a", &address_list(&pods)])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A script that stopped reading: the pipe is closed before anything is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(pods.iter().all(|p| p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn max_pause_wait_time_0_means_the_pods_default_and_is_not_sent() {
    bounded(async {
        let mut pods = Pod::start_many(1).await;
        scalar_admin(&["-c", "pause", "-a", &address_list(&pods), "-m", "0"])
            .await
            .success();
        assert_eq!(
            pods[0].take_calls(),
            [
                Call::CheckPaused,
                Call::Pause {
                    wait_outstanding: true,
                    max_pause_wait_time: None
                }
            ]
        );
    })
    .await
}

#[tokio::test]
async fn a_panic_in_a_pod_call_rolls_back_and_exits_1() {
    bounded(async {
        let healthy = Pod::start_many(3).await;
        let list = address_list(&healthy);
        let run = scalar_admin_env(
            &["-c", "pause", "-a", &list],
            &[("SCALAR_ADMIN_INJECT_PANIC", "pod")],
        )
        .await;
        run.assert_status(1);
        assert!(
            run.stderr
                .contains("internal error: the call panicked: injected panic"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("no pod is left paused by this run"),
            "{}",
            run.stderr
        );
        assert!(healthy.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn a_panic_after_the_pause_completed_unpauses_what_this_run_paused() {
    bounded(async {
        let healthy = Pod::start_many(3).await;
        let list = address_list(&healthy);
        let run = scalar_admin_env(
            &["-c", "pause", "-a", &list],
            &[("SCALAR_ADMIN_INJECT_PANIC", "output")],
        )
        .await;
        run.assert_status(1);
        assert!(!run.stdout.contains("Pause completed"), "{}", run.stdout);
        assert!(
            run.stderr.contains("error: internal error: injected panic before the output; rolled back: no pod is left paused by this run"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("unpaused by this run (confirmed by CheckPaused): {list}").replace(',', ", ")),
            "{}",
            run.stderr
        );
        assert!(healthy.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn a_signal_before_any_pause_was_sent_changes_nothing() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        // A pod that accepts TCP and never answers holds the command in its connect.
        let (silent, _hold) = blackhole().await;
        let list = format!("{},{silent}", address_list(&pods));
        let child = start_scalar_admin(&["-c", "pause", "-a", &list, "--connect-timeout", "60s"]);
        for pod in &mut pods {
            assert_eq!(pod.next_call().await.0, Call::CheckPaused);
        }
        child.signal("TERM");
        let run = child.wait().await;
        run.assert_status(1);
        assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
        assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
        for pod in &mut pods {
            assert!(pod.take_calls().is_empty(), "no Pause, no Unpause");
        }
    })
    .await
}
