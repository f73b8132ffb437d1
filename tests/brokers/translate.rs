//! Offset translation planned in batches against real brokers: every group's answer is what the
//! per-group computation (each group's state, committed offsets and each partition's
//! watermarks asked on their own) gives; a checkpoint for a topic DR lacks is that partition's
//! skip, not the command's failure (issue 13 #3); a translation far below what its group had
//! consumed says that offset syncs look sparse (issue 14 #5).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use kdr::kafka::{Cluster, ClusterRole, KafkaError, TopicCreation, TopicPartition};
use kdr::mm2::Checkpoint;
use kdr::plan::Direction;
use kdr::replication::{
    Applied, Batching, Bound, Clusters, Flow, GroupPlan, GroupState, GroupTranslation,
    TargetPositions, apply, now_ms, plan_translation, read_checkpoints, read_target,
    resolve_groups,
};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::failover::failover_args;
use crate::harness::{Pair, block_on, events, kdr, logs};
use crate::mm2::{GROUP, produce, write_plan};

const CHECKPOINTS: &str = "primary.checkpoints.internal";

/// Creates `(topic, partitions)` on a cluster.
fn create(cluster: &Cluster, topics: &[(&str, i32)]) {
    block_on(async {
        for (topic, partitions) in topics {
            let created = cluster
                .create_topic(topic, *partitions, 1, &[])
                .await
                .unwrap_or_else(|e| panic!("create {topic}: {e}"));
            assert_eq!(created, TopicCreation::Created, "{topic}");
        }
    });
}

/// Writes checkpoints as MM2 does, in this order, to the checkpoints topic on `bootstrap`:
/// `(group, remote topic, partition, upstream, downstream)`.
fn write_checkpoints(bootstrap: &str, checkpoints: &[(&str, &str, i32, i64, i64)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .set("log_level", "0")
        .create()
        .expect("producer");
    block_on(async {
        for (group, topic, partition, upstream, downstream) in checkpoints {
            let c = Checkpoint {
                group: (*group).to_owned(),
                topic: (*topic).to_owned(),
                partition: *partition,
                upstream_offset: *upstream,
                downstream_offset: *downstream,
                metadata: String::new(),
            };
            let (key, value) = (
                c.encode_key().expect("key"),
                c.encode_value().expect("value"),
            );
            let record = FutureRecord::to(CHECKPOINTS)
                .partition(0)
                .key(&key)
                .payload(&value);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("produce a checkpoint: {e}"));
        }
    });
}

/// Two brokers with `orders` (3 partitions) and `payments` (2) on the primary, their remote
/// topics on DR with records (10 on each orders partition, 5 on payments/0), the checkpoints
/// topic on DR, and a plan for them in `dir`.
fn estate(dir: &Path) -> Pair {
    let pair = Pair::start();
    create(
        &pair.primary.cluster(ClusterRole::Primary),
        &[("orders", 3), ("payments", 2)],
    );
    create(
        &pair.dr.cluster(ClusterRole::Dr),
        &[
            ("primary.orders", 3),
            ("primary.payments", 2),
            (CHECKPOINTS, 1),
        ],
    );
    for partition in 0..3 {
        produce(&pair.dr.bootstrap(), "primary.orders", partition, 10);
    }
    produce(&pair.dr.bootstrap(), "primary.payments", 0, 5);
    write_plan(
        dir,
        &pair.primary.bootstrap(),
        &pair.dr.bootstrap(),
        "  - translate_offsets: { groups: all }\n",
        "  - exec: { run: \"true\" }\n",
    );
    pair
}

fn flow(dir: &Path) -> Flow {
    let plan = kdr::plan::load(&dir.join("drill.yaml")).expect("plan");
    let clusters = Clusters::from_plan(&plan).expect("clusters");
    Flow::new(&plan, &clusters, Direction::Failover)
}

