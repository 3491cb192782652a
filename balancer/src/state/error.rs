//! What can go wrong talking to Redis.

/// A Redis failure, or a reply the scripts should never give.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis reply: {0}")]
    Parse(#[from] redis::ParsingError),
    #[error("this balancer does not lead (another took over)")]
    NotLeader,
    #[error("unexpected reply from {script}: {detail}")]
    Reply {
        script: &'static str,
        detail: String,
    },
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// Scripts refuse a caller without the current leadership token with
    /// a `NOTLEADER` error.
    pub(crate) fn from_script(e: redis::RedisError) -> StoreError {
        if e.code() == Some("NOTLEADER") {
            StoreError::NotLeader
        } else {
            StoreError::Redis(e)
        }
    }
}
