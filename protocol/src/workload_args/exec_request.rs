//! The arguments of `exec`: `{"command": "/abs/path", "args": ["…"]}`.
//!
//! Which commands may run is each agent's own list (`--allow-exec`); what
//! is checked here is what no list could allow: a command that is not an
//! absolute path, arguments that are not strings or carry a NUL byte, too
//! many or too long ones, and fields `exec` does not know.

use std::path::PathBuf;

use super::{bad, BadArgs};
use serde_json::Value;

/// The kind these arguments belong to.
pub const KIND: &str = "exec";
/// The most arguments a command may get.
pub const MAX_ARGS: usize = 1024;
/// The longest argument, in bytes.
pub const MAX_ARG_BYTES: usize = 64 * 1024;

/// A checked `exec` request.
#[derive(Debug, PartialEq)]
pub struct ExecRequest {
    pub command: PathBuf,
    pub args: Vec<String>,
}

/// Checks an `exec` job's arguments.
pub fn parse(job_args: &Value) -> Result<ExecRequest, BadArgs> {
    let object = job_args
        .as_object()
        .ok_or("exec: arguments must be an object")?;
    if let Some(key) = object.keys().find(|k| *k != "command" && *k != "args") {
        return bad(format!("exec: unknown field {key:?}"));
    }
    let command = object
        .get("command")
        .and_then(Value::as_str)
        .filter(|c| c.starts_with('/') && !c.contains('\0'))
        .ok_or("exec: \"command\" (an absolute path) is required")?;
    let items = match object.get("args") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err("exec: \"args\" must be an array of strings".into()),
    };
    if items.len() > MAX_ARGS {
        return bad(format!(
            "exec: at most {MAX_ARGS} args, got {}",
            items.len()
        ));
    }
    let args = items
        .iter()
        .map(|a| match a.as_str() {
            Some(s) if s.len() <= MAX_ARG_BYTES && !s.contains('\0') => Ok(s.to_string()),
            Some(_) => bad(format!(
                "exec: each arg must be at most {MAX_ARG_BYTES} bytes, without NUL"
            )),
            None => Err("exec: \"args\" must be an array of strings".into()),
        })
        .collect::<Result<_, _>>()?;
    Ok(ExecRequest {
        command: PathBuf::from(command),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_no_allow_list_could_run_is_refused() {
        assert_eq!(
            parse(&json!({"command": "/bin/echo", "args": ["a", "$HOME"]})),
            Ok(ExecRequest {
                command: "/bin/echo".into(),
                args: vec!["a".into(), "$HOME".into()]
            })
        );
        for bad in [
            json!("echo"),
            json!({}),
            json!({"command": "echo"}),
            json!({"command": "bin/echo"}),
            json!({"command": "/bin/echo\u{0}x"}),
            json!({"command": "/bin/echo", "args": "a b"}),
            json!({"command": "/bin/echo", "args": [1]}),
            json!({"command": "/bin/echo", "args": ["a\u{0}"]}),
            json!({"command": "/bin/echo", "args": ["x".repeat(MAX_ARG_BYTES + 1)]}),
            json!({"command": "/bin/echo", "args": vec!["a"; MAX_ARGS + 1]}),
            json!({"command": "/bin/echo", "shell": true}),
        ] {
            let e = parse(&bad).err().map(|e| e.0).unwrap_or_default();
            assert!(e.starts_with("exec: "), "{bad}: {e:?}");
        }
    }
}
