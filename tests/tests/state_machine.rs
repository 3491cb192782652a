//! A state-machine property test of the balancer's Lua scripts, called
//! through `fleet_balancer::state::Store` on a real redis-server, the way
//! the balancer calls them: enqueue and admit (the intake: a new job
//! queued, or leased at once to the agent the intake chose while nothing
//! waits), assign and steal (the scheduler), the batched `events.lua` (register, heartbeat, started,
//! completed, failed: the event consumer), expire (the sweeper), cancel,
//! retry, park, unpark and drain (the operator and the scheduler).
//!
//! Each case runs a random sequence of those operations over a few jobs
//! and agents, on a key prefix of its own, with a virtual clock (every
//! script takes `now_ms` as an argument). The sequences are adversarial:
//! duplicated and reordered events, replays of earlier batches (a
//! redelivered JetStream message), stale attempts, events from an agent
//! that does not hold the lease or never registered, events about jobs
//! that do not exist, heartbeats from replaced incarnations.
//!
//! After every operation the test reads the whole state back from Redis
//! and checks:
//! - the invariants of docs/ARCHITECTURE.md, straight on the Redis state (see
//!   [`check_invariants`]): each job in exactly one state and in exactly
//!   the indexes that state implies; a lease held by exactly one live
//!   agent, in that agent's job set and nowhere else; terminal jobs hold
//!   no lease and are not queued; an agent never holds more leases than
//!   its slots + prefetch; attempts never go down and retries are bounded
//!   by `max_attempts`; a succeeded job never changes its result or
//!   `done_by` (one result per job); histories only grow;
//! - that Redis matches a model in Rust of what each script should do,
//!   reply by reply, so that an event that must be refused (forged,
//!   stale, unknown) is refused with the right reason and changes
//!   nothing, and an event that must count does.
//!
//! A failure prints the shrunk operation sequence (proptest) and the
//! operations as they were resolved against the state, with their replies.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::time::Duration;

use fleet_balancer::state::Placement;
use fleet_balancer::state::{
    Assigned, Cancelled, EventArgs, EventKind, EventReply, Expired, Lead, Move, Retried, Store,
};
use fleet_protocol::{JobSpec, Keys, Priority, ValidJob};
use fleet_tests::RedisServer;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use redis::aio::ConnectionManager;
use serde_json::Value;

/// The balancer's settings in this test (ms).
const ACCEPT_MS: u64 = 5_000;
/// expire.lua's INFRA_SPARES: attempts lost to dead or silent agents that
/// do not count toward max_attempts, per job.
const INFRA_SPARES: u32 = 2;
const HEARTBEAT_TIMEOUT_MS: u64 = 15_000;
const UNSCHEDULABLE_MS: u64 = 30_000;
/// Each lease's run-time limit, and the buffer on it (exact in binary, so
/// the model's deadline is the script's to the millisecond).
const LEASE_TIMEOUT_MS: u64 = 10_000;
const BUFFER: f64 = 1.5;
const START_MS: u64 = 1_000_000;

const CASES: u32 = 128;
const MAX_OPS: usize = 40;
/// Job ids that only admissions use (`n0` …): never enqueued at setup,
/// so an admission can find them new.
const ADMITTED: usize = 4;

// ---------------------------------------------------------------------
// Operations, as generated (indices, resolved against the state when run)
// ---------------------------------------------------------------------

/// Which agent sends a job event.
#[derive(Debug, Clone)]
enum Who {
    /// The job's lease holder (agent 0 when it has none).
    Holder,
    /// Agent `i`; the index one past the fleet is an agent that never
    /// registered.
    Agent(usize),
}

/// Which attempt a job event names, relative to the job's current one.
#[derive(Debug, Clone)]
enum Att {
    Current,
    Previous,
    Next,
}

/// What a heartbeat lists, relative to what the agent holds.
#[derive(Debug, Clone)]
enum Listing {
    All,
    Nothing,
    /// Everything but the i-th job (mod the count).
    AllBut(usize),
    /// Everything, each with the attempt before its current one.
    Stale,
    /// Everything, plus job `j` (which it may not hold).
    Plus(usize),
}

/// Which job an operation is about.
#[derive(Debug, Clone)]
enum Pick {
    /// Job i; the index one past the case's jobs was never enqueued.
    Job(usize),
    /// The i-th (mod their number) job that is leased now, if any, else
    /// job i: keeps the sequences busy with live leases.
    Leased(usize),
}

#[derive(Debug, Clone)]
enum Ev {
    Started(Pick, Who, Att),
    Completed(Pick, Who, Att, u8),
    Failed(Pick, Who, Att),
    Heartbeat {
        agent: usize,
        /// None: the agent's current incarnation.
        incarnation: Option<usize>,
        listing: Listing,
    },
    Register {
        agent: usize,
        incarnation: usize,
    },
}

/// The agent (index) and GPU the intake chose for a new job, if any.
type Chosen = Option<(usize, Option<u32>)>;

#[derive(Debug, Clone)]
enum Op {
    /// (job, priority rank, max_attempts); one batch, duplicates allowed.
    Enqueue(Vec<(usize, u8, u32)>),
    /// The intake's admission: (job, priority rank, max_attempts, the
    /// agent and GPU it chose, if any); one batch. Job indices past the
    /// case's jobs are fresh ids ([`admitted_job_id`]); the agent index one
    /// past the fleet never registered.
    Admit(Vec<(usize, u8, u32, Chosen)>),
    /// (job, agent, GPU index); one batch, as the scheduler commits it.
    Assign(Vec<(usize, usize, Option<u32>)>),
    /// What the scheduler does: every queued job, each to the next agent
    /// round-robin from `seed`, in one assign call.
    Schedule(usize),
    /// One `events.lua` batch, resolved against the state before it, so
    /// a batch can hold true duplicates and reorderings.
    Events(Vec<Ev>),
    /// The i-th earlier event batch again, verbatim (a redelivery).
    Replay(usize),
    Advance(u64),
    /// A sweep handling at most `limit` agents, leases and parked jobs.
    Expire {
        agents: bool,
        leases: bool,
        limit: usize,
    },
    Cancel(Pick),
    /// Job i, as [`any_job_id`] names it (admitted jobs too).
    Retry(usize),
    /// Job i, as [`any_job_id`] names it.
    Park(usize),
    Unpark,
    Drain(usize, bool),
    /// Move job j from its holder (with its current or a stale attempt)
    /// to agent `to`.
    Steal {
        job: Pick,
        to: usize,
        stale: bool,
        gpu: Option<u32>,
    },
}

#[derive(Debug, Clone)]
struct Case {
    jobs: usize,
    agents: usize,
    /// Each job's priority rank and max_attempts: every job is enqueued,
    /// and every agent registered (incarnation 0), before `ops` run.
    setup: Vec<(u8, u32)>,
    ops: Vec<Op>,
}

fn who(agents: usize) -> impl Strategy<Value = Who> {
    prop_oneof![5 => Just(Who::Holder), 1 => (0..=agents).prop_map(Who::Agent)]
}

fn att() -> impl Strategy<Value = Att> {
    prop_oneof![6 => Just(Att::Current), 1 => Just(Att::Previous), 1 => Just(Att::Next)]
}

fn pick(jobs: usize) -> impl Strategy<Value = Pick> {
    prop_oneof![
        1 => (0..=jobs).prop_map(Pick::Job),
        2 => (0..jobs).prop_map(Pick::Leased),
    ]
}

fn heartbeat(jobs: usize, agents: usize) -> impl Strategy<Value = Ev> {
    (
        prop_oneof![6 => 0..agents, 1 => Just(agents)],
        prop_oneof![6 => Just(None), 1 => (0..3usize).prop_map(Some)],
        prop_oneof![
            3 => Just(Listing::All),
            1 => Just(Listing::Nothing),
            1 => any::<usize>().prop_map(Listing::AllBut),
            1 => Just(Listing::Stale),
            1 => (0..=jobs).prop_map(Listing::Plus),
        ],
    )
        .prop_map(|(agent, incarnation, listing)| Ev::Heartbeat {
            agent,
            incarnation,
            listing,
        })
}

fn ev(jobs: usize, agents: usize) -> impl Strategy<Value = Ev> {
    prop_oneof![
        4 => (pick(jobs), who(agents), att()).prop_map(|(j, w, a)| Ev::Started(j, w, a)),
        2 => (pick(jobs), who(agents), att(), any::<u8>())
            .prop_map(|(j, w, a, r)| Ev::Completed(j, w, a, r)),
        1 => (pick(jobs), who(agents), att()).prop_map(|(j, w, a)| Ev::Failed(j, w, a)),
        5 => heartbeat(jobs, agents),
        1 => (0..agents, 0..3usize)
            .prop_map(|(agent, incarnation)| Ev::Register { agent, incarnation }),
    ]
}

