//! The jobs a bench run submits: one kind and arguments for all, or a
//! preset mix (`--mix gpu`, `--mix cuda`), with priorities drawn by weight
//! (`--priority-mix`). Every draw comes from a seeded sequence, so
//! `--seed` repeats a run exactly.

use anyhow::Context as _;
use fleet_protocol::{JobSpec, Priority, Requirements};
use serde_json::json;

/// A fixed pseudo-random sequence (splitmix64), so --seed repeats a run.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn gpu_mix(rng: &mut u64) -> JobSpec {
    let roll = next(rng) % 100;
    let (ms, requires) = if roll < 20 {
        (
            200,
            Requirements {
                gpus: Some(1),
                gpu_mem_mb: Some(40_960),
                ..Requirements::default()
            },
        )
    } else if roll < 50 {
        (
            100,
            Requirements {
                gpus: Some(1),
                ..Requirements::default()
            },
        )
    } else {
        (10 + next(rng) % 91, Requirements::default())
    };
    JobSpec {
        requires,
        ..JobSpec::new("sleep", json!({ "ms": ms }))
    }
}

/// Real CUDA work: vector add, SAXPY and reductions over 4M elements, a
/// 1024³ f16 GEMM, and a user kernel.
pub fn cuda_mix(rng: &mut u64) -> JobSpec {
    let n = 1u64 << 22;
    let (kind, args) = match next(rng) % 20 {
        0..=4 => ("cuda.vector_add", json!({"n": n})),
        5..=8 => ("cuda.saxpy", json!({"n": n, "a": 1.5})),
        9..=12 => ("cuda.reduce_sum", json!({"n": n})),
        13..=16 => (
            "cuda.matmul",
            json!({"m": 1024, "n": 1024, "k": 1024, "dtype": "f16"}),
        ),
        _ => (
            "cuda.kernel",
            json!({
                "source": "extern \"C\" __global__ void scale(float a, float* x, unsigned int n) { unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] = a * x[i]; }",
                "entry": "scale", "grid": [4096], "block": [256],
                "args": [{"scalar": "f32", "value": 3.0},
                         {"buffer": "x", "dtype": "f32", "len": 1048576, "init": "random"},
                         {"scalar": "u32", "value": 1048576}],
                "outputs": ["x"]
            }),
        ),
    };
    JobSpec::new(kind, args)
}

pub fn parse_priority_mix(spec: Option<&str>) -> anyhow::Result<Vec<(Priority, u64)>> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    spec.split(',')
        .map(|part| {
            let (p, w) = part
                .split_once(':')
                .with_context(|| format!("{part:?} is not PRIORITY:WEIGHT"))?;
            Ok((p.parse::<Priority>()?, w.parse::<u64>()?))
        })
        .collect()
}

pub fn pick(mix: &[(Priority, u64)], rng: &mut u64) -> Option<Priority> {
    let total: u64 = mix.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut roll = next(rng) % total;
    for (p, w) in mix {
        if roll < *w {
            return Some(*p);
        }
        roll -= w;
    }
    None
}
