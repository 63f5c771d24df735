//! The guardian: SIGKILL to the tool during the hold and during `--exec`, started
//! normally and as PID 1 of a new PID namespace; the guardian's own death; the lease of a
//! hung window and of a plain pause; the journal a killed window leaves.
//!
//! Each test waits for events (a pod's next call, the guardian's exit closing stderr),
//! never for time; the figures printed are the SIGKILL-to-confirmed times the README
//! quotes.

use std::time::{Duration, Instant};

use scalar_admin::gate::Drain;
use scalar_admin_rig::{Ca, Call, Fault, HostilePod, Pod};

use crate::exec::{list, scratch};
use crate::util::{Child, Run, bounded, scalar_admin, start_program, start_scalar_admin};

/// The children of a process, from `/proc`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

pub(crate) fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Waits until every pod has received its Pause and closed its gate.
async fn paused(pods: &mut [Pod]) {
    for pod in pods.iter_mut() {
        pod.next_pause().await;
        pod.gate().wait_for(true).await;
    }
}

/// Waits for a file another process writes, within a bound.
async fn written(path: &std::path::Path) -> String {
    for _ in 0..2000 {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} was never written", path.display());
}

/// The tool's process as started: itself, or, under `unshare --pid --fork`, the worker
/// that PID 1 (the guardian) runs.
enum Layout {
    Normal,
    PidNamespace,
}

impl Layout {
    fn start(&self, args: &[&str]) -> Child {
        match self {
            Layout::Normal => start_scalar_admin(args),
            Layout::PidNamespace => {
                let mut argv = vec!["--pid", "--fork", crate::exec::BIN];
                argv.extend_from_slice(args);
                start_program("unshare", &argv)
            }
        }
    }

    /// The process to SIGKILL: the tool, or the worker under PID 1.
    fn tool(&self, child: &Child) -> u32 {
        match self {
            Layout::Normal => child.pid(),
            Layout::PidNamespace => {
                let init = *children(child.pid())
                    .first()
                    .expect("PID 1 of the namespace");
                let workers = children(init);
                assert_eq!(workers.len(), 1, "PID 1 runs one worker: {workers:?}");
                workers[0]
            }
        }
    }
}

/// SIGKILLs the tool once every pod is paused (and `ready` is written, when given), and
/// returns the run; prints the times from the SIGKILL to the last pod's Unpause and to
/// the guardian's exit, which closes stderr once every pod is confirmed unpaused.
async fn kill_during_hold(
    layout: Layout,
    pods: &mut [Pod],
    extra: &[&str],
    ready: Option<&std::path::Path>,
) -> Run {
    let list = list(pods);
    // Held until killed, unless `extra` says otherwise.
    let mut args = vec!["-c", "window", "-a", &list];
    if !extra.contains(&"--duration") {
        args.extend(["--duration", "10m"]);
    }
    args.extend_from_slice(extra);
    let child = layout.start(&args);
    paused(pods).await;
    if let Some(ready) = ready {
        written(ready).await;
    }
    let tool = layout.tool(&child);
    let killed = Instant::now();
    kill(tool, "KILL");
    let run = child.wait().await;
    let took = killed.elapsed();
    // Every pod got the guardian's Unpause: when did the last one arrive?
    let mut unpaused = Duration::ZERO;
    for pod in pods.iter_mut() {
        let at = loop {
            if let (Call::Unpause, at) = pod.next_call().await
                && at >= killed
            {
                break at;
            }
        };
        unpaused = unpaused.max(at.saturating_duration_since(killed));
    }
    eprintln!(
        "SIGKILL to the last pod's Unpause: {unpaused:?}; to every pod confirmed unpaused: {took:?}"
    );
    run
}

fn assert_guardian_unpaused(run: &Run, pods: &[Pod]) {
    assert!(
        pods.iter().all(|p| !p.gate().is_paused()),
        "pods left paused\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "guardian: the tool's process ended while its window was open; rollback of the {} pod(s) this run may have paused",
            pods.len()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("guardian: rolled back: no pod is left paused by this run"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("Verdict"), "{}", run.stdout);
}

#[tokio::test]
async fn sigkill_during_the_hold_the_guardian_unpauses_and_the_journal_shows_the_window_open() {
    bounded(async {
        let mut pods = Pod::start_many(3).await;
        let dir = scratch("guardian-hold");
        let journal = dir.join("windows.jsonl");
        let j = journal.to_str().unwrap();
        // Killed once the journal's "open" line is written.
        let run =
            kill_during_hold(Layout::Normal, &mut pods, &["--journal", j], Some(&journal)).await;
        assert_eq!(run.status, None, "killed");
        assert_guardian_unpaused(&run, &pods);
        // The journal's "open" line stayed without its "close": the next run says so.
        let text = std::fs::read_to_string(&journal).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r#""event":"open""#), "{text}");
        let history = scalar_admin(&["-c", "history", "--journal", j])
            .await
            .success();
        assert!(
            history.stderr.contains("was never closed"),
            "{}",
            history.stderr
        );
    })
    .await
}

#[tokio::test]
async fn each_attempt_closes_its_journal_line_as_it_ends_so_a_kill_loses_only_the_open_one() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let dir = scratch("guardian-attempts");
        let journal = dir.join("windows.jsonl");
        let j = journal.to_str().unwrap();
        let second = dir.join("second");
        // The first attempt's command fails (INVALID); the second one hangs: killed then.
        let script = format!(
            "[ \"$SCALAR_ADMIN_ATTEMPT\" = 1 ] && exit 3; echo go > {0}.tmp; mv {0}.tmp {0}; sleep 600",
            second.display()
        );
        let extra = [
            "--attempts",
            "2",
            "--duration",
            "10ms",
            "--journal",
            j,
            "--exec",
            &script,
        ];
        let run = kill_during_hold(Layout::Normal, &mut pods, &extra, Some(&second)).await;
        assert_guardian_unpaused(&run, &pods);
        let text = std::fs::read_to_string(&journal).unwrap();
        let events: Vec<(String, u64, String)> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["event"].as_str().unwrap().to_owned(),
                    v["attempt"].as_u64().unwrap(),
                    v["verdict"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let expected = [("open", 1, ""), ("close", 1, "INVALID"), ("open", 2, "")];
        let expected: Vec<(String, u64, String)> = expected
            .iter()
            .map(|(e, a, v)| (e.to_string(), *a, v.to_string()))
            .collect();
        assert_eq!(events, expected, "{text}");
    })
    .await
}

