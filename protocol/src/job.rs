//! A job as a producer submits it, and the checks it must pass.
//!
//! [`JobSpec`] is the JSON a producer publishes on `fleet.jobs.submit`.
//! [`JobSpec::validate`] turns it into a [`ValidJob`] with every default
//! filled in, or says exactly what is wrong ([`InvalidJob`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::defaults;
use crate::ids::{is_valid_token, InvalidId};
use crate::priority::Priority;
use crate::workload;

/// A job submission, as JSON on `fleet.jobs.submit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job id. The producer client fills in a ULID when it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Workload kind, e.g. `sleep`, `echo`, `cuda.vector_add`.
    pub kind: String,
    /// The workload's JSON arguments.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
    /// Explicit priority; wins over `reward`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// What the job pays; derives the priority when none is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
    /// Run-time limit in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// How many attempts before the job is dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// What an agent must have to run the job.
    #[serde(default, skip_serializing_if = "Requirements::is_empty")]
    pub requires: Requirements,
}

/// What a job needs from an agent. Every key is optional; GPU memory and
/// compute capability hold per GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_mem_mb: Option<u64>,
    /// Minimum compute capability, `"major.minor"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Requirements {
    pub fn is_empty(&self) -> bool {
        *self == Requirements::default()
    }
}

/// A submission that passed every check, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidJob {
    pub id: String,
    pub kind: String,
    pub args: Value,
    pub priority: Priority,
    /// The producer's timeout, or the default when it gave none.
    pub timeout: Duration,
    /// Whether the producer gave the timeout; when it did not, the
    /// balancer may derive one from the job kind's run-time history.
    pub timeout_given: bool,
    pub max_attempts: u32,
    pub requires: Requirements,
}

/// Why a submission was refused. Each variant is one clear message for the
/// producer, published on `fleet.rejected`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidJob {
    #[error("submission is {size} bytes; the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("submission is not UTF-8 text")]
    NotUtf8,
    #[error("submission is not valid JSON for a job: {0}")]
    Malformed(String),
    #[error("{field} must be {expected}, got {value}")]
    BadField {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("invalid job id: {0}")]
    BadId(#[from] InvalidId),
    #[error("unknown workload kind {0:?}")]
    UnknownKind(String),
    #[error("timeout_ms must be between 1 and {max}, got {got}")]
    BadTimeout { got: u64, max: u64 },
    #[error("max_attempts must be between 1 and {max}, got {got}")]
    BadMaxAttempts { got: u32, max: u32 },
    #[error("reward must be a finite number ≥ 0, got {0}")]
    BadReward(f64),
    #[error("impossible requirements: {0}")]
    BadRequirements(String),
    #[error("args nest deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("{0}")]
    BadArgs(#[from] crate::workload_args::BadArgs),
}

impl InvalidJob {
    /// A short stable name for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidJob::TooLarge { .. } => "too_large",
            InvalidJob::NotUtf8 => "not_utf8",
            InvalidJob::Malformed(_) => "malformed",
            InvalidJob::BadField { field, .. } => match *field {
                "id" => "bad_id",
                "kind" => "unknown_kind",
                "priority" => "bad_priority",
                "timeout_ms" => "bad_timeout",
                "max_attempts" => "bad_max_attempts",
                "reward" => "bad_reward",
                _ => "malformed",
            },
            InvalidJob::BadId(_) => "bad_id",
            InvalidJob::UnknownKind(_) => "unknown_kind",
            InvalidJob::BadTimeout { .. } => "bad_timeout",
            InvalidJob::BadMaxAttempts { .. } => "bad_max_attempts",
            InvalidJob::BadReward(_) => "bad_reward",
            InvalidJob::BadRequirements(_) => "bad_requirements",
            InvalidJob::TooDeep { .. } => "too_deep",
            InvalidJob::BadArgs(_) => "bad_args",
        }
    }
}

/// A field name, what it must be, and the test of a value.
type FieldCheck = (&'static str, &'static str, fn(&Value) -> bool);

