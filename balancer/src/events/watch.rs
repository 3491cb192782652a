//! How long the balancer has watched the fleet without interruption.
//!
//! Silence from an agent means something only if the balancer was able to
//! hear it: while the balancer was down, standing by, cut off from NATS, or
//! unable to write to Redis, heartbeats and starts pile up unapplied. The
//! sweeper therefore declares an agent dead, or a lease overdue, only when
//! the balancer has been watching for at least the timeout in question:
//! silence is measured from the later of the agent's last heartbeat and
//! the start of the current watch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fleet_protocol::time::now_ms;

#[derive(Debug, Default)]
pub struct Watch {
    since_ms: AtomicU64,
}

impl Watch {
    /// A watch that starts now.
    pub fn new() -> Watch {
        Watch {
            since_ms: AtomicU64::new(now_ms()),
        }
    }

    /// The watch was interrupted (`why`): it starts again now.
    pub fn restart(&self, why: &str) {
        tracing::debug!(why, "watch restarted");
        self.since_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether the balancer has watched for at least `span` up to `now_ms`.
    pub fn covers(&self, span: Duration, now_ms: u64) -> bool {
        self.since_ms.load(Ordering::Relaxed) + span.as_millis() as u64 <= now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_only_after_the_span_has_passed_since_a_restart() {
        let w = Watch::new();
        let start = w.since_ms.load(Ordering::Relaxed);
        assert!(!w.covers(Duration::from_secs(1), start + 999));
        assert!(w.covers(Duration::from_secs(1), start + 1000));
        w.since_ms.store(start + 5000, Ordering::Relaxed);
        assert!(!w.covers(Duration::from_secs(1), start + 5500));
    }
}
