//! `kdr drill`, the built binary, on the two Nisshi brokers with kdr's replicator between them
//! (primary -> dr, then dr -> primary once the failover is done, as the runbook turns
//! MirrorMaker 2 around): the canary publishes through the files the bundled plan's hooks
//! rewrite, across the failover and the failback, and its figures are checked against kdr's.

use kdr::rehearsal::{Endpoint, Replicator, ReplicatorConfig, TopicSpec, WorldSpec};

use crate::harness::{Pair, RUN_BOUND, Running, events, wait_for_event};
use crate::mm2::create_layout_of;

/// The canary's topic and group (`kdr drill` requires the plan to replicate them).
const CANARY: &str = "kdr-canary";

const BUNDLED: &str = include_str!("../../runbooks/rehearsal.yaml");

/// The bundled plan pointed at the pair, replicating the canary's topic and group only.
fn plan_text(pair: &Pair) -> String {
    let text = BUNDLED
        .replace("127.0.0.1:9092", &pair.primary.bootstrap())
        .replace("127.0.0.1:9093", &pair.dr.bootstrap())
        .replace("topics: [orders, payments]", &format!("topics: [{CANARY}]"))
        .replace(
            "groups: [order-processor, billing]",
            &format!("groups: [{CANARY}]"),
        );
    assert!(
        text.contains(&format!("groups: [{CANARY}]")) && text.contains(&pair.dr.bootstrap()),
        "the bundled plan's shape changed: fix the edit"
    );
    text
}

/// The replicator's flow `from -> to` for the canary's topic and group.
fn flow(from: Endpoint, to: Endpoint) -> Replicator {
    let mut config = ReplicatorConfig::new(from, to);
    config.topics = vec![CANARY.to_owned()];
    config.groups = vec![CANARY.to_owned()];
    Replicator::start(config).expect("replicator")
}

#[test]
fn drill_fails_over_and_back_on_real_brokers_and_the_canary_matches_kdrs_figures() {
    let pair = Pair::start();
    create_layout_of(
        &pair,
        &WorldSpec {
            topics: vec![TopicSpec::new(CANARY, 2)],
            groups: vec![CANARY.to_owned()],
            ..WorldSpec::default()
        },
    );
    let primary = Endpoint::new("primary", pair.primary.bootstrap());
    let dr = Endpoint::new("dr", pair.dr.bootstrap());
    let forward = flow(primary.clone(), dr.clone());

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("staging.yaml"), plan_text(&pair)).expect("plan");
    let drill = Running::start(
        dir.path(),
        &[
            "drill",
            "--plan",
            "staging.yaml",
            "--failback",
            "--yes",
            "--stable-for",
            "3s",
            "--log-dir",
            "evidence/incidents",
            "--metrics-file",
            "drill.prom",
            "--output",
            "json",
        ],
    );
    // As the runbook turns MirrorMaker 2 around once the failover is done: the flow into DR
    // stops, the flow back into the primary starts (the drill keeps the canary on DR meanwhile,
    // and the failback checks the flow back before it moves anything).
    wait_for_event(
        &dir.path().join("evidence"),
        RUN_BOUND,
        "the failover's end",
        |e| e["event"] == "run_finished",
    );
    forward.stop();
    let back = flow(dr, primary);
    let run = drill.finish();
    back.stop();
    assert_eq!(run.code, 0, "{run:?}");

    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let checks = report["checks"].as_array().expect("checks");
    assert!(
        checks.iter().all(|c| c["ok"] == true),
        "a check did not hold: {checks:#?}"
    );
    for name in [
        "failover succeeded",
        "failback succeeded",
        "canary: the plan's hooks moved it to dr",
        "canary: the plan's hooks moved it back to primary",
        "canary: the data gap at the failover matches kdr's accepted RPO",
        "canary: duplicates at the failback match kdr's re-read estimate",
    ] {
        assert!(
            checks.iter().any(|c| c["name"] == name),
            "no check {name:?}: {checks:#?}"
        );
    }
    for at in ["canary", "canary_failback"] {
        let c = &report[at];
        assert!(c["outage_ms"].as_f64().is_some(), "{at}: {c}");
        assert!(c["before"]["count"].as_u64() > Some(0), "{at}: {c}");
        assert!(c["after"]["count"].as_u64() > Some(0), "{at}: {c}");
        assert_eq!(c["stable_window_ms"], 3000, "{at}: {c}");
        // A controlled switch: nothing lost, and kdr said so.
        for p in c["partitions"].as_array().expect("partitions") {
            assert_eq!((&p["missing"], &p["kdr_accepted"]), (&0.into(), &0.into()));
        }
        assert_eq!(
            c["duplicates"].as_i64(),
            c["kdr_may_reread"].as_i64(),
            "{at}: {c}"
        );
    }
    assert!(report["rto"]["validated"] == true, "{}", report["rto"]);

    // Both runs' logs are under --log-dir, each with the canary's observations after its end.
    let logs = [
        report["run"]["log"].clone(),
        report["failback"]["log"].clone(),
    ];
    for log in &logs {
        let log = dir.path().join(log.as_str().expect("log path"));
        assert!(
            log.starts_with(dir.path().join("evidence/incidents")),
            "{}",
            log.display()
        );
        let names: Vec<String> = events(&log)
            .iter()
            .filter(|e| e["kind"] == "canary")
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect();
        for name in ["canary_outage", "canary_stabilization", "canary_data_gap"] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} not in {}",
                log.display()
            );
        }
    }
    let metrics = std::fs::read_to_string(dir.path().join("drill.prom")).expect("metrics");
    assert!(
        metrics.contains("kdr_rehearsal_passed{plan=\"rehearsal\",scenario=\"clusters\"} 1\n"),
        "{metrics}"
    );
}
