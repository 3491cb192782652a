//! The scheduler: matches queued jobs to free agent slots and GPUs.
//!
//! It sleeps until woken (jobs queued, a slot freed, an agent joined, or
//! the sweeper's tick), then runs rounds until a round places nothing. A
//! round reads the queue head in pages, places each job in priority order
//! through the [`Round`] and the configured policy, commits every lease
//! with one script call, and only then publishes the assignments, one
//! message per agent. A job that no live agent could ever run is parked
//! with the reason (it leaves the queue, so it never holds back the jobs
//! behind it); parked jobs return to the queue whenever the fleet changes.

use std::collections::HashMap;
use std::sync::Arc;

use fleet_protocol::capabilities::unschedulable_reason;
use fleet_protocol::{time::now_ms, Assignment, ControlMessage};
use tokio::sync::Notify;

use super::backlog::Backlog;
use super::directory::Directory;
use super::dispatch::{lease_deadlines, publish_assignments, send_leases};
use super::families::FamilyTable;
use super::placement::Round;
use super::policy::Policy;
use crate::control;
use crate::state::{Assigned, Move, Placement, QueuedJob, Store, StoreError};
use crate::Config;

/// Jobs read per page of the queue, as a multiple of free slots (with
/// prefetch). One: a page that the free slots cannot all take is followed
/// by the next page in the same round, so reading more up front only reads
/// jobs that are then left queued (each read is a Redis HMGET and the
/// job's args over the wire).
const WINDOW_PER_FREE_SLOT: u64 = 1;
const MIN_WINDOW: u64 = 64;
const MAX_WINDOW: u64 = 4096;
/// How deep one round looks for a job the free agents can take.
const MAX_SCAN: usize = 16_384;

/// Runs the scheduler forever (until leadership is lost).
pub async fn run(
    nats: async_nats::Client,
    store: Store,
    directory: Arc<Directory>,
    backlog: Arc<Backlog>,
    wake: Arc<Notify>,
    config: Arc<Config>,
) -> anyhow::Result<()> {
    let mut policy = config.policy()?;
    let families = FamilyTable::new(&config.model_families).map_err(anyhow::Error::msg)?;
    let mut seen_generation = 0;
    loop {
        wake.notified().await;
        loop {
            // The fleet changed: parked jobs may fit it now.
            let generation = directory.generation();
            if generation != seen_generation {
                match store.unpark().await {
                    Ok(n) => {
                        seen_generation = generation;
                        if n > 0 {
                            tracing::info!(
                                jobs = n,
                                "fleet changed; parked jobs back in the queue"
                            );
                        }
                    }
                    Err(e) => {
                        not_leading(&e)?;
                        tracing::warn!(error = %e, "cannot unpark jobs");
                    }
                }
            }
            let began = std::time::Instant::now();
            let outcome = round(
                &nats,
                &store,
                &directory,
                &backlog,
                policy.as_mut(),
                &families,
                &config,
            )
            .await;
            if let Ok(placed) = outcome {
                crate::telemetry::metrics::schedule_round(began.elapsed(), placed);
                crate::telemetry::metrics::jobs("assigned", placed as u64);
            }
            match outcome {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    if let Some(e) = e.downcast_ref::<StoreError>() {
                        not_leading(e)?;
                    }
                    tracing::warn!(error = %e, "scheduling round failed; retrying on the next wake-up");
                    break;
                }
            }
        }
    }
}

fn not_leading(e: &StoreError) -> anyhow::Result<()> {
    if matches!(e, StoreError::NotLeader) {
        anyhow::bail!("scheduler: no longer leading");
    }
    Ok(())
}

