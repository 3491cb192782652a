//! Reading the balancer's Prometheus `/metrics` in tests.

use std::collections::HashMap;

use crate::Fleet;

/// Parses Prometheus text format strictly enough to catch a malformed
/// exposition: `name{labels} value` per sample, `# HELP`/`# TYPE` comments.
pub fn parse_prometheus(text: &str) -> anyhow::Result<HashMap<String, f64>> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let kind = comment.split_whitespace().next().unwrap_or_default();
            anyhow::ensure!(kind == "HELP" || kind == "TYPE", "bad comment: {line}");
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow::anyhow!("no value: {line}"))?;
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        anyhow::ensure!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in: {line}"
        );
        if name_end < series.len() {
            anyhow::ensure!(series.ends_with('}'), "unclosed labels: {line}");
        }
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .map_err(|e| anyhow::anyhow!("bad value in {line}: {e}"))?,
        };
        samples.insert(series.to_string(), value);
    }
    Ok(samples)
}

/// The balancer's `/metrics`, checked to be Prometheus text and parsed.
pub async fn scrape(fleet: &Fleet) -> anyhow::Result<HashMap<String, f64>> {
    let reply = reqwest::get(format!("{}/metrics", fleet.balancer_url())).await?;
    anyhow::ensure!(reply.status().is_success(), "status {}", reply.status());
    let content_type = reply
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(content_type.starts_with("text/plain"), "{content_type}");
    parse_prometheus(&reply.text().await?)
}

/// One series' value (`name{labels}` as exposed), NaN when absent.
pub fn get(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(f64::NAN)
}
