//! Crash and resume on the real brokers: kdr killed with SIGKILL after every step and in the
//! middle of steps, then `--resume`. The run completes, the clusters end as after an
//! uninterrupted run, no record is skipped, and a non-idempotent hook never runs twice without
//! the operator's word. And two `kdr failover` of one plan started at once: exactly one runs.

use std::path::Path;
use std::time::Duration;

use kdr::kafka::{ClusterRole, TopicPartition};
use kdr::rehearsal::Pause;

use crate::failover::failover_args;
use crate::harness::{
    Run, Running, block_on, end_orphaned_hooks, events, kdr, logs, wait_for_event, wait_until,
};
use crate::mm2::{Mm2, PARTITIONS, REMOTE_TOPIC, TOPIC, produce, write_plan};

const NO_FAILBACK: &str = "  - exec: { run: \"true\" }\n";

/// A no-op hook between two steps that holds until the test lets it pass (`go-N`): while it
/// holds, the clusters are exactly as step N-1 left them, so a kill there is a kill at that
/// boundary. Idempotent, so a resume runs it again without asking.
fn barrier(n: usize) -> String {
    format!(
        "  - exec: {{ run: 'touch at-{n}; until [ -e go-{n} ]; do sleep 0.02; done', idempotent: true }}\n"
    )
}

/// The failover the crash tests run: five real steps, two of them hooks that must not run twice
/// (`quiesce` is the first one's command), with a barrier after each.
fn plan(mm2: &Mm2, dir: &Path, quiesce: &str) {
    let steps = [
        "  - declare: { timeout: 20s }\n".to_owned(),
        format!("  - exec: {{ run: '{quiesce}', idempotent: false }}\n"),
        "  - wait_replication: { timeout: 40s, poll_interval: 100ms, on_timeout: abort }\n"
            .to_owned(),
        "  - translate_offsets: { groups: all, timeout: 20s }\n".to_owned(),
        "  - exec: { run: 'echo announce >> hooks.log', idempotent: false }\n".to_owned(),
    ];
    let failover: String = steps
        .iter()
        .enumerate()
        .map(|(i, step)| format!("{step}{}", barrier(i + 1)))
        .collect();
    write_plan(
        dir,
        &mm2.pair.primary.bootstrap(),
        &mm2.pair.dr.bootstrap(),
        &failover,
        NO_FAILBACK,
    );
}

/// Lets every barrier pass, now and later.
fn open_barriers(dir: &Path) {
    for n in 1..=5 {
        std::fs::write(dir.join(format!("go-{n}")), "").expect("go");
    }
}

const QUIESCE: &str = "echo quiesce >> hooks.log";

fn hooks(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("hooks.log")).unwrap_or_default()
}

fn resume(dir: &Path, extra: &[&str]) -> Run {
    let log = logs(dir).pop().expect("log");
    // A hook of the killed run that the test let go is ending: a resume refuses while it runs.
    end_orphaned_hooks(&log, false);
    let log = log.to_str().expect("utf-8 path").to_owned();
    let mut args = vec!["--resume", log.as_str()];
    args.extend_from_slice(extra);
    kdr(dir, &failover_args(&args))
}

/// Resumes until the run is done. A run killed inside a non-idempotent hook is refused until the
/// operator answers; the answer here is `skip` (the hook's own record shows it ran), and only
/// after checking that the refusal came first and the hook had run exactly once.
fn resume_to_the_end(dir: &Path) -> Run {
    let run = resume(dir, &[]);
    if run.code == 2 {
        assert!(
            run.stderr.contains("--interrupted-step"),
            "a refusal that does not say how to answer: {run:?}"
        );
        // The operator looks at the hook's own record: it ran (skip) or it did not (rerun).
        let answer = match hooks(dir).matches("quiesce").count() {
            0 => "rerun",
            1 => "skip",
            n => panic!("the hook ran {n} times"),
        };
        let run = resume(dir, &["--interrupted-step", answer]);
        assert_eq!(run.code, 0, "{run:?}");
        return run;
    }
    assert_eq!(run.code, 0, "{run:?}");
    run
}