/// One scheduling round; returns how many jobs it assigned.
async fn round(
    nats: &async_nats::Client,
    store: &Store,
    directory: &Directory,
    backlog: &Backlog,
    policy: &mut dyn Policy,
    families: &FamilyTable,
    config: &Config,
) -> anyhow::Result<usize> {
    let now = now_ms();
    // The first page is sized by the room the agents have now, and read
    // before the round takes its snapshots: a round holding them over a
    // Redis call would make every lease and event meanwhile copy the
    // agent it touches, and most wake-ups find the queue empty.
    let Some(capacity) = directory.sum_available(now, crate::scheduling::placement::room) else {
        return Ok(0);
    };
    let window = (capacity * WINDOW_PER_FREE_SLOT).clamp(MIN_WINDOW, MAX_WINDOW) as usize;
    let mut page = store.peek(window, 0).await?;
    if page.is_empty() {
        backlog.mark_empty();
        // Nothing queued: let idle agents take what backed-up agents hold
        // but have not started.
        if directory.backed_up(now).is_empty() {
            return Ok(0);
        }
        let mut round = Round::new(directory.available(now), policy, now);
        if round.free_total() == 0 {
            return Ok(0);
        }
        return steal(nats, store, directory, &mut round, families, config, now).await;
    }
    // The decision's own time (the candidates, then each placement),
    // apart from the Redis and NATS round trips around it.
    let building = std::time::Instant::now();
    let mut round = Round::new(directory.available(now), policy, now);
    // Every agent that could run work, busy or not: read only if a job
    // fits nobody free, to tell a wait from an impossible job.
    let mut fleet: Option<Vec<std::sync::Arc<crate::scheduling::directory::AgentView>>> = None;
    let build_time = building.elapsed();
    let mut place_times: Vec<std::time::Duration> = Vec::new();

    let mut plan: Vec<(QueuedJob, Placement, Option<String>)> = Vec::new();
    let mut park: Vec<(String, String)> = Vec::new();
    let mut offset = 0;
    loop {
        let read = page.len();
        round.set_gpu_demand(
            page.iter()
                .any(|j| fleet_protocol::gpus_wanted(&j.kind, &j.requires) > 0),
        );
        for job in page {
            if round.capacity_total() == 0 {
                break;
            }
            let family = families.job_family(&job);
            let placing = std::time::Instant::now();
            let placed = round.place(&job, family.as_deref());
            if placed.is_some() {
                place_times.push(placing.elapsed());
            }
            let Some(placement) = placed else {
                let fleet = fleet.get_or_insert_with(|| directory.schedulable_agents(now));
                if fleet
                    .iter()
                    .any(|a| a.capabilities.satisfies(&job.kind, &job.requires).is_ok())
                {
                    continue;
                }
                let reason = unschedulable_reason(
                    &job.kind,
                    &job.requires,
                    fleet.iter().map(|a| &a.capabilities),
                );
                tracing::info!(job_id = %job.id, %reason, "job unschedulable; parked");
                park.push((job.id, reason));
                continue;
            };
            plan.push((job, placement, family));
        }
        offset += read;
        // Look deeper while there is room for more: a page can hold jobs
        // that no free slot fits (GPU jobs while only CPU slots are free).
        if read < window || round.capacity_total() == 0 || offset >= MAX_SCAN {
            break;
        }
        page = store.peek(window, offset).await?;
    }
    crate::telemetry::metrics::decisions(build_time, &place_times);
    if !park.is_empty() {
        store.park(&park, now).await?;
    }
    if plan.is_empty() {
        return Ok(0);
    }
    // The round's snapshots share the directory's agents: let them go
    // before the events and the leases below update those agents, so the
    // directory changes them in place instead of copying each one.
    drop(round);
    drop(fleet);

    let placements: Vec<(&str, &Placement)> = plan
        .iter()
        .map(|(job, p, _)| (job.id.as_str(), p))
        .collect();
    let outcomes = store
        .assign(&placements, now, lease_deadlines(config, now))
        .await?;

    let mut leased = Vec::with_capacity(plan.len());
    for ((job, placement, family), outcome) in plan.iter().zip(outcomes) {
        match outcome {
            Assigned::Leased(attempt) => leased.push((job, placement, family.as_deref(), attempt)),
            Assigned::Refused(reason) => {
                tracing::debug!(job_id = %job.id, agent_id = %placement.agent, %reason, "placement refused by Redis");
                directory.correct(&placement.agent, &reason);
            }
        }
    }
    send_leases(nats, directory, leased, now).await
}

/// Work stealing: moves not-yet-started jobs from agents holding more than
/// their slots to agents with free slots. Each lease moves with a new
/// fencing token; the old holder is told to drop its copy.
async fn steal(
    nats: &async_nats::Client,
    store: &Store,
    directory: &Directory,
    round: &mut Round<'_>,
    families: &FamilyTable,
    config: &Config,
    now: u64,
) -> anyhow::Result<usize> {
    let mut plan: Vec<(QueuedJob, u32, String, Placement, Option<String>)> = Vec::new();
    for (victim, surplus) in directory.backed_up(now) {
        let wanted = (round.free_total() as u32).min(surplus);
        if wanted == 0 {
            break;
        }
        for (job, attempt) in store.stealable(&victim, wanted as usize).await? {
            let family = families.job_family(&job);
            if let Some(placement) = round.place_in_slot(&job, family.as_deref()) {
                plan.push((job, attempt, victim.clone(), placement, family));
            }
        }
    }
    if plan.is_empty() {
        return Ok(0);
    }
    let moves: Vec<Move> = plan
        .iter()
        .map(|(job, attempt, from, p, _)| Move {
            job: &job.id,
            from,
            attempt: *attempt,
            to: p,
        })
        .collect();
    let (deadline, _) = lease_deadlines(config, now);
    let outcomes = store.steal(&moves, now, deadline).await?;
    let mut batches: HashMap<&str, Vec<Assignment>> = HashMap::new();
    for ((job, old_attempt, from, placement, family), outcome) in plan.iter().zip(outcomes) {
        let Assigned::Leased(attempt) = outcome else {
            continue;
        };
        tracing::info!(job_id = %job.id, from = %from, to = %placement.agent, attempt, "not-started job moved to an idle agent");
        directory.moved_away(from, &job.id);
        directory.leased(
            &placement.agent,
            &job.id,
            &placement.gpus,
            family.as_deref(),
            now,
        );
        let drop_it = ControlMessage::Cancel {
            job_id: job.id.clone(),
            attempt: *old_attempt,
        };
        control::send(nats, from, &drop_it).await;
        batches
            .entry(placement.agent.as_str())
            .or_default()
            .push(job.assignment(attempt, placement));
    }
    publish_assignments(nats, batches).await
}
