//! Memory and time of a whole `scalar-admin -c window` over one Helm release of N pods
//! found through the Kubernetes API (`-r`), beside the same pods given as addresses
//! (`-a`), against a real kube-apiserver and etcd (the test rig's, `tests/rig/src/kube.rs`):
//!
//! ```sh
//! cargo build --release --bin scalar-admin
//! tests/k8s/netns.sh cargo run --release -p scalar-admin-bench --features kubernetes \
//!     --bin kube-memory -- --pods 1000,5000
//! ```
//!
//! Options: `--runs R` (3 per N and way; the median is printed), `--hold D` (`1s`),
//! `--binary PATH` (the `scalar-admin` to measure; by default the one next to this
//! binary, built by the first command).
//!
//! The pods are the rig's admin pods, in this process, each on its own 198.18.x.y
//! address (hence `tests/k8s/netns.sh`); the release has them in a Deployment, its
//! headless Service and EndpointSlices, and an Envoy pod. Each run is a process of its
//! own under `/usr/bin/time`, whose peak RSS (`%M`, the kernel's `ru_maxrss`) is the
//! tool's, and whose time outside the hold is its wall time less the hold: for `-r`
//! the discovery and snapshot before the Pause, the checks before the Unpause and the
//! snapshot after it; for `-a` only the connections and calls.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use scalar_admin_bench::raise_open_files;
use scalar_admin_rig::KubeCluster;
use scalar_admin_rig::kube::User;

/// One run's figures.
struct Run {
    rss_kb: u64,
    wall: Duration,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().skip_while(|a| *a != flag).nth(1).cloned();
    let sizes: Vec<usize> = value("--pods")
        .unwrap_or_else(|| "1000,5000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("--pods 1000,5000"))
        .collect();
    let runs: usize = value("--runs").map_or(3, |v| v.parse().expect("--runs"));
    let hold = value("--hold").unwrap_or_else(|| "1s".into());
    let hold_ms: u64 = hold
        .strip_suffix("ms")
        .map(|v| v.parse().expect("--hold"))
        .or_else(|| {
            hold.strip_suffix('s')
                .map(|v| v.parse::<u64>().expect("--hold") * 1000)
        })
        .expect("--hold 1s or 500ms");
    let binary = value("--binary")
        .map(PathBuf::from)
        .unwrap_or_else(|| scalar_admin_bench::sibling("scalar-admin"));
    assert!(binary.exists(), "{} not built", binary.display());
    raise_open_files();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let Some(cluster) = KubeCluster::shared().await else {
            panic!("no control plane: run under tests/k8s/netns.sh with tests/k8s/build.sh built");
        };
        println!("Binary: {}", binary.display());
        println!(
            "Each figure the median of {runs} runs of `-c window --duration {hold}`; peak RSS of the \
             tool's process, time outside the hold = wall time - {hold}.\n"
        );
        println!("| pods | way | peak RSS MB (min-max) | time outside the hold s (min-max) |");
        println!("|---:|---|---:|---:|");
        for &n in &sizes {
            let ns = cluster.namespace(&format!("bench-{n}")).await;
            let pods = cluster.admin_pods(n).await;
            ns.release("big", "scalardb-cluster").create(&pods).await;
            let kubeconfig = ns.kubeconfig(User::Admin);
            let kubeconfig = kubeconfig.to_str().unwrap().to_owned();
            // At most ~1000 addresses per `-a`: one argument may hold 128 KiB.
            let lists: Vec<String> = pods
                .chunks(1000)
                .map(|c| {
                    c.iter()
                        .map(|p| p.addr().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            let mut by_release = vec!["-r".to_owned(), "big".to_owned()];
            by_release.extend(["--kubeconfig".to_owned(), kubeconfig]);
            let mut by_address = Vec::new();
            for list in lists {
                by_address.extend(["-a".to_owned(), list]);
            }
            for (way, selection) in [("-r", &by_release), ("-a", &by_address)] {
                let mut figures = Vec::new();
                for _ in 0..runs {
                    let binary = binary.clone();
                    let mut command = vec!["-c".to_owned(), "window".to_owned()];
                    command.extend(["--duration".to_owned(), hold.clone()]);
                    command.extend(selection.iter().cloned());
                    let run = tokio::task::spawn_blocking(move || timed(&binary, &command))
                        .await
                        .expect("run");
                    figures.push(run);
                }
                let mut rss: Vec<u64> = figures.iter().map(|r| r.rss_kb).collect();
                rss.sort_unstable();
                let mut outside: Vec<f64> = figures
                    .iter()
                    .map(|r| r.wall.as_secs_f64() - hold_ms as f64 / 1000.0)
                    .collect();
                outside.sort_by(f64::total_cmp);
                let mb = |kb: u64| kb as f64 / 1024.0;
                println!(
                    "| {n} | `{way}` | {:.1} ({:.1}-{:.1}) | {:.2} ({:.2}-{:.2}) |",
                    mb(rss[rss.len() / 2]),
                    mb(rss[0]),
                    mb(rss[rss.len() - 1]),
                    outside[outside.len() / 2],
                    outside[0],
                    outside[outside.len() - 1],
                );
            }
            drop(pods);
        }
    });
}

/// Runs `binary args` under `/usr/bin/time`, which reports the child's peak RSS.
fn timed(binary: &std::path::Path, args: &[String]) -> Run {
    let report = std::env::temp_dir().join(format!("kube-memory-{}.time", std::process::id()));
    let started = std::time::Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(binary)
        .args(args)
        .output()
        .expect("run /usr/bin/time (GNU time)");
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "{} {}: {}",
        binary.display(),
        args.iter().take(4).cloned().collect::<Vec<_>>().join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let rss_kb = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .expect("GNU time's %M");
    Run { rss_kb, wall }
}
