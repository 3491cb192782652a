//! `fleet-agent selftest`: says where CUDA's libraries were found,
//! compiles every kernel the agent ships (NVRTC needs no GPU), then runs
//! every CUDA workload on every local GPU, each checked against a CPU
//! reference inside the workload, and prints a table (or JSON): kind,
//! size, correct, device ms, and GB/s or TFLOP/s. Exits non-zero on any
//! mismatch or failure.

use serde_json::{json, Value};

use crate::cuda_libraries;
use crate::gpu;
use crate::workloads::cuda::{self, compile};

/// The user-kernel check's kernel: scales x by a.
const USER_KERNEL_SOURCE: &str = "extern \"C\" __global__ void scale(float a, float* x, unsigned int n) {\n  unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;\n  if (i < n) x[i] = a * x[i];\n}";
const USER_KERNEL_ENTRY: &str = "scale";

/// The checks, in order: kind, arguments, a size label.
fn checks() -> Vec<(&'static str, Value, String)> {
    // Large enough (1.6 GB moved per vector add) that launch gaps and the
    // host's timer are lost in the noise against HBM bandwidth.
    let big = 1u64 << 27;
    let n = 1u64 << 26;
    let mut out = vec![
        (
            cuda::vector_add::KIND,
            json!({"n": big}),
            format!("n={big}"),
        ),
        (
            cuda::saxpy::KIND,
            json!({"n": n, "a": 2.5}),
            format!("n={n}"),
        ),
        (cuda::reduce::KIND, json!({"n": n}), format!("n={n}")),
        (
            cuda::kernel::KIND,
            json!({
                "source": USER_KERNEL_SOURCE,
                "entry": USER_KERNEL_ENTRY, "grid": [4096], "block": [256],
                "args": [{"scalar": "f32", "value": 2.0},
                         {"buffer": "x", "dtype": "f32", "len": 1048576, "init": "random"},
                         {"scalar": "u32", "value": 1048576}],
                "outputs": ["x"]
            }),
            "n=1048576".to_string(),
        ),
    ];
    for (dtype, dim) in [("f32", 4096), ("f16", 8192), ("bf16", 8192)] {
        out.push((
            cuda::matmul::KIND,
            json!({"m": dim, "n": dim, "k": dim, "dtype": dtype}),
            format!("{dim}³ {dtype}"),
        ));
    }
    out
}

/// The user-kernel check scales random inputs by 2: its output must sum
/// to twice theirs (the workload itself cannot know what a user's kernel
/// should compute).
fn check_user_kernel(kind: &str, result: Value) -> Result<Value, String> {
    if kind != cuda::kernel::KIND {
        return Ok(result);
    }
    let expected: f64 = cuda::inputs(21, 1_048_576)
        .iter()
        .map(|x| 2.0 * f64::from(*x))
        .sum();
    let got = result["outputs"]["x"]["sum"].as_f64().unwrap_or(f64::NAN);
    if (got - expected).abs() > 1e-3 * expected.abs().max(1.0) {
        return Err(format!(
            "user kernel output sums to {got}, expected {expected}"
        ));
    }
    Ok(result)
}

/// Compiles every kernel the agent ships, plus the user-kernel sample,
/// for `target`; one row each. Empty without NVRTC.
fn compile_checks(target: &compile::Target) -> Vec<Value> {
    if !gpu::nvrtc_present() {
        return Vec::new();
    }
    let mut kernels = cuda::BUILT_IN_KERNELS.to_vec();
    kernels.push((cuda::kernel::KIND, USER_KERNEL_SOURCE, USER_KERNEL_ENTRY));
    kernels
        .into_iter()
        .map(|(kind, source, entry)| {
            let outcome = compile::compile(source, target).and_then(|c| {
                if c.has_entry(entry) {
                    Ok(c.len())
                } else {
                    Err(format!("the PTX defines no kernel {entry:?}"))
                }
            });
            let mut row =
                json!({"kind": kind, "entry": entry, "target": target.describe(), "ok": outcome.is_ok()});
            match outcome {
                Ok(bytes) => row["bytes"] = json!(bytes),
                Err(e) => row["error"] = json!(e),
            }
            row
        })
        .collect()
}

/// Runs the checks and prints a table or JSON; true when all passed.
pub async fn run(as_json: bool, libraries: &[cuda_libraries::Status]) -> anyhow::Result<bool> {
    let gpus = gpu::detect();
    let target = compile::target_for_first(&gpus);
    let compiled = compile_checks(&target);
    let nvrtc = compile::nvrtc_version().map(|(major, minor)| format!("{major}.{minor}"));
    let mut all_ok = compiled.iter().all(|r| r["ok"] == json!(true));
    let mut rows = Vec::new();
    for g in &gpus {
        for (kind, args, size) in checks() {
            let index = g.index as usize;
            let outcome =
                tokio::task::spawn_blocking(move || cuda::run(kind, index, &args)).await?;
            let outcome = outcome.and_then(|r| check_user_kernel(kind, r));
            let mut row = json!({"gpu": g.index, "name": g.name, "kind": kind, "size": size});
            match outcome {
                Ok(result) => {
                    row["correct"] = json!(true);
                    row["device_ms"] = result["device_ms"].clone();
                    row["gb_per_s"] = result["gb_per_s"].clone();
                    row["tflop_per_s"] = result["tflop_per_s"].clone();
                }
                Err(e) => {
                    all_ok = false;
                    row["correct"] = json!(false);
                    row["error"] = json!(e);
                }
            }
            rows.push(row);
        }
    }
    if as_json {
        println!(
            "{}",
            json!({"gpus": gpus, "driver_present": gpu::driver_present(),
                   "cuda_driver": gpu::driver_version(), "libraries": libraries,
                   "nvrtc": nvrtc, "compiled": compiled, "results": rows, "ok": all_ok})
        );
        return Ok(all_ok);
    }
    for l in libraries {
        println!(
            "library {:<7} {}",
            l.library,
            l.found.as_deref().unwrap_or("not found")
        );
    }
    match &nvrtc {
        None => println!("kernels: not compiled (no NVRTC)"),
        Some(version) => {
            let passed = compiled.iter().filter(|r| r["ok"] == json!(true)).count();
            println!(
                "kernels: {passed} of {} compile with NVRTC {version} for {}",
                compiled.len(),
                target.describe()
            );
            for r in compiled.iter().filter(|r| r["ok"] != json!(true)) {
                println!("  {} ({}): {}", r["kind"], r["entry"], r["error"]);
            }
        }
    }
    if gpus.is_empty() {
        println!(
            "no usable CUDA GPU on this machine (driver present: {}); nothing to test",
            gpu::driver_present()
        );
    } else {
        println!(
            "{:<4} {:<22} {:<16} {:<14} {:>8} {:>10} {:>12}",
            "gpu", "name", "kind", "size", "correct", "device ms", "GB/s|TFLOP/s"
        );
        for r in &rows {
            let rate = r["gb_per_s"]
                .as_f64()
                .map(|g| format!("{g:.1} GB/s"))
                .or_else(|| r["tflop_per_s"].as_f64().map(|t| format!("{t:.1} TF/s")))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<4} {:<22} {:<16} {:<14} {:>8} {:>10.3} {:>12}",
                r["gpu"],
                r["name"].as_str().unwrap_or("?"),
                r["kind"].as_str().unwrap_or("?"),
                r["size"].as_str().unwrap_or("?"),
                r["correct"],
                r["device_ms"].as_f64().unwrap_or(f64::NAN),
                rate
            );
            if let Some(e) = r.get("error") {
                println!("     error: {e}");
            }
        }
    }
    Ok(all_ok)
}
