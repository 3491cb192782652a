//! GPU discovery through cudarc, safe on machines without a driver.
//!
//! cudarc loads libcuda at run time and panics when it is missing, so
//! every entry point here first asks whether the library is present.

use cudarc::driver::CudaContext;
use fleet_protocol::GpuInfo;

/// Whether the CUDA driver library can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only probes for the shared library; calls nothing in it.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether NVRTC (run-time kernel compilation) can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: as above.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether cuBLAS can be loaded (cudarc panics on a missing library).
pub fn cublas_present() -> bool {
    // SAFETY: as above.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

/// Every usable GPU; empty without a driver or devices.
pub fn detect() -> Vec<GpuInfo> {
    if !driver_present() {
        tracing::info!("no CUDA driver found; this agent offers no GPU work");
        return Vec::new();
    }
    let count = match CudaContext::device_count() {
        Ok(n) => n.max(0) as usize,
        Err(e) => {
            tracing::warn!(error = %e, "CUDA driver present but cannot count devices");
            return Vec::new();
        }
    };
    (0..count)
        .filter_map(|index| match describe(index) {
            Ok(gpu) => Some(gpu),
            Err(e) => {
                tracing::warn!(gpu = index, error = %e, "cannot query GPU; skipping it");
                None
            }
        })
        .collect()
}

fn describe(index: usize) -> Result<GpuInfo, cudarc::driver::DriverError> {
    let ctx = CudaContext::new(index)?;
    let (major, minor) = ctx.compute_capability()?;
    Ok(GpuInfo {
        index: index as u32,
        name: ctx.name()?,
        memory_mb: (ctx.total_mem()? / (1024 * 1024)) as u64,
        compute_capability: format!("{major}.{minor}"),
        gemm_tflops: None,
        memory_gb_per_s: None,
    })
}

/// Each usable GPU's index and UUID (NVML's text form), for telemetry.
pub fn uuids() -> Vec<(u32, String)> {
    if !driver_present() {
        return Vec::new();
    }
    let count = CudaContext::device_count().unwrap_or(0).max(0) as usize;
    (0..count)
        .filter_map(|i| {
            let ctx = CudaContext::new(i).ok()?;
            let uuid = ctx.uuid().ok()?;
            let bytes: [u8; 16] = uuid.bytes.map(|b| b as u8);
            Some((i as u32, crate::telemetry::uuid_text(&bytes)))
        })
        .collect()
}

/// The driver's CUDA version, e.g. 12080; `None` without a driver.
pub fn driver_version() -> Option<i32> {
    if !driver_present() {
        return None;
    }
    let mut version = 0;
    // SAFETY: the library is present (checked above) and `version` is a
    // valid out-pointer for the duration of the call.
    let status = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) };
    (status == cudarc::driver::sys::CUresult::CUDA_SUCCESS).then_some(version)
}
