//! `cuda.reduce_sum`: `{"n": N}` — sums N f32 values on the GPU (a block
//! tree reduction in shared memory, then one atomic add per block) and
//! compares with a CPU sum in f64.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use serde_json::{json, Value};

use fleet_protocol::workload_args::cuda_sizes;

use super::{cuda_error, device, inputs};

pub const KIND: &str = "cuda.reduce_sum";
const BLOCK: u32 = 256;

pub const ENTRY: &str = "reduce_sum";
pub const SOURCE: &str = r#"
extern "C" __global__ void reduce_sum(const float* x, float* out, unsigned int n) {
    __shared__ float part[256];
    unsigned int t = threadIdx.x;
    float acc = 0.0f;
    for (unsigned int i = blockIdx.x * blockDim.x + t; i < n; i += gridDim.x * blockDim.x) {
        acc += x[i];
    }
    part[t] = acc;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) { part[t] += part[t + s]; }
        __syncthreads();
    }
    if (t == 0) { atomicAdd(out, part[0]); }
}
"#;

pub fn run_json(index: usize, args: &Value) -> Result<Value, String> {
    let n = cuda_sizes::reduce_sum(args)?;
    let dev = device(index)?;
    dev.reserve(4 * n + 4)?;
    let function = dev.function(SOURCE, ENTRY)?;
    let stream = &dev.stream;
    let cuda = |e| cuda_error(e, index);
    let x = inputs(3, n as usize);
    let x_dev = stream.clone_htod(&x).map_err(cuda)?;
    let mut out_dev = stream.alloc_zeros::<f32>(1).map_err(cuda)?;
    let n32 = n as u32;
    let blocks = n32.div_ceil(BLOCK).min(4096);
    let config = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: (const float*, float*, unsigned int) matches the kernel; x
    // holds n elements, out one; the block size equals the shared array.
    let reduce = |out_dev: &mut CudaSlice<f32>| unsafe {
        stream
            .launch_builder(&function)
            .arg(&x_dev)
            .arg(out_dev)
            .arg(&n32)
            .launch(config)
            .map(|_| ())
    };
    let device_ms = dev.time_launches(|| reduce(&mut out_dev))?;
    // Every run added its sum into out; check one run from zero.
    stream.memset_zeros(&mut out_dev).map_err(cuda)?;
    reduce(&mut out_dev).map_err(cuda)?;
    let gpu = stream.clone_dtoh(&out_dev).map_err(cuda)?;
    let gpu_sum = f64::from(gpu.first().copied().unwrap_or(f32::NAN));
    let cpu_sum: f64 = x.iter().map(|v| f64::from(*v)).sum();
    // f32 accumulation in a different order: allow a relative error that
    // grows with the magnitude of what was added.
    let scale: f64 = x.iter().map(|v| f64::from(v.abs())).sum::<f64>().max(1.0);
    let error = (gpu_sum - cpu_sum).abs();
    if error > 1e-5 * scale {
        return Err(format!(
            "{KIND}: GPU sum {gpu_sum} differs from the CPU's {cpu_sum}"
        ));
    }
    Ok(json!({
        "n": n, "sum": gpu_sum, "cpu_sum": cpu_sum, "abs_error": error,
        "device_ms": device_ms,
        "gb_per_s": 4.0 * n as f64 / (device_ms / 1000.0) / 1e9,
    }))
}
