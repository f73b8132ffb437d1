//! Write authority: who owns writes, on the clusters themselves, and refusals that follow from it.

use std::time::Duration;

use kdr::authority::{AuthorityRecord, ClusterView, TOPIC};
use kdr::mm2::ReplicationPolicy;
use kdr::plan::{Direction, Role as PlanRole};
use kdr::rehearsal::Role;

use crate::harness::events;
use crate::world::{World, block_on, spec};

const YES: &[&str] = &["--yes", "--operator", "alice", "--reason", "drill"];
const DECLARE: &str = "  - declare: {}\n";

fn args<'a>(base: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(YES).copied().collect()
}

fn world() -> World {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    for role in [Role::Primary, Role::Dr] {
        w.world
            .create_topic(role, TOPIC, 1)
            .expect("authority topic");
    }
    w
}

#[test]
fn failover_moves_authority_to_dr_and_a_second_failover_is_refused_unless_forced() {
    let w = world();
    w.plan_both(DECLARE, DECLARE, "");
    let first = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(first.code, 0, "{first:?}");
    let state = block_on(kdr::authority::read_both(
        &w.cluster(Role::Primary),
        &w.cluster(Role::Dr),
        "drill",
    ));
    assert_eq!(state.owner(), (PlanRole::Dr, 1));
    for view in [&state.primary, &state.dr] {
        let ClusterView::Recorded { record } = view else {
            panic!("no record: {view:?}")
        };
        assert_eq!(
            (
                record.owner,
                record.epoch,
                record.operator.as_str(),
                record.direction
            ),
            (PlanRole::Dr, 1, "alice", Direction::Failover)
        );
    }

    let status = w.kdr(&["status", "--plan", "drill.yaml", "--output", "json"]);
    assert_eq!(status.code, 1, "{status:?}");
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(report["verdict"]["kind"], "failed_over", "{report}");
    assert_eq!(report["authority"]["dr"]["record"]["epoch"], 1, "{report}");

    let again = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(again.code, 1, "{again:?}");
    // What `kdr status` says, at once: no run, no log, no empty table.
    assert_eq!(
        again.stderr,
        "refused: already failed over (dr owns writes at epoch 1); fail back with kdr failback --plan drill.yaml (to run anyway: --force --reason TEXT)\n",
        "{again:?}"
    );
    assert_eq!(again.stdout, "", "{again:?}");
    assert_eq!(w.scratch.logs().len(), 1, "the refused run left a log");

    // At a terminal, nothing is asked first: not the operator, not the reason.
    let asked = crate::operator::at_a_terminal(
        &w.scratch,
        &["failover", "--plan", "drill.yaml"],
        "alice\nagain\n",
    );
    assert_eq!(asked.code, 1, "{asked:?}");
    assert!(
        asked
            .stderr
            .starts_with("refused: already failed over (dr owns writes at epoch 1)"),
        "{asked:?}"
    );
    assert!(!asked.stderr.contains("Operator"), "{asked:?}");
    let forced = w.kdr(&args(&["failover", "--plan", "drill.yaml", "--force"]));
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(events(&w.log()).iter().any(|e| {
        e["event"] == "decision"
            && e["what"]
                .as_str()
                .is_some_and(|w| w.starts_with("force the failover although"))
    }));
    // Already on DR: a forced failover has nothing to move.
    let state = block_on(kdr::authority::read_both(
        &w.cluster(Role::Primary),
        &w.cluster(Role::Dr),
        "drill",
    ));
    assert_eq!(state.owner(), (PlanRole::Dr, 1));
}

#[test]
fn failback_is_refused_while_the_primary_owns_writes_and_moves_authority_back_when_done() {
    let w = world();
    w.plan_both(DECLARE, DECLARE, "");
    let refused = w.kdr(&args(&["failback", "--plan", "drill.yaml"]));
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(
        refused.stderr,
        "refused: already on the primary: it owns writes, and no failover of plan drill was ever recorded (no epoch); there is nothing to fail back (to run anyway: --force --reason TEXT)\n",
        "{refused:?}"
    );

    assert_eq!(w.kdr(&args(&["failover", "--plan", "drill.yaml"])).code, 0);
    let back = w.kdr(&args(&["failback", "--plan", "drill.yaml"]));
    assert_eq!(back.code, 0, "{back:?}");
    let state = block_on(kdr::authority::read_both(
        &w.cluster(Role::Primary),
        &w.cluster(Role::Dr),
        "drill",
    ));
    assert_eq!(state.owner(), (PlanRole::Primary, 2));
    assert_eq!(state.split_brain(), None);
}

