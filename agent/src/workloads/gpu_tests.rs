//! Tests that need an NVIDIA GPU. CI has none, so each is ignored there;
//! `scripts/gpu-check` runs them on a GPU machine with `--ignored
//! --test-threads 1` (one at a time: one of them faults a context on
//! purpose). Each drives a job through [`Workloads::run`], the agent's own
//! path from assignment to result, so what they show is what a job sees.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fleet_protocol::Assignment;
use serde_json::{json, Value};

use super::exec::ExecPolicy;
use super::Workloads;
use crate::{cuda_libraries, gpu};

/// The agent's workloads on this machine's GPUs, CUDA's libraries found
/// as the agent finds them (plus `FLEET_CUDA_LIB_DIRS`).
fn workloads() -> Workloads {
    workloads_with(ExecPolicy::default())
}

/// As [`workloads`], with `exec` allowed as `policy` says.
fn workloads_with(policy: ExecPolicy) -> Workloads {
    let found = find_cuda_libraries();
    assert!(
        gpu::driver_present() && gpu::nvrtc_present() && !gpu::detect().is_empty(),
        "these tests need a GPU, its driver and NVRTC; libraries: {found:?}"
    );
    Workloads::detect(true, policy, true, Duration::from_secs(60))
}

/// Loads CUDA's libraries as the agent does, and says where each was.
fn find_cuda_libraries() -> Vec<cuda_libraries::Status> {
    // The agent's logs, for what a failing test leaves behind.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let dirs: Vec<std::path::PathBuf> = std::env::var("FLEET_CUDA_LIB_DIRS")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(Into::into)
        .collect();
    cuda_libraries::prepare(&cuda_libraries::search_dirs(&dirs))
}

fn job(kind: &str, args: Value, timeout: Duration) -> Assignment {
    Assignment {
        job_id: format!("gpu-test-{}", ulid::Ulid::new()),
        attempt: 1,
        kind: kind.to_string(),
        args,
        timeout_ms: timeout.as_millis() as u64,
        gpus: vec![0],
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// A user kernel that scales x (n floats, random) by a.
fn scale_job(source: &str, a: f32, n: u64) -> Assignment {
    job(
        "cuda.kernel",
        json!({
            "source": source, "entry": "scale", "grid": [n.div_ceil(256)], "block": [256],
            "args": [{"scalar": "f32", "value": a},
                     {"buffer": "x", "dtype": "f32", "len": n, "init": "random"},
                     {"scalar": "u32", "value": n}],
            "outputs": ["x"]
        }),
        MINUTE,
    )
}

const SCALE: &str = "extern \"C\" __global__ void scale(float a, float* x, unsigned int n) {\n  unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;\n  if (i < n) x[i] = a * x[i];\n}";

/// Asserts `r` is `scale`'s result over the workload's random inputs.
fn assert_scaled(r: &Result<Value, super::WorkloadError>, a: f32, n: u64, what: &str) {
    let expected: f64 = super::cuda::inputs(21, n as usize)
        .iter()
        .map(|x| f64::from(a * x))
        .sum();
    let sum = r
        .as_ref()
        .ok()
        .and_then(|r| r["outputs"]["x"]["sum"].as_f64());
    assert!(
        sum.is_some_and(|s| (s - expected).abs() <= 1e-3 * expected.abs().max(1.0)),
        "{what}: {r:?}, expected sum {expected}"
    );
}

#[tokio::test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check runs it"]
async fn every_cuda_kind_runs_and_checks_itself_through_the_job_path() {
    let w = workloads();
    let n = 1u64 << 20;
    for (kind, args) in [
        ("cuda.vector_add", json!({"n": n})),
        // Not a multiple of 4: the tail the float4 loop leaves.
        ("cuda.vector_add", json!({"n": 1_000_003})),
        ("cuda.saxpy", json!({"n": n, "a": 1.5})),
        ("cuda.reduce_sum", json!({"n": n})),
    ] {
        let r = w.run(&job(kind, args, MINUTE)).await;
        let gb = r.as_ref().ok().and_then(|r| r["gb_per_s"].as_f64());
        assert!(gb.is_some_and(|g| g > 0.0), "{kind}: {r:?}");
    }
    for dtype in ["f32", "f16", "bf16"] {
        let args = json!({"m": 512, "n": 256, "k": 384, "dtype": dtype});
        let r = w.run(&job("cuda.matmul", args, MINUTE)).await;
        let tf = r.as_ref().ok().and_then(|r| r["tflop_per_s"].as_f64());
        assert!(tf.is_some_and(|t| t > 0.0), "matmul {dtype}: {r:?}");
    }
    let r = w.run(&scale_job(SCALE, 2.0, n)).await;
    assert_scaled(&r, 2.0, n, "user kernel");
}

#[tokio::test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check runs it"]
async fn a_user_kernels_base64_buffers_round_trip() {
    let w = workloads();
    let input: Vec<u8> = [1.0f32, -2.0, 3.5, 0.25]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let r = w
        .run(&job(
            "cuda.kernel",
            json!({
                "source": SCALE, "entry": "scale", "grid": [1], "block": [32],
                "args": [{"scalar": "f32", "value": -4.0},
                         {"buffer": "x", "dtype": "f32", "len": 4, "init": {"base64": b64.encode(&input)}},
                         {"scalar": "u32", "value": 4}],
                "outputs": ["x"], "output_format": "base64"
            }),
            MINUTE,
        ))
        .await;
    let out = r
        .as_ref()
        .ok()
        .and_then(|r| r["outputs"]["x"]["base64"].as_str())
        .and_then(|t| b64.decode(t).ok())
        .unwrap_or_default();
    let values: Vec<f32> = out
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values, [-4.0, 8.0, -14.0, -1.0], "{r:?}");
}

#[tokio::test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check runs it"]
async fn kernels_that_do_not_compile_or_lack_their_entry_fail_the_job_clearly() {
    let w = workloads();
    let broken = SCALE.replace("a * x[i]", "a * y[i]");
    let r = w.run(&scale_job(&broken, 2.0, 1024)).await;
    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.starts_with("kernel does not compile:"), "{e}");
    assert!(e.contains("\"y\" is undefined"), "{e}");

    let renamed = SCALE.replace("void scale(", "void scaled(");
    let r = w.run(&scale_job(&renamed, 2.0, 1024)).await;
    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("kernel entry point \"scale\" not found"), "{e}");
}

