//! Hostile input at volume: 10,000 malformed, mistyped, forged and
//! oversized messages on every subject the balancer consumes — job
//! submissions from a producer's credentials, agent events from an agent's
//! — interleaved with 1,000 good jobs. The balancer stays up, every good
//! job succeeds, and every bad message is refused with its specific reason
//! and counted exactly once.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use fleet_protocol::{subjects, JobSpec, JobState, Rejection};
use fleet_tests::metrics::scrape;
use fleet_tests::{wait_until, Fleet, FleetConfig, NatsRoles, Role};
use futures::StreamExt;
use serde_json::json;

const BAD_SUBMISSIONS: usize = 6_000;
const BAD_EVENTS: usize = 4_000;
const GOOD_JOBS: usize = 1_000;

/// The `i`th bad submission and the reason it must be refused with.
fn bad_submission(i: usize) -> (Vec<u8>, &'static str) {
    if i % 300 == 299 {
        // Over the 1 MiB job limit, under the server's 2 MB payload limit.
        let filler = "x".repeat(1_500_000);
        return (
            json!({"kind": "echo", "args": {"pad": filler}})
                .to_string()
                .into_bytes(),
            "too_large",
        );
    }
    let body = |v: serde_json::Value| v.to_string().into_bytes();
    match i % 10 {
        0 => (b"{not json".to_vec(), "malformed"),
        1 => (vec![0xff, 0xfe, b'{', 0x80], "not_utf8"),
        2 => (body(json!({"kind": "rm -rf /"})), "unknown_kind"),
        3 => (
            body(json!({"kind": "echo", "priority": "ultra"})),
            "bad_priority",
        ),
        4 => (
            body(json!({"kind": "echo", "timeout_ms": -5})),
            "bad_timeout",
        ),
        5 => (
            body(json!({"kind": "echo", "timeout_ms": 1_000_000_000_000_u64})),
            "bad_timeout",
        ),
        6 => (body(json!({"id": "a.b.>", "kind": "echo"})), "bad_id"),
        7 => {
            let deep = (0..100).fold(json!(1), |v, _| json!([v]));
            (body(json!({"kind": "echo", "args": deep})), "too_deep")
        }
        8 => (body(json!({"kind": "echo", "colour": "red"})), "malformed"),
        _ => (
            body(json!({"kind": "echo", "max_attempts": 0})),
            "bad_max_attempts",
        ),
    }
}

/// The `i`th bad event (type token, body) from agent `agent-cpu`, and the
/// reason it must be refused with.
fn bad_event(i: usize) -> (&'static str, Vec<u8>, &'static str) {
    let body = |v: serde_json::Value| v.to_string().into_bytes();
    if i % 400 == 399 {
        let result = "y".repeat(700_000);
        let event = json!({"agent_id": "agent-cpu", "job_id": format!("ghost-{i}"),
            "attempt": 1, "result": result, "duration_ms": 1});
        return ("completed", body(event), "too_large");
    }
    match i % 6 {
        0 => ("completed", b"{oops".to_vec(), "malformed"),
        1 => ("heartbeat", vec![0xc3, 0x28, 0xff], "not_utf8"),
        2 => (
            "explode",
            body(json!({"agent_id": "agent-cpu"})),
            "unknown_type",
        ),
        3 => (
            "completed",
            body(
                json!({"agent_id": "agent-gpu", "job_id": format!("ghost-{i}"),
                "attempt": 1, "result": {}, "duration_ms": 1}),
            ),
            "agent_mismatch",
        ),
        4 => (
            "completed",
            body(
                json!({"agent_id": "agent-cpu", "job_id": format!("ghost-{i}"),
                "attempt": 1, "result": {"forged": true}, "duration_ms": 1}),
            ),
            "unknown_job",
        ),
        _ => (
            "failed",
            body(
                json!({"agent_id": "agent-cpu", "job_id": "x", "attempt": "one",
                "error": "", "duration_ms": 1}),
            ),
            "malformed",
        ),
    }
}

fn tally<S: AsRef<str>>(reasons: impl Iterator<Item = S>) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for r in reasons {
        *counts.entry(r.as_ref().to_string()).or_insert(0.0) += 1.0;
    }
    counts
}

