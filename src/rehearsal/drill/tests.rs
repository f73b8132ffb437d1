//! The drill's parts that need no cluster: where the disaster strikes, what happens when it
//! cannot, how kdr's figures are read back from a log, and how the checks print them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::checks::estimate_matches;
use super::disaster::{Disaster, declaration_step};
use super::evidence::{Evidence, EvidenceError};
use super::{BUNDLED_PLAN, DrillError, GroupRereads, load_plan};
use crate::journal::{Event, EventBody, StepStatus};
use crate::plan::Plan;
use crate::rehearsal::WorldError;

/// A scratch directory holding one file.
fn scratch_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

/// The bundled plan with its failover's declare step replaced by `with`.
fn bundled_plan_declaring(with: &str) -> Plan {
    let text = BUNDLED_PLAN.replacen("  - declare: { confirm: plan-name }\n", with, 1);
    assert_ne!(text, BUNDLED_PLAN, "the bundled plan's shape");
    let (_dir, path) = scratch_file("plan.yaml", &text);
    load_plan(Some(&path)).expect("plan")
}

fn step_finished(step: usize, kind: &str) -> Event {
    Event {
        v: 1,
        seq: step as u64,
        ts: "2026-01-01T00:00:00.000Z".to_owned(),
        run_id: "run".to_owned(),
        body: EventBody::StepFinished {
            step,
            kind: kind.to_owned(),
            status: StepStatus::Ok,
            duration_ms: 1,
            message: String::new(),
        },
    }
}

#[test]
fn the_disaster_waits_for_the_declare_step_wherever_it_is() {
    let bundled = load_plan(None).expect("bundled plan");
    assert_eq!(declaration_step(&bundled).expect("declare"), 1);
    let later = bundled_plan_declaring(
        "  - exec: { run: \"true\" }\n  - declare: { confirm: plan-name }\n",
    );
    assert_eq!(declaration_step(&later).expect("declare"), 2);

    let strikes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&strikes);
    let disaster = Disaster::with_strike(
        2,
        Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }),
    );
    disaster.on_event(&step_finished(1, "exec"));
    assert_eq!(
        strikes.load(Ordering::SeqCst),
        0,
        "struck before the declaration"
    );
    disaster.on_event(&step_finished(2, "declare"));
    assert_eq!(strikes.load(Ordering::SeqCst), 1);
    disaster.on_event(&step_finished(3, "quiesce_producers"));
    assert_eq!(strikes.load(Ordering::SeqCst), 1, "struck twice");
    assert!(disaster.outcome().is_ok());
}

#[test]
fn a_plan_without_a_declaration_cannot_be_rehearsed_as_a_disaster() {
    let plan = bundled_plan_declaring("");
    let error = declaration_step(&plan).expect_err("no declare step");
    assert!(
        matches!(&error, DrillError::Unsuitable { why, .. } if why.contains("no declare step")),
        "{error}"
    );
}

