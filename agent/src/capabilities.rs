//! What this machine offers: CPUs, memory, GPUs, and the workload kinds
//! that follow from them.

use fleet_protocol::{Capabilities, GpuInfo};

use crate::gpu;
use crate::workloads::{self, cuda};
use serde_json::json;

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

/// Measures each real GPU (a 4096³ f16 GEMM and a 64M-element vector
/// add) and records the figures in its description. A GPU whose run fails
/// keeps no figures; the failure is logged.
pub fn benchmark(gpus: &mut [GpuInfo]) {
    for g in gpus.iter_mut() {
        let index = g.index as usize;
        let gemm = json!({"m": 4096, "n": 4096, "k": 4096, "dtype": "f16"});
        match cuda::run(cuda::matmul::KIND, index, &gemm) {
            Ok(r) => g.gemm_tflops = r["tflop_per_s"].as_f64(),
            Err(e) => tracing::warn!(gpu = index, error = %e, "start-up GEMM benchmark failed"),
        }
        match cuda::run(cuda::vector_add::KIND, index, &json!({"n": 1u64 << 26})) {
            Ok(r) => g.memory_gb_per_s = r["gb_per_s"].as_f64(),
            Err(e) => {
                tracing::warn!(gpu = index, error = %e, "start-up bandwidth benchmark failed")
            }
        }
        tracing::info!(gpu = index, name = %g.name, tflops = ?g.gemm_tflops, gb_per_s = ?g.memory_gb_per_s, "GPU measured");
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
