//! What one round trip of each of the balancer's Lua scripts costs, the
//! way the balancer makes it: through `fleet_balancer::state::Store` (one
//! multiplexed connection, a tokio runtime) to one real redis-server
//! started by `fleet_tests::RedisServer` as the tests start it — loopback,
//! append-only file on (`appendfsync everysec`, Redis's default), no RDB
//! snapshots. No mocks: the figures include the network stack, Redis's
//! command processing and the AOF writes.
//!
//! Measured: `enqueue` of 1 job and of a batch of 100, queued, and again
//! each leased in the same call to the agent it was placed on (the
//! intake's path while the queue is empty); `peek` of a
//! 100-job page; `assign` of 1 job and of a batch of 64 (to one agent with
//! slots to spare); `events.lua` with `started` + `completed` for 100
//! leased jobs (200 events, one call); a heartbeat batch for 100 agents
//! holding 4 running jobs each; `expire` when nothing is due (over that
//! same fleet). A batched bench reports elements per second, one element
//! being a job (or an agent, for heartbeats).
//!
//! Each criterion sample starts from an empty database (FLUSHDB, then a
//! fresh leadership), so Redis does not grow from sample to sample; what a
//! script consumes (queued jobs for `assign`, leases for the events) is set
//! up before the clock starts, and only the calls themselves are timed
//! (`iter_custom`).
//!
//! ```sh
//! cargo bench -p fleet-tests --bench scripts
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fleet_balancer::state::Placement;
use fleet_balancer::state::{Assigned, Enqueued, EventArgs, EventKind, EventReply, Lead, Store};
use fleet_protocol::{JobSpec, Keys, ValidJob};
use fleet_tests::RedisServer;
use redis::aio::ConnectionManager;
use serde_json::json;

/// The balancer's settings the scripts take as arguments.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
const UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(300);
const BUFFER: f64 = 1.2;
const LEASE_TIMEOUT_MS: u64 = 60_000;
const ACCEPT_MS: u64 = 5_000;
/// The sweeper's per-call limit.
const EXPIRE_LIMIT: usize = 1_000;
/// Setup calls carry at most this many jobs.
const SETUP_BATCH: usize = 500;
const CAPS: &str = r#"{"cpus":1,"memory_mb":1,"gpus":[],"kinds":["sleep"],"tags":[]}"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The Redis server, the runtime, and the first error a sample met (a
/// sample cannot return one to criterion: it is reported after the bench).
struct Bench {
    runtime: tokio::runtime::Runtime,
    conn: ConnectionManager,
    store: Store,
    failure: RefCell<Option<anyhow::Error>>,
    _redis: RedisServer,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn start() -> anyhow::Result<Bench> {
        let dir = tempfile::Builder::new()
            .prefix("fleet-bench-scripts-")
            .tempdir()?;
        let redis = RedisServer::start(dir.path().join("redis"))?;
        // One thread: the balancer's calls are I/O-bound, and a second
        // thread would only add wake-up latency to every round trip.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (conn, store) = runtime.block_on(async {
            let client = redis::Client::open(redis.url())?;
            let conn = ConnectionManager::new(client).await?;
            let store = Store::connect(&redis.url(), Keys::default()).await?;
            anyhow::Ok((conn, store))
        })?;
        Ok(Bench {
            runtime,
            conn,
            store,
            failure: RefCell::new(None),
            _redis: redis,
            _dir: dir,
        })
    }

    /// One criterion sample of `iters` iterations: an empty database and
    /// a fresh leadership, then `run`, which sets up what it needs and
    /// returns the time its timed calls took.
    fn sample<F, Fut>(&self, iters: u64, run: F) -> Duration
    where
        F: FnOnce(Store, u64) -> Fut,
        Fut: Future<Output = anyhow::Result<Duration>>,
    {
        if self.failure.borrow().is_some() {
            return Duration::from_nanos(1);
        }
        let outcome = self.runtime.block_on(async {
            let _: () = redis::cmd("FLUSHDB")
                .query_async(&mut self.conn.clone())
                .await?;
            let Lead::Leader(token) = self
                .store
                .lead("", "bench", Duration::from_secs(3600))
                .await?
            else {
                anyhow::bail!("an empty database must have no leader");
            };
            run(self.store.with_token(&token), iters).await
        });
        match outcome {
            Ok(elapsed) => elapsed,
            Err(e) => {
                *self.failure.borrow_mut() = Some(e);
                Duration::from_nanos(1)
            }
        }
    }

    /// Fails the bench run if a sample failed.
    fn check(&self, what: &str) {
        if let Some(e) = self.failure.borrow_mut().take() {
            eprintln!("bench {what} failed: {e:#}");
            std::process::exit(1);
        }
    }
}

/// `n` jobs with ids `<prefix>-0` …, validated (as intake does) before the
/// clock starts.
fn jobs(prefix: &str, n: usize) -> anyhow::Result<Vec<ValidJob>> {
    let template = JobSpec::new("sleep", json!({ "ms": 0 })).validate("template")?;
    Ok((0..n)
        .map(|i| ValidJob {
            id: format!("{prefix}-{i}"),
            ..template.clone()
        })
        .collect())
}