fn op(jobs: usize, agents: usize) -> impl Strategy<Value = Op> {
    let job = 0..=jobs;
    let gpu = proptest::option::weighted(0.2, 0..2u32);
    prop_oneof![
        3 => vec((0..jobs, 0..4u8, 1..=3u32), 1..4).prop_map(Op::Enqueue),
        3 => vec(
            (
                // Mostly new ids; sometimes one seen before.
                prop_oneof![1 => 0..jobs, 4 => jobs..jobs + ADMITTED],
                0..4u8,
                1..=3u32,
                // Mostly placed, on any agent (busy, draining, dead or
                // unknown too), often on a GPU another job may hold.
                proptest::option::weighted(
                    0.85,
                    (0..=agents, proptest::option::weighted(0.5, 0..2u32))
                ),
            ),
            1..4
        )
        .prop_map(Op::Admit),
        2 => (0..agents, 0..3usize)
            .prop_map(|(agent, incarnation)| Op::Events(vec![Ev::Register { agent, incarnation }])),
        3 => vec((job.clone(), 0..=agents, gpu.clone()), 1..4).prop_map(Op::Assign),
        3 => any::<usize>().prop_map(Op::Schedule),
        7 => vec(ev(jobs, agents), 1..5).prop_map(Op::Events),
        3 => heartbeat(jobs, agents).prop_map(|hb| Op::Events(vec![hb])),
        2 => any::<usize>().prop_map(Op::Replay),
        2 => prop_oneof![
            Just(500u64),
            Just(3_000),
            Just(6_000),
            Just(13_000),
            Just(16_000),
            Just(31_000)
        ]
        .prop_map(Op::Advance),
        2 => (any::<bool>(), any::<bool>(), prop_oneof![Just(1usize), Just(2), Just(1000)])
            .prop_map(|(agents, leases, limit)| Op::Expire { agents, leases, limit }),
        1 => pick(jobs).prop_map(Op::Cancel),
        1 => (0..=jobs + ADMITTED).prop_map(Op::Retry),
        1 => (0..=jobs + ADMITTED).prop_map(Op::Park),
        1 => Just(Op::Unpark),
        1 => (0..=agents, any::<bool>()).prop_map(|(a, d)| Op::Drain(a, d)),
        2 => (pick(jobs), 0..=agents, any::<bool>(), gpu)
            .prop_map(|(job, to, stale, gpu)| Op::Steal { job, to, stale, gpu }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (1..=6usize, 2..=3usize).prop_flat_map(|(jobs, agents)| {
        (
            vec((0..4u8, 1..=3u32), jobs),
            vec(op(jobs, agents), 1..=MAX_OPS),
        )
            .prop_map(move |(setup, ops)| Case {
                jobs,
                agents,
                setup,
                ops,
            })
    })
}

// ---------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------

/// Job `i`; the index one past the case's jobs is never enqueued.
fn job_id(i: usize) -> String {
    format!("j{i}")
}

/// Admission's job `i`: one of the case's `jobs` (a duplicate) below
/// that, else a fresh id.
fn admitted_job_id(jobs: usize, i: usize) -> String {
    if i < jobs {
        job_id(i)
    } else {
        format!("n{}", i - jobs)
    }
}

/// Job `i` of all a case may hold: its `jobs`, the one never enqueued,
/// then the ids only admissions use.
fn any_job_id(jobs: usize, i: usize) -> String {
    if i <= jobs {
        job_id(i)
    } else {
        admitted_job_id(jobs, i - 1)
    }
}

/// A valid `echo` job as a producer would submit it.
fn echo_job(id: &str, rank: u8, max_attempts: u32) -> Result<ValidJob, TestCaseError> {
    JobSpec {
        id: Some(id.to_string()),
        priority: Priority::from_rank(rank),
        max_attempts: Some(max_attempts),
        ..JobSpec::new("echo", serde_json::json!({}))
    }
    .validate(id)
    .or_fail("job")
}

/// Agent `i`; one past the fleet never registers.
fn agent_id(i: usize) -> String {
    format!("a{i}")
}

fn incarnation(agent: &str, k: usize) -> String {
    format!("{agent}-inc{k}")
}

/// An incarnation's slots and prefetch: fixed per incarnation, as a real
/// agent process declares them once.
fn shape(agent: &str, k: usize) -> (u32, u32) {
    let a = agent.bytes().map(usize::from).sum::<usize>();
    (1 + ((a + k) % 3) as u32, ((a + 2 * k) % 2) as u32)
}

// ---------------------------------------------------------------------
// The state: the model's and, read back, Redis's
// ---------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Default)]
struct Job {
    state: String,
    attempt: u32,
    agent: String,
    attempt_base: u32,
    infra_spared: u32,
    max_attempts: u32,
    rank: u32,
    submitted_rank: u32,
    result: Option<String>,
    done_by: Option<String>,
    gpus: String,
    started_beat: Option<u64>,
    unschedulable_since: Option<u64>,
    history: usize,
    /// In `P:queue`.
    queued: bool,
    /// Score in `P:parked`.
    parked: Option<u64>,
    /// Deadline in `P:leases`.
    lease: Option<u64>,
    /// In `P:dead`.
    dead: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Agent {
    incarnation: String,
    slots: u32,
    prefetch: u32,
    alive: bool,
    draining: bool,
    beats: u64,
    /// Score in `P:agents:seen`.
    seen: Option<u64>,
    jobs: BTreeSet<String>,
    /// GPU index → job.
    gpus: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct State {
    jobs: BTreeMap<String, Job>,
    agents: BTreeMap<String, Agent>,
}

/// What Redis holds beyond [`State`], for the invariants.
#[derive(Debug, Clone, Default)]
struct Extra {
    histories: BTreeMap<String, Vec<Value>>,
    /// Each job's `error` field.
    errors: BTreeMap<String, String>,
    leases: BTreeSet<String>,
    queue: BTreeMap<String, f64>,
    parked: BTreeSet<String>,
    dead: BTreeSet<String>,
    seen: BTreeSet<String>,
    stats: BTreeMap<String, i64>,
    agent_succeeded: i64,
    /// Job sets of agents without an agent hash (should be empty).
    orphan_job_sets: BTreeMap<String, BTreeSet<String>>,
}

fn split_csv(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn fail(msg: impl Display) -> TestCaseError {
    TestCaseError::fail(msg.to_string())
}

/// `?` for anything fallible outside the properties (Redis, parsing).
trait OrFail<T> {
    fn or_fail(self, what: &str) -> Result<T, TestCaseError>;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T, TestCaseError> {
        self.map_err(|e| fail(format!("{what}: {e}")))
    }
}

// ---------------------------------------------------------------------
// The model: what each script should do, mirroring the Lua
// ---------------------------------------------------------------------

/// Why `agent` cannot take one more lease on `devices` (lease_refusal).
fn lease_refusal(s: &State, agent: &str, devices: &[String]) -> Option<&'static str> {
    let Some(a) = s.agents.get(agent) else {
        return Some("agent_unavailable");
    };
    if !a.alive || a.draining {
        return Some("agent_unavailable");
    }
    if a.jobs.len() as u32 >= a.slots + a.prefetch {
        return Some("agent_full");
    }
    if devices.iter().any(|d| a.gpus.contains_key(d)) {
        return Some("gpu_busy");
    }
    None
}

impl State {
    /// What the enqueue script reports as the queue's depth: queued jobs,
    /// parked ones included.
    fn queue_depth(&self) -> u64 {
        self.jobs
            .values()
            .filter(|j| j.queued || j.parked.is_some())
            .count() as u64
    }

    fn job(&mut self, id: &str) -> Result<&mut Job, TestCaseError> {
        self.jobs
            .get_mut(id)
            .ok_or_else(|| fail(format!("model: no job {id}")))
    }

    fn release_lease(&mut self, id: &str, agent: &str) -> Result<(), TestCaseError> {
        let gpus = split_csv(&self.job(id)?.gpus);
        if let Some(a) = self.agents.get_mut(agent) {
            a.jobs.remove(id);
            for g in gpus {
                if a.gpus.get(&g).map(String::as_str) == Some(id) {
                    a.gpus.remove(&g);
                }
            }
        }
        let j = self.job(id)?;
        j.lease = None;
        j.gpus.clear();
        Ok(())
    }

    fn lease_to(
        &mut self,
        id: &str,
        agent: &str,
        attempt: u32,
        gpus: &str,
        deadline: u64,
    ) -> Result<(), TestCaseError> {
        let j = self.job(id)?;
        j.state = "assigned".into();
        j.attempt = attempt;
        j.agent = agent.into();
        j.gpus = gpus.into();
        j.unschedulable_since = None;
        j.lease = Some(deadline);
        if let Some(a) = self.agents.get_mut(agent) {
            for d in split_csv(gpus) {
                a.gpus.insert(d, id.to_string());
            }
            a.jobs.insert(id.to_string());
        }
        Ok(())
    }

    fn bury(&mut self, id: &str) -> Result<(), TestCaseError> {
        let j = self.job(id)?;
        j.state = "dead".into();
        j.dead = true;
        Ok(())
    }

    /// expire.lua's spare: an attempt lost to a dead or silent agent does
    /// not count, twice per job.
    fn spare(&mut self, id: &str) -> Result<(), TestCaseError> {
        let j = self.job(id)?;
        if j.infra_spared < INFRA_SPARES {
            j.attempt_base += 1;
            j.infra_spared += 1;
        }
        Ok(())
    }

    /// fail_attempt: back to the queue one class up, or dead.
    fn fail_attempt(
        &mut self,
        id: &str,
        agent: &str,
        attempt: u32,
    ) -> Result<&'static str, TestCaseError> {
        self.release_lease(id, agent)?;
        let j = self.job(id)?;
        j.history += 1;
        if attempt.saturating_sub(j.attempt_base) >= j.max_attempts {
            self.bury(id)?;
            return Ok("dead");
        }
        j.state = "queued".into();
        j.rank = (j.rank + 1).min(3);
        j.agent.clear();
        j.queued = true;
        Ok("requeued")
    }

    fn refuse(job_agent: &str, job_attempt: u32, agent: &str, attempt: u32) -> Vec<String> {
        let reason = if job_agent != agent {
            "not_lease_holder"
        } else if job_attempt != attempt {
            "stale_attempt"
        } else {
            "not_live"
        };
        vec!["stale".into(), reason.into()]
    }

    fn enqueue(&mut self, id: &str, rank: u8, max_attempts: u32) -> &'static str {
        if self.jobs.contains_key(id) {
            return "duplicate";
        }
        self.jobs.insert(
            id.to_string(),
            Job {
                state: "queued".into(),
                max_attempts,
                rank: rank.into(),
                submitted_rank: rank.into(),
                queued: true,
                ..Job::default()
            },
        );
        "queued"
    }

    /// enqueue.lua: a new job is leased as attempt 1 to the agent it was
    /// placed on only if the queue held nothing when the call began
    /// (`backlog` false) and the agent can take it; else it is queued.
    /// Returns the status and, for a queued placed job, why it was not
    /// leased.
    fn admit(
        &mut self,
        id: &str,
        (rank, max_attempts): (u8, u32),
        to: Option<(&str, &str)>,
        backlog: bool,
        now: u64,
    ) -> Result<(&'static str, Option<&'static str>), TestCaseError> {
        if self.jobs.contains_key(id) {
            return Ok(("duplicate", None));
        }
        let refusal = match to {
            None => None,
            Some(_) if backlog => Some("backlog"),
            Some((agent, gpus)) => lease_refusal(self, agent, &split_csv(gpus)),
        };
        self.enqueue(id, rank, max_attempts);
        let Some((agent, gpus)) = to.filter(|_| refusal.is_none()) else {
            return Ok(("queued", refusal));
        };
        let deadline = self.lease_deadline(agent, now)?;
        self.job(id)?.queued = false;
        self.lease_to(id, agent, 1, gpus, deadline)?;
        Ok(("leased", None))
    }

    /// A new lease's deadline on `agent`: the accept timeout within its
    /// slots, longer for a prefetched one (assign.lua, enqueue.lua).
    fn lease_deadline(&self, agent: &str, now: u64) -> Result<u64, TestCaseError> {
        let a = self
            .agents
            .get(agent)
            .ok_or_else(|| fail("model: lease to unknown agent"))?;
        Ok(if a.jobs.len() as u32 >= a.slots {
            now + ACCEPT_MS + HEARTBEAT_TIMEOUT_MS
        } else {
            now + ACCEPT_MS
        })
    }

    fn assign(
        &mut self,
        id: &str,
        agent: &str,
        gpus: &str,
        now: u64,
    ) -> Result<String, TestCaseError> {
        let queued = self
            .jobs
            .get(id)
            .is_some_and(|j| j.state == "queued" && j.queued);
        if !queued {
            return Ok("not_queued".into());
        }
        if let Some(r) = lease_refusal(self, agent, &split_csv(gpus)) {
            return Ok(r.into());
        }
        let deadline = self.lease_deadline(agent, now)?;
        let j = self.job(id)?;
        let attempt = j.attempt + 1;
        j.queued = false;
        self.lease_to(id, agent, attempt, gpus, deadline)?;
        Ok(attempt.to_string())
    }

    fn steal(
        &mut self,
        id: &str,
        from: &str,
        attempt: u32,
        to: &str,
        gpus: &str,
        now: u64,
    ) -> Result<String, TestCaseError> {
        let current = self
            .jobs
            .get(id)
            .is_some_and(|j| j.state == "assigned" && j.agent == from && j.attempt == attempt);
        if !current {
            return Ok("moved_on".into());
        }
        if let Some(r) = lease_refusal(self, to, &split_csv(gpus)) {
            return Ok(r.into());
        }
        self.release_lease(id, from)?;
        let j = self.job(id)?;
        j.history += 1;
        j.attempt_base += 1;
        self.lease_to(id, to, attempt + 1, gpus, now + ACCEPT_MS)?;
        Ok((attempt + 1).to_string())
    }

    /// One event; returns its normalized reply (see [`normalize`]).
    fn event(&mut self, e: &Resolved, now: u64) -> Result<Vec<String>, TestCaseError> {
        match e {
            Resolved::Started {
                agent,
                job,
                attempt,
            } => {
                let Some(j) = self.jobs.get(job) else {
                    return Ok(vec!["unknown_job".into()]);
                };
                if j.agent != *agent || j.attempt != *attempt {
                    return Ok(Self::refuse(&j.agent, j.attempt, agent, *attempt));
                }
                match j.state.as_str() {
                    "assigned" => {
                        let beats = self.agents.get(agent).map_or(0, |a| a.beats);
                        let j = self.job(job)?;
                        j.state = "running".into();
                        j.started_beat = Some(beats);
                        j.lease = Some(now + (LEASE_TIMEOUT_MS as f64 * BUFFER).ceil() as u64);
                        Ok(vec!["ok".into()])
                    }
                    "running" => Ok(vec!["duplicate".into()]),
                    _ => Ok(Self::refuse(&j.agent, j.attempt, agent, *attempt)),
                }
            }
            Resolved::Completed {
                agent,
                job,
                attempt,
                result,
            } => {
                let Some(j) = self.jobs.get(job) else {
                    return Ok(vec!["unknown_job".into()]);
                };
                let current = j.agent == *agent && j.attempt == *attempt;
                let done_by = format!("{agent}/{attempt}");
                if current && (j.state == "assigned" || j.state == "running") {
                    self.release_lease(job, agent)?;
                    let j = self.job(job)?;
                    j.history += 1;
                    j.state = "succeeded".into();
                    j.result = Some(result.clone());
                    j.done_by = Some(done_by);
                    return Ok(vec!["accepted".into()]);
                }
                if j.state == "succeeded" && j.done_by.as_deref() == Some(done_by.as_str()) {
                    return Ok(vec!["duplicate".into()]);
                }
                Ok(Self::refuse(&j.agent, j.attempt, agent, *attempt))
            }
            Resolved::Failed {
                agent,
                job,
                attempt,
            } => {
                let Some(j) = self.jobs.get(job) else {
                    return Ok(vec!["unknown_job".into()]);
                };
                let current = j.agent == *agent && j.attempt == *attempt;
                if current && (j.state == "assigned" || j.state == "running") {
                    return Ok(vec![self.fail_attempt(job, agent, *attempt)?.into()]);
                }
                if current && j.state == "dead" {
                    return Ok(vec!["duplicate_dead".into()]);
                }
                Ok(Self::refuse(&j.agent, j.attempt, agent, *attempt))
            }
            Resolved::Register {
                agent,
                incarnation,
                slots,
                prefetch,
            } => {
                let previous = self.agents.get(agent).map(|a| a.incarnation.clone());
                let a = self.agents.entry(agent.clone()).or_default();
                a.incarnation = incarnation.clone();
                a.slots = *slots;
                a.prefetch = *prefetch;
                a.alive = true;
                a.beats = 0;
                a.seen = Some(now);
                let held: Vec<String> = a.jobs.iter().cloned().collect();
                let mut dead = Vec::new();
                if previous.is_some_and(|p| p != *incarnation) {
                    for id in held {
                        let attempt = self.job(&id)?.attempt;
                        if self.fail_attempt(&id, agent, attempt)? == "dead" {
                            dead.push(id);
                        }
                    }
                }
                let held = self.agents.get(agent).map_or(0, |a| a.jobs.len());
                let mut out = vec!["ok".into(), held.to_string()];
                dead.sort();
                out.extend(dead);
                Ok(out)
            }
            Resolved::Heartbeat {
                agent,
                incarnation,
                listed,
            } => {
                let Some(a) = self.agents.get(agent) else {
                    return Ok(vec!["unknown_agent".into()]);
                };
                if a.incarnation != *incarnation {
                    return Ok(vec!["stale_incarnation".into()]);
                }
                if !a.alive {
                    return Ok(vec!["dead_agent".into()]);
                }
                let beats = a.beats;
                let listed: BTreeMap<&str, u32> =
                    listed.iter().map(|(j, n)| (j.as_str(), *n)).collect();
                let mut failed = Vec::new();
                for id in a.jobs.clone() {
                    let j = self.job(&id)?;
                    let listed_attempt = listed.get(id.as_str()).copied();
                    if j.state == "assigned" && listed_attempt == Some(j.attempt) {
                        j.lease = Some(now + HEARTBEAT_TIMEOUT_MS);
                    } else if j.state == "running"
                        && listed_attempt != Some(j.attempt)
                        && j.started_beat.unwrap_or(0) < beats
                    {
                        let attempt = j.attempt;
                        let outcome = self.fail_attempt(&id, agent, attempt)?;
                        failed.push(format!("{id}:{outcome}"));
                    }
                }
                let a = self
                    .agents
                    .get_mut(agent)
                    .ok_or_else(|| fail("model: agent vanished"))?;
                a.beats += 1;
                a.seen = Some(now);
                failed.sort();
                let mut out = vec!["ok".to_string()];
                out.extend(failed);
                Ok(out)
            }
        }
    }

    /// The sweeper's pass; returns its outcomes, normalized and sorted.
    fn expire(
        &mut self,
        now: u64,
        (agents, leases): (bool, bool),
        limit: usize,
    ) -> Result<Vec<String>, TestCaseError> {
        // ZRANGEBYSCORE … LIMIT 0 limit: by score, then by member.
        fn first<'a>(limit: usize, found: impl Iterator<Item = (u64, &'a String)>) -> Vec<String> {
            let mut found: Vec<(u64, &String)> = found.collect();
            found.sort();
            found
                .into_iter()
                .take(limit)
                .map(|(_, id)| id.clone())
                .collect()
        }
        let mut out = Vec::new();
        if agents {
            let silent = first(
                limit,
                self.agents.iter().filter_map(|(id, a)| {
                    a.seen
                        .filter(|t| *t <= now - HEARTBEAT_TIMEOUT_MS)
                        .map(|t| (t, id))
                }),
            );
            for id in silent {
                let a = self
                    .agents
                    .get_mut(&id)
                    .ok_or_else(|| fail("model: agent vanished"))?;
                a.seen = None;
                if a.alive {
                    a.alive = false;
                    out.push(format!("agent_lost:{id}"));
                    for job in a.jobs.clone() {
                        self.spare(&job)?;
                        let attempt = self.job(&job)?.attempt;
                        let outcome = self.fail_attempt(&job, &id, attempt)?;
                        out.push(format!("{outcome}:{job}:{id}"));
                    }
                }
            }
        }
        if leases {
            let overdue = first(
                limit,
                self.jobs
                    .iter()
                    .filter_map(|(id, j)| j.lease.filter(|t| *t <= now).map(|t| (t, id))),
            );
            for id in overdue {
                let j = self.job(&id)?;
                let (state, agent, attempt) = (j.state.clone(), j.agent.clone(), j.attempt);
                match state.as_str() {
                    "assigned" => {
                        self.spare(&id)?;
                        let outcome = self.fail_attempt(&id, &agent, attempt)?;
                        out.push(format!("{outcome}:{id}:{agent}"));
                    }
                    "running" => {
                        out.push(format!("cancel:{id}:{agent}:{attempt}"));
                        let outcome = self.fail_attempt(&id, &agent, attempt)?;
                        out.push(format!("{outcome}:{id}:{agent}"));
                    }
                    _ => j.lease = None,
                }
            }
        }
        let stuck = first(
            limit,
            self.jobs.iter().filter_map(|(id, j)| {
                j.parked
                    .filter(|t| *t <= now - UNSCHEDULABLE_MS)
                    .map(|t| (t, id))
            }),
        );
        for id in stuck {
            let j = self.job(&id)?;
            j.parked = None;
            if j.state == "queued" {
                self.bury(&id)?;
                out.push(format!("unschedulable:{id}"));
            }
        }
        out.sort();
        Ok(out)
    }

    fn cancel(&mut self, id: &str) -> Result<String, TestCaseError> {
        let Some(j) = self.jobs.get(id) else {
            return Ok("unknown".into());
        };
        if matches!(j.state.as_str(), "succeeded" | "dead" | "cancelled") {
            return Ok(format!("already_{}", j.state));
        }
        let (previous, agent, attempt) = (j.state.clone(), j.agent.clone(), j.attempt);
        if previous == "queued" {
            let j = self.job(id)?;
            j.queued = false;
            j.parked = None;
        } else {
            self.release_lease(id, &agent)?;
            self.job(id)?.history += 1;
        }
        self.job(id)?.state = "cancelled".into();
        Ok(if previous != "queued" && !agent.is_empty() {
            format!("cancelled:{agent}/{attempt}")
        } else {
            "cancelled".into()
        })
    }

    fn retry(&mut self, id: &str) -> Result<String, TestCaseError> {
        let Some(j) = self.jobs.get_mut(id) else {
            return Ok("unknown".into());
        };
        if j.state != "dead" && j.state != "cancelled" {
            return Ok(j.state.clone());
        }
        j.state = "queued".into();
        j.attempt_base = j.attempt;
        j.rank = j.submitted_rank;
        j.agent.clear();
        j.unschedulable_since = None;
        j.dead = false;
        j.queued = true;
        Ok("queued".into())
    }

    fn park(&mut self, id: &str, now: u64) -> u64 {
        match self.jobs.get_mut(id) {
            Some(j) if j.queued => {
                j.queued = false;
                let since = *j.unschedulable_since.get_or_insert(now);
                j.parked = Some(since);
                1
            }
            _ => 0,
        }
    }

    fn unpark(&mut self) -> u64 {
        let mut n = 0;
        for j in self.jobs.values_mut() {
            if j.parked.take().is_some() {
                n += 1;
                if j.state == "queued" {
                    j.queued = true;
                }
            }
        }
        n
    }
}

