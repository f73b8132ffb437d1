//! `make bench-engine`: what kdr itself costs around a plan's own waits (issue 10, target 4),
//! printed, not asserted.
//!
//! A whole failover on the embedded world (two in-process clusters with every topic a two-way
//! MirrorMaker 2 deployment has), run by the built kdr as an operator runs it: declare,
//! quiesce_producers, wait_replication, repoint, translate_offsets and an exec hook. The only
//! wait the plan declares is quiesce's `idle_for` (the producers must be seen idle that long;
//! nothing writes, so it ends right after it), replication is caught up at the first poll and
//! the hooks are `true`, so the run's time beyond `idle_for` is kdr's own: process start-up,
//! plan loading, the lock, the incident log (fsynced per event), the authority claim, every
//! Kafka question the steps ask, and the summary. Three runs, each on a fresh world (a second
//! failover of the same world is refused, DR owning writes). Then `kdr plan check` of the same
//! plan, twenty times.
//!
//! `KDR_BENCH_EVENTS=1` prints each run's events with their times (where the time goes).
//! Under `cargo test` (no `--bench` argument) it runs once, and `plan check` three times, as a
//! smoke test.

#[path = "../tests/common/mod.rs"]
#[expect(
    dead_code,
    reason = "the shared test helpers serve many tests; a bench uses a part of them"
)]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use kdr::rehearsal::{EmbeddedWorld, Role, WorldSpec};

/// The plan's one declared wait.
const IDLE_FOR: Duration = Duration::from_secs(1);

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (failovers, checks) = if bench { (3, 20) } else { (1, 3) };
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..failovers {
        failover(dir.path());
    }
    let mut took: Vec<Duration> = (0..checks)
        .map(|_| {
            let started = Instant::now();
            let run = kdr(dir.path(), &["plan", "check", "drill.yaml"]);
            assert_eq!(run.code, 0, "{run:?}");
            started.elapsed()
        })
        .collect();
    took.sort();
    println!(
        "kdr plan check: median {:.2?}, slowest {:.2?} over {checks} runs (target < 50ms)",
        took[took.len() / 2],
        took[took.len() - 1]
    );
}

/// One failover on a fresh world: the run's time, the steps' own, and what is beyond the
/// plan's declared wait.
fn failover(dir: &Path) {
    let world = EmbeddedWorld::start(WorldSpec::default()).expect("world");
    write_plan(
        dir,
        world.bootstrap_servers(Role::Primary),
        world.bootstrap_servers(Role::Dr),
    );
    let log = dir.join(format!("failover-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let log_arg = log.to_str().expect("utf-8 path");
    let started = Instant::now();
    let run = kdr(
        dir,
        &[
            "failover",
            "--plan",
            "drill.yaml",
            "--yes",
            "--operator",
            "bench",
            "--reason",
            "bench",
            "--log",
            log_arg,
        ],
    );
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{run:?}");
    let mut steps = Vec::new();
    if std::env::var_os("KDR_BENCH_EVENTS").is_some() {
        // Where the time goes: each event's time and what it is.
        for event in common::events(&log) {
            let name = event["name"]
                .as_str()
                .or(event["kind"].as_str())
                .unwrap_or("");
            println!("  | {} {} {name}", event["ts"], event["event"]);
        }
    }
    for event in common::events(&log) {
        if event["event"] == "step_finished" {
            let kind = event["kind"].as_str().unwrap_or("?").to_owned();
            steps.push((
                kind,
                Duration::from_millis(event["duration_ms"].as_u64().unwrap_or(0)),
            ));
        }
    }
    let in_steps: Duration = steps.iter().map(|(_, d)| *d).sum();
    let per_step: Vec<String> = steps
        .iter()
        .map(|(kind, d)| format!("{kind} {}ms", d.as_millis()))
        .collect();
    println!(
        "failover on the embedded world: {took:.2?} in all, {in_steps:.2?} in steps ({}), \
         {:.2?} outside them; beyond the declared wait ({IDLE_FOR:?}): {:.2?} (target < 1s)",
        per_step.join(", "),
        took.saturating_sub(in_steps),
        took.saturating_sub(IDLE_FOR)
    );
}

/// The built kdr in `dir`, as the tests run it, to its end.
fn kdr(dir: &Path, args: &[&str]) -> common::Run {
    let out = common::kdr_command(dir, args)
        .output()
        .expect("failed to run kdr");
    common::Run::new(
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_plan(dir: &Path, primary: &str, dr: &str) {
    let text = format!(
        "version: 1\nname: drill\nclusters:\n  primary: {{ bootstrap_servers: \"{primary}\" }}\n  dr: {{ bootstrap_servers: \"{dr}\" }}\nreplication: {{ topics: [orders, payments.eu], groups: [order-processor, billing] }}\nfailover:\n  - declare: {{}}\n  - quiesce_producers: {{ run: \"true\", idle_for: {}ms, poll_interval: 100ms, timeout: 20s }}\n  - wait_replication: {{ max_lag_records: 0, timeout: 15s, poll_interval: 100ms, on_timeout: accept_rpo }}\n  - repoint: {{ run: \"true\" }}\n  - translate_offsets: {{ groups: all }}\n  - exec: {{ run: \"true\" }}\nfailback:\n  - exec: {{ run: \"true\" }}\n",
        IDLE_FOR.as_millis()
    );
    std::fs::write(dir.join("drill.yaml"), text).expect("plan");
}
