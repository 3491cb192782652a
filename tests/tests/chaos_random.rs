//! A randomized chaos run for long runs outside CI: rounds of mixed jobs,
//! each with one fault chosen by a seeded generator (agent SIGKILL, agent
//! SIGSTOP past the heartbeat timeout, leader SIGKILL with a standby
//! waiting, redis-server restart, nats-server restart). After each round
//! every job must have ended and the audit must be clean.
//!
//! ```sh
//! FLEET_CHAOS_SEED=7 FLEET_CHAOS_ROUNDS=20 FLEET_CHAOS_JOBS=1000 \
//!   cargo test -p fleet-tests --test chaos_random -- --ignored --nocapture
//! ```
//!
//! Agents report every start at once, as in every test; set
//! `FLEET_CHAOS_REPORT_START_AFTER=5ms` to run them as deployed (short jobs
//! reported by their completion alone).

use std::time::Duration;

use fleet_protocol::{JobSpec, JobState};
use fleet_tests::{wait_until, Fleet, FleetConfig, Process};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn role(port: u16) -> String {
    let body: Option<Value> = match reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
        Ok(r) => r.json().await.ok(),
        Err(_) => None,
    };
    body.and_then(|b| b["role"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long randomized run; see the module docs"]
async fn randomized_chaos() -> anyhow::Result<()> {
    let seed = env_u64("FLEET_CHAOS_SEED", fleet_protocol::time::now_ms());
    let rounds = env_u64("FLEET_CHAOS_ROUNDS", 5);
    let per_round = env_u64("FLEET_CHAOS_JOBS", 500) as usize;
    println!("chaos: seed {seed}, {rounds} rounds of {per_round} jobs");
    let mut rng = StdRng::seed_from_u64(seed);

    let config = FleetConfig {
        agent_args: match std::env::var("FLEET_CHAOS_REPORT_START_AFTER") {
            Ok(after) => vec!["--report-start-after".into(), after],
            Err(_) => Vec::new(),
        },
        ..FleetConfig::quick_detection(3, 4)
    };
    let mut fleet = Fleet::start(config).await?;
    let mut standby: (Process, u16) = fleet.start_balancer("standby-0")?;
    let client = fleet.client().await?;
    let (mut total, mut succeeded, mut dead, mut faults) = (0usize, 0usize, 0usize, Vec::new());

    for round in 0..rounds {
        let jobs: Vec<JobSpec> = (0..per_round)
            .map(|_| match rng.random_range(0..10) {
                0 => JobSpec::new("flaky", json!({"fail_attempts": rng.random_range(1..=2)})),
                _ => JobSpec::new("sleep", json!({"ms": rng.random_range(0..40)})),
            })
            .collect();
        let ids = client.submit_many(jobs).await?;
        let waiting = {
            let client = client.clone();
            let ids = ids.clone();
            tokio::spawn(async move {
                client
                    .wait_many(&ids, Duration::from_secs(180), |_| {})
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..500))).await;
        let fault = rng.random_range(0..5);
        let agent = rng.random_range(0..fleet.agents.len());
        let name = match fault {
            0 => {
                fleet.agents[agent].kill9();
                let id = format!("agent-{agent}");
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..2000))).await;
                fleet.start_agent(&id, 4)?;
                let fresh = fleet
                    .agents
                    .pop()
                    .ok_or_else(|| anyhow::anyhow!("no agent"))?;
                fleet.agents[agent] = fresh;
                format!("SIGKILL agent-{agent}")
            }
            1 => {
                fleet.agents[agent].signal("STOP")?;
                tokio::time::sleep(Duration::from_millis(rng.random_range(1600..3000))).await;
                fleet.agents[agent].signal("CONT")?;
                format!("SIGSTOP agent-{agent}")
            }
            2 => {
                // Kill whichever balancer leads; the other takes over, and
                // a fresh standby replaces the dead one.
                let leader_is_main = role(fleet.http_port).await == "leader";
                if leader_is_main {
                    fleet.balancer.kill9();
                    let (p, port) = standby;
                    fleet.balancer = p;
                    fleet.http_port = port;
                } else {
                    standby.0.kill9();
                }
                standby = fleet.start_balancer(&format!("standby-{round}"))?;
                "SIGKILL leader".to_string()
            }
            3 => {
                fleet.restart_redis()?;
                "restart redis-server".to_string()
            }
            _ => {
                fleet.restart_nats()?;
                "restart nats-server".to_string()
            }
        };
        let results = waiting.await??;
        let ok = results
            .iter()
            .filter(|r| r.state == JobState::Succeeded)
            .count();
        let d = results.iter().filter(|r| r.state == JobState::Dead).count();
        assert_eq!(ok + d, ids.len(), "round {round}: every job ended");
        // Audit on whichever balancer leads now.
        let port = if role(fleet.http_port).await == "leader" {
            fleet.http_port
        } else {
            standby.1
        };
        fleet.http_port = port;
        let clean = wait_until(Duration::from_secs(30), "a clean audit", || async {
            Ok(fleet.audit().await?["ok"] == true)
        })
        .await;
        if let Err(e) = clean {
            let audit = fleet.audit().await?;
            return Err(e.context(format!("round {round} ({name}): {audit}")));
        }
        println!("round {round}: {name}: {ok} succeeded, {d} dead, audit clean");
        total += ids.len();
        succeeded += ok;
        dead += d;
        faults.push(name);
    }
    println!(
        "chaos: seed {seed}: {total} jobs, {succeeded} succeeded, {dead} dead-lettered, 0 lost, {} faults: {faults:?}",
        faults.len()
    );
    Ok(())
}
