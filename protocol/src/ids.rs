//! Job and agent identifiers.
//!
//! Both appear inside NATS subjects (`fleet.results.<job_id>`,
//! `fleet.agent.<agent_id>.assign`), so each must be exactly one subject
//! token. fleet narrows that further to a portable alphabet so that ids are
//! also safe in Redis keys, URLs and file names.

/// The longest id fleet accepts.
pub const MAX_ID_LEN: usize = 128;

/// Why a job or agent id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("id is empty")]
    Empty,
    #[error("id is {0} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong(usize),
    #[error("id {0:?} has a character outside [A-Za-z0-9_-]; ids must be one NATS subject token")]
    BadCharacter(String),
}

/// Checks that `id` is a non-empty token of `[A-Za-z0-9_-]`, at most
/// [`MAX_ID_LEN`] bytes.
pub fn is_valid_token(id: &str) -> Result<(), InvalidId> {
    if id.is_empty() {
        return Err(InvalidId::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong(id.len()));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(InvalidId::BadCharacter(id.to_string()));
    }
    Ok(())
}

/// A fresh job id: a ULID, so ids sort by creation time.
pub fn new_job_id() -> String {
    ulid::Ulid::new().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ulids_and_simple_names() {
        assert_eq!(is_valid_token(&new_job_id()), Ok(()));
        assert_eq!(is_valid_token("gpu-box_7"), Ok(()));
    }

    #[test]
    fn refuses_subject_metacharacters_and_empty() {
        assert_eq!(is_valid_token(""), Err(InvalidId::Empty));
        for bad in ["a.b", "a*", ">", "a b", "é"] {
            assert!(is_valid_token(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            is_valid_token(&"x".repeat(MAX_ID_LEN + 1)),
            Err(InvalidId::TooLong(MAX_ID_LEN + 1))
        );
    }
}