/// SIGKILLs the tool while its `--exec` command runs (with a child of its own): the
/// guardian kills the command's process group and unpauses.
async fn kill_during_exec(layout: Layout, name: &str) {
    let mut pods = Pod::start_many(2).await;
    let child_file = scratch(name).join("child");
    let script = format!(
        "sleep 600 & echo $! > {0}.tmp; mv {0}.tmp {0}; wait",
        child_file.display()
    );
    let run = kill_during_hold(layout, &mut pods, &["--exec", &script], Some(&child_file)).await;
    assert_guardian_unpaused(&run, &pods);
    assert!(
        run.stderr
            .contains("guardian: killed the --exec command's process group"),
        "{}",
        run.stderr
    );
    if run.status.is_none() {
        // Started normally: the pid is this namespace's, and its process must be gone.
        // (In a PID namespace, PID 1's exit ended everything left in it anyway.)
        let pid = std::fs::read_to_string(&child_file).unwrap();
        assert!(
            crate::exec::gone(pid.trim()).await,
            "the command's child {pid} still runs"
        );
    }
}

#[tokio::test]
async fn sigkill_during_exec_the_guardian_kills_the_command_and_unpauses() {
    bounded(kill_during_exec(Layout::Normal, "guardian-exec")).await
}

#[tokio::test]
async fn as_pid_1_of_a_pid_namespace_the_guardian_outlives_a_sigkilled_worker() {
    bounded(async {
        let mut pods = Pod::start_many(3).await;
        let run = kill_during_hold(Layout::PidNamespace, &mut pods, &[], None).await;
        // PID 1 exits as the worker did: killed by signal 9.
        run.assert_status(137);
        assert_guardian_unpaused(&run, &pods);
    })
    .await
}

#[tokio::test]
async fn as_pid_1_sigkill_during_exec_unpauses_and_ends_the_command() {
    bounded(kill_during_exec(Layout::PidNamespace, "guardian-ns-exec")).await
}

