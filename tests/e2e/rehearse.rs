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

    // The records only the old primary saw: the failback found them from the failover's log
    // (at --log, outside the incident directory), exported them, and they are what the
    // primary really held beyond DR.
    let stranded = &report["stranded"];
    let found = stranded["found_by_kdr"].as_u64();
    assert!(found > Some(0), "{stranded}");
    assert_eq!(stranded["really_on_primary"].as_u64(), found, "{stranded}");
    assert_eq!(stranded["choice"], "export", "{stranded}");
    assert_eq!(stranded["exported"].as_u64(), found, "{stranded}");
    let exported = stranded["exported_to"].as_str().expect("the export file");
    let lines = std::fs::read_to_string(s.path().join(exported)).expect("the export");
    assert_eq!(Some(lines.lines().count() as u64), found, "{exported}");
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

/// The canary's figures in a run's log, by observation name.
fn canary_observations(
    log: &std::path::Path,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    events(log)
        .into_iter()
        .filter(|e| e["event"] == "observation")
        .filter_map(|e| {
            let name = e["name"].as_str()?.to_owned();
            name.starts_with("canary_")
                .then(|| (name, e["data"].clone()))
        })
        .collect()
}

#[test]
fn disaster_canary_sees_the_gap_kdr_accepted_and_the_report_shows_it() {
    let s = Scratch::new();
    let dir = s.file("logs");
    let dir_arg = dir.to_str().expect("utf-8 path");
    let run = s.kdr(&[
        "rehearse",
        "--scenario",
        "disaster",
        "--log-dir",
        dir_arg,
        "--report",
        "md",
        "--report-file",
        "report.md",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");

    // Both logs went under --log-dir, named as failovers' and failbacks' logs are, and beside
    // them the failback's export of the records only the old primary saw, in a folder of its
    // own.
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .expect("the log dir")
        .map(|e| e.expect("entry").path())
        .collect();
    logs.sort();
    assert_eq!(logs.pop(), Some(dir.join("stranded")), "{logs:?}");
    assert_eq!(logs.len(), 2, "{logs:?}");
    let (failback, failover) = (&logs[0], &logs[1]);
    assert!(
        failover.to_string_lossy().contains("-failover-"),
        "{logs:?}"
    );
    assert!(
        failback.to_string_lossy().contains("-failback-"),
        "{logs:?}"
    );

    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    for (log, at) in [(failover, "failover"), (failback, "failback")] {
        let canary = canary_observations(log);
        for name in [
            "canary_outage",
            "canary_publish_before",
            "canary_publish_during",
            "canary_publish_after",
            "canary_stabilization",
            "canary_e2e_before",
            "canary_e2e_after",
            "canary_data_gap",
            "canary_duplicates",
        ] {
            assert!(canary.contains_key(name), "{at}: no {name} in {canary:?}");
        }
        assert!(
            canary["canary_outage"]["outage_ms"].as_f64() >= Some(0.0),
            "{at}: {canary:?}"
        );
        for window in ["before", "during", "after"] {
            let l = &canary[&format!("canary_publish_{window}")];
            // The drill winds down right after the failback: nothing may come after it.
            if (at, window) != ("failback", "after") {
                assert!(l["count"].as_u64() > Some(0), "{at} {window}: {l}");
            }
            assert!(
                l["p99_ms"].as_f64() >= l["p50_ms"].as_f64(),
                "{at} {window}: {l}"
            );
            assert!(
                l["max_ms"].as_f64() >= l["p99_ms"].as_f64(),
                "{at} {window}: {l}"
            );
        }
        // The data gap is exactly the loss kdr accepted on the canary's partitions.
        let gap = &canary["canary_data_gap"];
        assert_eq!(gap["missing"], gap["kdr_accepted"], "{at}: {gap}");
        for p in gap["partitions"].as_array().expect("partitions") {
            assert_eq!(p["missing"], p["kdr_accepted"], "{at}: {gap}");
        }
        let accepted: i64 = report["loss_per_partition"]
            .as_array()
            .expect("loss per partition")
            .iter()
            .filter(|p| p["topic"] == "kdr-canary")
            .filter_map(|p| p["accepted_by_kdr"].as_i64())
            .sum();
        if at == "failover" {
            // The disaster left canary records on the primary that never reached DR.
            assert!(gap["missing"].as_i64() > Some(0), "{gap}");
            assert_eq!(gap["missing"].as_i64(), Some(accepted), "{gap} / {report}");
        }
    }

    // The report written by --report has the canary section and the observed RPO.
    let md = s.read("report.md");
    assert!(md.contains("### Canary"), "{md}");
    assert!(md.contains("canary_data_gap"), "{md}");
    assert!(md.contains("| kdr-canary |"), "{md}");
}