/// Why a submission that did not decode was refused, as precisely as the
/// payload allows: not text, not JSON, or one field of the wrong type or
/// value (serde's own error names the field only in its message). Runs only
/// on the error path, so a good submission is parsed once.
fn classify(payload: &[u8], error: serde_json::Error) -> InvalidJob {
    if std::str::from_utf8(payload).is_err() {
        return InvalidJob::NotUtf8;
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(payload) else {
        return InvalidJob::Malformed(error.to_string());
    };
    let checks: [FieldCheck; 6] = [
        ("id", "a string", Value::is_string),
        ("kind", "a string", Value::is_string),
        ("priority", "one of low, normal, high, urgent", |v| {
            serde_json::from_value::<Priority>(v.clone()).is_ok()
        }),
        (
            "timeout_ms",
            "a whole number of milliseconds ≥ 1",
            Value::is_u64,
        ),
        ("max_attempts", "a whole number ≥ 1", |v| {
            v.as_u64().is_some_and(|n| n <= u64::from(u32::MAX))
        }),
        ("reward", "a number ≥ 0", Value::is_number),
    ];
    for (field, expected, valid) in checks {
        if let Some(value) = fields.get(field).filter(|v| !v.is_null()) {
            if !valid(value) {
                let mut value = value.to_string();
                if value.len() > 64 {
                    let cut = (0..=64)
                        .rev()
                        .find(|&i| value.is_char_boundary(i))
                        .unwrap_or(0);
                    value.truncate(cut);
                    value.push('…');
                }
                return InvalidJob::BadField {
                    field,
                    value,
                    expected,
                };
            }
        }
    }
    InvalidJob::Malformed(error.to_string())
}

impl JobSpec {
    /// A job of `kind` with `args` and every other field defaulted.
    pub fn new(kind: impl Into<String>, args: Value) -> JobSpec {
        JobSpec {
            kind: kind.into(),
            args,
            ..JobSpec::default()
        }
    }

    /// Decodes a submission, refusing oversized or malformed payloads.
    pub fn decode(payload: &[u8]) -> Result<JobSpec, InvalidJob> {
        if payload.len() > defaults::MAX_JOB_BYTES {
            return Err(InvalidJob::TooLarge {
                size: payload.len(),
                max: defaults::MAX_JOB_BYTES,
            });
        }
        // serde would also read a struct from a JSON array of its fields in
        // order; a job is an object.
        if payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(match std::str::from_utf8(payload) {
                Ok(_) => InvalidJob::Malformed("a job is a JSON object, not an array".into()),
                Err(_) => InvalidJob::NotUtf8,
            });
        }
        serde_json::from_slice(payload).map_err(|e| classify(payload, e))
    }

    /// Checks the submission and fills in defaults. `fallback_id` names the
    /// job when the submission carries no id of its own.
    pub fn validate(self, fallback_id: &str) -> Result<ValidJob, InvalidJob> {
        let Checked {
            timeout,
            max_attempts,
            priority,
        } = self.check(fallback_id)?;
        let args = if self.args.is_null() {
            Value::Object(Default::default())
        } else {
            self.args
        };
        Ok(ValidJob {
            id: self.id.unwrap_or_else(|| fallback_id.to_string()),
            kind: self.kind,
            args,
            priority,
            timeout,
            timeout_given: self.timeout_ms.is_some(),
            max_attempts,
            requires: self.requires,
        })
    }

    /// What [`JobSpec::validate`] checks, without taking the job: for a
    /// producer that still has to send it (arguments can be megabytes of
    /// base64, not worth a copy to check).
    pub fn check(&self, fallback_id: &str) -> Result<Checked, InvalidJob> {
        is_valid_token(self.id.as_deref().unwrap_or(fallback_id))?;
        if !workload::is_known(&self.kind) {
            return Err(InvalidJob::UnknownKind(self.kind.clone()));
        }
        let max_timeout = defaults::MAX_JOB_TIMEOUT.as_millis() as u64;
        let timeout = match self.timeout_ms {
            None => defaults::JOB_TIMEOUT,
            Some(ms) if (1..=max_timeout).contains(&ms) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(InvalidJob::BadTimeout {
                    got: ms,
                    max: max_timeout,
                })
            }
        };
        let max_attempts = match self.max_attempts {
            None => defaults::MAX_ATTEMPTS,
            Some(n) if (1..=defaults::MAX_MAX_ATTEMPTS).contains(&n) => n,
            Some(n) => {
                return Err(InvalidJob::BadMaxAttempts {
                    got: n,
                    max: defaults::MAX_MAX_ATTEMPTS,
                })
            }
        };
        let priority = match (self.priority, self.reward) {
            (_, Some(r)) if !r.is_finite() || r < 0.0 => return Err(InvalidJob::BadReward(r)),
            (Some(p), _) => p,
            (None, Some(r)) => Priority::from_reward(r),
            (None, None) => Priority::Normal,
        };
        check_requirements(&self.requires)?;
        if depth(&self.args) > defaults::MAX_ARGS_DEPTH {
            return Err(InvalidJob::TooDeep {
                max: defaults::MAX_ARGS_DEPTH,
            });
        }
        crate::workload_args::check(&self.kind, &self.args)?;
        if workload::needs_gpu(&self.kind) && self.requires.gpus == Some(0) {
            return Err(InvalidJob::BadRequirements(format!(
                "{} runs on a GPU; gpus cannot be 0",
                self.kind
            )));
        }
        Ok(Checked {
            timeout,
            max_attempts,
            priority,
        })
    }
}