#[test]
fn split_brain_is_reported_loudly() {
    let w = world();
    let record = |owner, epoch| AuthorityRecord {
        v: 1,
        plan: "drill".into(),
        owner,
        epoch,
        run_id: format!("r{epoch}"),
        operator: "bob".into(),
        direction: Direction::Failover,
        at: "2026-11-21T03:00:00.000Z".into(),
    };
    // The primary came back believing it still owns writes; DR took them over meanwhile.
    block_on(async {
        kdr::authority::write(&w.cluster(Role::Primary), &record(PlanRole::Primary, 0))
            .await
            .expect("write primary");
        kdr::authority::write(&w.cluster(Role::Dr), &record(PlanRole::Dr, 1))
            .await
            .expect("write dr");
    });
    w.plan_both(DECLARE, DECLARE, "");
    let run = w.kdr(&args(&["failback", "--plan", "drill.yaml", "--dry-run"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("!!! SPLIT BRAIN: primary claims write authority (epoch 0"),
        "{run:?}"
    );
    assert!(events(&w.log()).iter().any(|e| e["name"] == "split_brain"));

    // Every look-up command says it too; status puts it first.
    let status = w.kdr(&["status", "--plan", "drill.yaml", "--output", "json"]);
    assert_eq!(status.code, 1, "{status:?}");
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(report["verdict"]["kind"], "split_brain", "{report}");
    for command in [
        vec!["lag", "--plan", "drill.yaml"],
        vec!["offsets", "translate", "--plan", "drill.yaml"],
    ] {
        let run = w.kdr(&command);
        assert!(run.stderr.contains("SPLIT BRAIN"), "{command:?}: {run:?}");
    }
}

#[test]
fn check_reverse_replication_says_what_is_missing_without_a_flow_back() {
    let w = world();
    w.plan_both(
        DECLARE,
        "  - declare: {}\n  - check_reverse_replication: { max_heartbeat_age: 5s }\n",
        "",
    );
    assert_eq!(w.kdr(&args(&["failover", "--plan", "drill.yaml"])).code, 0);
    let run = w.kdr(&args(&["failback", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no heartbeats in dr.heartbeats on primary: is the dr->primary MirrorMaker flow running?"), "{run:?}");
    assert!(
        run.stderr
            .contains("no checkpoint for group billing in dr.checkpoints.internal on primary"),
        "{run:?}"
    );
}

#[test]
fn a_client_secret_never_reaches_output_tracing_or_the_log_even_at_trace_level() {
    let w = world();
    let secret = "s3cr3t-Pa55-for-kafka";
    let plan = w.plan_both(DECLARE, DECLARE, "");
    let text = std::fs::read_to_string(&plan).expect("plan").replacen(
        "primary: { bootstrap_servers: ",
        "primary: { client: { sasl.username: kdr, sasl.password: \"${env:KDR_E2E_SECRET}\" }, bootstrap_servers: ",
        1,
    );
    std::fs::write(&plan, text).expect("write");
    let mut outputs = Vec::new();
    for command in [
        args(&[
            "-vv",
            "failover",
            "--plan",
            "drill.yaml",
            "--output",
            "json",
        ]),
        vec!["-vv", "status", "--plan", "drill.yaml"],
        vec!["-vv", "lag", "--plan", "drill.yaml"],
        vec![
            "-vv",
            "offsets",
            "translate",
            "--plan",
            "drill.yaml",
            "--output",
            "json",
        ],
        vec!["-vv", "plan", "show", "drill.yaml"],
    ] {
        let child = w
            .scratch
            .command(&command)
            .env("KDR_E2E_SECRET", secret)
            .spawn()
            .expect("spawn");
        let run = crate::harness::wait(child, Duration::from_secs(60));
        outputs.push((format!("{command:?}"), run));
    }
    assert_eq!(outputs[0].1.code, 0, "{:?}", outputs[0].1);
    assert!(
        outputs[0].1.stderr.contains("TRACE") || outputs[0].1.stderr.contains("DEBUG"),
        "-vv must trace: {:?}",
        outputs[0].1
    );
    for (command, run) in &outputs {
        assert!(
            !run.stdout.contains(secret),
            "{command}: the secret reached stdout"
        );
        assert!(
            !run.stderr.contains(secret),
            "{command}: the secret reached stderr (tracing)"
        );
    }
    for log in w.scratch.logs() {
        assert!(
            !std::fs::read_to_string(&log).expect("log").contains(secret),
            "the secret reached {}",
            log.display()
        );
    }
}
