//! Failover against the embedded world: two in-process clusters with MM2-compatible replication
//! and an accounted workload, living in this test process; kdr runs as a child against them.

use std::time::{Duration, Instant};

use kdr::mm2::ReplicationPolicy;
use kdr::rehearsal::{Pause, Role};

use crate::harness::{Scratch, events, shape, wait, wait_until};
pub(crate) use crate::world::{World, spec};

const YES: &[&str] = &["--yes", "--operator", "alice", "--reason", "drill"];

const FULL_FAILOVER: &str = "  - declare: {}
  - quiesce_producers: { run: 'touch \"$KDR_REHEARSAL_DIR/producers.paused\"', idle_for: 500ms, poll_interval: 100ms, timeout: 20s }
  - wait_replication: { timeout: 15s, poll_interval: 100ms, on_timeout: accept_rpo }
  - repoint: { run: 'echo \"$KDR_TARGET_BOOTSTRAP_SERVERS\" > \"$KDR_REHEARSAL_DIR/bootstrap\" && rm -f \"$KDR_REHEARSAL_DIR/producers.paused\"', verify_writes: { within: 10s } }
  - translate_offsets: { groups: all }
  - validate: { within: 15s, require_producers: true }
";

fn args<'a>(base: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(YES).copied().collect()
}

fn decisions(log: &std::path::Path) -> Vec<serde_json::Value> {
    events(log)
        .into_iter()
        .filter(|e| e["event"] == "decision")
        .collect()
}

/// Consumers on DR resume at the offsets kdr committed: no group restarts from the beginning and
/// every record that reached DR is read.
fn assert_clean_resume(w: World) {
    w.pause_producers();
    let groups = w.spec.groups.clone();
    let mut w = w;
    let workload = w.workload.take().expect("workload");
    let mut last = workload.stats().consumed;
    let mut still = Instant::now();
    wait_until(Duration::from_secs(15), "consumers to drain", || {
        let now = workload.stats().consumed;
        if now != last {
            last = now;
            still = Instant::now();
        }
        still.elapsed() > Duration::from_millis(600)
    });
    let ledger = workload.stop();
    let report = ledger.report(&groups, None);
    for g in report.groups.iter().filter(|g| groups.contains(&g.group)) {
        assert!(
            g.jumped_to_start.is_empty(),
            "group {} restarted from the beginning: {:?}",
            g.group,
            g.jumped_to_start
        );
        assert!(
            g.unseen.is_empty(),
            "group {} never read {} records",
            g.group,
            g.unseen.len()
        );
    }
    assert!(report.lost.is_empty(), "records lost: {:?}", report.lost);
}

#[test]
fn failover_with_no_lag_loses_nothing_and_consumers_resume_at_translated_offsets() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.plan(FULL_FAILOVER, "");
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 0, "{run:?}");
    let log = w.log();
    assert_eq!(
        shape(&log),
        [
            "run_started",
            "step_started 1",
            "step_finished 1 ok",
            "step_started 2",
            "step_finished 2 ok",
            "step_started 3",
            "step_finished 3 ok",
            "step_started 4",
            "step_finished 4 ok",
            "step_started 5",
            "step_finished 5 ok",
            "step_started 6",
            "step_finished 6 ok",
            "run_finished succeeded"
        ]
    );
    // Every group/partition's numbers are in the log.
    let groups: Vec<serde_json::Value> = events(&log)
        .into_iter()
        .filter(|e| e["name"] == "group")
        .collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    for g in &groups {
        for p in g["data"]["partitions"].as_array().expect("partitions") {
            for key in [
                "source_topic",
                "target_topic",
                "partition",
                "source_offset",
                "target_offset",
                "checkpoint_age_ms",
                "action",
            ] {
                assert!(!p[key].is_null(), "{key} missing in {p}");
            }
            assert!(
                p["target_topic"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("primary.")),
                "{p}"
            );
        }
    }
    assert_clean_resume(w);
}

