//! A moving rate of events per second, exponentially weighted: the
//! stats document's throughput and queue-drain estimate.
//!
//! Each event adds 1/τ to the rate, which decays by e^(−Δt/τ); with τ of a
//! minute it reads as "jobs finished per second over about the last
//! minute", without keeping any history.

use std::sync::Mutex;
use std::time::Duration;

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
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let value = self.decayed(*state, now_ms) + n as f64 / self.tau_s;
        *state = (value, now_ms.max(state.1));
    }

    /// Events per second at `now_ms`.
    pub fn per_second(&self, now_ms: u64) -> f64 {
        let state = *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.decayed(state, now_ms)
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
}
