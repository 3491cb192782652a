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

/// Checks `args` for `kind`; kinds without checks here (`sleep`, `echo`,
/// `flaky`) are checked by the agent that runs them.
pub fn check(kind: &str, args: &Value) -> Result<(), String> {
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
