//! `cuda.saxpy`: `{"n": N, "a": A}` — y ← a·x + y over N f32 elements,
//! checked element by element against the CPU.

use cudarc::driver::{CudaSlice, PushKernelArg};
use serde_json::{json, Value};

use fleet_protocol::workload_args::cuda_sizes;

use super::{cuda_error, device, float4_launch, inputs};

pub const KIND: &str = "cuda.saxpy";

pub const ENTRY: &str = "saxpy";
/// As `vector_add`: four elements a thread with 16-byte loads over a
/// grid-stride loop, then the last n mod 4 one by one.
pub const SOURCE: &str = r#"
extern "C" __global__ void saxpy(float a, const float* x, float* y, unsigned int n) {
    unsigned int stride = gridDim.x * blockDim.x;
    unsigned int first = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (unsigned int i = first; i < n4; i += stride) {
        float4 u = x4[i];
        float4 v = y4[i];
        y4[i] = make_float4(a * u.x + v.x, a * u.y + v.y, a * u.z + v.z, a * u.w + v.w);
    }
    for (unsigned int i = 4 * n4 + first; i < n; i += stride) {
        y[i] = a * x[i] + y[i];
    }
}
"#;
pub fn run_json(index: usize, args: &Value) -> Result<Value, String> {
    let (n, a) = cuda_sizes::saxpy(args)?;
    let dev = device(index)?;
    dev.reserve(2 * 4 * n)?;
    let function = dev.function(SOURCE, ENTRY)?;
    let stream = &dev.stream;
    let cuda = |e| cuda_error(e, index);
    let len = n as usize;
    let x = inputs(1, len);
    let y = inputs(2, len);
    let x_dev = stream.clone_htod(&x).map_err(cuda)?;
    let mut y_dev = stream.clone_htod(&y).map_err(cuda)?;
    let n32 = n as u32;
    let config = float4_launch(n, 1 << 16);
    // SAFETY: (float, const float*, float*, unsigned int) matches the
    // kernel; both buffers hold n elements, the kernel guards i < n, and
    // the driver's 256-byte-aligned buffers suit its float4 loads.
    let saxpy = |y_dev: &mut CudaSlice<f32>| unsafe {
        stream
            .launch_builder(&function)
            .arg(&a)
            .arg(&x_dev)
            .arg(y_dev)
            .arg(&n32)
            .launch(config)
            .map(|_| ())
    };
    let device_ms = dev.time_launches(|| saxpy(&mut y_dev))?;
    // The timed runs updated y again and again; check one run from the
    // original y.
    stream.memcpy_htod(&y, &mut y_dev).map_err(cuda)?;
    saxpy(&mut y_dev).map_err(cuda)?;
    let out = stream.clone_dtoh(&y_dev).map_err(cuda)?;
    let mut max_abs_error = 0f32;
    let mut checksum = 0f64;
    for i in 0..len {
        max_abs_error = max_abs_error.max((out[i] - (a * x[i] + y[i])).abs());
        checksum += f64::from(out[i]);
    }
    if max_abs_error > 1e-5 {
        return Err(format!(
            "{KIND}: GPU differs from the CPU reference by {max_abs_error}"
        ));
    }
    Ok(json!({
        "n": n, "a": a, "checksum": checksum, "max_abs_error": max_abs_error,
        "device_ms": device_ms,
        "gb_per_s": 3.0 * 4.0 * n as f64 / (device_ms / 1000.0) / 1e9,
    }))
}
