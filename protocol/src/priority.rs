//! Job priority classes and the rule that derives one from a reward.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A job's priority class. Higher classes are assigned first; within a
/// class, jobs go in arrival order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
)]
#[serde(rename_all = "lowercase", try_from = "String")]
#[strum(serialize_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    /// All classes, lowest first.
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ];

    /// The class a reward buys: ≥ 0.01 → HIGH, ≥ 0.001 → NORMAL, else LOW.
    pub fn from_reward(reward: f64) -> Priority {
        if reward >= 0.01 {
            Priority::High
        } else if reward >= 0.001 {
            Priority::Normal
        } else {
            Priority::Low
        }
    }

    /// 0 for LOW up to 3 for URGENT; the rank stored in Redis.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The inverse of [`Priority::rank`].
    pub fn from_rank(rank: u8) -> Option<Priority> {
        Priority::ALL.get(usize::from(rank)).copied()
    }

    /// One class up, stopping at URGENT: what a retry gets.
    pub fn escalated(self) -> Priority {
        Priority::from_rank(self.rank() + 1).unwrap_or(Priority::Urgent)
    }

    /// The class's name, as serde writes it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A priority name that is none of low, normal, high, urgent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?}; expected low, normal, high or urgent")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPriority(s.to_string()))
    }
}

impl TryFrom<String> for Priority {
    type Error = UnknownPriority;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_thresholds() {
        assert_eq!(Priority::from_reward(0.5), Priority::High);
        assert_eq!(Priority::from_reward(0.01), Priority::High);
        assert_eq!(Priority::from_reward(0.0099), Priority::Normal);
        assert_eq!(Priority::from_reward(0.001), Priority::Normal);
        assert_eq!(Priority::from_reward(0.0009), Priority::Low);
        assert_eq!(Priority::from_reward(0.0), Priority::Low);
    }

    #[test]
    fn escalation_stops_at_urgent() {
        assert_eq!(Priority::Low.escalated(), Priority::Normal);
        assert_eq!(Priority::High.escalated(), Priority::Urgent);
        assert_eq!(Priority::Urgent.escalated(), Priority::Urgent);
    }

    #[test]
    fn parses_case_insensitively_and_refuses_others() {
        assert_eq!("HIGH".parse::<Priority>(), Ok(Priority::High));
        assert!("critical".parse::<Priority>().is_err());
        let p: Result<Priority, _> = serde_json::from_str("\"urgent\"");
        assert_eq!(p.ok(), Some(Priority::Urgent));
        let p: Result<Priority, _> = serde_json::from_str("\"soon\"");
        assert!(p.is_err());
    }

    #[test]
    fn ordering_follows_rank() {
        assert!(Priority::Urgent > Priority::High);
        assert!(Priority::Normal > Priority::Low);
        for p in Priority::ALL {
            assert_eq!(Priority::from_rank(p.rank()), Some(p));
        }
    }
}
