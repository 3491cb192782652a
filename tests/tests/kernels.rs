//! Kernel compilation with the real NVRTC and no GPU: the agent finds
//! NVRTC in a directory it is pointed at (as pip's wheels lay it out, the
//! way PyTorch installs it on GPU machines), compiles every kernel it
//! ships, and gives a user's kernel NVRTC's own verdict.

use std::path::Path;
use std::process::Output;

use fleet_tests::{binary, nvrtc_dir};
use serde_json::Value;

fn agent(args: &[&str], dir: &Path) -> anyhow::Result<Output> {
    Ok(std::process::Command::new(binary("fleet-agent")?)
        .args(args)
        .arg("--cuda-lib-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()?)
}

/// `check-kernel` on `source` (entry `k`) for `arch`, writing the image to
/// `file`: what it said, and the image.
fn compile_to(
    source: &str,
    arch: &str,
    file: &Path,
    dir: &Path,
) -> anyhow::Result<(String, Vec<u8>)> {
    let file_arg = file.display().to_string();
    let out = agent(
        &[
            "check-kernel",
            source,
            "--entry",
            "k",
            "--arch",
            arch,
            "--output",
            &file_arg,
        ],
        dir,
    )?;
    anyhow::ensure!(out.status.code() == Some(0), "{}", text(&out.stderr));
    Ok((text(&out.stdout), std::fs::read(file)?))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn selftest_finds_nvrtc_by_directory_and_compiles_every_shipped_kernel() -> anyhow::Result<()> {
    let dir = nvrtc_dir()?;
    let out = agent(&["selftest", "--json"], &dir)?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let report: Value = serde_json::from_str(&stdout)?;

    let nvrtc = report["libraries"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["library"] == "nvrtc"))
        .cloned()
        .unwrap_or_default();
    // This machine has no CUDA on the loader's path: only the directory
    // given can have supplied it.
    assert_eq!(
        nvrtc["found"],
        dir.join("libnvrtc.so.13").display().to_string(),
        "{report}"
    );
    assert!(
        report["nvrtc"]
            .as_str()
            .is_some_and(|v| v.starts_with("13.")),
        "{report}"
    );

    let compiled = report["compiled"].as_array().cloned().unwrap_or_default();
    let entries: Vec<&str> = compiled
        .iter()
        .filter_map(|c| c["entry"].as_str())
        .collect();
    assert_eq!(
        entries,
        ["vector_add", "saxpy", "reduce_sum", "scale"],
        "{report}"
    );
    for c in &compiled {
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["bytes"].as_u64().is_some_and(|b| b > 0), "{c}");
    }
    // No GPU here: nothing ran, and nothing failed.
    assert_eq!(report["results"], Value::Array(vec![]), "{report}");
    assert_eq!(report["ok"], true);
    Ok(())
}

#[test]
fn check_kernel_gives_nvrtcs_verdict_on_a_users_kernel() -> anyhow::Result<()> {
    let dir = nvrtc_dir()?;
    let work = tempfile::tempdir()?;
    let write = |name: &str, source: &[u8]| -> anyhow::Result<String> {
        let path = work.path().join(name);
        std::fs::write(&path, source)?;
        Ok(path.display().to_string())
    };

    // Double-precision atomics need compute_60 or newer: compiled for the
    // architecture asked for, as PTX for a virtual one...
    let good = write(
        "good.cu",
        b"extern \"C\" __global__ void k(double* x) { atomicAdd(x, 1.0); }\n",
    )?;
    let (said, ptx) = compile_to(&good, "compute_90", &work.path().join("k.ptx"), &dir)?;
    assert!(
        said.contains("k compiles for compute_90 (PTX) with NVRTC 13."),
        "{said}"
    );
    let ptx = String::from_utf8_lossy(&ptx);
    assert!(
        ptx.contains(".target sm_90") && ptx.contains(".entry k("),
        "{ptx}"
    );

    // ...and as machine code for a real one: what a job on an H100 loads.
    let (said, image) = compile_to(&good, "sm_90", &work.path().join("k.cubin"), &dir)?;
    assert!(said.contains("k compiles for sm_90 (cubin)"), "{said}");
    // An ELF file for machine EM_CUDA (190).
    assert_eq!(image.get(..4), Some(&b"\x7fELF"[..]));
    assert_eq!(image.get(18..20), Some(&190u16.to_le_bytes()[..]));

    // A compile error comes back as NVRTC's log, naming the fault.
    let broken = write(
        "broken.cu",
        b"extern \"C\" __global__ void k(float* x) { x[0] = undefined_thing; }\n",
    )?;
    let out = agent(&["check-kernel", &broken, "--entry", "k"], &dir)?;
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out.stdout);
    assert!(log.starts_with("kernel does not compile:"), "{log}");
    assert!(
        log.contains("identifier \"undefined_thing\" is undefined"),
        "{log}"
    );

    // A C++ kernel's name is mangled: the job could never launch it (a
    // cubin's symbols are searched as PTX's entries are).
    let mangled = write(
        "mangled.cu",
        b"__global__ void k(float* x) { x[0] = 1.0f; }\n",
    )?;
    let out = agent(
        &["check-kernel", &mangled, "--entry", "k", "--arch", "sm_90"],
        &dir,
    )?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("defines no kernel named \"k\""),
        "{}",
        text(&out.stdout)
    );

    // A NUL byte would end NVRTC's C string early: refused, not a panic.
    let nul = write("nul.cu", b"extern \"C\" __global__ void k() {}\0 junk")?;
    let out = agent(&["check-kernel", &nul, "--entry", "k"], &dir)?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("NUL byte"),
        "{}",
        text(&out.stdout)
    );

    // An architecture NVRTC does not know is its error, not a crash.
    let out = agent(
        &[
            "check-kernel",
            &good,
            "--entry",
            "k",
            "--arch",
            "compute_999",
        ],
        &dir,
    )?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("--gpu-architecture"),
        "{}",
        text(&out.stdout)
    );
    Ok(())
}
