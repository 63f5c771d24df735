//! Soak: 10 000 pause/unpause cycles against 10 pods in one process, with no failed call
//! and no growth in memory or open file descriptors. Ignored by default, since it must
//! run alone to measure this process; CI runs it as its own step:
//!
//! ```sh
//! cargo test --all-features --test e2e -- --ignored --exact soak::ten_thousand_cycles
//! ```

use std::time::{Duration, Instant};

use scalar_admin::{ClientConfig, Fleet, PauseOptions};
use scalar_admin_rig::Pod;

const CYCLES: usize = 10_000;
const WARM_UP: usize = 1_000;

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
#[ignore = "run alone: cargo test --test e2e -- --ignored --exact soak::ten_thousand_cycles"]
async fn ten_thousand_cycles() {
    crate::util::subscribe();
    let run = async {
        let mut pods = Vec::new();
        for _ in 0..10 {
            pods.push(Pod::start().await);
        }
        let mut fleet = Fleet::connect(
            pods.iter().map(Pod::target).collect(),
            ClientConfig::default(),
        )
        .await;
        let mut after_warm_up = (0, 0);
        let start = Instant::now();
        for cycle in 1..=CYCLES {
            fleet
                .pause(PauseOptions::default())
                .await
                .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            fleet
                .unpause()
                .await
                .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            if cycle % 100 == 0 {
                // The rig's pods keep every call for the tests; let them go.
                for pod in &mut pods {
                    pod.take_calls();
                }
            }
            if cycle == WARM_UP {
                after_warm_up = (rss_kb(), open_fds());
            }
        }
        let elapsed = start.elapsed();
        let (rss_end, fds_end) = (rss_kb(), open_fds());
        let (rss_warm, fds_warm) = after_warm_up;
        println!(
            "soak: {CYCLES} cycles x 10 pods in {elapsed:.1?} ({:.0} us per pause+unpause); \
             RSS {rss_warm} kB after {WARM_UP} cycles, {rss_end} kB at the end; \
             open fds {fds_warm} then {fds_end}",
            elapsed.as_micros() as f64 / CYCLES as f64
        );
        assert_eq!(fds_end, fds_warm, "file descriptors leaked");
        assert!(
            rss_end <= rss_warm + 2048,
            "memory grew from {rss_warm} kB to {rss_end} kB"
        );
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    };
    tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("soak within 10 minutes");
}