#[tokio::test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check runs it"]
async fn a_job_that_does_not_fit_in_free_gpu_memory_fails_and_the_gpu_recovers() {
    let w = workloads();
    let dev = super::cuda::device(0).unwrap_or_else(|e| panic!("{e}"));
    let (free, _) = dev.ctx.mem_get_info().unwrap_or_else(|e| panic!("{e}"));
    // Leave 256 MiB: the 805 MB a 2^26-element vector add needs won't fit.
    let hog = dev
        .stream
        .alloc_zeros::<u8>(free.saturating_sub(256 << 20))
        .unwrap_or_else(|e| panic!("{e}"));
    let add = || job("cuda.vector_add", json!({"n": 1u64 << 26}), MINUTE);
    let e = w
        .run(&add())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("GPU out of memory: needs 768 MiB"), "{e}");
    drop(hog);
    let r = w.run(&add()).await;
    assert!(r.is_ok(), "after the memory was freed: {r:?}");
}

#[tokio::test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check runs it"]
async fn a_faulting_user_kernel_fails_its_job_and_gives_the_gpu_up_until_a_restart() {
    super::cuda::on_fault(super::cuda::tests::record_fault);
    let w = workloads();
    let gemm = || {
        let args = json!({"m": 256, "n": 256, "k": 256, "dtype": "f16"});
        job("cuda.matmul", args, MINUTE)
    };
    let r = w.run(&gemm()).await;
    assert!(r.is_ok(), "the GEMM before the fault: {r:?}");
    let boom = "extern \"C\" __global__ void scale(float a, float* x, unsigned int n) {\n  float* wild = (float*)0x10;\n  *wild = a;\n}";
    let e = w
        .run(&scale_job(boom, 1.0, 1024))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("CUDA error on GPU 0"), "{e}");
    assert!(e.contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "{e}");
    // The agent would now exit to free the GPU; here the hook recorded it.
    let faults = super::cuda::tests::FAULTS.lock().clone();
    assert!(faults.iter().any(|(gpu, _)| *gpu == 0), "{faults:?}");
    // Meanwhile the GPU takes no more work, rather than failing it in a
    // broken context.
    let r = w
        .run(&job("cuda.vector_add", json!({"n": 1 << 20}), MINUTE))
        .await;
    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("GPU 0 is out of use until the agent restarts"),
        "{e}"
    );
}

