//! Backup windows: pause every group, hold, verify, unpause.

use std::net::SocketAddr;
use std::time::Duration;

use scalar_admin::gate::Drain;
use scalar_admin::window::{Finding, Group, Window, WindowReport};
use scalar_admin::{ClientConfig, DnsConfig, Error, PauseOptions};
use scalar_admin_rig::{Call, DnsServer, Pod};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::util::{bounded, scalar_admin, start_scalar_admin};

struct Cluster {
    dns: DnsServer,
    ledger: Vec<Pod>,
    auditor: Vec<Pod>,
    srv: String,
}

/// Ledger pods behind an SRV name, auditor pods by address: two groups.
async fn cluster(ledgers: usize, auditors: usize) -> Cluster {
    let dns = DnsServer::start().await;
    let mut ledger = Vec::new();
    for _ in 0..ledgers {
        ledger.push(Pod::start().await);
    }
    let mut auditor = Vec::new();
    for _ in 0..auditors {
        auditor.push(Pod::start().await);
    }
    let addrs: Vec<SocketAddr> = ledger.iter().map(Pod::addr).collect();
    let srv = dns.headless_service("scalardl-admin", "ledger", "ns", &addrs);
    Cluster {
        dns,
        ledger,
        auditor,
        srv,
    }
}

impl Cluster {
    /// A window over both groups, resolved through this cluster's DNS server.
    fn window(&self, hold_ms: u64) -> Window {
        Window::new(self.groups())
            .dns(self.dns_config())
            .hold(Duration::from_millis(hold_ms))
    }

    /// Runs windows to the end, with no signal.
    async fn run(&self, window: Window) -> Result<Vec<WindowReport>, Error> {
        spawn(window).await.unwrap()
    }

    fn groups(&self) -> Vec<Group> {
        let mut groups = vec![Group::Srv(self.srv.clone())];
        if !self.auditor.is_empty() {
            groups.push(Group::Addresses(
                self.auditor.iter().map(Pod::target).collect(),
            ));
        }
        groups
    }

    fn dns_config(&self) -> DnsConfig {
        DnsConfig::default()
            .name_server(self.dns.addr())
            .timeout(Duration::from_secs(1))
    }

    fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.ledger.iter().chain(&self.auditor)
    }

    fn auditor_list(&self) -> String {
        self.auditor
            .iter()
            .map(|p| p.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The CLI flags naming both groups and this DNS server.
    fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["-c".into(), "window".into(), "-s".into(), self.srv.clone()];
        if !self.auditor.is_empty() {
            args.extend(["-a".into(), self.auditor_list()]);
        }
        args.extend(["--dns-server".into(), self.dns.addr().to_string()]);
        args
    }
}

/// Starts windows in a task, so the test can act during the hold.
fn spawn(window: Window) -> JoinHandle<Result<Vec<WindowReport>, Error>> {
    tokio::spawn(async move { window.run(std::future::pending::<()>()).await })
}

