//! `composite` (the default): availability × 0.5 + success rate × 0.3 +
//! speed × 0.2 (weights configurable), plus an affinity bonus when the
//! agent recently ran the job's model family, minus a thermal penalty for
//! hot or saturated GPUs, minus a reserve penalty for putting a job that
//! needs no GPU on an agent with GPUs while jobs that need GPUs are
//! waiting (that slot is better kept for them).

use fleet_protocol::gpus_wanted;

use super::{best_by, Feasible, JobContext, Policy};
use crate::scheduling::directory::AgentView;

/// Weights of the composite score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub availability: f64,
    pub success: f64,
    pub speed: f64,
    /// Added when the agent is warm for the job's family.
    pub affinity: f64,
    /// Subtracted at the hottest, most utilized GPU.
    pub thermal: f64,
    /// Subtracted when a job that needs no GPU would take a GPU agent's slot.
    pub gpu_reserve: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            availability: 0.5,
            success: 0.3,
            speed: 0.2,
            affinity: 0.15,
            thermal: 0.3,
            gpu_reserve: 0.25,
        }
    }
}

impl Weights {
    /// Parses `availability,success,speed` (e.g. `0.5,0.3,0.2`).
    pub fn parse(s: &str) -> Result<Weights, String> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("weights {s:?}: {e}"))?;
        let [availability, success, speed] = parts.as_slice() else {
            return Err(format!(
                "weights {s:?}: expected availability,success,speed"
            ));
        };
        if parts.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err(format!("weights {s:?} must be finite and ≥ 0"));
        }
        Ok(Weights {
            availability: *availability,
            success: *success,
            speed: *speed,
            ..Weights::default()
        })
    }
}

/// Speed for a kind on an agent: the fastest known average run time over
/// this agent's (1.0 for the fastest). Without history, a GPU job falls
/// back on the agents' measured GEMM throughput (`--benchmark-on-start`)
/// against the best among the candidates; with neither, 1.0, so new
/// agents get tried.
fn speed(agent: &AgentView, kind: &str, fastest_ms: Option<f64>, best_tflops: Option<f64>) -> f64 {
    match (agent.perf.get(kind), fastest_ms) {
        (Some(p), Some(best)) if p.ms > 0.0 && best > 0.0 => (best / p.ms).clamp(0.0, 1.0),
        _ => match (measured_tflops(agent), best_tflops) {
            (Some(mine), Some(best)) if best > 0.0 => (mine / best).clamp(0.0, 1.0),
            _ => 1.0,
        },
    }
}

/// The best measured GEMM throughput among the agent's GPUs.
pub fn measured_tflops(agent: &AgentView) -> Option<f64> {
    agent
        .capabilities
        .gpus
        .iter()
        .filter_map(|g| g.gemm_tflops)
        .reduce(f64::max)
}

/// Success rate for a kind on an agent, falling back to its overall rate.
fn success(agent: &AgentView, kind: &str) -> f64 {
    match agent.perf.get(kind) {
        Some(p) if p.n > 0 => p.ok,
        _ => agent.success_rate(),
    }
}

/// 0.0 when cool and idle, 1.0 at 90 °C (where the agent stops taking
/// work) and fully utilized.
fn heat(agent: &AgentView) -> f64 {
    let t = agent
        .temperature_c
        .map(|t| ((f64::from(t) - 70.0) / 20.0).clamp(0.0, 1.0))
        .unwrap_or(0.0);
    let u = agent
        .utilization_pct
        .map(|u| (f64::from(u) / 100.0).clamp(0.0, 1.0))
        .unwrap_or(0.0);
    (0.75 * t + 0.25 * u).clamp(0.0, 1.0)
}

/// The composite score of one agent for one job.
pub fn score(
    agent: &AgentView,
    free_slots: u32,
    weights: Weights,
    job: Option<&JobContext<'_>>,
    (fastest_ms, best_tflops): (Option<f64>, Option<f64>),
) -> f64 {
    let availability = if agent.slots == 0 {
        0.0
    } else {
        f64::from(free_slots) / f64::from(agent.slots)
    };
    let (success, speed, warm, wastes_gpu) = match job {
        Some(j) => (
            success(agent, &j.job.kind),
            speed(
                agent,
                &j.job.kind,
                fastest_ms,
                // Measured GEMM speed says nothing about CPU work.
                best_tflops.filter(|_| gpus_wanted(&j.job.kind, &j.job.requires) > 0),
            ),
            j.family.is_some_and(|f| agent.is_warm_for(f, j.now_ms)),
            j.gpu_demand
                && !agent.capabilities.gpus.is_empty()
                && gpus_wanted(&j.job.kind, &j.job.requires) == 0,
        ),
        None => (agent.success_rate(), 1.0, false, false),
    };
    availability * weights.availability
        + success * weights.success
        + speed * weights.speed
        + if warm { weights.affinity } else { 0.0 }
        - heat(agent) * weights.thermal
        - if wastes_gpu { weights.gpu_reserve } else { 0.0 }
}

pub struct Composite {
    weights: Weights,
}

impl Composite {
    pub fn new(weights: Weights) -> Composite {
        Composite { weights }
    }
}

