//! The Lua scripts, called directly on a real redis-server: their
//! fencing (a balancer without the current leadership token cannot change
//! anything) and admission (a new job leased at once to the agent the
//! intake chose, only while nothing waits and the agent can take it).

use std::collections::HashMap;
use std::time::Duration;

use fleet_balancer::state::Placement;
use fleet_balancer::state::{
    Assigned, AttemptEnded, Enqueued, EventArgs, EventKind, EventReply, Expired, Lead, Retried,
    StaleReason, Store, StoreError,
};
use fleet_protocol::{JobSpec, JobState, Keys};
use fleet_tests::RedisServer;
use redis::AsyncCommands;
use serde_json::json;

fn job(id: &str) -> anyhow::Result<fleet_protocol::ValidJob> {
    Ok(JobSpec::new("echo", json!({})).validate(id)?)
}

#[tokio::test]
async fn a_balancer_gives_up_only_the_lease_it_holds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let redis = RedisServer::start(dir.path().join("redis"))?;
    let store = Store::connect(&redis.url(), Keys::default()).await?;
    let ttl = Duration::from_secs(600);
    let Lead::Leader(first) = store.lead("", "a", ttl).await? else {
        anyhow::bail!("the first candidate should lead");
    };
    // Another token (an older leadership's) gives up nothing.
    assert!(!store.resign("a:0").await?);
    assert_eq!(
        store.lead("", "b", ttl).await?,
        Lead::Follower(first.clone())
    );
    assert!(store.resign(&first).await?);
    // The next candidate leads at once, with a fresh token.
    let Lead::Leader(second) = store.lead("", "b", ttl).await? else {
        anyhow::bail!("the lease should be free");
    };
    assert_ne!(second, first);
    // The old leader's token can neither renew nor give up the new lease.
    assert_eq!(
        store.lead(&first, "a", ttl).await?,
        Lead::Follower(second.clone())
    );
    assert!(!store.resign(&first).await?);
    Ok(())
}

#[tokio::test]
async fn only_the_current_leader_can_write() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let redis = RedisServer::start(dir.path().join("redis"))?;
    let store = Store::connect(&redis.url(), Keys::default()).await?;
    let ttl = Duration::from_millis(300);

    let Lead::Leader(first) = store.lead("", "a", ttl).await? else {
        anyhow::bail!("the first candidate should lead");
    };
    // A second candidate stands by while the lease is held.
    assert_eq!(
        store.lead("", "b", ttl).await?,
        Lead::Follower(first.clone())
    );
    // The leader renews with its token.
    assert_eq!(
        store.lead(&first, "a", ttl).await?,
        Lead::Leader(first.clone())
    );

    let leader = store.with_token(&first);
    let (outcomes, depth) = leader.enqueue(&[job("j1")?], 1).await?;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(depth, 1);

    // Unrenewed, the lease lapses and b takes over with a new epoch.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let Lead::Leader(second) = store.lead("", "b", ttl).await? else {
        anyhow::bail!("b should lead once a's lease lapsed");
    };
    assert_ne!(first, second);

    // The deposed leader's writes are refused, and change nothing.
    let refused = leader.enqueue(&[job("j2")?], 2).await;
    assert!(matches!(refused, Err(StoreError::NotLeader)), "{refused:?}");
    assert!(store.job("j2").await?.is_none());
    let refused = leader.expire(10_000, ttl, 10, (true, true), ttl).await;
    assert!(matches!(refused, Err(StoreError::NotLeader)), "{refused:?}");
    // A store without any token cannot write either.
    let refused = store.enqueue(&[job("j3")?], 3).await;
    assert!(matches!(refused, Err(StoreError::NotLeader)), "{refused:?}");

    let successor = store.with_token(&second);
    let (_, depth) = successor.enqueue(&[job("j4")?], 4).await?;
    assert_eq!(depth, 2);
    // The old token cannot renew its way back either.
    assert_eq!(
        store.lead(&first, "a", ttl).await?,
        Lead::Follower(second.clone())
    );

    // A renewal that arrives after its own lease lapsed does not quietly
    // start a new leadership under the old token: it is told it lost.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(
        store.lead(&second, "b", ttl).await?,
        Lead::Follower(String::new())
    );
    assert!(matches!(store.lead("", "b", ttl).await?, Lead::Leader(t) if t != second));
    Ok(())
}

