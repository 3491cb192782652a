//! Each workload kind's arguments, checked where fleet first sees them.
//!
//! The balancer runs [`check`] on every submission, so a job that could
//! never run (a GEMM dimension of zero, a user kernel with no source or
//! buffers over a GiB, an `exec` command that is not an absolute path) is
//! refused at once with the reason `bad_args`, instead of failing attempt
//! after attempt on agents. Agents parse the same arguments with the same
//! functions before they touch a GPU or start a process, so the two can
//! never disagree. What depends on one agent (its `--allow-exec` list, its
//! GPUs' free memory) is checked there alone.

pub mod cuda_sizes;
pub mod exec_request;
pub mod kernel_request;

use serde_json::Value;

/// Why a job's arguments cannot run, in words for its producer (the
/// `bad_args` rejection's detail, or the failed attempt's error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadArgs(pub String);

impl From<String> for BadArgs {
    fn from(reason: String) -> BadArgs {
        BadArgs(reason)
    }
}

impl From<&str> for BadArgs {
    fn from(reason: &str) -> BadArgs {
        BadArgs(reason.to_string())
    }
}

/// `Err(BadArgs(reason))`, for the parsers' early returns.
fn bad<T>(reason: String) -> Result<T, BadArgs> {
    Err(BadArgs(reason))
}

/// The agent's workloads report failures as words; bad arguments are one.
impl From<BadArgs> for String {
    fn from(bad: BadArgs) -> String {
        bad.0
    }
}

/// Checks `args` for `kind`; kinds without checks here (`sleep`, `echo`,
/// `flaky`) are checked by the agent that runs them.
pub fn check(kind: &str, args: &Value) -> Result<(), BadArgs> {
    match kind {
        "cuda.vector_add" => cuda_sizes::vector_add(args).map(drop),
        "cuda.saxpy" => cuda_sizes::saxpy(args).map(drop),
        "cuda.reduce_sum" => cuda_sizes::reduce_sum(args).map(drop),
        "cuda.matmul" => cuda_sizes::matmul(args).map(drop),
        kernel_request::KIND => kernel_request::parse(args).map(drop),
        exec_request::KIND => exec_request::parse(args).map(drop),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_checked_kind_refuses_what_cannot_run() {
        for (kind, bad) in [
            ("cuda.vector_add", json!({})),
            ("cuda.saxpy", json!({"n": 8, "a": "x"})),
            ("cuda.reduce_sum", json!({"n": 0})),
            ("cuda.matmul", json!({"m": 0, "n": 1, "k": 1})),
            ("cuda.kernel", json!({"entry": "k"})),
            ("exec", json!({"command": "ls"})),
        ] {
            assert!(check(kind, &bad).is_err(), "{kind} {bad}");
        }
        assert_eq!(check("cuda.vector_add", &json!({"n": 8})), Ok(()));
        assert_eq!(check("sleep", &json!({"anything": true})), Ok(()));
    }
}
