//! `--journal`: a line when each window opens and closes; `-c HISTORY` lists the
//! restorable windows; a journal that cannot be written stops the window before any
//! Pause.

use std::io::Write as _;

use scalar_admin_rig::Pod;
use serde_json::Value;

use crate::exec::{list, scratch};
use crate::util::{bounded, scalar_admin};

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
async fn the_journal_keeps_the_last_n_windows() {
    bounded(async {
        let pods = Pod::start_many(1).await;
        let list = list(&pods);
        let dir = scratch("journal-keep");
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
                "--journal-keep",
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