/// `fleet_rejected_<what>_total` by reason.
async fn rejected(fleet: &Fleet, what: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let prefix = format!("fleet_rejected_{what}_total{{reason=\"");
    Ok(scrape(fleet)
        .await?
        .into_iter()
        .filter_map(|(series, v)| {
            let reason = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            Some((reason.to_string(), v))
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_input_leaves_good_jobs_untouched() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig {
        agents: vec![("agent-cpu".into(), 8), ("agent-gpu".into(), 8)],
        nats_roles: Some(NatsRoles::generate()?),
        ..FleetConfig::default()
    })
    .await?;
    // Every rejection the balancer announces, by reason.
    let watcher = fleet.connect_as(&Role::Producer).await?;
    let mut announced = watcher.subscribe(subjects::REJECTED).await?;
    watcher.flush().await?;
    let seen: Arc<Mutex<Vec<Rejection>>> = Arc::default();
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Some(m) = announced.next().await {
            if let Ok(r) = serde_json::from_slice::<Rejection>(&m.payload) {
                sink.lock().push(r);
            }
        }
    });

    let producer = fleet.connect_as(&Role::Producer).await?;
    let producer_js = jetstream::new(producer);
    let agent = fleet.connect_as(&Role::Agent("agent-cpu".into())).await?;
    let agent_js = jetstream::new(agent);

    let submissions = tokio::spawn(async move {
        for chunk in (0..BAD_SUBMISSIONS).collect::<Vec<_>>().chunks(500) {
            let mut acks = Vec::new();
            for &i in chunk {
                let (body, _) = bad_submission(i);
                acks.push(producer_js.publish(subjects::SUBMIT, body.into()).await?);
            }
            for ack in acks {
                ack.await?;
            }
        }
        anyhow::Ok(())
    });
    let events = tokio::spawn(async move {
        for chunk in (0..BAD_EVENTS).collect::<Vec<_>>().chunks(500) {
            let mut acks = Vec::new();
            for &i in chunk {
                let (kind, body, _) = bad_event(i);
                let subject = subjects::event(kind, "agent-cpu");
                acks.push(agent_js.publish(subject, body.into()).await?);
            }
            for ack in acks {
                ack.await?;
            }
        }
        anyhow::Ok(())
    });
    let client = fleet.client().await?;
    let mut good = Vec::new();
    for _ in 0..10 {
        let batch = vec![JobSpec::new("echo", json!({"good": true})); GOOD_JOBS / 10];
        good.extend(client.submit_many(batch).await?);
    }
    submissions.await??;
    events.await??;

    let results = client
        .wait_many(&good, Duration::from_secs(180), |_| {})
        .await?;
    assert_eq!(results.len(), GOOD_JOBS);
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.state != JobState::Succeeded)
        .collect();
    assert!(failed.is_empty(), "good jobs did not succeed: {failed:?}");

    let want_submissions = tally((0..BAD_SUBMISSIONS).map(|i| bad_submission(i).1));
    let want_events = tally((0..BAD_EVENTS).map(|i| bad_event(i).2));
    let counted = wait_until(
        Duration::from_secs(120),
        "every bad message counted",
        || async {
            Ok(rejected(&fleet, "submissions").await? == want_submissions
                && rejected(&fleet, "events").await? == want_events)
        },
    )
    .await;
    if let Err(e) = counted {
        let got = (
            rejected(&fleet, "submissions").await?,
            rejected(&fleet, "events").await?,
        );
        anyhow::bail!("{e}; want {want_submissions:?} and {want_events:?}, got {got:?}");
    }
    // Each refused submission was announced with its reason.
    wait_until(
        Duration::from_secs(30),
        "every rejection announced",
        || async {
            let seen = seen.lock().clone();
            Ok(tally(seen.iter().map(|r| &r.reason)) == want_submissions)
        },
    )
    .await?;

    // Still up, still leading, both agents healthy.
    let stats = fleet.stats().await?;
    assert_eq!(stats["healthy_agents"], 2, "{stats}");
    Ok(())
}
