//! What both test binaries (tests/e2e and tests/brokers) need to drive the built kdr: the
//! command with a fixed environment, what an invocation did, bounded polling, and reading an
//! incident log back. Included by each with `#[path = "../common/mod.rs"] mod common;`.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const KDR: &str = env!("CARGO_BIN_EXE_kdr");

/// The built kdr in `dir` with `args`, as a test runs it: no colour, a wide table, no
/// `KDR_LOG` from the caller's environment, nothing on stdin, stdout and stderr captured.
pub fn kdr_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(KDR);
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
        .env_remove("KDR_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// What a kdr invocation did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// A process killed by a signal reads as a shell would say it: 128 + the signal.
    pub fn new(status: ExitStatus, stdout: String, stderr: String) -> Run {
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            stdout,
            stderr,
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Polls until `cond` holds, at most `bound`; panics with `what` otherwise.
pub fn wait_until(bound: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < bound,
            "timed out after {bound:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Events of an incident log as JSON values.
pub fn events(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// The process groups (each a hook's pid) of the hooks a log saw start and never end: a kdr
/// killed with SIGKILL leaves them running.
pub fn orphaned_hooks(log: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in events(log) {
        let pid = e["data"]["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok());
        match (e["name"].as_str(), pid) {
            (Some("hook_started"), Some(pid)) => pids.push(pid),
            (Some("output"), Some(pid)) => pids.retain(|p| *p != pid),
            _ => {}
        }
    }
    pids
}

/// Waits until no orphaned hook of the log is running, after killing them (SIGKILL to each
/// process group) when `kill` is set.
pub fn end_orphaned_hooks(log: &Path, kill: bool) {
    for pgid in orphaned_hooks(log) {
        if kill {
            // SAFETY: signalling the process group of a hook the test's kdr started.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        wait_until(Duration::from_secs(20), "the orphaned hook to end", || {
            !kdr::steps::group_alive(pgid)
        });
    }
}