impl Policy for Composite {
    fn name(&self) -> &'static str {
        "composite"
    }

    fn choose(&mut self, job: &JobContext<'_>, feasible: &[Feasible<'_>]) -> usize {
        let fastest_ms = feasible
            .iter()
            .filter_map(|f| f.agent.perf.get(&job.job.kind).map(|p| p.ms))
            .filter(|ms| *ms > 0.0)
            .min_by(f64::total_cmp);
        let best_tflops = feasible
            .iter()
            .filter_map(|f| measured_tflops(f.agent))
            .reduce(f64::max);
        best_by(feasible, |f| {
            score(
                f.agent,
                f.free_slots,
                self.weights,
                Some(job),
                (fastest_ms, best_tflops),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::policy::testing::{agent, feasible, job};
    use crate::state::Perf;

    fn ctx<'a>(job: &'a crate::state::QueuedJob, family: Option<&'a str>) -> JobContext<'a> {
        JobContext {
            job,
            family,
            now_ms: 1_000,
            gpu_demand: true,
        }
    }

    fn choose(agents: &[AgentView], family: Option<&str>) -> String {
        let j = job();
        let feasible = feasible(agents);
        let i = Composite::new(Weights::default()).choose(&ctx(&j, family), &feasible);
        feasible[i].agent.id.clone()
    }

    #[test]
    fn prefers_the_more_available_agent() {
        assert_eq!(choose(&[agent("a", 4, 3), agent("b", 4, 1)], None), "b");
    }

    #[test]
    fn prefers_the_more_reliable_and_the_faster_agent() {
        let mut flaky = agent("flaky", 4, 0);
        flaky.perf.insert(
            "sleep".into(),
            Perf {
                ms: 10.0,
                ok: 0.2,
                n: 50,
            },
        );
        let mut steady = agent("steady", 4, 0);
        steady.perf.insert(
            "sleep".into(),
            Perf {
                ms: 10.0,
                ok: 1.0,
                n: 50,
            },
        );
        assert_eq!(choose(&[flaky, steady.clone()], None), "steady");

        let mut slow = agent("slow", 4, 0);
        slow.perf.insert(
            "sleep".into(),
            Perf {
                ms: 100.0,
                ok: 1.0,
                n: 50,
            },
        );
        assert_eq!(choose(&[slow, steady], None), "steady");
    }

    #[test]
    fn affinity_sends_a_family_back_to_a_warm_agent() {
        let cold = agent("a-cold", 4, 0);
        let mut warm = agent("b-warm", 4, 1);
        warm.recent_families.insert("llama".into(), 900);
        // Without a family the emptier agent wins; with it, the warm one.
        assert_eq!(choose(&[cold.clone(), warm.clone()], None), "a-cold");
        assert_eq!(choose(&[cold, warm], Some("llama")), "b-warm");
    }

    #[test]
    fn cpu_jobs_keep_off_gpu_agents_while_a_cpu_agent_can_take_them() {
        let mut gpu_box = agent("a-gpu", 4, 0);
        gpu_box.capabilities.gpus.push(fleet_protocol::GpuInfo {
            index: 0,
            name: "H100".into(),
            memory_mb: 81_920,
            compute_capability: "9.0".into(),
            gemm_tflops: None,
            memory_gb_per_s: None,
        });
        let cpu_box = agent("b-cpu", 4, 1);
        assert_eq!(choose(&[gpu_box, cpu_box], None), "b-cpu");
    }

    #[test]
    fn measured_gpus_steer_jobs_before_any_history() {
        let with_gpu = |id: &str, tflops: f64| {
            let mut a = agent(id, 4, 0);
            a.capabilities.gpus.push(fleet_protocol::GpuInfo {
                index: 0,
                name: "gpu".into(),
                memory_mb: 81_920,
                compute_capability: "9.0".into(),
                gemm_tflops: Some(tflops),
                memory_gb_per_s: None,
            });
            a
        };
        let agents = [with_gpu("a-slow", 150.0), with_gpu("b-fast", 600.0)];
        let gpu_job = crate::state::QueuedJob {
            requires: fleet_protocol::Requirements {
                gpus: Some(1),
                ..Default::default()
            },
            ..job()
        };
        let feasible = feasible(&agents);
        let mut policy = Composite::new(Weights::default());
        let i = policy.choose(&ctx(&gpu_job, None), &feasible);
        assert_eq!(
            feasible[i].agent.id, "b-fast",
            "a GPU job follows measured speed"
        );
        // A CPU job is not steered by GEMM figures: the tie goes to the lowest id.
        assert_eq!(choose(&agents, None), "a-slow");
    }

    #[test]
    fn hot_gpus_are_penalized() {
        let cool = agent("b-cool", 4, 1);
        let mut hot = agent("a-hot", 4, 0);
        hot.temperature_c = Some(88.0);
        hot.utilization_pct = Some(100.0);
        assert_eq!(choose(&[hot, cool], None), "b-cool");
    }

    #[test]
    fn weights_parse() {
        assert_eq!(
            Weights::parse("1,0,0").map(|w| (w.availability, w.success, w.speed)),
            Ok((1.0, 0.0, 0.0))
        );
        assert!(Weights::parse("1,2").is_err());
        assert!(Weights::parse("1,-2,0").is_err());
    }
}