/// What an uninterrupted run leaves on the clusters and in the hooks' own record.
fn assert_ends_like_an_uninterrupted_run(mm2: &Mm2, dir: &Path) {
    assert_eq!(
        hooks(dir),
        "quiesce\nannounce\n",
        "a hook ran twice or never"
    );
    assert_eq!(mm2.committed_on_dr(), mm2.translated());
    // One declaration's worth of authority: DR at epoch 1, recorded on both clusters.
    block_on(async {
        for cluster in [mm2.pair.primary.cluster(ClusterRole::Primary), mm2.dr()] {
            let view = kdr::authority::read(&cluster, "drill").await;
            let record = view.record().unwrap_or_else(|| panic!("{view:?}"));
            assert_eq!(
                (record.owner.to_string().as_str(), record.epoch),
                ("dr", 1),
                "{view:?}"
            );
        }
    });
    // The log ends with a finished, successful run.
    let log = logs(dir).pop().expect("log");
    let last = events(&log).pop().expect("events");
    assert_eq!(last["event"], "run_finished", "{last}");
    assert_eq!(last["outcome"], "succeeded", "{last}");
}

/// SIGKILL while kdr holds at the barrier after real step `n` (1-5), then resume to the end.
fn killed_after_step(n: usize) {
    let mm2 = Mm2::start();
    let dir = tempfile::tempdir().expect("tempdir");
    plan(&mm2, dir.path(), QUIESCE);
    for before in 1..n {
        std::fs::write(dir.path().join(format!("go-{before}")), "").expect("go");
    }
    let running = Running::start(dir.path(), &failover_args(&[]));
    wait_until(Duration::from_secs(60), "the boundary", || {
        dir.path().join(format!("at-{n}")).exists()
    });
    running.signal(libc::SIGKILL);
    let killed = running.finish();
    assert_eq!(killed.code, 128 + libc::SIGKILL, "{killed:?}");
    // The orphaned barrier hook lets go, and so will every barrier of the resumed run.
    open_barriers(dir.path());
    resume_to_the_end(dir.path());
    assert_ends_like_an_uninterrupted_run(&mm2, dir.path());
}

#[test]
fn killed_after_the_declaration() {
    killed_after_step(1);
}

#[test]
fn killed_after_the_non_idempotent_hook() {
    killed_after_step(2);
}

#[test]
fn killed_after_replication_caught_up() {
    killed_after_step(3);
}

#[test]
fn killed_after_translating_offsets() {
    killed_after_step(4);
}

#[test]
fn killed_after_the_last_step() {
    killed_after_step(5);
}