#[test]
fn failover_with_lag_and_accept_rpo_records_the_loss_that_is_really_missing() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.replicator().pause(Pause::Copying);
    let before = w.workload().stats().acknowledged;
    wait_until(Duration::from_secs(20), "records to pile up", || {
        w.workload().stats().acknowledged >= before + 60
    });
    w.pause_producers();
    w.plan(
        "  - declare: {}\n  - wait_replication: { timeout: 1s, poll_interval: 100ms, on_timeout: accept_rpo }\n",
        "",
    );
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 0, "{run:?}");
    let accept = decisions(&w.log())
        .into_iter()
        .find(|d| d["who"] == "plan")
        .expect("the plan's decision");
    assert!(
        accept["what"]
            .as_str()
            .is_some_and(|s| s.starts_with("accept the RPO")),
        "{accept}"
    );
    let kdr_loss: std::collections::BTreeMap<(String, i64), i64> = accept["data"]["per_partition"]
        .as_array()
        .expect("per partition")
        .iter()
        .map(|p| {
            (
                (
                    p["source_topic"].as_str().unwrap_or("").to_owned(),
                    p["partition"].as_i64().unwrap_or(-1),
                ),
                p["lag"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    // What really is missing: acknowledged on the primary, past what the replicator copied.
    let positions = w.replicator().stats().positions();
    let mut missing: std::collections::BTreeMap<(String, i64), i64> = Default::default();
    for r in w
        .workload()
        .ledger()
        .produced
        .iter()
        .filter(|r| r.cluster == "primary")
    {
        let next = positions
            .get(&(r.topic.clone(), r.partition))
            .copied()
            .unwrap_or(0);
        if r.offset >= next {
            *missing
                .entry((r.topic.clone(), i64::from(r.partition)))
                .or_default() += 1;
        }
    }
    assert!(!missing.is_empty());
    assert_eq!(kdr_loss, missing);
    assert_eq!(
        accept["data"]["lost_records"].as_i64(),
        Some(missing.values().sum())
    );
}

#[test]
fn failover_with_lag_and_abort_stops_at_the_bound() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.replicator().pause(Pause::Copying);
    let before = w.workload().stats().acknowledged;
    wait_until(Duration::from_secs(20), "records to pile up", || {
        w.workload().stats().acknowledged >= before + 30
    });
    w.plan(
        "  - wait_replication: { timeout: 1s, poll_interval: 100ms, on_timeout: abort }\n  - exec: { run: \"touch after\" }\n",
        "",
    );
    let started = Instant::now();
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(run.stderr.contains("the plan says abort"), "{run:?}");
    assert!(!w.scratch.file("after").exists());
    assert_eq!(
        shape(&w.log()),
        [
            "run_started",
            "step_started 1",
            "step_finished 1 failed",
            "run_finished failed"
        ]
    );
}

#[test]
fn failover_with_the_primary_dead_before_declare_skips_quiesce_and_accepts_an_unmeasured_rpo() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.world.cluster_down(Role::Primary).expect("down");
    w.plan(
        "  - declare: {}\n  - quiesce_producers: { idle_for: 500ms, timeout: 5s }\n  - wait_replication: { timeout: 5s, on_timeout: accept_rpo }\n  - translate_offsets: {}\n",
        "",
    );
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 0, "{run:?}");
    let log = w.log();
    assert_eq!(
        shape(&log),
        [
            "run_started",
            "step_started 1",
            "step_finished 1 ok",
            "step_started 2",
            "step_finished 2 skipped",
            "step_started 3",
            "step_finished 3 ok",
            "step_started 4",
            "step_finished 4 ok",
            "run_finished succeeded"
        ]
    );
    let probe = events(&log)
        .into_iter()
        .find(|e| e["name"] == "source_probe")
        .expect("probe");
    assert!(
        probe["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("primary is unreachable")),
        "{probe}"
    );
    let skip = decisions(&log)
        .into_iter()
        .find(|d| d["what"] == "skip quiescing: primary is unreachable")
        .expect("skip decision");
    assert!(
        skip["why"]
            .as_str()
            .is_some_and(|s| s.contains("in-flight loss accepted: unknown")),
        "{skip}"
    );
}

#[test]
fn identity_policy_translates_to_the_same_topic_names() {
    let w = World::start(spec(ReplicationPolicy::identity(None)));
    w.plan(FULL_FAILOVER, "");
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 0, "{run:?}");
    let group = events(&w.log())
        .into_iter()
        .find(|e| e["name"] == "group")
        .expect("group");
    for p in group["data"]["partitions"].as_array().expect("partitions") {
        assert_eq!(p["source_topic"], p["target_topic"], "{p}");
    }
    assert_clean_resume(w);
}

