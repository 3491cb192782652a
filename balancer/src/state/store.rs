//! Typed calls to Redis: each method is one round trip, most of them one
//! Lua script over a batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_protocol::{JobState, Keys, Priority, ValidJob};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use super::error::{StoreError, StoreResult};
use super::event_batch::{EventArgs, EventReply};
use super::records::{
    decode_history, decode_job, parse_perf, AgentRecord, JobRecord, Perf, Placement, QueuedJob,
};
use super::replies::{Assigned, Cancelled, Enqueued, Expired, Lead, Retried};
use super::scripts::Scripts;

/// One lease move for [`Store::steal`].
#[derive(Debug, Clone)]
pub struct Move<'a> {
    pub job: &'a str,
    pub from: &'a str,
    pub attempt: u32,
    pub to: &'a Placement,
}

/// Fleet-wide totals read from Redis.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// The `P:stats` hash.
    pub counters: HashMap<String, i64>,
    /// In the queue, waiting for a slot.
    pub queued: u64,
    /// Queued but parked: no live agent can run them.
    pub parked: u64,
    pub leased: u64,
    pub dead: u64,
}

/// The Redis side of the balancer. Cheap to clone.
///
/// A store made by [`Store::connect`] can read; one returned by
/// [`Store::with_token`] also writes, fenced by that leadership token.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    keys: Keys,
    scripts: Arc<Scripts>,
    token: Arc<str>,
}

impl Store {
    /// Connects to the Redis at `url` (see [`crate::state::redis_options`] for
    /// TLS).
    pub async fn connect(url: &str, keys: Keys) -> StoreResult<Store> {
        Store::open(redis::Client::open(url)?, keys).await
    }

