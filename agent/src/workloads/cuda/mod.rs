//! CUDA workloads, run on the device indices the balancer assigned.
//!
//! Each GPU gets one [`Device`] for the agent's lifetime: its context, a
//! stream, and the kernels compiled for it so far (NVRTC runs once per
//! kernel per device, not per job). Every entry point runs on a blocking
//! thread (the caller uses `spawn_blocking`) and turns CUDA failures into
//! the job's error text: a compile error carries NVRTC's log, and running
//! out of GPU memory says so (the job is retried, elsewhere when possible),
//! never crashing the agent.

pub mod compile;
pub mod kernel;
pub mod matmul;
pub mod module_cache;
pub mod overrun;
pub mod reduce;
pub mod saxpy;
pub mod vector_add;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};

use module_cache::ModuleCache;

/// Every CUDA kind the agent runs.
pub const KINDS: &[&str] = &[
    vector_add::KIND,
    saxpy::KIND,
    reduce::KIND,
    matmul::KIND,
    kernel::KIND,
];

/// The built-in kernels: kind, CUDA C source and entry point.
pub const BUILT_IN_KERNELS: &[(&str, &str, &str)] = &[
    (vector_add::KIND, vector_add::SOURCE, vector_add::ENTRY),
    (saxpy::KIND, saxpy::SOURCE, saxpy::ENTRY),
    (reduce::KIND, reduce::SOURCE, reduce::ENTRY),
];

/// Timed runs of a bandwidth kernel, after one untimed warm-up run.
pub const TIMED_RUNS: u32 = 10;

/// Runs CUDA kind `kind` on device `index` (blocking).
pub fn run(
    kind: &str,
    index: usize,
    args: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    match kind {
        vector_add::KIND => vector_add::run_json(index, args),
        saxpy::KIND => saxpy::run_json(index, args),
        reduce::KIND => reduce::run_json(index, args),
        matmul::KIND if !crate::gpu::cublas_present() => {
            Err("cuBLAS is not installed on this agent".into())
        }
        matmul::KIND => matmul::run_json(index, args),
        kernel::KIND => kernel::run_json(index, args),
        other => Err(format!("unknown CUDA kind {other:?}")),
    }
}

/// One GPU as the agent uses it.
pub struct Device {
    pub index: usize,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    /// What kernels are compiled for (`sm_90` on an H100).
    pub target: compile::Target,
    modules: Mutex<ModuleCache<Arc<CudaModule>>>,
    blas: Mutex<Option<Arc<CudaBlas>>>,
}

fn devices() -> parking_lot::MutexGuard<'static, HashMap<usize, Arc<Device>>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<Device>>>> = OnceLock::new();
    DEVICES.get_or_init(Default::default).lock()
}

/// GPUs a kernel fault broke, with what broke them.
fn broken() -> parking_lot::MutexGuard<'static, HashMap<usize, String>> {
    static BROKEN: OnceLock<Mutex<HashMap<usize, String>>> = OnceLock::new();
    BROKEN.get_or_init(Default::default).lock()
}

/// What the agent does once a kernel fault broke a GPU's context.
pub type FaultHook = fn(usize, &str);
static FAULT_HOOK: OnceLock<FaultHook> = OnceLock::new();

/// How long the agent lives on after a fault: time for the faulting
/// attempt's failure to be reported.
const EXIT_AFTER_FAULT: std::time::Duration = std::time::Duration::from_secs(2);

/// Replaces the exit after a fault (tests record it instead).
#[cfg(test)]
pub fn on_fault(hook: FaultHook) {
    let _ = FAULT_HOOK.set(hook);
}

fn exit_soon(index: usize, why: &str) {
    let why = why.to_string();
    std::thread::spawn(move || {
        std::thread::sleep(EXIT_AFTER_FAULT);
        overrun::exit_to_free(index, &format!("a kernel fault broke its context ({why})"));
    });
}

/// A kernel's fault (an illegal address, say) left GPU `index`'s context
/// with a sticky error: every later CUDA call in it fails. Nothing inside
/// the process repairs that reliably. On an H100 (2026-11-26), neither
/// releasing the context (cuBLAS's runtime keeps a reference of its own)
/// nor resetting it (the next kernel faulted again) gave a working GPU
/// back; the process's exit does. So the GPU refuses further jobs, and
/// the agent exits with status 75 shortly after, once the faulting
/// attempt's failure had time to be reported; its supervisor restarts it
/// and the balancer re-queues what it held.
pub fn fault(index: usize, why: &str) {
    devices().remove(&index);
    broken().insert(index, why.to_string());
    tracing::error!(
        gpu = index,
        why,
        "a kernel fault broke the GPU's context; the agent will restart"
    );
    FAULT_HOOK.get().copied().unwrap_or(exit_soon)(index, why);
}

