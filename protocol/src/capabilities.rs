//! What an agent can do, as it declares when it registers.

use serde::{Deserialize, Serialize};

use crate::job::{parse_compute_capability, Requirements};
use crate::workload;

/// One GPU of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub memory_mb: u64,
    /// `"major.minor"`, e.g. `"9.0"` for an H100.
    pub compute_capability: String,
    /// Measured f16 GEMM throughput, when the agent ran its start-up
    /// benchmark (`--benchmark-on-start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemm_tflops: Option<f64>,
    /// Measured memory bandwidth (vector add), likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gb_per_s: Option<f64>,
}

/// An agent's declared capabilities.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub cpus: u32,
    pub memory_mb: u64,
    #[serde(default)]
    pub gpus: Vec<GpuInfo>,
    /// CUDA driver version as the driver reports it (e.g. 12080), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_driver: Option<i32>,
    /// Workload kinds this agent runs.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Operator-given tags such as model families.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// How many GPUs a job of `kind` with `req` takes: `req.gpus` when given,
/// else one for a CUDA kind or a job with per-GPU requirements, else none.
pub fn gpus_wanted(kind: &str, req: &Requirements) -> u32 {
    req.gpus.unwrap_or(u32::from(
        workload::needs_gpu(kind) || req.gpu_mem_mb.is_some() || req.compute_capability.is_some(),
    ))
}

impl GpuInfo {
    /// Whether this one device meets the job's per-GPU requirements.
    pub fn fits(&self, req: &Requirements) -> bool {
        let min_cc = req
            .compute_capability
            .as_deref()
            .and_then(parse_compute_capability);
        req.gpu_mem_mb.is_none_or(|m| self.memory_mb >= m)
            && match min_cc {
                None => true,
                Some(min) => {
                    parse_compute_capability(&self.compute_capability).is_some_and(|cc| cc >= min)
                }
            }
    }
}

/// Why one agent cannot take a job (now, or ever).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misfit {
    #[error("does not offer workload kind {0:?}")]
    Kind(String),
    #[error("lacks tag {0:?}")]
    Tag(String),
    #[error("has {free} free fitting GPU(s), job needs {wanted}")]
    Gpus { free: usize, wanted: usize },
}

impl Capabilities {
    /// Whether this agent could ever run a job of `kind` needing `req`
    /// (ignoring how busy it is). GPU memory and compute capability hold
    /// per device: the job needs `gpus` devices that each satisfy both.
    pub fn satisfies(&self, kind: &str, req: &Requirements) -> Result<(), Misfit> {
        self.allocate(kind, req, &[]).map(|_| ())
    }

    /// The device indices a job of `kind` needing `req` would get, given
    /// which of this agent's GPUs are busy (`busy[i]` for `self.gpus[i]`;
    /// missing entries are free). Best fit: the smallest fitting devices,
    /// so large GPUs stay free for jobs that need them.
    pub fn allocate(
        &self,
        kind: &str,
        req: &Requirements,
        busy: &[bool],
    ) -> Result<Vec<u32>, Misfit> {
        if !self.kinds.iter().any(|k| k == kind) {
            return Err(Misfit::Kind(kind.to_string()));
        }
        if let Some(tag) = req.tags.iter().find(|t| !self.tags.contains(t)) {
            return Err(Misfit::Tag(tag.clone()));
        }
        let wanted = gpus_wanted(kind, req) as usize;
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let mut fitting: Vec<&GpuInfo> = self
            .gpus
            .iter()
            .enumerate()
            .filter(|(i, g)| !busy.get(*i).copied().unwrap_or(false) && g.fits(req))
            .map(|(_, g)| g)
            .collect();
        if fitting.len() < wanted {
            return Err(Misfit::Gpus {
                free: fitting.len(),
                wanted,
            });
        }
        fitting.sort_by_key(|g| (g.memory_mb, g.index));
        Ok(fitting.iter().take(wanted).map(|g| g.index).collect())
    }
}