#[test]
fn a_custom_separator_names_remote_and_internal_topics_with_it() {
    let policy = ReplicationPolicy::Default {
        separator: "_".to_owned(),
        internal_separator: true,
    };
    let w = World::start(spec(policy));
    w.plan(FULL_FAILOVER, "");
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 0, "{run:?}");
    let log = w.log();
    let read = events(&log)
        .into_iter()
        .find(|e| e["name"] == "checkpoints_read")
        .expect("read");
    assert_eq!(read["data"]["topic"], "primary_checkpoints_internal");
    let group = events(&log)
        .into_iter()
        .find(|e| e["name"] == "group")
        .expect("group");
    assert!(
        group["data"]["partitions"][0]["target_topic"]
            .as_str()
            .is_some_and(|t| t.starts_with("primary_")),
        "{group}"
    );
    assert_clean_resume(w);
}

#[test]
fn a_group_without_a_checkpoint_is_skipped_or_fails_as_the_plan_says() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.plan(
        "  - translate_offsets: { groups: [order-processor, ghost] }\n",
        "",
    );
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        decisions(&w.log())
            .iter()
            .any(|d| d["what"] == "skip group ghost")
    );

    w.plan("  - translate_offsets: { groups: [order-processor, ghost], on_missing_checkpoint: fail }\n", "");
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("groups without a checkpoint: ghost"),
        "{run:?}"
    );
}

#[test]
fn a_dry_run_commits_no_offsets_and_runs_no_hook() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.plan(FULL_FAILOVER, "");
    let dr = w.world.bootstrap_servers(Role::Dr).to_owned();
    let groups = w.spec.groups.clone();
    let committed = || -> Vec<(String, Option<i64>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            let cluster = kdr::kafka::Cluster::new(
                kdr::kafka::ClusterSpec::new(kdr::kafka::ClusterRole::Dr, dr.clone()),
                Duration::from_secs(5),
            )
            .expect("cluster");
            let tps: Vec<kdr::kafka::TopicPartition> = (0..3)
                .map(|p| kdr::kafka::TopicPartition::new("primary.orders", p))
                .collect();
            let mut out = Vec::new();
            for g in &groups {
                for (tp, o) in cluster.committed_offsets(g, &tps).await.expect("committed") {
                    out.push((format!("{g}/{tp}"), o));
                }
            }
            out
        })
    };
    let before = committed();
    let run = w.kdr(&["failover", "--plan", "drill.yaml", "--dry-run"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(committed(), before, "a dry run must not commit offsets");
    assert!(
        !w.scratch.file("producers.paused").exists(),
        "a dry run must not run hooks"
    );
    assert_eq!(
        std::fs::read_to_string(w.scratch.file("bootstrap"))
            .expect("bootstrap")
            .trim(),
        w.world.bootstrap_servers(Role::Primary)
    );
    let finished: Vec<String> = events(&w.log())
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| e["status"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(finished, vec!["dry_run"; 6]);
}

#[test]
fn quiesce_times_out_when_producers_keep_writing() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.plan(
        "  - quiesce_producers: { idle_for: 1s, poll_interval: 100ms, timeout: 1500ms }\n",
        "",
    );
    let started = Instant::now();
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(run.stderr.contains("producers did not stop"), "{run:?}");
}

#[test]
fn a_cluster_that_stops_answering_mid_step_fails_the_step_within_its_deadline() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.replicator().pause(Pause::Copying);
    let before = w.workload().stats().acknowledged;
    wait_until(Duration::from_secs(20), "records to pile up", || {
        w.workload().stats().acknowledged >= before + 30
    });
    w.plan(
        "  - wait_replication: { timeout: 8s, poll_interval: 100ms, on_timeout: abort }\n",
        "",
    );
    let child = w
        .scratch
        .command(&args(&["failover", "--plan", "drill.yaml"]))
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(20), "the step to start", || {
        w.scratch
            .logs()
            .first()
            .is_some_and(|l| shape(l).iter().any(|s| s == "step_started 1"))
    });
    w.world.cluster_down(Role::Dr).expect("dr down");
    let started = Instant::now();
    let run = wait(child, Duration::from_secs(60));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8 + 15 + 5),
        "the step overran its deadline"
    );
    assert!(
        run.stderr.contains("dr cluster"),
        "the failure names the cluster: {run:?}"
    );
    assert_eq!(
        shape(&w.log()).last().map(String::as_str),
        Some("run_finished failed")
    );
}

