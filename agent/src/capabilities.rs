//! What this machine offers: CPUs, memory, GPUs, and the workload kinds
//! that follow from them.

use fleet_protocol::{Capabilities, GpuInfo};

use crate::gpu;
use crate::workloads;

/// Detects this machine's capabilities; `tags` come from the operator.
/// `simulated` GPUs replace detection (they run no CUDA work).
pub fn detect(tags: &[String], simulated: Option<Vec<GpuInfo>>, exec: bool) -> Capabilities {
    let (gpus, kinds) = match simulated {
        Some(gpus) => (gpus, workloads::offered(false, exec)),
        None => {
            let gpus = gpu::detect();
            let kinds = workloads::offered(!gpus.is_empty(), exec);
            (gpus, kinds)
        }
    };
    Capabilities {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_mb: total_memory_mb(),
        cuda_driver: if gpus.is_empty() {
            None
        } else {
            gpu::driver_version()
        },
        gpus,
        kinds,
        tags: tags.iter().filter(|t| !t.is_empty()).cloned().collect(),
    }
}

/// Total memory from /proc/meminfo; 0 where that cannot be read.
fn total_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}
