//! The incident report from hand-written logs: a disaster failover with a canary (no step writes
//! canary observations yet), and logs that are not incident logs.

use std::path::PathBuf;

use serde_json::json;

use super::incident::{self, IncidentReport, ReportError};
use super::{html, json as json_report, markdown};
use crate::journal::StepStatus;

/// One log line at `ms` milliseconds after 2026-03-01T10:00:00Z.
fn line(seq: u64, ms: u64, body: serde_json::Value) -> String {
    let ts = humantime::format_rfc3339_millis(
        humantime::parse_rfc3339("2026-03-01T10:00:00Z").expect("ts")
            + std::time::Duration::from_millis(ms),
    );
    let mut event = json!({ "v": 1, "seq": seq, "ts": ts.to_string(), "run_id": "r1" });
    for (k, v) in body.as_object().expect("object") {
        event[k] = v.clone();
    }
    let mut text = event.to_string();
    text.push('\n');
    text
}

fn started(step: usize, kind: &str) -> serde_json::Value {
    json!({ "event": "step_started", "step": step, "kind": kind, "summary": format!("do {kind}") })
}

fn finished(step: usize, kind: &str, duration_ms: u64) -> serde_json::Value {
    json!({ "event": "step_finished", "step": step, "kind": kind, "status": "ok", "duration_ms": duration_ms, "message": format!("{kind} done") })
}

fn observation(step: usize, name: &str, data: serde_json::Value) -> serde_json::Value {
    json!({ "event": "observation", "step": step, "name": name, "detail": format!("{name} seen"), "data": data })
}

/// A disaster failover: the primary lagged 5 records on orders/0 at the declaration, kdr
/// accepted 3 lost, the canary saw 3 missing and a latency peak.
fn disaster_log() -> String {
    let lag = |partition: i32, lag: i64| json!({ "source_topic": "orders", "target_topic": "primary.orders", "partition": partition, "source_end": 100, "replicated_to": 100 - lag, "lag": lag, "method": "offset_sync", "target_end": 100 - lag });
    let bodies = [
        (
            0,
            json!({ "event": "run_started", "plan": "orders-dr", "fingerprint": "sha256:00", "plan_file": "p.yaml", "direction": "failover", "operator": "alice", "reason": "dc1 is gone | really", "dry_run": false, "resumed": false, "kdr_version": "0.1.0", "host": "h", "pid": 1 }),
        ),
        (
            10,
            observation(
                0,
                "canary_publish_latency",
                json!({ "p50_ms": 4.0, "p99_ms": 9.5, "max_ms": 12, "errors": 0 }),
            ),
        ),
        (100, started(1, "declare")),
        (
            300,
            observation(
                1,
                "rpo_baseline",
                json!({ "source_reachable": true, "partitions": [lag(0, 5), lag(1, 0)], "total_lag_records": 5, "heartbeat_age_ms": 800, "checkpoint_age_ms": {} }),
            ),
        ),
        (
            400,
            json!({ "event": "decision", "step": 1, "who": "alice", "what": "declare the failover of plan orders-dr", "why": "dc1 is gone", "data": { "confirmed_by": "typed" } }),
        ),
        (1_100, finished(1, "declare", 1_000)),
        (1_200, started(2, "wait_replication")),
        (
            4_200,
            json!({ "event": "decision", "step": 2, "who": "plan", "what": "accept the RPO: 3 records lost over 1 partitions", "why": "primary is unreachable", "data": { "lost_records": 3, "partitions_with_unknown_lag": 0, "per_partition": [lag(0, 3)] } }),
        ),
        (4_200, finished(2, "wait_replication", 3_000)),
        (4_300, started(3, "exec")),
        (4_800, finished(3, "exec", 500)),
        (4_900, started(4, "repoint")),
        (5_900, finished(4, "repoint", 1_000)),
        (
            6_000,
            observation(
                0,
                "canary_publish_latency",
                json!({ "p50_ms": 30.0, "p99_ms": 250.0, "max_ms": 400, "errors": 17 }),
            ),
        ),
        (6_100, started(5, "translate_offsets")),
        (
            6_200,
            observation(
                5,
                "reprocessing",
                json!({ "group": "billing", "direction": "failover", "may_reread": null, "basis": "the checkpoints (the source cannot be read): a lower bound", "partitions": [] }),
            ),
        ),
        (
            6_300,
            observation(
                5,
                "group",
                json!({ "group": "billing", "state": "empty", "partitions": [{ "source_topic": "orders", "target_topic": "primary.orders", "partition": 0, "source_offset": 90, "target_offset": 88, "current_offset": null, "checkpoint_age_ms": 1500, "action": "commit" }] }),
            ),
        ),
        (6_400, finished(5, "translate_offsets", 300)),
        (6_500, started(6, "validate")),
        (
            6_600,
            observation(6, "group", json!({ "unexpected": true })),
        ),
        (8_500, finished(6, "validate", 2_000)),
        (
            8_600,
            observation(
                0,
                "canary_data_gap",
                json!({ "missing": 3, "partitions": [{ "topic": "orders", "partition": 0, "missing": 3 }] }),
            ),
        ),
        (
            8_700,
            json!({ "event": "run_finished", "outcome": "succeeded", "duration_ms": 8_700, "message": "6 steps done" }),
        ),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, (ms, body))| line(i as u64 + 1, ms, body))
        .collect()
}