// ---------------------------------------------------------------------
// Admission: a new job leased at once to the agent the intake chose
// ---------------------------------------------------------------------

/// The virtual clock of the admission tests, and the deadlines the
/// balancer would give a lease (accept timeout) and a prefetched one.
const NOW: u64 = 1_000_000;
const LEASE_DEADLINE: u64 = NOW + 5_000;
const PREFETCH_DEADLINE: u64 = NOW + 20_000;
const LEASE_TIMEOUT_MS: u64 = 10_000;
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
const CAPS: &str = r#"{"cpus":1,"memory_mb":1,"gpus":[],"kinds":["echo"],"tags":[]}"#;

/// A store that leads on a key prefix of its own in `redis`, so each
/// scenario starts from an empty queue.
async fn leader_on(redis: &RedisServer, name: &str) -> anyhow::Result<Store> {
    let store = Store::connect(&redis.url(), Keys::new(format!("fleet:{{{name}}}"))).await?;
    let Lead::Leader(token) = store.lead("", name, Duration::from_secs(600)).await? else {
        anyhow::bail!("a fresh prefix must have no leader");
    };
    Ok(store.with_token(&token))
}

/// One scenario: a redis-server of its own (stopped, and its directory
/// removed, when this is dropped) and a store leading on it.
struct Scenario {
    store: Store,
    _redis: RedisServer,
    _dir: tempfile::TempDir,
}

impl Scenario {
    async fn start(name: &str) -> anyhow::Result<Scenario> {
        let dir = tempfile::tempdir()?;
        let redis = RedisServer::start(dir.path().join("redis"))?;
        let store = leader_on(&redis, name).await?;
        Ok(Scenario {
            store,
            _redis: redis,
            _dir: dir,
        })
    }
}

/// Registers `agent` (incarnation 1) as the event consumer does.
async fn register(store: &Store, agent: &str, slots: u32, prefetch: u32) -> anyhow::Result<()> {
    let mut args = EventArgs::default();
    args.push(
        EventKind::Register,
        vec![
            agent.into(),
            "inc-1".into(),
            slots.to_string(),
            prefetch.to_string(),
            CAPS.into(),
        ],
    );
    let replies = store
        .apply_events(&args, NOW, 1.5, HEARTBEAT_TIMEOUT)
        .await?;
    anyhow::ensure!(
        matches!(replies.as_slice(), [EventReply::Registered { .. }]),
        "register {agent}: {replies:?}"
    );
    Ok(())
}

/// One agent event (`started`, `completed`, …); returns its reply.
async fn event(store: &Store, kind: &str, fields: &[&str], now: u64) -> anyhow::Result<EventReply> {
    let kind = EventKind::parse(kind).ok_or_else(|| anyhow::anyhow!("no event kind {kind}"))?;
    let mut args = EventArgs::default();
    args.push(kind, fields.iter().map(|f| f.to_string()).collect());
    let mut replies = store
        .apply_events(&args, now, 1.5, HEARTBEAT_TIMEOUT)
        .await?;
    replies.pop().ok_or_else(|| anyhow::anyhow!("no reply"))
}

fn placement(agent: &str, gpus: &[u32]) -> Placement {
    Placement {
        agent: agent.into(),
        gpus: gpus.to_vec(),
        timeout_ms: LEASE_TIMEOUT_MS,
    }
}

/// Admits one job, placed or not, at `NOW`; returns what became of it.
async fn admit(store: &Store, id: &str, to: Option<Placement>) -> anyhow::Result<Enqueued> {
    let (outcomes, _) = store
        .admit(&[job(id)?], &[to], NOW, (LEASE_DEADLINE, PREFETCH_DEADLINE))
        .await?;
    match outcomes.as_slice() {
        [outcome] => Ok(*outcome),
        _ => anyhow::bail!("one outcome expected: {outcomes:?}"),
    }
}

/// Where a job is: its hash and its place in each index.
#[derive(Debug, PartialEq)]
struct Whereabouts {
    hash: HashMap<String, String>,
    /// Score in the queue.
    queued: Option<f64>,
    /// Deadline in the lease index.
    lease: Option<f64>,
    /// The agents whose job sets hold it.
    held_by: Vec<String>,
}