    /// Connects through `client`.
    pub async fn open(client: redis::Client, keys: Keys) -> StoreResult<Store> {
        // Batched scripts take milliseconds, not the default 500 ms budget
        // of a single command; allow for a slow disk under AOF too.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Store {
            conn,
            keys,
            scripts: Arc::new(Scripts::new()),
            token: Arc::from(""),
        })
    }

    /// An invocation of a state-changing script with its routing key, the
    /// key prefix (ARGV[1]) and the leadership token (ARGV[2]) in place.
    fn fenced<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut call = script.prepare_invoke();
        call.key(self.keys.stats())
            .arg(self.keys.prefix())
            .arg(&*self.token);
        call
    }

    /// This store, writing under leadership `token`.
    pub fn with_token(&self, token: &str) -> Store {
        Store {
            token: Arc::from(token),
            ..self.clone()
        }
    }

    /// Acquires or renews the leadership lease for `candidate`.
    pub async fn lead(&self, held: &str, candidate: &str, ttl: Duration) -> StoreResult<Lead> {
        let reply: Vec<String> = self
            .scripts
            .lead
            .key(self.keys.stats())
            .arg(self.keys.prefix())
            .arg(held)
            .arg(candidate)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match reply.as_slice() {
            [role, token] if role == "leader" => Ok(Lead::Leader(token.clone())),
            [_, token] => Ok(Lead::Follower(token.clone())),
            _ => Err(reply_error("lead", "two fields expected")),
        }
    }

    /// Gives up leadership `held`; false when it was no longer held.
    pub async fn resign(&self, held: &str) -> StoreResult<bool> {
        let reply: Vec<String> = self
            .scripts
            .resign
            .key(self.keys.stats())
            .arg(self.keys.prefix())
            .arg(held)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(reply.first().map(String::as_str) == Some("resigned"))
    }

    /// One sweep: silent agents and overdue leases, at most `limit` each;
    /// either check can be left out.
    /// Records the retention of finished jobs (`None`: forever) for the
    /// scripts that finish jobs, and drops dead letters older than it from
    /// their index; returns how many it dropped.
    pub async fn retain(&self, now_ms: u64, retain: Option<Duration>) -> StoreResult<u64> {
        self.fenced(&self.scripts.retain)
            .arg(now_ms)
            .arg(retain.map_or(0, |r| r.as_millis().max(1) as u64))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)
    }

    /// Forgets up to `limit` agents dead since before `now_ms - after`
    /// that hold nothing; returns their ids.
    pub async fn forget_agents(
        &self,
        now_ms: u64,
        after: Duration,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        self.fenced(&self.scripts.forget)
            .arg(now_ms)
            .arg(after.as_millis() as u64)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)
    }

    pub async fn expire(
        &self,
        now_ms: u64,
        heartbeat_timeout: Duration,
        limit: usize,
        (check_agents, check_leases): (bool, bool),
        unschedulable_timeout: Duration,
    ) -> StoreResult<Vec<Expired>> {
        let reply: Vec<String> = self
            .fenced(&self.scripts.expire)
            .arg(now_ms)
            .arg(heartbeat_timeout.as_millis() as u64)
            .arg(limit)
            .arg(if check_agents { "1" } else { "0" })
            .arg(if check_leases { "1" } else { "0" })
            .arg(unschedulable_timeout.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)?;
        if !reply.len().is_multiple_of(4) {
            return Err(reply_error("expire", "4 fields per outcome expected"));
        }
        Ok(reply
            .chunks_exact(4)
            .filter_map(|f| {
                let (job_id, agent_id) = (f[1].clone(), f[2].clone());
                Some(match f[0].as_str() {
                    "agent_lost" => Expired::AgentLost(agent_id),
                    "requeued" => Expired::Requeued {
                        job_id,
                        agent_id,
                        error: f[3].clone(),
                    },
                    "dead" => Expired::Dead {
                        job_id,
                        agent_id,
                        history: decode_history(&f[3]),
                    },
                    "unschedulable" => Expired::Unschedulable {
                        job_id,
                        error: agent_id,
                        history: decode_history(&f[3]),
                    },
                    "cancel" => Expired::Cancel {
                        job_id,
                        agent_id,
                        attempt: f[3].parse().ok()?,
                    },
                    _ => return None,
                })
            })
            .collect())
    }

    /// Cancels a job that has not ended.
    pub async fn cancel(&self, job_id: &str, now_ms: u64) -> StoreResult<Cancelled> {
        let reply: Vec<String> = self
            .fenced(&self.scripts.cancel)
            .arg(now_ms)
            .arg(job_id)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)?;
        Ok(match reply.as_slice() {
            [status, previous, agent, attempt, history] if status == "cancelled" => {
                let leased = previous != "queued" && !agent.is_empty();
                Cancelled::Done {
                    lease: leased
                        .then(|| attempt.parse().ok().map(|a| (agent.clone(), a)))
                        .flatten(),
                    history: decode_history(history),
                }
            }
            [status] if status == "unknown_job" => Cancelled::Unknown,
            [status] => match status.strip_prefix("already_").and_then(JobState::parse) {
                Some(state) => Cancelled::AlreadyEnded(state),
                None => return Err(reply_error("cancel", "unknown job state")),
            },
            _ => return Err(reply_error("cancel", "unexpected reply shape")),
        })
    }

    /// Re-queues a dead or cancelled job.
    pub async fn retry(&self, job_id: &str, now_ms: u64) -> StoreResult<Retried> {
        let reply: Vec<String> = self
            .fenced(&self.scripts.retry)
            .arg(now_ms)
            .arg(job_id)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)?;
        Ok(match reply.as_slice() {
            [status] if status == "queued" => Retried::Queued,
            [status] if status == "unknown_job" => Retried::Unknown,
            [status, state] if status == "not_retryable" => match JobState::parse(state) {
                Some(state) => Retried::NotRetryable(state),
                None => return Err(reply_error("retry", "unknown job state")),
            },
            _ => return Err(reply_error("retry", "unexpected reply shape")),
        })
    }

    /// Up to `limit` job ids in `state` (any state when `None`): from the
    /// index that holds them where there is one (queue, leases, dead
    /// letters), else by scanning the job keys.
    pub async fn job_ids(&self, state: Option<JobState>, limit: usize) -> StoreResult<Vec<String>> {
        let state = state.map(JobState::as_str);
        let mut conn = self.conn.clone();
        let stop = limit.max(1) as isize - 1;
        let from_index = |ids: Vec<String>| ids.into_iter().take(limit).collect::<Vec<_>>();
        match state {
            Some("queued") => {
                let mut ids: Vec<String> = conn.zrange(self.keys.queue(), 0, stop).await?;
                let parked: Vec<String> = conn.zrange(self.keys.parked(), 0, stop).await?;
                ids.extend(parked);
                Ok(from_index(ids))
            }
            Some("dead") => Ok(conn.zrevrange(self.keys.dead(), 0, stop).await?),
            Some(s @ ("assigned" | "running")) => {
                let leased: Vec<String> = conn.zrange(self.keys.leases(), 0, -1).await?;
                let mut pipe = redis::pipe();
                for id in &leased {
                    pipe.hget(self.keys.job(id), "state");
                }
                let states: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
                Ok(from_index(
                    leased
                        .into_iter()
                        .zip(states)
                        .filter(|(_, st)| st.as_deref() == Some(s))
                        .map(|(id, _)| id)
                        .collect(),
                ))
            }
            _ => {
                // No index for these states: scan the job keys, reading
                // states 500 at a time and stopping at `limit`, so a
                // listing never holds every key of a large keyspace.
                let prefix = self.keys.job("");
                let mut found = Vec::new();
                let mut scanning = self.conn.clone();
                let mut iter: redis::AsyncIter<String> =
                    scanning.scan_match(format!("{prefix}*")).await?;
                let mut chunk = Vec::with_capacity(500);
                loop {
                    let next = futures::StreamExt::next(&mut iter).await;
                    let done = next.is_none();
                    if let Some(key) = next {
                        chunk.push(key?);
                    }
                    if chunk.len() < 500 && !done {
                        continue;
                    }
                    let mut pipe = redis::pipe();
                    for key in &chunk {
                        pipe.hget(key, "state");
                    }
                    let states: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
                    for (key, st) in chunk.drain(..).zip(states) {
                        if state.is_none() || st.as_deref() == state {
                            found.push(key.trim_start_matches(&prefix).to_string());
                            if found.len() >= limit {
                                return Ok(found);
                            }
                        }
                    }
                    if done {
                        return Ok(found);
                    }
                }
            }
        }
    }

    /// Dead-lettered job ids, newest first.
    pub async fn dead_letters(&self, limit: usize) -> StoreResult<Vec<String>> {
        let stop = limit.max(1) as isize - 1;
        Ok(self
            .conn
            .clone()
            .zrevrange(self.keys.dead(), 0, stop)
            .await?)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A connection for one-off commands.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Enqueues a batch; returns each job's outcome and the queue depth.
    pub async fn enqueue(
        &self,
        jobs: &[ValidJob],
        now_ms: u64,
    ) -> StoreResult<(Vec<Enqueued>, u64)> {
        self.admit(jobs, &[], now_ms, (0, 0)).await
    }

    /// Admits new jobs: a job with a placement (`placements[i]` for
    /// `jobs[i]`; missing ones count as none) is leased at once as attempt
    /// 1 while the queue is empty and the agent can take it, with the
    /// lease or prefetch deadline as [`Store::assign`] gives them; every
    /// other new job is queued. Also returns the queue depth after.
    pub async fn admit(
        &self,
        jobs: &[ValidJob],
        placements: &[Option<Placement>],
        now_ms: u64,
        (lease_deadline_ms, prefetch_deadline_ms): (u64, u64),
    ) -> StoreResult<(Vec<Enqueued>, u64)> {
        let mut call = self.fenced(&self.scripts.enqueue);
        call.arg(now_ms)
            .arg(lease_deadline_ms)
            .arg(prefetch_deadline_ms)
            .arg(fleet_protocol::time::now_us());
        for (i, job) in jobs.iter().enumerate() {
            call.arg(&job.id)
                .arg(&job.kind)
                .arg(job.args.to_string())
                .arg(job.priority.rank())
                .arg(if job.timeout_given {
                    (job.timeout.as_millis() as u64).to_string()
                } else {
                    String::new()
                })
                .arg(job.max_attempts)
                .arg(serde_json::to_string(&job.requires).unwrap_or_else(|_| "{}".into()));
            match placements.get(i).and_then(Option::as_ref) {
                Some(p) => call.arg(&p.agent).arg(gpu_list(&p.gpus)).arg(p.timeout_ms),
                None => call.arg("").arg("").arg(""),
            };
        }
        let began = std::time::Instant::now();
        let mut reply: Vec<String> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)?;
        crate::telemetry::metrics::redis_call("enqueue", began.elapsed());
        let depth = reply
            .pop()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| reply_error("enqueue", "missing queue depth"))?;
        if reply.len() != jobs.len() {
            return Err(reply_error("enqueue", "one status per job expected"));
        }
        reply
            .iter()
            .map(|s| match s.as_str() {
                "queued" => Ok(Enqueued::Queued),
                "leased" => Ok(Enqueued::Leased),
                "duplicate" => Ok(Enqueued::Duplicate),
                other => Err(reply_error("enqueue", &format!("unknown status {other:?}"))),
            })
            .collect::<StoreResult<Vec<_>>>()
            .map(|outcomes| (outcomes, depth))
    }

    /// `limit` queued jobs from `offset` on, in priority then arrival order.
    pub async fn peek(&self, limit: usize, offset: usize) -> StoreResult<Vec<QueuedJob>> {
        let began = std::time::Instant::now();
        let reply: Vec<String> = self
            .scripts
            .peek
            .key(self.keys.stats())
            .arg(self.keys.prefix())
            .arg(limit)
            .arg(offset)
            .invoke_async(&mut self.conn.clone())
            .await?;
        crate::telemetry::metrics::redis_call("peek", began.elapsed());
        if !reply.len().is_multiple_of(7) {
            return Err(reply_error("peek", "7 fields per job expected"));
        }
        Ok(reply
            .chunks_exact(7)
            .map(|f| QueuedJob::from_fields(f, (!f[6].is_empty()).then(|| f[6].clone())))
            .collect())
    }

    /// Commits placements as leases; one placed beyond its agent's slots
    /// (prefetched) gets the later deadline.
    pub async fn assign(
        &self,
        placements: &[(&str, &Placement)],
        now_ms: u64,
        (lease_deadline_ms, prefetch_deadline_ms): (u64, u64),
    ) -> StoreResult<Vec<Assigned>> {
        let mut call = self.fenced(&self.scripts.assign);
        call.arg(now_ms)
            .arg(lease_deadline_ms)
            .arg(prefetch_deadline_ms)
            .arg(fleet_protocol::time::now_us());
        for (job, p) in placements {
            call.arg(*job)
                .arg(&p.agent)
                .arg(gpu_list(&p.gpus))
                .arg(p.timeout_ms);
        }
        let began = std::time::Instant::now();
        let reply: Vec<String> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)?;
        crate::telemetry::metrics::redis_call("assign", began.elapsed());
        if reply.len() != placements.len() {
            return Err(reply_error("assign", "one outcome per placement expected"));
        }
        Ok(reply
            .into_iter()
            .map(|s| match s.parse() {
                Ok(attempt) => Assigned::Leased(attempt),
                Err(_) => Assigned::Refused(s),
            })
            .collect())
    }

    /// Applies a batch of agent events in order; one reply per event.
    pub async fn apply_events(
        &self,
        batch: &EventArgs,
        now_ms: u64,
        job_timeout_buffer: f64,
        heartbeat_timeout: Duration,
    ) -> StoreResult<Vec<EventReply>> {
        let mut call = self.fenced(&self.scripts.events);
        call.arg(now_ms)
            .arg(job_timeout_buffer)
            .arg(heartbeat_timeout.as_millis() as u64)
            .arg(fleet_protocol::time::now_us());
        for field in &batch.fields {
            call.arg(field);
        }
        let began = std::time::Instant::now();
        let reply: Vec<Vec<String>> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)?;
        crate::telemetry::metrics::redis_call("events", began.elapsed());
        if reply.len() != batch.len() {
            return Err(reply_error("events", "one reply per event expected"));
        }
        batch
            .kinds
            .iter()
            .zip(reply)
            .map(|(kind, reply)| EventReply::decode(*kind, reply))
            .collect()
    }

    /// Adds `n` to a fleet-wide counter.
    pub async fn count(&self, field: &str, n: i64) -> StoreResult<()> {
        let _: i64 = self.conn.clone().hincr(self.keys.stats(), field, n).await?;
        Ok(())
    }

    /// Queued (not parked) jobs per priority class, highest first.
    pub async fn queue_by_priority(&self) -> StoreResult<Vec<(Priority, u64)>> {
        // Scores are (3 − rank) · 2⁴⁴ + arrival: one band per class.
        const SPAN: u64 = 1 << 44;
        let mut pipe = redis::pipe();
        for rank in (0..4u64).rev() {
            let low = (3 - rank) * SPAN;
            pipe.zcount(self.keys.queue(), low, format!("({}", low + SPAN));
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(Priority::ALL.into_iter().rev().zip(counts).collect())
    }

    /// Queued jobs, parked ones included.
    pub async fn queue_depth(&self) -> StoreResult<u64> {
        let (queued, parked): (u64, u64) = redis::pipe()
            .zcard(self.keys.queue())
            .zcard(self.keys.parked())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(queued + parked)
    }

    /// Every registered agent.
    pub async fn load_agents(&self) -> StoreResult<Vec<AgentRecord>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn.smembers(self.keys.agents()).await?;
        let mut agents = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hgetall(self.keys.agent(id))
                    .scard(self.keys.agent_jobs(id))
                    .hgetall(self.keys.agent_gpus(id))
                    .hgetall(self.keys.agent_perf(id));
            }
            let flat: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
            for (id, f) in chunk.iter().zip(flat.chunks_exact(4)) {
                let hash: HashMap<String, String> = redis::from_redis_value(f[0].clone())?;
                let leases: u32 = redis::from_redis_value(f[1].clone())?;
                let gpus: HashMap<u32, String> = redis::from_redis_value(f[2].clone())?;
                let perf: HashMap<String, String> = redis::from_redis_value(f[3].clone())?;
                agents.extend(AgentRecord::decode(id, &hash, leases, gpus, &perf));
            }
        }
        Ok(agents)
    }

    /// The performance history of the given agents.
    pub async fn load_perf(
        &self,
        ids: &[String],
    ) -> StoreResult<HashMap<String, HashMap<String, Perf>>> {
        let mut conn = self.conn.clone();
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hgetall(self.keys.agent_perf(id));
            }
            let rows: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
            for (id, row) in chunk.iter().zip(rows) {
                out.insert(id.clone(), parse_perf(&row));
            }
        }
        Ok(out)
    }

    /// Parks jobs no live agent can run, each with the reason.
    pub async fn park(&self, jobs: &[(String, String)], now_ms: u64) -> StoreResult<u64> {
        let mut call = self.fenced(&self.scripts.park);
        call.arg(now_ms);
        for (id, reason) in jobs {
            call.arg(id).arg(reason);
        }
        call.invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)
    }

    /// Returns every parked job to the queue.
    pub async fn unpark(&self) -> StoreResult<u64> {
        self.fenced(&self.scripts.unpark)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)
    }

    /// Up to `limit` of `agent`'s leased jobs it has not started, newest
    /// lease first, with their attempt numbers.
    pub async fn stealable(&self, agent: &str, limit: usize) -> StoreResult<Vec<(QueuedJob, u32)>> {
        let reply: Vec<String> = self
            .scripts
            .stealable
            .key(self.keys.stats())
            .arg(self.keys.prefix())
            .arg(agent)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if !reply.len().is_multiple_of(7) {
            return Err(reply_error("stealable", "7 fields per job expected"));
        }
        Ok(reply
            .chunks_exact(7)
            .map(|f| {
                (
                    QueuedJob::from_fields(f, Some(agent.to_string())),
                    f[6].parse().unwrap_or(0),
                )
            })
            .collect())
    }

    /// Moves not-started leases; one outcome per move (the new attempt,
    /// or why not).
    pub async fn steal(
        &self,
        moves: &[Move<'_>],
        now_ms: u64,
        lease_deadline_ms: u64,
    ) -> StoreResult<Vec<Assigned>> {
        let mut call = self.fenced(&self.scripts.steal);
        call.arg(now_ms).arg(lease_deadline_ms);
        for m in moves {
            call.arg(m.job)
                .arg(m.from)
                .arg(m.attempt)
                .arg(&m.to.agent)
                .arg(gpu_list(&m.to.gpus))
                .arg(m.to.timeout_ms);
        }
        let reply: Vec<String> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)?;
        if reply.len() != moves.len() {
            return Err(reply_error("steal", "one outcome per move expected"));
        }
        Ok(reply
            .into_iter()
            .map(|s| match s.parse() {
                Ok(attempt) => Assigned::Leased(attempt),
                Err(_) => Assigned::Refused(s),
            })
            .collect())
    }

    /// Drains (or undrains) an agent; false if no such agent.
    pub async fn drain(&self, agent: &str, draining: bool) -> StoreResult<bool> {
        let reply: Vec<String> = self
            .fenced(&self.scripts.drain)
            .arg(agent)
            .arg(if draining { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from_script)?;
        Ok(reply.first().map(String::as_str) == Some("ok"))
    }

    /// One job's hash, or `None` if no such job.
    pub async fn job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        let h: HashMap<String, String> = self.conn.clone().hgetall(self.keys.job(id)).await?;
        Ok(decode_job(&h))
    }

    /// The fleet-wide counters and the sizes of the queue, the parked
    /// set, the leases and the dead letters.
    pub async fn counters(&self) -> StoreResult<Counters> {
        let (counters, queued, parked, leased, dead): (HashMap<String, i64>, u64, u64, u64, u64) =
            redis::pipe()
                .hgetall(self.keys.stats())
                .zcard(self.keys.queue())
                .zcard(self.keys.parked())
                .zcard(self.keys.leases())
                .zcard(self.keys.dead())
                .query_async(&mut self.conn.clone())
                .await?;
        Ok(Counters {
            counters,
            queued,
            parked,
            leased,
            dead,
        })
    }
}

/// Device indices as the scripts take them: "0,2", or "" for none.
fn gpu_list(gpus: &[u32]) -> String {
    gpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn reply_error(script: &'static str, detail: &str) -> StoreError {
    StoreError::Reply {
        script,
        detail: detail.to_string(),
    }
}
