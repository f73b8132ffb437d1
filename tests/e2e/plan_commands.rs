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
        "prod.yaml: plan `orders-dr` is valid: 6 failover steps, 8 failback steps\n"
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
error: bad.yaml:36:17: failover[1].quiesce_producers.idle_for (step 2): invalid duration `30 sec onds`: expected number at 7
   |
36 |       idle_for: 30 sec onds                          # end offsets must stay still this long
   |                 ^
  = hint: write durations like `30s`, `2m` or `1h 30m`
error: bad.yaml:38:45: failover[2].wait_replication.timout (step 3): unknown key `timout`; did you mean `timeout`? (expected one of: max_lag_records, on_timeout, poll_interval, timeout)
   |
38 |   - wait_replication: { max_lag_records: 0, timout: 60s, on_timeout: accept_rpo }
   |                                             ^
error: bad.yaml:51:17: failback[2].quiesce_producers.idle_for (step 3): invalid duration `30 sec onds`: expected number at 7
   |
51 |       idle_for: 30 sec onds
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
    assert_eq!(value["failback"].as_array().map(Vec::len), Some(8));
    assert_eq!(redact(&show.stdout, s.path()), SHOWN_STARTER);
}

/// `kdr plan show` of the starter plan, as an operator reads it.
const SHOWN_STARTER: &str = "\
plan orders-dr (prod.yaml): primary primary-1.kafka.internal:9092,primary-2.kafka.internal:9092 [primary], dr dr-1.kafka.internal:9092 [dr]
Orders platform, primary DC to DR DC, replicated by MirrorMaker 2.

failover (primary → dr)
┌───┬───────────────────┬─────────────────────────────────────────────────────────────────────────────────────────────────────────────────────┬───────────────┐
│ # ┆ kind              ┆ what it will do                                                                                                     ┆ timeout       │
╞═══╪═══════════════════╪═════════════════════════════════════════════════════════════════════════════════════════════════════════════════════╪═══════════════╡
│ 1 ┆ declare           ┆ declare the failover (primary → dr); operator confirms by typing the plan name `orders-dr`                          ┆ 30m (default) │
│ 2 ┆ quiesce_producers ┆ run `kubectl scale deploy/order-producer --replicas=0 -n prod`, then prove primary's end offsets stay still for <dur> ┆ 2m            │
│ 3 ┆ wait_replication  ┆ wait until primary → dr lag is at most 0 records per partition, else accept the RPO                                 ┆ 1m            │
│ 4 ┆ repoint           ┆ run `./set-bootstrap.sh dr`                                                                                         ┆ 5m (default)  │
│ 5 ┆ translate_offsets ┆ commit translated offsets on dr for the plan's groups from primary.checkpoints.internal                             ┆ 2m (default)  │
│ 6 ┆ validate          ┆ check within 5m that groups progress on dr without a reset                                                          ┆ 6m (default)  │
└───┴───────────────────┴─────────────────────────────────────────────────────────────────────────────────────────────────────────────────────┴───────────────┘

failback (dr → primary)
┌───┬───────────────────────────┬─────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────┬────────────────┐
│ # ┆ kind                      ┆ what it will do                                                                                                                         ┆ timeout        │
╞═══╪═══════════════════════════╪═════════════════════════════════════════════════════════════════════════════════════════════════════════════════════════════════════════╪════════════════╡
│ 1 ┆ check_reverse_replication ┆ prove dr → primary replication is healthy: heartbeats younger than <dur>, remote topics present, checkpoints for the plan's groups        ┆ 1m (default)   │
│ 2 ┆ declare                   ┆ declare the failback (dr → primary); operator confirms by typing the plan name `orders-dr`; records only primary saw: export, then skip ┆ 30m (default)  │
│ 3 ┆ quiesce_producers         ┆ run `kubectl scale deploy/order-producer --replicas=0 -n prod`, then prove dr's end offsets stay still for <dur>                          ┆ 2m             │
│ 4 ┆ wait_replication          ┆ wait until dr → primary lag is at most 0 records per partition, else abort                                                              ┆ 10m            │
│ 5 ┆ repoint                   ┆ run `./set-bootstrap.sh primary`                                                                                                        ┆ 5m (default)   │
│ 6 ┆ translate_offsets         ┆ commit translated offsets on primary for the plan's groups from dr.checkpoints.internal                                                 ┆ 2m (default)   │
│ 7 ┆ validate                  ┆ check within 5m that groups progress on primary without a reset                                                                         ┆ 6m (default)   │
│ 8 ┆ pause                     ┆ wait for the operator: Re-enable primary->dr replication in MirrorMaker 2, then continue.                                               ┆ 1day (default) │
└───┴───────────────────────────┴─────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────┴────────────────┘
";

