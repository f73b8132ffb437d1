//! One run of a plan at a time: two operators must never fail over at once.
//!
//! The lock is a file created with `O_EXCL` in the plan's incident-log directory, holding who
//! took it. A lock whose process is gone (same host, pid no longer alive, or alive but started
//! later than the lock, i.e. a reused pid) is stale and is taken over, and the takeover recorded.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    /// The process's start time in clock ticks since boot (Linux), to tell a reused pid apart.
    pub pid_start: Option<u64>,
    pub host: String,
    pub run_id: String,
    pub operator: String,
    pub direction: String,
    pub since: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "plan `{plan}` is already running: {direction} run {run_id} by {operator} (pid {pid} on {host}) since {since}; lock file {path}",
        direction = holder.direction, run_id = holder.run_id, operator = holder.operator,
        pid = holder.pid, host = holder.host, since = holder.since, path = path.display()
    )]
    Held {
        plan: String,
        holder: Box<LockHolder>,
        path: PathBuf,
    },
    #[error("failed to take the run lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A held lock; released (the file removed) on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    /// Set when a stale lock was taken over, so the run can record it.
    pub replaced: Option<LockHolder>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only remove the lock if it is still ours.
        if let Ok(text) = std::fs::read_to_string(&self.path)
            && let Ok(holder) = serde_json::from_str::<LockHolder>(&text)
            && holder.pid == std::process::id()
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub fn lock_path(dir: &Path, plan: &str) -> PathBuf {
    dir.join(format!(".{plan}.lock"))
}

pub fn acquire(dir: &Path, plan: &str, me: LockHolder) -> Result<RunLock, LockError> {
    let path = lock_path(dir, plan);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut replaced = None;
    // Two attempts: the second after removing a stale lock.
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                let text = serde_json::to_string(&me).map_err(|e| io(std::io::Error::other(e)))?;
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io)?;
                return Ok(RunLock { path, replaced });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                match serde_json::from_str::<LockHolder>(&text) {
                    Ok(holder) if is_alive(&holder) => {
                        return Err(LockError::Held {
                            plan: plan.to_owned(),
                            holder: Box::new(holder),
                            path,
                        });
                    }
                    Ok(holder) => {
                        replaced = Some(holder);
                        std::fs::remove_file(&path).map_err(io)?;
                    }
                    // A lock file we cannot read was written by a crash mid-write, or by
                    // someone else: refuse rather than guess.
                    Err(_) if text.trim().is_empty() => {
                        std::fs::remove_file(&path).map_err(io)?;
                    }
                    Err(e) => {
                        return Err(io(std::io::Error::other(format!(
                            "unreadable lock file: {e}"
                        ))));
                    }
                }
            }
            Err(e) => return Err(io(e)),
        }
    }
    Err(io(std::io::Error::other(
        "the lock changed hands while it was being taken",
    )))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Start time of a process in clock ticks since boot, from `/proc/<pid>/stat` field 22.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn is_alive(holder: &LockHolder) -> bool {
    if holder.host != hostname() {
        // Another machine's lock on a shared directory: we cannot check it, so it holds.
        return true;
    }
    let Ok(pid) = i32::try_from(holder.pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only asks whether the pid exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match (holder.pid_start, process_start(holder.pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(run_id: &str) -> LockHolder {
        LockHolder {
            pid: std::process::id(),
            pid_start: process_start(std::process::id()),
            host: hostname(),
            run_id: run_id.into(),
            operator: "alice".into(),
            direction: "failover".into(),
            since: "2026-11-21T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_second_acquire_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = acquire(dir.path(), "orders", me("r1")).expect("first");
        let err = acquire(dir.path(), "orders", me("r2")).expect_err("second");
        let text = err.to_string();
        assert!(text.contains("failover run r1 by alice"), "{text}");
        drop(lock);
        acquire(dir.path(), "orders", me("r3")).expect("free again after release");
    }

    #[test]
    fn a_lock_of_a_dead_process_is_stale_and_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead_pid = child.id();
        child.wait().expect("wait");
        let mut dead = me("old");
        dead.pid = dead_pid;
        dead.pid_start = Some(1);
        std::fs::write(
            lock_path(dir.path(), "orders"),
            serde_json::to_string(&dead).expect("json"),
        )
        .expect("write");
        let lock = acquire(dir.path(), "orders", me("new")).expect("stale lock taken over");
        assert_eq!(
            lock.replaced.as_ref().map(|h| h.run_id.as_str()),
            Some("old")
        );
    }

    #[test]
    fn a_reused_pid_does_not_keep_a_lock_alive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut reused = me("old");
        reused.pid_start = reused.pid_start.map(|s| s + 1);
        std::fs::write(
            lock_path(dir.path(), "orders"),
            serde_json::to_string(&reused).expect("json"),
        )
        .expect("write");
        assert!(
            acquire(dir.path(), "orders", me("new"))
                .expect("taken")
                .replaced
                .is_some()
        );
    }
}
