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
use fleet_balancer::scheduling::AgentView;
use fleet_balancer::scheduling::Round;
use fleet_balancer::scheduling::{Composite, Weights};
use fleet_protocol::Requirements;

#[path = "support/mixed_fleet.rs"]
mod mixed_fleet;

/// As the directory hands them to a round: shared snapshots.
fn fleet(n: usize) -> Vec<Arc<AgentView>> {
    mixed_fleet::mixed_fleet(n)
        .into_iter()
        .map(Arc::new)
        .collect()
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("place_one_job");
    let cpu_job = mixed_fleet::sleep_job("job", Requirements::default());
    let gpu_job = mixed_fleet::sleep_job("job", mixed_fleet::one_40gib_gpu());
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
