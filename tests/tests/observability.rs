//! What the operator sees: `/metrics` in Prometheus text format with
//! counters that move, and the live dashboard.

use std::collections::HashMap;
use std::time::Duration;

use fleet_protocol::JobSpec;
use fleet_tests::{Fleet, FleetConfig};
use serde_json::json;

/// Parses Prometheus text format strictly enough to catch a malformed
/// exposition: `name{labels} value` per sample, `# HELP`/`# TYPE` comments.
fn parse_prometheus(text: &str) -> anyhow::Result<HashMap<String, f64>> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let kind = comment.split_whitespace().next().unwrap_or_default();
            anyhow::ensure!(kind == "HELP" || kind == "TYPE", "bad comment: {line}");
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow::anyhow!("no value: {line}"))?;
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        anyhow::ensure!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in: {line}"
        );
        if name_end < series.len() {
            anyhow::ensure!(series.ends_with('}'), "unclosed labels: {line}");
        }
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .map_err(|e| anyhow::anyhow!("bad value in {line}: {e}"))?,
        };
        samples.insert(series.to_string(), value);
    }
    Ok(samples)
}

async fn scrape(fleet: &Fleet) -> anyhow::Result<HashMap<String, f64>> {
    let reply = reqwest::get(format!("{}/metrics", fleet.balancer_url())).await?;
    anyhow::ensure!(reply.status().is_success(), "status {}", reply.status());
    let content_type = reply
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(content_type.starts_with("text/plain"), "{content_type}");
    parse_prometheus(&reply.text().await?)
}

fn get(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(f64::NAN)
}

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
        Ok(get(
            &s,
            "fleet_rejected_total{what=\"submission\",reason=\"malformed\"}",
        ) == 1.0)
    })
    .await?;
    let second = scrape(&fleet).await?;
    assert_eq!(get(&second, "fleet_jobs_total{event=\"succeeded\"}"), 120.0);
    assert_eq!(get(&second, "fleet_run_seconds_count"), 120.0);
    Ok(())
}
