//! `--metrics-file`: the file is read back by the Prometheus project's own parser
//! (`prometheus_client.parser` from PyPI, installed by `scripts/test-tools`), not by ours.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crate::harness::Scratch;

/// One sample as the reference parser read it.
#[derive(Debug, serde::Deserialize)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Reads the exposition on stdin and prints each family's name, type and samples as JSON.
/// Every sample line of the text must land in a family: a line the parser skipped would
/// otherwise pass unnoticed.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
families = list(text_string_to_metric_families(text))
samples = [s for f in families for s in f.samples]
lines = [l for l in text.splitlines() if l and not l.startswith('#')]
assert len(samples) == len(lines), (len(samples), len(lines))
for f in families:
    assert f.type == 'gauge', (f.name, f.type)
    assert f.documentation, f.name
print(json.dumps([{"name": s.name, "labels": s.labels, "value": s.value} for s in samples]))
"#;

fn parse(text: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test-tools installs what this test needs)");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), text.as_bytes())
        .expect("write");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "prometheus_client rejected the file (run scripts/test-tools if it is not installed):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

#[test]
fn a_failed_run_writes_its_figures_for_the_textfile_collector() {
    let s = Scratch::new();
    s.exec_plan(
        "metrics",
        "  - exec: { run: \"true\" }\n  - exec: { run: \"exit 3\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let run = s.kdr(&[
        "failover",
        "--plan",
        "metrics.yaml",
        "--yes",
        "--operator",
        "ana \"the\" operator",
        "--reason",
        "metrics test",
        "--metrics-file",
        "kdr.prom",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let samples = parse(&s.read("kdr.prom"));
    let run_labels = [("plan", "metrics"), ("direction", "failover")];
    assert_eq!(value(&samples, "kdr_run_success", &run_labels), 0.0);
    assert_eq!(
        value(
            &samples,
            "kdr_run_outcome",
            &[("direction", "failover"), ("outcome", "failed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "kdr_run_info",
            &[("operator", "ana \"the\" operator")]
        ),
        1.0
    );
    assert!(value(&samples, "kdr_run_duration_seconds", &run_labels) >= 0.0);
    assert_eq!(
        value(
            &samples,
            "kdr_step_status",
            &[("step", "2"), ("kind", "exec"), ("status", "failed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "kdr_step_status",
            &[("step", "1"), ("status", "ok")]
        ),
        1.0
    );
    assert!(
        !samples.iter().any(|s| s.name == "kdr_rto_seconds"),
        "a failed run recovered nothing"
    );
    let names: Vec<_> = std::fs::read_dir(s.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("prom"))
        .collect();
    assert_eq!(names, ["kdr.prom"], "no temporary file is left behind");
}

#[test]
fn a_metrics_file_that_cannot_be_written_fails_a_run_that_succeeded() {
    let s = Scratch::new();
    s.exec_plan(
        "metrics",
        "  - exec: { run: \"true\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let run = s.kdr(&[
        "failover",
        "--plan",
        "metrics.yaml",
        "--dry-run",
        "--metrics-file",
        "no-such-dir/kdr.prom",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("error: failed to write the metrics file no-such-dir/kdr.prom"),
        "{run:?}"
    );
}

#[test]
fn rehearse_writes_both_directions_and_kdr_own_rpo() {
    let s = Scratch::new();
    let run = s.kdr(&[
        "rehearse",
        "--scenario",
        "disaster",
        "--output",
        "json",
        "--metrics-file",
        "drill.prom",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let samples = parse(&s.read("drill.prom"));
    let failover = [("direction", "failover")];
    let accepted = report["records_accepted_lost"].as_f64().expect("accepted");
    assert!(accepted > 0.0, "{report}");
    assert_eq!(
        value(&samples, "kdr_records_accepted_lost", &failover),
        accepted
    );
    let groups = report["rereads"].as_array().expect("rereads").len() as f64;
    assert!(groups > 0.0, "{report}");
    assert_eq!(value(&samples, "kdr_groups_translated", &failover), groups);
    assert!(value(&samples, "kdr_rto_seconds", &failover) > 0.0);
    assert_eq!(
        value(&samples, "kdr_lag_at_declaration_records", &failover),
        report["lag_at_declaration"].as_f64().expect("lag")
    );
    assert_eq!(
        value(&samples, "kdr_run_success", &[("direction", "failback")]),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "kdr_rehearsal_passed",
            &[("scenario", "disaster")]
        ),
        1.0
    );
}
