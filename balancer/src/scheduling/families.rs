//! What the balancer can tell about a job before running it: its model
//! family, for affinity (an agent that recently ran the same family has
//! warm caches and weights on disk).
//!
//! The family comes from a `model` argument (`meta-llama/Llama-3.1-8B` →
//! `llama`), matched first against the operator's own patterns
//! (`--model-family PATTERN=FAMILY`, substring, case-insensitive), then a
//! small built-in table; without a model, the job's first required tag
//! stands for its family.

use serde_json::Value;

use crate::state::QueuedJob;

/// Substring → family, checked in order (more specific first).
const KNOWN_FAMILIES: &[(&str, &str)] = &[
    ("codellama", "llama"),
    ("llama", "llama"),
    ("mixtral", "mixtral"),
    ("mistral", "mistral"),
    ("qwen", "qwen"),
    ("gemma", "gemma"),
    ("phi-", "phi"),
    ("deepseek", "deepseek"),
    ("whisper", "whisper"),
    ("falcon", "falcon"),
    ("stable-diffusion", "stable-diffusion"),
    ("sdxl", "stable-diffusion"),
    ("flux", "flux"),
    ("bert", "bert"),
    ("t5", "t5"),
    ("gpt", "gpt"),
];

/// Maps model names to families.
#[derive(Debug, Clone, Default)]
pub struct FamilyTable {
    /// The operator's patterns, lower-cased, checked before the built-ins.
    custom: Vec<(String, String)>,
}

impl FamilyTable {
    /// Parses `PATTERN=FAMILY` entries.
    pub fn new(entries: &[String]) -> Result<FamilyTable, String> {
        let custom = entries
            .iter()
            .map(|e| match e.split_once('=') {
                Some((p, f)) if !p.is_empty() && !f.is_empty() => {
                    Ok((p.to_ascii_lowercase(), f.to_string()))
                }
                _ => Err(format!("model family {e:?} is not PATTERN=FAMILY")),
            })
            .collect::<Result<_, _>>()?;
        Ok(FamilyTable { custom })
    }

    /// The family of a model name, if known.
    pub fn family_of(&self, model: &str) -> Option<String> {
        let name = model.to_ascii_lowercase();
        self.custom
            .iter()
            .map(|(p, f)| (p.as_str(), f.as_str()))
            .chain(KNOWN_FAMILIES.iter().copied())
            .find(|(pattern, _)| name.contains(pattern))
            .map(|(_, family)| family.to_string())
    }

    /// The family of a queued job: from its `model` argument, else its
    /// first required tag.
    pub fn job_family(&self, job: &QueuedJob) -> Option<String> {
        let model = serde_json::from_str::<Value>(&job.args)
            .ok()
            .and_then(|a| a.get("model").and_then(Value::as_str).map(str::to_string));
        model
            .and_then(|m| self.family_of(&m))
            .or_else(|| job.requires.tags.first().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_model_names() {
        let t = FamilyTable::default();
        assert_eq!(
            t.family_of("meta-llama/Llama-3.1-8B").as_deref(),
            Some("llama")
        );
        assert_eq!(
            t.family_of("mistralai/Mixtral-8x7B").as_deref(),
            Some("mixtral")
        );
        assert_eq!(
            t.family_of("openai/whisper-large-v3").as_deref(),
            Some("whisper")
        );
        assert_eq!(t.family_of("my-own-model"), None);
    }

    #[test]
    fn operator_patterns_win() {
        let t = FamilyTable::new(&["acme-llama=acme".to_string()]).unwrap_or_default();
        assert_eq!(t.family_of("ACME-Llama-7B").as_deref(), Some("acme"));
        assert_eq!(t.family_of("Llama-7B").as_deref(), Some("llama"));
        assert!(FamilyTable::new(&["nonsense".to_string()]).is_err());
    }
}
