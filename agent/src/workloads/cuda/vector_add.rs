//! `cuda.vector_add`: `{"n": N}` — adds two N-element f32 vectors on the
//! GPU with an NVRTC-compiled kernel and checks the sum on the CPU.

use cudarc::driver::PushKernelArg;
use serde_json::{json, Value};

use fleet_protocol::workload_args::cuda_sizes;

use super::{cuda_error, device, float4_launch};

pub const KIND: &str = "cuda.vector_add";

pub const ENTRY: &str = "vector_add";
/// Four elements a thread with 16-byte loads, over a grid-stride loop,
/// then the last n mod 4 one by one: the loads, not the adds, are what a
/// vector add costs. (Buffers from the driver's allocator are 256-byte
/// aligned, as float4 needs.)
pub const SOURCE: &str = r#"
extern "C" __global__ void vector_add(const float* a, const float* b, float* c, unsigned int n) {
    unsigned int stride = gridDim.x * blockDim.x;
    unsigned int first = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int n4 = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* c4 = reinterpret_cast<float4*>(c);
    for (unsigned int i = first; i < n4; i += stride) {
        float4 x = a4[i];
        float4 y = b4[i];
        c4[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
    }
    for (unsigned int i = 4 * n4 + first; i < n; i += stride) {
        c[i] = a[i] + b[i];
    }
}
"#;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub n: u64,
    pub correct: bool,
    pub max_abs_error: f32,
    pub checksum: f64,
    pub device_ms: f64,
    /// Bytes moved by the kernel (read a, read b, write c) per second.
    pub gb_per_s: f64,
}

/// Parses `{"n": N}` and runs on `index`.
pub fn run_json(index: usize, args: &Value) -> Result<Value, String> {
    let n = cuda_sizes::vector_add(args)?;
    let r = run(index, n)?;
    if !r.correct {
        return Err(format!(
            "GPU result differs from the CPU reference (max error {})",
            r.max_abs_error
        ));
    }
    Ok(json!({
        "n": r.n,
        "checksum": r.checksum,
        "max_abs_error": r.max_abs_error,
        "device_ms": r.device_ms,
        "gb_per_s": r.gb_per_s,
    }))
}

/// Runs the kernel on `index` and compares with the CPU.
pub fn run(index: usize, n: u64) -> Result<Report, String> {
    let dev = device(index)?;
    dev.reserve(3 * 4 * n)?;
    let function = dev.function(SOURCE, ENTRY)?;
    let stream = &dev.stream;
    let cuda = |e| cuda_error(e, index);

    let len = n as usize;
    let a: Vec<f32> = (0..len).map(|i| (i % 1024) as f32 * 0.5).collect();
    let b: Vec<f32> = (0..len).map(|i| (i % 977) as f32 * 0.25).collect();
    let a_dev = stream.clone_htod(&a).map_err(cuda)?;
    let b_dev = stream.clone_htod(&b).map_err(cuda)?;
    let mut c_dev = stream.alloc_zeros::<f32>(len).map_err(cuda)?;
    let n32 = n as u32;
    let config = float4_launch(n, 1 << 16);

    // SAFETY (each launch): the kernel's signature is (const float*,
    // const float*, float*, unsigned int) and the arguments match it; all
    // three buffers hold n elements and the kernel guards i < n.
    let device_ms = dev.time_launches(|| unsafe {
        stream
            .launch_builder(&function)
            .arg(&a_dev)
            .arg(&b_dev)
            .arg(&mut c_dev)
            .arg(&n32)
            .launch(config)
            .map(|_| ())
    })?;

    let c = stream.clone_dtoh(&c_dev).map_err(cuda)?;
    let mut max_abs_error = 0f32;
    let mut checksum = 0f64;
    for i in 0..len {
        max_abs_error = max_abs_error.max((c[i] - (a[i] + b[i])).abs());
        checksum += f64::from(c[i]);
    }
    let bytes = 3.0 * 4.0 * n as f64;
    Ok(Report {
        n,
        correct: max_abs_error == 0.0,
        max_abs_error,
        checksum,
        device_ms,
        gb_per_s: bytes / (device_ms / 1000.0) / 1e9,
    })
}
