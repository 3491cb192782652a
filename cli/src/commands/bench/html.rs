//! `fleetctl bench --report FILE.html`: one self-contained HTML page (no
//! script, no external asset) with the run's figures and inline SVG
//! charts: throughput over time, the end-to-end latency histogram, and
//! the load of each agent as a heat map.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::summary::BenchReport;

const W: f64 = 760.0;
const H: f64 = 180.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Bars for `values`, labelled below with `labels` (every few).
fn bars(values: &[f64], labels: &[String], color: &str) -> String {
    let max = values.iter().copied().fold(1.0, f64::max);
    let n = values.len().max(1) as f64;
    let bw = W / n;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {W} {}" width="100%" role="img">"#,
        H + 20.0
    );
    for (i, v) in values.iter().enumerate() {
        let h = v / max * (H - 10.0);
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{color}"><title>{} — {v:.1}</title></rect>"#,
            i as f64 * bw,
            H - h,
            (bw - 1.0).max(0.5),
            labels.get(i).map(String::as_str).unwrap_or("")
        );
    }
    let step = (values.len() / 8).max(1);
    for (i, l) in labels.iter().enumerate().step_by(step) {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" font-size="10" fill="#555">{}</text>"##,
            i as f64 * bw,
            H + 14.0,
            esc(l)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="2" y="10" font-size="10" fill="#555">max {max:.0}</text></svg>"##
    );
    svg
}

/// The report page.
pub fn page(
    report: &BenchReport,
    received_at: &HashMap<String, u64>,
    first_submit_ms: u64,
    e2e_ms: &[f64],
) -> String {
    // Throughput: results received per second since the first submit.
    let seconds = received_at
        .values()
        .map(|t| t.saturating_sub(first_submit_ms) / 1000)
        .max()
        .unwrap_or(0) as usize
        + 1;
    let mut per_second = vec![0.0; seconds];
    for t in received_at.values() {
        per_second[(t.saturating_sub(first_submit_ms) / 1000) as usize] += 1.0;
    }
    let second_labels: Vec<String> = (0..seconds).map(|s| format!("{s}s")).collect();

    // Latency histogram: e2e per job, in buckets doubling every two.
    let bounds: Vec<f64> = (0..40).map(|i| 2f64.powf(i as f64 / 2.0)).collect();
    let mut histogram = vec![0.0; bounds.len()];
    for l in e2e_ms {
        let i = bounds
            .iter()
            .position(|b| l <= b)
            .unwrap_or(bounds.len() - 1);
        histogram[i] += 1.0;
    }
    let bound_labels: Vec<String> = bounds.iter().map(|b| format!("≤{b:.0}ms")).collect();

    // Heat map of jobs per agent.
    let mut agents: Vec<(&str, f64)> = report
        .per_agent
        .iter()
        .map(|(id, n)| (id.as_str(), *n as f64))
        .collect();
    agents.sort_by(|a, b| a.0.cmp(b.0));
    let most = agents.iter().map(|a| a.1).fold(1.0, f64::max);
    let mut heat = String::from(r#"<div class="heat">"#);
    for (id, n) in &agents {
        let t = n / most;
        let _ = write!(
            heat,
            r#"<span title="{}: {n} jobs" style="background:rgb({},{},{})"></span>"#,
            esc(id),
            (40.0 + 200.0 * t) as u8,
            (160.0 - 100.0 * t) as u8,
            (90.0 - 60.0 * t) as u8
        );
    }
    heat.push_str("</div>");

    let mut rows = String::new();
    for (key, s) in report.latencies() {
        let Some(s) = s else { continue };
        let _ = write!(
            rows,
            "<tr><td>{key}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            s.p50, s.p90, s.p99, s.p999, s.max
        );
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>fleet bench</title>
<style>body{{font:14px system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse}}
td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.heat span{{display:inline-block;width:12px;height:12px;margin:1px;border-radius:2px}}h2{{margin-top:2rem}}</style></head>
<body><h1>fleet bench</h1>
<p>{} jobs: {} succeeded, {} dead, <b>{} lost</b>, in {:.2} s — <b>{:.0} jobs/s</b>; makespan {:.2} s, utilization {}, {} agents used, load CV {:.3}.</p>
<h2>Latency (ms)</h2><table><tr><th></th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>{rows}</table>
<h2>Throughput (results per second)</h2>{}
<h2>End-to-end latency histogram</h2>{}
<h2>Jobs per agent</h2>{heat}
</body></html>"#,
        report.jobs,
        report.succeeded,
        report.dead,
        report.lost,
        report.duration_s,
        report.jobs_per_s,
        report.makespan_s,
        report
            .utilization
            .map(|u| format!("{:.1}%", u * 100.0))
            .unwrap_or_else(|| "-".into()),
        report.agents_used,
        report.load_cv,
        bars(&per_second, &second_labels, "#2f81f7"),
        bars(&histogram, &bound_labels, "#3fb950"),
    )
}
