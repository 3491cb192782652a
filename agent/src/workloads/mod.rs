//! The workloads an agent can run, by kind.
//!
//! Each kind lives in its own file and turns JSON arguments into a JSON
//! result or an error string that becomes the attempt's error. Every run is
//! bounded by the job's timeout.

pub mod cuda;
mod echo;
mod error;
pub mod exec;
mod flaky;
pub mod process_groups;
mod sleep;

#[cfg(test)]
mod gpu_tests;

use std::time::Duration;

use fleet_protocol::Assignment;
use serde_json::Value;

use crate::gpu;
use crate::simulate::Simulation;
use crate::telemetry::Telemetry;
pub use error::WorkloadError;
use exec::ExecPolicy;

/// The kinds this agent offers: GPU kinds only with a usable GPU, `exec`
/// only when the operator allowed commands.
pub fn offered(has_gpu: bool, exec: bool) -> Vec<String> {
    let mut kinds = vec!["sleep".to_string(), "echo".to_string(), "flaky".to_string()];
    if exec {
        kinds.push("exec".to_string());
    }
    if has_gpu && gpu::nvrtc_present() {
        kinds.extend(
            cuda::KINDS
                .iter()
                .filter(|k| **k != cuda::matmul::KIND || crate::gpu::cublas_present())
                .map(|k| k.to_string()),
        );
    }
    kinds
}

/// Dispatches assignments to their workload.
pub struct Workloads {
    has_gpu: bool,
    /// Fault injection for tests: leave job timeouts to the balancer.
    enforce_timeouts: bool,
    /// A simulated agent's jobs only take time.
    simulation: Option<Simulation>,
    exec: ExecPolicy,
    telemetry: Telemetry,
    /// GPUs still held by CUDA jobs whose attempts ended.
    overruns: cuda::overrun::Overruns,
}

impl Workloads {
    /// The workloads of this machine; `real_gpus` false (for an agent
    /// declaring simulated GPUs) keeps every CUDA call away.
    /// `overrun_grace`: how long a CUDA job may hold its GPU after its
    /// attempt ended before the agent exits to free it.
    pub fn detect(
        enforce_timeouts: bool,
        exec: ExecPolicy,
        real_gpus: bool,
        overrun_grace: Duration,
    ) -> Workloads {
        let has_gpu = real_gpus && gpu::driver_present() && gpu::nvrtc_present();
        let uuids = if real_gpus { gpu::uuids() } else { Vec::new() };
        Workloads {
            has_gpu,
            enforce_timeouts,
            simulation: None,
            exec: exec.with_gpu_uuids(uuids.clone()),
            telemetry: if has_gpu {
                Telemetry::open(uuids)
            } else {
                Telemetry::none()
            },
            overruns: cuda::overrun::Overruns::exiting(overrun_grace),
        }
    }

    /// Workloads of a simulated agent.
    pub fn simulated(simulation: Simulation) -> Workloads {
        Workloads {
            has_gpu: false,
            enforce_timeouts: true,
            simulation: Some(simulation),
            exec: ExecPolicy::default(),
            telemetry: Telemetry::none(),
            // Simulated agents run no CUDA.
            overruns: cuda::overrun::Overruns::exiting(Duration::MAX),
        }
    }

    /// Each local GPU's free memory, temperature and utilization, for
    /// heartbeats (none without a driver, or for simulated GPUs; no
    /// temperature or utilization without NVML).
    pub fn gpu_status(&self, gpus: &[fleet_protocol::GpuInfo]) -> Vec<fleet_protocol::GpuStatus> {
        if !self.has_gpu || self.simulation.is_some() {
            return Vec::new();
        }
        gpus.iter()
            .map(|g| {
                let (temperature_c, utilization_pct) = self.telemetry.read(g.index);
                fleet_protocol::GpuStatus {
                    index: g.index,
                    free_mb: cuda::device(g.index as usize)
                        .ok()
                        .and_then(|d| d.ctx.mem_get_info().ok())
                        .map(|(free, _)| (free >> 20) as u64),
                    temperature_c,
                    utilization_pct,
                }
            })
            .collect()
    }

    /// Runs one assignment within its timeout.
    pub async fn run(&self, a: &Assignment) -> Result<Value, WorkloadError> {
        let limit = Duration::from_millis(a.timeout_ms.max(1));
        let work = async {
            if let Some(sim) = &self.simulation {
                return Ok(sim.run(a).await?);
            }
            Ok(match a.kind.as_str() {
                "sleep" => sleep::run(&a.args).await?,
                "echo" => echo::run(&a.args)?,
                "flaky" => flaky::run(&a.args, a.attempt).await?,
                "exec" => {
                    let request = exec::parse(&a.args, &self.exec)?;
                    exec::run(request, &a.gpus, &self.exec).await?
                }
                kind if self.has_gpu && cuda::KINDS.contains(&kind) => {
                    let (kind, args) = (kind.to_string(), a.args.clone());
                    let device = a.gpus.first().copied().unwrap_or(0) as usize;
                    self.overruns
                        .run(device, &a.job_id, move || cuda::run(&kind, device, &args))
                        .await?
                }
                other => return Err(WorkloadError::UnknownKind(other.to_string())),
            })
        };
        if !self.enforce_timeouts {
            return work.await;
        }
        match tokio::time::timeout(limit, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(WorkloadError::TimedOut(a.timeout_ms)),
        }
    }
}