#[tokio::test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check runs it"]
async fn a_timed_out_kernel_holds_its_gpu_and_the_next_job_waits_for_it() {
    let w = workloads();
    // Spins for `ns` nanoseconds of the GPU's global timer.
    let spin = "extern \"C\" __global__ void spin(unsigned long long ns) {\n  unsigned long long start, now;\n  asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(start));\n  do { asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(now)); } while (now - start < ns);\n}";
    let spinning = job(
        "cuda.kernel",
        json!({"source": spin, "entry": "spin", "grid": [1], "block": [1],
               "args": [{"scalar": "u64", "value": 3_000_000_000u64}]}),
        Duration::from_millis(500),
    );
    let began = Instant::now();
    let e = w
        .run(&spinning)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("timed out after 500 ms"), "{e}");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "the attempt ended at its timeout"
    );

    // The kernel still runs: the next job on the GPU starts only after it.
    let r = w
        .run(&job("cuda.vector_add", json!({"n": 1 << 20}), MINUTE))
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(
        began.elapsed() >= Duration::from_millis(2_500),
        "the next job ran {:?} after the spinning one began, before its kernel ended",
        began.elapsed()
    );
}

#[tokio::test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check runs it"]
async fn more_distinct_user_kernels_than_a_gpu_keeps_all_run() {
    let w = workloads();
    let n = 4096;
    let count = super::cuda::module_cache::CAPACITY + 8;
    for k in 0..count {
        // Each source differs, so each is compiled and cached anew, and
        // the oldest modules are unloaded as the cache turns over.
        let source = format!("{SCALE}\n// kernel {k}\n");
        let a = 1.0 + k as f32;
        let r = w.run(&scale_job(&source, a, n)).await;
        assert_scaled(&r, a, n, &format!("kernel {k}"));
    }
}

#[tokio::test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check runs it"]
async fn heartbeats_carry_each_gpus_free_memory_and_nvml_readings() {
    let w = workloads();
    let gpus = gpu::detect();
    let status = w.gpu_status(&gpus);
    assert_eq!(status.len(), gpus.len());
    for (g, s) in gpus.iter().zip(&status) {
        assert!(
            s.free_mb.is_some_and(|f| f > 0 && f <= g.memory_mb),
            "{g:?} {s:?}"
        );
        // NVML ships with the driver on these machines.
        assert!(s.temperature_c.is_some(), "no NVML temperature: {s:?}");
    }
}

/// How [`the_gpus_this_process_sees`] starts the line that lists them.
const SEES: &str = "fleet-gpu-test: this process sees ";

/// Lists the UUIDs of the GPUs the driver shows this process. Run alone,
/// it sees every GPU; run as an `exec` job's command (below), only the
/// job's.
#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check runs it"]
fn the_gpus_this_process_sees() {
    let found = find_cuda_libraries();
    let seen: Vec<String> = gpu::uuids().into_iter().map(|(_, uuid)| uuid).collect();
    assert!(
        !seen.is_empty(),
        "the driver shows no GPU (CUDA_VISIBLE_DEVICES={:?}; libraries: {found:?})",
        std::env::var("CUDA_VISIBLE_DEVICES")
    );
    println!("{SEES}{}", seen.join(","));
}

#[tokio::test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check runs it"]
async fn an_exec_job_sees_exactly_its_gpu_named_by_uuid() -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let env = PathBuf::from("/usr/bin/env");
    let policy = ExecPolicy::new(
        vec![env.clone(), me.clone()],
        vec!["FLEET_CUDA_LIB_DIRS".into()],
    );
    let w = workloads_with(policy.map_err(anyhow::Error::msg)?);
    // The last GPU: on a machine with several, not the one a child would
    // see by default.
    let uuids = gpu::uuids();
    let Some((index, uuid)) = uuids.last().cloned() else {
        panic!("no GPU UUIDs from the driver: {uuids:?}");
    };
    let on_it = |args: Value| Assignment {
        gpus: vec![index],
        ..job("exec", args, MINUTE)
    };
    let stdout = |r: &Result<Value, super::WorkloadError>| {
        r.as_ref()
            .ok()
            .and_then(|r| r["stdout_tail"].as_str())
            .unwrap_or_default()
            .to_string()
    };

    // What the job is given: its GPU's UUID, not an index that a child's
    // own device order could map elsewhere.
    let r = w.run(&on_it(json!({"command": env}))).await;
    let given = format!("CUDA_VISIBLE_DEVICES={uuid}");
    assert!(uuid.starts_with("GPU-"), "{uuid}");
    assert!(stdout(&r).lines().any(|l| l == given), "{r:?}");

    // What the driver then shows a CUDA program started by the job: that
    // GPU and no other.
    let r = w
        .run(&on_it(json!({
            "command": me,
            "args": ["--ignored", "--exact", "workloads::gpu_tests::the_gpus_this_process_sees",
                     "--nocapture", "--test-threads", "1"],
        })))
        .await;
    let out = stdout(&r);
    // The test harness may print the test's name on the same line first.
    let seen = out
        .lines()
        .find_map(|l| l.split_once(SEES).map(|(_, seen)| seen.trim()));
    assert_eq!(seen, Some(uuid.as_str()), "{r:?}");
    Ok(())
}