/// The device with this index, opened on first use. Callers must have
/// checked that the driver is present ([`crate::gpu::driver_present`]).
pub fn device(index: usize) -> Result<Arc<Device>, String> {
    if let Some(why) = broken().get(&index) {
        return Err(format!(
            "GPU {index} is out of use until the agent restarts: a kernel fault broke its context ({why})"
        ));
    }
    let mut devices = devices();
    if let Some(d) = devices.get(&index) {
        return Ok(d.clone());
    }
    let ctx = CudaContext::new(index).map_err(|e| cuda_error(e, index))?;
    let (major, minor) = ctx.compute_capability().map_err(|e| cuda_error(e, index))?;
    let stream = ctx.default_stream();
    let d = Arc::new(Device {
        index,
        ctx,
        stream,
        target: compile::target_for(major, minor),
        modules: Mutex::new(ModuleCache::new(module_cache::CAPACITY)),
        blas: Mutex::new(None),
    });
    devices.insert(index, d.clone());
    Ok(d)
}

impl Device {
    /// The function `entry` of `source`, compiled once per device (keyed
    /// by the source itself, so a user's kernel is cached as well).
    pub fn function(&self, source: &str, entry: &str) -> Result<CudaFunction, String> {
        let module = {
            let mut modules = self.modules.lock();
            match modules.get(source) {
                Some(m) => m,
                None => {
                    let compiled = compile::compile(source, &self.target)?;
                    let m = self
                        .ctx
                        .load_module(compiled.into_module_image())
                        .map_err(|e| cuda_error(e, self.index))?;
                    modules.insert(source.to_string(), m.clone());
                    m
                }
            }
        };
        module
            .load_function(entry)
            .map_err(|e| format!("kernel entry point {entry:?} not found: {e}"))
    }

    /// This device's cuBLAS handle, created on first use: creating one
    /// costs milliseconds and a workspace allocation, too much per job.
    pub fn blas(&self) -> Result<Arc<CudaBlas>, String> {
        let mut blas = self.blas.lock();
        if let Some(b) = blas.as_ref() {
            return Ok(b.clone());
        }
        let b = Arc::new(CudaBlas::new(self.stream.clone()).map_err(|e| format!("cuBLAS: {e:?}"))?);
        *blas = Some(b.clone());
        Ok(b)
    }

    /// Fails before any allocation when the device lacks `bytes` of free
    /// memory: the attempt fails cleanly and is retried elsewhere.
    pub fn reserve(&self, bytes: u64) -> Result<(), String> {
        let cuda = |e| cuda_error(e, self.index);
        let (free, _) = self.ctx.mem_get_info().map_err(cuda)?;
        if bytes <= free as u64 {
            return Ok(());
        }
        // Buffers are allocated and freed in stream order (cudarc uses
        // the driver's memory pool): what the last jobs freed goes back to
        // the driver, and shows as free, only at the stream's next
        // synchronization. Only when short, synchronize and look again.
        self.stream.synchronize().map_err(cuda)?;
        let (free, total) = self.ctx.mem_get_info().map_err(cuda)?;
        if bytes > free as u64 {
            return Err(format!(
                "GPU out of memory: needs {} MiB, {} MiB free of {} MiB on GPU {}",
                bytes >> 20,
                free >> 20,
                total >> 20,
                self.index
            ));
        }
        Ok(())
    }

    /// The mean milliseconds of one `launch` over [`TIMED_RUNS`], after an
    /// untimed warm-up (the first launch of a module pays for loading it,
    /// and the clocks rise). The launches queue back to back between two
    /// synchronizes, so the host's timer measures the device's work.
    pub fn time_launches(
        &self,
        mut launch: impl FnMut() -> Result<(), DriverError>,
    ) -> Result<f64, String> {
        let cuda = |e| cuda_error(e, self.index);
        launch().map_err(cuda)?;
        self.stream.synchronize().map_err(cuda)?;
        let began = Instant::now();
        for _ in 0..TIMED_RUNS {
            launch().map_err(cuda)?;
        }
        self.stream.synchronize().map_err(cuda)?;
        Ok(began.elapsed().as_secs_f64() * 1000.0 / f64::from(TIMED_RUNS))
    }
}