#[tokio::test]
async fn as_pid_1_sigterm_reaches_the_worker_which_unpauses() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let list = list(&pods);
        let child = Layout::PidNamespace.start(&["-c", "window", "-a", &list, "--duration", "10m"]);
        paused(&mut pods).await;
        // What the kubelet does to a container: SIGTERM to its PID 1.
        let init = *children(child.pid()).first().expect("PID 1");
        kill(init, "TERM");
        let run = child.wait().await;
        run.assert_status(1);
        assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
        assert!(!run.stderr.contains("guardian:"), "{}", run.stderr);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn when_the_guardian_dies_the_tool_unpauses_at_once() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let list = list(&pods);
        let child = start_scalar_admin(&["-c", "window", "-a", &list, "--duration", "10m"]);
        paused(&mut pods).await;
        let guardian = children(child.pid());
        assert_eq!(guardian.len(), 1, "{guardian:?}");
        kill(guardian[0], "KILL");
        let run = child.wait().await;
        run.assert_status(1);
        assert!(
            run.stderr
                .contains("error: the guardian process ended; ending this run"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn the_lease_ends_a_hung_window() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let list = list(&pods);
        let child = start_scalar_admin(&[
            "-c",
            "window",
            "-a",
            &list,
            "--duration",
            "1s",
            "--max-hold",
            "2s",
        ]);
        paused(&mut pods).await;
        // The tool hangs: it cannot end its window, nor hear of anything.
        child.signal("STOP");
        for pod in &mut pods {
            while pod.next_call().await.0 != Call::Unpause {}
        }
        child.signal("CONT");
        let run = child.wait().await;
        run.assert_status(1);
        assert!(
            run.stderr
                .contains("guardian: the window's lease (--max-hold 2 s) passed"),
            "{}",
            run.stderr
        );
        assert!(!run.stdout.contains("Verdict: VALID"), "{}", run.stdout);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

/// The guardian of the tool with this pid, found by the role it was started in.
fn guardian_of(tool: u32) -> Option<u32> {
    let role = format!("--scalar-admin-role=guardian:{tool}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == role.as_bytes())
                .then_some(pid)
        })
}

/// Waits until a file another process writes contains `text`, within a bound.
async fn until_contains(path: &std::path::Path, text: &str) -> String {
    for _ in 0..2000 {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now.contains(text) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never said {text:?}", path.display());
}

/// `-c PAUSE --max-hold` with its stderr to a file (a pipe would be let go of): returns
/// the tool's exit status, its stdout, and the file.
async fn pause_with_lease(
    list: &str,
    lease: &str,
    name: &str,
) -> (i32, String, std::path::PathBuf) {
    let dir = scratch(name);
    let (log, stdout) = (dir.join("stderr"), dir.join("stdout"));
    // Not `output()`, which pipes stderr whatever is set.
    let status = tokio::process::Command::new(crate::exec::BIN)
        .args(["-c", "pause", "-a", list, "--max-hold", lease])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .await
        .unwrap();
    let stdout = std::fs::read_to_string(&stdout).unwrap();
    (status.code().unwrap_or(-1), stdout, log)
}

#[tokio::test]
async fn a_plain_pause_with_a_lease_is_unpaused_at_its_end_but_not_a_later_pause_of_someone_else() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let list = list(&pods);
        let (status, stdout, log) = pause_with_lease(&list, "4s", "lease-end").await;
        assert_eq!(status, 0, "{stdout}");
        assert!(stdout.starts_with("Pause completed at "), "{stdout}");
        assert!(pods.iter().all(|p| p.gate().is_paused()));
        // Someone else unpauses the second pod; once the guardian has seen it unpaused
        // (its second check since, the first one's answer being taken by then), someone
        // pauses it again: that pause is not the lease's to end.
        pods[1].gate().unpause();
        pods[1].take_calls();
        let mut checks = 0;
        while checks < 2 {
            if pods[1].next_call().await.0 == Call::CheckPaused {
                checks += 1;
            }
        }
        pods[1].gate().pause(Drain::Skip).await.unwrap();
        let stderr = until_contains(&log, "guardian: rolled back").await;
        assert!(
            stderr.contains("guardian: the pause's lease (--max-hold 4 s) passed"),
            "{stderr}"
        );
        assert!(!pods[0].gate().is_paused(), "the lease's pod is unpaused");
        assert!(pods[1].gate().is_paused(), "someone else's pause is left");
        assert!(!pods[1].take_calls().contains(&Call::Unpause));
    })
    .await
}

#[tokio::test]
async fn a_plain_pause_lease_lets_a_piped_caller_go_and_this_tools_unpause_revokes_it() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let list = list(&pods);
        // Stderr is a pipe, read to its end: the caller is not held for the lease. The
        // pods named otherwise than the UNPAUSE below names them: the lease is the pod's.
        let by_name: Vec<String> = pods
            .iter()
            .map(|p| format!("localhost:{}", p.addr().port()))
            .collect();
        let by_name = by_name.join(",");
        let child = start_scalar_admin(&["-c", "pause", "-a", &by_name, "--max-hold", "10m"]);
        let tool = child.pid();
        let run = child.wait().await.success();
        assert!(
            run.stdout.starts_with("Pause completed at "),
            "{}",
            run.stdout
        );
        let guardian = guardian_of(tool).expect("the lease's guardian runs on");
        // UNPAUSE, then someone's PAUSE at once: the UNPAUSE revoked the lease before it
        // sent anything, so the guardian lets go and ends, and the new pause stays.
        scalar_admin(&["-c", "unpause", "-a", &list])
            .await
            .success();
        scalar_admin(&["-c", "pause", "-a", &list]).await.success();
        assert!(
            crate::exec::gone(&guardian.to_string()).await,
            "the revoked lease's guardian {guardian} still runs"
        );
        assert!(pods.iter().all(|p| p.gate().is_paused()));
        for pod in &mut pods {
            let unpauses = pod
                .take_calls()
                .iter()
                .filter(|c| **c == Call::Unpause)
                .count();
            assert_eq!(unpauses, 1, "only the operator's UNPAUSE");
        }
    })
    .await
}

