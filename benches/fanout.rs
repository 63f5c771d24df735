//! Criterion benchmarks of the fan-out against pods in a separate `pod-fleet` process.
//!
//! Run with `cargo bench -p scalar-admin-bench`. The pods live in another process so
//! that only the client's work is measured here. Figures depend on the machine; the
//! README's table names the one it came from.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use scalar_admin::{ClientConfig, Fleet, PauseOptions};
use scalar_admin_bench::{FleetProcess, build_binaries, raise_open_files};

const SIZES: [usize; 4] = [1, 10, 100, 1000];

fn runtime() -> tokio::runtime::Runtime {
    // The same runtime as the `scalar-admin` binary.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Pause then Unpause on every pod of an already connected fleet: the fan-out alone.
fn pause_unpause(c: &mut Criterion, fleet: &FleetProcess) {
    let rt = runtime();
    let mut group = c.benchmark_group("pause_unpause");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let mut clients = rt.block_on(Fleet::connect(fleet.targets(n), ClientConfig::default()));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                rt.block_on(async {
                    clients.pause(PauseOptions::default()).await.unwrap();
                    clients.unpause().await.unwrap();
                })
            })
        });
    }
    group.finish();
}

/// Connect, Pause, Unpause: what one `scalar-admin` pause and unpause cost together,
/// connection setup included.
fn connect_pause_unpause(c: &mut Criterion, fleet: &FleetProcess) {
    let rt = runtime();
    let mut group = c.benchmark_group("connect_pause_unpause");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let targets = fleet.targets(n);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut clients =
                        Fleet::connect(targets.clone(), ClientConfig::default()).await;
                    clients.pause(PauseOptions::default()).await.unwrap();
                    clients.unpause().await.unwrap();
                })
            })
        });
    }
    group.finish();
}

/// One CheckPaused on one connected pod: the baseline latency of a single call.
fn single_call(c: &mut Criterion, fleet: &FleetProcess) {
    let rt = runtime();
    let mut clients = rt.block_on(Fleet::connect(fleet.targets(1), ClientConfig::default()));
    c.bench_function("single_check_paused", |b| {
        b.iter(|| rt.block_on(clients.check_paused()).unwrap())
    });
}

fn benches(c: &mut Criterion) {
    raise_open_files();
    let (pod_fleet, _) = build_binaries();
    let fleet = FleetProcess::start(&pod_fleet, 1000);
    single_call(c, &fleet);
    pause_unpause(c, &fleet);
    connect_pause_unpause(c, &fleet);
}

criterion_group!(fanout, benches);
criterion_main!(fanout);
