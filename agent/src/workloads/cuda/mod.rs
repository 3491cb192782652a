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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
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
        matmul::KIND if !cublas_present() => Err("cuBLAS is not installed on this agent".into()),
        matmul::KIND => matmul::run_json(index, args),
        kernel::KIND => kernel::run_json(index, args),
        other => Err(format!("unknown CUDA kind {other:?}")),
    }
}

/// Whether cuBLAS can be loaded (cudarc panics on a missing library).
pub fn cublas_present() -> bool {
    // SAFETY: only probes for the shared library; calls nothing in it.
    unsafe { cudarc::cublas::sys::is_culib_present() }
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
    /// Its context hit a sticky error ([`evict`]).
    faulted: AtomicBool,
}

impl Drop for Device {
    fn drop(&mut self) {
        // cudarc unwraps cublasDestroy's status in Drop, and in a context a
        // fault broke that may fail. The handle must still be dropped, not
        // leaked: it holds the stream, the stream the context, and the
        // driver resets a faulted primary context only once every holder
        // released it. So a faulted device's handle is dropped with its
        // possible panic caught (the handle's fields go either way).
        if self.faulted.load(Ordering::SeqCst) {
            let blas = self
                .blas
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(blas) = blas {
                let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    drop(blas);
                }));
                if dropped.is_err() {
                    tracing::warn!(
                        gpu = self.index,
                        "cuBLAS could not free its handle in a faulted context"
                    );
                }
            }
        }
    }
}

fn devices() -> std::sync::MutexGuard<'static, HashMap<usize, Arc<Device>>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<Device>>>> = OnceLock::new();
    DEVICES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The contexts of devices evicted after a fault, until a fresh context
/// proved healthy. A context is the last thing its device's parts let go
/// of (the stream, the modules and the cuBLAS handle each hold it).
fn faulted() -> std::sync::MutexGuard<'static, HashMap<usize, Weak<CudaContext>>> {
    static FAULTED: OnceLock<Mutex<HashMap<usize, Weak<CudaContext>>>> = OnceLock::new();
    FAULTED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Forgets a device after a fault (a kernel's illegal access leaves its
/// context unusable), so the next job opens a fresh context once every
/// user of the faulted one has let it go.
pub fn evict(index: usize) {
    let mut devices = devices();
    if let Some(gone) = devices.remove(&index) {
        gone.faulted.store(true, Ordering::SeqCst);
        faulted().insert(index, Arc::downgrade(&gone.ctx));
    }
}

/// The device with this index, opened on first use. Callers must have
/// checked that the driver is present ([`crate::gpu::driver_present`]).
///
/// After a fault, the primary context is reset only when its last user
/// releases it: until then no new device is opened (a job gets an error,
/// and is retried), and the first one opened after is tested. If it is
/// still broken, the agent exits to let the driver reset the GPU
/// ([`overrun::exit_to_free`]).
pub fn device(index: usize) -> Result<Arc<Device>, String> {
    let mut devices = devices();
    if let Some(d) = devices.get(&index) {
        return Ok(d.clone());
    }
    let recovering = faulted().get(&index).map(Weak::strong_count);
    if recovering.is_some_and(|users| users > 0) {
        return Err(format!(
            "GPU {index} is still releasing a context a kernel fault broke; retry"
        ));
    }
    if recovering.is_some() {
        // The driver may answer the reset of a broken context with its
        // sticky error and reset it all the same: the probe below decides.
        match reset_primary_context(index) {
            Ok(()) => tracing::info!(gpu = index, "primary context reset after a kernel fault"),
            Err(e) => {
                tracing::warn!(gpu = index, error = %e, "resetting the primary context after a kernel fault reported an error")
            }
        }
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
        faulted: AtomicBool::new(false),
    });
    if recovering.is_some() {
        if let Err(e) = d.probe() {
            overrun::exit_to_free(
                index,
                &format!("its context is still broken after a kernel fault ({e})"),
            );
        }
        tracing::info!(gpu = index, "fresh CUDA context after a kernel fault");
        faulted().remove(&index);
    }
    devices.insert(index, d.clone());
    Ok(d)
}

/// Resets GPU `index`'s primary context after a fault. Letting go of it is
/// not enough: cuBLAS, through the CUDA runtime it carries, keeps a
/// reference of its own for the life of the process, so the driver never
/// resets the context on its last release (seen on an H100, 2026-11-26:
/// after a GEMM and then a faulting kernel, the next context stayed
/// broken). The caller has checked that nothing of ours still uses it.
fn reset_primary_context(index: usize) -> Result<(), String> {
    let cuda = |e| cuda_error(e, index);
    let dev = cudarc::driver::result::device::get(index as i32).map_err(cuda)?;
    // SAFETY: destroys every allocation and all state of the device's
    // primary context; no device, stream, module, buffer or cuBLAS handle
    // of ours refers to it any more (the faulted context's last Arc is
    // gone), and the runtime's own reference is re-initialised on use.
    unsafe { cudarc::driver::sys::cuDevicePrimaryCtxReset_v2(dev) }
        .result()
        .map_err(cuda)
}

impl Device {
    /// The function `entry` of `source`, compiled once per device (keyed
    /// by the source itself, so a user's kernel is cached as well).
    pub fn function(&self, source: &str, entry: &str) -> Result<CudaFunction, String> {
        let module = {
            let mut modules = self
                .modules
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    /// One allocation and a synchronize: fails in a context a fault left
    /// with a sticky error.
    fn probe(&self) -> Result<(), DriverError> {
        let one = self.stream.alloc_zeros::<u8>(1)?;
        self.stream.synchronize()?;
        drop(one);
        self.stream.synchronize()
    }

    /// This device's cuBLAS handle, created on first use: creating one
    /// costs milliseconds and a workspace allocation, too much per job.
    pub fn blas(&self) -> Result<Arc<CudaBlas>, String> {
        let mut blas = self
            .blas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
mod tests {
    use super::*;

    #[test]
    fn inputs_are_repeatable_and_bounded() {
        let a = inputs(7, 1000);
        assert_eq!(a, inputs(7, 1000));
        assert!(a.iter().all(|x| (-1.0..1.0).contains(x)));
        assert_ne!(a, inputs(8, 1000));
    }
}
