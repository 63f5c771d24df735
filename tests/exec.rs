//! A backup action during the hold: the library's `Window::run_with`, and the CLI's
//! `--exec` (environment, output, timeout, `--on-error`, signals).

use std::path::{Path, PathBuf};
use std::time::Duration;

use scalar_admin::window::{Finding, Group, OnActionError, Paused, Window};
use scalar_admin::{ClientConfig, Fleet};
use scalar_admin_rig::Pod;
use serde_json::Value;

use crate::util::{bounded, scalar_admin, start_scalar_admin};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_scalar-admin");

/// A fresh directory for one test's files.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scalar-admin-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn list(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| p.addr().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn window_args<'a>(list: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-c", "window", "-a", list, "--duration", "100ms"];
    args.extend_from_slice(extra);
    args
}

/// Whether the process is gone: no `/proc/<pid>`, or a zombie waiting for its reaper.
/// SIGKILL is final, but the kernel tears the process down asynchronously: this waits
/// for that, within a bound.
pub(crate) async fn gone(pid: &str) -> bool {
    for _ in 0..200 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) => {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                if state.starts_with('Z') || state.starts_with('X') {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn exec_runs_while_every_pod_is_paused_with_the_windows_facts() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let list = list(&pods);
        let dir = scratch("exec-env");
        let d = dir.display();
        let script = format!(
            "env > {d}/env; {BIN} -c check_paused -a {list} > {d}/check; \
             cp \"$SCALAR_ADMIN_PODS_FILE\" {d}/pods.json; echo hello from the backup; echo oops >&2"
        );
        let run = scalar_admin(&window_args(&list, &["--exec", &script]))
            .await
            .success();
        // The command's own CheckPaused saw every pod paused.
        let check: Value = serde_json::from_str(&read(&dir.join("check"))).unwrap();
        let states: Vec<&Value> = check.as_object().unwrap().values().collect();
        assert_eq!(states.len(), 2, "{check}");
        assert!(states.iter().all(|s| *s == "true"), "{check}");

        let env = read(&dir.join("env"));
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} not in {env}"))
                .to_owned()
        };
        // The same instant as the printed "Pause completed at <iso> UTC (<ms>)".
        let ms = var("SCALAR_ADMIN_PAUSE_COMPLETED_MS");
        let at = var("SCALAR_ADMIN_PAUSE_COMPLETED_AT");
        assert!(
            run.stdout
                .contains(&format!("Pause completed at {at} UTC ({ms})")),
            "{at} {ms}\n{}",
            run.stdout
        );
        assert!(at.ends_with('Z') && at.contains('T'), "{at}");
        assert_eq!(var("SCALAR_ADMIN_ATTEMPT"), "1");
        let pods_file = var("SCALAR_ADMIN_PODS_FILE");
        assert!(!Path::new(&pods_file).exists(), "the pods file is removed after");
        let pods_json = read(&dir.join("pods.json"));
        let doc: Value = serde_json::from_str(&pods_json).unwrap();
        assert_eq!(doc["attempt"], 1);
        assert_eq!(doc["groups"][0]["pods"].as_array().unwrap().len(), 2);
        for pod in &pods {
            assert!(pods_json.contains(&pod.addr().to_string()), "{pods_json}");
        }

        assert!(run.stderr.contains("exec: hello from the backup"), "{}", run.stderr);
        assert!(run.stderr.contains("exec: oops"), "{}", run.stderr);
        assert!(
            run.stdout.lines().any(|l| l.starts_with("Exec: exit 0 in ")),
            "{}",
            run.stdout
        );
        assert!(run.stdout.lines().any(|l| l == "Verdict: VALID"), "{}", run.stdout);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn exec_failure_fails_the_window_unless_on_error_continue() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let list = list(&pods);
        // The argument-vector form, after `--`.
        let run = scalar_admin(&window_args(&list, &["--", "sh", "-c", "exit 3"])).await;
        run.assert_status(1);
        assert!(
            run.stdout.lines().any(|l| l == "Verdict: INVALID"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains("the backup action failed: --exec exit 3"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("Exec: exit 3 in "), "{}", run.stdout);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));

        let run = scalar_admin(&window_args(
            &list,
            &["--exec", "exit 3", "--on-error", "fail", "--output", "json"],
        ))
        .await;
        run.assert_status(1);
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(doc["windows"][0]["verdict"], "INVALID");
        assert_eq!(doc["windows"][0]["exec"]["exit_code"], 3);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));

        let run = scalar_admin(&window_args(
            &list,
            &[
                "--exec",
                "exit 3",
                "--on-error",
                "continue",
                "--output",
                "json",
            ],
        ))
        .await
        .success();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        let w = &doc["windows"][0];
        assert_eq!(w["verdict"], "VALID", "{w}");
        assert_eq!(w["exec"]["exit_code"], 3);
        assert_eq!(w["exec"]["timed_out"], false);
        assert!(w["exec"]["duration_us"].as_u64().is_some());
        assert_eq!(w["detail"]["action"]["ok"], false);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn exec_is_killed_at_its_timeout_with_its_children() {
    bounded(async {
        let pods = Pod::start_many(1).await;
        let list = list(&pods);
        let dir = scratch("exec-timeout");
        let script = format!(
            "sleep 30 & echo $! > {}/child; echo $$ > {}/shell; wait",
            dir.display(),
            dir.display()
        );
        let started = std::time::Instant::now();
        let run = scalar_admin(&window_args(
            &list,
            &["--exec", &script, "--exec-timeout", "500ms"],
        ))
        .await;
        run.assert_status(1);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not the child's 30 s"
        );
        assert!(
            run.stdout.contains("Exec: killed at its 0.5 s timeout in "),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.lines().any(|l| l == "Verdict: INVALID"),
            "{}",
            run.stdout
        );
        for file in ["child", "shell"] {
            let pid = read(&dir.join(file)).trim().to_owned();
            assert!(gone(&pid).await, "{file} {pid} still runs");
        }
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn sigterm_during_exec_kills_it_and_unpauses() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let list = list(&pods);
        let dir = scratch("exec-sigterm");
        let child_file = dir.join("child");
        let script = format!(
            "sleep 30 & echo $! > {}.tmp; mv {0}.tmp {0}; wait",
            child_file.display()
        );
        let args = vec![
            "-c",
            "window",
            "-a",
            &list,
            "--duration",
            "10m",
            "--exec",
            &script,
        ];
        let child = start_scalar_admin(&args);
        for pod in &mut pods {
            pod.next_pause().await;
        }
        // The command started once every pod was paused; it says so with its file.
        let mut waited = 0;
        while !child_file.exists() {
            assert!(waited < 1000, "the command never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert!(pods.iter().all(|p| p.gate().is_paused()));
        child.signal("TERM");
        let run = child.wait().await;
        run.assert_status(1);
        assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
        let pid = read(&child_file).trim().to_owned();
        assert!(gone(&pid).await, "the command's child {pid} still runs");
    })
    .await
}

#[tokio::test]
async fn exec_flags_only_apply_to_window() {
    bounded(async {
        let run = scalar_admin(&["-c", "pause", "-a", "127.0.0.1:1", "--exec", "true"]).await;
        run.assert_status(2);
        let run = scalar_admin(&[
            "-c",
            "window",
            "-a",
            "127.0.0.1:1",
            "--on-error",
            "continue",
        ])
        .await;
        run.assert_status(2);
        // WINDOW still needs its pods.
        let run = scalar_admin(&["-c", "window", "--exec", "true"]).await;
        run.assert_status(2);
    })
    .await
}

#[tokio::test]
async fn the_library_action_sees_every_pod_paused_and_its_error_is_reported() {
    bounded(async {
        let pods = Pod::start_many(3).await;
        let targets: Vec<_> = pods.iter().map(Pod::target).collect();
        let window = Window::new([Group::addresses(targets)]).hold(Duration::from_millis(50));
        let action = |paused: Paused| async move {
            assert_eq!(paused.attempt(), 1);
            let mine: Vec<_> = paused.pods().cloned().collect();
            assert_eq!(mine.len(), 3);
            // Its own fleet, as a backup tool would check before its snapshot.
            let mut fleet = Fleet::connect(mine, ClientConfig::default()).await;
            let check = fleet.check_paused().await.map_err(|e| e.to_string())?;
            assert!(check.pods().iter().all(|p| p.paused() == Some(true)));
            assert!(paused.pause_completed_at() <= std::time::SystemTime::now());
            Err::<(), _>("snapshot failed: disk full".to_owned())
        };
        let windows = window
            .run_with(std::future::pending::<()>(), action)
            .await
            .unwrap();
        let w = &windows[0];
        assert!(!w.verdict().is_valid());
        assert!(matches!(
            w.verdict().findings(),
            [Finding::ActionFailed { error }] if error == "snapshot failed: disk full"
        ));
        let outcome = w.action().unwrap();
        assert_eq!(outcome.error(), Some("snapshot failed: disk full"));
        assert!(pods.iter().all(|p| !p.gate().is_paused()));

        // Continue: reported, and the verdict comes from the checks alone; the hold
        // lasts as long as the action.
        let windows = window
            .clone()
            .on_action_error(OnActionError::Continue)
            .run_with(std::future::pending::<()>(), |_: Paused| async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err::<(), _>("late and failed")
            })
            .await
            .unwrap();
        let w = &windows[0];
        assert!(w.verdict().is_valid(), "{:?}", w.verdict());
        assert_eq!(w.action().unwrap().error(), Some("late and failed"));
        assert!(w.length() >= Duration::from_millis(200), "{:?}", w.length());
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn a_cancel_during_the_library_action_drops_it_and_unpauses() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let targets: Vec<_> = pods.iter().map(Pod::target).collect();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let mut started_tx = Some(started_tx);
        let window = Window::new([Group::addresses(targets)]).hold(Duration::from_millis(10));
        let err = window
            .run_with(
                async {
                    let _ = started_rx.await;
                },
                |_: Paused| {
                    let tx = started_tx.take();
                    async move {
                        let _ = tx.map(|tx| tx.send(()));
                        std::future::pending::<Result<(), String>>().await
                    }
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, scalar_admin::Error::Interrupted { .. }),
            "{err}"
        );
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}
