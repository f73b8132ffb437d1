//! Faults against the real brokers: the primary killed at every step boundary, the DR broker
//! killed or restarted in the middle of `translate_offsets`, a broker that accepts connections
//! and never answers, and a step deadline reached while a Kafka call is in flight. Each ends in
//! a clean failure or a documented skip, within the step's deadline, with the log consistent;
//! where it fails, `--resume` finishes the job once the cause is gone.

use std::path::Path;
use std::time::Duration;

use crate::failover::failover_args;
use crate::harness::{Running, Silent, Storage, block_on, events, kdr, logs, wait_for_event};
use crate::mm2::{Mm2, write_plan};

const NO_FAILBACK: &str = "  - exec: { run: \"true\" }\n";

/// A failover with every step that touches the clusters, each with its deadline in ms.
const STEPS: [(&str, u64); 5] = [
    ("  - declare: { timeout: 20s }\n", 20_000),
    (
        "  - quiesce_producers: { run: \"true\", idle_for: 300ms, poll_interval: 100ms, timeout: 10s }\n",
        10_000,
    ),
    (
        "  - wait_replication: { timeout: 5s, poll_interval: 100ms, on_timeout: accept_rpo }\n",
        5_000,
    ),
    ("  - repoint: { run: \"true\", timeout: 10s }\n", 10_000),
    (
        "  - translate_offsets: { groups: all, timeout: 20s }\n",
        20_000,
    ),
];

