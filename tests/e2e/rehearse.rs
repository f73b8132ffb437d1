//! `kdr rehearse` with operators' plans: the drill follows the plan's own shape.

use crate::harness::{Run, Scratch, events};

const BUNDLED: &str = include_str!("../../runbooks/rehearsal.yaml");

/// `kdr rehearse --plan <the bundled plan, edited> --scenario disaster` plus `args`.
fn rehearse_disaster(s: &Scratch, edit: impl FnOnce(&str) -> String, args: &[&str]) -> Run {
    let text = edit(BUNDLED);
    assert_ne!(
        text, BUNDLED,
        "the bundled plan's shape changed: fix the edit"
    );
    let plan = s.write("plan.yaml", &text);
    let plan = plan.to_str().expect("utf-8 path");
    let mut all = vec!["rehearse", "--plan", plan, "--scenario", "disaster"];
    all.extend_from_slice(args);
    s.kdr(&all)
}

#[test]
fn disaster_strikes_after_the_declare_step_wherever_the_plan_puts_it() {
    let s = Scratch::new();
    let log = s.file("failover.jsonl");
    let exec_first = |plan: &str| {
        plan.replacen(
            "\nfailover:\n",
            "\nfailover:\n  - exec: { run: \"true\" }\n",
            1,
        )
    };
    let log_arg = log.to_str().expect("utf-8 path");
    let run = rehearse_disaster(&s, exec_first, &["--log", log_arg, "--output", "json"]);
    // Exit 0: the failover and failback succeeded and every check of the drill held.
    assert_eq!(run.code, 0, "{run:?}");

    // The declaration (step 2 here) found the primary up and measured the lag: the disaster
    // came after it, not after step 1.
    let baseline = events(&log)
        .into_iter()
        .find(|e| e["event"] == "observation" && e["name"] == "rpo_baseline")
        .expect("the declaration's rpo_baseline");
    assert_eq!(baseline["step"], 2, "{baseline}");
    assert_eq!(baseline["data"]["source_reachable"], true, "{baseline}");
    let lag = baseline["data"]["total_lag_records"].as_i64();
    assert!(lag > Some(0), "{baseline}");

    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(report["lag_at_declaration"].as_i64(), lag, "{report}");
    let lost = report["records_really_lost"].as_i64();
    assert!(lost > Some(0), "{report}");
    assert_eq!(report["records_accepted_lost"].as_i64(), lost, "{report}");
}

#[test]
fn disaster_refuses_a_plan_whose_failover_has_no_declaration() {
    let s = Scratch::new();
    let without_declare =
        |plan: &str| plan.replacen("  - declare: { confirm: plan-name }\n", "", 1);
    let run = rehearse_disaster(&s, without_declare, &[]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("no declare step"),
        "the refusal says why: {run:?}"
    );
    assert!(
        !run.stderr.contains("[1/"),
        "refused before any step ran: {run:?}"
    );
}