#[tokio::test]
async fn a_window_refused_for_someone_elses_pause_arms_no_guardian() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        pods[1].gate().pause(Drain::Skip).await.unwrap();
        let run = scalar_admin(&["-c", "window", "-a", &list(&pods), "--duration", "10m"]).await;
        run.assert_status(1);
        assert!(
            run.stderr.contains("already report paused")
                || run.stdout.contains("already report paused"),
            "{}{}",
            run.stdout,
            run.stderr
        );
        assert!(!run.stderr.contains("guardian:"), "{}", run.stderr);
        assert!(pods[1].gate().is_paused());
        for pod in &mut pods {
            let calls = pod.take_calls();
            assert!(
                calls.iter().all(|c| matches!(c, Call::CheckPaused)),
                "{calls:?}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn lease_flags_are_checked_before_any_pod_is_contacted() {
    bounded(async {
        for args in [
            &["-c", "unpause", "-a", "127.0.0.1:1", "--max-hold", "1m"][..],
            &[
                "-c",
                "window",
                "-a",
                "127.0.0.1:1",
                "--duration",
                "10s",
                "--max-hold",
                "5s",
            ],
            &[
                "-c",
                "window",
                "-a",
                "127.0.0.1:1",
                "--no-guardian",
                "--max-hold",
                "1m",
            ],
            &["-c", "pause", "-a", "127.0.0.1:1", "--no-guardian"],
            &[
                "-c",
                "pause",
                "-a",
                "127.0.0.1:1",
                "--no-rollback",
                "--max-hold",
                "1m",
            ],
        ] {
            let run = scalar_admin(args).await;
            run.assert_status(2);
            assert!(
                run.stderr.starts_with("error: "),
                "{args:?}: {}",
                run.stderr
            );
            let guardian_spoke = run.stderr.lines().any(|l| l.starts_with("guardian:"));
            assert!(!guardian_spoke, "{args:?}: {}", run.stderr);
        }
        // As PID 1 a lease would keep the container, and whoever waits for it, alive.
        let args = ["-c", "pause", "-a", "127.0.0.1:1", "--max-hold", "1m"];
        let run = Layout::PidNamespace.start(&args).wait().await;
        run.assert_status(2);
        assert!(
            run.stderr.contains("as PID 1 of a container"),
            "{}",
            run.stderr
        );
    })
    .await
}

#[tokio::test]
async fn a_failed_pause_with_a_lease_leaves_nothing_armed_behind() {
    bounded(async {
        let good = Pod::start().await;
        let failing = Pod::builder()
            .fail_pause(tonic::Code::Internal, "boom")
            .start()
            .await;
        let pods = [good, failing];
        let list = list(&pods);
        let child = start_scalar_admin(&["-c", "pause", "-a", &list, "--max-hold", "10m"]);
        let tool = child.pid();
        let run = child.wait().await;
        run.assert_status(1);
        assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
        // The guardian, disarmed, ended with the tool: it never unpauses anything later.
        if let Some(guardian) = guardian_of(tool) {
            assert!(crate::exec::gone(&guardian.to_string()).await);
        }
        assert!(!run.stderr.contains("guardian:"), "{}", run.stderr);
    })
    .await
}

/// A pod the window could not unpause (it went away during the hold) is tried once
/// more by the guardian when the tool exits; a pod whose Unpause answered OK but whose
/// checks hang is not (a pause seen on it later would be someone else's): it is named,
/// and unpaused once only.
#[tokio::test]
async fn pods_a_window_could_not_confirm_are_tried_once_more_by_the_guardian() {
    bounded(async {
        let good = Pod::start().await;
        let mut gone = Pod::start().await;
        // Its checks hang once it is unpaused: the window cannot confirm it.
        let unchecked = Pod::builder().hang_checks_after_unpause().start().await;
        let list = format!("{},{},{}", good.addr(), gone.addr(), unchecked.addr());
        let child = start_scalar_admin(&[
            "-c",
            "window",
            "-a",
            &list,
            "--duration",
            "3s",
            "--timeout",
            "300ms",
            "--connect-timeout",
            "300ms",
            "--rollback-timeout",
            "500ms",
        ]);
        gone.next_pause().await;
        gone.gate().wait_for(true).await;
        gone.stop().await;
        let run = child.wait().await;
        run.assert_status(1);
        assert!(
            run.stderr.contains(
                "guardian: the tool ended with pods it could not confirm unpaused; trying once more; rollback of the 1 pod(s)"
            ),
            "{}",
            run.stderr
        );
        // What the guardian could not confirm either, it names.
        assert!(
            run.stderr.contains(&format!("guardian: may still be paused: {}", gone.addr())),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("Unpause answered OK, not confirmed by any check"),
            "{}",
            run.stderr
        );
        let mut pods = [good, unchecked];
        for pod in &mut pods {
            let calls = pod.take_calls();
            let unpauses = calls.iter().filter(|c| **c == Call::Unpause).count();
            assert_eq!(unpauses, 1, "{}: not the guardian's\n{}", pod.addr(), run.stderr);
        }
    })
    .await
}

#[tokio::test]
async fn a_lease_that_does_not_let_go_stops_a_pause_before_anything_is_sent() {
    bounded(async {
        use std::os::linux::net::SocketAddrExt as _;
        let mut pod = Pod::start().await;
        let address = pod.addr().to_string();
        // Something holds the pod's lease name and never answers (a lease ending, a
        // hung guardian).
        let name = format!("scalar-admin-lease/{address}/{}/1-squatter", uid());
        let name = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let squatter = std::os::unix::net::UnixListener::bind_addr(&name).unwrap();
        let run = scalar_admin(&["-c", "pause", "-a", &address]).await;
        run.assert_status(1);
        assert!(
            run.stderr.contains("did not let go") && run.stderr.contains("no Pause was sent"),
            "{}",
            run.stderr
        );
        assert!(!pod.gate().is_paused());
        assert!(
            !pod.take_calls()
                .iter()
                .any(|c| matches!(c, Call::Pause { .. }))
        );
        // An UNPAUSE goes on: ending a pause is what it is for.
        scalar_admin(&["-c", "unpause", "-a", &address])
            .await
            .success();
        assert!(pod.take_calls().contains(&Call::Unpause));
        drop(squatter);
    })
    .await
}

/// A `--force` PAUSE over a leased pod X and a pod Y whose lease never answers (a lease
/// ending, a hung guardian) is refused with nothing sent, and X's lease still holds: the
/// leases are asked before any lets go, so at its end X's lease unpauses X.
#[tokio::test]
async fn a_refused_forced_pause_leaves_every_lease_holding_its_pod() {
    bounded(async {
        use std::os::linux::net::SocketAddrExt as _;
        let mut pods = Pod::start_many(2).await;
        let (x, y) = (pods[0].addr().to_string(), pods[1].addr().to_string());
        let (status, _, lease) = pause_with_lease(&x, "4s", "forced-refused").await;
        assert_eq!(status, 0);
        let name = format!("scalar-admin-lease/{y}/{}/1-squatter", uid());
        let name = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let squatter = std::os::unix::net::UnixListener::bind_addr(&name).unwrap();
        pods[0].take_calls();
        let both = format!("{x},{y}");
        let run = scalar_admin(&["-c", "pause", "--force", "-a", &both]).await;
        run.assert_status(1);
        assert!(
            run.stderr.contains("did not let go") && run.stderr.contains("no Pause was sent"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("no longer leased"), "{}", run.stderr);
        for pod in &mut pods {
            let calls = pod.take_calls();
            assert!(
                !calls.iter().any(|c| matches!(c, Call::Pause { .. })),
                "{calls:?}"
            );
        }
        // X's lease was not revoked: it ends at its time, unpausing X.
        let log = until_contains(&lease, "guardian: rolled back").await;
        assert!(
            log.contains("guardian: the pause's lease (--max-hold 4 s) passed"),
            "{log}"
        );
        assert!(!pods[0].gate().is_paused(), "{log}");
        drop(squatter);
    })
    .await
}

/// A lease that says it is there but never answers the revocation itself: the `--force`
/// PAUSE is refused after X's lease already let go, and names X as left paused by the
/// earlier pause, no longer leased, with the command that unpauses it.
#[tokio::test]
async fn a_forced_pause_refused_after_a_lease_let_go_names_the_pod_left_paused() {
    bounded(async {
        use tokio::io::AsyncWriteExt as _;
        let mut pods = Pod::start_many(2).await;
        let (x, y) = (pods[0].addr().to_string(), pods[1].addr().to_string());
        let (status, _, lease) = pause_with_lease(&x, "10m", "forced-half").await;
        assert_eq!(status, 0);
        let name = format!("scalar-admin-lease/{y}/{}/1-mute", uid());
        let addr = {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap()
        };
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::UnixListener::from_std(listener).unwrap();
        // Says "hi", then holds the connection and never answers the revocation.
        let mute = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                stream.write_all(b"hi\n").await.unwrap();
                held.push(stream);
            }
        });
        let both = format!("{x},{y}");
        let run = scalar_admin(&["-c", "pause", "--force", "-a", &both]).await;
        mute.abort();
        run.assert_status(1);
        assert!(
            run.stderr.contains("did not let go") && run.stderr.contains("no Pause was sent"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains(&format!("left paused, no longer leased: {x}")),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains(&format!("scalar-admin -c UNPAUSE -a {x}")),
            "{}",
            run.stderr
        );
        assert!(
            !pods[1]
                .take_calls()
                .iter()
                .any(|c| matches!(c, Call::Pause { .. })),
            "no Pause sent"
        );
        // X's lease let go, as the error says.
        until_contains(&lease, "the lease ends").await;
        assert!(pods[0].gate().is_paused());
        scalar_admin(&["-c", "unpause", "-a", &x]).await.success();
    })
    .await
}

