//! Leadership: one balancer leads, any others stand by.
//!
//! The leader holds `P:leader` in Redis, a lease with a TTL that it renews
//! every third of the TTL. Each acquisition takes a fresh epoch, and the
//! resulting token is passed to every state-changing script, which refuses
//! any other token: a leader that was paused past its TTL and replaced
//! cannot write again, whatever it believes. A standby polls the lease and
//! takes over within one TTL plus one poll of the leader's death.

use std::time::Duration;

use tokio::time::Instant;

use crate::state::{Lead, Store};

/// One balancer's claim on leadership.
pub struct Leadership {
    store: Store,
    id: String,
    ttl: Duration,
}

/// Why [`Leadership::hold`] returned.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    #[error("leadership taken over by {0}")]
    TakenOver(String),
    #[error("cannot renew leadership for {0:?}: {1}")]
    Unreachable(Duration, String),
}

impl Leadership {
    pub fn new(store: Store, id: String, ttl: Duration) -> Leadership {
        Leadership { store, id, ttl }
    }

    /// Waits until this balancer leads; returns the leadership token.
    pub async fn acquire(&self) -> String {
        let mut announced = None;
        loop {
            match self.store.lead("", &self.id, self.ttl).await {
                Ok(Lead::Leader(token)) => {
                    tracing::info!(balancer = %self.id, %token, "leading");
                    return token;
                }
                Ok(Lead::Follower(holder)) => {
                    if announced.as_ref() != Some(&holder) {
                        tracing::info!(balancer = %self.id, leader = %holder, "standing by");
                        announced = Some(holder);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot reach Redis for leadership"),
            }
            tokio::time::sleep(self.ttl / 6).await;
        }
    }

    /// Renews the lease until it is lost; returns why.
    pub async fn hold(&self, token: String) -> Lost {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.ttl / 3).await;
            match self.store.lead(&token, &self.id, self.ttl).await {
                Ok(Lead::Leader(_)) => renewed = Instant::now(),
                Ok(Lead::Follower(holder)) => return Lost::TakenOver(holder),
                Err(e) => {
                    let silent = renewed.elapsed();
                    tracing::warn!(error = %e, "cannot renew leadership");
                    if silent >= self.ttl {
                        return Lost::Unreachable(silent, e.to_string());
                    }
                }
            }
        }
    }
}
