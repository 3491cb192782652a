//! What an agent can do, as it declares when it registers.

use serde::{Deserialize, Serialize};

use crate::job::{parse_compute_capability, Requirements};

/// One GPU of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub memory_mb: u64,
    /// `"major.minor"`, e.g. `"9.0"` for an H100.
    pub compute_capability: String,
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

impl Capabilities {
    /// Whether this agent could ever run a job of `kind` needing `req`
    /// (ignoring how busy it is). GPU memory and compute capability hold
    /// per device: the job needs `gpus` devices that each satisfy both.
    pub fn satisfies(&self, kind: &str, req: &Requirements) -> Result<(), String> {
        if !self.kinds.iter().any(|k| k == kind) {
            return Err(format!("does not offer workload kind {kind:?}"));
        }
        if let Some(tag) = req.tags.iter().find(|t| !self.tags.contains(t)) {
            return Err(format!("lacks tag {tag:?}"));
        }
        let min_cc = req
            .compute_capability
            .as_deref()
            .and_then(parse_compute_capability);
        let fitting = self
            .gpus
            .iter()
            .filter(|g| req.gpu_mem_mb.is_none_or(|m| g.memory_mb >= m))
            .filter(|g| match min_cc {
                None => true,
                Some(min) => {
                    parse_compute_capability(&g.compute_capability).is_some_and(|cc| cc >= min)
                }
            })
            .count();
        let wanted = req
            .gpus
            .unwrap_or(u32::from(req.gpu_mem_mb.is_some() || min_cc.is_some()));
        if (fitting as u64) < u64::from(wanted) {
            return Err(format!("has {fitting} fitting GPU(s), job needs {wanted}"));
        }
        Ok(())
    }
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
    fn memory_is_per_gpu_not_per_box() {
        let two_small = caps(vec![gpu(0, 24_576, "8.9"), gpu(1, 24_576, "8.9")]);
        let req = Requirements {
            gpus: Some(1),
            gpu_mem_mb: Some(40_960),
            ..Requirements::default()
        };
        assert!(two_small.satisfies("cuda.vector_add", &req).is_err());
        let big = caps(vec![gpu(0, 81_920, "9.0")]);
        assert!(big.satisfies("cuda.vector_add", &req).is_ok());
    }

    #[test]
    fn kinds_tags_and_compute_capability_are_checked() {
        let c = caps(vec![gpu(0, 81_920, "8.0")]);
        assert!(c.satisfies("echo", &Requirements::default()).is_err());
        let tagged = Requirements {
            tags: vec!["whisper".into()],
            ..Requirements::default()
        };
        assert!(c.satisfies("sleep", &tagged).is_err());
        let cc9 = Requirements {
            compute_capability: Some("9.0".into()),
            ..Requirements::default()
        };
        assert!(c.satisfies("cuda.vector_add", &cc9).is_err());
        assert!(c.satisfies("sleep", &Requirements::default()).is_ok());
    }
}
