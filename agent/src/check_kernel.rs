//! `fleet-agent check-kernel FILE --entry NAME`: compiles a user's CUDA C
//! kernel exactly as a `cuda.kernel` job would, without a GPU, so its
//! author sees NVRTC's errors before submitting it to the fleet.

use std::path::Path;

use crate::gpu;
use crate::workloads::cuda::{compile, kernel};

/// What the check found, and the exit status that goes with it.
pub enum Outcome {
    /// It compiles and defines the entry point.
    Compiles,
    /// It does not compile, or lacks the entry point (exit status 1).
    Refused,
    /// No NVRTC here to say (exit status 2).
    NoCompiler,
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Compiles => 0,
            Outcome::Refused => 1,
            Outcome::NoCompiler => 2,
        }
    }
}

/// Compiles `file` for `arch` (`sm_90`: machine code; `compute_90`: PTX;
/// default: what a job on the first local GPU would get, else NVRTC's
/// default PTX) and prints what happened.
pub fn run(
    file: &Path,
    entry: &str,
    arch: Option<String>,
    output: Option<&Path>,
) -> anyhow::Result<Outcome> {
    if !gpu::nvrtc_present() {
        eprintln!(
            "NVRTC is not installed here (or not found: see --cuda-lib-dir); cannot compile kernels"
        );
        return Ok(Outcome::NoCompiler);
    }
    let source =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    if source.len() > kernel::MAX_SOURCE_BYTES {
        println!(
            "refused: {} is over the {} bytes a cuda.kernel job accepts",
            file.display(),
            kernel::MAX_SOURCE_BYTES
        );
        return Ok(Outcome::Refused);
    }
    let Ok(source) = String::from_utf8(source) else {
        println!("refused: {} is not UTF-8 text", file.display());
        return Ok(Outcome::Refused);
    };
    let target = match arch {
        Some(arch) => compile::target_named(&arch),
        None => compile::target_for_first(&gpu::detect()),
    };
    let compiled = match compile::compile(&source, &target) {
        Ok(c) => c,
        Err(log) => {
            println!("{log}");
            return Ok(Outcome::Refused);
        }
    };
    if let Some(output) = output {
        // PTX comes NUL-terminated, as the driver takes it; a file does not.
        let image = match compiled.target {
            compile::Target::Ptx(_) => compiled.image.strip_suffix(&[0]).unwrap_or(&compiled.image),
            compile::Target::Cubin(_) => &compiled.image[..],
        };
        std::fs::write(output, image)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    }
    let target = target.describe();
    if !compiled.has_entry(entry) {
        println!(
            "refused: it compiles for {target}, but defines no kernel named {entry:?} \
             (declare it extern \"C\" __global__; C++ names are mangled)"
        );
        return Ok(Outcome::Refused);
    }
    let version = compile::nvrtc_version()
        .map(|(major, minor)| format!("{major}.{minor}"))
        .unwrap_or_else(|| "?".into());
    println!(
        "ok: {entry} compiles for {target} with NVRTC {version} ({} bytes)",
        compiled.len()
    );
    Ok(Outcome::Compiles)
}
