//! The workload kinds fleet knows. The balancer refuses any other kind at
//! submission, so a typo fails fast instead of waiting for an agent that
//! will never offer it.

/// Every kind an agent can offer.
/// `flaky` is a test workload that fails or hangs its first attempts;
/// `exec` runs an operator-allowed command (agents offer it only when
/// started with `--allow-exec`).
pub const KNOWN_KINDS: &[&str] = &[
    "sleep",
    "echo",
    "flaky",
    "exec",
    "cuda.vector_add",
    "cuda.saxpy",
    "cuda.reduce_sum",
    "cuda.matmul",
    "cuda.kernel",
];

/// Whether `kind` is one fleet knows.
pub fn is_known(kind: &str) -> bool {
    KNOWN_KINDS.contains(&kind)
}

/// Whether `kind` needs a GPU. Agents without one never offer these.
pub fn needs_gpu(kind: &str) -> bool {
    kind.starts_with("cuda.")
}