/// Enqueues `n` jobs; returns their ids in queue order.
async fn enqueue(store: &Store, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let jobs = jobs(prefix, n)?;
    for chunk in jobs.chunks(SETUP_BATCH) {
        let (outcomes, _) = store.enqueue(chunk, now_ms()).await?;
        anyhow::ensure!(outcomes.iter().all(|o| *o == Enqueued::Queued));
    }
    Ok(jobs.into_iter().map(|j| j.id).collect())
}

/// Registers agents with `slots` slots each, as the event consumer does.
async fn register(store: &Store, agents: &[String], slots: u32) -> anyhow::Result<()> {
    let mut args = EventArgs::default();
    for agent in agents {
        args.push(
            EventKind::Register,
            vec![
                agent.clone(),
                "incarnation-1".into(),
                slots.to_string(),
                "0".into(),
                CAPS.into(),
            ],
        );
    }
    let replies = store
        .apply_events(&args, now_ms(), BUFFER, HEARTBEAT_TIMEOUT)
        .await?;
    anyhow::ensure!(replies
        .iter()
        .all(|r| matches!(r, EventReply::Registered { .. })));
    Ok(())
}

fn placement(agent: &str) -> Placement {
    Placement {
        agent: agent.to_string(),
        gpus: Vec::new(),
        timeout_ms: LEASE_TIMEOUT_MS,
    }
}

/// One assign call; fails unless every job was leased.
async fn assign(store: &Store, ids: &[String], to: &Placement) -> anyhow::Result<()> {
    let placements: Vec<(&str, &Placement)> = ids.iter().map(|id| (id.as_str(), to)).collect();
    let now = now_ms();
    let outcomes = store
        .assign(&placements, now, (now + ACCEPT_MS, now + ACCEPT_MS))
        .await?;
    anyhow::ensure!(
        outcomes.iter().all(|o| matches!(o, Assigned::Leased(_))),
        "assign refused: {outcomes:?}"
    );
    Ok(())
}

/// One events call; fails unless every event got one of `wanted`.
async fn events(store: &Store, args: &EventArgs, wanted: &[&str]) -> anyhow::Result<()> {
    let replies = store
        .apply_events(args, now_ms(), BUFFER, HEARTBEAT_TIMEOUT)
        .await?;
    for r in &replies {
        anyhow::ensure!(wanted.contains(&r.status()), "event reply {r:?}");
    }
    Ok(())
}

/// `started` then `completed` for each job (attempt 1, on `agent`).
fn start_and_complete(agent: &str, ids: &[String]) -> EventArgs {
    let mut args = EventArgs::default();
    for id in ids {
        args.push(
            EventKind::Started,
            vec![agent.into(), id.clone(), "1".into()],
        );
    }
    for id in ids {
        args.push(
            EventKind::Completed,
            vec![
                agent.into(),
                id.clone(),
                "1".into(),
                r#"{"ok":true}"#.into(),
                "3".into(),
            ],
        );
    }
    args
}

/// A steady fleet: `agents` agents with `per_agent` running jobs each.
/// Returns the heartbeat batch that fleet sends (each agent listing its
/// jobs).
async fn steady_fleet(store: &Store, agents: usize, per_agent: usize) -> anyhow::Result<EventArgs> {
    let ids: Vec<String> = (0..agents).map(|a| format!("agent-{a}")).collect();
    register(store, &ids, per_agent as u32).await?;
    let jobs = enqueue(store, "steady", agents * per_agent).await?;
    let mut heartbeats = EventArgs::default();
    for (agent, held) in ids.iter().zip(jobs.chunks(per_agent)) {
        assign(store, held, &placement(agent)).await?;
        let mut started = EventArgs::default();
        for id in held {
            started.push(
                EventKind::Started,
                vec![agent.clone(), id.clone(), "1".into()],
            );
        }
        events(store, &started, &["ok"]).await?;
        let mut fields = vec![agent.clone(), "incarnation-1".into(), "0".into()];
        for id in held {
            fields.push(id.clone());
            fields.push("1".into());
        }
        heartbeats.push(EventKind::Heartbeat, fields);
    }
    Ok(heartbeats)
}

/// Times `call` once per item of `inputs`, setup excluded.
async fn timed<T, F, Fut>(inputs: Vec<T>, mut call: F) -> anyhow::Result<Duration>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut total = Duration::ZERO;
    for input in inputs {
        let began = Instant::now();
        call(input).await?;
        total += began.elapsed();
    }
    Ok(total)
}