/// The translation as it was worked out before batching: one group after another, its state,
/// its committed offsets and each partition's watermarks asked on their own.
async fn per_group(
    flow: &Flow,
    index: &kdr::mm2::CheckpointIndex,
    group: &str,
) -> GroupTranslation {
    let dr = &flow.target;
    let state = match dr.group_state(group).await {
        Ok(desc) if desc.has_members() => GroupState::Active,
        Ok(desc) => GroupState::Idle(desc.state),
        Err(e) => panic!("state of {group}: {e}"),
    };
    let mut marks = HashMap::new();
    let mut current = HashMap::new();
    for (c, _) in index.for_group(group) {
        let tp = TopicPartition::new(c.topic.clone(), c.partition);
        match dr.watermarks(std::slice::from_ref(&tp)).await {
            Ok(w) => {
                marks.insert(tp.clone(), w[0].clone());
            }
            Err(KafkaError::TopicNotFound { .. } | KafkaError::PartitionNotFound { .. }) => {
                continue;
            }
            Err(e) => panic!("watermarks of {tp:?}: {e}"),
        }
        let committed = dr
            .committed_offsets(group, std::slice::from_ref(&tp))
            .await
            .expect("committed offsets");
        if let Some(offset) = committed[0].1 {
            current.insert(tp, offset);
        }
    }
    let target = TargetPositions {
        current: &current,
        marks: &marks,
    };
    GroupTranslation {
        group: group.to_owned(),
        state,
        partitions: plan_translation(flow, group, index, target, false, 0),
    }
}

/// What a translation decides, without the checkpoints' ages (which depend on the clock).
fn decisions(t: &GroupTranslation) -> (String, String, Vec<String>) {
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            format!(
                "{}->{}[{}] {} -> {} (current {:?}): {}",
                p.source_topic,
                p.target_topic,
                p.partition,
                p.source_offset,
                p.target_offset,
                p.current_offset,
                p.action
            )
        })
        .collect();
    (t.group.clone(), t.state.to_string(), partitions)
}

#[test]
fn batched_translation_and_commits_match_the_per_group_computation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = estate(dir.path());
    let mut checkpoints = Vec::new();
    for g in 0..6 {
        let group: &'static str = Box::leak(format!("app-{g}").into_boxed_str());
        for p in 0..3 {
            // An older checkpoint first: the newest wins.
            checkpoints.push((group, "primary.orders", p, 1, 1));
            // In the log, past its end (clamped), and at its start.
            let downstream = [4 + g as i64, 15, 0][p as usize];
            checkpoints.push((group, "primary.orders", p, 20, downstream));
        }
        if g % 2 == 0 {
            checkpoints.push((group, "primary.payments", 0, 9, 3));
        }
        if g == 3 {
            checkpoints.push((group, "primary.missing", 0, 9, 3));
        }
    }
    write_checkpoints(&pair.dr.bootstrap(), &checkpoints);
    let flow = flow(dir.path());
    let dr = pair.dr.cluster(ClusterRole::Dr);
    block_on(async {
        // Already there, and ahead of the translation (never rewound).
        let orders = |p| TopicPartition::new("primary.orders", p);
        dr.commit_offsets("app-1", &[(orders(0), 5)])
            .await
            .expect("commit");
        dr.commit_offsets("app-2", &[(orders(0), 8)])
            .await
            .expect("commit");
    });

    block_on(async {
        let mut bound = Bound::until(tokio::time::Instant::now() + Duration::from_secs(60));
        let within = Duration::from_secs(10);
        let index = read_checkpoints(&flow, within, Default::default(), &mut bound)
            .await
            .expect("checkpoints");
        let selectors = kdr::lookup::translate::selectors(&["re:app-.*".to_owned()]).expect("re");
        let groups = resolve_groups(&selectors, &index);
        assert_eq!(groups.len(), 6);
        // As translate_offsets plans them: what the target holds for every group read once,
        // then each group planned from it.
        let plan_all = async |bound: &mut Bound| {
            let target = read_target(&flow, &index, &groups, Batching::default(), bound)
                .await
                .expect("the target's side");
            let now = now_ms();
            let plans: Vec<GroupPlan> = groups
                .iter()
                .enumerate()
                .map(|(place, group)| target.plan(&flow, &index, group, place, false, now))
                .collect();
            plans
        };
        let planned = plan_all(&mut bound).await;
        let mut expected = Vec::new();
        for group in &groups {
            expected.push(decisions(&per_group(&flow, &index, group).await));
        }
        let batched: Vec<_> = planned.iter().map(|g| decisions(&g.translation)).collect();
        assert_eq!(batched, expected);
        let app3 = &batched[3].2;
        assert!(
            app3.iter().any(|p| p.contains("primary.missing[0]")
                && p.ends_with("skip: no such partition on the target")),
            "{app3:?}"
        );
        assert!(
            batched[2].2[0].ends_with("skip: would rewind"),
            "{batched:?}"
        );
        assert!(
            batched[0].2[1].contains("clamp: 15 is past the log end 10"),
            "{batched:?}"
        );

        let translations: Vec<&GroupTranslation> = planned.iter().map(|g| &g.translation).collect();
        let applied = apply(&flow, &translations, Batching::default(), &mut bound)
            .await
            .expect("applied");
        for (t, applied) in translations.iter().zip(&applied) {
            let Applied::Committed(committed) = applied else {
                panic!("{}: {applied:?}", t.group);
            };
            assert_eq!(committed, &t.commits(), "{}", t.group);
            let tps: Vec<TopicPartition> = committed.iter().map(|(tp, _)| tp.clone()).collect();
            let now = dr
                .committed_offsets(&t.group, &tps)
                .await
                .expect("read back");
            let now: Vec<(TopicPartition, i64)> = now
                .into_iter()
                .map(|(tp, o)| (tp, o.expect("committed")))
                .collect();
            assert_eq!(&now, committed, "{}", t.group);
        }
        // Translated again, what was committed is unchanged.
        let again = plan_all(&mut bound).await;
        for g in &again {
            assert!(
                g.translation.commits().is_empty(),
                "{:?}",
                decisions(&g.translation)
            );
        }
    });
}