// ---------------------------------------------------------------------
// Events, resolved against the state
// ---------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Resolved {
    Started {
        agent: String,
        job: String,
        attempt: u32,
    },
    Completed {
        agent: String,
        job: String,
        attempt: u32,
        result: String,
    },
    Failed {
        agent: String,
        job: String,
        attempt: u32,
    },
    Register {
        agent: String,
        incarnation: String,
        slots: u32,
        prefetch: u32,
    },
    Heartbeat {
        agent: String,
        incarnation: String,
        listed: Vec<(String, u32)>,
    },
}

impl Resolved {
    /// The event's type and script fields, exactly as
    /// `fleet_balancer::events` builds them from an `AgentEvent`.
    fn fields(&self) -> (&'static str, Vec<String>) {
        match self {
            Resolved::Started {
                agent,
                job,
                attempt,
            } => (
                "started",
                vec![agent.clone(), job.clone(), attempt.to_string()],
            ),
            Resolved::Completed {
                agent,
                job,
                attempt,
                result,
            } => (
                "completed",
                vec![
                    agent.clone(),
                    job.clone(),
                    attempt.to_string(),
                    result.clone(),
                    "7".into(),
                ],
            ),
            Resolved::Failed {
                agent,
                job,
                attempt,
            } => (
                "failed",
                vec![
                    agent.clone(),
                    job.clone(),
                    attempt.to_string(),
                    "boom".into(),
                    "7".into(),
                ],
            ),
            Resolved::Register {
                agent,
                incarnation,
                slots,
                prefetch,
            } => (
                "register",
                vec![
                    agent.clone(),
                    incarnation.clone(),
                    slots.to_string(),
                    prefetch.to_string(),
                    r#"{"cpus":1,"memory_mb":1,"gpus":[],"kinds":["echo"],"tags":[]}"#.into(),
                ],
            ),
            Resolved::Heartbeat {
                agent,
                incarnation,
                listed,
            } => {
                let mut f = vec![agent.clone(), incarnation.clone(), "0".into()];
                for (job, attempt) in listed {
                    f.push(job.clone());
                    f.push(attempt.to_string());
                }
                ("heartbeat", f)
            }
        }
    }

