//! The look-up commands (`kdr lag`, `kdr offsets translate`, `kdr status`) against the embedded
//! world: two in-process clusters with MM2-compatible replication and an accounted workload in
//! this test process, kdr run as a child against them. Every JSON output is read back into the
//! structs below, which refuse unknown fields: they are the documented contract.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kdr::mm2::ReplicationPolicy;
use kdr::rehearsal::{Pause, Role};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Deserialize;

use crate::harness::{Run, Scratch, wait_until};
use crate::world::{TOPICS, World, spec};

// ---- The JSON contract -------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct TranslateOut {
    v: u32,
    direction: String,
    source: String,
    target: String,
    checkpoints_topic: String,
    applied: bool,
    source_error: Option<String>,
    groups: Vec<GroupOut>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupOut {
    group: String,
    state: String,
    partitions: Vec<PartitionOut>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionOut {
    source_topic: String,
    target_topic: String,
    partition: i32,
    source_offset: i64,
    target_offset: i64,
    checkpoint_age_ms: i64,
    action: String,
    source_committed_offset: Option<i64>,
    current_offset: Option<i64>,
}

const TRANSLATE_KEYS: &[&str] = &[
    "v",
    "direction",
    "source",
    "target",
    "checkpoints_topic",
    "applied",
    "source_error",
    "groups",
];
const TRANSLATE_PARTITION_KEYS: &[&str] = &[
    "source_topic",
    "target_topic",
    "partition",
    "source_offset",
    "target_offset",
    "checkpoint_age_ms",
    "action",
    "source_committed_offset",
    "current_offset",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LagOut {
    v: u32,
    direction: String,
    source: String,
    target: String,
    source_reachable: bool,
    source_error: Option<String>,
    total_lag: Option<i64>,
    partitions: Vec<LagRowOut>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LagRowOut {
    source_topic: String,
    target_topic: String,
    partition: i32,
    source_end: Option<i64>,
    replicated_to: Option<i64>,
    lag: Option<i64>,
    method: String,
    target_end: i64,
    newest_record_age_ms: Option<i64>,
}

const LAG_KEYS: &[&str] = &[
    "v",
    "direction",
    "source",
    "target",
    "source_reachable",
    "source_error",
    "total_lag",
    "partitions",
];
const LAG_ROW_KEYS: &[&str] = &[
    "source_topic",
    "target_topic",
    "partition",
    "source_end",
    "replicated_to",
    "lag",
    "method",
    "target_end",
    "newest_record_age_ms",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusOut {
    v: u32,
    plan: String,
    clusters: Vec<ClusterOut>,
    authority: serde_json::Value,
    replication: Vec<FlowOut>,
    verdict: VerdictOut,
    problems: Vec<VerdictOut>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterOut {
    role: String,
    bootstrap_servers: String,
    reachable: bool,
    brokers: Option<usize>,
    error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowOut {
    direction: String,
    source: String,
    target: String,
    heartbeat_age_ms: Option<i64>,
    lag: Option<LagSummaryOut>,
    lag_error: Option<String>,
    checkpoints: Vec<GroupCheckpointOut>,
    checkpoints_error: Option<String>,
    sparse_checkpoints: Vec<SparseCheckpointOut>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SparseCheckpointOut {
    group: String,
    target_topic: String,
    partition: i32,
    upstream_offset: i64,
    downstream_offset: i64,
    target_end: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LagSummaryOut {
    total_records: i64,
    partitions: usize,
    partitions_lagging: usize,
    max_lag: i64,
    missing_on_target: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupCheckpointOut {
    group: String,
    checkpoint_age_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictOut {
    healthy: bool,
    kind: String,
    message: String,
}

const STATUS_KEYS: &[&str] = &[
    "v",
    "plan",
    "clusters",
    "authority",
    "replication",
    "verdict",
    "problems",
];
const FLOW_KEYS: &[&str] = &[
    "direction",
    "source",
    "target",
    "heartbeat_age_ms",
    "lag",
    "lag_error",
    "checkpoints",
    "checkpoints_error",
    "sparse_checkpoints",
];

/// Nullable fields are absent-tolerant in serde; the contract says they are always there.
fn assert_keys(value: &serde_json::Value, keys: &[&str]) {
    let mut have: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    have.sort_unstable();
    let mut want = keys.to_vec();
    want.sort_unstable();
    assert_eq!(have, want, "{value}");
}

fn parse<T: serde::de::DeserializeOwned>(run: &Run) -> (T, serde_json::Value) {
    let value: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("json: {e}\n{run:?}"));
    let typed = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("the documented shape: {e}\n{run:?}"));
    (typed, value)
}

fn translate_json(run: &Run) -> TranslateOut {
    let (out, value): (TranslateOut, _) = parse(run);
    assert_keys(&value, TRANSLATE_KEYS);
    for g in value["groups"].as_array().expect("groups") {
        assert_keys(g, &["group", "state", "partitions"]);
        for p in g["partitions"].as_array().expect("partitions") {
            assert_keys(p, TRANSLATE_PARTITION_KEYS);
        }
    }
    out
}

fn lag_json(run: &Run) -> LagOut {
    let (out, value): (LagOut, _) = parse(run);
    assert_keys(&value, LAG_KEYS);
    for p in value["partitions"].as_array().expect("partitions") {
        assert_keys(p, LAG_ROW_KEYS);
    }
    out
}

fn status_json(run: &Run) -> StatusOut {
    let (out, value): (StatusOut, _) = parse(run);
    assert_keys(&value, STATUS_KEYS);
    for c in value["clusters"].as_array().expect("clusters") {
        assert_keys(
            c,
            &["role", "bootstrap_servers", "reachable", "brokers", "error"],
        );
    }
    for f in value["replication"].as_array().expect("replication") {
        assert_keys(f, FLOW_KEYS);
    }
    out
}

// ---- offsets translate -------------------------------------------------------------------

/// Topic names on the target, written out per policy rather than computed by kdr's code.
struct Naming {
    remote: fn(&str) -> String,
    checkpoints_topic: &'static str,
}

/// The expected translation of every plan group, from what the replicator says it
/// checkpointed and what the test reads from the clusters itself.
fn expected_translation(
    w: &World,
    naming: &Naming,
    applied: bool,
    stats: &kdr::rehearsal::ReplicatorStats,
) -> TranslateOut {
    let mut groups = w.spec.groups.clone();
    groups.sort();
    let sources: Vec<String> = TOPICS.iter().map(|(t, _)| (*t).to_owned()).collect();
    let targets: Vec<String> = sources.iter().map(|t| (naming.remote)(t)).collect();
    let groups = groups
        .into_iter()
        .map(|group| {
            let on_source = w.committed(Role::Primary, &group, &sources);
            let on_target = w.committed(Role::Dr, &group, &targets);
            let partitions = stats
                .last_checkpoints
                .iter()
                .filter(|((g, _, _), _)| *g == group)
                .map(|((_, topic, partition), c)| {
                    let source_topic = sources
                        .iter()
                        .find(|s| (naming.remote)(s) == *topic)
                        .expect("a source topic")
                        .clone();
                    let current = on_target.get(&(topic.clone(), *partition)).copied();
                    PartitionOut {
                        source_committed_offset: on_source
                            .get(&(source_topic.clone(), *partition))
                            .copied(),
                        source_topic,
                        target_topic: topic.clone(),
                        partition: *partition,
                        source_offset: c.upstream_offset,
                        target_offset: c.downstream_offset,
                        checkpoint_age_ms: 0,
                        action: if current == Some(c.downstream_offset) {
                            "unchanged".to_owned()
                        } else {
                            "commit".to_owned()
                        },
                        current_offset: current,
                    }
                })
                .collect();
            GroupOut {
                group,
                state: "unknown (membership not reported by this cluster)".to_owned(),
                partitions,
            }
        })
        .collect();
    TranslateOut {
        v: 1,
        direction: "failover".to_owned(),
        source: "primary".to_owned(),
        target: "dr".to_owned(),
        checkpoints_topic: naming.checkpoints_topic.to_owned(),
        applied,
        source_error: None,
        groups,
    }
}

fn redact_ages(mut out: TranslateOut) -> TranslateOut {
    for g in &mut out.groups {
        for p in &mut g.partitions {
            assert!(p.checkpoint_age_ms >= 0, "{p:?}");
            p.checkpoint_age_ms = 0;
        }
    }
    out
}

/// Runs `offsets translate` until the checkpoints did not change while it ran (the replicator
/// is paused, so at most a round that was under way lands), and returns its output with the
/// expectation computed from the replicator's checkpoints at that moment.
fn translate_settled(
    w: &World,
    naming: &Naming,
    args: &[&str],
) -> (Run, TranslateOut, TranslateOut) {
    let applied = args.contains(&"--apply");
    for _ in 0..5 {
        let before = w.replicator().stats();
        let run = w.kdr(args);
        let after = w.replicator().stats();
        if before.checkpoints_written == after.checkpoints_written {
            let got = redact_ages(translate_json(&run));
            // Committed offsets on the target are what they were before the command ran.
            return (run, got, expected_translation(w, naming, applied, &after));
        }
        assert!(!applied, "checkpoints moved during --apply");
    }
    panic!("the checkpoints kept changing although the replicator was paused");
}

/// The exact JSON, then `--apply` commits and a second `--apply` finds nothing to do.
fn translate_is_exact_and_apply_is_idempotent(policy: ReplicationPolicy, naming: &Naming) {
    let mut w = World::start(spec(policy));
    w.stop_workload();
    w.replicator().pause(Pause::Everything);
    let json = [
        "offsets",
        "translate",
        "--plan",
        "drill.yaml",
        "--output",
        "json",
    ];

    let (run, got, mut want) = translate_settled(&w, naming, &json);
    assert_eq!(run.code, 0, "{run:?}");
    for g in &want.groups {
        assert!(
            !g.partitions.is_empty(),
            "group {} has checkpoints",
            g.group
        );
        assert!(g.partitions.iter().all(|p| p.action == "commit"), "{g:?}");
    }
    assert_eq!(got, want);

    // --apply commits exactly that, and says so.
    let apply: Vec<&str> = json.iter().copied().chain(["--apply"]).collect();
    let run = w.kdr(&apply);
    assert_eq!(run.code, 0, "{run:?}");
    want.applied = true;
    assert_eq!(redact_ages(translate_json(&run)), want);
    for g in &want.groups {
        let targets: Vec<String> = TOPICS.iter().map(|(t, _)| (naming.remote)(t)).collect();
        let committed = w.committed(Role::Dr, &g.group, &targets);
        let expected: BTreeMap<(String, i32), i64> = g
            .partitions
            .iter()
            .map(|p| ((p.target_topic.clone(), p.partition), p.target_offset))
            .collect();
        assert_eq!(committed, expected, "group {} on dr", g.group);
    }

    // A second --apply has nothing left to do.
    let run = w.kdr(&apply);
    assert_eq!(run.code, 0, "{run:?}");
    let again = redact_ages(translate_json(&run));
    for g in &mut want.groups {
        for p in &mut g.partitions {
            p.current_offset = Some(p.target_offset);
            p.action = "unchanged".to_owned();
        }
    }
    assert_eq!(again, want);
    // The table says the same thing.
    let run = w.kdr(&["offsets", "translate", "--plan", "drill.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("--apply would"), "{run:?}");
    assert!(run.stdout.contains("unchanged"), "{run:?}");
    assert!(!run.stdout.contains("nothing was written"), "{run:?}");
}

#[test]
fn offsets_translate_default_policy_is_exact_and_apply_commits_once() {
    translate_is_exact_and_apply_is_idempotent(
        ReplicationPolicy::default_policy(),
        &Naming {
            remote: |t| format!("primary.{t}"),
            checkpoints_topic: "primary.checkpoints.internal",
        },
    );
}

#[test]
fn offsets_translate_identity_policy_is_exact_and_apply_commits_once() {
    translate_is_exact_and_apply_is_idempotent(
        ReplicationPolicy::identity(None),
        &Naming {
            remote: |t| t.to_owned(),
            checkpoints_topic: "primary.checkpoints.internal",
        },
    );
}

#[test]
fn offsets_translate_custom_separator_is_exact_and_apply_commits_once() {
    translate_is_exact_and_apply_is_idempotent(
        ReplicationPolicy::Default {
            separator: "_".to_owned(),
            internal_separator: true,
        },
        &Naming {
            remote: |t| format!("primary_{t}"),
            checkpoints_topic: "primary_checkpoints_internal",
        },
    );
}

#[test]
fn offsets_translate_filters_groups_refuses_live_ones_and_works_without_the_source() {
    let mut w = World::start(spec(ReplicationPolicy::default_policy()));
    w.stop_workload();
    w.replicator().pause(Pause::Everything);
    let naming = Naming {
        remote: |t| format!("primary.{t}"),
        checkpoints_topic: "primary.checkpoints.internal",
    };
    let (_, all, _) = translate_settled(
        &w,
        &naming,
        &[
            "offsets",
            "translate",
            "--plan",
            "drill.yaml",
            "--output",
            "json",
        ],
    );
    let billing = all
        .groups
        .iter()
        .find(|g| g.group == "billing")
        .expect("billing")
        .clone();

    // --group restricts, by name or pattern.
    let run = w.kdr(&[
        "offsets",
        "translate",
        "--plan",
        "drill.yaml",
        "--group",
        "billing",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        redact_ages(translate_json(&run)).groups,
        vec![billing.clone()]
    );
    let run = w.kdr(&[
        "offsets",
        "translate",
        "--plan",
        "drill.yaml",
        "--group",
        "re:bill.*",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        redact_ages(translate_json(&run)).groups,
        vec![billing.clone()]
    );

    // A group without a checkpoint is shown empty, and the check fails.
    let run = w.kdr(&[
        "offsets",
        "translate",
        "--plan",
        "drill.yaml",
        "--group",
        "ghost",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let out = translate_json(&run);
    assert_eq!(out.groups.len(), 1);
    assert_eq!(out.groups[0].group, "ghost");
    assert!(out.groups[0].partitions.is_empty());
    assert!(
        run.stderr.contains("no checkpoint for group ghost"),
        "{run:?}"
    );

    // A bad pattern is bad usage.
    let run = w.kdr(&[
        "offsets",
        "translate",
        "--plan",
        "drill.yaml",
        "--group",
        "re:(",
    ]);
    assert_eq!(run.code, 2, "{run:?}");

    // A group with a live member on the target is refused: the broker would not take the
    // commit, and the member would overwrite it anyway.
    let member = join_group(&w, Role::Dr, "order-processor", "primary.orders");
    let run = w.kdr(&[
        "offsets",
        "translate",
        "--plan",
        "drill.yaml",
        "--group",
        "order-processor",
        "--apply",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let out = translate_json(&run);
    assert!(out.applied);
    assert_eq!(out.groups[0].state, "active", "{out:?}");
    assert!(
        out.groups[0]
            .partitions
            .iter()
            .all(|p| p.action == "skip: active" && p.current_offset.is_none()),
        "{out:?}"
    );
    let targets: Vec<String> = TOPICS.iter().map(|(t, _)| format!("primary.{t}")).collect();
    assert!(
        w.committed(Role::Dr, "order-processor", &targets)
            .is_empty(),
        "nothing was committed for the active group"
    );
    drop(member);

    // The source gone: the translation still comes from the target, without the source's side.
    w.world.cluster_down(Role::Primary).expect("primary down");
    let run = w.kdr(&[
        "offsets",
        "translate",
        "--plan",
        "drill.yaml",
        "--group",
        "billing",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let out = redact_ages(translate_json(&run));
    assert!(
        out.source_error
            .as_deref()
            .is_some_and(|e| e.starts_with("primary unreachable")),
        "{out:?}"
    );
    let mut want = billing;
    for p in &mut want.partitions {
        p.source_committed_offset = None;
    }
    assert_eq!(out.groups, vec![want]);
    assert!(
        run.stderr.contains("source committed offsets not shown"),
        "{run:?}"
    );
}

/// A consumer that joins `group` on one cluster and stays a member (the mock keeps members
/// for the group's life).
fn join_group(w: &World, role: Role, group: &str, topic: &str) -> BaseConsumer {
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", w.world.bootstrap_servers(role))
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("member");
    member.subscribe(&[topic]).expect("subscribe");
    wait_until(
        Duration::from_secs(20),
        "the member to get an assignment",
        || {
            let _ = member.poll(Duration::from_millis(50));
            member.assignment().is_ok_and(|a| a.count() > 0)
        },
    );
    member
}

// ---- lag -----------------------------------------------------------------------------------

#[test]
fn lag_equals_what_the_replicator_has_not_copied_yet() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.replicator().pause(Pause::Copying);
    wait_until(Duration::from_secs(10), "copying to pause", || {
        w.replicator().stats().copy_paused
    });
    let before = w.workload().stats().acknowledged;
    wait_until(Duration::from_secs(20), "records to pile up", || {
        w.workload().stats().acknowledged >= before + 60
    });
    w.pause_producers();

    let run = w.kdr(&["lag", "--plan", "drill.yaml", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let out = lag_json(&run);
    let positions = w.replicator().stats().positions();
    let ends = w.end_offsets(Role::Primary, &TOPICS);
    let mut want = Vec::new();
    for (topic, n) in TOPICS {
        for p in 0..n {
            let end = ends[&(topic.to_owned(), p)];
            let copied_to = positions.get(&(topic.to_owned(), p)).copied().unwrap_or(0);
            want.push((
                topic.to_owned(),
                format!("primary.{topic}"),
                p,
                Some(end),
                Some(copied_to),
                Some(end - copied_to),
                "offset_sync".to_owned(),
            ));
        }
    }
    let got: Vec<_> = out
        .partitions
        .iter()
        .map(|r| {
            (
                r.source_topic.clone(),
                r.target_topic.clone(),
                r.partition,
                r.source_end,
                r.replicated_to,
                r.lag,
                r.method.clone(),
            )
        })
        .collect();
    assert_eq!(got, want);
    let total: i64 = want.iter().filter_map(|r| r.5).sum();
    assert!(total >= 60, "the lag is real: {total}");
    assert_eq!(out.total_lag, Some(total));
    assert!(
        out.source_reachable && out.source_error.is_none(),
        "{out:?}"
    );
    assert_eq!(
        (
            out.v,
            out.direction.as_str(),
            out.source.as_str(),
            out.target.as_str()
        ),
        (1, "failover", "primary", "dr")
    );
    for r in &out.partitions {
        // Every target partition holds records from the warm-up: their age is known.
        assert!(r.target_end > 0, "{r:?}");
        assert!(r.newest_record_age_ms.is_some_and(|a| a >= 0), "{r:?}");
    }

    // The table shows the same numbers.
    let run = w.kdr(&["lag", "--plan", "drill.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "primary → dr: {} records behind over 5 partitions",
            kdr::lookup::count(total)
        )),
        "{run:?}"
    );

    // The other way round, nothing flows: DR's own topics are empty and so is the lag.
    let run = w.kdr(&[
        "lag",
        "--plan",
        "drill.yaml",
        "--direction",
        "failback",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let back = lag_json(&run);
    assert_eq!(
        (back.source.as_str(), back.target.as_str()),
        ("dr", "primary")
    );
    assert_eq!(back.total_lag, Some(0));
    assert!(
        back.partitions
            .iter()
            .all(|r| r.target_topic.starts_with("dr.") && r.newest_record_age_ms.is_none()),
        "{back:?}"
    );
}

#[test]
fn lag_with_the_source_down_says_so_and_shows_what_the_target_holds() {
    let mut w = World::start(spec(ReplicationPolicy::default_policy()));
    // The workload's consumers are attached to the primary: stop them while it is up.
    w.stop_workload();
    w.world.cluster_down(Role::Primary).expect("primary down");
    let run = w.kdr(&["lag", "--plan", "drill.yaml", "--output", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let out = lag_json(&run);
    assert!(!out.source_reachable);
    assert!(
        out.source_error
            .as_deref()
            .is_some_and(|e| e.starts_with("primary unreachable")),
        "{out:?}"
    );
    assert!(run.stderr.contains("primary unreachable"), "{run:?}");
    assert_eq!(out.total_lag, None);
    assert_eq!(out.partitions.len(), 5, "{out:?}");
    for r in &out.partitions {
        assert_eq!((r.source_end, r.lag), (None, None), "{r:?}");
        assert_eq!(r.replicated_to, Some(r.target_end), "{r:?}");
        assert!(r.newest_record_age_ms.is_some(), "{r:?}");
    }
    let run = w.kdr(&["lag", "--plan", "drill.yaml"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("lag unknown: primary unreachable"),
        "{run:?}"
    );
}

// ---- status ------------------------------------------------------------------------------

#[test]
fn status_is_ready_then_lagging_then_says_how_to_fail_over_when_the_primary_is_down() {
    let mut w = World::start(spec(ReplicationPolicy::default_policy()));

    // Healthy: replication keeps up with the producers.
    let run = w.kdr(&["status", "--plan", "drill.yaml", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let out = status_json(&run);
    assert_eq!(
        out.verdict,
        VerdictOut {
            healthy: true,
            kind: "ready".to_owned(),
            message: "ready to fail over".to_owned()
        }
    );
    assert!(out.problems.is_empty(), "{out:?}");
    assert_eq!((out.v, out.plan.as_str()), (1, "drill"));
    assert_eq!(
        out.authority["primary"]["state"], "never_recorded",
        "{:?}",
        out.authority
    );
    assert_eq!(
        out.clusters
            .iter()
            .map(|c| (c.role.as_str(), c.reachable, c.brokers))
            .collect::<Vec<_>>(),
        [("primary", true, Some(3)), ("dr", true, Some(3))]
    );
    let failover = &out.replication[0];
    assert_eq!(
        (
            failover.direction.as_str(),
            failover.source.as_str(),
            failover.target.as_str()
        ),
        ("failover", "primary", "dr")
    );
    assert!(
        failover
            .heartbeat_age_ms
            .is_some_and(|a| (0..60_000).contains(&a)),
        "{failover:?}"
    );
    let lag = failover.lag.as_ref().expect("lag");
    assert_eq!(lag.partitions, 5);
    assert!(lag.total_records <= 1000, "{lag:?}");
    assert_eq!(
        failover
            .checkpoints
            .iter()
            .map(|g| (g.group.as_str(), g.checkpoint_age_ms.is_some()))
            .collect::<Vec<_>>(),
        [("billing", true), ("order-processor", true)]
    );
    let failback = &out.replication[1];
    assert_eq!(
        (
            failback.direction.as_str(),
            failback.source.as_str(),
            failback.target.as_str()
        ),
        ("failback", "dr", "primary")
    );
    assert_eq!(
        failback.lag.as_ref().map(|l| l.total_records),
        Some(0),
        "{failback:?}"
    );
    // The table has the verdict last, and who owns writes.
    let run = w.kdr(&["status", "--plan", "drill.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("write authority"), "{run:?}");
    assert!(
        run.stdout
            .contains("primary owns writes (no authority recorded yet)"),
        "{run:?}"
    );
    assert_eq!(
        run.stdout.lines().last(),
        Some("ready to fail over"),
        "{run:?}"
    );

    // Lagging: replication stalls while producers write.
    w.replicator().pause(Pause::Copying);
    wait_until(Duration::from_secs(10), "copying to pause", || {
        w.replicator().stats().copy_paused
    });
    let before = w.workload().stats().acknowledged;
    wait_until(Duration::from_secs(20), "records to pile up", || {
        w.workload().stats().acknowledged >= before + 80
    });
    let run = w.kdr(&[
        "status",
        "--plan",
        "drill.yaml",
        "--max-lag-records",
        "50",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let out = status_json(&run);
    let total = out.replication[0].lag.as_ref().expect("lag").total_records;
    assert!(total > 50, "{out:?}");
    assert_eq!(
        out.verdict,
        VerdictOut {
            healthy: false,
            kind: "lagging".to_owned(),
            message: format!(
                "replication lagging: {} records behind",
                kdr::lookup::count(total)
            ),
        }
    );
    assert!(
        out.replication[0].heartbeat_age_ms.is_some(),
        "heartbeats go on: {out:?}"
    );

    // The primary is gone: the verdict says what to do. (The workload's consumers, attached to
    // the primary, are stopped while it is up.)
    w.stop_workload();
    w.world.cluster_down(Role::Primary).expect("primary down");
    let run = w.kdr(&["status", "--plan", "drill.yaml", "--output", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let out = status_json(&run);
    assert_eq!(
        out.verdict,
        VerdictOut {
            healthy: false,
            kind: "primary_unreachable".to_owned(),
            message: "primary unreachable: fail over with kdr failover --plan drill.yaml"
                .to_owned(),
        }
    );
    assert!(
        !out.clusters[0].reachable && out.clusters[0].error.is_some(),
        "{out:?}"
    );
    assert!(out.clusters[1].reachable, "{out:?}");
    assert_eq!(out.replication[0].lag, None);
    assert_eq!(
        out.replication[0].lag_error.as_deref(),
        Some("primary unreachable")
    );
    assert!(
        out.replication[0]
            .checkpoints
            .iter()
            .all(|g| g.checkpoint_age_ms.is_some()),
        "dr still has them: {out:?}"
    );
    let run = w.kdr(&["status", "--plan", "drill.yaml"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stdout.lines().last(),
        Some("primary unreachable: fail over with kdr failover --plan drill.yaml"),
        "{run:?}"
    );
}

#[test]
fn status_without_mirror_maker_asks_for_it_and_without_dr_refuses_to_fail_over() {
    let w = World::idle(spec(ReplicationPolicy::default_policy()));
    let run = w.kdr(&["status", "--plan", "drill.yaml", "--output", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let out = status_json(&run);
    assert_eq!(
        out.verdict,
        VerdictOut {
            healthy: false,
            kind: "no_heartbeats".to_owned(),
            message: "no heartbeats from primary on dr: is MirrorMaker 2 running?".to_owned(),
        }
    );
    // Nothing was ever checkpointed either.
    assert_eq!(
        out.problems.last().map(|p| p.kind.as_str()),
        Some("missing_checkpoints"),
        "{out:?}"
    );

    w.world.cluster_down(Role::Dr).expect("dr down");
    let run = w.kdr(&["status", "--plan", "drill.yaml", "--output", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let out = status_json(&run);
    assert_eq!(
        out.verdict,
        VerdictOut {
            healthy: false,
            kind: "dr_unreachable".to_owned(),
            message: "dr unreachable: cannot fail over".to_owned(),
        }
    );
    assert_eq!(
        out.replication[0].lag_error.as_deref(),
        Some("dr unreachable")
    );
}

#[test]
fn a_lookup_never_outlives_its_timeout() {
    // A cluster that accepts connections and never answers: kdr must give up on its own.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let silent = listener.local_addr().expect("addr").to_string();
    let s = Scratch::new();
    s.write(
        "silent.yaml",
        &format!(
            "version: 1\nname: silent\nclusters:\n  primary: {{ bootstrap_servers: \"{silent}\" }}\n  dr: {{ bootstrap_servers: \"{silent}\" }}\nreplication: {{ topics: [orders], groups: [billing] }}\nfailover:\n  - translate_offsets: {{}}\nfailback:\n  - exec: {{ run: \"true\" }}\n"
        ),
    );
    for args in [
        &["status", "--plan", "silent.yaml", "--timeout", "3s"][..],
        &["lag", "--plan", "silent.yaml", "--timeout", "3s"][..],
        &[
            "offsets",
            "translate",
            "--plan",
            "silent.yaml",
            "--timeout",
            "3s",
        ][..],
    ] {
        let started = Instant::now();
        let run = s.kdr(args);
        let took = started.elapsed();
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(took < Duration::from_secs(8), "{args:?} took {took:?}");
    }
    drop(listener);
}