/// Why no agent among `fleet` could ever run a job of `kind` needing `req`,
/// for the operator: e.g. "needs 1 GPU with ≥ 80 GiB; largest live: 24 GiB".
pub fn unschedulable_reason<'a>(
    kind: &str,
    req: &Requirements,
    fleet: impl IntoIterator<Item = &'a Capabilities>,
) -> String {
    let fleet: Vec<&Capabilities> = fleet.into_iter().collect();
    if fleet.is_empty() {
        return "no live agent".to_string();
    }
    let offering: Vec<&Capabilities> = fleet
        .into_iter()
        .filter(|c| c.kinds.iter().any(|k| k == kind))
        .collect();
    if offering.is_empty() {
        return format!("no live agent offers workload kind {kind:?}");
    }
    let tagged: Vec<&Capabilities> = offering
        .into_iter()
        .filter(|c| req.tags.iter().all(|t| c.tags.contains(t)))
        .collect();
    if tagged.is_empty() {
        return format!("no live agent offering {kind:?} has tags {:?}", req.tags);
    }
    let wanted = gpus_wanted(kind, req);
    let mut need = format!("needs {wanted} GPU{}", if wanted == 1 { "" } else { "s" });
    if let Some(m) = req.gpu_mem_mb {
        need.push_str(&format!(" with ≥ {}", format_mb(m)));
    }
    if let Some(cc) = &req.compute_capability {
        need.push_str(&format!(" of compute capability ≥ {cc}"));
    }
    let largest = tagged
        .iter()
        .flat_map(|c| c.gpus.iter().map(|g| g.memory_mb))
        .max();
    let most = tagged
        .iter()
        .map(|c| c.gpus.iter().filter(|g| g.fits(req)).count())
        .max()
        .unwrap_or(0);
    match largest {
        None => format!("{need}; no live agent offering {kind:?} has a GPU"),
        Some(l) if req.gpu_mem_mb.is_some_and(|m| l < m) => {
            format!("{need}; largest live: {}", format_mb(l))
        }
        Some(_) => format!("{need}; the most fitting GPUs on one live agent: {most}"),
    }
}

/// `81920` → `"80 GiB"`, `1500` → `"1500 MiB"`.
pub fn format_mb(mb: u64) -> String {
    if mb >= 1024 && mb.is_multiple_of(1024) {
        format!("{} GiB", mb / 1024)
    } else {
        format!("{mb} MiB")
    }
}

/// Parses `--simulate-gpus` (`"NAME:MEM:CC,…"`, MEM like `80GiB`, `24GB`
/// or `81920MiB`), for agents that pretend to have GPUs in tests.
pub fn parse_simulated_gpus(spec: &str) -> Result<Vec<GpuInfo>, String> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .enumerate()
        .map(|(i, one)| {
            let parts: Vec<&str> = one.trim().split(':').collect();
            let [name, mem, cc] = parts.as_slice() else {
                return Err(format!("{one:?} is not NAME:MEM:CC"));
            };
            parse_compute_capability(cc)
                .ok_or_else(|| format!("compute capability {cc:?} is not major.minor"))?;
            Ok(GpuInfo {
                index: i as u32,
                name: name.to_string(),
                memory_mb: parse_memory_mb(mem)?,
                compute_capability: cc.to_string(),
                gemm_tflops: None,
                memory_gb_per_s: None,
            })
        })
        .collect()
}

