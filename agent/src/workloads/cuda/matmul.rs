//! `cuda.matmul`: `{"m": M, "n": N, "k": K, "dtype": "f32"|"f16"|"bf16"}` —
//! C = A·B through cuBLAS GEMM (f16/bf16 inputs accumulate in f32),
//! timed over a few repetitions after a warm-up, reporting TFLOP/s.
//! Sampled entries of C are checked against a CPU dot product of the same
//! (rounded) inputs.

use std::time::Instant;

use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use serde_json::{json, Value};

use fleet_protocol::workload_args::cuda_sizes::{self, Matmul, MatmulDtype as Dtype};

use super::{cuda_error, device, inputs, Device};

pub const KIND: &str = "cuda.matmul";
const REPEATS: u32 = 5;
const SAMPLES: usize = 32;

pub fn run_json(index: usize, args: &Value) -> Result<Value, String> {
    let r = cuda_sizes::matmul(args)?;
    let dev = device(index)?;
    dev.reserve(r.dtype.size() * (r.m * r.k + r.k * r.n + r.m * r.n))?;
    match r.dtype {
        Dtype::F32 => gemm::<f32>(&dev, &r, |x| x, |x| x),
        Dtype::F16 => gemm::<half::f16>(&dev, &r, half::f16::from_f32, half::f16::to_f32),
        Dtype::Bf16 => gemm::<half::bf16>(&dev, &r, half::bf16::from_f32, half::bf16::to_f32),
    }
}

fn gemm<T>(
    dev: &Device,
    r: &Matmul,
    from_f32: fn(f32) -> T,
    to_f32: fn(T) -> f32,
) -> Result<Value, String>
where
    T: DeviceRepr + ValidAsZeroBits + Copy + Default + Unpin,
    CudaBlas: Gemm<T>,
{
    let cuda = |e| cuda_error(e, dev.index);
    let (m, n, k) = (r.m as usize, r.n as usize, r.k as usize);
    // Column-major: A is m×k (lda = m), B is k×n (ldb = k), C is m×n.
    let a: Vec<T> = inputs(11, m * k).into_iter().map(from_f32).collect();
    let b: Vec<T> = inputs(12, k * n).into_iter().map(from_f32).collect();
    let stream = &dev.stream;
    let a_dev: CudaSlice<T> = stream.clone_htod(&a).map_err(cuda)?;
    let b_dev: CudaSlice<T> = stream.clone_htod(&b).map_err(cuda)?;
    let mut c_dev: CudaSlice<T> = stream.alloc_zeros(m * n).map_err(cuda)?;
    let blas = dev.blas()?;
    let cfg = GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_N,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: m as i32,
        n: n as i32,
        k: k as i32,
        alpha: from_f32(1.0),
        lda: m as i32,
        ldb: k as i32,
        beta: from_f32(0.0),
        ldc: m as i32,
    };
    let mut once = || {
        // SAFETY: the buffers hold m×k, k×n and m×n elements laid out
        // column-major with the leading dimensions given in `cfg`.
        unsafe { blas.gemm(cfg, &a_dev, &b_dev, &mut c_dev) }.map_err(|e| format!("cuBLAS: {e:?}"))
    };
    once()?;
    stream.synchronize().map_err(cuda)?;
    let began = Instant::now();
    for _ in 0..REPEATS {
        once()?;
    }
    stream.synchronize().map_err(cuda)?;
    let seconds = began.elapsed().as_secs_f64() / f64::from(REPEATS);
    let c = stream.clone_dtoh(&c_dev).map_err(cuda)?;

    // Check sampled entries against the CPU, in f64 over the same inputs.
    let tolerance = match std::mem::size_of::<T>() {
        4 => 1e-3,
        _ => 2e-2,
    } * (k as f64).sqrt();
    let mut max_error = 0f64;
    for s in 0..SAMPLES {
        let (i, j) = ((s * 7919) % m, (s * 104_729) % n);
        let expected: f64 = (0..k)
            .map(|l| f64::from(to_f32(a[i + l * m])) * f64::from(to_f32(b[l + j * k])))
            .sum();
        max_error = max_error.max((f64::from(to_f32(c[i + j * m])) - expected).abs());
    }
    if max_error > tolerance {
        return Err(format!(
            "{KIND}: GPU differs from the CPU reference by {max_error}"
        ));
    }
    let flops = 2.0 * (m * n * k) as f64;
    Ok(json!({
        "m": m, "n": n, "k": k, "dtype": format!("{:?}", r.dtype).to_lowercase(),
        "device_ms": seconds * 1000.0, "tflop_per_s": flops / seconds / 1e12,
        "max_sampled_error": max_error,
    }))
}
