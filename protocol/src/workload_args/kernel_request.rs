//! The arguments of `cuda.kernel`, a user-supplied CUDA C kernel, checked
//! in full: by the balancer at submission (a request that cannot run is
//! refused at once, never queued) and by the agent before any CUDA call.
//!
//! ```json
//! {"source": "extern \"C\" __global__ void scale(float a, float* x, unsigned n) {…}",
//!  "entry": "scale", "grid": [4], "block": [256], "shared_mem_bytes": 0,
//!  "args": [{"scalar": "f32", "value": 2.0},
//!           {"buffer": "x", "dtype": "f32", "len": 1024, "init": "random"},
//!           {"scalar": "u32", "value": 1024}],
//!  "outputs": ["x"], "output_format": "checksum"}
//! ```
//!
//! Buffers start as `"zeros"`, `"random"` (uniform in [-1, 1) for floats,
//! bytes for integers) or `{"base64": "…"}` (exactly len × size bytes).
//! Named output buffers come back as a checksum (FNV-1a of the bytes and
//! the sum of the values) or, up to [`MAX_BASE64_OUTPUT`] bytes, in
//! base64.

use std::collections::HashSet;

use super::{bad, BadArgs};
use base64::Engine as _;
use serde_json::Value;

/// The kind these arguments belong to.
pub const KIND: &str = "cuda.kernel";

pub const MAX_SOURCE_BYTES: usize = 256 * 1024;
pub const MAX_ARGS: usize = 64;
pub const MAX_BUFFER_BYTES: u64 = 1 << 30;
/// Raw bytes of base64 outputs: encoded (4 bytes per 3) with room for
/// the rest of the result, they fit the largest result an agent reports
/// ([`crate::defaults::MAX_RESULT_BYTES`]), so a request whose
/// outputs could not be reported is refused before it runs, not after.
pub const MAX_BASE64_OUTPUT: usize = (crate::defaults::MAX_RESULT_BYTES - 16 * 1024) / 4 * 3;
/// Dynamic shared memory without opting in per function (48 KiB).
const MAX_SHARED_BYTES: u32 = 48 * 1024;

/// Element types of scalars and buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
    I32,
    U32,
    I64,
    U64,
    U8,
}

impl Dtype {
    pub fn parse(s: &str) -> Result<Dtype, BadArgs> {
        Ok(match s {
            "f32" => Dtype::F32,
            "f64" => Dtype::F64,
            "i32" => Dtype::I32,
            "u32" => Dtype::U32,
            "i64" => Dtype::I64,
            "u64" => Dtype::U64,
            "u8" => Dtype::U8,
            other => return bad(format!("{KIND}: unknown dtype {other:?}")),
        })
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Dtype::U8 => 1,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }
}

/// A scalar argument, by value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    F32(f32),
    F64(f64),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
}

/// How a buffer starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    Zeros,
    Random,
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Scalar(Scalar),
    Buffer {
        name: String,
        dtype: Dtype,
        len: u64,
        init: Init,
    },
}

/// A checked request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub source: String,
    pub entry: String,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_mem_bytes: u32,
    pub args: Vec<Arg>,
    pub outputs: Vec<String>,
    pub base64_outputs: bool,
}

fn err(msg: impl std::fmt::Display) -> BadArgs {
    BadArgs(format!("{KIND}: {msg}"))
}

fn dims(v: Option<&Value>, name: &str, limits: [u64; 3]) -> Result<(u32, u32, u32), BadArgs> {
    let list = v.and_then(Value::as_array).ok_or_else(|| {
        err(format!(
            "\"{name}\" must be an array of 1 to 3 positive integers"
        ))
    })?;
    if list.is_empty() || list.len() > 3 {
        return Err(err(format!("\"{name}\" must have 1 to 3 dimensions")));
    }
    let mut out = [1u32; 3];
    for (i, d) in list.iter().enumerate() {
        let d = d
            .as_u64()
            .filter(|d| (1..=limits[i]).contains(d))
            .ok_or_else(|| err(format!("{name}[{i}] must be 1..={}", limits[i])))?;
        out[i] = d as u32;
    }
    Ok((out[0], out[1], out[2]))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 128
}

fn scalar(dtype: Dtype, v: &Value) -> Result<Scalar, BadArgs> {
    let bad = || err(format!("scalar value {v} does not fit {dtype:?}"));
    Ok(match dtype {
        Dtype::F32 => Scalar::F32(v.as_f64().filter(|x| x.is_finite()).ok_or_else(bad)? as f32),
        Dtype::F64 => Scalar::F64(v.as_f64().filter(|x| x.is_finite()).ok_or_else(bad)?),
        Dtype::I32 => Scalar::I32(
            v.as_i64()
                .and_then(|x| i32::try_from(x).ok())
                .ok_or_else(bad)?,
        ),
        Dtype::U32 => Scalar::U32(
            v.as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(bad)?,
        ),
        Dtype::I64 => Scalar::I64(v.as_i64().ok_or_else(bad)?),
        Dtype::U64 => Scalar::U64(v.as_u64().ok_or_else(bad)?),
        Dtype::U8 => return Err(err("a scalar cannot be u8")),
    })
}