#[test]
fn the_starter_failback_checks_reverse_replication_before_anything_else() {
    let s = Scratch::new();
    s.write("prod.yaml", &s.kdr(&["init"]).stdout);
    let json = s.kdr(&["plan", "show", "prod.yaml", "--output", "json"]);
    assert_eq!(json.code, 0, "{json:?}");
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let kinds = |direction: &str| -> String {
        value[direction]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| s["kind"].as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // The seed runbook (and DESIGN): reverse replication runs before the cutover is declared.
    assert_eq!(
        kinds("failback"),
        "check_reverse_replication declare quiesce_producers wait_replication repoint \
         translate_offsets validate pause"
    );
    assert!(kinds("failover").starts_with("declare "));
}

/// A plan whose secrets come from variables CI does not have.
fn plan_with_unset_env(s: &Scratch, extra: &str) {
    let plan = s
        .kdr(&["init"])
        .stdout
        .replace(
            "    # client:\n    #   security.protocol: SASL_SSL\n",
            "    client:\n      security.protocol: SASL_SSL\n      sasl.password: \"${env:KDR_E2E_UNSET_PASSWORD}\"\n",
        )
        .replace(
            "bootstrap_servers: \"dr-1.kafka.internal:9092\"",
            "bootstrap_servers: \"${env:KDR_E2E_UNSET_DR}\"",
        )
        .replace("within: 5m }\n\nfailback:", &format!("within: {extra} }}\n\nfailback:"));
    s.write("ci.yaml", &plan);
}

#[test]
fn check_with_allow_missing_env_lints_a_plan_without_its_secrets() {
    let s = Scratch::new();
    plan_with_unset_env(&s, "5m");
    let strict = s.kdr(&["plan", "check", "ci.yaml"]);
    assert_eq!(strict.code, 2, "{strict:?}");
    assert!(
        strict
            .stderr
            .contains("environment variable `KDR_E2E_UNSET_PASSWORD` is not set"),
        "{strict:?}"
    );

    let lint = s.kdr(&["plan", "check", "--allow-missing-env", "ci.yaml"]);
    assert_eq!(lint.code, 0, "{lint:?}");
    assert_eq!(
        lint.stdout,
        "ci.yaml: plan `orders-dr` is valid: 6 failover steps, 8 failback steps; 2 values not checked (unset environment variables)\n"
    );
    let expected = "\
warning: ci.yaml:16:22: clusters.primary.client.\"sasl.password\": environment variable `KDR_E2E_UNSET_PASSWORD` is not set (referenced as `${env:KDR_E2E_UNSET_PASSWORD}`): this value is not checked (--allow-missing-env)
   |
16 |       sasl.password: ***
   |                      ^
warning: ci.yaml:21:24: clusters.dr.bootstrap_servers: environment variable `KDR_E2E_UNSET_DR` is not set (referenced as `${env:KDR_E2E_UNSET_DR}`): this value is not checked (--allow-missing-env)
   |
21 |     bootstrap_servers: \"${env:KDR_E2E_UNSET_DR}\"
   |                        ^
";
    assert_eq!(lint.stderr, expected);
}

#[test]
fn allow_missing_env_still_reports_every_other_problem() {
    let s = Scratch::new();
    plan_with_unset_env(&s, "5 parsecs");
    let lint = s.kdr(&["plan", "check", "--allow-missing-env", "ci.yaml"]);
    assert_eq!(lint.code, 2, "{lint:?}");
    assert_eq!(lint.stdout, "");
    assert!(
        lint.stderr
            .contains("failover[5].validate.within (step 6): invalid duration `5 parsecs`"),
        "{lint:?}"
    );
    assert!(!lint.stderr.contains("KDR_E2E_UNSET"), "{lint:?}");
    assert!(
        lint.stderr.ends_with("ci.yaml invalid: 1 problem\n"),
        "{lint:?}"
    );
}

#[test]
fn allow_missing_env_is_for_plan_check_only() {
    let s = Scratch::new();
    plan_with_unset_env(&s, "5m");
    let run = s.kdr(&[
        "failover",
        "--plan",
        "ci.yaml",
        "--dry-run",
        "--allow-missing-env",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("unexpected argument '--allow-missing-env'"),
        "{run:?}"
    );
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
        "check_reverse_replication",
    ] {
        assert!(text.contains(&format!("\"{kind}\"")), "schema lacks {kind}");
    }
    assert!(
        text.contains("\"additionalProperties\": false"),
        "unknown keys must be refused by the schema too"
    );
}
