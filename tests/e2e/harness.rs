//! A small harness: a scratch directory per test, plans written into it, the binary run with a
//! bounded wait, and output with timestamps, durations and run ids redacted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub use crate::common::{KDR, Run, end_orphaned_hooks, events, orphaned_hooks, wait_until};

/// How long any single kdr invocation may take before the test calls it hung.
pub const RUN_BOUND: Duration = Duration::from_secs(60);

pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    /// Write a plan whose clusters are never contacted (only exec/pause steps) with the given
    /// step lists, logging into `<scratch>/incidents`.
    pub fn exec_plan(&self, name: &str, failover: &str, failback: &str) -> PathBuf {
        let text = format!(
            "version: 1\nname: {name}\nclusters:\n  primary: {{ bootstrap_servers: \"127.0.0.1:1\" }}\n  dr: {{ bootstrap_servers: \"127.0.0.1:2\" }}\nreplication: {{ topics: [orders] }}\nfailover:\n{failover}failback:\n{failback}"
        );
        self.write(&format!("{name}.yaml"), &text)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.file(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    pub fn command(&self, args: &[&str]) -> Command {
        crate::common::kdr_command(self.path(), args)
    }

    pub fn kdr(&self, args: &[&str]) -> Run {
        let child = self.command(args).spawn().expect("spawn kdr");
        wait(child, RUN_BOUND)
    }

    /// The incident logs written so far, oldest first (by when each was created).
    pub fn logs(&self) -> Vec<PathBuf> {
        let dir = self.file("incidents");
        let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort_by_key(|p| {
            let created = std::fs::metadata(p)
                .and_then(|m| m.created().or_else(|_| m.modified()))
                .ok();
            (created, p.clone())
        });
        logs
    }
}

/// Wait for a child with a bound; a child still running at the bound is killed and the test fails.
pub fn wait(mut child: Child, bound: Duration) -> Run {
    let start = Instant::now();
    // Drain both pipes while waiting: output larger than a pipe's buffer would block the child.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                p.read_to_string(&mut text).expect("output");
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status: ExitStatus = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            panic!("kdr did not finish within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    Run::new(status, stdout, stderr)
}

/// Replace what changes from run to run: times, durations, run ids, the scratch path.
pub fn redact(text: &str, scratch: &Path) -> String {
    let text = text.replace(&scratch.display().to_string(), "<dir>");
    let patterns = [
        (r"\d{8}T\d{6}Z-[0-9a-f]{6}", "<run>"),
        (r"\d{8}T\d{6}Z", "<time>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<ts>"),
        (r"\b\d+(\.\d+)?(ms|s)\b", "<dur>"),
        (r"\b\d+m \d\ds\b", "<dur>"),
    ];
    let mut out = text;
    for (pattern, with) in patterns {
        out = regex::Regex::new(pattern)
            .expect("regex")
            .replace_all(&out, with)
            .into_owned();
    }
    out
}

/// `(event, step, status)` triples of a log, for asserting its shape.
pub fn shape(log: &Path) -> Vec<String> {
    events(log)
        .iter()
        .filter(|e| e["event"] != "observation" && e["event"] != "decision")
        .map(|e| {
            let mut s = e["event"].as_str().unwrap_or("?").to_owned();
            if let Some(step) = e.get("step").and_then(|v| v.as_u64()) {
                s.push_str(&format!(" {step}"));
            }
            for key in ["status", "outcome"] {
                if let Some(v) = e.get(key).and_then(|v| v.as_str()) {
                    s.push_str(&format!(" {v}"));
                }
            }
            s
        })
        .collect()
}
