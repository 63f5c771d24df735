//! `--journal`: a line when each window opens and closes; `-c HISTORY` lists the
//! restorable windows; a journal that cannot be written stops the window before any
//! Pause; two runs sharing a journal both keep their windows.

use std::io::Write as _;

use scalar_admin_rig::Pod;
use serde_json::Value;

use crate::exec::{list, scratch};
use crate::util::{bounded, scalar_admin, start_scalar_admin};

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn the_journal_records_every_window_and_history_lists_the_valid_ones_newest_first() {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let list = list(&pods);
        let dir = scratch("journal");
        let journal = dir.join("windows.jsonl");
        let j = journal.to_str().unwrap();
        let window = |exec: &'static str| {
            let list = list.clone();
            let j = j.to_owned();
            async move {
                scalar_admin(&[
                    "-c", "window", "-a", &list, "--duration", "50ms", "--journal", &j, "--exec",
                    exec,
                ])
                .await
            }
        };
        window("true").await.success();
        window("exit 1").await.assert_status(1);
        // A run that died during its hold: an "open" line with no "close".
        let mut file = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
        writeln!(
            file,
            r#"{{"event":"open","run":"1-1","attempt":1,"pause_completed_at_us":1,"pause_completed_at":"1970-01-01T00:00:00.000Z","pods":["x"]}}"#
        )
        .unwrap();
        writeln!(file, "not json at all").unwrap();
        drop(file);
        // The next run reports both, and goes on.
        let run = window("true").await.success();
        assert!(run.stderr.contains("was never closed"), "{}", run.stderr);
        assert!(run.stderr.contains("not a journal entry, skipped"), "{}", run.stderr);

        let entries = lines(&journal);
        let events: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e["event"].as_str().unwrap(),
                    e["verdict"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            events,
            [
                ("open", "-"),
                ("close", "VALID"),
                ("open", "-"),
                ("close", "INVALID"),
                ("open", "-"),
                ("open", "-"),
                ("close", "VALID"),
            ]
        );
        let (open, close) = (&entries[0], &entries[1]);
        assert_eq!(open["pods"].as_array().unwrap().len(), 2);
        assert_eq!(open["pause_completed_at_us"], close["pause_completed_at_us"]);
        assert_eq!(close["exec"]["exit_code"], 0);
        let (start, mid, end) = (
            close["pause_completed_at_us"].as_i64().unwrap(),
            close["midpoint_us"].as_i64().unwrap(),
            close["unpause_started_at_us"].as_i64().unwrap(),
        );
        assert!(start < mid && mid < end, "{close}");
        assert!(
            entries[3]["reasons"][0]
                .as_str()
                .unwrap()
                .contains("the backup action failed: --exec exit 1"),
            "{}",
            entries[3]
        );

        // HISTORY needs no pod flags and contacts no pod.
        let run = scalar_admin(&["-c", "history", "--journal", j, "--output", "json"])
            .await
            .success();
        assert!(run.stderr.contains("was never closed"), "{}", run.stderr);
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        let windows = doc["windows"].as_array().unwrap();
        assert_eq!(windows.len(), 2, "only the VALID ones: {doc}");
        assert_eq!(windows[0]["midpoint_us"], entries[6]["midpoint_us"], "newest first");
        assert_eq!(windows[1]["midpoint_us"], entries[1]["midpoint_us"]);
        assert_eq!(windows[1]["pods"].as_array().unwrap().len(), 2);

        let run = scalar_admin(&["-c", "history", "--journal", j, "--time-zone", "Asia/Tokyo"])
            .await
            .success();
        let rows: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(rows.len(), 3, "a header and two windows:\n{}", run.stdout);
        assert!(rows[0].starts_with("RESTORE POINT (MIDPOINT)"), "{}", run.stdout);
        assert!(rows[1].contains("+09:00[Asia/Tokyo]"), "{}", run.stdout);
        assert!(rows[1].ends_with("exit 0"), "{}", run.stdout);
        assert!(pods.iter().all(|p| !p.gate().is_paused()));

        // HISTORY without --journal is a usage error; WINDOW still needs its pods.
        scalar_admin(&["-c", "history"]).await.assert_status(2);
        scalar_admin(&["-c", "window", "--journal", j]).await.assert_status(2);
    })
    .await
}

#[tokio::test]
async fn an_unwritable_journal_fails_the_window_before_any_pause() {
    bounded(async {
        let mut pods = Pod::start_many(2).await;
        let list = list(&pods);
        let dir = scratch("journal-dir");
        let d = dir.to_str().unwrap();
        let run = scalar_admin(&["-c", "window", "-a", &list, "--journal", d]).await;
        run.assert_status(1);
        let stderr: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(stderr.len(), 1, "{}", run.stderr);
        assert!(
            stderr[0].contains(d) && stderr[0].contains("nothing was paused"),
            "{}",
            run.stderr
        );
        for pod in &mut pods {
            assert_eq!(pod.take_calls(), [], "no pod was contacted");
        }
    })
    .await
}

#[tokio::test]
async fn the_journal_retains_the_last_n_windows() {
    bounded(async {
        let pods = Pod::start_many(1).await;
        let list = list(&pods);
        let dir = scratch("journal-retain");
        let journal = dir.join("j.jsonl");
        let j = journal.to_str().unwrap();
        let mut firsts = Vec::new();
        for _ in 0..3 {
            scalar_admin(&[
                "-c",
                "window",
                "-a",
                &list,
                "--duration",
                "10ms",
                "--journal",
                j,
                "--journal-retain",
                "2",
            ])
            .await
            .success();
            firsts.push(lines(&journal).last().unwrap()["pause_completed_at_us"].clone());
        }
        let entries = lines(&journal);
        assert_eq!(entries.len(), 4, "two windows, open and close each");
        assert_eq!(entries[1]["pause_completed_at_us"], firsts[1]);
        assert_eq!(entries[3]["pause_completed_at_us"], firsts[2]);
        assert!(
            !std::fs::read_dir(&dir)
                .unwrap()
                .any(|e| { e.unwrap().file_name().to_string_lossy().contains(".tmp-") })
        );
    })
    .await
}

