//! Plan validation: a table of bad plans with the exact problems each must report.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;

struct Env(HashMap<&'static str, &'static str>);

impl SubstitutionSource for Env {
    fn env(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|s| (*s).to_owned())
    }
    fn file(&self, _: &Path) -> std::io::Result<String> {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

fn env() -> Env {
    Env(HashMap::from([("KDR_TEST_PASSWORD", "s3cr3t-value")]))
}

const GOOD: &str = r#"version: 1
name: orders-dr
clusters:
  primary:
    bootstrap_servers: "p1:9092,p2:9092"
    client:
      security.protocol: SASL_SSL
      sasl.password: "${env:KDR_TEST_PASSWORD}"
  dr: { bootstrap_servers: "d1:9092" }
replication:
  topics: [orders, "re:payments\\..*"]
  groups: [order-processor]
failover:
  - declare: { confirm: plan-name }
  - quiesce_producers: { run: "echo stop", idle_for: 5s, timeout: 1m }
  - wait_replication: { max_lag_records: 0, timeout: 60s, on_timeout: accept_rpo }
  - repoint: { run: "echo dr" }
  - translate_offsets: { groups: all }
  - validate: { within: 5m }
failback:
  - exec: { run: "echo back", idempotent: true }
  - pause: { message: "check dashboards" }
"#;

fn load_text(text: &str) -> Result<Plan, PlanError> {
    load_bytes(
        Path::new("plan.yaml"),
        text.as_bytes(),
        Path::new("."),
        &env(),
    )
}

fn problems(text: &str) -> Vec<String> {
    match load_text(text) {
        Ok(_) => panic!("plan unexpectedly valid:\n{text}"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_reference_plan_is_valid_and_checked_into_domain_types() {
    let plan = load_text(GOOD).expect("valid plan");
    assert_eq!(plan.name, "orders-dr");
    assert_eq!(plan.primary.mm2_alias, "primary");
    assert_eq!(plan.dr.mm2_alias, "dr");
    assert_eq!(plan.failover.len(), 6);
    assert_eq!(plan.failback.len(), 2);
    assert!(
        plan.replication
            .topics
            .iter()
            .any(|s| s.matches("payments.eu"))
    );
    assert!(
        !plan
            .replication
            .topics
            .iter()
            .any(|s| s.matches("xpayments.eu"))
    );
    assert_eq!(plan.failover[2].timeout(), Duration::from_secs(60));
    assert!(plan.fingerprint.starts_with("sha256:"));
    let pw = plan
        .primary
        .client
        .iter()
        .find(|c| c.key == "sasl.password")
        .expect("password");
    assert_eq!(pw.value, "s3cr3t-value");
    assert!(pw.secret);
    assert_eq!(pw.shown, "${env:KDR_TEST_PASSWORD}");
    assert!(
        !format!("{plan:?}").contains("s3cr3t-value"),
        "Debug of a plan must not show secrets"
    );
}

#[test]
fn bad_plans_report_exact_problems() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("unknown step key with a hint", GOOD.replace("idle_for: 5s, timeout: 1m", "idle_for: 5s, timout: 1m"),
         vec!["15:58: failover[1].quiesce_producers.timout (step 2): unknown key `timout`; did you mean `timeout`? (expected one of: run, idle_for, poll_interval, timeout)"]),
        ("bad duration", GOOD.replace("within: 5m", "within: 5 minutes please"),
         vec!["19:25: failover[5].validate.within (step 6): invalid duration `5 minutes please`: expected number at 10"]),
        ("missing on_timeout", GOOD.replace(", on_timeout: accept_rpo", ""),
         vec!["16:23: failover[2].wait_replication (step 3): missing required key `on_timeout`"]),
        ("unknown on_timeout value", GOOD.replace("on_timeout: accept_rpo", "on_timeout: carry_on"),
         vec!["16:71: failover[2].wait_replication.on_timeout (step 3): unknown value `carry_on` (expected one of: abort, accept_rpo)"]),
        ("unknown step kind", GOOD.replace("- repoint:", "- repiont:"),
         vec!["17:5: failover[3] (step 4): unknown value `repiont`; did you mean `repoint`? (expected one of: declare, quiesce_producers, wait_replication, repoint, translate_offsets, validate, exec, pause, check_reverse_replication, notify)"]),
        ("bad regex", GOOD.replace("re:payments\\\\..*", "re:payments(("),
         vec!["11:20: replication.topics[1]: invalid regex `payments((`: unclosed group"]),
        ("missing env var", GOOD.replace("KDR_TEST_PASSWORD", "KDR_NOT_SET"),
         vec!["8:22: clusters.primary.client.\"sasl.password\": environment variable `KDR_NOT_SET` is not set (referenced as `${env:KDR_NOT_SET}`)"]),
        ("literal secret", GOOD.replace("\"${env:KDR_TEST_PASSWORD}\"", "hunter2"),
         vec!["8:22: clusters.primary.client.\"sasl.password\": `sasl.password` is a secret and is written in the plan in clear"]),
        ("empty step list", GOOD.replace("failback:\n  - exec: { run: \"echo back\", idempotent: true }\n  - pause: { message: \"check dashboards\" }\n", "failback: []\n"),
         vec!["20:11: failback: expected at least one step in `failback`"]),
        ("duplicate aliases", GOOD.replace("dr: { bootstrap_servers: \"d1:9092\" }", "dr: { bootstrap_servers: \"d1:9092\", mm2_alias: primary }"),
         vec!["9:50: clusters.dr.mm2_alias: both clusters have the MirrorMaker 2 alias `primary`: aliases must differ"]),
        ("wrong type", GOOD.replace("max_lag_records: 0", "max_lag_records: lots"),
         vec!["16:42: failover[2].wait_replication.max_lag_records (step 3): expected u64, found string `lots`"]),
        ("bad bootstrap", GOOD.replace("d1:9092", "d1"),
         vec!["9:28: clusters.dr.bootstrap_servers: expected `host:port`, found `d1`"]),
        ("version 2", GOOD.replace("version: 1", "version: 2"),
         vec!["1:10: version: unsupported plan version 2: this kdr reads version 1"]),
        ("unknown top-level key", format!("{GOOD}failovr: []\n"),
         vec!["23:1: failovr: unknown key `failovr`; did you mean `failover`?"]),
        ("several problems at once", GOOD.replace("timeout: 1m", "timeout: 1x").replace("within: 5m", "within: 0s").replace("version: 1", "version: 3"),
         vec![
             "1:10: version: unsupported plan version 3: this kdr reads version 1",
             "15:67: failover[1].quiesce_producers.timeout (step 2): invalid duration `1x`: unknown time unit \"x\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)",
             "19:25: failover[5].validate.within (step 6): expected a duration greater than zero, found `0s`",
         ]),
    ];
    let mut failures = Vec::new();
    for (name, text, expected) in cases {
        let got = problems(&text);
        if got != expected {
            failures.push(format!(
                "{name}:\n  expected {expected:#?}\n  got      {got:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rendered_errors_name_the_file_and_show_the_line_without_secrets() {
    let text = GOOD.replace("\"${env:KDR_TEST_PASSWORD}\"", "hunter2");
    let err = load_text(&text).expect_err("literal secret");
    let shown = err.to_string();
    assert!(
        shown.starts_with("error: plan.yaml:8:22: clusters.primary.client.\"sasl.password\": "),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("= hint: use `sasl.password: \"${env:NAME}\"`"),
        "{shown}"
    );
    assert!(shown.ends_with("plan.yaml invalid: 1 problem"), "{shown}");
}

#[test]
fn non_utf8_empty_and_broken_yaml_are_located_errors() {
    let err = load_bytes(
        Path::new("p.yaml"),
        b"version: 1\nname: \xff\n",
        Path::new("."),
        &env(),
    )
    .expect_err("not utf-8");
    assert_eq!(
        err.problems()[0].to_string(),
        "2:7: the file is not UTF-8 text (invalid byte here)"
    );
    let err = load_text("").expect_err("empty");
    assert!(err.problems()[0].message.starts_with("the file is empty"));
    let err = load_text("version: 1\nname: [unclosed\n").expect_err("broken yaml");
    let p = &err.problems()[0];
    assert!(p.message.starts_with("invalid YAML"), "{p}");
    assert!(p.line >= 2, "{p}");
}

#[test]
fn confirm_yes_as_the_readme_writes_it_is_the_yes_confirmation() {
    // YAML reads a bare `yes` (and `true`) as a boolean, not as the text `yes`.
    for written in ["yes", "true", "\"yes\""] {
        let text = GOOD.replace("confirm: plan-name", &format!("confirm: {written}"));
        let plan = load_text(&text).unwrap_or_else(|e| panic!("confirm: {written}: {e}"));
        let StepKind::Declare(declare) = &plan.failover[0].kind else {
            panic!("the first step is the declaration");
        };
        assert_eq!(declare.confirm, Confirm::Yes, "confirm: {written}");
    }
    for refused in ["no", "false", "maybe"] {
        let text = GOOD.replace("confirm: plan-name", &format!("confirm: {refused}"));
        let got = problems(&text);
        assert_eq!(got.len(), 1, "confirm: {refused}: {got:?}");
        assert!(
            got[0].starts_with(
                "14:25: failover[0].declare.confirm (step 1): expected `plan-name` or `yes`, found "
            ),
            "confirm: {refused}: {got:?}"
        );
    }
}

#[test]
fn problems_inside_a_step_name_the_step_as_runs_number_it() {
    let got = problems(&GOOD.replace("- repoint:", "- repiont:"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("17:5: failover[3] (step 4): unknown value `repiont`"),
        "{got:?}"
    );
    // Outside the steps, the path alone.
    let got = problems(&GOOD.replace("version: 1", "version: 2"));
    assert_eq!(
        got,
        ["1:10: version: unsupported plan version 2: this kdr reads version 1"]
    );
}

#[test]
fn stranded_is_the_failbacks_choice_and_has_no_default() {
    let with = |failback_declare: &str| {
        GOOD.replace(
            "failback:\n",
            &format!("failback:\n  - declare: {failback_declare}\n"),
        )
    };
    for (written, choice) in [
        ("{ stranded: export }", Some(Stranded::Export)),
        ("{ stranded: skip }", Some(Stranded::Skip)),
        (
            "{ confirm: yes, stranded: consume }",
            Some(Stranded::Consume),
        ),
        ("{}", None),
    ] {
        let plan = load_text(&with(written)).unwrap_or_else(|e| panic!("{written}: {e}"));
        let StepKind::Declare(declare) = &plan.failback[0].kind else {
            panic!("the failback's first step is its declaration");
        };
        assert_eq!(declare.stranded, choice, "{written}");
    }
    let got = problems(&GOOD.replace(
        "declare: { confirm: plan-name }",
        "declare: { confirm: plan-name, stranded: skip }",
    ));
    assert_eq!(
        got,
        [
            "14:46: failover[0].declare.stranded (step 1): `stranded` belongs to the failback's declare: the records only the old primary saw are found when coming home, not in `failover`"
        ]
    );
    let got = problems(&with("{ stranded: later }"));
    assert_eq!(
        got,
        [
            "21:26: failback[0].declare.stranded (step 1): unknown value `later` (expected one of: export, skip, consume)"
        ]
    );
}
