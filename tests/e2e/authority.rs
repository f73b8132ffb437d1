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
/// A failback's declaration: the world's producers keep writing to the primary after these
/// failovers (nothing repoints them), so the failback finds records only the primary saw and
/// needs the plan's choice; leaving them to the consumers changes nothing these tests watch.
const DECLARE_BACK: &str = "  - declare: { stranded: consume }\n";

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
    w.plan_both(DECLARE, DECLARE_BACK, "");
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
        "  - declare: { stranded: consume }\n  - check_reverse_replication: { max_heartbeat_age: 5s }\n",
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

/// Another operator's run (on another machine, so another run lock) that claimed epoch 1 on DR
/// and has not moved authority yet.
fn claim_elsewhere(w: &World) -> kdr::authority::ClaimRecord {
    use kdr::journal::{Journal, Recorder};
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let mut recorder = Recorder::new(
        Journal::create(&elsewhere.path().join("bob.jsonl"), "bobs-run").expect("log"),
        Vec::new(),
        kdr::plan::Secrets::new(Vec::new()),
    );
    let claim = kdr::authority::Claim {
        plan: "drill",
        owner: PlanRole::Dr,
        direction: Direction::Failover,
        operator: "bob",
        force: false,
    };
    let (primary, dr) = (w.cluster(Role::Primary), w.cluster(Role::Dr));
    block_on(async {
        let epoch = kdr::authority::contest(&mut recorder, &primary, &dr, None, claim)
            .await
            .expect("bob claims");
        let claims = kdr::authority::read_claims(&dr, "drill")
            .await
            .expect("claims");
        kdr::authority::first_claim(&claims, epoch)
            .expect("bob's claim")
            .claim
            .clone()
    })
}

#[test]
fn a_run_that_loses_the_claim_changes_nothing_says_who_won_and_cannot_be_resumed() {
    let w = world();
    let bob = claim_elsewhere(&w);
    w.plan_both(
        "  - declare: {}\n  - exec: { run: \"touch ran\" }\n",
        DECLARE,
        "",
    );
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 1, "{run:?}");
    let who = format!(
        "write authority for epoch 1 was claimed first by another run: bob on {}, run bobs-run, claimed at {}; this run changed nothing on any cluster",
        bob.host, bob.at
    );
    assert!(run.stderr.contains(&who), "{run:?}");
    assert!(
        !run.stderr.contains("--resume"),
        "a loser is not told to resume: {run:?}"
    );
    assert!(!w.scratch.file("ran").exists(), "the loser ran a step");
    let state = block_on(kdr::authority::read_both(
        &w.cluster(Role::Primary),
        &w.cluster(Role::Dr),
        "drill",
    ));
    assert_eq!(
        (state.primary.clone(), state.dr.clone()),
        (ClusterView::NeverRecorded, ClusterView::NeverRecorded),
        "the loser recorded authority"
    );
    let claims =
        block_on(kdr::authority::read_claims(&w.cluster(Role::Dr), "drill")).expect("claims");
    assert_eq!(claims.len(), 1, "the loser wrote a claim: {claims:?}");
    let log = w.log();
    let logged = events(&log);
    assert!(logged.iter().any(|e| {
        e["event"] == "decision" && e["what"] == "give way to run bobs-run for epoch 1"
    }));
    assert!(logged.iter().any(|e| e["name"] == "authority_claims"));

    let log = log.display().to_string();
    let resumed = w.kdr(&args(&[
        "failover",
        "--plan",
        "drill.yaml",
        "--resume",
        &log,
    ]));
    assert_eq!(resumed.code, 1, "{resumed:?}");
    assert!(
        resumed.stderr.contains(&format!(
            "cannot resume from {log}: that run lost write authority for epoch 1 to bob on {}, run bobs-run",
            bob.host
        )),
        "{resumed:?}"
    );
    assert!(
        !w.scratch.file("ran").exists(),
        "the resumed loser ran a step"
    );
}

#[test]
fn a_failback_claims_at_its_declaration_and_finds_its_claim_again_at_the_end() {
    let w = world();
    w.plan_both(
        DECLARE,
        "  - declare: { stranded: consume }\n  - exec: { run: \"touch ran\" }\n",
        "",
    );
    assert_eq!(w.kdr(&args(&["failover", "--plan", "drill.yaml"])).code, 0);
    let back = w.kdr(&args(&["failback", "--plan", "drill.yaml"]));
    assert_eq!(back.code, 0, "{back:?}");
    let claims = block_on(kdr::authority::read_claims(
        &w.cluster(Role::Primary),
        "drill",
    ))
    .expect("claims");
    assert_eq!(
        claims
            .iter()
            .map(|c| (c.claim.epoch, c.claim.supersedes, c.claim.owner))
            .collect::<Vec<_>>(),
        [(2, 1, PlanRole::Primary)],
        "one claim, written at the declaration and found again at the end"
    );
    assert!(
        back.stderr
            .contains("epoch 2 of write authority claimed for primary"),
        "{back:?}"
    );
}

#[test]
fn status_and_every_run_say_authority_is_unknown_when_no_cluster_could_be_read() {
    let s = crate::harness::Scratch::new();
    s.exec_plan("dead", "  - declare: {}\n", "  - exec: { run: \"true\" }\n");
    let run = s.kdr(&["status", "--plan", "dead.yaml", "--timeout", "2s"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("write authority unknown: no cluster could be read"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("no authority recorded yet"), "{run:?}");
    let run = s.kdr(&["failover", "--plan", "dead.yaml", "--dry-run"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("· write authority unknown: no cluster could be read (primary: "),
        "{run:?}"
    );
    assert!(!run.stderr.contains("no authority recorded yet"), "{run:?}");
}