#[test]
fn rehearse_controlled_loses_nothing_and_disaster_accepts_exactly_what_is_missing() {
    let s = Scratch::new();
    let run = s.kdr(&["rehearse", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(report["records_really_lost"], 0);
    assert_eq!(report["records_accepted_lost"], 0);
    assert_eq!(report["failback"]["outcome"], "succeeded", "{report}");
    assert_eq!(report["records_lost_at_failback"], 0);
    for g in report["rereads"].as_array().expect("rereads") {
        assert_eq!(g["restarted_from_beginning"], 0, "{g}");
    }
    assert!(
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .all(|c| c["ok"] == true),
        "{report}"
    );

    let run = s.kdr(&["rehearse", "--scenario", "disaster", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let lost = report["records_really_lost"].as_i64().expect("lost");
    assert!(lost > 0, "{report}");
    assert_eq!(report["records_accepted_lost"].as_i64(), Some(lost));
    assert_eq!(report["failback"]["outcome"], "succeeded", "{report}");
    assert_eq!(report["records_lost_at_failback"], 0);
    assert!(
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .all(|c| c["ok"] == true),
        "{report}"
    );
}

#[test]
fn malformed_checkpoint_records_are_skipped_and_counted_never_fatal() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    let dr = kdr::kafka::Cluster::new(
        kdr::kafka::ClusterSpec::new(
            kdr::kafka::ClusterRole::Dr,
            w.world.bootstrap_servers(Role::Dr).to_owned(),
        ),
        Duration::from_secs(5),
    )
    .expect("cluster");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        // Garbage, a truncated key, and a value with an unknown version.
        dr.produce_one("primary.checkpoints.internal", b"garbage", b"\xff\xfe")
            .await
            .expect("garbage");
        dr.produce_one("primary.checkpoints.internal", b"\x00\x05bil", b"\x00\x00")
            .await
            .expect("truncated");
        let key = kdr::mm2::Checkpoint {
            group: "billing".into(),
            topic: "primary.orders".into(),
            partition: 0,
            upstream_offset: 1,
            downstream_offset: 1,
            metadata: String::new(),
        };
        let mut value = key.encode_value().expect("value");
        value[1] = 7;
        dr.produce_one(
            "primary.checkpoints.internal",
            &key.encode_key().expect("key"),
            &value,
        )
        .await
        .expect("version");
    });
    w.plan("  - translate_offsets: {}\n", "");
    let run = w.kdr(&args(&["failover", "--plan", "drill.yaml"]));
    assert_eq!(run.code, 0, "{run:?}");
    let read = events(&w.log())
        .into_iter()
        .find(|e| e["name"] == "checkpoints_read")
        .expect("read");
    let skipped = &read["data"]["skipped"];
    let total = ["malformed", "tombstones", "unsupported_version"]
        .iter()
        .filter_map(|k| skipped[k].as_u64())
        .sum::<u64>();
    assert_eq!(total, 3, "{read}");
    assert!(skipped["malformed"].as_u64() >= Some(1), "{read}");
}