    /// Whether this event, by the model, changes nothing at all (a
    /// refusal; not a heartbeat or register that counts).
    fn refused(reply: &[String]) -> bool {
        matches!(
            reply.first().map(String::as_str),
            Some(
                "stale"
                    | "unknown_job"
                    | "unknown_agent"
                    | "stale_incarnation"
                    | "dead_agent"
                    | "duplicate"
                    | "duplicate_dead"
            )
        )
    }
}

/// The reply of `events.lua` to one event, in the model's form.
fn normalize(reply: &EventReply) -> Vec<String> {
    let status = reply.status().to_string();
    match reply {
        EventReply::Stale(why) => vec![status, why.as_str().to_string()],
        EventReply::Registered { leases, dead } => {
            let mut dead: Vec<String> = dead.iter().map(|d| d.job_id.clone()).collect();
            dead.sort();
            let mut out = vec![status, leases.to_string()];
            out.extend(dead);
            out
        }
        EventReply::Beat { dropped } => {
            let mut failed: Vec<String> = dropped
                .iter()
                .map(|d| format!("{}:{}", d.job_id, d.ended.as_str()))
                .collect();
            failed.sort();
            let mut out = vec![status];
            out.extend(failed);
            out
        }
        _ => vec![status],
    }
}

fn resolve_job(s: &State, pick: &Pick) -> String {
    match pick {
        Pick::Job(i) => job_id(*i),
        Pick::Leased(i) => {
            let leased: Vec<&String> = s
                .jobs
                .iter()
                .filter(|(_, j)| j.lease.is_some())
                .map(|(id, _)| id)
                .collect();
            if leased.is_empty() {
                job_id(*i)
            } else {
                leased[i % leased.len()].clone()
            }
        }
    }
}

