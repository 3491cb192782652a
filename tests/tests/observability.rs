//! What the operator sees: `/metrics` in Prometheus text format with
//! counters that move, and the live dashboard.

use std::time::Duration;

use fleet_protocol::JobSpec;
use fleet_tests::metrics::{get, scrape};
use fleet_tests::{Fleet, FleetConfig};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_counters_move_with_the_work() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(2, 4)).await?;
    let client = fleet.client().await?;
    let ids = client
        .submit_many(vec![JobSpec::new("sleep", json!({"ms": 5})); 100])
        .await?;
    client
        .wait_many(&ids, Duration::from_secs(30), |_| {})
        .await?;
    let first = scrape(&fleet).await?;
    assert_eq!(get(&first, "fleet_jobs_total{event=\"submitted\"}"), 100.0);
    assert_eq!(get(&first, "fleet_jobs_total{event=\"assigned\"}"), 100.0);
    assert_eq!(get(&first, "fleet_jobs_total{event=\"succeeded\"}"), 100.0);
    assert_eq!(get(&first, "fleet_run_seconds_count"), 100.0);
    assert_eq!(get(&first, "fleet_queue_wait_seconds_count"), 100.0);
    assert!(get(&first, "fleet_schedule_round_seconds_count") >= 1.0);
    assert!(get(&first, "fleet_redis_call_seconds_count{op=\"events\"}") >= 1.0);
    assert!(get(&first, "fleet_nats_publish_ack_seconds_count") >= 100.0);
    assert_eq!(get(&first, "fleet_queue_depth{priority=\"normal\"}"), 0.0);
    assert_eq!(get(&first, "fleet_agents{state=\"healthy\"}"), 2.0);
    assert_eq!(get(&first, "fleet_agent_healthy{agent=\"agent-0\"}"), 1.0);
    assert_eq!(get(&first, "fleet_agent_slots{agent=\"agent-1\"}"), 4.0);

    // More work moves the counters; a rejected submission is counted.
    let more = client
        .submit_many(vec![JobSpec::new("echo", json!({})); 20])
        .await?;
    client
        .wait_many(&more, Duration::from_secs(30), |_| {})
        .await?;
    let js = async_nats::jetstream::new(fleet.nats_client().await?);
    js.publish(fleet_protocol::subjects::SUBMIT, "{oops".into())
        .await?
        .await?;
    fleet_tests::wait_until(Duration::from_secs(10), "the rejection counted", || async {
        let s = scrape(&fleet).await?;
        Ok(get(&s, "fleet_rejected_submissions_total{reason=\"malformed\"}") == 1.0)
    })
    .await?;
    let second = scrape(&fleet).await?;
    assert_eq!(get(&second, "fleet_jobs_total{event=\"succeeded\"}"), 120.0);
    assert_eq!(get(&second, "fleet_run_seconds_count"), 120.0);
    Ok(())
}