/// Reads a FIFO to its end on a thread of its own: the open waits for a writer, and the
/// test's runtime (its pods) must go on meanwhile.
async fn read_fifo(path: &std::path::Path) -> String {
    let (done, text) = tokio::sync::oneshot::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = done.send(std::fs::read_to_string(path));
    });
    text.await
        .expect("the reader thread")
        .expect("read the fifo")
}

/// Writes a FIFO on a thread of its own: the open waits for a reader.
async fn write_fifo(path: &std::path::Path, text: &'static str) {
    let (done, written) = tokio::sync::oneshot::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = done.send(std::fs::write(path, text));
    });
    written
        .await
        .expect("the writer thread")
        .expect("write the fifo");
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

/// A journal already at its bound (100 windows, the default `--journal-retain`); a first
/// run holds its window (its `--exec` waits on a FIFO) while a second run opens, closes
/// and trims, and HISTORY reads: both windows end with their close lines, and neither the
/// second run nor HISTORY calls the first one's window "never closed" while it is held.
#[tokio::test]
async fn two_overlapping_windows_on_a_full_journal_both_close_and_the_held_one_is_never_called_dead()
 {
    bounded(async {
        let pods = Pod::start_many(2).await;
        let (first_pods, second_pods) = (list(&pods[..1]), list(&pods[1..]));
        let dir = scratch("journal-overlap");
        let journal = dir.join("windows.jsonl");
        let j = journal.to_str().unwrap();
        let mut file = std::fs::File::create(&journal).unwrap();
        for i in 0..100 {
            let t = (i + 1) * 1_000_000;
            writeln!(
                file,
                r#"{{"event":"open","run":"prefilled-{i}","attempt":1,"pause_completed_at_us":{t},"pause_completed_at":"-","pods":["x"]}}"#
            )
            .unwrap();
            writeln!(
                file,
                r#"{{"event":"close","run":"prefilled-{i}","attempt":1,"pause_completed_at_us":{t},"unpause_started_at_us":{},"midpoint_us":{},"length_us":10,"verdict":"VALID","reasons":[],"exec":null}}"#,
                t + 10,
                t + 5
            )
            .unwrap();
        }
        drop(file);
        let (ready, release) = (dir.join("ready"), dir.join("release"));
        mkfifo(&ready);
        mkfifo(&release);

        // The first run: paused, its "open" line written, its command waiting. The
        // command checks first that it did not inherit the run's lock file: a child that
        // kept it would make a dead run look alive.
        let script = format!(
            "ls -l /proc/$$/fd | grep -q 'jsonl[.]run-' && exit 9; echo held > {}; read x < {}",
            ready.display(),
            release.display()
        );
        let window = |list: &str, exec: Option<&str>| {
            let mut args = vec!["-c", "window", "-a", list, "--duration", "10ms", "--journal", j];
            args.extend(exec.iter().flat_map(|e| ["--exec", e]));
            args.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        let args = window(&first_pods, Some(&script));
        let first = start_scalar_admin(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(read_fifo(&ready).await, "held\n");

        // The second run, whole, and its trim (102 windows, bound 100), while the first
        // one holds.
        let args = window(&second_pods, None);
        let second = scalar_admin(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .success();
        assert!(!second.stderr.contains("never closed"), "{}", second.stderr);
        let still_open = "is still open: the run that opened it is still running";
        assert!(second.stderr.contains(still_open), "{}", second.stderr);
        let history = scalar_admin(&["-c", "history", "--journal", j, "--output", "json"])
            .await
            .success();
        assert!(!history.stderr.contains("never closed"), "{}", history.stderr);
        assert!(history.stderr.contains(still_open), "{}", history.stderr);

        // The first run closes, after the second one's trim renamed a new file over the
        // journal.
        write_fifo(&release, "go\n").await;
        let first = first.wait().await.success();
        assert!(!first.stderr.contains("never closed"), "{}", first.stderr);

        // Both windows are there, opened and closed VALID, and the journal is at its
        // bound again: the two oldest windows went.
        let entries = lines(&journal);
        let ours: Vec<(&str, &str)> = entries
            .iter()
            .filter(|e| !e["run"].as_str().unwrap().starts_with("prefilled-"))
            .map(|e| {
                (
                    e["event"].as_str().unwrap(),
                    e["verdict"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            ours,
            [
                ("open", "-"),
                ("open", "-"),
                ("close", "VALID"),
                ("close", "VALID"),
            ],
            "the first run's open, the second run's window, the first run's close"
        );
        let runs: std::collections::HashSet<&str> =
            entries.iter().map(|e| e["run"].as_str().unwrap()).collect();
        assert_eq!(runs.len(), 100, "--journal-retain 100");
        assert!(!runs.contains("prefilled-0") && !runs.contains("prefilled-1"));
        assert!(runs.contains("prefilled-2"));

        // Afterwards nothing is open, and no file is left beside the journal but its lock.
        let history = scalar_admin(&["-c", "history", "--journal", j, "--output", "json"])
            .await
            .success();
        assert_eq!(history.stderr, "");
        let doc: Value = serde_json::from_str(&history.stdout).unwrap();
        assert_eq!(doc["windows"].as_array().unwrap().len(), 100);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".windows.jsonl.lock", "ready", "release", "windows.jsonl"]
        );
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}
