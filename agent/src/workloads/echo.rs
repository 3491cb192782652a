//! `echo`: returns its arguments unchanged.

use serde_json::Value;

pub fn run(args: &Value) -> Result<Value, String> {
    Ok(args.clone())
}
