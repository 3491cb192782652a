//! Run-time kernel compilation with NVRTC, which needs no GPU.
//!
//! On a GPU, kernels compile straight to machine code (a cubin) for the
//! device's own architecture when this NVRTC knows it: nothing is left
//! for the driver to translate, so an NVRTC newer than the driver still
//! works (the driver would refuse to JIT its newer PTX). Otherwise they
//! compile to PTX for the newest architecture NVRTC knows that the device
//! can run. Either way a user's kernel may use what its GPU offers —
//! double-precision atomics, bf16 intrinsics — rather than NVRTC's oldest
//! default. A source that does not compile comes back as NVRTC's log,
//! never as a panic.

use std::ffi::{c_char, CStr, CString};

use cudarc::nvrtc::{result, sys, Ptx};

/// What to compile for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// PTX for a virtual architecture (`compute_90`), or NVRTC's default.
    Ptx(Option<String>),
    /// Machine code for one real architecture (`sm_90`).
    Cubin(String),
}

impl Target {
    /// The architecture, for messages.
    pub fn describe(&self) -> String {
        match self {
            Target::Ptx(Some(arch)) => format!("{arch} (PTX)"),
            Target::Ptx(None) => "NVRTC's default architecture (PTX)".into(),
            Target::Cubin(arch) => format!("{arch} (cubin)"),
        }
    }

    fn option(&self) -> Option<String> {
        match self {
            Target::Ptx(arch) => arch.as_ref().map(|a| format!("--gpu-architecture={a}")),
            Target::Cubin(arch) => Some(format!("--gpu-architecture={arch}")),
        }
    }
}

/// What a successful compile produced.
pub struct Compiled {
    /// PTX text (NUL-terminated) or a cubin.
    pub image: Vec<u8>,
    pub target: Target,
}

impl Compiled {
    /// Whether the image defines kernel `entry` (an `extern "C"` name; a
    /// C++ name is mangled and will not be found by its plain name).
    pub fn has_entry(&self, entry: &str) -> bool {
        match self.target {
            Target::Ptx(_) => {
                String::from_utf8_lossy(&self.image).contains(&format!(".entry {entry}("))
            }
            // The ELF string table holds each symbol NUL-terminated.
            Target::Cubin(_) => {
                let needle = format!("\0{entry}\0");
                self.image
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            }
        }
    }

    /// The image's size in bytes.
    pub fn len(&self) -> usize {
        self.image.len()
    }

    /// The image as cudarc loads it (`cuModuleLoadData` takes either).
    pub fn into_module_image(self) -> Ptx {
        Ptx::from_binary(self.image)
    }
}

/// Compiles `source` for `target`.
pub fn compile(source: &str, target: &Target) -> Result<Compiled, String> {
    let source = CString::new(source)
        .map_err(|_| "kernel does not compile: the source contains a NUL byte".to_string())?;
    let program = Program::create(&source)?;
    let options: Vec<String> = target.option().into_iter().collect();
    // SAFETY: the program was created above and is destroyed only when
    // `program` drops; the options hold no NUL byte (built here).
    if let Err(e) = unsafe { result::compile_program(program.0, &options) } {
        // SAFETY: as above.
        let log = unsafe { result::get_program_log(program.0) }
            .map(|raw| c_text(&raw))
            .unwrap_or_default();
        return Err(if log.trim().is_empty() {
            format!("kernel does not compile: {e:?}")
        } else {
            format!("kernel does not compile:\n{log}")
        });
    }
    let image = match target {
        // SAFETY: the program compiled.
        Target::Ptx(_) => unsafe { result::get_ptx(program.0) }
            .map(|raw| raw.into_iter().map(|c| c as u8).collect())
            .map_err(|e| format!("NVRTC produced no PTX: {e:?}"))?,
        // SAFETY: the program compiled for a real architecture.
        Target::Cubin(_) => unsafe { cubin(program.0) }?,
    };
    Ok(Compiled {
        image,
        target: target.clone(),
    })
}

/// An NVRTC program, destroyed on drop (errors there are ignored:
/// nothing can be done about them, and cudarc's own wrapper panics).
struct Program(sys::nvrtcProgram);