fn write_log(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("failover.jsonl");
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

fn disaster_report() -> IncidentReport {
    let (_dir, path) = write_log(&disaster_log());
    incident::load(&[path]).expect("report")
}

#[test]
fn rto_spans_declare_gate_to_validated_failover_and_splits_into_phases() {
    let report = disaster_report();
    let run = &report.runs[0];
    let rto = run.rto.as_ref().expect("rto");
    assert_eq!(rto.total_ms, 8_500 - 100);
    assert!(rto.validated);
    assert_eq!(
        rto.label,
        "declare gate opened (step 1 started) → failover validated (step 6 validate finished ok)"
    );
    assert_eq!(rto.from, "2026-03-01T10:00:00.100Z");
    assert_eq!(rto.to, "2026-03-01T10:00:08.500Z");
    let phases: Vec<(&str, u64)> = rto
        .phases
        .iter()
        .map(|p| (p.name.as_str(), p.duration_ms))
        .collect();
    assert_eq!(
        phases,
        [
            ("decision", 1_000),
            ("quiesce", 0),
            ("catch-up", 3_000),
            ("repoint", 1_000),
            ("translation", 300),
            ("validation", 2_000)
        ]
    );
    assert_eq!(rto.other_steps_ms, 500);
    assert_eq!(rto.between_steps_ms, 8_400 - 7_800);
    let moments: Vec<(&str, u64)> = run
        .moments
        .iter()
        .map(|m| (m.name.as_str(), m.at_ms))
        .collect();
    assert_eq!(
        moments,
        [
            ("declared", 1_100),
            ("repointed", 5_900),
            ("validated", 8_500)
        ]
    );
    assert!(
        run.steps
            .iter()
            .all(|s| s.status == Some(StepStatus::Ok) && s.end_ms.is_some())
    );
}

#[test]
fn rpo_per_partition_puts_the_estimate_next_to_the_canary_observed_gap() {
    let run = &disaster_report().runs[0];
    assert_eq!(run.rpo.len(), 2);
    // Left out of the accepted loss: nothing lost there.
    assert_eq!(run.rpo[1].estimated_loss, Some(0));
    let p = &run.rpo[0];
    assert_eq!((p.topic.as_str(), p.partition), ("orders", 0));
    assert_eq!(
        (p.lag_at_declaration, p.estimated_loss, p.observed_loss),
        (Some(5), Some(3), Some(3))
    );
    let lag: Vec<f64> = run.lag.iter().map(|s| s.value).collect();
    assert_eq!(lag, [5.0, 3.0]);
    let latency: Vec<f64> = run.canary_latency.iter().map(|s| s.value).collect();
    assert_eq!(latency, [9.5, 250.0]);
    let names: Vec<&str> = run.canary.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "canary_publish_latency",
            "canary_publish_latency",
            "canary_data_gap"
        ]
    );
    assert_eq!(run.canary[1].figures["errors"], 17);
    assert!(!run.canary[2].figures.contains_key("partitions"));
}

