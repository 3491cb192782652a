//! `fleet-agent selftest`: runs each CUDA workload on every local GPU and
//! checks it against a CPU reference.

use serde_json::json;

use crate::gpu;
use crate::workloads::vector_add;

const N: u64 = 1 << 24;

/// Runs the checks and prints a table or JSON; true when all passed.
pub async fn run(as_json: bool) -> anyhow::Result<bool> {
    let gpus = gpu::detect();
    let mut rows = Vec::new();
    let mut all_ok = true;
    for g in &gpus {
        let index = g.index as usize;
        let report = tokio::task::spawn_blocking(move || vector_add::run(index, N)).await?;
        let row = match report {
            Ok(r) => {
                all_ok &= r.correct;
                json!({"gpu": g.index, "name": g.name, "kind": vector_add::KIND, "size": r.n,
                       "correct": r.correct, "device_ms": r.device_ms, "gb_per_s": r.gb_per_s})
            }
            Err(e) => {
                all_ok = false;
                json!({"gpu": g.index, "name": g.name, "kind": vector_add::KIND, "size": N,
                       "correct": false, "error": e})
            }
        };
        rows.push(row);
    }
    if as_json {
        println!(
            "{}",
            json!({"gpus": gpus, "driver_present": gpu::driver_present(), "results": rows, "ok": all_ok})
        );
    } else if gpus.is_empty() {
        println!(
            "no usable CUDA GPU on this machine (driver present: {}); nothing to test",
            gpu::driver_present()
        );
    } else {
        println!(
            "{:<4} {:<24} {:<18} {:>10} {:>8} {:>10} {:>9}",
            "gpu", "name", "kind", "size", "correct", "device ms", "GB/s"
        );
        for r in &rows {
            println!(
                "{:<4} {:<24} {:<18} {:>10} {:>8} {:>10.3} {:>9.1}",
                r["gpu"],
                r["name"].as_str().unwrap_or("?"),
                r["kind"].as_str().unwrap_or("?"),
                r["size"],
                r["correct"],
                r["device_ms"].as_f64().unwrap_or(f64::NAN),
                r["gb_per_s"].as_f64().unwrap_or(f64::NAN)
            );
            if let Some(e) = r.get("error") {
                println!("     error: {e}");
            }
        }
    }
    Ok(all_ok)
}
