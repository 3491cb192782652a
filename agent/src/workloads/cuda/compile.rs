//! Run-time kernel compilation with NVRTC, which needs no GPU.
//!
//! Kernels are compiled to PTX for the device's own architecture (or the
//! newest one this NVRTC knows that the device can run), so a user's
//! kernel may use what its GPU offers — double-precision atomics, bf16
//! intrinsics — rather than NVRTC's oldest default. A source that does not
//! compile comes back as NVRTC's log, never as a panic.

use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};

/// What a successful compile produced.
pub struct Compiled {
    pub ptx: Ptx,
    /// The architecture it was compiled for, e.g. `compute_90`; `None`
    /// for NVRTC's default.
    pub arch: Option<String>,
}

impl Compiled {
    /// Whether the PTX defines kernel `entry` (an `extern "C"` name; a C++
    /// name is mangled and will not be found by its plain name).
    pub fn has_entry(&self, entry: &str) -> bool {
        let text = self
            .ptx
            .as_bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        text.contains(&format!(".entry {entry}("))
    }

    /// The PTX's size in bytes.
    pub fn len(&self) -> usize {
        self.ptx.as_bytes().map_or(0, <[u8]>::len)
    }
}

/// Compiles `source` for architecture `arch` (see [`arch_for`]).
pub fn compile(source: &str, arch: Option<&str>) -> Result<Compiled, String> {
    // NVRTC takes the source as a C string; cudarc panics on a NUL.
    if source.contains('\0') {
        return Err("kernel does not compile: the source contains a NUL byte".into());
    }
    let mut options = CompileOptions::default();
    if let Some(arch) = arch {
        options.options.push(format!("--gpu-architecture={arch}"));
    }
    let ptx = compile_ptx_with_opts(source, options).map_err(compile_error)?;
    Ok(Compiled {
        ptx,
        arch: arch.map(str::to_string),
    })
}

/// A compile failure as job error text, with NVRTC's log.
pub fn compile_error(e: CompileError) -> String {
    match e {
        CompileError::CompileError { log, .. } => {
            format!("kernel does not compile:\n{}", log.to_string_lossy())
        }
        other => format!("kernel does not compile: {other:?}"),
    }
}

/// NVRTC's version, e.g. `(13, 0)`; `None` without NVRTC.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    if !crate::gpu::nvrtc_present() {
        return None;
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is present (checked above); both out-pointers are
    // valid for the call.
    let status = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    (status == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
}

/// The architectures this NVRTC can compile for, as `major * 10 + minor`.
fn supported_archs() -> Vec<i32> {
    if !crate::gpu::nvrtc_present() {
        return Vec::new();
    }
    let mut count = 0;
    // SAFETY: NVRTC is present; `count` is a valid out-pointer.
    let status = unsafe { cudarc::nvrtc::sys::nvrtcGetNumSupportedArchs(&mut count) };
    if status != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS || count <= 0 {
        return Vec::new();
    }
    let mut archs = vec![0; count as usize];
    // SAFETY: `archs` holds exactly the number of entries NVRTC reported.
    let status = unsafe { cudarc::nvrtc::sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) };
    if status != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Vec::new();
    }
    archs
}

/// The architecture to compile for on a device of compute capability
/// `major.minor`: the newest this NVRTC supports that the device runs.
pub fn arch_for(major: i32, minor: i32) -> Option<String> {
    pick_arch(&supported_archs(), major * 10 + minor).map(|a| format!("compute_{a}"))
}

/// The largest of `supported` not above `device`. PTX for an older
/// architecture runs on a newer device; the reverse does not load.
fn pick_arch(supported: &[i32], device: i32) -> Option<i32> {
    supported.iter().copied().filter(|a| *a <= device).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_architecture_the_device_can_run() {
        let nvrtc_13 = [75, 80, 86, 87, 89, 90, 100, 103, 110, 120, 121];
        assert_eq!(pick_arch(&nvrtc_13, 90), Some(90));
        // A device newer than this NVRTC knows: its newest older target.
        assert_eq!(pick_arch(&[52, 60, 70, 75, 80, 90], 100), Some(90));
        // A device older than anything it supports: no target at all.
        assert_eq!(pick_arch(&nvrtc_13, 70), None);
        assert_eq!(pick_arch(&[], 90), None);
    }

    #[test]
    fn a_nul_byte_is_refused_before_nvrtc() {
        let e = compile("extern \"C\" __global__ void k() {}\0", None)
            .err()
            .unwrap_or_default();
        assert!(e.contains("NUL"), "{e}");
    }
}
