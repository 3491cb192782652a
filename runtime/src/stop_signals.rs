//! What every long-running fleet binary takes as a request to stop:
//! SIGTERM (a supervisor: `docker stop`, `systemctl stop`) or SIGINT
//! (Ctrl-C). The agent and the balancer each decide what stopping means.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The process's SIGTERM and SIGINT handlers.
pub struct StopSignals {
    term: Signal,
    interrupt: Signal,
}

impl StopSignals {
    /// Installs the handlers now, so a signal that comes before the first
    /// [`StopSignals::next`] is not lost (nor left to kill the process).
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the next SIGTERM or SIGINT.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
