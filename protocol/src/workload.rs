//! The workload kinds fleet knows. The balancer refuses any other kind at
//! submission, so a typo fails fast instead of waiting for an agent that
//! will never offer it.

/// Every kind an agent can offer.
/// `flaky` is a test workload that fails or hangs its first attempts.
pub const KNOWN_KINDS: &[&str] = &["sleep", "echo", "flaky", "cuda.vector_add"];

/// Whether `kind` is one fleet knows.
pub fn is_known(kind: &str) -> bool {
    KNOWN_KINDS.contains(&kind)
}

/// Whether `kind` needs a GPU. Agents without one never offer these.
pub fn needs_gpu(kind: &str) -> bool {
    kind.starts_with("cuda.")
}
