//! fleet-balancer: takes submitted jobs from JetStream, keeps every job's
//! state in Redis, leases each job to an agent, and turns agent events into
//! results.
//!
//! The service is a handful of tasks that share a Redis [`store::Store`],
//! an in-memory [`directory::Directory`] of agents, and a wake-up signal:
//!
//! - [`intake`] consumes `fleet.jobs.submit`, validates, admits a batch
//!   per fetch with one Lua script (leasing jobs at once while the queue
//!   is empty, see [`backlog`]), and acks only after Redis has the jobs.
//! - [`scheduler`] wakes on events (jobs queued, slots freed, agents
//!   joining), reads the queue head, chooses agents ([`placement`]),
//!   commits leases with one script, then publishes the assignments.
//! - [`events`] consumes the agents' events, applies a batch per fetch
//!   with one script, publishes terminal [`results`], then acks.
//! - [`sweeper`] fails leases of silent agents, unconfirmed assignments
//!   and jobs past their timeout.
//! - [`http`] serves the stats document ([`stats`]), job lookups, cancel,
//!   retry, dead letters and the [`audit`].
//!
//! Only the leader ([`leadership`]) runs the tasks that change state; a
//! standby serves HTTP and waits for the leadership lease. On SIGTERM or
//! SIGINT a leader stops its tasks and gives the lease up, so a standby
//! takes over at its next poll rather than when the lease runs out.
//!
//! Every state change of a job happens inside one Lua script (`src/lua/`),
//! so a crash between two steps never leaves a job half-moved.

mod api;
mod config;
mod consumer;
mod control;
mod events;
mod intake;
mod leadership;
mod results;
pub mod scheduling;
pub mod state;
mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use fleet_client::streams;
use tokio::sync::Notify;

pub use config::Config;

/// Connects to NATS and Redis, serves HTTP, and leads whenever it can:
/// while another balancer leads, this one stands by; once it leads, it
/// rebuilds its view from Redis and runs every task until leadership is
/// lost, then stands by again. Returns when asked to stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let mut signals = fleet_runtime::stop_signals::StopSignals::install()?;
    let stop = signals.next();
    tokio::pin!(stop);
    let prometheus = telemetry::metrics::install();
    let watch = Arc::new(events::watch::Watch::new());
    let activity = Arc::new(telemetry::rate::Activity::default());
    let watch_events = watch.clone();
    let nats_options = config.nats.connect_options().await?;
    let nats = nats_options
        .name("fleet-balancer")
        .event_callback(move |event| {
            let watch = watch_events.clone();
            async move {
                if matches!(
                    event,
                    async_nats::Event::Disconnected | async_nats::Event::Connected
                ) {
                    tracing::warn!(%event, "NATS connection");
                    watch.restart("NATS connection changed");
                }
            }
        })
        .retry_on_initial_connect();
    let nats = config.nats.connect_with(nats).await?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(20_000)
        .backpressure_on_inflight(true)
        .build(nats.clone());
    streams::ensure(&js, &[streams::JOBS, streams::EVENTS, streams::RESULTS]).await?;
    let store = state::Store::open(config.redis.client()?, fleet_protocol::Keys::default())
        .await
        .with_context(|| format!("cannot connect to Redis at {}", config.redis.redacted_url()))?;

    let directory = Arc::new(scheduling::directory::Directory::new(
        config.heartbeat_timeout,
    ));
    let wake = Arc::new(Notify::new());
    let leader = Arc::new(api::LeaderSlot::default());

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    tracing::info!(addr = %config.http_addr, balancer = %config.balancer_id, "serving HTTP");
    if config.admin_token.as_deref().is_none_or(str::is_empty) {
        tracing::warn!(addr = %config.http_addr, "no admin token: anyone who can reach this address can cancel, retry and drain (set FLEET_ADMIN_TOKEN)");
    }
    let mut server = tokio::spawn(api::serve(
        listener,
        api::AppState {
            store: store.clone(),
            leader: leader.clone(),
            directory: directory.clone(),
            js: js.clone(),
            wake: wake.clone(),
            activity: activity.clone(),
            prometheus,
            admin_token: api::AdminToken::new(config.admin_token.as_deref()),
        },
    ));

    let leadership =
        leadership::Leadership::new(store.clone(), config.balancer_id.clone(), config.leader_ttl);
    loop {
        let token = tokio::select! {
            token = leadership.acquire() => token,
            served = &mut server => return served?,
            () = &mut stop => {
                tracing::info!("stopping (standing by)");
                return Ok(());
            }
        };
        let store = store.with_token(&token);
        directory.reset(
            store
                .load_agents()
                .await?
                .into_iter()
                .map(scheduling::AgentView::from)
                .collect(),
        );
        tracing::info!(
            agents = directory.len(),
            "agent directory rebuilt from Redis"
        );
        leader.set(Some(store.clone()));
        // Whatever piled up while another balancer (or none) led has not
        // been applied yet: silence is counted from now.
        watch.restart("leadership acquired");
        wake.notify_one();

        let mut tasks = tokio::task::JoinSet::new();
        // Jobs may wait in the queue from before: the scheduler's first
        // round tells.
        let backlog = Arc::new(scheduling::backlog::Backlog::default());
        tasks.spawn(intake::run(
            js.clone(),
            store.clone(),
            directory.clone(),
            backlog.clone(),
            wake.clone(),
            config.clone(),
        ));
        tasks.spawn(events::run(
            js.clone(),
            store.clone(),
            directory.clone(),
            wake.clone(),
            watch.clone(),
            activity.clone(),
            config.clone(),
        ));
        tasks.spawn(scheduling::scheduler::run(
            nats.clone(),
            store.clone(),
            directory.clone(),
            backlog,
            wake.clone(),
            config.clone(),
        ));
        tasks.spawn(events::sweeper::run(
            js.clone(),
            store.clone(),
            directory.clone(),
            wake.clone(),
            watch.clone(),
            activity.clone(),
            config.clone(),
        ));
        let held = tokio::select! {
            lost = leadership.hold(token.clone()) => lost.to_string(),
            ended = tasks.join_next() => format!("a leader task ended: {ended:?}"),
            served = &mut server => return served?,
            () = &mut stop => {
                // Stopped mid-batch, the tasks leave what a crash would:
                // unacked messages a new leader gets again, and scripts
                // that ran whole or not at all. Then the lease goes.
                leader.set(None);
                tasks.shutdown().await;
                match store.resign(&token).await {
                    Ok(true) => tracing::info!(%token, "stopping: leadership given up"),
                    Ok(false) => tracing::info!(%token, "stopping: the lease had already gone"),
                    Err(e) => tracing::warn!(error = %e, "stopping: cannot give the lease up; it runs out by itself"),
                }
                return Ok(());
            }
        };
        leader.set(None);
        tasks.shutdown().await;
        tracing::warn!(reason = %held, "stepped down; standing by");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
