//! Every wait of a step ends at once on Ctrl-C. The clusters are a listener on loopback that
//! accepts connections and never answers (the backlog does the accepting), so each wait would
//! otherwise last until an operation timeout or the step's deadline. The clock is paused: a
//! wait that ignored Ctrl-C would jump to its deadline an hour ahead, never hang the test.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::journal::Journal;
use crate::plan::{SystemSubstitutions, load_bytes};

/// A plan whose clusters both sit behind `silent`, with `step` as its only failover and
/// failback step.
fn plan(dir: &Path, silent: &TcpListener, step: &str) -> Plan {
    let at = silent.local_addr().expect("address");
    let text = format!(
        "version: 1\nname: p\nclusters:\n  primary: {{ bootstrap_servers: \"{at}\" }}\n  dr: {{ bootstrap_servers: \"{at}\" }}\nreplication: {{ topics: [t], groups: [g] }}\nfailover:\n  - {step}\nfailback:\n  - {step}\n"
    );
    load_bytes(
        Path::new("p.yaml"),
        text.as_bytes(),
        dir,
        &SystemSubstitutions,
    )
    .expect("plan")
}

/// Run the plan's one step in `direction`, Ctrl-C already pressed, with `state` as earlier
/// steps left it; returns how it ended and how long it took in real time.
async fn run_cancelled(
    plan: &Plan,
    direction: Direction,
    mut state: RunState,
    log: &Path,
) -> (StepResult, Duration) {
    let clusters = crate::replication::Clusters::from_plan(plan).expect("clients");
    let mut recorder = Recorder::new(
        Journal::create(log, "r").expect("log"),
        Vec::new(),
        plan.secrets.clone(),
    );
    let mut gate = Gate::Unattended;
    let (_cancel_tx, cancel) = watch::channel(true);
    let step = &plan.steps(direction)[0];
    let mut ctx = StepCtx {
        plan,
        direction,
        run_id: "r",
        step,
        dry_run: false,
        operator: "alice",
        reason: "drill",
        gate: &mut gate,
        recorder: &mut recorder,
        cancel,
        clusters: Some(&clusters),
        state: &mut state,
        deadline: tokio::time::Instant::now() + Duration::from_secs(3600),
        hook_env: &[],
    };
    let started = Instant::now();
    let result = run(&mut ctx).await;
    (result, started.elapsed())
}

/// Earlier steps listed one replicated partition, so the step goes straight to its waits.
fn one_partition_listed() -> RunState {
    RunState {
        partitions: Some(vec![crate::replication::ReplicatedPartition {
            source_topic: "t".into(),
            target_topic: "primary.t".into(),
            partition: 0,
        }]),
        ..RunState::default()
    }
}

/// Run `step` with Ctrl-C already pressed and both clusters silent: it must end at once, with
/// `expected` as its interruption.
async fn assert_ctrl_c_ends(step: &str, direction: Direction, state: RunState, expected: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let silent = TcpListener::bind("127.0.0.1:0").expect("listener");
    let plan = plan(dir.path(), &silent, step);
    let (result, took) = run_cancelled(&plan, direction, state, &dir.path().join("log")).await;
    match result {
        Err(StepError::Interrupted(m)) => assert_eq!(m, expected),
        other => panic!("expected an interruption, got {other:?}"),
    }
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test(start_paused = true)]
async fn quiesce_ends_at_once_on_ctrl_c_while_the_source_does_not_answer() {
    assert_ctrl_c_ends(
        "quiesce_producers: { idle_for: 10s, timeout: 1h }",
        Direction::Failover,
        one_partition_listed(),
        "interrupted while waiting for producers to stop",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn wait_replication_ends_at_once_on_ctrl_c_while_measuring_lag() {
    assert_ctrl_c_ends(
        "wait_replication: { max_lag_records: 0, timeout: 1h, on_timeout: abort }",
        Direction::Failover,
        one_partition_listed(),
        "interrupted while waiting for replication",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn check_reverse_ends_at_once_on_ctrl_c_while_probing() {
    assert_ctrl_c_ends(
        "check_reverse_replication: { max_heartbeat_age: 30s, timeout: 1h }",
        Direction::Failback,
        RunState::default(),
        "interrupted while checking reverse replication",
    )
    .await;
}