/// Checks everything about a request before any CUDA call.
pub fn parse(args: &Value) -> Result<Plan, BadArgs> {
    let source = args
        .get("source")
        .and_then(Value::as_str)
        .ok_or_else(|| err("\"source\" (CUDA C) is required"))?;
    if source.len() > MAX_SOURCE_BYTES {
        return Err(err(format!("source is over {MAX_SOURCE_BYTES} bytes")));
    }
    let entry = args
        .get("entry")
        .and_then(Value::as_str)
        .filter(|e| is_identifier(e))
        .ok_or_else(|| err("\"entry\" must be the kernel's name"))?;
    let grid = dims(args.get("grid"), "grid", [(1 << 31) - 1, 65_535, 65_535])?;
    let block = dims(args.get("block"), "block", [1024, 1024, 64])?;
    if u64::from(block.0) * u64::from(block.1) * u64::from(block.2) > 1024 {
        return Err(err("a block has at most 1024 threads"));
    }
    let shared_mem_bytes = match args.get("shared_mem_bytes") {
        None => 0,
        Some(v) => v
            .as_u64()
            .filter(|b| *b <= u64::from(MAX_SHARED_BYTES))
            .ok_or_else(|| err(format!("shared_mem_bytes must be 0..={MAX_SHARED_BYTES}")))?
            as u32,
    };
    let list = args
        .get("args")
        .and_then(Value::as_array)
        .ok_or_else(|| err("\"args\" must be an array"))?;
    if list.len() > MAX_ARGS {
        return Err(err(format!("at most {MAX_ARGS} args")));
    }
    let mut parsed = Vec::with_capacity(list.len());
    let mut names = HashSet::new();
    let mut total_bytes = 0u64;
    for (i, a) in list.iter().enumerate() {
        if let Some(d) = a.get("scalar").and_then(Value::as_str) {
            let value = a
                .get("value")
                .ok_or_else(|| err(format!("args[{i}] lacks \"value\"")))?;
            parsed.push(Arg::Scalar(scalar(Dtype::parse(d)?, value)?));
        } else if let Some(name) = a.get("buffer").and_then(Value::as_str) {
            if !is_identifier(name) || !names.insert(name.to_string()) {
                return Err(err(format!(
                    "args[{i}]: buffer name {name:?} is not a unique identifier"
                )));
            }
            let dtype = Dtype::parse(a.get("dtype").and_then(Value::as_str).unwrap_or(""))?;
            let len = a
                .get("len")
                .and_then(Value::as_u64)
                .filter(|l| *l > 0)
                .ok_or_else(|| err(format!("args[{i}]: \"len\" must be a positive integer")))?;
            let bytes = len
                .checked_mul(dtype.size())
                .filter(|b| *b <= MAX_BUFFER_BYTES)
                .ok_or_else(|| err(format!("buffer {name} is over {MAX_BUFFER_BYTES} bytes")))?;
            total_bytes += bytes;
            if total_bytes > MAX_BUFFER_BYTES {
                return Err(err(format!("buffers total over {MAX_BUFFER_BYTES} bytes")));
            }
            let init = match a.get("init") {
                None => Init::Zeros,
                Some(Value::String(s)) if s == "zeros" => Init::Zeros,
                Some(Value::String(s)) if s == "random" => Init::Random,
                Some(Value::Object(o)) => {
                    let text = o.get("base64").and_then(Value::as_str).ok_or_else(|| {
                        err(format!("buffer {name}: init object needs \"base64\""))
                    })?;
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| err(format!("buffer {name}: bad base64: {e}")))?;
                    if data.len() as u64 != bytes {
                        return Err(err(format!(
                            "buffer {name}: {} bytes of data for {bytes} bytes",
                            data.len()
                        )));
                    }
                    Init::Bytes(data)
                }
                Some(other) => return Err(err(format!("buffer {name}: unknown init {other}"))),
            };
            parsed.push(Arg::Buffer {
                name: name.to_string(),
                dtype,
                len,
                init,
            });
        } else {
            return Err(err(format!(
                "args[{i}] is neither {{\"scalar\"…}} nor {{\"buffer\"…}}"
            )));
        }
    }
    let outputs: Vec<String> = match args.get("outputs") {
        None => Vec::new(),
        Some(Value::Array(o)) => o
            .iter()
            .map(|n| {
                n.as_str()
                    .filter(|n| names.contains(*n))
                    .map(str::to_string)
                    .ok_or_else(|| err(format!("output {n} is not a buffer")))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(err("\"outputs\" must be an array of buffer names")),
    };
    let base64_outputs = match args.get("output_format").and_then(Value::as_str) {
        None | Some("checksum") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(err(format!(
                "output_format {other:?} is not checksum or base64"
            )))
        }
    };
    if base64_outputs {
        let out_bytes: u64 = parsed
            .iter()
            .filter_map(|a| match a {
                Arg::Buffer {
                    name, dtype, len, ..
                } if outputs.contains(name) => Some(len * dtype.size()),
                _ => None,
            })
            .sum();
        if out_bytes > MAX_BASE64_OUTPUT as u64 {
            return Err(err(format!(
                "base64 outputs total {out_bytes} bytes, over {MAX_BASE64_OUTPUT}; ask for checksums"
            )));
        }
    }
    Ok(Plan {
        source: source.to_string(),
        entry: entry.to_string(),
        grid,
        block,
        shared_mem_bytes,
        args: parsed,
        outputs,
        base64_outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "source": "extern \"C\" __global__ void k(float a, float* x) {}",
            "entry": "k", "grid": [2], "block": [128],
            "args": [{"scalar": "f32", "value": 2.0},
                     {"buffer": "x", "dtype": "f32", "len": 256, "init": "random"}],
            "outputs": ["x"]
        })
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        v[key] = value;
        v
    }

    #[test]
    fn a_well_formed_request_parses() -> Result<(), String> {
        let plan = parse(&base())?;
        assert_eq!(plan.grid, (2, 1, 1));
        assert_eq!(plan.block, (128, 1, 1));
        assert_eq!(plan.args.len(), 2);
        assert!(!plan.base64_outputs);
        let data = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        let v = with(
            base(),
            "args",
            json!([{"buffer": "y", "dtype": "u32", "len": 4, "init": {"base64": data}}]),
        );
        let v = with(v, "outputs", json!(["y"]));
        let plan = parse(&with(v, "output_format", json!("base64")))?;
        assert!(plan.base64_outputs);
        Ok(())
    }

    #[test]
    fn base64_outputs_are_refused_unless_the_result_could_carry_them() {
        let request = |len: usize| {
            let v = with(
                base(),
                "args",
                json!([{"buffer": "x", "dtype": "u8", "len": len}]),
            );
            with(v, "output_format", json!("base64"))
        };
        assert!(parse(&request(MAX_BASE64_OUTPUT)).is_ok());
        let e = parse(&request(MAX_BASE64_OUTPUT + 1))
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(e.contains("ask for checksums"), "{e}");
        // The largest accepted output, encoded, in a result as the job
        // returns it, is within what the agent may report.
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_BASE64_OUTPUT]);
        let result = json!({"entry": "k", "device_ms": 0.5, "outputs": {"x": {"base64": encoded}}});
        assert!(result.to_string().len() <= crate::defaults::MAX_RESULT_BYTES);
    }

    #[test]
    fn every_limit_is_checked_before_any_cuda_call() {
        let bad = [
            with(base(), "source", json!(null)),
            with(base(), "source", json!("x".repeat(MAX_SOURCE_BYTES + 1))),
            with(base(), "entry", json!("k; rm -rf /")),
            with(base(), "grid", json!([])),
            with(base(), "grid", json!([0])),
            with(base(), "block", json!([2048])),
            with(base(), "block", json!([64, 32])),
            with(base(), "shared_mem_bytes", json!(1 << 30)),
            with(base(), "args", json!([{"scalar": "f16", "value": 1}])),
            with(base(), "args", json!([{"scalar": "u32", "value": -1}])),
            with(base(), "args", json!([{"scalar": "f32"}])),
            with(
                base(),
                "args",
                json!([{"buffer": "x", "dtype": "f32", "len": 0}]),
            ),
            with(
                base(),
                "args",
                json!([{"buffer": "x", "dtype": "f32", "len": 1u64 << 40}]),
            ),
            with(
                base(),
                "args",
                json!([{"buffer": "x", "dtype": "f32", "len": 4, "init": {"base64": "AAAA"}}]),
            ),
            with(
                base(),
                "args",
                json!([{"buffer": "x", "dtype": "f32", "len": 4, "init": {"base64": "%%%"}}]),
            ),
            with(
                base(),
                "args",
                json!([{"buffer": "x", "dtype": "f32", "len": 4}, {"buffer": "x", "dtype": "f32", "len": 4}]),
            ),
            with(base(), "args", json!([{"mystery": 1}])),
            with(base(), "outputs", json!(["nope"])),
            with(base(), "output_format", json!("xml")),
            with(
                with(
                    base(),
                    "args",
                    json!([{"buffer": "x", "dtype": "f32", "len": 4_000_000}]),
                ),
                "output_format",
                json!("base64"),
            ),
        ];
        for v in bad {
            assert!(
                parse(&v).is_err(),
                "should be refused: {}",
                &v.to_string()[..v.to_string().len().min(200)]
            );
        }
    }
}
