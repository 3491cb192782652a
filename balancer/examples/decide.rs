//! A fixed scheduling workload for instruction counts: 10,000 agents (a
//! third with two 80 GiB GPUs, a third with one 24 GiB GPU, a third
//! CPU-only, half of them busy), one round, 1,000 jobs placed, a tenth of
//! them needing a 40 GiB GPU. Deterministic, so `valgrind --tool=callgrind`
//! gives the same count for the same binary:
//!
//! ```sh
//! cargo build --release -p fleet-balancer --example decide
//! valgrind --tool=callgrind --callgrind-out-file=decide.out target/release/examples/decide
//! ```

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

fn main() {
    let agents: Vec<AgentView> = (0..10_000)
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
            a
        })
        .collect();
    let mut policy = Composite::new(Weights::default());
    let mut round = Round::new(agents, &mut policy, 0);
    let mut placed = 0;
    for n in 0..1_000 {
        let requires = if n % 10 == 0 {
            Requirements {
                gpus: Some(1),
                gpu_mem_mb: Some(40_960),
                ..Requirements::default()
            }
        } else {
            Requirements::default()
        };
        let job = QueuedJob {
            id: format!("job-{n}"),
            kind: "sleep".into(),
            args: "{}".into(),
            rank: 1,
            timeout_ms: Some(1000),
            requires,
            last_agent: None,
        };
        if round.place(&job, None).is_some() {
            placed += 1;
        }
    }
    println!("placed {placed} of 1000");
}
