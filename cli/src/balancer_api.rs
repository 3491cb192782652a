//! A small client for the balancer's HTTP API.
//!
//! Replies are read into the `fleet_protocol::api` types the balancer
//! answers with, so a renamed field is a compile error on one side or a
//! clear "does not match" error here, never a silent `null`. `--json`
//! output passes the balancer's document through as it came ([`get_raw`]),
//! so scripts see every field, even ones this fleetctl does not know.

use anyhow::Context as _;
use fleet_protocol::api::ErrorBody;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// GETs `path` from the balancer and reads its body as a `T`.
pub async fn get<T: DeserializeOwned>(base: &str, path: &str) -> anyhow::Result<T> {
    let (url, body) = request(reqwest::Method::GET, base, None, path).await?;
    decode(&url, body)
}

/// GETs `path` from the balancer and returns its JSON body untouched.
pub async fn get_raw(base: &str, path: &str) -> anyhow::Result<Value> {
    Ok(request(reqwest::Method::GET, base, None, path).await?.1)
}

/// POSTs to `path` with the admin token, if any; returns the body both
/// untouched (for `--json`) and read as a `T`.
pub async fn post<T: DeserializeOwned>(
    base: &str,
    token: Option<&str>,
    path: &str,
) -> anyhow::Result<(Value, T)> {
    let (url, body) = request(reqwest::Method::POST, base, token, path).await?;
    let typed = decode(&url, body.clone())?;
    Ok((body, typed))
}

fn decode<T: DeserializeOwned>(url: &str, body: Value) -> anyhow::Result<T> {
    serde_json::from_value(body).with_context(|| {
        format!("the balancer's reply to {url} does not match this fleetctl's API types")
    })
}

async fn request(
    method: reqwest::Method,
    base: &str,
    token: Option<&str>,
    path: &str,
) -> anyhow::Result<(String, Value)> {
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
        let message = serde_json::from_value::<ErrorBody>(body)
            .map(|b| b.error)
            .unwrap_or_else(|_| "no detail".into());
        anyhow::bail!("{url}: {status}: {message}");
    }
    Ok((url, body))
}