/// A window whose `--exec` command prints megabytes while stderr is a pipe nobody reads
/// (`2>&1 | less` left open, a stalled `kubectl exec`): lines are dropped, never waited
/// for, so the window ends by itself and every pod is unpaused.
#[tokio::test]
async fn a_chatty_exec_with_stderr_never_read_ends_by_itself_with_every_pod_unpaused() {
    bounded(async {
        use tokio::io::AsyncReadExt as _;
        let pods = Pod::start_many(2).await;
        let list = list(&pods);
        let flood = "head -c 3000000 /dev/zero | tr '\\0' x | fold -w 100";
        let mut child = start_scalar_admin(&[
            "-c",
            "window",
            "-a",
            &list,
            "--duration",
            "100ms",
            "--exec",
            flood,
        ]);
        // Held open, and not read until the tool has exited.
        let mut stderr = child.take_stderr();
        let run = child.wait().await;
        run.assert_status(0);
        assert!(
            run.stdout.lines().any(|l| l == "Verdict: VALID"),
            "{}",
            run.stdout
        );
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
        let mut some = vec![0u8; 4096];
        let n = stderr.read(&mut some).await.unwrap();
        assert!(String::from_utf8_lossy(&some[..n]).contains("exec: xxx"));
    })
    .await
}

/// The hidden roles are internal: one whose parent is not the process it names, or whose
/// standard input is not the link, exits 2 before it contacts anything.
#[tokio::test]
async fn a_hidden_role_that_is_not_what_it_claims_exits_2_contacting_nothing() {
    bounded(async {
        let mut pod = Pod::start().await;
        let address = pod.addr().to_string();
        let me = std::process::id();
        for role in [
            "guardian:999999".to_owned(),
            "worker:1".to_owned(),
            // The right parent, but no link: stdin is /dev/null.
            format!("guardian:{me}"),
            format!("worker:{me}"),
            "tool:1".to_owned(),
        ] {
            let marker = format!("--scalar-admin-role={role}");
            let run = crate::util::run_program(
                crate::exec::BIN,
                &[&marker, "-c", "pause", "-a", &address, "--max-hold", "1m"],
            )
            .await;
            run.assert_status(2);
            assert!(
                run.stderr.contains("internal role"),
                "{role}: {}",
                run.stderr
            );
        }
        assert!(pod.take_calls().is_empty());
        assert!(!pod.gate().is_paused());
    })
    .await
}

