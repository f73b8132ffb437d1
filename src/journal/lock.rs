//! One run of a plan at a time: two operators must never fail over at once.
//!
//! The lock is an advisory lock (`flock`) on a file in the plan's incident-log directory; the
//! file says who holds it. The kernel drops the lock when its process dies, however it dies, so
//! a crashed run never blocks the next one, and two runs racing for the lock can never both win
//! (an earlier version created the file with `O_EXCL` and wrote it next: a racer that read it
//! empty in between took it as a crash's leftover and removed it). A file left behind by a run
//! that did not finish (SIGKILL, power loss) is taken over, and the takeover recorded.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
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
    /// Held by a run that has taken the lock and not yet written who it is.
    #[error("plan `{plan}` is already running (a run is starting: lock file {})", path.display())]
    Starting { plan: String, path: PathBuf },
    #[error("failed to take the run lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A held lock; released (the file removed, then the lock dropped with the file) on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    file: File,
    /// Set when the file of a run that did not finish was taken over, so the run can record it.
    pub replaced: Option<LockHolder>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Still ours while `file` is open and locked: remove the name, then the lock goes with
        // the descriptor. A racer that opened the old file sees it unlinked and tries again.
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub fn lock_path(dir: &Path, plan: &str) -> PathBuf {
    dir.join(format!(".{plan}.lock"))
}

/// Whether `path` still names the file `file` has open.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

pub fn acquire(dir: &Path, plan: &str, me: LockHolder) -> Result<RunLock, LockError> {
    let path = lock_path(dir, plan);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    // A few attempts: the holder may release (and unlink) between our open and our lock.
    for _ in 0..5 {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // The holder writes who it is right after locking: give it a moment, so the
                // refusal can name it.
                let mut text = String::new();
                for _ in 0..25 {
                    text.clear();
                    let _ = file.rewind();
                    let _ = file.read_to_string(&mut text);
                    if serde_json::from_str::<LockHolder>(&text).is_ok() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                return Err(match serde_json::from_str::<LockHolder>(&text) {
                    Ok(holder) => LockError::Held {
                        plan: plan.to_owned(),
                        holder: Box::new(holder),
                        path,
                    },
                    Err(_) => LockError::Starting {
                        plan: plan.to_owned(),
                        path,
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        if !same_file(&file, &path) {
            continue;
        }
        // Locked, and the path is ours. Whatever the file says is a run that did not finish.
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
        let replaced = serde_json::from_str::<LockHolder>(&text).ok();
        let record = serde_json::to_string(&me).map_err(|e| io(std::io::Error::other(e)))?;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(record.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        return Ok(RunLock {
            path,
            file,
            replaced,
        });
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
    fn racing_runs_never_both_take_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        for round in 0..200 {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let winners: Vec<Option<RunLock>> = std::thread::scope(|scope| {
                let racers: Vec<_> = (0..4)
                    .map(|i| {
                        let barrier = std::sync::Arc::clone(&barrier);
                        let dir = dir.path();
                        scope.spawn(move || {
                            barrier.wait();
                            acquire(dir, "orders", me(&format!("r{round}-{i}"))).ok()
                        })
                    })
                    .collect();
                racers
                    .into_iter()
                    .map(|r| r.join().expect("racer"))
                    .collect()
            });
            let held = winners.iter().filter(|w| w.is_some()).count();
            assert_eq!(held, 1, "round {round}: {held} runs took the lock");
        }
    }

    #[test]
    fn a_lock_file_nobody_holds_is_taken_over_even_if_it_names_a_live_pid() {
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
