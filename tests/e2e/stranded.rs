//! The failback's `stranded:` choice in plans: where it may go, what it may say, and how
//! `plan show` words it.

use crate::harness::Scratch;

fn plan(failover_declare: &str, failback_declare: &str) -> String {
    format!(
        "version: 1\nname: p\nclusters:\n  primary: {{ bootstrap_servers: \"127.0.0.1:1\" }}\n  dr: {{ bootstrap_servers: \"127.0.0.1:2\" }}\nreplication: {{ topics: [orders], groups: [g] }}\nfailover:\n  - declare: {failover_declare}\nfailback:\n  - declare: {failback_declare}\n"
    )
}

#[test]
fn stranded_on_a_failovers_declare_is_refused_with_where_it_belongs() {
    let s = Scratch::new();
    s.write("p.yaml", &plan("{ stranded: skip }", "{}"));
    let check = s.kdr(&["plan", "check", "p.yaml"]);
    assert_eq!(check.code, 2, "{check:?}");
    assert_eq!(
        check.stderr,
        "\
error: p.yaml:8:26: failover[0].declare.stranded (step 1): `stranded` belongs to the failback's declare: the records only the old primary saw are found when coming home, not in `failover`
  |
8 |   - declare: { stranded: skip }
  |                          ^
  = hint: move it to the `declare` step of `failback`
p.yaml invalid: 1 problem
"
    );
}

#[test]
fn stranded_takes_export_skip_or_consume_and_nothing_else() {
    let s = Scratch::new();
    s.write("p.yaml", &plan("{}", "{ stranded: later }"));
    let check = s.kdr(&["plan", "check", "p.yaml"]);
    assert_eq!(check.code, 2, "{check:?}");
    assert!(
        check
            .stderr
            .starts_with("error: p.yaml:10:26: failback[0].declare.stranded (step 1): "),
        "{check:?}"
    );
    assert!(
        check
            .stderr
            .contains("unknown value `later` (expected one of: export, skip, consume)"),
        "{check:?}"
    );
    assert!(
        check.stderr.ends_with("p.yaml invalid: 1 problem\n"),
        "{check:?}"
    );
}

#[test]
fn plan_show_says_what_a_failback_does_with_stranded_records() {
    let s = Scratch::new();
    for (declare, said) in [
        (
            "{ stranded: export }",
            "records only primary saw: export, then skip",
        ),
        ("{ stranded: skip }", "records only primary saw: skip"),
        (
            "{ stranded: consume }",
            "records only primary saw: leave to the consumers",
        ),
        (
            "{}",
            "stops if primary holds records dr never received (no `stranded:` choice)",
        ),
    ] {
        s.write("p.yaml", &plan("{}", declare));
        let check = s.kdr(&["plan", "check", "p.yaml"]);
        assert_eq!(check.code, 0, "{declare}: {check:?}");
        let show = s.kdr(&["plan", "show", "p.yaml", "--output", "json"]);
        assert_eq!(show.code, 0, "{show:?}");
        let value: serde_json::Value = serde_json::from_str(&show.stdout).expect("json");
        let summary = value["failback"][0]["summary"].as_str().unwrap_or_default();
        assert!(summary.ends_with(said), "{declare}: {summary}");
        let failover = value["failover"][0]["summary"].as_str().unwrap_or_default();
        assert!(!failover.contains("stranded"), "{failover}");
    }
}