impl Program {
    fn create(source: &CStr) -> Result<Program, String> {
        result::create_program(source, None)
            .map(Program)
            .map_err(|e| format!("NVRTC cannot create a program: {e:?}"))
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by create_program and destroyed only here.
        let _ = unsafe { result::destroy_program(self.0) };
    }
}

/// The compiled program's cubin.
///
/// # Safety
/// `program` must have compiled successfully.
unsafe fn cubin(program: sys::nvrtcProgram) -> Result<Vec<u8>, String> {
    let mut size = 0usize;
    // SAFETY: per this function's contract; `size` is a valid out-pointer.
    let status = unsafe { sys::nvrtcGetCUBINSize(program, &mut size) };
    if status != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
        return Err(format!("NVRTC produced no cubin: {status:?}"));
    }
    let mut image = vec![0u8; size];
    // SAFETY: `image` holds exactly the size NVRTC reported.
    let status = unsafe { sys::nvrtcGetCUBIN(program, image.as_mut_ptr().cast::<c_char>()) };
    if status != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(format!("NVRTC produced no cubin: {status:?}"));
    }
    Ok(image)
}

/// A NUL-terminated C buffer as text.
fn c_text(raw: &[c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .map(|c| *c as u8)
        .take_while(|b| *b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
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

/// What to compile for on a device of compute capability `major.minor`:
/// its own machine code when this NVRTC knows the architecture, else PTX
/// for the newest architecture it knows that the device can run, else
/// NVRTC's default.
pub fn target_for(major: i32, minor: i32) -> Target {
    target_among(&supported_archs(), major * 10 + minor)
}

/// [`target_for`] a compute capability written `"9.0"`, as registration
/// reports it.
fn target_for_capability(capability: &str) -> Option<Target> {
    let (major, minor) = capability.split_once('.')?;
    Some(target_for(major.parse().ok()?, minor.parse().ok()?))
}

/// What a job on the first of `gpus` compiles for; with none, NVRTC's
/// default PTX.
pub fn target_for_first(gpus: &[fleet_protocol::GpuInfo]) -> Target {
    gpus.first()
        .and_then(|g| target_for_capability(&g.compute_capability))
        .unwrap_or(Target::Ptx(None))
}

/// The target an operator names: `sm_90` is machine code, anything else
/// (`compute_90`) PTX.
pub fn target_named(arch: &str) -> Target {
    if arch.starts_with("sm_") {
        Target::Cubin(arch.to_string())
    } else {
        Target::Ptx(Some(arch.to_string()))
    }
}

fn target_among(supported: &[i32], device: i32) -> Target {
    if supported.contains(&device) {
        return Target::Cubin(format!("sm_{device}"));
    }
    Target::Ptx(pick_arch(supported, device).map(|a| format!("compute_{a}")))
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
    fn a_device_nvrtc_knows_gets_machine_code_others_get_ptx() {
        let nvrtc_12 = [50, 52, 60, 70, 75, 80, 86, 89, 90];
        assert_eq!(target_among(&nvrtc_12, 90), Target::Cubin("sm_90".into()));
        assert_eq!(
            target_among(&nvrtc_12, 100),
            Target::Ptx(Some("compute_90".into()))
        );
        assert_eq!(target_among(&[], 90), Target::Ptx(None));
    }

    #[test]
    fn a_nul_byte_is_refused_before_nvrtc() {
        let e = compile("extern \"C\" __global__ void k() {}\0", &Target::Ptx(None))
            .err()
            .unwrap_or_default();
        assert!(e.contains("NUL"), "{e}");
    }

    #[test]
    fn the_entry_is_found_in_ptx_and_in_a_cubins_symbol_names() {
        let ptx = Compiled {
            image: b".visible .entry scale(\n.param .f32 a\n)\0".to_vec(),
            target: Target::Ptx(None),
        };
        assert!(ptx.has_entry("scale"));
        assert!(!ptx.has_entry("sca"));
        let cubin = Compiled {
            image: b"\x7fELF...\0.text.scale\0scale\0_Z5scalev\0".to_vec(),
            target: Target::Cubin("sm_90".into()),
        };
        assert!(cubin.has_entry("scale"));
        assert!(!cubin.has_entry("scal"));
    }
}
