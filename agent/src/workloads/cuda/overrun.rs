//! What happens to a GPU when a CUDA job outlives its time.
//!
//! A CUDA call cannot be cancelled: when a job times out (or is cancelled)
//! its attempt ends, but the kernel keeps running on its blocking thread,
//! and every later job on that GPU would queue behind it. So the GPU is
//! marked *overrun*: jobs sent to it wait, before any CUDA call, for the
//! overrun job to end; they can still time out or be cancelled while they
//! wait, at no cost to the GPU. If the overrun job ends within the grace
//! period they go on. If not — a user's kernel that never ends — nothing
//! short of ending the process frees the GPU, so the agent exits with
//! [`EXIT_GPU_WEDGED`]; its supervisor (systemd, Kubernetes, compose's
//! `restart:`) starts it again, and the balancer re-queues the jobs it held,
//! as for any agent that died.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The agent's exit status when a GPU stays held by a job past its grace.
pub const EXIT_GPU_WEDGED: i32 = 75;

/// Ends the agent with [`EXIT_GPU_WEDGED`] because GPU `gpu` cannot be
/// freed or repaired from inside the process (`why`); the driver resets
/// its context when the process ends, and the supervisor restarts it.
pub fn exit_to_free(gpu: usize, why: &str) -> ! {
    tracing::error!(
        gpu,
        why,
        "exiting so the driver frees the GPU (the supervisor restarts the agent)"
    );
    eprintln!("fleet-agent: GPU {gpu}: {why}; exiting with status {EXIT_GPU_WEDGED} to free it");
    // No destructor runs past exit: the exec jobs' guards would not kill
    // their commands, which would run on unsupervised.
    let killed = crate::workloads::process_groups::LIVE.kill_all();
    if killed > 0 {
        tracing::warn!(gpu, killed, "killed the exec jobs still running");
    }
    std::process::exit(EXIT_GPU_WEDGED);
}

/// What to do when a GPU stays wedged: in the agent, log and exit.
pub type OnWedged = Arc<dyn Fn(usize, &str) + Send + Sync>;

/// The job still running on an overrun GPU.
#[derive(Clone)]
struct Holder {
    job_id: String,
    /// Becomes true when its work ends; closed if the work panicked.
    ended: watch::Receiver<bool>,
}

/// The overrun GPUs of this agent, shared by all its CUDA jobs.
#[derive(Clone)]
pub struct Overruns {
    /// GPU index → the job still running on it.
    overrun: Arc<Mutex<HashMap<usize, Holder>>>,
    grace: Duration,
    on_wedged: OnWedged,
}

impl Overruns {
    pub fn new(grace: Duration, on_wedged: OnWedged) -> Overruns {
        Overruns {
            overrun: Arc::default(),
            grace,
            on_wedged,
        }
    }

    /// Exits the process: the only way to free a GPU a kernel holds.
    pub fn exiting(grace: Duration) -> Overruns {
        Overruns::new(
            grace,
            Arc::new(|gpu, job_id| {
                exit_to_free(
                    gpu,
                    &format!("CUDA job {job_id} still holds it past its timeout and grace"),
                )
            }),
        )
    }

    /// The job still holding `gpu` after its attempt ended, if any.
    #[cfg(test)]
    fn holder(&self, gpu: usize) -> Option<String> {
        self.lock().get(&gpu).map(|h| h.job_id.clone())
    }

    /// Waits until no overrun job holds `gpu` (at once if none does).
    async fn free(&self, gpu: usize, job_id: &str) {
        let Some(mut holder) = self.lock().get(&gpu).cloned() else {
            return;
        };
        tracing::info!(
            gpu,
            job_id,
            holder = holder.job_id,
            "waiting for an overrun job to leave the GPU"
        );
        // Ended, or its sender gone (the work panicked): the GPU is free.
        let _ = holder.ended.wait_for(|done| *done).await;
    }

    /// Runs `work` (blocking CUDA calls) for `job_id` on `gpu`, once no
    /// overrun job holds it. If this future is dropped after `work` began
    /// and before it ends, the GPU is overrun until it does.
    pub async fn run<T: Send + 'static>(
        &self,
        gpu: usize,
        job_id: &str,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        self.free(gpu, job_id).await;
        let (done, finished) = watch::channel(false);
        let task = tokio::task::spawn_blocking(move || {
            let outcome = work();
            let _ = done.send(true);
            outcome
        });
        let guard = Unfinished {
            overruns: self.clone(),
            gpu,
            job_id: job_id.to_string(),
            finished: Some(finished),
        };
        let outcome = task.await.map_err(|e| format!("workload task failed: {e}"));
        guard.disarm();
        outcome?
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<usize, Holder>> {
        self.overrun.lock()
    }

