//! A small client for the balancer's HTTP API.

use anyhow::Context as _;
use serde_json::Value;

/// GETs `path` from the balancer and returns its JSON body.
pub async fn get(base: &str, path: &str) -> anyhow::Result<Value> {
    request(reqwest::Method::GET, base, None, path).await
}

/// POSTs to `path` with the admin token, if any, and returns the JSON body.
pub async fn post(base: &str, token: Option<&str>, path: &str) -> anyhow::Result<Value> {
    request(reqwest::Method::POST, base, token, path).await
}

async fn request(
    method: reqwest::Method,
    base: &str,
    token: Option<&str>,
    path: &str,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut request = reqwest::Client::new().request(method, &url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the balancer at {base}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("the balancer sent a body that is not JSON for {url}"))?;
    if !status.is_success() {
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no detail");
        anyhow::bail!("{url}: {status}: {message}");
    }
    Ok(body)
}