impl Whereabouts {
    fn field(&self, f: &str) -> &str {
        self.hash.get(f).map_or("", String::as_str)
    }

    /// Queued as a new job: waiting in the queue, with no lease anywhere.
    fn assert_queued_untouched(&self, id: &str) {
        assert_eq!(self.field("state"), "queued", "{id}: {self:?}");
        assert_eq!(self.field("attempt"), "0", "{id}: {self:?}");
        assert_eq!(self.field("agent"), "", "{id}: {self:?}");
        assert!(self.queued.is_some(), "{id} not in the queue: {self:?}");
        assert_eq!(self.lease, None, "{id}: {self:?}");
        assert!(self.held_by.is_empty(), "{id}: {self:?}");
    }
}

async fn whereabouts(store: &Store, id: &str, agents: &[&str]) -> anyhow::Result<Whereabouts> {
    let keys = store.keys();
    let mut pipe = redis::pipe();
    pipe.hgetall(keys.job(id))
        .zscore(keys.queue(), id)
        .zscore(keys.leases(), id);
    for agent in agents {
        pipe.sismember(keys.agent_jobs(agent), id);
    }
    let (hash, queued, lease, rest): (_, _, _, Vec<bool>) = {
        let values: Vec<redis::Value> = pipe.query_async(&mut store.conn()).await?;
        let mut it = values.into_iter();
        let mut next = || it.next().ok_or_else(|| anyhow::anyhow!("short reply"));
        let hash: HashMap<String, String> = redis::from_redis_value(next()?)?;
        let queued: Option<f64> = redis::from_redis_value(next()?)?;
        let lease: Option<f64> = redis::from_redis_value(next()?)?;
        let mut rest = Vec::new();
        for _ in agents {
            rest.push(redis::from_redis_value(next()?)?);
        }
        (hash, queued, lease, rest)
    };
    Ok(Whereabouts {
        hash,
        queued,
        lease,
        held_by: agents
            .iter()
            .zip(rest)
            .filter(|(_, held)| *held)
            .map(|(a, _)| a.to_string())
            .collect(),
    })
}

async fn counter(store: &Store, field: &str) -> anyhow::Result<i64> {
    Ok(store
        .counters()
        .await?
        .counters
        .get(field)
        .copied()
        .unwrap_or(0))
}

#[tokio::test]
async fn a_placed_job_is_leased_at_admission_while_the_queue_is_empty() -> anyhow::Result<()> {
    let scenario = Scenario::start("leased").await?;
    let store = &scenario.store;
    register(store, "a", 2, 0).await?;

    assert_eq!(
        admit(store, "j1", Some(placement("a", &[1]))).await?,
        Enqueued::Leased
    );
    let w = whereabouts(store, "j1", &["a"]).await?;
    assert_eq!(w.field("state"), "assigned", "{w:?}");
    assert_eq!(w.field("attempt"), "1", "{w:?}");
    assert_eq!(w.field("agent"), "a", "{w:?}");
    assert_eq!(w.field("gpus"), "1", "{w:?}");
    assert_eq!(w.field("lease_timeout_ms"), LEASE_TIMEOUT_MS.to_string());
    assert_eq!(w.field("assigned_at"), NOW.to_string());
    assert_eq!(w.field("submitted_at"), NOW.to_string());
    assert_eq!(w.field("history"), "[]");
    assert_eq!(w.queued, None, "a leased job is not queued");
    // Within the agent's slots: the ordinary lease deadline.
    assert_eq!(w.lease, Some(LEASE_DEADLINE as f64));
    assert_eq!(w.held_by, vec!["a".to_string()]);
    let gpu: Option<String> = store.conn().hget(store.keys().agent_gpus("a"), "1").await?;
    assert_eq!(gpu.as_deref(), Some("j1"), "the GPU is held for the job");

    // The second of two slots: still an ordinary lease.
    assert_eq!(
        admit(store, "j2", Some(placement("a", &[]))).await?,
        Enqueued::Leased
    );
    let w = whereabouts(store, "j2", &["a"]).await?;
    assert_eq!(w.lease, Some(LEASE_DEADLINE as f64));

    let counters = store.counters().await?;
    assert_eq!((counters.queued, counters.leased), (0, 2));
    for (field, n) in [("submitted", 2), ("assigned", 2), ("leased_at_intake", 2)] {
        assert_eq!(counter(store, field).await?, n, "counter {field}");
    }
    Ok(())
}