fn scripts(c: &mut Criterion) {
    let bench = match Bench::start() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot start redis-server for the bench: {e:#}");
            std::process::exit(1);
        }
    };
    let mut group = c.benchmark_group("scripts");

    for batch in [1usize, 100] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("enqueue", batch), |b| {
            b.iter_custom(|iters| {
                bench.sample(iters, |store, iters| async move {
                    let all = jobs("e", iters as usize * batch)?;
                    let batches: Vec<Vec<ValidJob>> =
                        all.chunks(batch).map(<[ValidJob]>::to_vec).collect();
                    timed(batches, |jobs| {
                        let store = &store;
                        async move {
                            let (outcomes, _) = store.enqueue(&jobs, now_ms()).await?;
                            anyhow::ensure!(outcomes.iter().all(|o| *o == Enqueued::Queued));
                            Ok(())
                        }
                    })
                    .await
                })
            })
        });
        bench.check("enqueue");
    }

    // The intake's path on an idle fleet: each job admitted and leased to
    // the agent it was placed on, in the one call.
    for batch in [1usize, 100] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("enqueue_leased", batch), |b| {
            b.iter_custom(|iters| {
                bench.sample(iters, |store, iters| async move {
                    let n = iters as usize * batch;
                    register(&store, &["agent-0".to_string()], n as u32).await?;
                    let to = placement("agent-0");
                    let all = jobs("l", n)?;
                    let batches: Vec<(Vec<ValidJob>, Vec<Option<Placement>>)> = all
                        .chunks(batch)
                        .map(|jobs| (jobs.to_vec(), vec![Some(to.clone()); jobs.len()]))
                        .collect();
                    timed(batches, |(jobs, placements)| {
                        let store = &store;
                        async move {
                            let now = now_ms();
                            let deadlines = (now + ACCEPT_MS, now + ACCEPT_MS);
                            let (outcomes, _) =
                                store.admit(&jobs, &placements, now, deadlines).await?;
                            anyhow::ensure!(
                                outcomes.iter().all(|o| *o == Enqueued::Leased),
                                "admit: {outcomes:?}"
                            );
                            Ok(())
                        }
                    })
                    .await
                })
            })
        });
        bench.check("enqueue_leased");
    }

    group.throughput(Throughput::Elements(100));
    group.bench_function(BenchmarkId::new("peek", 100), |b| {
        b.iter_custom(|iters| {
            bench.sample(iters, |store, iters| async move {
                enqueue(&store, "p", 1_000).await?;
                timed((0..iters).collect(), |_| {
                    let store = &store;
                    async move {
                        let page = store.peek(100, 0).await?;
                        anyhow::ensure!(page.len() == 100, "peek returned {}", page.len());
                        Ok(())
                    }
                })
                .await
            })
        })
    });
    bench.check("peek");

    for batch in [1usize, 64] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("assign", batch), |b| {
            b.iter_custom(|iters| {
                bench.sample(iters, |store, iters| async move {
                    register(&store, &["agent-0".to_string()], 10_000_000).await?;
                    let ids = enqueue(&store, "a", iters as usize * batch).await?;
                    let batches: Vec<&[String]> = ids.chunks(batch).collect();
                    let to = placement("agent-0");
                    timed(batches, |ids| assign(&store, ids, &to)).await
                })
            })
        });
        bench.check("assign");
    }

    group.throughput(Throughput::Elements(100));
    group.bench_function(BenchmarkId::new("events_started_completed", 100), |b| {
        b.iter_custom(|iters| {
            bench.sample(iters, |store, iters| async move {
                register(&store, &["agent-0".to_string()], 10_000_000).await?;
                let ids = enqueue(&store, "v", iters as usize * 100).await?;
                let to = placement("agent-0");
                for chunk in ids.chunks(SETUP_BATCH) {
                    assign(&store, chunk, &to).await?;
                }
                let batches: Vec<EventArgs> = ids
                    .chunks(100)
                    .map(|chunk| start_and_complete("agent-0", chunk))
                    .collect();
                timed(batches, |args| {
                    let store = &store;
                    async move { events(store, &args, &["ok", "accepted"]).await }
                })
                .await
            })
        })
    });
    bench.check("events");

    group.throughput(Throughput::Elements(100));
    group.bench_function(BenchmarkId::new("heartbeat_agents", 100), |b| {
        b.iter_custom(|iters| {
            bench.sample(iters, |store, iters| async move {
                let heartbeats = steady_fleet(&store, 100, 4).await?;
                timed((0..iters).collect(), |_| {
                    events(&store, &heartbeats, &["ok"])
                })
                .await
            })
        })
    });
    bench.check("heartbeat");

    group.throughput(Throughput::Elements(1));
    group.bench_function("expire_nothing_due", |b| {
        b.iter_custom(|iters| {
            bench.sample(iters, |store, iters| async move {
                steady_fleet(&store, 100, 4).await?;
                timed((0..iters).collect(), |_| {
                    let store = &store;
                    async move {
                        let outcomes = store
                            .expire(
                                now_ms(),
                                HEARTBEAT_TIMEOUT,
                                EXPIRE_LIMIT,
                                (true, true),
                                UNSCHEDULABLE_TIMEOUT,
                            )
                            .await?;
                        anyhow::ensure!(outcomes.is_empty(), "expired: {outcomes:?}");
                        Ok(())
                    }
                })
                .await
            })
        })
    });
    bench.check("expire");
    group.finish();
}

criterion_group! {
    name = benches;
    // Short by default, so the whole run takes a few minutes on a 2-core
    // machine; criterion's flags (--measurement-time …) still override.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = scripts
}
criterion_main!(benches);
