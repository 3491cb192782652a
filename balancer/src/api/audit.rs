//! The audit: reads every job, lease, queue entry and agent in Redis and
//! checks the invariants (docs/ARCHITECTURE.md) against them.
//!
//! It reads without stopping the fleet, so on a busy fleet a job can move
//! between two reads and look inconsistent for an instant; run it on a
//! quiet (drained) fleet for a verdict, as the chaos tests do.

use std::collections::{HashMap, HashSet};

use fleet_protocol::api::{AuditReport, Breach};
use fleet_protocol::{AttemptOutcome, JobState};
use redis::AsyncCommands;

use crate::state::{decode_history, Store, StoreResult};

const FIELDS: [&str; 8] = [
    "state",
    "attempt",
    "attempt_base",
    "max_attempts",
    "agent",
    "history",
    "done_by",
    "finished_at",
];

/// Runs every check.
pub(crate) async fn run(store: &Store) -> StoreResult<AuditReport> {
    let keys = store.keys().clone();
    let mut conn = store.conn();
    let job_prefix = keys.job("");
    let mut job_keys: Vec<String> = Vec::new();
    {
        let mut iter: redis::AsyncIter<String> = conn.scan_match(format!("{job_prefix}*")).await?;
        while let Some(item) = futures::StreamExt::next(&mut iter).await {
            job_keys.push(item?);
        }
    }
    let queue: HashSet<String> = conn.zrange(keys.queue(), 0, -1).await?;
    let parked: HashSet<String> = conn.zrange(keys.parked(), 0, -1).await?;
    let leases: HashSet<String> = conn.zrange(keys.leases(), 0, -1).await?;
    let agent_ids: Vec<String> = conn.smembers(keys.agents()).await?;

    let mut breaches = Vec::new();
    let mut by_state: HashMap<JobState, usize> = HashMap::new();
    let mut leased_to: HashMap<String, String> = HashMap::new();
    let mut breach = |id: &str, problem: String| {
        breaches.push(Breach {
            id: id.to_string(),
            problem,
        })
    };

    for chunk in job_keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("HMGET").arg(key).arg(&FIELDS[..]);
        }
        let rows: Vec<Vec<Option<String>>> = pipe.query_async(&mut conn).await?;
        for (key, row) in chunk.iter().zip(rows) {
            // Deleted since the scan listed it: a finished job whose
            // retention (--retain-finished) ran out.
            if row.iter().all(Option::is_none) {
                continue;
            }
            let id = key.trim_start_matches(&job_prefix).to_string();
            let f = |name: &str| {
                FIELDS
                    .iter()
                    .position(|n| *n == name)
                    .and_then(|i| row.get(i).cloned().flatten())
                    .unwrap_or_default()
            };
            let num = |name: &str| f(name).parse::<i64>().unwrap_or(0);
            let Some(state) = JobState::parse(&f("state")) else {
                breach(&id, format!("unknown state {:?}", f("state")));
                continue;
            };
            *by_state.entry(state).or_default() += 1;
            let history = decode_history(&f("history"));
            let successes = history
                .iter()
                .filter(|h| h.outcome == AttemptOutcome::Succeeded)
                .count();
            let in_queue = queue.contains(&id);
            let in_leases = leases.contains(&id);
            let state_name = state.as_str();
            match state {
                JobState::Queued => {
                    if in_queue == parked.contains(&id) {
                        breach(
                            &id,
                            "queued but not in exactly one of queue and parked".into(),
                        );
                    }
                    if in_leases {
                        breach(&id, "queued but holds a lease".into());
                    }
                }
                JobState::Assigned | JobState::Running => {
                    if !in_leases {
                        breach(&id, format!("{state_name} without a lease"));
                    }
                    if in_queue {
                        breach(&id, format!("{state_name} but still in the queue"));
                    }
                    leased_to.insert(id.clone(), f("agent"));
                }
                JobState::Succeeded | JobState::Dead | JobState::Cancelled => {
                    if in_queue || in_leases || parked.contains(&id) {
                        breach(&id, format!("{state_name} (terminal) but queued or leased"));
                    }
                    if f("finished_at").is_empty() {
                        breach(&id, format!("{state_name} without a finish time"));
                    }
                }
            }
            if successes > 1 {
                breach(&id, format!("{successes} results accepted"));
            }
            if state == JobState::Succeeded && (successes != 1 || f("done_by").is_empty()) {
                breach(&id, "succeeded without exactly one accepted result".into());
            }
            if state != JobState::Succeeded && successes > 0 {
                breach(&id, format!("{state_name} but a result was accepted"));
            }
            let used = num("attempt") - num("attempt_base");
            if used > num("max_attempts") {
                breach(
                    &id,
                    format!("{used} attempts used of max {}", num("max_attempts")),
                );
            }
        }
    }

    for id in &leases {
        if !leased_to.contains_key(id) {
            breach(id, "lease entry for a job that holds no lease".into());
        }
    }
    let job_ids: HashSet<&str> = job_keys
        .iter()
        .map(|k| k.trim_start_matches(&job_prefix))
        .collect();
    for id in &queue {
        if !job_ids.contains(id.as_str()) {
            breach(id, "queue entry without a job".into());
        }
    }
    for agent in &agent_ids {
        let held: Vec<String> = conn.smembers(keys.agent_jobs(agent)).await?;
        let (slots, prefetch): (Option<u32>, Option<u32>) = redis::pipe()
            .hget(keys.agent(agent), "slots")
            .hget(keys.agent(agent), "prefetch")
            .query_async(&mut conn)
            .await?;
        let capacity = slots.unwrap_or(0) + prefetch.unwrap_or(0);
        let who = format!("agent:{agent}");
        if held.len() > capacity as usize {
            breach(
                &who,
                format!(
                    "holds {} leases with capacity {capacity} (slots + prefetch)",
                    held.len()
                ),
            );
        }
        for job in &held {
            if leased_to.get(job) != Some(agent) {
                breach(&who, format!("lists {job}, which is not leased to it"));
            }
        }
        let gpus: HashMap<String, String> = conn.hgetall(keys.agent_gpus(agent)).await?;
        for (index, job) in &gpus {
            if leased_to.get(job) != Some(agent) {
                breach(
                    &who,
                    format!("GPU {index} held by {job}, which is not leased to it"),
                );
            }
        }
    }
    for (job, agent) in &leased_to {
        let member: bool = conn.sismember(keys.agent_jobs(agent), job).await?;
        if !member {
            breach(job, format!("leased to {agent}, which does not list it"));
        }
    }

    Ok(AuditReport {
        ok: breaches.is_empty(),
        jobs: job_keys.len(),
        agents: agent_ids.len(),
        by_state,
        breaches,
    })
}
