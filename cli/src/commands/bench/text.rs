//! The bench report as the terminal shows it.

use std::fmt;

use super::summary::BenchReport;

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} jobs: {} succeeded, {} dead, {} lost in {:.2}s ({:.0} jobs/s; submitting took {:.2}s)",
            self.jobs, self.succeeded, self.dead, self.lost, self.duration_s, self.jobs_per_s, self.submit_s
        )?;
        writeln!(
            f,
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "ms", "p50", "p90", "p99", "p99.9", "max"
        )?;
        for (key, s) in self.latencies() {
            let Some(s) = s else { continue };
            writeln!(
                f,
                "{key:<22} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                s.p50, s.p90, s.p99, s.p999, s.max
            )?;
        }
        // One kind and no device figures: the lines above said it all.
        if self.per_kind.len() > 1 || self.per_kind.values().any(|k| k.device_ms.is_some()) {
            for (kind, k) in &self.per_kind {
                let rate = k
                    .gb_per_s
                    .map(|g| format!(", p50 {:.1} GB/s", g.p50))
                    .or_else(|| k.tflop_per_s.map(|t| format!(", p50 {:.1} TFLOP/s", t.p50)))
                    .unwrap_or_default();
                let device = k
                    .device_ms
                    .map(|d| format!(", device p50 {:.3} ms", d.p50))
                    .unwrap_or_default();
                writeln!(
                    f,
                    "{kind:<22} {} jobs, {} succeeded{device}{rate}",
                    k.jobs, k.succeeded
                )?;
            }
        }
        write!(
            f,
            "makespan {:.2}s, utilization {}, {} agents used, load CV {:.3}",
            self.makespan_s,
            self.utilization
                .map(|u| format!("{:.1}%", u * 100.0))
                .unwrap_or_else(|| "-".into()),
            self.agents_used,
            self.load_cv
        )
    }
}
