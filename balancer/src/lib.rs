//! fleet-balancer: takes submitted jobs from JetStream, keeps every job's
//! state in Redis, leases each job to an agent, and turns agent events into
//! results.
//!
//! The service is a handful of tasks that share a Redis [`store::Store`],
//! an in-memory [`directory::Directory`] of agents, and a wake-up signal:
//!
//! - [`intake`] consumes `fleet.jobs.submit`, validates, enqueues a batch
//!   per fetch with one Lua script, and acks only after Redis has the jobs.
//! - [`scheduler`] wakes on events (jobs queued, slots freed, agents
//!   joining), reads the queue head, chooses agents ([`placement`]),
//!   commits leases with one script, then publishes the assignments.
//! - [`events`] consumes the agents' events, applies a batch per fetch
//!   with one script, publishes terminal [`results`], then acks.
//! - [`http`] serves the stats document ([`stats`]) and job lookups.
//!
//! Every state change of a job happens inside one Lua script (`src/lua/`),
//! so a crash between two steps never leaves a job half-moved.

pub mod config;
pub mod directory;
pub mod durable;
pub mod events;
pub mod http;
pub mod intake;
pub mod placement;
pub mod results;
pub mod scheduler;
pub mod scripts;
pub mod stats;
pub mod store;

use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream;
use fleet_protocol::streams;
use tokio::sync::Notify;

pub use config::Config;

/// Connects to NATS and Redis, rebuilds the agent directory from Redis, and
/// runs every task until one fails.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let nats = async_nats::ConnectOptions::new()
        .name("fleet-balancer")
        .retry_on_initial_connect()
        .connect(&config.nats_url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats_url))?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(20_000)
        .backpressure_on_inflight(true)
        .build(nats.clone());
    streams::ensure(&js, &[streams::JOBS, streams::EVENTS, streams::RESULTS]).await?;
    let store = store::Store::connect(&config.redis_url, fleet_protocol::Keys::default())
        .await
        .with_context(|| format!("cannot connect to Redis at {}", config.redis_url))?;

    let directory = Arc::new(directory::Directory::new(config.heartbeat_timeout));
    for agent in store.load_agents().await? {
        directory.restore(agent);
    }
    tracing::info!(
        agents = directory.len(),
        "agent directory rebuilt from Redis"
    );

    let wake = Arc::new(Notify::new());
    wake.notify_one();

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    tracing::info!(addr = %config.http_addr, "serving HTTP");

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(intake::run(
        js.clone(),
        store.clone(),
        wake.clone(),
        config.clone(),
    ));
    tasks.spawn(events::run(
        js.clone(),
        store.clone(),
        directory.clone(),
        wake.clone(),
        config.clone(),
    ));
    tasks.spawn(scheduler::run(
        nats.clone(),
        store.clone(),
        directory.clone(),
        wake.clone(),
        config.clone(),
    ));
    tasks.spawn(scheduler::tick(wake.clone(), config.sweep_interval));
    tasks.spawn(http::serve(listener, store, directory, config.clone()));

    match tasks.join_next().await {
        Some(Ok(Ok(()))) | None => Ok(()),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(anyhow::anyhow!("a balancer task panicked: {e}")),
    }
}