    /// Marks `gpu` overrun and watches the job: freed when it ends within
    /// the grace, `on_wedged` if it does not.
    fn watch(&self, gpu: usize, job_id: String, mut finished: watch::Receiver<bool>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::warn!(gpu, job_id, grace = ?self.grace, "CUDA job outlived its attempt; the GPU's next jobs wait for it");
        self.lock().insert(
            gpu,
            Holder {
                job_id: job_id.clone(),
                ended: finished.clone(),
            },
        );
        let overruns = self.clone();
        runtime.spawn(async move {
            let ended = tokio::time::timeout(overruns.grace, finished.wait_for(|done| *done)).await;
            match ended {
                Ok(_) => {
                    tracing::info!(gpu, job_id, "overrun CUDA job ended; the GPU is free");
                    let mut overrun = overruns.lock();
                    // Only this job's entry: a later overrun may hold it now.
                    if overrun.get(&gpu).is_some_and(|h| h.job_id == job_id) {
                        overrun.remove(&gpu);
                    }
                }
                Err(_) => (overruns.on_wedged)(gpu, &job_id),
            }
        });
    }
}

/// Watches a job whose attempt ended (dropped) before its CUDA work did.
struct Unfinished {
    overruns: Overruns,
    gpu: usize,
    job_id: String,
    finished: Option<watch::Receiver<bool>>,
}

impl Unfinished {
    fn disarm(mut self) {
        self.finished = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(finished) = self.finished.take() else {
            return;
        };
        if *finished.borrow() {
            return;
        }
        self.overruns
            .watch(self.gpu, std::mem::take(&mut self.job_id), finished);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The GPUs and jobs reported wedged.
    type Wedged = Arc<Mutex<Vec<(usize, String)>>>;

    fn recording(grace: Duration) -> (Overruns, Wedged) {
        let wedged = Arc::new(Mutex::new(Vec::new()));
        let seen = wedged.clone();
        let overruns = Overruns::new(
            grace,
            Arc::new(move |gpu, job: &str| {
                seen.lock().push((gpu, job.to_string()));
            }),
        );
        (overruns, wedged)
    }

    async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_job_that_ends_in_time_leaves_the_gpu_free() {
        let (overruns, wedged) = recording(Duration::from_secs(5));
        let r = overruns.run(0, "job-1", || Ok(7)).await;
        assert_eq!(r, Ok(7));
        assert_eq!(overruns.holder(0), None);
        assert!(wedged.lock().is_empty());
    }

    /// A "kernel" that runs until released.
    fn held() -> (
        Arc<AtomicBool>,
        impl FnOnce() -> Result<(), String> + Send + 'static,
    ) {
        let release = Arc::new(AtomicBool::new(false));
        let hold = release.clone();
        let work = move || {
            while !hold.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        };
        (release, work)
    }

    #[tokio::test]
    async fn later_jobs_on_an_overrun_gpu_wait_for_it_and_may_time_out_waiting(
    ) -> Result<(), String> {
        let (overruns, wedged) = recording(Duration::from_secs(10));
        let (release, work) = held();
        // The attempt's timeout drops it; the "kernel" runs on.
        let attempt = overruns.run(1, "slow", work);
        assert!(tokio::time::timeout(Duration::from_millis(50), attempt)
            .await
            .is_err());
        assert_eq!(overruns.holder(1), Some("slow".into()));

        // A job that times out while waiting costs nothing: it never began.
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let waiting = overruns.run(1, "impatient", move || {
            r.store(true, Ordering::SeqCst);
            Ok(())
        });
        assert!(tokio::time::timeout(Duration::from_millis(50), waiting)
            .await
            .is_err());
        assert!(!ran.load(Ordering::SeqCst));
        assert_eq!(overruns.holder(1), Some("slow".into()));

        // Another GPU is not held up.
        assert_eq!(overruns.run(0, "other-gpu", || Ok(())).await, Ok(()));

        // A job that waits long enough runs once the overrun job ends.
        let next = tokio::spawn({
            let overruns = overruns.clone();
            async move { overruns.run(1, "next", || Ok("ran")).await }
        });
        release.store(true, Ordering::SeqCst);
        assert_eq!(next.await.map_err(|e| e.to_string())?, Ok("ran"));
        wait_for("the GPU to be freed", || overruns.holder(1).is_none()).await;
        assert!(wedged.lock().is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_job_that_never_ends_wedges_the_gpu_after_the_grace() {
        let (overruns, wedged) = recording(Duration::from_millis(100));
        let (release, work) = held();
        let attempt = overruns.run(2, "endless", work);
        assert!(tokio::time::timeout(Duration::from_millis(20), attempt)
            .await
            .is_err());
        wait_for("the wedge", || !wedged.lock().is_empty()).await;
        assert_eq!(wedged.lock().clone(), vec![(2, "endless".to_string())]);
        // Let the blocking thread end, so the runtime can shut down.
        release.store(true, Ordering::SeqCst);
    }
}