/// The defaults a checked job takes: what [`JobSpec::check`] works out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checked {
    /// The job's time limit per attempt.
    pub timeout: Duration,
    /// How many attempts it gets before it is dead-lettered.
    pub max_attempts: u32,
    /// Its priority, given or derived from its reward.
    pub priority: Priority,
}

fn check_requirements(r: &Requirements) -> Result<(), InvalidJob> {
    if let Some(cc) = &r.compute_capability {
        parse_compute_capability(cc).ok_or_else(|| {
            InvalidJob::BadRequirements(format!(
                "compute_capability {cc:?} is not of the form \"major.minor\""
            ))
        })?;
    }
    if r.gpus.unwrap_or(0) > 64 {
        return Err(InvalidJob::BadRequirements(format!(
            "{} GPUs requested; no agent has more than 64",
            r.gpus.unwrap_or(0)
        )));
    }
    if r.gpu_mem_mb.is_some_and(|m| m > 0) && r.gpus == Some(0) {
        return Err(InvalidJob::BadRequirements(
            "gpu_mem_mb given with gpus = 0".to_string(),
        ));
    }
    for tag in &r.tags {
        if tag.is_empty() || tag.len() > 64 {
            return Err(InvalidJob::BadRequirements(format!(
                "tag {tag:?} must be 1 to 64 bytes"
            )));
        }
    }
    Ok(())
}