fn resolve_attempt(s: &State, job: &str, att: &Att) -> u32 {
    let current = s.jobs.get(job).map_or(0, |j| j.attempt);
    match att {
        Att::Current => current,
        Att::Previous => current.saturating_sub(1),
        Att::Next => current + 1,
    }
}

fn resolve_agent(s: &State, job: &str, who: &Who) -> String {
    match who {
        Who::Holder => match s.jobs.get(job) {
            Some(j) if !j.agent.is_empty() => j.agent.clone(),
            _ => agent_id(0),
        },
        Who::Agent(i) => agent_id(*i),
    }
}

fn resolve(s: &State, e: &Ev) -> Resolved {
    match e {
        Ev::Started(j, who, att) => {
            let job = resolve_job(s, j);
            Resolved::Started {
                agent: resolve_agent(s, &job, who),
                attempt: resolve_attempt(s, &job, att),
                job,
            }
        }
        Ev::Completed(j, who, att, r) => {
            let job = resolve_job(s, j);
            Resolved::Completed {
                agent: resolve_agent(s, &job, who),
                attempt: resolve_attempt(s, &job, att),
                result: format!(r#"{{"r":{r}}}"#),
                job,
            }
        }
        Ev::Failed(j, who, att) => {
            let job = resolve_job(s, j);
            Resolved::Failed {
                agent: resolve_agent(s, &job, who),
                attempt: resolve_attempt(s, &job, att),
                job,
            }
        }
        Ev::Register { agent, incarnation } => {
            let agent = agent_id(*agent);
            let (slots, prefetch) = shape(&agent, *incarnation);
            Resolved::Register {
                incarnation: self::incarnation(&agent, *incarnation),
                agent,
                slots,
                prefetch,
            }
        }
        Ev::Heartbeat {
            agent,
            incarnation,
            listing,
        } => {
            let agent = agent_id(*agent);
            let known = s.agents.get(&agent);
            let incarnation = match incarnation {
                None => {
                    known.map_or_else(|| self::incarnation(&agent, 0), |a| a.incarnation.clone())
                }
                Some(k) => self::incarnation(&agent, *k),
            };
            let held: Vec<(String, u32)> = known
                .map(|a| {
                    a.jobs
                        .iter()
                        .map(|j| (j.clone(), s.jobs.get(j).map_or(0, |j| j.attempt)))
                        .collect()
                })
                .unwrap_or_default();
            let listed = match listing {
                Listing::All => held,
                Listing::Nothing => Vec::new(),
                Listing::AllBut(i) => {
                    let mut held = held;
                    if !held.is_empty() {
                        let i = i % held.len();
                        held.remove(i);
                    }
                    held
                }
                Listing::Stale => held
                    .into_iter()
                    .map(|(j, n)| (j, n.saturating_sub(1)))
                    .collect(),
                Listing::Plus(j) => {
                    let mut held = held;
                    let job = job_id(*j);
                    if !held.iter().any(|(h, _)| *h == job) {
                        let attempt = s.jobs.get(&job).map_or(0, |j| j.attempt);
                        held.push((job, attempt));
                    }
                    held
                }
            };
            Resolved::Heartbeat {
                agent,
                incarnation,
                listed,
            }
        }
    }
}

// ---------------------------------------------------------------------
// Reading Redis
// ---------------------------------------------------------------------

fn num<T: std::str::FromStr + Default>(h: &BTreeMap<String, String>, f: &str) -> T {
    h.get(f).and_then(|v| v.parse().ok()).unwrap_or_default()
}

async fn read_state(
    conn: &mut ConnectionManager,
    keys: &Keys,
    jobs: &[String],
    agents: &[String],
) -> Result<(State, Extra), TestCaseError> {
    let p = keys.prefix();
    let seen_key = format!("{p}:agents:seen");
    let mut pipe = redis::pipe();
    for id in jobs {
        pipe.hgetall(keys.job(id))
            .zscore(keys.queue(), id)
            .zscore(keys.parked(), id)
            .zscore(keys.leases(), id)
            .zscore(keys.dead(), id);
    }
    for id in agents {
        pipe.hgetall(keys.agent(id))
            .smembers(keys.agent_jobs(id))
            .hgetall(keys.agent_gpus(id))
            .zscore(&seen_key, id);
    }
    pipe.zrange(keys.leases(), 0, -1)
        .zrange_withscores(keys.queue(), 0, -1)
        .zrange(keys.parked(), 0, -1)
        .zrange(keys.dead(), 0, -1)
        .zrange(&seen_key, 0, -1)
        .hgetall(keys.stats());
    let values: Vec<redis::Value> = pipe.query_async(conn).await.or_fail("read state")?;
    let mut it = values.into_iter();
    let mut next = || it.next().ok_or_else(|| fail("short pipeline reply"));
    fn conv<T: redis::FromRedisValue>(v: redis::Value) -> Result<T, TestCaseError> {
        redis::from_redis_value(v).or_fail("parse reply")
    }

    let mut state = State::default();
    let mut extra = Extra::default();
    for id in jobs {
        let h: BTreeMap<String, String> = conv(next()?)?;
        let queued: Option<f64> = conv(next()?)?;
        let parked: Option<f64> = conv(next()?)?;
        let lease: Option<f64> = conv(next()?)?;
        let dead: Option<f64> = conv(next()?)?;
        if h.is_empty() {
            if queued.is_some() || parked.is_some() || lease.is_some() || dead.is_some() {
                return Err(fail(format!("job {id} has no hash but is indexed")));
            }
            continue;
        }
        let history: Vec<Value> = match h.get("history").map(String::as_str) {
            None | Some("") | Some("[]") | Some("{}") => Vec::new(),
            Some(raw) => serde_json::from_str(raw).or_fail("job history")?,
        };
        state.jobs.insert(
            id.clone(),
            Job {
                state: h.get("state").cloned().unwrap_or_default(),
                attempt: num(&h, "attempt"),
                agent: h.get("agent").cloned().unwrap_or_default(),
                attempt_base: num(&h, "attempt_base"),
                infra_spared: num(&h, "infra_spared"),
                max_attempts: num(&h, "max_attempts"),
                rank: num(&h, "rank"),
                submitted_rank: num(&h, "submitted_rank"),
                result: h.get("result").cloned(),
                done_by: h.get("done_by").cloned(),
                gpus: h.get("gpus").cloned().unwrap_or_default(),
                started_beat: h.get("started_beat").and_then(|v| v.parse().ok()),
                unschedulable_since: h.get("unschedulable_since").and_then(|v| v.parse().ok()),
                history: history.len(),
                queued: queued.is_some(),
                parked: parked.map(|t| t as u64),
                lease: lease.map(|t| t as u64),
                dead: dead.is_some(),
            },
        );
        extra.histories.insert(id.clone(), history);
        extra
            .errors
            .insert(id.clone(), h.get("error").cloned().unwrap_or_default());
    }
    for id in agents {
        let h: BTreeMap<String, String> = conv(next()?)?;
        let held: BTreeSet<String> = conv(next()?)?;
        let gpus: BTreeMap<String, String> = conv(next()?)?;
        let seen: Option<f64> = conv(next()?)?;
        if h.is_empty() {
            if !held.is_empty() || !gpus.is_empty() || seen.is_some() {
                extra.orphan_job_sets.insert(id.clone(), held);
            }
            continue;
        }
        extra.agent_succeeded += num::<i64>(&h, "succeeded");
        state.agents.insert(
            id.clone(),
            Agent {
                incarnation: h.get("incarnation").cloned().unwrap_or_default(),
                slots: num(&h, "slots"),
                prefetch: num(&h, "prefetch"),
                alive: h.get("state").map(String::as_str) == Some("alive"),
                draining: h.get("draining").map(String::as_str) == Some("1"),
                beats: num(&h, "beats"),
                seen: seen.map(|t| t as u64),
                jobs: held,
                gpus,
            },
        );
    }
    extra.leases = conv(next()?)?;
    let queue: Vec<(String, f64)> = conv(next()?)?;
    extra.queue = queue.into_iter().collect();
    extra.parked = conv(next()?)?;
    extra.dead = conv(next()?)?;
    extra.seen = conv(next()?)?;
    extra.stats = conv(next()?)?;
    Ok((state, extra))
}

// ---------------------------------------------------------------------
// The invariants, on what Redis holds
// ---------------------------------------------------------------------

/// What earlier states promise about later ones.
#[derive(Default)]
struct Memory {
    /// The highest attempt seen per job.
    attempts: BTreeMap<String, u32>,
    /// Each succeeded job's accepted result and `done_by`.
    results: BTreeMap<String, (Option<String>, Option<String>)>,
    histories: BTreeMap<String, Vec<Value>>,
}

const STATES: &[&str] = &[
    "queued",
    "assigned",
    "running",
    "succeeded",
    "dead",
    "cancelled",
];

fn check_invariants(s: &State, x: &Extra, memory: &mut Memory) -> Result<(), TestCaseError> {
    for (id, j) in &s.jobs {
        let st = j.state.as_str();
        prop_assert!(STATES.contains(&st), "{id}: unknown state {st:?}");
        let leased = st == "assigned" || st == "running";
        let terminal = matches!(st, "succeeded" | "dead" | "cancelled");
        let holders: Vec<&String> = s
            .agents
            .iter()
            .filter(|(_, a)| a.jobs.contains(id))
            .map(|(a, _)| a)
            .collect();

        // Queued ⇔ in exactly one of the queue and the parked set.
        prop_assert!(
            !(j.queued && j.parked.is_some()),
            "{id} both queued and parked"
        );
        prop_assert_eq!(
            st == "queued",
            j.queued || j.parked.is_some(),
            "{}: state {} vs queue {} parked {:?}",
            id,
            st,
            j.queued,
            j.parked
        );
        // Leased ⇔ in the lease index, held by exactly its agent, alive.
        prop_assert_eq!(
            leased,
            j.lease.is_some(),
            "{}: state {} lease {:?}",
            id,
            st,
            j.lease
        );
        if leased {
            prop_assert!(!j.agent.is_empty(), "{id}: leased without an agent");
            prop_assert_eq!(&holders, &vec![&j.agent], "{}: held by {:?}", id, holders);
            let a = s.agents.get(&j.agent);
            prop_assert!(
                a.is_some_and(|a| a.alive),
                "{id}: leased to dead or unknown {}",
                j.agent
            );
            prop_assert!(j.attempt >= 1, "{id}: leased at attempt 0");
            for g in split_csv(&j.gpus) {
                let holder = a.and_then(|a| a.gpus.get(&g));
                prop_assert_eq!(holder, Some(id), "{}: GPU {} not held", id, g);
            }
        } else {
            prop_assert!(
                holders.is_empty(),
                "{id} ({st}) still in job sets {holders:?}"
            );
            prop_assert!(j.gpus.is_empty(), "{id} ({st}) still has GPUs {}", j.gpus);
        }
        if st == "queued" {
            prop_assert!(j.agent.is_empty(), "{id}: queued but agent {}", j.agent);
            // A queued job has attempts left (retries are bounded).
            prop_assert!(
                j.attempt - j.attempt_base.min(j.attempt) < j.max_attempts,
                "{id}: queued with its attempts spent: {j:?}"
            );
        }
        if terminal {
            prop_assert!(
                !j.queued && j.parked.is_none() && j.lease.is_none(),
                "{id}: {j:?}"
            );
        }
        prop_assert_eq!(
            st == "dead",
            j.dead,
            "{}: dead-letter index vs state {}",
            id,
            st
        );
        prop_assert!(
            j.attempt_base <= j.attempt,
            "{id}: base past attempt: {j:?}"
        );
        prop_assert!(
            j.attempt - j.attempt_base <= j.max_attempts,
            "{id}: more attempts than max_attempts: {j:?}"
        );
        // Attempts spared for dead agents are bounded too.
        prop_assert!(
            j.infra_spared <= INFRA_SPARES,
            "{id}: more spared attempts than {INFRA_SPARES}: {j:?}"
        );
        if st == "succeeded" {
            prop_assert!(j.result.is_some(), "{id}: succeeded without a result");
            let by = format!("{}/{}", j.agent, j.attempt);
            prop_assert_eq!(j.done_by.as_deref(), Some(by.as_str()), "{}", id);
        }
        if let Some((_, score)) = x.queue.get_key_value(id) {
            let band = (*score / (1u64 << 44) as f64).floor() as u32;
            prop_assert_eq!(band, 3 - j.rank.min(3), "{}: queued outside its class", id);
        }

        // Across time: attempts never go down; one result per job;
        // histories only grow.
        let seen = memory.attempts.entry(id.clone()).or_insert(0);
        prop_assert!(
            j.attempt >= *seen,
            "{id}: attempt went from {seen} to {}",
            j.attempt
        );
        *seen = j.attempt;
        if let Some(accepted) = memory.results.get(id) {
            prop_assert_eq!(st, "succeeded", "{}: left succeeded", id);
            prop_assert_eq!(
                (&j.result, &j.done_by),
                (&accepted.0, &accepted.1),
                "{}: result changed",
                id
            );
        } else if st == "succeeded" {
            memory
                .results
                .insert(id.clone(), (j.result.clone(), j.done_by.clone()));
        }
        let history = x.histories.get(id).cloned().unwrap_or_default();
        check_history(id, j, &history, x.errors.get(id).map_or("", String::as_str))?;
        if let Some(before) = memory.histories.get(id) {
            prop_assert!(
                history.len() >= before.len() && history[..before.len()] == before[..],
                "{id}: history rewritten: {before:?} -> {history:?}"
            );
        }
        memory.histories.insert(id.clone(), history);
    }

    for (id, a) in &s.agents {
        prop_assert!(
            a.jobs.len() as u32 <= a.slots + a.prefetch,
            "{id} holds {} leases, capacity {} + {}",
            a.jobs.len(),
            a.slots,
            a.prefetch
        );
        for job in &a.jobs {
            let j = s.jobs.get(job);
            prop_assert!(
                j.is_some_and(
                    |j| j.agent == *id && matches!(j.state.as_str(), "assigned" | "running")
                ),
                "{id} holds {job}, which is {j:?}"
            );
        }
        for (g, job) in &a.gpus {
            let j = s.jobs.get(job);
            prop_assert!(
                j.is_some_and(|j| j.agent == *id
                    && split_csv(&j.gpus).contains(g)
                    && j.lease.is_some()),
                "{id}: GPU {g} held by {job}, which is {j:?}"
            );
        }
        if !a.alive {
            prop_assert!(a.jobs.is_empty(), "dead agent {id} holds {:?}", a.jobs);
        }
        prop_assert_eq!(a.alive, x.seen.contains(id), "{}: alive vs watched", id);
    }
    prop_assert!(
        x.orphan_job_sets.is_empty(),
        "unregistered agents hold {:?}",
        x.orphan_job_sets
    );

    let leased: BTreeSet<String> = s
        .jobs
        .iter()
        .filter(|(_, j)| j.lease.is_some())
        .map(|(id, _)| id.clone())
        .collect();
    prop_assert_eq!(&x.leases, &leased, "lease index vs leased jobs");
    for set in [&x.parked, &x.dead] {
        for id in set {
            prop_assert!(s.jobs.contains_key(id), "index names unknown job {id}");
        }
    }
    for id in x.queue.keys() {
        prop_assert!(s.jobs.contains_key(id), "queue names unknown job {id}");
    }
    let succeeded = s.jobs.values().filter(|j| j.state == "succeeded").count() as i64;
    let counted = x.stats.get("succeeded").copied().unwrap_or(0);
    prop_assert_eq!(counted, succeeded, "succeeded counter vs succeeded jobs");
    prop_assert_eq!(x.agent_succeeded, succeeded, "agents' succeeded counters");
    Ok(())
}

/// A job's history: one record per ended attempt, in order, each with
/// its outcome (and an error unless it succeeded); the last one agrees
/// with how the job ended; a job dead-lettered by failures spent exactly
/// its max_attempts.
fn check_history(id: &str, j: &Job, history: &[Value], error: &str) -> Result<(), TestCaseError> {
    let mut last_attempt = 0;
    for r in history {
        let attempt = r.get("attempt").and_then(Value::as_u64).unwrap_or(0);
        let outcome = r.get("outcome").and_then(Value::as_str).unwrap_or("");
        let agent = r.get("agent_id").and_then(Value::as_str).unwrap_or("");
        prop_assert!(
            matches!(outcome, "succeeded" | "failed" | "cancelled" | "moved"),
            "{id}: record {r}"
        );
        prop_assert!(!agent.is_empty(), "{id}: record without agent {r}");
        if outcome != "succeeded" {
            let e = r.get("error").and_then(Value::as_str).unwrap_or("");
            prop_assert!(!e.is_empty(), "{id}: record without error {r}");
        }
        prop_assert!(
            attempt > last_attempt,
            "{id}: attempt {attempt} recorded after {last_attempt} (one outcome per attempt)"
        );
        last_attempt = attempt;
    }
    // Every lease ends in exactly one record; the live one has none yet.
    let live = u32::from(j.lease.is_some());
    prop_assert_eq!(
        history.len() as u32,
        j.attempt - live,
        "{}: {} records for attempt {} (live lease: {})",
        id,
        history.len(),
        j.attempt,
        live == 1
    );
    let last = history.last();
    let last_is = |outcome: &str| {
        last.is_some_and(|r| {
            r.get("outcome").and_then(Value::as_str) == Some(outcome)
                && r.get("attempt").and_then(Value::as_u64) == Some(u64::from(j.attempt))
                && r.get("agent_id").and_then(Value::as_str) == Some(j.agent.as_str())
        })
    };
    if j.state == "succeeded" {
        prop_assert!(last_is("succeeded"), "{id}: succeeded, history {history:?}");
    }
    if j.state == "dead" && !error.starts_with("unschedulable") {
        prop_assert!(last_is("failed"), "{id}: dead, history {history:?}");
        prop_assert_eq!(
            j.attempt - j.attempt_base,
            j.max_attempts,
            "{}: dead-lettered after {} of {} attempts",
            id,
            j.attempt - j.attempt_base,
            j.max_attempts
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------

struct Run {
    store: Store,
    conn: ConnectionManager,
    keys: Keys,
    model: State,
    memory: Memory,
    now: u64,
    batches: Vec<Vec<Resolved>>,
    job_ids: Vec<String>,
    agent_ids: Vec<String>,
    /// The case's number of (setup) jobs.
    jobs: usize,
    log: Vec<String>,
    /// How admissions went, across cases (see [`Tally`]).
    tally: Tally,
}

/// How many admitted jobs went each way, over the whole run: shows that
/// the cases reach the lease path and each reason to queue instead.
#[derive(Clone, Default)]
struct Tally(std::rc::Rc<std::cell::RefCell<BTreeMap<&'static str, u64>>>);

impl Tally {
    fn count(&self, outcome: &'static str) {
        *self.0.borrow_mut().entry(outcome).or_default() += 1;
    }
}

impl Run {
    fn hb(&self) -> Duration {
        Duration::from_millis(HEARTBEAT_TIMEOUT_MS)
    }

    async fn events(&mut self, batch: Vec<Resolved>) -> Result<(), TestCaseError> {
        let before = read_state(&mut self.conn, &self.keys, &self.job_ids, &self.agent_ids)
            .await?
            .0;
        let mut args = EventArgs::default();
        let mut expected = Vec::new();
        for e in &batch {
            let (kind, fields) = e.fields();
            let kind = EventKind::parse(kind)
                .ok_or_else(|| TestCaseError::fail(format!("no event kind {kind}")))?;
            args.push(kind, fields);
            expected.push(self.model.event(e, self.now)?);
        }
        let replies = self
            .store
            .apply_events(&args, self.now, BUFFER, self.hb())
            .await
            .or_fail("events")?;
        let mut all_refused = true;
        for ((e, want), got) in batch.iter().zip(&expected).zip(&replies) {
            let got = normalize(got);
            self.log.push(format!("    {e:?} -> {got:?}"));
            prop_assert_eq!(&got, want, "reply to {:?}", e);
            all_refused &= Resolved::refused(want);
        }
        if all_refused {
            // Refused events (forged, stale, unknown, duplicates) change
            // nothing at all.
            let after = read_state(&mut self.conn, &self.keys, &self.job_ids, &self.agent_ids)
                .await?
                .0;
            prop_assert_eq!(after, before, "a refused event changed the state");
        }
        self.batches.push(batch);
        Ok(())
    }

    /// Commits (job, agent, GPU) placements with one assign call.
    async fn assign(
        &mut self,
        op: &Op,
        items: Vec<(String, String, Option<u32>)>,
    ) -> Result<(), TestCaseError> {
        let now = self.now;
        let placements: Vec<(String, Placement)> = items
            .into_iter()
            .map(|(job, agent, g)| {
                (
                    job,
                    Placement {
                        agent,
                        gpus: g.into_iter().collect(),
                        timeout_ms: LEASE_TIMEOUT_MS,
                    },
                )
            })
            .collect();
        let mut want = Vec::new();
        for (job, p) in &placements {
            let gpus: Vec<String> = p.gpus.iter().map(u32::to_string).collect();
            want.push(self.model.assign(job, &p.agent, &gpus.join(","), now)?);
        }
        let refs: Vec<(&str, &Placement)> =
            placements.iter().map(|(j, p)| (j.as_str(), p)).collect();
        let deadline = now + ACCEPT_MS;
        let got = self
            .store
            .assign(&refs, now, (deadline, deadline + HEARTBEAT_TIMEOUT_MS))
            .await
            .or_fail("assign")?;
        let got: Vec<String> = got.into_iter().map(assigned).collect();
        self.log.push(format!("{op:?} {refs:?} -> {got:?}"));
        prop_assert_eq!(&got, &want);
        Ok(())
    }

    async fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match op {
            Op::Enqueue(items) => {
                let mut jobs = Vec::new();
                let mut want = Vec::new();
                for (j, rank, max) in items {
                    let id = job_id(*j);
                    jobs.push(echo_job(&id, *rank, *max)?);
                    want.push(self.model.enqueue(&id, *rank, *max).to_string());
                }
                let (outcomes, depth) = self.store.enqueue(&jobs, now).await.or_fail("enqueue")?;
                let got: Vec<String> = outcomes
                    .iter()
                    .map(|o| format!("{o:?}").to_lowercase())
                    .collect();
                self.log.push(format!("{op:?} -> {got:?}, depth {depth}"));
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(depth, self.model.queue_depth(), "queue depth");
            }
            Op::Admit(items) => {
                // ZCARD of the queue when the script begins (parked jobs
                // are not a backlog: nothing can run them).
                let mut backlog = self.model.jobs.values().any(|j| j.queued);
                let mut jobs = Vec::new();
                let mut placements = Vec::new();
                let mut want = Vec::new();
                for (j, rank, max, to) in items {
                    let id = admitted_job_id(self.jobs, *j);
                    jobs.push(echo_job(&id, *rank, *max)?);
                    let p = to.map(|(a, g)| Placement {
                        agent: agent_id(a),
                        gpus: g.into_iter().collect(),
                        timeout_ms: LEASE_TIMEOUT_MS,
                    });
                    let gpus = p.as_ref().map(|p| {
                        p.gpus
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    });
                    let (status, why) = self.model.admit(
                        &id,
                        (*rank, *max),
                        p.as_ref().map(|p| p.agent.as_str()).zip(gpus.as_deref()),
                        backlog,
                        now,
                    )?;
                    // A placed job the agent refused is queued, and the
                    // rest of the call must not overtake it.
                    backlog |= status == "queued" && why.is_some();
                    self.tally.count(match (status, why, &p) {
                        ("queued", Some(why), _) => why,
                        ("queued", None, None) => "not_placed",
                        _ => status,
                    });
                    want.push(status.to_string());
                    placements.push(p);
                }
                let deadline = now + ACCEPT_MS;
                let (outcomes, depth) = self
                    .store
                    .admit(
                        &jobs,
                        &placements,
                        now,
                        (deadline, deadline + HEARTBEAT_TIMEOUT_MS),
                    )
                    .await
                    .or_fail("admit")?;
                let got: Vec<String> = outcomes
                    .iter()
                    .map(|o| format!("{o:?}").to_lowercase())
                    .collect();
                self.log.push(format!(
                    "{op:?} (backlog: {backlog}) {placements:?} -> {got:?}, depth {depth}"
                ));
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(depth, self.model.queue_depth(), "queue depth");
            }
            Op::Assign(items) => {
                let placements: Vec<(String, String, Option<u32>)> = items
                    .iter()
                    .map(|(j, a, g)| (job_id(*j), agent_id(*a), *g))
                    .collect();
                self.assign(op, placements).await?;
            }
            Op::Schedule(seed) => {
                let queued: Vec<String> = self
                    .model
                    .jobs
                    .iter()
                    .filter(|(_, j)| j.queued)
                    .map(|(id, _)| id.clone())
                    .collect();
                let fleet = self.agent_ids.len() - 1;
                let placements = queued
                    .into_iter()
                    .enumerate()
                    .map(|(k, id)| (id, agent_id((seed % fleet + k) % fleet), None))
                    .collect();
                self.assign(op, placements).await?;
            }
            Op::Events(evs) => {
                self.log.push(format!("{op:?}"));
                let batch: Vec<Resolved> = evs.iter().map(|e| resolve(&self.model, e)).collect();
                self.events(batch).await?;
            }
            Op::Replay(i) => {
                if self.batches.is_empty() {
                    self.log.push(format!("{op:?}: nothing to replay"));
                    return Ok(());
                }
                let batch = self.batches[i % self.batches.len()].clone();
                self.log.push(format!("{op:?}"));
                self.events(batch).await?;
            }
            Op::Advance(ms) => {
                self.now += ms;
                self.log.push(format!("{op:?} -> now {}", self.now));
            }
            Op::Expire {
                agents,
                leases,
                limit,
            } => {
                let want = self.model.expire(now, (*agents, *leases), *limit)?;
                let got = self
                    .store
                    .expire(
                        now,
                        self.hb(),
                        *limit,
                        (*agents, *leases),
                        Duration::from_millis(UNSCHEDULABLE_MS),
                    )
                    .await
                    .or_fail("expire")?;
                let mut got: Vec<String> = got.into_iter().map(expired).collect();
                got.sort();
                self.log.push(format!("{op:?} -> {got:?}"));
                prop_assert_eq!(&got, &want);
            }
            Op::Cancel(j) => {
                let id = resolve_job(&self.model, j);
                let want = self.model.cancel(&id)?;
                let got = match self.store.cancel(&id, now).await.or_fail("cancel")? {
                    Cancelled::Done {
                        lease: Some((agent, attempt)),
                        ..
                    } => format!("cancelled:{agent}/{attempt}"),
                    Cancelled::Done { lease: None, .. } => "cancelled".into(),
                    Cancelled::Unknown => "unknown".into(),
                    Cancelled::AlreadyEnded(s) => format!("already_{s}"),
                };
                self.log.push(format!("{op:?} ({id}) -> {got}"));
                prop_assert_eq!(got, want);
            }
            Op::Retry(j) => {
                let id = any_job_id(self.jobs, *j);
                let want = self.model.retry(&id)?;
                let got = match self.store.retry(&id, now).await.or_fail("retry")? {
                    Retried::Queued => "queued".to_string(),
                    Retried::Unknown => "unknown".to_string(),
                    Retried::NotRetryable(state) => state.as_str().to_string(),
                };
                self.log.push(format!("{op:?} -> {got}"));
                prop_assert_eq!(got, want);
            }
            Op::Park(j) => {
                let id = any_job_id(self.jobs, *j);
                let want = self.model.park(&id, now);
                let got = self
                    .store
                    .park(&[(id, "no agent fits".into())], now)
                    .await
                    .or_fail("park")?;
                self.log.push(format!("{op:?} -> {got}"));
                prop_assert_eq!(got, want);
            }
            Op::Unpark => {
                let want = self.model.unpark();
                let got = self.store.unpark().await.or_fail("unpark")?;
                self.log.push(format!("{op:?} -> {got}"));
                prop_assert_eq!(got, want);
            }
            Op::Drain(a, draining) => {
                let id = agent_id(*a);
                let want = match self.model.agents.get_mut(&id) {
                    Some(agent) => {
                        agent.draining = *draining;
                        true
                    }
                    None => false,
                };
                let got = self.store.drain(&id, *draining).await.or_fail("drain")?;
                self.log.push(format!("{op:?} -> {got}"));
                prop_assert_eq!(got, want);
            }
            Op::Steal {
                job,
                to,
                stale,
                gpu,
            } => {
                let id = resolve_job(&self.model, job);
                let (from, attempt) = match self.model.jobs.get(&id) {
                    Some(j) if !j.agent.is_empty() => (j.agent.clone(), j.attempt),
                    Some(j) => (agent_id(0), j.attempt),
                    None => (agent_id(0), 1),
                };
                let attempt = if *stale {
                    attempt.saturating_sub(1)
                } else {
                    attempt
                };
                let p = Placement {
                    agent: agent_id(*to),
                    gpus: gpu.iter().copied().collect(),
                    timeout_ms: LEASE_TIMEOUT_MS,
                };
                let gpus: Vec<String> = p.gpus.iter().map(u32::to_string).collect();
                let want = self
                    .model
                    .steal(&id, &from, attempt, &p.agent, &gpus.join(","), now)?;
                let moves = [Move {
                    job: &id,
                    from: &from,
                    attempt,
                    to: &p,
                }];
                let got = self
                    .store
                    .steal(&moves, now, now + ACCEPT_MS)
                    .await
                    .or_fail("steal")?;
                let got: Vec<String> = got.into_iter().map(assigned).collect();
                self.log.push(format!(
                    "{op:?} ({id} {from}/{attempt} -> {}) -> {got:?}",
                    p.agent
                ));
                prop_assert_eq!(&got, &vec![want]);
            }
        }
        Ok(())
    }
}

fn assigned(a: Assigned) -> String {
    match a {
        Assigned::Leased(n) => n.to_string(),
        Assigned::Refused(r) => r,
    }
}

fn expired(e: Expired) -> String {
    match e {
        Expired::AgentLost(a) => format!("agent_lost:{a}"),
        Expired::Requeued {
            job_id, agent_id, ..
        } => format!("requeued:{job_id}:{agent_id}"),
        Expired::Dead {
            job_id, agent_id, ..
        } => format!("dead:{job_id}:{agent_id}"),
        Expired::Cancel {
            job_id,
            agent_id,
            attempt,
        } => format!("cancel:{job_id}:{agent_id}:{attempt}"),
        Expired::Unschedulable { job_id, .. } => format!("unschedulable:{job_id}"),
    }
}

async fn run_case(
    client: &redis::Client,
    conn: &ConnectionManager,
    n: u64,
    case: &Case,
    tally: &Tally,
) -> Result<(), TestCaseError> {
    let keys = Keys::new(format!("fleet:{{sm{n}}}"));
    let store = Store::open(client.clone(), keys.clone())
        .await
        .or_fail("connect")?;
    let Lead::Leader(token) = store
        .lead("", "state-machine", Duration::from_secs(600))
        .await
        .or_fail("lead")?
    else {
        return Err(fail("a fresh prefix must have no leader"));
    };
    let mut run = Run {
        store: store.with_token(&token),
        conn: conn.clone(),
        keys,
        model: State::default(),
        memory: Memory::default(),
        now: START_MS,
        batches: Vec::new(),
        job_ids: (0..=case.jobs)
            .map(job_id)
            .chain((0..ADMITTED).map(|k| admitted_job_id(case.jobs, case.jobs + k)))
            .collect(),
        agent_ids: (0..=case.agents).map(agent_id).collect(),
        jobs: case.jobs,
        log: Vec::new(),
        tally: tally.clone(),
    };
    let setup = [
        Op::Enqueue(
            case.setup
                .iter()
                .enumerate()
                .map(|(j, (rank, max))| (j, *rank, *max))
                .collect(),
        ),
        Op::Events(
            (0..case.agents)
                .map(|agent| Ev::Register {
                    agent,
                    incarnation: 0,
                })
                .collect(),
        ),
    ];
    for (i, op) in setup.iter().chain(&case.ops).enumerate() {
        let outcome = async {
            run.step(op).await?;
            let (state, extra) =
                read_state(&mut run.conn, &run.keys, &run.job_ids, &run.agent_ids).await?;
            check_invariants(&state, &extra, &mut run.memory)?;
            prop_assert_eq!(&state, &run.model, "Redis differs from the model");
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            let trace = run.log.join("\n");
            return Err(fail(format!(
                "op #{i} {op:?} at now={}: {e}\nresolved trace:\n{trace}",
                run.now
            )));
        }
    }
    Ok(())
}

#[test]
fn scripts_keep_the_invariants_under_random_operations() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let redis = RedisServer::start(dir.path().join("redis"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = redis::Client::open(redis.url())?;
    let conn = runtime.block_on(ConnectionManager::new(client.clone()))?;
    // PROPTEST_CASES=n runs a longer search.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // Shrinking replays whole sequences; allow it enough tries to get
        // a failure down to a few operations.
        max_shrink_iters: 4096,
        ..Config::default()
    });
    let counter = Cell::new(0u64);
    let tally = Tally::default();
    let outcome = runner.run(&case(), |case| {
        counter.set(counter.get() + 1);
        runtime.block_on(run_case(&client, &conn, counter.get(), &case, &tally))
    });
    match outcome {
        Ok(()) => {
            let tally = tally.0.borrow();
            eprintln!("admissions over {cases} cases: {tally:?}");
            // A full run must reach the lease path and the agent's
            // refusals (each seen dozens of times per CASES cases).
            let seen =
                |outcomes: &[&str]| outcomes.iter().filter_map(|o| tally.get(o)).sum::<u64>();
            if cases >= CASES {
                anyhow::ensure!(seen(&["leased"]) > 0, "no job was leased at admission");
                anyhow::ensure!(
                    seen(&["agent_unavailable", "agent_full", "gpu_busy"]) > 0,
                    "no admission was refused by its agent"
                );
            }
            Ok(())
        }
        Err(TestError::Fail(reason, case)) => {
            anyhow::bail!("{reason}\nminimal failing case: {case:#?}")
        }
        Err(TestError::Abort(reason)) => anyhow::bail!("aborted: {reason}"),
    }
}
