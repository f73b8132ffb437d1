//! `kdr init`, `kdr plan check|show|schema`: what an operator sees while writing a plan.

use crate::harness::{Scratch, redact};

#[test]
fn init_prints_a_plan_that_passes_check() {
    let s = Scratch::new();
    let init = s.kdr(&["init"]);
    assert_eq!(init.code, 0, "{init:?}");
    s.write("prod.yaml", &init.stdout);
    let check = s.kdr(&["plan", "check", "prod.yaml"]);
    assert_eq!(check.code, 0, "{check:?}");
    assert_eq!(
        check.stdout,
        "prod.yaml: plan `orders-dr` is valid: 6 failover steps, 7 failback steps\n"
    );
}

#[test]
fn check_reports_every_problem_with_location_and_exit_2() {
    let s = Scratch::new();
    let plan = s
        .kdr(&["init"])
        .stdout
        .replace("idle_for: 30s", "idle_for: 30 sec onds")
        .replace("timeout: 60s", "timout: 60s");
    s.write("bad.yaml", &plan);
    let check = s.kdr(&["plan", "check", "bad.yaml"]);
    assert_eq!(check.code, 2, "{check:?}");
    assert_eq!(check.stdout, "");
    let expected = "\
error: bad.yaml:36:17: failover[1].quiesce_producers.idle_for: invalid duration `30 sec onds`: expected number at 7
   |
36 |       idle_for: 30 sec onds                          # end offsets must stay still this long
   |                 ^
  = hint: write durations like `30s`, `2m` or `1h 30m`
error: bad.yaml:38:45: failover[2].wait_replication.timout: unknown key `timout`; did you mean `timeout`? (expected one of: max_lag_records, on_timeout, poll_interval, timeout)
   |
38 |   - wait_replication: { max_lag_records: 0, timout: 60s, on_timeout: accept_rpo }
   |                                             ^
error: bad.yaml:47:17: failback[1].quiesce_producers.idle_for: invalid duration `30 sec onds`: expected number at 7
   |
47 |       idle_for: 30 sec onds
   |                 ^
  = hint: write durations like `30s`, `2m` or `1h 30m`
bad.yaml invalid: 3 problems
";
    assert_eq!(check.stderr, expected);
}

#[test]
fn a_missing_plan_file_is_a_usage_error() {
    let s = Scratch::new();
    let check = s.kdr(&["plan", "check", "nope.yaml"]);
    assert_eq!(check.code, 2);
    assert_eq!(
        check.stderr,
        "error: failed to read plan nope.yaml: No such file or directory (os error 2)\n"
    );
}

#[test]
fn show_lists_steps_per_direction_and_as_json() {
    let s = Scratch::new();
    s.write("prod.yaml", &s.kdr(&["init"]).stdout);
    let show = s.kdr(&["plan", "show", "prod.yaml"]);
    assert_eq!(show.code, 0, "{show:?}");
    assert!(
        show.stdout.contains("failover (primary → dr)"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("failback (dr → primary)"));
    assert!(show.stdout.contains("│ 3 ┆ wait_replication  ┆ wait until primary → dr lag is at most 0 records per partition, else accept the RPO"), "{}", show.stdout);
    let json = s.kdr(&["plan", "show", "prod.yaml", "--output", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(value["failover"][2]["kind"], "wait_replication");
    assert_eq!(value["failover"][2]["timeout_ms"], 60_000);
    assert_eq!(value["failback"].as_array().map(Vec::len), Some(7));
    let _ = redact("", s.path());
}

#[test]
fn schema_is_json_schema_naming_every_step_kind() {
    let s = Scratch::new();
    let schema = s.kdr(&["plan", "schema"]);
    assert_eq!(schema.code, 0);
    let value: serde_json::Value = serde_json::from_str(&schema.stdout).expect("json");
    assert_eq!(value["title"], "PlanFile");
    let text = schema.stdout;
    for kind in [
        "declare",
        "quiesce_producers",
        "wait_replication",
        "repoint",
        "translate_offsets",
        "validate",
        "exec",
        "pause",
    ] {
        assert!(text.contains(&format!("\"{kind}\"")), "schema lacks {kind}");
    }
    assert!(
        text.contains("\"additionalProperties\": false"),
        "unknown keys must be refused by the schema too"
    );
}