/// The findings of the first window, in words.
fn reasons(windows: &[WindowReport]) -> Vec<String> {
    assert!(
        !windows[0].verdict().is_valid(),
        "{:?}",
        windows[0].verdict()
    );
    windows[0]
        .verdict()
        .findings()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[tokio::test]
async fn two_groups_share_one_valid_window() {
    bounded(async {
        let mut c = cluster(2, 2).await;
        let windows = c.run(c.window(300)).await.unwrap();
        assert_eq!(windows.len(), 1);
        let w = &windows[0];
        assert!(w.verdict().is_valid(), "{:?}", w.verdict());
        assert_eq!(w.groups().len(), 2);
        assert_eq!(w.pause().pods().len(), 4, "one fan-out over both groups");
        assert!(w.length() >= Duration::from_millis(300));
        assert!(w.pause_completed_at() < w.midpoint() && w.midpoint() < w.unpause_started_at());
        for pod in w.pause().pods() {
            assert!(pod.received_at() <= w.pause_completed_at());
        }
        for pod in c.ledger.iter_mut().chain(&mut c.auditor) {
            assert!(!pod.gate().is_paused());
            // The probe (which also says whether the pod is already paused), Pause, the
            // check before unpausing, Unpause, the check after.
            assert_eq!(
                pod.take_calls(),
                [
                    Call::CheckPaused,
                    Call::Pause {
                        wait_outstanding: true,
                        max_pause_wait_time: None
                    },
                    Call::CheckPaused,
                    Call::Unpause,
                    Call::CheckPaused,
                ]
            );
        }
    })
    .await
}

#[tokio::test]
async fn a_pod_restarted_during_the_hold_makes_the_window_invalid() {
    bounded(async {
        let mut c = cluster(2, 0).await;
        let window = spawn(c.window(1000));
        c.ledger[1].next_pause().await;
        c.ledger[1].restart().await;
        let windows = window.await.unwrap().unwrap();
        let reasons = reasons(&windows);
        let restarted = format!(
            "ledger-1.ledger-headless.ns.svc.cluster.local:{}",
            c.ledger[1].addr().port()
        );
        assert_eq!(
            reasons,
            [format!(
                "{restarted} reported unpaused during the window: restarted?"
            )]
        );
        assert!(matches!(
            windows[0].verdict().findings()[0],
            Finding::Unpaused { ref pod } if pod.name() == restarted
        ));
        assert!(c.pods().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn a_pod_added_to_the_srv_answer_during_the_hold_makes_the_window_invalid() {
    bounded(async {
        let mut c = cluster(1, 0).await;
        let window = spawn(c.window(1000));
        c.ledger[0].next_pause().await;
        let added = Pod::start().await;
        let addrs = [c.ledger[0].addr(), added.addr()];
        c.dns
            .headless_service("scalardl-admin", "ledger", "ns", &addrs);
        let windows = window.await.unwrap().unwrap();
        let reasons = reasons(&windows);
        let name = format!(
            "ledger-1.ledger-headless.ns.svc.cluster.local:{}",
            added.addr().port()
        );
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].ends_with(&format!("endpoint set changed: added {name}")),
            "{reasons:?}"
        );
        assert!(!c.ledger[0].gate().is_paused());
        assert!(!added.gate().is_paused(), "the added pod was never paused");
    })
    .await
}

#[tokio::test]
async fn a_pod_that_cannot_drain_rolls_the_window_back() {
    bounded(async {
        let c = cluster(2, 1).await;
        let _work = c.auditor[0].begin_work();
        let window = c
            .window(300)
            .pause_options(PauseOptions::default().max_pause_wait(Duration::from_millis(100)));
        let err = c.run(window).await.unwrap_err();
        assert!(matches!(err, Error::Pause { .. }), "{err}");
        assert!(err.to_string().contains("no pod is left paused"), "{err}");
        assert!(c.pods().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn a_window_does_not_start_over_pods_already_paused() {
    bounded(async {
        let mut c = cluster(2, 0).await;
        c.ledger[0].gate().pause(Drain::Skip).await.unwrap();
        let err = c.run(c.window(100)).await.unwrap_err();
        assert!(matches!(err, Error::AlreadyPaused { .. }), "{err}");
        assert!(
            err.to_string().contains("ledger-0.ledger-headless"),
            "{err}"
        );
        assert!(c.ledger[0].gate().is_paused(), "left as it was");
        // The connection probe, which found the paused pod; no Pause.
        assert_eq!(c.ledger[1].take_calls(), [Call::CheckPaused]);

        // Forced, the window takes the paused pod over and unpauses it at its end.
        let windows = c.run(c.window(100).force(true)).await.unwrap();
        assert!(windows[0].verdict().is_valid());
        assert!(c.pods().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn a_pod_lost_during_the_hold_fails_unpause_after_retries_and_is_named() {
    bounded(async {
        let mut c = cluster(2, 0).await;
        let config = ClientConfig::default()
            .connect_timeout(Duration::from_millis(500))
            .rollback_budget(Duration::from_secs(2));
        let window = spawn(c.window(500).client(config));
        c.ledger[1].next_pause().await;
        c.ledger[1].stop().await;
        let err = window.await.unwrap().unwrap_err();
        let Error::Release { rollback } = &err else {
            panic!("{err}")
        };
        let lost = format!(
            "ledger-1.ledger-headless.ns.svc.cluster.local:{}",
            c.ledger[1].addr().port()
        );
        assert_eq!(
            err.maybe_paused()
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>(),
            [lost.as_str()]
        );
        assert!(err.to_string().contains(&lost), "{err}");
        assert!(
            rollback.unpauses().len() > 1,
            "the lost pod was tried again"
        );
        assert_eq!(rollback.unpaused().count(), 1, "the other pod, confirmed");
        assert!(!c.ledger[0].gate().is_paused());
    })
    .await
}

#[tokio::test]
async fn cli_prints_the_window_and_its_midpoint_in_the_chosen_time_zone() {
    bounded(async {
        let c = cluster(1, 1).await;
        let mut args = c.cli_args();
        args.extend([
            "--duration".into(),
            "200ms".into(),
            "--time-zone".into(),
            "Asia/Tokyo".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = scalar_admin(&args).await.success();
        assert!(run.stdout.contains("Pause completed at "), "{}", run.stdout);
        assert!(run.stdout.contains("Unpause started at "), "{}", run.stdout);
        let window = run
            .stdout
            .lines()
            .find(|l| l.starts_with("Window: "))
            .unwrap();
        assert_eq!(window.matches("+09:00[Asia/Tokyo]").count(), 2, "{window}");
        assert!(
            run.stdout.contains("Restore point (midpoint): "),
            "{}",
            run.stdout
        );
        // What the pods saw, beside the hold asked for.
        let paused = run
            .stdout
            .lines()
            .find(|l| l.starts_with("Each pod paused: at least "))
            .unwrap_or_else(|| panic!("{}", run.stdout));
        assert!(paused.ends_with(" s (hold asked: 0.200000 s)"), "{paused}");
        assert!(
            run.stdout.lines().any(|l| l == "Verdict: VALID"),
            "{}",
            run.stdout
        );

        let mut args = c.cli_args();
        args.extend([
            "--duration".into(),
            "100ms".into(),
            "--output".into(),
            "json".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = scalar_admin(&args).await.success();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        let w = &doc["windows"][0];
        assert_eq!(w["verdict"], "VALID");
        let (start, mid, end) = (
            w["pause_completed_at_us"].as_i64().unwrap(),
            w["midpoint_us"].as_i64().unwrap(),
            w["unpause_started_at_us"].as_i64().unwrap(),
        );
        assert!(start < mid && mid < end && end - start >= 100_000, "{w}");
        assert_eq!(w["length_us"].as_i64().unwrap(), end - start);
        assert_eq!(doc["time_zone"], "UTC");
        assert!(c.pods().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn cli_attempts_recover_from_one_invalid_window() {
    bounded(async {
        let mut c = cluster(2, 0).await;
        let mut args = c.cli_args();
        args.extend([
            "--duration".into(),
            "1s".into(),
            "--attempts".into(),
            "2".into(),
            "--output".into(),
            "json".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = start_scalar_admin(&args);
        c.ledger[0].next_pause().await;
        c.ledger[0].restart().await;
        let run = child.wait().await.success();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        let windows = doc["windows"].as_array().unwrap();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0]["verdict"], "INVALID");
        assert!(
            windows[0]["reasons"][0]
                .as_str()
                .unwrap()
                .contains("restarted?")
        );
        assert_eq!(windows[1]["verdict"], "VALID");
        assert_eq!(doc["ok"], true);
        assert!(c.pods().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn cli_invalid_window_exits_1() {
    bounded(async {
        let mut c = cluster(1, 0).await;
        let mut args = c.cli_args();
        args.extend(["--duration".into(), "1s".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = start_scalar_admin(&args);
        c.ledger[0].next_pause().await;
        c.ledger[0].restart().await;
        let run = child.wait().await;
        run.assert_status(1);
        assert!(
            run.stdout.lines().any(|l| l == "Verdict: INVALID"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains("reported unpaused during the window: restarted?"),
            "{}",
            run.stdout
        );
        assert!(run.stderr.contains("INVALID"), "{}", run.stderr);
    })
    .await
}

#[tokio::test]
async fn sigterm_during_the_hold_unpauses_every_pod() {
    bounded(async {
        let mut c = cluster(2, 1).await;
        let mut args = c.cli_args();
        // Far longer than the test: only the signal ends the hold.
        args.extend(["--duration".into(), "10m".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = start_scalar_admin(&args);
        for pod in c.ledger.iter_mut().chain(&mut c.auditor) {
            pod.next_pause().await;
        }
        // Every Pause arrived; wait for each gate to be closed by it.
        for pod in c.pods() {
            pod.gate().wait_until_paused(true).await;
        }
        child.signal("TERM");
        let run = child.wait().await;
        run.assert_status(1);
        assert!(
            run.stderr
                .contains("interrupted; rolled back: no pod is left paused by this run"),
            "{}",
            run.stderr
        );
        assert!(c.pods().all(|p| !p.gate().is_paused()));
    })
    .await
}