#[test]
fn killed_inside_a_non_idempotent_hook_the_resume_waits_for_the_operators_word() {
    let mm2 = Mm2::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // The hook records that it ran, then holds until the test lets it go.
    plan(
        &mm2,
        dir.path(),
        "echo quiesce >> hooks.log; touch hook-running; while [ ! -e release ]; do sleep 0.05; done",
    );
    open_barriers(dir.path());
    let running = Running::start(dir.path(), &failover_args(&[]));
    wait_until(Duration::from_secs(60), "the hook to run", || {
        dir.path().join("hook-running").exists()
    });
    running.signal(libc::SIGKILL);
    running.finish();
    std::fs::write(dir.path().join("release"), "").expect("release the orphaned hook");

    let refused = resume(dir.path(), &[]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("step 3") && refused.stderr.contains("--interrupted-step"),
        "{refused:?}"
    );
    assert_eq!(
        hooks(dir.path()),
        "quiesce\n",
        "the hook ran again without a word"
    );
    let run = resume(dir.path(), &["--interrupted-step", "skip"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_ends_like_an_uninterrupted_run(&mm2, dir.path());
    // The operator's word is in the log.
    let log = logs(dir.path()).pop().expect("log");
    assert!(
        events(&log)
            .iter()
            .any(|e| e["event"] == "decision" && e["what"].as_str().unwrap_or("").contains("skip")),
        "the operator's answer is not recorded"
    );
}

#[test]
fn killed_while_waiting_for_replication_the_resume_waits_again_and_skips_no_record() {
    let mm2 = Mm2::start();
    // Replication stalls with records on the primary that DR does not have yet.
    mm2.replicator
        .as_ref()
        .expect("replicator")
        .pause(Pause::Copying);
    wait_until(Duration::from_secs(10), "the copy loop to pause", || {
        mm2.stats().copy_paused
    });
    for partition in 0..PARTITIONS {
        produce(&mm2.pair.primary.bootstrap(), TOPIC, partition, 5);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    plan(&mm2, dir.path(), QUIESCE);
    open_barriers(dir.path());
    let running = Running::start(dir.path(), &failover_args(&[]));
    wait_for_event(
        dir.path(),
        Duration::from_secs(60),
        "wait_replication",
        |e| e["event"] == "step_started" && e["kind"] == "wait_replication",
    );
    // It cannot finish the step while replication is stalled: this is the middle of it.
    running.signal(libc::SIGKILL);
    running.finish();
    mm2.replicator.as_ref().expect("replicator").resume();
    resume_to_the_end(dir.path());
    assert_ends_like_an_uninterrupted_run(&mm2, dir.path());
    // Every record of the primary is on DR, in order: none was skipped.
    let tps = |topic: &str| -> Vec<TopicPartition> {
        (0..PARTITIONS)
            .map(|p| TopicPartition::new(topic, p))
            .collect()
    };
    let primary = block_on(
        mm2.pair
            .primary
            .cluster(ClusterRole::Primary)
            .end_offsets(&tps(TOPIC)),
    )
    .expect("primary ends");
    let dr = block_on(mm2.dr().end_offsets(&tps(REMOTE_TOPIC))).expect("dr ends");
    let ends = |v: Vec<(TopicPartition, i64)>| v.into_iter().map(|(_, e)| e).collect::<Vec<_>>();
    assert_eq!(ends(primary), vec![15; 3]);
    assert_eq!(ends(dr), vec![15; 3]);
    let log = logs(dir.path()).pop().expect("log");
    let waits: Vec<String> = events(&log)
        .iter()
        .filter(|e| e["event"] == "step_finished" && e["kind"] == "wait_replication")
        .map(|e| e["message"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(waits[0].starts_with("caught up: lag 0"), "{waits:?}");
}

#[test]
fn two_failovers_of_one_plan_started_at_once_exactly_one_runs() {
    let mm2 = Mm2::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // The winner holds at its first hook until both have had their chance at the lock.
    plan(
        &mm2,
        dir.path(),
        "echo quiesce >> hooks.log; touch hook-running; while [ ! -e release ]; do sleep 0.05; done",
    );
    open_barriers(dir.path());
    let a = Running::start(dir.path(), &failover_args(&[]));
    let b = Running::start(dir.path(), &failover_args(&[]));
    wait_until(Duration::from_secs(60), "one run's hook", || {
        dir.path().join("hook-running").exists()
    });
    // The loser exits on its own, refused, while the winner still holds the lock in its hook.
    let mut runs = vec![a, b];
    let mut refused = None;
    wait_until(
        Duration::from_secs(60),
        "the second run to be refused",
        || {
            refused = runs.iter_mut().position(Running::exited);
            refused.is_some()
        },
    );
    let loser = runs.remove(refused.expect("one exited"));
    let winner = runs.pop().expect("the other run");
    let loser = loser.finish();
    assert_eq!(loser.code, 1, "{loser:?}");
    assert!(
        loser.stderr.contains("plan `drill` is already running"),
        "{loser:?}"
    );
    std::fs::write(dir.path().join("release"), "").expect("release");
    let winner = winner.finish();
    assert_eq!(winner.code, 0, "{winner:?}");
    assert_eq!(logs(dir.path()).len(), 1, "the refused run left a log");
    assert_ends_like_an_uninterrupted_run(&mm2, dir.path());
}
