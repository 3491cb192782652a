//! `cuda.kernel`: runs a user-supplied CUDA C kernel on the GPU.
//!
//! The request is checked in full first
//! ([`fleet_protocol::workload_args::kernel_request`]; the balancer has
//! checked it too), so nothing reaches CUDA that cannot run; a kernel that
//! does not compile fails the job with NVRTC's log.

use std::time::Instant;

use base64::Engine as _;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use fleet_protocol::workload_args::kernel_request::{parse, Arg, Dtype, Init, Scalar};
use serde_json::{json, Value};

use super::{cuda_error, device, inputs};

pub use fleet_protocol::workload_args::kernel_request::{KIND, MAX_SOURCE_BYTES};

/// FNV-1a of bytes, as hex.
fn fnv1a(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    });
    format!("{h:016x}")
}

/// The sum of a buffer's values, read as `dtype`.
fn sum_as(dtype: Dtype, bytes: &[u8]) -> f64 {
    let n = dtype.size() as usize;
    bytes
        .chunks_exact(n)
        .map(|c| match dtype {
            Dtype::U8 => f64::from(c[0]),
            Dtype::F32 => f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Dtype::I32 => f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Dtype::U32 => f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Dtype::F64 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            Dtype::I64 => {
                i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
            }
            Dtype::U64 => {
                u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
            }
        })
        .sum()
}

fn initial_bytes(dtype: Dtype, len: u64, init: &Init) -> Vec<u8> {
    let bytes = (len * dtype.size()) as usize;
    match init {
        Init::Zeros => vec![0; bytes],
        Init::Bytes(b) => b.clone(),
        // The same sequence as `cuda::inputs(21, len)` for f32, so a caller
        // can recompute the input (selftest does).
        Init::Random => match dtype {
            Dtype::F32 => inputs(21, len as usize)
                .into_iter()
                .flat_map(f32::to_le_bytes)
                .collect(),
            Dtype::F64 => inputs(21, len as usize)
                .into_iter()
                .flat_map(|x| f64::from(x).to_le_bytes())
                .collect(),
            _ => inputs(22, bytes)
                .into_iter()
                .map(|x| ((x + 1.0) * 127.5) as u8)
                .collect(),
        },
    }
}

/// A user kernel's launch or run failed: its text, and if the failure
/// broke the context, the GPU is given up ([`super::fault`]).
fn failed(index: usize, e: cudarc::driver::DriverError) -> String {
    let sticky = super::is_sticky(&e);
    let text = cuda_error(e, index);
    if sticky {
        super::fault(index, &text);
    }
    text
}

pub fn run_json(index: usize, args: &Value) -> Result<Value, String> {
    let plan = parse(args)?;
    let dev = device(index)?;
    let total: u64 = plan
        .args
        .iter()
        .map(|a| match a {
            Arg::Buffer { dtype, len, .. } => len * dtype.size(),
            Arg::Scalar(_) => 0,
        })
        .sum();
    dev.reserve(total)?;
    let function = dev.function(&plan.source, &plan.entry)?;
    let stream = &dev.stream;
    let cuda = |e| cuda_error(e, index);

    // Device buffers (as bytes: a kernel parameter is a pointer either
    // way), and every scalar in storage that outlives the launch builder.
    let mut buffers: Vec<(String, Dtype, CudaSlice<u8>)> = Vec::new();
    for a in &plan.args {
        if let Arg::Buffer {
            name,
            dtype,
            len,
            init,
        } = a
        {
            let data = initial_bytes(*dtype, *len, init);
            buffers.push((
                name.clone(),
                *dtype,
                stream.clone_htod(&data).map_err(cuda)?,
            ));
        }
    }
    let scalars: Vec<Scalar> = plan
        .args
        .iter()
        .filter_map(|a| match a {
            Arg::Scalar(s) => Some(*s),
            Arg::Buffer { .. } => None,
        })
        .collect();
    let config = LaunchConfig {
        grid_dim: plan.grid,
        block_dim: plan.block,
        shared_mem_bytes: plan.shared_mem_bytes,
    };
    stream.synchronize().map_err(cuda)?;
    let began = Instant::now();
    {
        let mut launch = stream.launch_builder(&function);
        let (mut next_buffer, mut next_scalar) = (buffers.iter(), scalars.iter());
        for a in &plan.args {
            match a {
                Arg::Buffer { .. } => {
                    if let Some((_, _, slice)) = next_buffer.next() {
                        launch.arg(slice);
                    }
                }
                Arg::Scalar(_) => match next_scalar.next() {
                    Some(Scalar::F32(v)) => {
                        launch.arg(v);
                    }
                    Some(Scalar::F64(v)) => {
                        launch.arg(v);
                    }
                    Some(Scalar::I32(v)) => {
                        launch.arg(v);
                    }
                    Some(Scalar::U32(v)) => {
                        launch.arg(v);
                    }
                    Some(Scalar::I64(v)) => {
                        launch.arg(v);
                    }
                    Some(Scalar::U64(v)) => {
                        launch.arg(v);
                    }
                    None => {}
                },
            }
        }
        // SAFETY: this runs the caller's code on the GPU with the
        // arguments they declared; it can only touch device memory.
        // Buffers are sized as declared, and every argument outlives the
        // launch. A faulting kernel leaves the context unusable: the GPU
        // is then given up and the agent restarts (`failed`, below).
        if let Err(e) = unsafe { launch.launch(config) } {
            return Err(failed(index, e));
        }
    }
    if let Err(e) = stream.synchronize() {
        return Err(failed(index, e));
    }
    let device_ms = began.elapsed().as_secs_f64() * 1000.0;

    let mut outputs = serde_json::Map::new();
    for (name, dtype, slice) in &buffers {
        if !plan.outputs.contains(name) {
            continue;
        }
        let bytes = stream.clone_dtoh(slice).map_err(cuda)?;
        let value = if plan.base64_outputs {
            json!({"base64": base64::engine::general_purpose::STANDARD.encode(&bytes)})
        } else {
            json!({"fnv1a": fnv1a(&bytes), "sum": sum_as(*dtype, &bytes), "bytes": bytes.len()})
        };
        outputs.insert(name.clone(), value);
    }
    Ok(json!({"entry": plan.entry, "device_ms": device_ms, "outputs": outputs}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_read_values_by_dtype() {
        let bytes: Vec<u8> = [1.5f32, 2.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(sum_as(Dtype::F32, &bytes), 4.0);
        assert_eq!(sum_as(Dtype::U8, &[1, 2, 3]), 6.0);
        assert_eq!(fnv1a(b""), "cbf29ce484222325");
        assert_eq!(initial_bytes(Dtype::U32, 3, &Init::Zeros).len(), 12);
        assert_eq!(initial_bytes(Dtype::F64, 3, &Init::Random).len(), 24);
    }
}