/// A tool SIGKILLed as soon as its guardian is spawned: the guardian, orphaned before or
/// after its parent check, exits without a setup, and pauses nothing.
#[tokio::test]
async fn a_tool_killed_right_after_starting_its_guardian_leaves_no_pause_behind() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let list = list(&pods);
        for _ in 0..5 {
            let child = start_scalar_admin(&["-c", "window", "-a", &list, "--duration", "10m"]);
            let tool = child.pid();
            let guardian = loop {
                if let Some(&guardian) = children(tool).first() {
                    break guardian;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            kill(tool, "KILL");
            let run = child.wait().await;
            assert!(
                crate::exec::gone(&guardian.to_string()).await,
                "the orphaned guardian {guardian} runs on\n{}",
                run.stderr
            );
            for pod in &mut pods {
                assert!(!pod.gate().is_paused(), "{}", run.stderr);
                let calls = pod.take_calls();
                let paused = calls.iter().any(|c| matches!(c, Call::Pause { .. }));
                // Killed that fast, the tool itself may not even have connected.
                assert!(
                    !paused || calls.last() == Some(&Call::CheckPaused),
                    "{calls:?}"
                );
            }
        }
    })
    .await
}

/// Each lease ends only the pause it was given: two leases on one pod, each revoked by
/// this tool's UNPAUSE, and a last plain pause that neither may end.
#[tokio::test]
async fn a_lease_ends_only_the_pause_it_was_given() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let (x, both) = (pods[0].addr().to_string(), list(&pods));
        let (status, _, first) = pause_with_lease(&both, "10m", "lease-one").await;
        assert_eq!(status, 0);
        scalar_admin(&["-c", "unpause", "-a", &x]).await.success();
        let (status, _, second) = pause_with_lease(&x, "4s", "lease-two").await;
        assert_eq!(status, 0);
        scalar_admin(&["-c", "unpause", "-a", &x]).await.success();
        scalar_admin(&["-c", "pause", "-a", &x]).await.success();
        // The second lease was revoked whole: it ends without touching the last pause.
        let log = until_contains(&second, "the lease ends").await;
        assert!(!log.contains("rolled back"), "{log}");
        assert!(pods[0].gate().is_paused(), "the last, unleased pause stays");
        assert!(
            pods[1].gate().is_paused(),
            "the first lease still holds the other pod"
        );
        scalar_admin(&["-c", "unpause", "-a", &both])
            .await
            .success();
        until_contains(&first, "the lease ends").await;
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

/// Another user's process listening on lease names of `address` (the old shared name
/// and this release's form): `answer` is what it says to whoever connects, if anything.
/// `None` when this test cannot run one (not root, or no Python).
async fn foreign_listener(
    address: &str,
    names: &[String],
    answer: &str,
) -> Option<tokio::process::Child> {
    use std::os::unix::fs::MetadataExt as _;
    use tokio::io::AsyncBufReadExt as _;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        eprintln!("skipped: another user's listener needs root");
        return None;
    }
    let script = format!(
        "import socket, sys, threading\n\
         def serve(s):\n\
         \x20   while True:\n\
         \x20       c, _ = s.accept()\n\
         \x20       if {answer:?}: c.sendall({answer:?}.encode())\n\
         \x20       threading.Thread(target=lambda c=c: c.recv(1), daemon=True).start()\n\
         for n in sys.argv[1:]:\n\
         \x20   s = socket.socket(socket.AF_UNIX)\n\
         \x20   s.bind('\\0' + n)\n\
         \x20   s.listen()\n\
         \x20   threading.Thread(target=serve, args=(s,), daemon=True).start()\n\
         print('ready', flush=True)\n\
         sys.stdin.read()\n"
    );
    let mut command = tokio::process::Command::new("python3");
    command
        .arg("-c")
        .arg(script)
        .args(names)
        .uid(65534)
        .gid(65534)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let Ok(mut child) = command.spawn() else {
        eprintln!("skipped: no python3");
        return None;
    };
    let mut ready = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(
        ready.next_line().await.unwrap().as_deref(),
        Some("ready"),
        "the listener on {address} did not start"
    );
    Some(child)
}