/// What every step's `step_finished` said: `"<step> <kind> <status>"`.
fn statuses(log: &Path) -> Vec<String> {
    events(log)
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| {
            format!(
                "{} {} {}",
                e["step"],
                e["kind"].as_str().unwrap_or("?"),
                e["status"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn step_message(log: &Path, step: u64) -> String {
    events(log)
        .into_iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == step)
        .and_then(|e| e["message"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The incident log tells one story: sequence numbers 1, 2, 3…; each run (the first and every
/// resume) opens with `run_started` and closes with `run_finished`; every step that started
/// finished before the next began, within its deadline plus the engine's wind-down grace.
fn assert_log_consistent(log: &Path, deadline_of: impl Fn(&str) -> u64) {
    let events = events(log);
    let mut open_run = false;
    let mut open_step: Option<u64> = None;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "sequence broken at {e}");
        match e["event"].as_str().unwrap_or_default() {
            "run_started" => {
                assert!(!open_run, "a run started inside another: {e}");
                open_run = true;
            }
            "step_started" => {
                assert!(
                    open_run && open_step.is_none(),
                    "step started out of turn: {e}"
                );
                open_step = e["step"].as_u64();
            }
            "step_finished" => {
                assert_eq!(
                    open_step,
                    e["step"].as_u64(),
                    "finished a step never started: {e}"
                );
                open_step = None;
                let took = e["duration_ms"].as_u64().expect("duration_ms");
                let kind = e["kind"].as_str().unwrap_or_default();
                let bound = deadline_of(kind) + 1_000;
                assert!(
                    took <= bound,
                    "{kind} took {took} ms, over its deadline: {e}"
                );
            }
            "run_finished" => {
                assert!(
                    open_run && open_step.is_none(),
                    "run finished mid-step: {e}"
                );
                open_run = false;
            }
            _ => assert!(open_run, "event outside a run: {e}"),
        }
    }
    assert!(!open_run, "the log ends inside a run");
}

fn deadline(kind: &str) -> u64 {
    STEPS
        .iter()
        .find(|(text, _)| text.trim_start().starts_with(&format!("- {kind}:")))
        .map_or(10_000, |(_, ms)| *ms)
}

/// Which write authority each cluster's `__kdr_authority` names last.
fn authority(mm2: &Mm2) -> String {
    block_on(async {
        let dr = kdr::authority::read(&mm2.dr(), "drill").await;
        dr.record()
            .map(|r| format!("{} epoch {}", r.owner, r.epoch))
            .unwrap_or_else(|| format!("{dr:?}"))
    })
}

/// Runs the failover with the primary killed (SIGKILL, by a hook) right before step `k`
/// (0-based; `STEPS.len()` means after the last) and checks how it ends.
fn primary_killed_before(k: usize) {
    let mut mm2 = Mm2::start();
    let expected = mm2.translated();
    let dir = tempfile::tempdir().expect("tempdir");
    let kill = format!(
        "  - exec: {{ run: \"kill -9 {}\" }}\n",
        mm2.pair.primary.pid()
    );
    let mut steps: Vec<&str> = STEPS.iter().map(|(s, _)| *s).collect();
    steps.insert(k, &kill);
    write_plan(
        dir.path(),
        &mm2.pair.primary.bootstrap(),
        &mm2.pair.dr.bootstrap(),
        &steps.concat(),
        NO_FAILBACK,
    );
    let run = kdr(dir.path(), &failover_args(&[]));
    mm2.pair.primary.kill();
    let log = logs(dir.path()).pop().expect("an incident log");
    assert_log_consistent(&log, deadline);

    // Every step ends as documented: those that need the primary after it died skip (quiesce:
    // in-flight loss accepted) or settle on what they last measured (wait_replication: the
    // plan's accept_rpo); those on DR alone do their job.
    assert_eq!(run.code, 0, "killed before step {k}: {run:?}");
    let mut want: Vec<String> = [
        "declare",
        "quiesce_producers",
        "wait_replication",
        "repoint",
        "translate_offsets",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    want.insert(k, "exec".to_owned());
    let want: Vec<String> = want
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let status = if kind == "quiesce_producers" && i > k {
                "skipped"
            } else {
                "ok"
            };
            format!("{} {kind} {status}", i + 1)
        })
        .collect();
    assert_eq!(statuses(&log), want, "killed before step {k}: {run:?}");
    let declare = step_message(&log, if k == 0 { 2 } else { 1 });
    if k == 0 {
        assert!(
            declare.contains("primary is unreachable"),
            "the declaration does not say the primary is gone: {declare}"
        );
    }
    let quiesce = step_message(&log, if k <= 1 { 3 } else { 2 });
    if k <= 1 {
        assert!(
            quiesce.contains("primary is unreachable")
                && quiesce.contains("in-flight loss accepted"),
            "the skip is not explained: {quiesce}"
        );
    }

    // The clusters end as after an uninterrupted failover: DR holds the translated offsets and
    // the write authority.
    assert_eq!(
        mm2.committed_on_dr(),
        expected,
        "killed before step {k}: {run:?}"
    );
    assert_eq!(authority(&mm2), "dr epoch 1", "killed before step {k}");
}

#[test]
fn primary_killed_before_the_declaration() {
    primary_killed_before(0);
}

#[test]
fn primary_killed_after_the_declaration() {
    primary_killed_before(1);
}

#[test]
fn primary_killed_after_quiescing() {
    primary_killed_before(2);
}

#[test]
fn primary_killed_after_replication_caught_up() {
    primary_killed_before(3);
}

#[test]
fn primary_killed_after_repointing() {
    primary_killed_before(4);
}

#[test]
fn primary_killed_after_translating_offsets() {
    primary_killed_before(5);
}

const TRANSLATE: &str = "  - translate_offsets: { groups: all, timeout: 4s }\n";

/// A failover of one step, `translate_offsets`, frozen (SIGSTOP) right after it has read the
/// checkpoints and before it commits anything; `fault` runs while kdr is frozen.
fn frozen_in_translate(
    mm2: &mut Mm2,
    dir: &Path,
    fault: impl FnOnce(&mut Mm2),
) -> crate::harness::Run {
    mm2.stop_replicator();
    write_plan(
        dir,
        &mm2.pair.primary.bootstrap(),
        &mm2.pair.dr.bootstrap(),
        TRANSLATE,
        NO_FAILBACK,
    );
    let running = Running::start(dir, &failover_args(&[]));
    wait_for_event(dir, Duration::from_secs(30), "the checkpoints read", |e| {
        e["name"] == "checkpoints_read"
    });
    running.signal(libc::SIGSTOP);
    // Frozen after the read and before the group's commit: nothing committed yet.
    let events = events(&logs(dir).pop().expect("log"));
    assert!(
        !events.iter().any(|e| e["event"] == "step_finished"),
        "translate_offsets finished before kdr was frozen"
    );
    fault(mm2);
    running.signal(libc::SIGCONT);
    running.finish()
}

fn resume(dir: &Path) -> crate::harness::Run {
    let log = logs(dir).pop().expect("log");
    let log = log.to_str().expect("utf-8 path").to_owned();
    kdr(dir, &failover_args(&["--resume", &log]))
}

#[test]
fn dr_killed_mid_translate_fails_the_step_within_its_deadline_and_resume_completes_it() {
    let mut mm2 = Mm2::start_with(Storage::Sqlite);
    let expected = mm2.translated();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = frozen_in_translate(&mut mm2, dir.path(), |mm2| mm2.pair.dr.kill());
    assert_eq!(run.code, 1, "{run:?}");
    let log = logs(dir.path()).pop().expect("log");
    assert_log_consistent(&log, |_| 4_000);
    assert_eq!(statuses(&log), ["1 translate_offsets failed"], "{run:?}");
    assert!(
        run.stderr.contains("--resume"),
        "no way forward offered: {run:?}"
    );

    // DR comes back with its data (sqlite): the resumed run commits what the first could not.
    mm2.pair.dr.start_again();
    let resumed = resume(dir.path());
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_log_consistent(&log, |_| 4_000);
    assert_eq!(
        statuses(&log),
        ["1 translate_offsets failed", "1 translate_offsets ok"],
        "{resumed:?}"
    );
    assert_eq!(mm2.committed_on_dr(), expected);
}

#[test]
fn dr_restarted_mid_translate_is_ridden_out_and_the_offsets_land() {
    let mut mm2 = Mm2::start_with(Storage::Sqlite);
    let expected = mm2.translated();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = frozen_in_translate(&mut mm2, dir.path(), |mm2| mm2.pair.dr.restart());
    let log = logs(dir.path()).pop().expect("log");
    assert_log_consistent(&log, |_| 4_000);
    // Each Kafka operation opens its own connection, so a restart between two of them is
    // invisible; the run must either succeed or fail cleanly and finish on resume.
    if run.code != 0 {
        assert_eq!(run.code, 1, "{run:?}");
        let resumed = resume(dir.path());
        assert_eq!(resumed.code, 0, "{resumed:?}");
        assert_log_consistent(&log, |_| 4_000);
    }
    assert_eq!(mm2.committed_on_dr(), expected, "{run:?}");
}

#[test]
fn a_step_deadline_reached_while_dr_hangs_mid_call_fails_the_step_on_time() {
    let mut mm2 = Mm2::start();
    let expected = mm2.translated();
    let dir = tempfile::tempdir().expect("tempdir");
    // DR's process stops answering (its kernel still accepts connections) while kdr is frozen;
    // kdr's next call to it hangs until the step's 4 s deadline.
    let run = frozen_in_translate(&mut mm2, dir.path(), |mm2| {
        mm2.pair.dr.signal(libc::SIGSTOP)
    });
    assert_eq!(run.code, 1, "{run:?}");
    let log = logs(dir.path()).pop().expect("log");
    assert_log_consistent(&log, |_| 4_000);
    // Either the step's deadline passed first, or librdkafka's own ApiVersion timeout (half
    // the operation bound) named the hung broker first: both say why, and both are on time.
    let message = step_message(&log, 1).to_lowercase();
    assert!(
        message.contains("timeout")
            || message.contains("timed out") && message.contains("did not answer"),
        "the failure does not say the deadline passed or the broker hung: {message}"
    );
    mm2.pair.dr.signal(libc::SIGCONT);
    let resumed = resume(dir.path());
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_eq!(mm2.committed_on_dr(), expected);
}

#[test]
fn a_primary_that_accepts_connections_and_never_answers_is_treated_as_down_within_deadlines() {
    let mm2 = Mm2::start();
    let expected = mm2.translated();
    let silent = Silent::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let steps: String = STEPS.iter().map(|(s, _)| *s).collect();
    write_plan(
        dir.path(),
        &silent.bootstrap(),
        &mm2.pair.dr.bootstrap(),
        &steps,
        NO_FAILBACK,
    );
    let run = kdr(dir.path(), &failover_args(&[]));
    let log = logs(dir.path()).pop().expect("an incident log");
    assert_log_consistent(&log, deadline);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        statuses(&log),
        [
            "1 declare ok",
            "2 quiesce_producers skipped",
            "3 wait_replication ok",
            "4 repoint ok",
            "5 translate_offsets ok"
        ],
        "{run:?}"
    );
    assert!(
        step_message(&log, 1).contains("primary is unreachable"),
        "{run:?}"
    );
    // Never measured is not "nothing lost".
    let wait = step_message(&log, 3);
    assert!(wait.contains("lag unknown on 3 partitions"), "{wait}");
    assert_eq!(mm2.committed_on_dr(), expected);
}

#[test]
fn a_dr_that_accepts_connections_and_never_answers_fails_the_declaration_within_its_deadline() {
    let mm2 = Mm2::start();
    let silent = Silent::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let steps: String = STEPS.iter().map(|(s, _)| *s).collect();
    write_plan(
        dir.path(),
        &mm2.pair.primary.bootstrap(),
        &silent.bootstrap(),
        &steps,
        NO_FAILBACK,
    );
    let run = kdr(dir.path(), &failover_args(&[]));
    let log = logs(dir.path()).pop().expect("an incident log");
    assert_log_consistent(&log, deadline);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(statuses(&log), ["1 declare failed"], "{run:?}");
    let message = step_message(&log, 1);
    assert!(
        message.contains("the dr cluster is unreachable")
            && message.contains("accepted the connection but did not answer"),
        "{message}"
    );
    // Nothing moved: the primary still owns writes.
    let primary = block_on(kdr::authority::read(
        &mm2.pair.primary.cluster(kdr::kafka::ClusterRole::Primary),
        "drill",
    ));
    assert!(
        primary
            .record()
            .is_none_or(|r| r.owner.to_string() == "primary"),
        "{primary:?}"
    );
}

/// Regression: `translate_offsets` waited on its Kafka calls with the step's deadline alone, so
/// a first Ctrl-C while DR hung was only honoured when the deadline passed. It ends the wait,
/// and the run, at once.
#[test]
fn ctrl_c_while_translate_waits_on_a_dr_that_never_answers_ends_the_run_at_once() {
    let (primary, dr) = (Silent::start(), Silent::start());
    let dir = tempfile::tempdir().expect("tempdir");
    write_plan(
        dir.path(),
        &primary.bootstrap(),
        &dr.bootstrap(),
        "  - translate_offsets: { groups: all, timeout: 60s }\n",
        NO_FAILBACK,
    );
    let running = Running::start(dir.path(), &failover_args(&[]));
    wait_for_event(
        dir.path(),
        Duration::from_secs(30),
        "the step's start",
        |e| e["event"] == "step_started",
    );
    let interrupted = std::time::Instant::now();
    running.signal(libc::SIGINT);
    let run = running.finish();
    let took = interrupted.elapsed();
    assert_eq!(run.code, 130, "{run:?}");
    assert!(
        took < Duration::from_secs(10),
        "the interrupt waited for the step's 60 s deadline: {took:?}"
    );
    let log = logs(dir.path()).pop().expect("log");
    assert_eq!(statuses(&log), ["1 translate_offsets failed"], "{run:?}");
    assert!(
        step_message(&log, 1).starts_with("interrupted while trying to read"),
        "{run:?}"
    );
}