fn parse_memory_mb(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("memory {s:?} does not start with a number"))?;
    let factor = match unit {
        "gib" | "gb" | "g" => 1024,
        "mib" | "mb" | "m" | "" => 1,
        "tib" | "tb" | "t" => 1024 * 1024,
        _ => return Err(format!("memory {s:?} has an unknown unit")),
    };
    Ok(n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, mem: u64, cc: &str) -> GpuInfo {
        GpuInfo {
            index,
            name: "test".into(),
            memory_mb: mem,
            compute_capability: cc.into(),
            gemm_tflops: None,
            memory_gb_per_s: None,
        }
    }

    fn caps(gpus: Vec<GpuInfo>) -> Capabilities {
        Capabilities {
            gpus,
            kinds: vec!["sleep".into(), "cuda.vector_add".into()],
            tags: vec!["llama".into()],
            ..Capabilities::default()
        }
    }

    #[test]
    fn allocation_takes_free_devices_best_fit_first() {
        let c = caps(vec![
            gpu(0, 81_920, "9.0"),
            gpu(1, 24_576, "8.9"),
            gpu(2, 24_576, "8.9"),
        ]);
        let one = Requirements {
            gpus: Some(1),
            ..Requirements::default()
        };
        // The smallest fitting device first, keeping the H100 free.
        assert_eq!(c.allocate("sleep", &one, &[]), Ok(vec![1]));
        assert_eq!(c.allocate("sleep", &one, &[false, true]), Ok(vec![2]));
        assert_eq!(c.allocate("sleep", &one, &[false, true, true]), Ok(vec![0]));
        assert!(c.allocate("sleep", &one, &[true, true, true]).is_err());
        let big = Requirements {
            gpus: Some(1),
            gpu_mem_mb: Some(40_960),
            ..Requirements::default()
        };
        assert_eq!(c.allocate("sleep", &big, &[]), Ok(vec![0]));
        // A CUDA kind takes one GPU unless told otherwise; a CPU job none.
        assert_eq!(
            c.allocate("cuda.vector_add", &Requirements::default(), &[]),
            Ok(vec![1])
        );
        assert_eq!(
            c.allocate("sleep", &Requirements::default(), &[]),
            Ok(vec![])
        );
    }

    #[test]
    fn unschedulable_reasons_name_what_is_missing() {
        let small = caps(vec![gpu(0, 24_576, "8.9"), gpu(1, 24_576, "8.9")]);
        let big = Requirements {
            gpus: Some(1),
            gpu_mem_mb: Some(81_920),
            ..Requirements::default()
        };
        assert_eq!(
            unschedulable_reason("sleep", &big, [&small]),
            "needs 1 GPU with ≥ 80 GiB; largest live: 24 GiB"
        );
        assert_eq!(
            unschedulable_reason("teleport", &Requirements::default(), [&small]),
            "no live agent offers workload kind \"teleport\""
        );
        assert_eq!(unschedulable_reason("sleep", &big, []), "no live agent");
        let four = Requirements {
            gpus: Some(4),
            ..Requirements::default()
        };
        assert_eq!(
            unschedulable_reason("sleep", &four, [&small]),
            "needs 4 GPUs; the most fitting GPUs on one live agent: 2"
        );
    }

    #[test]
    fn simulated_gpus_parse() {
        let gpus = parse_simulated_gpus("H100:80GiB:9.0,RTX4090:24GiB:8.9").unwrap_or_default();
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].memory_mb, 81_920);
        assert_eq!(gpus[1].index, 1);
        assert_eq!(gpus[1].compute_capability, "8.9");
        assert!(parse_simulated_gpus("H100:80GiB").is_err());
        assert!(parse_simulated_gpus("H100:lots:9.0").is_err());
        assert!(parse_simulated_gpus("H100:80GiB:nine").is_err());
    }

    #[test]
    fn memory_is_per_gpu_not_per_box() {
        let two_small = caps(vec![gpu(0, 24_576, "8.9"), gpu(1, 24_576, "8.9")]);
        let req = Requirements {
            gpus: Some(1),
            gpu_mem_mb: Some(40_960),
            ..Requirements::default()
        };
        assert_eq!(
            two_small.satisfies("cuda.vector_add", &req),
            Err(Misfit::Gpus { free: 0, wanted: 1 })
        );
        let big = caps(vec![gpu(0, 81_920, "9.0")]);
        assert!(big.satisfies("cuda.vector_add", &req).is_ok());
    }

    #[test]
    fn kinds_tags_and_compute_capability_are_checked() {
        let c = caps(vec![gpu(0, 81_920, "8.0")]);
        let no_echo = c.satisfies("echo", &Requirements::default());
        assert_eq!(no_echo, Err(Misfit::Kind("echo".into())));
        assert_eq!(
            no_echo.map_err(|m| m.to_string()),
            Err("does not offer workload kind \"echo\"".to_string())
        );
        let tagged = Requirements {
            tags: vec!["whisper".into()],
            ..Requirements::default()
        };
        assert_eq!(
            c.satisfies("sleep", &tagged),
            Err(Misfit::Tag("whisper".into()))
        );
        let cc9 = Requirements {
            compute_capability: Some("9.0".into()),
            ..Requirements::default()
        };
        assert!(c.satisfies("cuda.vector_add", &cc9).is_err());
        assert!(c.satisfies("sleep", &Requirements::default()).is_ok());
    }
}
