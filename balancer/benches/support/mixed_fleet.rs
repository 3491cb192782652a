//! The simulated fleet the placement bench and `examples/decide.rs` share:
//! a third of the agents with two 80 GiB GPUs, a third with one 24 GiB
//! GPU, a third CPU-only, every other one with two of its four slots busy;
//! and the jobs they place on it.

use fleet_balancer::scheduling::AgentView;
use fleet_balancer::state::QueuedJob;
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

/// `n` agents, `agent-0` … `agent-(n-1)`.
pub fn mixed_fleet(n: usize) -> Vec<AgentView> {
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
            a
        })
        .collect()
}

/// A queued `sleep` job needing `requires`.
pub fn sleep_job(id: &str, requires: Requirements) -> QueuedJob {
    QueuedJob {
        id: id.into(),
        kind: "sleep".into(),
        args: "{}".into(),
        rank: 1,
        timeout_ms: Some(1000),
        requires,
        last_agent: None,
    }
}

/// What a job needing one 40 GiB GPU asks for.
pub fn one_40gib_gpu() -> Requirements {
    Requirements {
        gpus: Some(1),
        gpu_mem_mb: Some(40_960),
        ..Requirements::default()
    }
}