#[test]
fn a_primary_that_does_not_go_down_fails_the_drill() {
    let disaster = Disaster::with_strike(
        1,
        Box::new(|| Err(WorldError::ThreadGone("the test's clusters are gone"))),
    );
    disaster.on_event(&step_finished(1, "declare"));
    let error = disaster
        .outcome()
        .expect_err("a disaster that did not strike");
    assert!(matches!(error, DrillError::Disaster(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "failed to take the primary down after the declaration: \
         failed to reach the embedded clusters' thread: the test's clusters are gone"
    );
}

/// A log as kdr writes it: the declaration's baseline, wait_replication accepting a loss,
/// and translate_offsets' estimates (the last one per group counts).
const LOG: &str = r#"{"v":1,"seq":1,"ts":"2026-01-01T00:00:00.000Z","run_id":"r","event":"observation","step":1,"kind":"declare","name":"rpo_baseline","detail":"","data":{"source_reachable":true,"total_lag_records":7,"partitions":[]}}
{"v":1,"seq":2,"ts":"2026-01-01T00:00:00.000Z","run_id":"r","event":"decision","step":3,"kind":"wait_replication","who":"plan","what":"accept the RPO","why":"","data":{"lost_records":7,"partitions_with_unknown_lag":1,"per_partition":[{"source_topic":"orders","target_topic":"primary.orders","partition":0,"source_end":10,"replicated_to":5,"lag":5,"method":"offset_sync","target_end":5},{"source_topic":"orders","target_topic":"primary.orders","partition":2,"source_end":4,"replicated_to":2,"lag":2,"method":"count","target_end":2},{"source_topic":"payments","target_topic":"primary.payments","partition":1,"source_end":null,"replicated_to":null,"lag":null,"method":"count","target_end":0}]}}
{"v":1,"seq":3,"ts":"2026-01-01T00:00:00.000Z","run_id":"r","event":"observation","step":5,"kind":"translate_offsets","name":"reprocessing","detail":"","data":{"group":"billing","direction":"failover","may_reread":4,"basis":"b","partitions":[]}}
{"v":1,"seq":4,"ts":"2026-01-01T00:00:00.000Z","run_id":"r","event":"observation","step":5,"kind":"translate_offsets","name":"reprocessing","detail":"","data":{"group":"order-processor","direction":"failover","may_reread":null,"basis":"b","partitions":[]}}
{"v":1,"seq":5,"ts":"2026-01-01T00:00:00.000Z","run_id":"r","event":"observation","step":5,"kind":"translate_offsets","name":"reprocessing","detail":"","data":{"group":"billing","direction":"failover","may_reread":3,"basis":"b","partitions":[]}}
"#;

#[test]
fn kdr_figures_are_read_back_from_the_typed_events() {
    let (_dir, log) = scratch_file("failover.jsonl", LOG);
    let evidence = Evidence::read(&log).expect("evidence");
    assert_eq!(evidence.lag_at_declaration, Some(7));
    assert_eq!(
        evidence.may_reread("billing"),
        Some(3),
        "the last word counts"
    );
    assert_eq!(evidence.may_reread("order-processor"), None);
    assert_eq!(evidence.may_reread("nobody"), None);
    assert_eq!(
        evidence.accepted_loss.into_iter().collect::<Vec<_>>(),
        vec![(("orders".to_owned(), 0), 5), (("orders".to_owned(), 2), 2)],
        "partitions of unknown lag are not counted as lost"
    );
}

#[test]
fn an_unreadable_incident_log_is_an_error_never_zero_accepted_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-log.jsonl");
    let error = Evidence::read(&missing).expect_err("no log");
    assert!(matches!(error, EvidenceError::Unreadable(_)), "{error}");

    let (_garbled_dir, garbled) = scratch_file("garbled.jsonl", "not json\n");
    assert!(matches!(
        Evidence::read(&garbled),
        Err(EvidenceError::Unreadable(_))
    ));

    // kdr's decision, but not in the shape kdr writes: the loss is unknown, not zero.
    let reshaped = LOG.replace(
        r#""per_partition":[{"#,
        r#""per_partition":"gone","was":[{"#,
    );
    let (_reshaped_dir, reshaped) = scratch_file("reshaped.jsonl", &reshaped);
    let error = Evidence::read(&reshaped).expect_err("a payload kdr does not write");
    assert!(
        matches!(
            &error,
            EvidenceError::Payload {
                seq: 2,
                what: "wait_replication decision",
                ..
            }
        ),
        "{error}"
    );
    let drill_error = DrillError::from(error);
    assert!(
        drill_error
            .to_string()
            .starts_with("failed to read kdr's figures back from the incident log: "),
        "{drill_error}"
    );
}

#[test]
fn the_reprocessing_check_prints_figures_not_debug_text() {
    let rereads = vec![
        GroupRereads {
            group: "billing".to_owned(),
            reread_at_failover: 0,
            reread_at_failback: 2,
            kdr_estimate_at_failover: Some(0),
            kdr_estimate_at_failback: None,
            restarted_from_beginning: 0,
        },
        GroupRereads {
            group: "orders".to_owned(),
            reread_at_failover: 1,
            reread_at_failback: 0,
            kdr_estimate_at_failover: Some(1),
            kdr_estimate_at_failback: Some(0),
            restarted_from_beginning: 0,
        },
    ];
    let check = estimate_matches(&rereads, true);
    assert!(!check.ok, "billing's failback estimate is unknown");
    assert_eq!(
        check.detail,
        "billing: 0 re-read at the failover (kdr said 0), 2 at the failback (kdr said unknown); \
         orders: 1 re-read at the failover (kdr said 1), 0 at the failback (kdr said 0)"
    );
    assert!(estimate_matches(&rereads[1..], true).ok);
    assert!(
        estimate_matches(&rereads[..1], false).ok,
        "without a failback only the failover counts"
    );
}

/// The failback's `reverse_translation` observations, as kdr writes them: one row moved home
/// through a sync, one left where it was, one behind every sync.
const REVERSE_LOG: &str = r#"{"v":1,"seq":1,"ts":"2026-01-01T00:00:00.000Z","run_id":"r","event":"observation","step":6,"kind":"translate_offsets","name":"reverse_translation","detail":"","data":{"group":"billing","syncs_topic":"mm2-offset-syncs.dr.internal","partitions":[{"replica_topic":"primary.orders","topic":"orders","partition":0,"dr_committed":13,"sync":{"upstream":10,"downstream":10},"position":11,"reread_bound":2,"position_from":"forward_syncs","target_offset":11,"current_offset":null,"action":"commit","may_reread":2},{"replica_topic":"primary.orders","topic":"orders","partition":1,"dr_committed":12,"sync":{"upstream":10,"downstream":10},"position":11,"reread_bound":1,"position_from":"forward_syncs","target_offset":11,"current_offset":14,"action":"skip: would rewind","may_reread":0},{"replica_topic":"primary.orders","topic":"orders","partition":2,"dr_committed":3,"sync":null,"position":null,"reread_bound":null,"position_from":"none","target_offset":null,"current_offset":null,"action":"skip: no offset sync at or below 3","may_reread":null}]}}
"#;

#[test]
fn the_reverse_mapping_is_read_back_and_counted() {
    let (_dir, log) = scratch_file("failback.jsonl", REVERSE_LOG);
    let evidence = Evidence::read(&log).expect("evidence");
    let home = super::ReverseHome::from_rows(evidence.reverse.values().flatten(), 2);
    assert_eq!(
        home,
        super::ReverseHome {
            partitions_moved: 1,
            partitions_left: 1,
            partitions_unmapped: 1,
            kdr_may_reread: Some(2),
            reread_on_primary_topics: 2,
        }
    );
}