/// How deeply arrays and objects nest in `v` (a scalar is 0).
fn depth(v: &Value) -> usize {
    // Iterative, so a hostile document cannot exhaust the stack here.
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// Parses `"8.0"` into `(8, 0)`.
pub fn parse_compute_capability(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> JobSpec {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("test spec must parse: {e}"))
    }

    #[test]
    fn defaults_fill_in() {
        let job = spec(json!({"kind": "sleep"})).validate("fallback").ok();
        let job = job.unwrap_or_else(|| panic!("valid"));
        assert_eq!(job.id, "fallback");
        assert_eq!(job.priority, Priority::Normal);
        assert_eq!(job.max_attempts, defaults::MAX_ATTEMPTS);
        assert_eq!(job.timeout, defaults::JOB_TIMEOUT);
        assert_eq!(job.args, json!({}));
    }

    #[test]
    fn reward_derives_priority_but_explicit_priority_wins() {
        let j = spec(json!({"kind": "echo", "reward": 0.02})).validate("a");
        assert_eq!(j.map(|j| j.priority), Ok(Priority::High));
        let j = spec(json!({"kind": "echo", "reward": 0.02, "priority": "low"})).validate("a");
        assert_eq!(j.map(|j| j.priority), Ok(Priority::Low));
    }

    #[test]
    fn refuses_each_kind_of_bad_input() {
        let cases = [
            (json!({"kind": "nope"}), "unknown_kind"),
            (json!({"kind": "sleep", "id": "a.b"}), "bad_id"),
            (json!({"kind": "sleep", "timeout_ms": 0}), "bad_timeout"),
            (
                json!({"kind": "sleep", "max_attempts": 0}),
                "bad_max_attempts",
            ),
            (json!({"kind": "sleep", "reward": -1.0}), "bad_reward"),
            (
                json!({"kind": "sleep", "requires": {"compute_capability": "eight"}}),
                "bad_requirements",
            ),
            (
                json!({"kind": "cuda.saxpy", "args": {"n": 8}, "requires": {"gpus": 0}}),
                "bad_requirements",
            ),
            (json!({"kind": "cuda.saxpy"}), "bad_args"),
            (
                json!({"kind": "cuda.matmul", "args": {"m": 8, "n": 8, "k": 0}}),
                "bad_args",
            ),
            (
                json!({"kind": "cuda.kernel", "args": {"source": "", "entry": "k"}}),
                "bad_args",
            ),
            (
                json!({"kind": "exec", "args": {"command": "rm"}}),
                "bad_args",
            ),
            (
                json!({"kind": "echo", "args": (0..40).fold(json!(1), |v, _| json!([v]))}),
                "too_deep",
            ),
        ];
        for (v, reason) in cases {
            let got = spec(v.clone()).validate("x");
            assert_eq!(got.err().map(|e| e.reason()), Some(reason), "{v}");
        }
    }

    #[test]
    fn decode_refuses_unknown_fields_and_garbage_and_size() {
        let e = JobSpec::decode(br#"{"kind":"sleep","colour":"red"}"#);
        assert_eq!(e.err().map(|e| e.reason()), Some("malformed"));
        let e = JobSpec::decode(b"\xff\xfe not json");
        assert_eq!(e.err().map(|e| e.reason()), Some("not_utf8"));
        let e = JobSpec::decode(b"{\"kind\": \"echo\"");
        assert_eq!(e.err().map(|e| e.reason()), Some("malformed"));
        let e = JobSpec::decode(br#" [null, "sleep"]"#);
        assert_eq!(e.err().map(|e| e.reason()), Some("malformed"));
        let big = vec![b' '; defaults::MAX_JOB_BYTES + 1];
        assert_eq!(
            JobSpec::decode(&big).err().map(|e| e.reason()),
            Some("too_large")
        );
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let cases = [
            (
                r#"{"kind":"echo","priority":"ultra"}"#,
                "bad_priority",
                "priority",
            ),
            (
                r#"{"kind":"echo","priority":3}"#,
                "bad_priority",
                "priority",
            ),
            (
                r#"{"kind":"echo","timeout_ms":-5}"#,
                "bad_timeout",
                "timeout_ms",
            ),
            (
                r#"{"kind":"echo","timeout_ms":1.5}"#,
                "bad_timeout",
                "timeout_ms",
            ),
            (
                r#"{"kind":"echo","max_attempts":-1}"#,
                "bad_max_attempts",
                "max_attempts",
            ),
            (r#"{"kind":"echo","id":7}"#, "bad_id", "id"),
            (r#"{"kind":["echo"]}"#, "unknown_kind", "kind"),
            (r#"{"kind":"echo","reward":"lots"}"#, "bad_reward", "reward"),
        ];
        for (body, reason, field) in cases {
            let err = JobSpec::decode(body.as_bytes()).err();
            assert_eq!(err.as_ref().map(|e| e.reason()), Some(reason), "{body}");
            let text = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(text.starts_with(field), "{body}: {text}");
        }
        // A long bad value is cut short in the message.
        let long = format!(r#"{{"kind":"echo","priority":"{}"}}"#, "é".repeat(100));
        let text = JobSpec::decode(long.as_bytes())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.len() < 200 && text.ends_with('…'), "{text}");
    }

    #[test]
    fn compute_capability_parses() {
        assert_eq!(parse_compute_capability("8.9"), Some((8, 9)));
        assert_eq!(parse_compute_capability("9"), None);
    }
}
