//! Whether jobs wait in the queue: a hint the scheduler and the intake
//! share, so the intake places new jobs itself only when it may.
//!
//! A new job may skip the queue (leased in the same script call that
//! admits it) only while no job waits there, or it would overtake them.
//! The enqueue script checks that itself, so this hint only spares the
//! intake from choosing agents for jobs that would be queued anyway; when
//! it is stale, a job takes the queue's path, never a wrong one.

use std::sync::atomic::{AtomicBool, Ordering};

/// The shared hint; starts as "jobs may be waiting".
#[derive(Debug)]
pub struct Backlog {
    waiting: AtomicBool,
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog {
            waiting: AtomicBool::new(true),
        }
    }
}

impl Backlog {
    /// The scheduler read the head of the queue and found nothing.
    pub fn mark_empty(&self) {
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// Jobs were queued.
    pub fn mark_waiting(&self) {
        self.waiting.store(true, Ordering::Relaxed);
    }

    pub fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }
}
