//! The sweeper: every sweep interval, fails what time has run out on.
//!
//! One `expire.lua` call declares silent agents dead (their leases fail at
//! once), fails leases whose agent never confirmed the start, and fails
//! running jobs past timeout × buffer, whose agents are told to cancel
//! them. Failed attempts go back to the queue or, spent, to the dead
//! letters; the scheduler is woken to place them again.

use std::sync::Arc;

use async_nats::jetstream;
use fleet_protocol::{time::now_ms, ControlMessage};
use tokio::sync::Notify;

use crate::control;
use crate::events::watch::Watch;
use crate::results;
use crate::scheduling::directory::Directory;
use crate::state::{Expired, Store, StoreError};
use crate::telemetry::rate::Activity;
use crate::Config;
use fleet_protocol::api::Failure;

/// Most agents and leases handled per script call.
const LIMIT: usize = 1_000;
/// Every this many sweeps, the agents' performance history is re-read
/// from Redis (the scripts keep it as jobs finish).
const PERF_REFRESH_TICKS: u64 = 5;
/// Every this many sweeps, agents dead past --forget-agents-after are
/// forgotten (the pass reads every agent's state).
const FORGET_TICKS: u64 = 30;

pub async fn run(
    js: jetstream::Context,
    store: Store,
    directory: Arc<Directory>,
    wake: Arc<Notify>,
    watch: Arc<Watch>,
    activity: Arc<Activity>,
    config: Arc<Config>,
) -> anyhow::Result<()> {
    let mut ticks: u64 = 0;
    let mut ticker = tokio::time::interval(config.sweep_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        loop {
            let now = now_ms();
            let checks = (
                watch.covers(config.heartbeat_timeout, now),
                watch.covers(config.accept_timeout, now),
            );
            if checks == (false, false) {
                break;
            }
            let outcomes = match store
                .expire(
                    now,
                    config.heartbeat_timeout,
                    LIMIT,
                    checks,
                    config.unschedulable_timeout,
                )
                .await
            {
                Ok(o) => o,
                Err(StoreError::NotLeader) => anyhow::bail!("sweeper: no longer leading"),
                Err(e) => {
                    watch.restart("sweep failed");
                    tracing::warn!(error = %e, "sweep failed; retrying next interval");
                    break;
                }
            };
            let more = outcomes.len() >= LIMIT;
            for outcome in outcomes {
                handle(&js, &directory, &activity, outcome).await;
            }
            if !more {
                break;
            }
        }
        match store.retain(now_ms(), config.retain_finished).await {
            Ok(0) => {}
            Ok(dropped) => tracing::info!(dropped, "dead letters past their retention dropped"),
            Err(StoreError::NotLeader) => anyhow::bail!("sweeper: no longer leading"),
            Err(e) => tracing::warn!(error = %e, "cannot apply the retention of finished jobs"),
        }
        // Also the scheduler's fallback wake-up: health changes that no
        // event announces (an agent going silent) are noticed here.
        wake.notify_one();
        ticks += 1;
        if ticks.is_multiple_of(FORGET_TICKS) {
            match store
                .forget_agents(now_ms(), config.forget_agents_after, LIMIT)
                .await
            {
                Ok(ids) => {
                    for id in ids {
                        tracing::info!(agent_id = %id, after = ?config.forget_agents_after, "dead agent forgotten");
                        directory.forget(&id);
                    }
                }
                Err(StoreError::NotLeader) => anyhow::bail!("sweeper: no longer leading"),
                Err(e) => tracing::warn!(error = %e, "cannot forget dead agents"),
            }
        }
        if ticks.is_multiple_of(PERF_REFRESH_TICKS) {
            match store.load_perf(&directory.ids()).await {
                Ok(perf) => directory.set_perf(perf),
                Err(e) => tracing::warn!(error = %e, "cannot refresh performance history"),
            }
        }
    }
}

/// Acts on one outcome of a sweep. Failed attempts also go to the
/// dashboard's list of recent failures, as an agent's own failures do.
async fn handle(
    js: &jetstream::Context,
    directory: &Directory,
    activity: &Activity,
    outcome: Expired,
) {
    let failed = |job_id: &str, agent_id: &str, error: Option<String>| {
        activity.failed(Failure {
            at_ms: now_ms(),
            job_id: job_id.to_string(),
            agent_id: agent_id.to_string(),
            error: error.unwrap_or_else(|| "lease expired".into()),
        });
    };
    match outcome {
        Expired::AgentLost(agent) => {
            tracing::warn!(agent_id = %agent, "agent lost: no heartbeat within the timeout; its leases are re-queued");
            metrics::counter!("fleet_agents_lost_total").increment(1);
            directory.mark_dead(&agent);
        }
        Expired::Requeued {
            job_id,
            agent_id,
            error,
        } => {
            tracing::info!(job_id = %job_id, agent_id = %agent_id, %error, "lease expired; job re-queued");
            failed(&job_id, &agent_id, Some(error));
            crate::telemetry::metrics::jobs("failed_attempt", 1);
            crate::telemetry::metrics::jobs("retried", 1);
            directory.released(&agent_id, &job_id, false);
            directory.mark_suspect(&agent_id);
        }
        Expired::Dead {
            job_id,
            agent_id,
            history,
        } => {
            tracing::warn!(job_id = %job_id, agent_id = %agent_id, "lease expired on the last attempt; job dead-lettered");
            crate::telemetry::metrics::jobs("failed_attempt", 1);
            crate::telemetry::metrics::jobs("dead", 1);
            directory.released(&agent_id, &job_id, false);
            directory.mark_suspect(&agent_id);
            let result = results::dead(&job_id, history, now_ms());
            failed(&job_id, &agent_id, result.error.clone());
            results::publish_reliably(js, &result).await;
        }
        Expired::Unschedulable {
            job_id,
            error,
            history,
        } => {
            tracing::warn!(job_id = %job_id, %error, "job dead-lettered: unschedulable too long");
            crate::telemetry::metrics::jobs("dead", 1);
            let mut result = results::dead(&job_id, history, now_ms());
            result.error = Some(error);
            results::publish_reliably(js, &result).await;
        }
        Expired::Cancel {
            job_id,
            agent_id,
            attempt,
        } => {
            tracing::warn!(job_id = %job_id, agent_id = %agent_id, attempt, "job past its timeout; cancelling it on its agent");
            let message = ControlMessage::Cancel { job_id, attempt };
            control::send(&js.client(), &agent_id, &message).await;
        }
    }
}
