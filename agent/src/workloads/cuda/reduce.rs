//! `cuda.reduce_sum`: `{"n": N}` — sums N f32 values on the GPU and
//! compares with a CPU sum in f64.

use cudarc::driver::{CudaSlice, PushKernelArg};
use serde_json::{json, Value};

use fleet_protocol::workload_args::cuda_sizes;

use super::{cuda_error, device, float4_launch, inputs};

pub const KIND: &str = "cuda.reduce_sum";

pub const ENTRY: &str = "reduce_sum";
/// Each thread sums its share with 16-byte loads over a grid-stride loop;
/// warps then add up with shuffles, each warp's sum goes through shared
/// memory to the block's first warp, and the block adds its sum into
/// `out` with one atomic. Blocks of at most 1,024 threads (32 warps).
pub const SOURCE: &str = r#"
extern "C" __global__ void reduce_sum(const float* x, float* out, unsigned int n) {
    __shared__ float warp_sums[32];
    unsigned int t = threadIdx.x;
    unsigned int stride = gridDim.x * blockDim.x;
    unsigned int first = blockIdx.x * blockDim.x + t;
    unsigned int n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float acc = 0.0f;
    for (unsigned int i = first; i < n4; i += stride) {
        float4 v = x4[i];
        acc += (v.x + v.y) + (v.z + v.w);
    }
    for (unsigned int i = 4 * n4 + first; i < n; i += stride) {
        acc += x[i];
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        acc += __shfl_down_sync(0xffffffffu, acc, offset);
    }
    if ((t & 31u) == 0) { warp_sums[t >> 5] = acc; }
    __syncthreads();
    if (t < 32) {
        acc = t < (blockDim.x + 31) / 32 ? warp_sums[t] : 0.0f;
        for (int offset = 16; offset > 0; offset >>= 1) {
            acc += __shfl_down_sync(0xffffffffu, acc, offset);
        }
        if (t == 0) { atomicAdd(out, acc); }
    }
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
    // Enough blocks to fill the card; more would only add atomics.
    let config = float4_launch(n, 4096);
    // SAFETY: (const float*, float*, unsigned int) matches the kernel; x
    // holds n elements (256-byte aligned, as float4 needs), out one; the
    // block is a whole number of warps, at most 32 of them.
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