/// A lease that cannot listen for revocations (here its socket name is too long, as a
/// test build can make it) cannot be revoked: the hand-over fails, and the pause is
/// undone and reported failed.
#[tokio::test]
async fn a_lease_that_cannot_listen_is_a_failed_hand_over() {
    bounded(async {
        let pod = Pod::start().await;
        let x = pod.addr().to_string();
        let too_long = "x".repeat(200);
        let run = crate::util::scalar_admin_env(
            &["-c", "pause", "-a", &x, "--max-hold", "1m"],
            &[("SCALAR_ADMIN_LEASE_SUFFIX", &too_long)],
        )
        .await;
        run.assert_status(1);
        assert!(
            run.stderr.contains("could not be made revocable"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("rolled back: no pod is left paused by this run"),
            "{}",
            run.stderr
        );
        assert!(!pod.gate().is_paused());
    })
    .await
}

/// A lease holds a listener and a connection per pod, and needs room to answer
/// revocations: a guardian whose open-files limit cannot hold them refuses the hand-over
/// before it listens, and the pause is unpaused and reported failed.
#[tokio::test]
async fn a_lease_without_the_open_files_for_its_pods_is_a_failed_hand_over() {
    bounded(async {
        // 30 pods fit the tool under 100 open files (30 + 64), not the lease (90 + 64).
        let pods = Pod::start_many(30).await;
        let script = format!(
            "ulimit -n 100 && exec {} -c pause -a {} --max-hold 1m",
            crate::exec::BIN,
            list(&pods)
        );
        let run = start_program("bash", &["-c", &script]).wait().await;
        run.assert_status(1);
        assert!(
            run.stderr.contains("the lease cannot reach every pod")
                && run.stderr.contains("`ulimit -n 154`"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("rolled back: no pod is left paused by this run"),
            "{}",
            run.stderr
        );
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

/// This process's uid.
fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// Another user's listener on a pod's lease names never passes for a lease (one that
/// claims this user in its name and answers `ok` is not believed: the real lease is
/// revoked by UNPAUSE and ends), and a lease of another user, which this user cannot
/// revoke and whose guardian could end a later pause, makes a PAUSE refuse with nothing
/// sent, even when its listener's backlog is full (it is never connected to).
#[tokio::test]
async fn another_users_listener_never_passes_for_a_lease_and_a_pause_refuses_beside_it() {
    bounded(async {
        let mut pod = Pod::start().await;
        let x = pod.addr().to_string();
        let (status, _, lease) = pause_with_lease(&x, "10m", "foreign").await;
        assert_eq!(status, 0);
        let liar = [format!("scalar-admin-lease/{x}/{}/liar", uid())];
        let Some(_liar) = foreign_listener(&x, &liar, "ok\n").await else {
            scalar_admin(&["-c", "unpause", "-a", &x]).await.success();
            return;
        };
        let mute = [format!("scalar-admin-lease/{x}/65534/mute")];
        let Some(_mute) = foreign_listener(&x, &mute, "").await else {
            return;
        };
        let run = scalar_admin(&["-c", "unpause", "-a", &x]).await.success();
        assert!(run.stderr.contains("another user"), "{}", run.stderr);
        until_contains(&lease, "the lease ends").await;
        assert!(!pod.gate().is_paused());
        pod.take_calls();
        let run = scalar_admin(&["-c", "pause", "-a", &x]).await;
        run.assert_status(1);
        assert!(
            run.stderr.contains("a pause lease of another user holds")
                && run.stderr.contains("no Pause was sent"),
            "{}",
            run.stderr
        );
        assert!(!pod.gate().is_paused());
        assert!(
            !pod.take_calls()
                .iter()
                .any(|c| matches!(c, Call::Pause { .. }))
        );
    })
    .await
}

/// A lease of another user (an operator's `sudo scalar-admin -c pause --max-hold`) is
/// real: this user's UNPAUSE goes on (and says so), but a PAUSE right after it is
/// refused, since that lease's end would end it.
#[tokio::test]
async fn a_lease_of_another_user_is_never_left_to_end_this_users_pause() {
    bounded(async {
        if uid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let pod = Pod::start().await;
        let x = pod.addr().to_string();
        let dir = crate::exec::scratch("foreign-lease");
        let log = dir.join("lease.log");
        let status = tokio::process::Command::new(crate::exec::BIN)
            .args(["-c", "pause", "-a", &x, "--max-hold", "3s"])
            .env_remove("RUST_LOG")
            .current_dir(&dir)
            .uid(65534)
            .gid(65534)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .await
            .unwrap();
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(pod.gate().is_paused());
        let run = scalar_admin(&["-c", "unpause", "-a", &x]).await.success();
        assert!(run.stderr.contains("another user"), "{}", run.stderr);
        assert!(!pod.gate().is_paused());
        let run = scalar_admin(&["-c", "pause", "-a", &x]).await;
        run.assert_status(1);
        assert!(run.stderr.contains("no Pause was sent"), "{}", run.stderr);
        assert!(!pod.gate().is_paused());
        // Its lease ends by itself, with nothing of this user's to end.
        until_contains(&log, "guardian:").await;
    })
    .await
}

/// A pod that answers the Pause that someone else's pause holds it leaves the guardian's
/// list before the rollback: a tool SIGKILLed during that rollback leaves the other
/// pause alone.
#[tokio::test]
async fn a_pod_that_reports_someone_elses_pause_leaves_the_guardian_before_the_rollback() {
    bounded(async {
        let mut x = Pod::builder().ignore_unpause().start().await;
        let mut y = HostilePod::start(Fault::ForeignPauseInProgress).await;
        let list = format!("{},{}", x.addr(), y.addr());
        let child = start_scalar_admin(&[
            "-c",
            "window",
            "-a",
            &list,
            "--duration",
            "1s",
            "--attempts",
            "1",
            "--rollback-timeout",
            "20s",
        ]);
        // The tool's rollback has begun: X received its Unpause (which it ignores).
        while x.next_call().await.0 != Call::Unpause {}
        let before = y.take_calls();
        assert!(!before.contains(&Call::Unpause), "{before:?}");
        kill(child.pid(), "KILL");
        let run = child.wait().await;
        let after = y.take_calls();
        assert!(!after.contains(&Call::Unpause), "{after:?}\n{}", run.stderr);
        assert!(
            y.is_paused(),
            "someone else's pause was ended\n{}",
            run.stderr
        );
    })
    .await
}

/// A pod that answers that someone else's pause holds it leaves the guardian the moment
/// its answer is in, not when the whole fan-out ends: the tool SIGKILLed while another
/// pod's Pause still drains leaves that pod to its owner, and the guardian unpauses only
/// the other.
#[tokio::test]
async fn a_pod_that_reports_someone_elses_pause_leaves_the_guardian_as_its_answer_arrives() {
    use tokio::io::AsyncBufReadExt as _;
    bounded(async {
        let draining = Pod::start().await;
        let work = draining.begin_work();
        let mut foreign = HostilePod::start(Fault::ForeignPauseInProgress).await;
        let list = format!("{},{}", draining.addr(), foreign.addr());
        let mut child = crate::util::start_scalar_admin_env(
            &[
                "-c",
                "window",
                "-a",
                &list,
                "--duration",
                "1s",
                "--attempts",
                "1",
            ],
            &[("RUST_LOG", "scalar_admin=debug")],
        );
        let mut lines = tokio::io::BufReader::new(child.take_stderr()).lines();
        let foreign_addr = foreign.addr().to_string();
        // The guardian's own word that it let go of the foreign pod.
        let mut seen = String::new();
        loop {
            let Some(line) = lines.next_line().await.unwrap() else {
                panic!("the guardian never let go of {foreign_addr}:\n{seen}");
            };
            if line.contains("guardian: not this run's to unpause") && line.contains(&foreign_addr)
            {
                break;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        kill(child.pid(), "KILL");
        drop(work);
        let mut rest = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            rest.push_str(&line);
            rest.push('\n');
        }
        child.wait().await;
        assert!(rest.contains("guardian: rolled back"), "{rest}");
        assert_eq!(
            foreign
                .take_calls()
                .iter()
                .filter(|c| **c == Call::Unpause)
                .count(),
            0,
            "{rest}"
        );
        assert!(
            foreign.is_paused(),
            "someone else's pause was ended\n{rest}"
        );
        assert!(!draining.gate().is_paused(), "{rest}");
    })
    .await
}

/// The guardian reaches a TLS pod with the CA the tool read once (`<(cat ca.pem)`),
/// from its link: SIGKILL during the hold, and the pod is unpaused, confirmed.
#[tokio::test]
async fn the_guardian_unpauses_a_tls_pod_with_a_ca_read_once() {
    bounded(async {
        let ca = Ca::new("test CA");
        let cert = ca.server_cert(&["pod.test"]);
        let mut pod = Pod::start_tls(&cert).await;
        let dir = crate::exec::scratch("tls-guardian");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.cert_pem()).unwrap();
        let script = format!(
            "exec {} -c window -a {} --duration 10m --tls --override-authority pod.test \
             --ca-root-cert-path <(cat {})",
            crate::exec::BIN,
            pod.addr(),
            ca_path.display()
        );
        let child = start_program("bash", &["-c", &script]);
        pod.next_pause().await;
        pod.gate().wait_for(true).await;
        kill(child.pid(), "KILL");
        let run = child.wait().await;
        assert!(!pod.gate().is_paused(), "left paused\n{}", run.stderr);
        assert!(
            run.stderr
                .contains("guardian: rolled back: no pod is left paused by this run"),
            "{}",
            run.stderr
        );
    })
    .await
}

/// A chatty `--exec` while stderr is stalled never crowds out the tool's own lines: the
/// relay may fill only half the queue, so the failure and its recovery command are
/// there when stderr is read again (the control: a quiet command).
#[tokio::test]
async fn an_exec_flood_never_crowds_out_the_failure_and_recovery_lines() {
    flood_then_failure(3_000_000).await;
    flood_then_failure(3_000).await;
}

async fn flood_then_failure(bytes: usize) {
    bounded(async {
        use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
        let stuck = Pod::builder().ignore_unpause().start().await;
        let list = stuck.addr().to_string();
        let flood = format!("head -c {bytes} /dev/zero | tr '\\0' x | fold -w 100");
        let mut child = start_scalar_admin(&[
            "-c",
            "window",
            "-a",
            &list,
            "--duration",
            "100ms",
            "--rollback-timeout",
            "1s",
            "--no-guardian",
            "--output",
            "json",
            "--exec",
            &flood,
        ]);
        // stderr stalls until the window's result is on stdout (its last line closes the
        // JSON document; the failure text is queued right after), then is read to its
        // end, while the exit's flush still waits for it.
        let mut stderr = child.take_stderr();
        let mut stdout = tokio::io::BufReader::new(child.take_stdout()).lines();
        let mut document = String::new();
        while let Some(line) = stdout.next_line().await.unwrap() {
            document.push_str(&line);
            if line == "}" {
                break;
            }
        }
        let mut err = Vec::new();
        let _ = stderr.read_to_end(&mut err).await;
        child.wait().await.assert_status(1);
        stuck.gate().unpause();
        let err = String::from_utf8_lossy(&err);
        let own: Vec<&str> = err.lines().filter(|l| !l.starts_with("exec: ")).collect();
        assert!(
            own.iter().any(|l| l.contains("to unpause them run:")),
            "{bytes}: the tool's own lines: {own:#?}\nstdout:\n{document}"
        );
    })
    .await
}
