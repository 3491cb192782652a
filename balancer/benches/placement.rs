//! The scheduling decision's cost as the fleet grows: building a round's
//! candidates from the directory's agents (shared snapshots, as
//! `Directory::available` returns them) and placing one job, at 10,
//! 100, 1,000 and 10,000 agents (a third with two 80 GiB GPUs, a third
//! with one 24 GiB GPU, a third CPU-only; half of them busy), for a CPU
//! job and for a job needing a 40 GiB GPU.
//!
//! ```sh
//! cargo bench -p fleet-balancer --bench placement
//! ```

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fleet_balancer::directory::AgentView;
use fleet_balancer::placement::Round;
use fleet_balancer::policy::{Composite, Weights};
use fleet_balancer::store::QueuedJob;
use fleet_protocol::{Capabilities, GpuInfo, Requirements};

fn gpu(index: u32, memory_mb: u64, cc: &str) -> GpuInfo {
    GpuInfo {
        index,
        name: "gpu".into(),
        memory_mb,
        compute_capability: cc.into(),
        gemm_tflops: None,
        memory_gb_per_s: None,
    }
}

/// As the directory hands them to a round: shared snapshots.
fn fleet(n: usize) -> Vec<Arc<AgentView>> {
    (0..n)
        .map(|i| {
            let gpus = match i % 3 {
                0 => vec![gpu(0, 81_920, "9.0"), gpu(1, 81_920, "9.0")],
                1 => vec![gpu(0, 24_576, "8.9")],
                _ => vec![],
            };
            let mut a = AgentView::new(
                &format!("agent-{i}"),
                4,
                Capabilities {
                    gpus,
                    kinds: vec!["sleep".into(), "echo".into()],
                    ..Capabilities::default()
                },
                0,
            );
            a.leases = (i % 2) as u32 * 2;
            Arc::new(a)
        })
        .collect()
}

fn job(requires: Requirements) -> QueuedJob {
    QueuedJob {
        id: "job".into(),
        kind: "sleep".into(),
        args: "{}".into(),
        rank: 1,
        timeout_ms: Some(1000),
        requires,
        last_agent: None,
    }
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("place_one_job");
    let cpu_job = job(Requirements::default());
    let gpu_job = job(Requirements {
        gpus: Some(1),
        gpu_mem_mb: Some(40_960),
        ..Requirements::default()
    });
    for n in [10, 100, 1_000, 10_000] {
        let agents = fleet(n);
        for (name, j) in [("cpu", &cpu_job), ("gpu40", &gpu_job)] {
            group.bench_with_input(BenchmarkId::new(name, n), &agents, |b, agents| {
                b.iter(|| {
                    let mut policy = Composite::new(Weights::default());
                    let mut round = Round::new(agents.clone(), &mut policy, 0);
                    black_box(round.place(j, None))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, placement);
criterion_main!(benches);