/// Whether a driver error leaves the context broken for good (a sticky
/// error: every later call in it fails), as a kernel's bad access or a
/// device-side assert does; a refused launch (a bad configuration) does
/// not.
pub fn is_sticky(e: &DriverError) -> bool {
    use cudarc::driver::sys::CUresult::*;
    matches!(
        e.0,
        CUDA_ERROR_ILLEGAL_ADDRESS
            | CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CUDA_ERROR_MISALIGNED_ADDRESS
            | CUDA_ERROR_INVALID_ADDRESS_SPACE
            | CUDA_ERROR_INVALID_PC
            | CUDA_ERROR_LAUNCH_FAILED
            | CUDA_ERROR_HARDWARE_STACK_ERROR
            | CUDA_ERROR_ASSERT
            | CUDA_ERROR_LAUNCH_TIMEOUT
            | CUDA_ERROR_ECC_UNCORRECTABLE
    )
}

/// Threads in a block of the built-in bandwidth kernels.
pub const BLOCK_THREADS: u32 = 256;

/// The launch of a built-in bandwidth kernel over `n` f32 elements: one
/// float4 a thread (the kernels load 16 bytes at a time, which is what
/// brings a memory-bound kernel near the card's bandwidth), at most
/// `max_blocks` blocks; the kernels' grid-stride loops cover the rest.
pub fn float4_launch(n: u64, max_blocks: u32) -> cudarc::driver::LaunchConfig {
    let quads = u32::try_from(n.div_ceil(4)).unwrap_or(u32::MAX).max(1);
    cudarc::driver::LaunchConfig {
        grid_dim: (quads.div_ceil(BLOCK_THREADS).min(max_blocks), 1, 1),
        block_dim: (BLOCK_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A driver error as job error text; out-of-memory is named as such.
pub fn cuda_error(e: DriverError, index: usize) -> String {
    if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        format!("GPU out of memory on GPU {index}: {e}")
    } else {
        format!("CUDA error on GPU {index}: {e}")
    }
}

/// A fixed pseudo-random sequence in [-1, 1) (splitmix64), for inputs
/// that the CPU reference can recompute.
pub fn inputs(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The GPUs the fault hook was called for, in tests.
    pub static FAULTS: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());

    pub fn record_fault(index: usize, why: &str) {
        FAULTS.lock().push((index, why.to_string()));
    }

    #[test]
    fn a_gpu_a_fault_broke_refuses_work_and_the_agent_is_told_to_restart() {
        on_fault(record_fault);
        // Index 97: no GPU of this machine, and no driver call is made.
        fault(97, "CUDA error on GPU 97: illegal address");
        let e = device(97).err().unwrap_or_default();
        assert!(
            e.contains("GPU 97 is out of use until the agent restarts"),
            "{e}"
        );
        let faults = FAULTS.lock().clone();
        assert!(
            faults
                .iter()
                .any(|(i, why)| *i == 97 && why.contains("illegal")),
            "{faults:?}"
        );
    }

    #[test]
    fn only_errors_that_break_the_context_count_as_faults() {
        use cudarc::driver::sys::CUresult;
        assert!(is_sticky(&DriverError(
            CUresult::CUDA_ERROR_ILLEGAL_ADDRESS
        )));
        assert!(is_sticky(&DriverError(CUresult::CUDA_ERROR_ASSERT)));
        assert!(!is_sticky(&DriverError(CUresult::CUDA_ERROR_INVALID_VALUE)));
        assert!(!is_sticky(&DriverError(CUresult::CUDA_ERROR_OUT_OF_MEMORY)));
    }

    #[test]
    fn float4_launch_gives_each_thread_four_elements_up_to_the_block_cap() {
        use fleet_protocol::workload_args::cuda_sizes::MAX_N;
        let blocks = |n, cap| float4_launch(n, cap).grid_dim.0;
        assert_eq!(blocks(1, 4096), 1);
        assert_eq!(blocks(4 * 256, 4096), 1);
        // One element past a block's share needs a second block, which
        // holds the n mod 4 tail.
        assert_eq!(blocks(4 * 256 + 1, 4096), 2);
        assert_eq!(blocks(1 << 20, 4096), 1024);
        assert_eq!(blocks(MAX_N, 4096), 4096);
        assert_eq!(blocks(MAX_N, 1 << 16), 1 << 16);
        let config = float4_launch(1000, 4096);
        assert_eq!(config.block_dim, (BLOCK_THREADS, 1, 1));
        assert_eq!(BLOCK_THREADS % 32, 0, "reduce_sum needs whole warps");
    }

    #[test]
    fn inputs_are_repeatable_and_bounded() {
        let a = inputs(7, 1000);
        assert_eq!(a, inputs(7, 1000));
        assert!(a.iter().all(|x| (-1.0..1.0).contains(x)));
        assert_ne!(a, inputs(8, 1000));
    }
}
