//! Why an attempt failed, as the agent reports it: the `error` of its
//! `failed` event, which the producer reads in the job's result.
//!
//! The workloads themselves describe their own failures in words (a bad
//! argument, a command's stderr, a CUDA error): those travel as
//! [`WorkloadError::Failed`]. What the agent decides around a workload
//! has a variant of its own.

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// Placed here although this agent does not offer the kind (its
    /// registration changed since, or the job was misrouted).
    #[error("this agent does not run workload kind {0:?}")]
    UnknownKind(String),
    /// Ran past its timeout; the agent stopped it.
    #[error("timed out after {0} ms")]
    TimedOut(u64),
    /// Its result is larger than an event may carry.
    #[error("result of {size} bytes exceeds the {limit} byte limit")]
    ResultTooLarge { size: usize, limit: usize },
    /// What the workload reported.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for WorkloadError {
    fn from(message: String) -> WorkloadError {
        WorkloadError::Failed(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words are the wire format: producers and tests match on them.
    #[test]
    fn each_failure_reads_as_it_always_has() {
        assert_eq!(
            WorkloadError::UnknownKind("teleport".into()).to_string(),
            "this agent does not run workload kind \"teleport\""
        );
        assert_eq!(
            WorkloadError::TimedOut(250).to_string(),
            "timed out after 250 ms"
        );
        assert_eq!(
            WorkloadError::ResultTooLarge { size: 9, limit: 8 }.to_string(),
            "result of 9 bytes exceeds the 8 byte limit"
        );
        assert_eq!(WorkloadError::from("boom".to_string()).to_string(), "boom");
    }
}
