//! Recent activity for the stats document: a moving rate of events per
//! second ([`Rate`]: throughput and the queue-drain estimate) and a window
//! of recent samples ([`Recent`]: throughput over 1 and 5 minutes, and
//! queue-wait and run-time percentiles).
//!
//! Each event adds 1/τ to a [`Rate`], which decays by e^(−Δt/τ); with τ of
//! a minute it reads as "jobs finished per second over about the last
//! minute", without keeping any history.

use parking_lot::Mutex;
use std::time::Duration;

use fleet_protocol::api::{Failure, Percentiles};

pub struct Rate {
    tau_s: f64,
    state: Mutex<(f64, u64)>,
}

impl Rate {
    pub fn new(tau: Duration) -> Rate {
        Rate {
            tau_s: tau.as_secs_f64().max(0.001),
            state: Mutex::new((0.0, 0)),
        }
    }

    fn decayed(&self, (value, last_ms): (f64, u64), now_ms: u64) -> f64 {
        let dt = now_ms.saturating_sub(last_ms) as f64 / 1000.0;
        value * (-dt / self.tau_s).exp()
    }

    /// `n` events happened at `now_ms`.
    pub fn add(&self, n: u64, now_ms: u64) {
        let mut state = self.state.lock();
        let value = self.decayed(*state, now_ms) + n as f64 / self.tau_s;
        *state = (value, now_ms.max(state.1));
    }

    /// Events per second at `now_ms`.
    pub fn per_second(&self, now_ms: u64) -> f64 {
        let state = *self.state.lock();
        self.decayed(state, now_ms)
    }
}

/// What the leader has seen end recently: the moving rate and the
/// window of samples, shared by the event consumer (which records) and
/// the HTTP API (which reports).
pub struct Activity {
    /// Jobs ending (succeeded or dead) per second, over about a minute.
    pub finished: Rate,
    /// The same over about five minutes.
    pub finished_5m: Rate,
    /// Jobs succeeding per second, over about one and five minutes.
    pub succeeded_1m: Rate,
    pub succeeded_5m: Rate,
    /// Succeeded jobs' queue wait and run time.
    pub recent: Recent,
    /// The latest failed attempts, newest last.
    failures: Mutex<std::collections::VecDeque<Failure>>,
}

/// How many failed attempts [`Activity`] remembers.
const FAILURES_KEPT: usize = 20;

impl Default for Activity {
    fn default() -> Self {
        Activity {
            finished: Rate::new(Duration::from_secs(60)),
            finished_5m: Rate::new(Duration::from_secs(300)),
            succeeded_1m: Rate::new(Duration::from_secs(60)),
            succeeded_5m: Rate::new(Duration::from_secs(300)),
            recent: Recent::new(Duration::from_secs(300), 200_000),
            failures: Mutex::new(std::collections::VecDeque::new()),
        }
    }
}

impl Activity {
    /// Remembers a failed attempt.
    pub fn failed(&self, failure: Failure) {
        let mut list = self.failures.lock();
        list.push_back(failure);
        while list.len() > FAILURES_KEPT {
            list.pop_front();
        }
    }

    /// The latest failed attempts, newest first.
    pub fn failures(&self) -> Vec<Failure> {
        let list = self.failures.lock();
        list.iter().rev().cloned().collect()
    }
}

/// Samples of the last few minutes, bounded in count.
pub struct Recent {
    window_ms: u64,
    max: usize,
    samples: Mutex<std::collections::VecDeque<(u64, f64, f64)>>,
}

impl Recent {
    pub fn new(window: Duration, max: usize) -> Recent {
        Recent {
            window_ms: window.as_millis() as u64,
            max,
            samples: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, std::collections::VecDeque<(u64, f64, f64)>> {
        self.samples.lock()
    }

    /// A job finished at `now_ms` after waiting `queue_wait_ms` and running `run_ms`.
    pub fn add(&self, now_ms: u64, queue_wait_ms: u64, run_ms: u64) {
        let mut samples = self.lock();
        samples.push_back((now_ms, queue_wait_ms as f64, run_ms as f64));
        while samples.len() > self.max {
            samples.pop_front();
        }
    }

    /// Queue-wait and run-time percentiles (ms) over the window (of the
    /// latest samples, at most the cap).
    pub fn percentiles(&self, now_ms: u64) -> Option<(Percentiles, Percentiles)> {
        let since = now_ms.saturating_sub(self.window_ms);
        // Copy out under the lock, sort outside it: the event consumer
        // records into the same window.
        let samples: Vec<(u64, f64, f64)> = {
            let mut samples = self.lock();
            while samples.front().is_some_and(|s| s.0 < since) {
                samples.pop_front();
            }
            samples.iter().copied().collect()
        };
        if samples.is_empty() {
            return None;
        }
        let pick = |f: fn(&(u64, f64, f64)) -> f64| {
            let mut v: Vec<f64> = samples.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            Percentiles {
                p50: at(0.5),
                p90: at(0.9),
                p99: at(0.99),
                max: v[v.len() - 1],
            }
        };
        Some((pick(|s| s.1), pick(|s| s.2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_stream_reads_as_its_rate_and_silence_decays() {
        let rate = Rate::new(Duration::from_secs(10));
        // 50 events a second for a minute: six time constants.
        for ms in (0..60_000).step_by(20) {
            rate.add(1, ms);
        }
        let r = rate.per_second(60_000);
        assert!((r - 50.0).abs() < 1.0, "{r}");
        let later = rate.per_second(60_000 + 10_000);
        assert!((later - r / std::f64::consts::E).abs() < 1.0, "{later}");
        assert_eq!(Rate::new(Duration::from_secs(1)).per_second(5), 0.0);
    }

    #[test]
    fn recent_samples_give_windowed_percentiles() {
        let recent = Recent::new(Duration::from_secs(300), 10_000);
        assert_eq!(recent.percentiles(0), None);
        // 10 jobs a second for 5 minutes; waits 0..99 ms, runs 100 ms.
        for i in 0..3000u64 {
            recent.add(i * 100, i % 100, 100);
        }
        let now = 300_000;
        let (wait, run) = recent.percentiles(now).unwrap_or((
            Percentiles {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
            },
            Percentiles {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
            },
        ));
        assert!((wait.p50 - 50.0).abs() <= 1.0, "{wait:?}");
        assert!((wait.p99 - 98.0).abs() <= 1.0, "{wait:?}");
        assert_eq!(run.p50, 100.0);
        // Old samples leave the window.
        assert_eq!(recent.percentiles(now + 600_000), None);
    }
}
