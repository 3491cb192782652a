//! The arguments of the built-in CUDA kinds: vector sizes and GEMM shapes,
//! each bounded so a request cannot ask the agent for more than a GPU
//! could hold.

use super::{bad, BadArgs};
use serde_json::Value;

/// The largest N of `cuda.vector_add`, `cuda.saxpy` and `cuda.reduce_sum`:
/// a vector add's three f32 vectors stay under 3 GiB.
pub const MAX_N: u64 = 1 << 28;
/// The largest M, N or K of `cuda.matmul`.
pub const MAX_DIM: u64 = 32_768;

/// A `u64` argument `name` in `1..=max`.
pub fn positive(args: &Value, name: &str, max: u64) -> Result<u64, BadArgs> {
    let v = args
        .get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("\"{name}\" must be a positive integer"))?;
    if v == 0 || v > max {
        return bad(format!("\"{name}\" must be 1..={max}, got {v}"));
    }
    Ok(v)
}

/// `cuda.vector_add`: `{"n": N}`.
pub fn vector_add(args: &Value) -> Result<u64, BadArgs> {
    positive(args, "n", MAX_N).map_err(|e| BadArgs(format!("cuda.vector_add: {e}")))
}

/// `cuda.reduce_sum`: `{"n": N}`.
pub fn reduce_sum(args: &Value) -> Result<u64, BadArgs> {
    positive(args, "n", MAX_N).map_err(|e| BadArgs(format!("cuda.reduce_sum: {e}")))
}

/// `cuda.saxpy`: `{"n": N, "a": A}` (A defaults to 2).
pub fn saxpy(args: &Value) -> Result<(u64, f32), BadArgs> {
    let n = positive(args, "n", MAX_N).map_err(|e| format!("cuda.saxpy: {e}"))?;
    let a = match args.get("a") {
        None => 2.0,
        Some(v) => v
            .as_f64()
            .filter(|a| a.is_finite())
            .ok_or_else(|| "cuda.saxpy: \"a\" must be a finite number".to_string())?
            as f32,
    };
    Ok((n, a))
}

/// `cuda.matmul`'s element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulDtype {
    F32,
    F16,
    Bf16,
}

impl MatmulDtype {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            MatmulDtype::F32 => 4,
            MatmulDtype::F16 | MatmulDtype::Bf16 => 2,
        }
    }
}

/// `cuda.matmul`: `{"m", "n", "k", "dtype"}`.
#[derive(Debug, PartialEq)]
pub struct Matmul {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub dtype: MatmulDtype,
}

/// `cuda.matmul`: `{"m": M, "n": N, "k": K, "dtype": "f32"|"f16"|"bf16"}`
/// (dtype defaults to f32).
pub fn matmul(args: &Value) -> Result<Matmul, BadArgs> {
    let dim = |name: &str| positive(args, name, MAX_DIM).map_err(|e| format!("cuda.matmul: {e}"));
    let dtype = match args.get("dtype").and_then(Value::as_str).unwrap_or("f32") {
        "f32" => MatmulDtype::F32,
        "f16" => MatmulDtype::F16,
        "bf16" => MatmulDtype::Bf16,
        other => {
            return bad(format!(
                "cuda.matmul: dtype {other:?} is not f32, f16 or bf16"
            ))
        }
    };
    Ok(Matmul {
        m: dim("m")?,
        n: dim("n")?,
        k: dim("k")?,
        dtype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_must_be_positive_and_bounded() {
        assert_eq!(positive(&json!({"n": 5}), "n", 10), Ok(5));
        assert!(positive(&json!({"n": 0}), "n", 10).is_err());
        assert!(positive(&json!({"n": 11}), "n", 10).is_err());
        assert!(positive(&json!({"n": "5"}), "n", 10).is_err());
        assert!(positive(&json!({"n": -3}), "n", 10).is_err());
        assert!(positive(&json!({}), "n", 10).is_err());
        assert_eq!(vector_add(&json!({"n": 1024})), Ok(1024));
        assert!(vector_add(&json!({"n": MAX_N + 1})).is_err());
        assert_eq!(reduce_sum(&json!({"n": 10})), Ok(10));
        assert!(reduce_sum(&json!({"n": 0})).is_err());
    }

    #[test]
    fn saxpy_takes_a_finite_factor() {
        assert_eq!(saxpy(&json!({"n": 8})), Ok((8, 2.0)));
        assert_eq!(saxpy(&json!({"n": 8, "a": 0.5})), Ok((8, 0.5)));
        assert!(saxpy(&json!({"n": 8, "a": "x"})).is_err());
        assert!(saxpy(&json!({"n": 0})).is_err());
    }

    #[test]
    fn matmul_takes_three_bounded_dimensions_and_a_known_dtype() {
        assert_eq!(
            matmul(&json!({"m": 2, "n": 3, "k": 4, "dtype": "bf16"})),
            Ok(Matmul {
                m: 2,
                n: 3,
                k: 4,
                dtype: MatmulDtype::Bf16
            })
        );
        assert_eq!(
            matmul(&json!({"m": 2, "n": 3, "k": 4})).map(|r| r.dtype),
            Ok(MatmulDtype::F32)
        );
        assert!(matmul(&json!({"m": 2, "n": 3, "k": 4, "dtype": "int8"})).is_err());
        assert!(matmul(&json!({"m": 2, "n": 3})).is_err());
        assert!(matmul(&json!({"m": MAX_DIM + 1, "n": 3, "k": 4})).is_err());
    }
}