#[test]
fn translation_and_rereads_come_from_translate_offsets_and_a_bad_payload_is_a_warning() {
    let run = &disaster_report().runs[0];
    assert_eq!(run.translations.len(), 1);
    assert_eq!(run.translations[0].partitions[0].target_offset, 88);
    assert_eq!(run.reprocessing[0].may_reread, None);
    assert_eq!(run.warnings.len(), 1, "{:?}", run.warnings);
    assert!(
        run.warnings[0].starts_with("event 20: the data of group was not understood"),
        "{:?}",
        run.warnings
    );
    // Every event is on the timeline, with its time.
    assert_eq!(run.timeline.len(), 23);
    assert_eq!(run.timeline[2].text, "step 1 declare started: do declare");
}

#[test]
fn markdown_escapes_cells_and_states_what_the_rto_spans() {
    let md = markdown::render(&disaster_report());
    assert!(md.starts_with("# Incident report: orders-dr\n"), "{md}");
    assert!(
        md.contains("**RTO 8.4s: declare gate opened (step 1 started) at 2026-03-01 10:00:00.100 UTC → failover validated (step 6 validate finished ok) at 2026-03-01 10:00:08.500 UTC**"),
        "{md}"
    );
    assert!(md.contains("- **Reason:** dc1 is gone \\| really"), "{md}");
    assert!(
        md.contains(
            "| failover of orders-dr | succeeded | 2026-03-01 10:00:00.000 | 8.4s | 3 | unknown |"
        ),
        "{md}"
    );
    assert!(md.contains("| orders | 0 | 5 | 3 | 3 |"), "{md}");
    for title in [
        "### RTO and its phases",
        "### RPO per partition",
        "### Offset translation: group billing (empty)",
        "### Re-read ledger",
        "### Canary",
        "### Steps",
        "### Timeline",
        "### Warnings",
    ] {
        assert!(md.contains(title), "{title} in\n{md}");
    }
}

#[test]
fn html_is_self_contained_with_an_svg_timeline() {
    let page = html::render(&disaster_report());
    assert!(page.starts_with("<!DOCTYPE html>"));
    let network = regex::Regex::new(r#"(?i)(src|href)\s*=\s*["']?\s*(https?:)?//"#).expect("re");
    assert!(!network.is_match(&page), "a network reference in\n{page}");
    assert!(!page.contains("<script"), "no script");
    assert!(page.contains("<svg"));
    for moment in ["declared", "repointed", "validated"] {
        assert!(page.contains(&format!(">{moment}</text>")), "{moment}");
    }
    assert!(page.contains("replication lag (top of the chart: 5 records)"));
    assert!(page.contains("canary publish latency p99 (top of the chart: 250 ms)"));
    assert!(page.contains("dc1 is gone | really"));
}

#[test]
fn json_reads_back_into_the_model() {
    let report = disaster_report();
    let text = json_report::render(&report);
    let back: IncidentReport = serde_json::from_str(&text).expect("json");
    assert_eq!(back, report);
    assert_eq!(back.v, incident::REPORT_SCHEMA_VERSION);
}

#[test]
fn a_log_that_does_not_start_with_run_started_is_an_error_naming_file_and_line() {
    let text = disaster_log()
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let (_dir, path) = write_log(&text);
    let err = incident::load(std::slice::from_ref(&path)).expect_err("no run_started");
    assert!(matches!(err, ReportError::Shape { line: 1, .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "{}:1: the log starts with observation where run_started was expected",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn a_corrupt_line_is_an_error_naming_file_and_line() {
    let mut text = disaster_log();
    text.insert_str(text.find('\n').expect("line") + 1, "{not json\n");
    let (_dir, path) = write_log(&text);
    let err = incident::load(std::slice::from_ref(&path)).expect_err("corrupt");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2: not an incident-log event", path.display())),
        "{err}"
    );
}
