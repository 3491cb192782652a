//! The process groups of the `exec` jobs running now, so that none outlives
//! the agent.
//!
//! A cancelled or timed-out job kills its own group (`exec.rs`). But when
//! the agent ends itself, to free a GPU (`std::process::exit` with status
//! 75), no destructor runs, so each running job's guard never fires: the
//! agent kills every group listed here first. (When the agent is killed
//! outright, each job's first process gets SIGKILL from the kernel instead,
//! `exec.rs`'s parent-death signal; what that process started is left to
//! the agent's supervisor: a container, or a systemd unit's cgroup.)

use parking_lot::Mutex;
use std::collections::BTreeSet;

/// A set of process group ids.
#[derive(Debug, Default)]
pub struct ProcessGroups(Mutex<BTreeSet<i32>>);

/// The agent's running `exec` jobs.
pub static LIVE: ProcessGroups = ProcessGroups::new();

impl ProcessGroups {
    pub const fn new() -> ProcessGroups {
        ProcessGroups(Mutex::new(BTreeSet::new()))
    }

    fn set(&self) -> parking_lot::MutexGuard<'_, BTreeSet<i32>> {
        self.0.lock()
    }

    pub fn add(&self, pgid: i32) {
        self.set().insert(pgid);
    }

    pub fn remove(&self, pgid: i32) {
        self.set().remove(&pgid);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set().len()
    }

    /// Sends SIGKILL to every group and forgets them; returns how many.
    pub fn kill_all(&self) -> usize {
        let groups = std::mem::take(&mut *self.set());
        for &pgid in &groups {
            kill_group(pgid);
        }
        groups.len()
    }
}

/// Sends SIGKILL to process group `pgid`.
pub fn kill_group(pgid: i32) {
    // kill(2) with a negative pid signals the group; a group id ≤ 1 would
    // mean every process we may signal, or ourselves.
    if pgid > 1 {
        // SAFETY: kill(2) touches no memory of ours. A group that already
        // exited makes it fail with ESRCH, which is fine.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn kill_all_kills_each_group_with_what_it_started() -> std::io::Result<()> {
        let groups = ProcessGroups::new();
        // Each a shell that started a sleep of its own: the whole group
        // must go, not only its first process.
        let mut children = Vec::new();
        for _ in 0..2 {
            let child = Command::new("/bin/sh")
                .args(["-c", "sleep 60 & wait"])
                .process_group(0)
                .spawn()?;
            groups.add(child.id() as i32);
            children.push(child);
        }
        assert_eq!(groups.len(), 2);
        for child in &children {
            wait_for(|| live_members(child.id() as i32) == 2, "the sleep started");
        }
        assert_eq!(groups.kill_all(), 2);
        assert_eq!(groups.len(), 0);
        for mut child in children {
            let pgid = child.id() as i32;
            assert_eq!(child.wait()?.signal(), Some(libc::SIGKILL));
            // The sleep went too (the kernel may take a moment).
            wait_for(|| live_members(pgid) == 0, "the whole group killed");
        }
        Ok(())
    }

    #[test]
    fn a_group_removed_is_not_killed() {
        let groups = ProcessGroups::new();
        groups.add(12345);
        groups.remove(12345);
        assert_eq!(groups.kill_all(), 0);
    }

    /// Waits up to 5 s for `done`, failing the test with `what` after.
    fn wait_for(done: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "not within 5 s: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Processes in group `pgid` that are alive: not zombies, which stay
    /// listed until whoever adopted them reaps them.
    fn live_members(pgid: i32) -> usize {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0;
        };
        let pgid = pgid.to_string();
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .filter(|stat| {
                // After the command name's closing parenthesis: state,
                // ppid, pgrp.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.as_str())
            })
            .count()
    }
}