#[tokio::test]
async fn a_lease_beyond_the_slots_at_admission_gets_the_prefetch_deadline() -> anyhow::Result<()> {
    let scenario = Scenario::start("prefetch").await?;
    let store = &scenario.store;
    register(store, "a", 1, 1).await?;

    // One batch: the first fills the slot, the second is prefetched.
    let (outcomes, depth) = store
        .admit(
            &[job("j1")?, job("j2")?],
            &[Some(placement("a", &[])), Some(placement("a", &[]))],
            NOW,
            (LEASE_DEADLINE, PREFETCH_DEADLINE),
        )
        .await?;
    assert_eq!(outcomes, vec![Enqueued::Leased, Enqueued::Leased]);
    assert_eq!(depth, 0);
    let first = whereabouts(store, "j1", &["a"]).await?;
    let second = whereabouts(store, "j2", &["a"]).await?;
    assert_eq!(first.lease, Some(LEASE_DEADLINE as f64));
    assert_eq!(second.lease, Some(PREFETCH_DEADLINE as f64));
    assert_eq!(second.field("state"), "assigned");
    assert_eq!(second.field("attempt"), "1");
    Ok(())
}

#[tokio::test]
async fn a_placed_job_never_overtakes_a_waiting_one() -> anyhow::Result<()> {
    let scenario = Scenario::start("overtake").await?;
    let store = &scenario.store;
    register(store, "a", 4, 0).await?;

    // A job waits (the intake had no agent for it) ...
    assert_eq!(admit(store, "waiting", None).await?, Enqueued::Queued);
    // ... so a new one is queued behind it, though its agent is free.
    assert_eq!(
        admit(store, "newcomer", Some(placement("a", &[]))).await?,
        Enqueued::Queued
    );
    whereabouts(store, "newcomer", &["a"])
        .await?
        .assert_queued_untouched("newcomer");
    let order: Vec<String> = store.peek(10, 0).await?.into_iter().map(|j| j.id).collect();
    assert_eq!(order, vec!["waiting".to_string(), "newcomer".to_string()]);
    let counters = store.counters().await?;
    assert_eq!((counters.queued, counters.leased), (2, 0));
    assert_eq!(counter(store, "leased_at_intake").await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_placement_the_agent_cannot_take_queues_the_job() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let redis = RedisServer::start(dir.path().join("redis"))?;

    // Each scenario on a prefix of its own, so its queue starts empty:
    // a refusal must be the agent's, never the backlog's.
    let unknown = leader_on(&redis, "unknown").await?;
    register(&unknown, "a", 2, 0).await?;

    let draining = leader_on(&redis, "draining").await?;
    register(&draining, "a", 2, 0).await?;
    assert!(draining.drain("a", true).await?);

    // Shutting down: its heartbeat said so.
    let stopping = leader_on(&redis, "stopping").await?;
    register(&stopping, "a", 2, 0).await?;
    let reply = event(&stopping, "heartbeat", &["a", "inc-1", "1"], NOW).await?;
    assert_eq!(reply, EventReply::Beat { dropped: vec![] });

    // Slots 1 + prefetch 1, both taken at admission.
    let full = leader_on(&redis, "full").await?;
    register(&full, "a", 1, 1).await?;
    for id in ["held1", "held2"] {
        assert_eq!(
            admit(&full, id, Some(placement("a", &[]))).await?,
            Enqueued::Leased
        );
    }

    // GPU 0 held by an earlier job; a slot is still free.
    let gpu = leader_on(&redis, "gpu").await?;
    register(&gpu, "a", 3, 0).await?;
    assert_eq!(
        admit(&gpu, "held", Some(placement("a", &[0]))).await?,
        Enqueued::Leased
    );

    for (store, to, why) in [
        (&unknown, placement("ghost", &[]), "unknown agent"),
        (&draining, placement("a", &[]), "draining agent"),
        (&stopping, placement("a", &[]), "stopping agent"),
        (&full, placement("a", &[]), "full agent"),
        (&gpu, placement("a", &[1, 0]), "busy GPU"),
    ] {
        assert_eq!(
            store.queue_depth().await?,
            0,
            "{why}: the queue starts empty"
        );
        let leases_before = store.counters().await?.leased;
        let outcome = admit(store, "new", Some(to)).await?;
        assert_eq!(outcome, Enqueued::Queued, "{why}");
        whereabouts(store, "new", &["a", "ghost"])
            .await?
            .assert_queued_untouched(why);
        let counters = store.counters().await?;
        assert_eq!(counters.leased, leases_before, "{why}: no lease taken");
        assert_eq!(counters.queued, 1, "{why}");
        // Not lost: the scheduler sees it.
        let queued: Vec<String> = store.peek(10, 0).await?.into_iter().map(|j| j.id).collect();
        assert_eq!(queued, vec!["new".to_string()], "{why}");
        let ghost: i64 = store
            .conn()
            .exists(store.keys().agent_jobs("ghost"))
            .await?;
        assert_eq!(ghost, 0, "{why}: nothing leased to an unknown agent");
    }
    // The GPU the refused job asked for but did not get stays free.
    let gpu1: Option<String> = gpu.conn().hget(gpu.keys().agent_gpus("a"), "1").await?;
    assert_eq!(gpu1, None);
    Ok(())
}

#[tokio::test]
async fn an_agent_stops_being_stopping_when_it_registers_again() -> anyhow::Result<()> {
    let s = Scenario::start("restarted").await?;
    register(&s.store, "a", 2, 0).await?;
    let agent = s.store.keys().agent("a");
    let stopping = || async {
        let v: Option<String> = s.store.conn().hget(&agent, "stopping").await?;
        anyhow::Ok(v)
    };
    // An ordinary heartbeat leaves the agent as it was.
    event(&s.store, "heartbeat", &["a", "inc-1", "0"], NOW).await?;
    assert_eq!(stopping().await?, None);
    event(&s.store, "heartbeat", &["a", "inc-1", "1"], NOW).await?;
    assert_eq!(stopping().await?.as_deref(), Some("1"));

    // Its supervisor started it again: a new process, not stopping.
    let caps = CAPS.to_string();
    let reply = event(&s.store, "register", &["a", "inc-2", "2", "0", &caps], NOW).await?;
    assert!(matches!(reply, EventReply::Registered { .. }), "{reply:?}");
    assert_eq!(stopping().await?, None);
    assert_eq!(
        admit(&s.store, "one", Some(placement("a", &[]))).await?,
        Enqueued::Leased
    );
    Ok(())
}

#[tokio::test]
async fn a_duplicate_admitted_with_a_placement_leaves_the_first_job_untouched() -> anyhow::Result<()>
{
    let scenario = Scenario::start("duplicate").await?;
    let store = &scenario.store;
    register(store, "a", 2, 0).await?;
    register(store, "b", 2, 0).await?;

    // The same id twice in one batch: the first is leased, the second is
    // a duplicate and does not move it.
    let (outcomes, _) = store
        .admit(
            &[job("j1")?, job("j1")?],
            &[Some(placement("a", &[0])), Some(placement("b", &[0]))],
            NOW,
            (LEASE_DEADLINE, PREFETCH_DEADLINE),
        )
        .await?;
    assert_eq!(outcomes, vec![Enqueued::Leased, Enqueued::Duplicate]);
    let first = whereabouts(store, "j1", &["a", "b"]).await?;
    assert_eq!(first.field("agent"), "a");
    assert_eq!(first.held_by, vec!["a".to_string()]);

    // Redelivered later (the intake crashed before its ack), placed
    // elsewhere: nothing changes, not even the clock fields.
    let later = store
        .admit(
            &[job("j1")?],
            &[Some(placement("b", &[1]))],
            NOW + 1_000,
            (LEASE_DEADLINE + 1_000, PREFETCH_DEADLINE + 1_000),
        )
        .await?;
    assert_eq!(later, (vec![Enqueued::Duplicate], 0));
    assert_eq!(whereabouts(store, "j1", &["a", "b"]).await?, first);
    let b_gpus: HashMap<String, String> =
        store.conn().hgetall(store.keys().agent_gpus("b")).await?;
    assert!(b_gpus.is_empty(), "b holds {b_gpus:?}");

    // Once it succeeded, a redelivery does not revive it either.
    let done = event(store, "completed", &["a", "j1", "1", "{}", "5"], NOW).await?;
    assert!(matches!(done, EventReply::Accepted(_)), "{done:?}");
    let finished = whereabouts(store, "j1", &["a", "b"]).await?;
    assert_eq!(
        admit(store, "j1", Some(placement("b", &[]))).await?,
        Enqueued::Duplicate
    );
    assert_eq!(whereabouts(store, "j1", &["a", "b"]).await?, finished);
    assert_eq!(finished.field("state"), "succeeded");
    assert_eq!(counter(store, "submitted").await?, 1);
    assert_eq!(counter(store, "duplicates").await?, 3);
    Ok(())
}

#[tokio::test]
async fn a_lease_taken_at_admission_completes_through_the_events() -> anyhow::Result<()> {
    let scenario = Scenario::start("complete").await?;
    let store = &scenario.store;
    register(store, "a", 1, 0).await?;
    assert_eq!(
        admit(store, "j1", Some(placement("a", &[0]))).await?,
        Enqueued::Leased
    );

    assert_eq!(
        event(store, "started", &["a", "j1", "1"], NOW + 10).await?,
        EventReply::Started
    );
    let running = whereabouts(store, "j1", &["a"]).await?;
    assert_eq!(running.field("state"), "running");
    // The lease now lasts for its own timeout times the buffer.
    assert_eq!(
        running.lease,
        Some((NOW + 10 + LEASE_TIMEOUT_MS * 3 / 2) as f64)
    );

    let reply = event(
        store,
        "completed",
        &["a", "j1", "1", r#"{"ok":true}"#, "7"],
        NOW + 20,
    )
    .await?;
    assert!(matches!(reply, EventReply::Accepted(_)), "{reply:?}");
    let done = whereabouts(store, "j1", &["a"]).await?;
    assert_eq!(done.field("state"), "succeeded");
    assert_eq!(done.field("done_by"), "a/1");
    assert_eq!(done.field("result"), r#"{"ok":true}"#);
    assert_eq!((done.queued, done.lease), (None, None));
    assert!(done.held_by.is_empty());
    let gpus: HashMap<String, String> = store.conn().hgetall(store.keys().agent_gpus("a")).await?;
    assert!(gpus.is_empty(), "the GPU is freed: {gpus:?}");
    assert_eq!(counter(store, "succeeded").await?, 1);

    // The freed slot takes the next job at admission.
    assert_eq!(
        admit(store, "j2", Some(placement("a", &[0]))).await?,
        Enqueued::Leased
    );
    Ok(())
}

#[tokio::test]
async fn a_lease_taken_at_admission_expires_and_requeues_like_any_other() -> anyhow::Result<()> {
    let scenario = Scenario::start("expire").await?;
    let store = &scenario.store;
    register(store, "a", 1, 0).await?;
    register(store, "b", 1, 0).await?;
    assert_eq!(
        admit(store, "j1", Some(placement("a", &[0]))).await?,
        Enqueued::Leased
    );

    // Not due yet.
    let swept = store
        .expire(
            LEASE_DEADLINE - 1,
            HEARTBEAT_TIMEOUT,
            100,
            (false, true),
            HEARTBEAT_TIMEOUT,
        )
        .await?;
    assert!(swept.is_empty(), "{swept:?}");
    // The agent never confirmed the start: back to the queue.
    let swept = store
        .expire(
            LEASE_DEADLINE,
            HEARTBEAT_TIMEOUT,
            100,
            (false, true),
            HEARTBEAT_TIMEOUT,
        )
        .await?;
    assert_eq!(
        swept,
        vec![Expired::Requeued {
            job_id: "j1".into(),
            agent_id: "a".into(),
            error: "not started within the accept timeout".into(),
        }]
    );
    let w = whereabouts(store, "j1", &["a", "b"]).await?;
    assert_eq!(w.field("state"), "queued");
    assert_eq!(w.field("attempt"), "1");
    assert_eq!(w.field("last_agent"), "a");
    assert!(w.queued.is_some() && w.lease.is_none() && w.held_by.is_empty());
    let history: serde_json::Value = serde_json::from_str(w.field("history"))?;
    assert_eq!(history[0]["attempt"], 1);
    assert_eq!(history[0]["outcome"], "failed");

    // The scheduler leases it again, as attempt 2.
    let to = placement("b", &[0]);
    let assigned = store
        .assign(
            &[("j1", &to)],
            LEASE_DEADLINE,
            (LEASE_DEADLINE + 5_000, LEASE_DEADLINE + 20_000),
        )
        .await?;
    assert_eq!(assigned, vec![Assigned::Leased(2)]);
    // The first attempt, if it now reports, is refused as stale.
    let late = event(store, "started", &["a", "j1", "1"], LEASE_DEADLINE + 1).await?;
    assert_eq!(late, EventReply::Stale(StaleReason::NotLeaseHolder));
    Ok(())
}

/// The remaining time to live of a job's hash, in ms (-1: none, -2: gone).
async fn ttl_ms(store: &Store, id: &str) -> anyhow::Result<i64> {
    Ok(store.conn().pttl(store.keys().job(id)).await?)
}

#[tokio::test]
async fn finished_jobs_expire_after_the_retention_and_a_retried_one_is_kept() -> anyhow::Result<()>
{
    let scenario = Scenario::start("retain").await?;
    let store = &scenario.store;
    register(store, "a", 4, 0).await?;
    let retain = Duration::from_secs(60);
    assert_eq!(store.retain(NOW, Some(retain)).await?, 0);
    let config: HashMap<String, String> = store.conn().hgetall(store.keys().config()).await?;
    assert_eq!(
        config.get("retain_finished_ms").map(String::as_str),
        Some("60000")
    );
    let due = |ttl: i64| ttl > 0 && ttl <= 60_000;

    // Succeeded.
    admit(store, "ok", Some(placement("a", &[]))).await?;
    let reply = event(store, "completed", &["a", "ok", "1", "{}", "3"], NOW + 5).await?;
    assert!(matches!(reply, EventReply::Accepted(_)), "{reply:?}");
    assert!(due(ttl_ms(store, "ok").await?));

    // Dead-lettered on its only attempt.
    let (outcomes, _) = store
        .admit(
            &[JobSpec {
                max_attempts: Some(1),
                ..JobSpec::new("echo", json!({}))
            }
            .validate("dies")?],
            &[Some(placement("a", &[]))],
            NOW,
            (LEASE_DEADLINE, PREFETCH_DEADLINE),
        )
        .await?;
    assert_eq!(outcomes, [Enqueued::Leased]);
    let reply = event(store, "failed", &["a", "dies", "1", "boom", "2"], NOW + 6).await?;
    assert!(
        matches!(reply, EventReply::Failed(AttemptEnded::Dead { .. })),
        "{reply:?}"
    );
    assert!(due(ttl_ms(store, "dies").await?));

    // Cancelled while queued.
    admit(store, "stop", None).await?;
    store.cancel("stop", NOW + 7).await?;
    assert!(due(ttl_ms(store, "stop").await?));

    // A job still queued or running is never due.
    admit(store, "waits", None).await?;
    assert_eq!(ttl_ms(store, "waits").await?, -1);

    // Retried, the dead job is queued again and kept.
    assert_eq!(store.retry("dies", NOW + 8).await?, Retried::Queued);
    assert_eq!(ttl_ms(store, "dies").await?, -1);

    // A late event about a job whose hash is gone recreates nothing.
    let reply = event(store, "failed", &["a", "gone", "1", "x", "1"], NOW + 9).await?;
    assert_eq!(reply, EventReply::UnknownJob);
    assert!(store.job("gone").await?.is_none());

    // Dead letters older than the retention leave their index.
    store
        .conn()
        .zadd::<_, _, _, ()>(store.keys().dead(), "old", NOW)
        .await?;
    store
        .conn()
        .zadd::<_, _, _, ()>(store.keys().dead(), "recent", NOW + 50_000)
        .await?;
    let now = NOW + 60_000 + 1;
    assert_eq!(store.retain(now, Some(retain)).await?, 1);
    let left: Vec<String> = store.conn().zrange(store.keys().dead(), 0, -1).await?;
    assert_eq!(left, ["recent"]);

    // Without a retention, finished jobs are kept.
    assert_eq!(store.retain(now, None).await?, 0);
    admit(store, "kept", None).await?;
    store.cancel("kept", now).await?;
    assert_eq!(ttl_ms(store, "kept").await?, -1);
    Ok(())
}

#[tokio::test]
async fn a_job_hash_past_its_retention_is_gone_and_its_id_free_again() -> anyhow::Result<()> {
    let scenario = Scenario::start("expiry").await?;
    let store = &scenario.store;
    store.retain(NOW, Some(Duration::from_millis(50))).await?;
    admit(store, "brief", None).await?;
    store.cancel("brief", NOW).await?;
    fleet_tests::wait_until(Duration::from_secs(10), "the job hash expired", || async {
        Ok(store.job("brief").await?.is_none())
    })
    .await?;
    // The same id is a new job now, not a duplicate.
    assert_eq!(admit(store, "brief", None).await?, Enqueued::Queued);
    Ok(())
}

#[tokio::test]
async fn agents_dead_past_the_limit_and_holding_nothing_are_forgotten() -> anyhow::Result<()> {
    let scenario = Scenario::start("forget").await?;
    let store = &scenario.store;
    for agent in ["idle", "holding"] {
        register(store, agent, 2, 0).await?;
    }
    // Both fall silent and are declared dead.
    let died = NOW + HEARTBEAT_TIMEOUT.as_millis() as u64 + 1;
    let lost = store
        .expire(
            died,
            HEARTBEAT_TIMEOUT,
            10,
            (true, false),
            HEARTBEAT_TIMEOUT,
        )
        .await?;
    assert_eq!(lost.len(), 2, "{lost:?}");
    // A job still recorded against one (which expire never leaves, but a
    // forgotten agent must never take one with it).
    store
        .conn()
        .sadd::<_, _, ()>(store.keys().agent_jobs("holding"), "j")
        .await?;
    register(store, "alive", 2, 0).await?;
    let after = Duration::from_secs(3600);
    let limit = after.as_millis() as u64;

    // Not dead long enough yet.
    assert!(store
        .forget_agents(died + limit - 1, after, 10)
        .await?
        .is_empty());
    // Past the limit: the idle one goes, with every record of it.
    assert_eq!(
        store.forget_agents(died + limit + 1, after, 10).await?,
        ["idle"]
    );
    let agents: Vec<String> = store.conn().smembers(store.keys().agents()).await?;
    let mut agents = agents;
    agents.sort();
    assert_eq!(agents, ["alive", "holding"]);
    let keys = store.keys();
    for key in [
        keys.agent("idle"),
        keys.agent_perf("idle"),
        keys.agent_gpus("idle"),
    ] {
        let exists: bool = store.conn().exists(&key).await?;
        assert!(!exists, "{key} is left");
    }
    assert_eq!(counter(store, "agents_forgotten").await?, 1);
    // A forgotten agent that comes back registers as new.
    register(store, "idle", 2, 0).await?;
    assert!(store
        .load_agents()
        .await?
        .iter()
        .any(|a| a.id == "idle" && a.alive));
    Ok(())
}

#[tokio::test]
async fn listing_jobs_without_an_index_reads_the_keyspace_in_chunks() -> anyhow::Result<()> {
    let scenario = Scenario::start("listing").await?;
    let store = &scenario.store;
    let jobs = (0..1_234)
        .map(|i| job(&format!("j{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    store.enqueue(&jobs, NOW).await?;

    // More than two chunks of 500, then the rest: every job once.
    let mut all = store.job_ids(None, 10_000).await?;
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1_234);
    // Stops at the limit, across a chunk boundary.
    assert_eq!(store.job_ids(None, 777).await?.len(), 777);
    // A state none has: the whole keyspace read, nothing found.
    assert!(store
        .job_ids(Some(JobState::Succeeded), 10)
        .await?
        .is_empty());
    Ok(())
}