/// Issue 13 #3: a checkpoint for a topic DR does not have used to fail `kdr offsets translate`
/// as a whole ("failed to read the watermarks … does not exist").
#[test]
fn a_checkpoint_for_a_topic_dr_lacks_is_skipped_per_partition_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = estate(dir.path());
    write_checkpoints(
        &pair.dr.bootstrap(),
        &[
            (GROUP, "primary.orders", 0, 9, 7),
            (GROUP, "primary.gone", 0, 9, 3),
        ],
    );
    let run = kdr(
        dir.path(),
        &[
            "offsets",
            "translate",
            "--plan",
            "drill.yaml",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let actions: Vec<(String, String)> = report["groups"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["target_topic"].as_str().unwrap_or_default().to_owned(),
                p["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            (
                "primary.gone".to_owned(),
                "skip: no such partition on the target".to_owned()
            ),
            ("primary.orders".to_owned(), "commit".to_owned()),
        ],
        "{run:?}"
    );
}

/// Issue 14 #5: the group had read all 100 records of orders/0 on the primary, yet the
/// checkpoint translates to 1 of DR's 100: both the look-up and the step say offset syncs
/// look sparse and name the settings.
#[test]
fn a_translation_far_below_a_group_at_its_end_says_offset_syncs_look_sparse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = estate(dir.path());
    produce(&pair.primary.bootstrap(), "orders", 0, 100);
    produce(&pair.dr.bootstrap(), "primary.orders", 0, 90);
    write_checkpoints(
        &pair.dr.bootstrap(),
        &[(GROUP, "primary.orders", 0, 100, 1)],
    );

    let run = kdr(
        dir.path(),
        &["offsets", "translate", "--plan", "drill.yaml"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    for words in [
        "offset syncs look sparse",
        "primary.orders[0] translates to 1 while it ends at 100 on dr",
        "offset.lag.max",
        "dr.offset.flush.interval.ms",
    ] {
        assert!(run.stderr.contains(words), "{words}: {run:?}");
    }

    let run = kdr(dir.path(), &failover_args(&[]));
    assert_eq!(run.code, 0, "{run:?}");
    let log = logs(dir.path()).pop().expect("a log");
    let warning = events(&log)
        .into_iter()
        .find(|e| e["name"] == "sparse_offset_syncs")
        .unwrap_or_else(|| panic!("no sparse_offset_syncs in {log:?}"));
    let text = warning.to_string();
    assert!(text.contains("dr.offset.flush.interval.ms"), "{text}");
    assert!(text.contains(GROUP), "{text}");
}

/// Issue 10: translate_offsets over more groups than a terminal can follow line by line shows
/// a counting line per batch of groups, while the log keeps every group's observations, in
/// sequence. Over more than two batches: each batch's commits go out while the batch before is
/// recorded, and every group is committed and recorded once.
#[test]
fn translate_offsets_over_many_groups_counts_them_and_logs_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = estate(dir.path());
    let groups: Vec<String> = (0..1_100).map(|g| format!("app-{g:04}")).collect();
    let checkpoints: Vec<(&str, &str, i32, i64, i64)> = groups
        .iter()
        .flat_map(|g| (0..2).map(move |p| (g.as_str(), "primary.orders", p, 20, 4)))
        .collect();
    write_checkpoints(&pair.dr.bootstrap(), &checkpoints);
    write_plan(
        dir.path(),
        &pair.primary.bootstrap(),
        &pair.dr.bootstrap(),
        "  - translate_offsets: { groups: [\"re:app-.*\"] }\n",
        "  - exec: { run: \"true\" }\n",
    );

    // A few groups committed on the primary, in the first, second and last batch: each
    // group's re-read ledger must use its own commit, whatever batch it was planned in.
    let source_commits = [
        ("app-0000", 0, 11),
        ("app-0777", 1, 13),
        ("app-1099", 0, 17),
    ];
    let primary = flow(dir.path()).source;
    for (group, partition, offset) in source_commits {
        let offsets = [(TopicPartition::new("orders", partition), offset)];
        block_on(primary.commit_offsets(group, &offsets)).expect("commit on the primary");
    }

    let run = kdr(dir.path(), &failover_args(&[]));
    assert_eq!(run.code, 0, "{run:?}");
    for line in [
        "· 500/1100 groups recorded: 1000 partitions committed on dr\n",
        "· 1000/1100 groups recorded: 2000 partitions committed on dr\n",
        "· 1100/1100 groups recorded: 2200 partitions committed on dr\n",
    ] {
        assert!(run.stderr.contains(line), "{line}: {run:?}");
    }
    assert!(!run.stderr.contains("group app-0000"), "{run:?}");

    let log = logs(dir.path()).pop().expect("a log");
    let events = events(&log);
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let recorded: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "group")
        .filter_map(|e| e["data"]["group"].as_str())
        .collect();
    let asked: Vec<&str> = groups.iter().map(String::as_str).collect();
    assert_eq!(recorded, asked, "each group recorded once, in order");
    let named = |name: &str| events.iter().filter(|e| e["name"] == name).count();
    assert_eq!(named("reprocessing"), 1_100);
    let app0000 = events
        .iter()
        .find(|e| e["name"] == "group" && e["data"]["group"] == "app-0000")
        .expect("app-0000's group observation");
    assert_eq!(
        app0000["detail"], "group app-0000: committed 2 of 2 partitions on dr",
        "{app0000}"
    );
    let source_commit = |group: &str, partition: i64| {
        let ledger = events
            .iter()
            .find(|e| e["name"] == "reprocessing" && e["data"]["group"] == group)
            .unwrap_or_else(|| panic!("{group}'s reprocessing observation"));
        let row = ledger["data"]["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .find(|p| p["partition"] == partition)
            .unwrap_or_else(|| panic!("{group}[{partition}] in {ledger}"));
        row["source_commit"].as_i64().expect("source_commit")
    };
    for (group, partition, offset) in source_commits {
        assert_eq!(source_commit(group, partition.into()), offset, "{group}");
        // Its other partition has no commit: the checkpoint's source offset stands in.
        assert_eq!(source_commit(group, (1 - partition).into()), 20, "{group}");
    }
    assert_eq!(source_commit("app-0500", 0), 20);
    // What the log says was committed is on DR, in every batch.
    let dr = flow(dir.path()).target;
    let partitions = [
        TopicPartition::new("primary.orders", 0),
        TopicPartition::new("primary.orders", 1),
    ];
    for group in ["app-0000", "app-0777", "app-1099"] {
        let committed = block_on(dr.committed_offsets(group, &partitions)).expect("committed");
        let offsets: Vec<Option<i64>> = committed.into_iter().map(|(_, o)| o).collect();
        assert_eq!(offsets, [Some(4), Some(4)], "{group}");
    }
}
