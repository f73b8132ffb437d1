//! Reverse checkpointing at failback (issue 11 #2) on the two Nisshi brokers: a group's commits
//! on DR's `primary.orders` go home to the primary's `orders` through the forward flow's offset
//! syncs, by the rule (newest sync at or below the commit; its upstream offset when equal, one
//! past it otherwise), never backwards, and the group then reads again exactly what kdr said.

use std::collections::BTreeMap;
use std::time::Duration;

use kdr::kafka::{Cluster, ClusterRole, ReadOptions, TopicPartition};
use kdr::mm2::{OffsetLagMax, OffsetSync};
use kdr::rehearsal::Replicator;
use kdr::replication::{IDENTITY_SKIP, PositionFrom, ReverseObservation};

use crate::harness::{Pair, block_on, events, kdr, logs, wait_until};
use crate::mm2::{GROUP, PARTITIONS, REMOTE_TOPIC, TOPIC, create_layout, replicator_config};
use crate::roundtrip::{consume, switch, write};

const RECORDS: i64 = 20;

fn write_plan(dir: &std::path::Path, pair: &Pair, policy: &str) {
    write_plan_for(dir, pair, policy, GROUP);
}

fn write_plan_for(dir: &std::path::Path, pair: &Pair, policy: &str, groups: &str) {
    let text = format!(
        "version: 1\nname: drill\nclusters:\n  primary: {{ bootstrap_servers: \"{}\" }}\n  dr: {{ bootstrap_servers: \"{}\" }}\nreplication: {{ policy: {policy}, topics: [{TOPIC}], groups: [{groups}] }}\nfailover:\n  - translate_offsets: {{}}\nfailback:\n  - translate_offsets: {{ on_missing_checkpoint: skip }}\n",
        pair.primary.bootstrap(),
        pair.dr.bootstrap()
    );
    std::fs::write(dir.join("drill.yaml"), text).expect("plan");
}

/// The forward flow's offset syncs of the primary's `orders`, as they stand on the primary.
fn forward_syncs(primary: &Cluster) -> Vec<OffsetSync> {
    let read =
        block_on(primary.read_to_end("mm2-offset-syncs.dr.internal", 0, ReadOptions::default()));
    read.map(|r| r.records)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| OffsetSync::decode(r.key.as_deref(), r.value.as_deref()).ok())
        .filter(|s| s.topic == TOPIC)
        .collect()
}

fn commit(pair: &Pair, role: ClusterRole, topic: &str, offsets: &[(i32, i64)]) {
    let cluster = match role {
        ClusterRole::Primary => pair.primary.cluster(role),
        ClusterRole::Dr => pair.dr.cluster(role),
    };
    let offsets: Vec<(TopicPartition, i64)> = offsets
        .iter()
        .map(|(p, o)| (TopicPartition::new(topic, *p), *o))
        .collect();
    block_on(cluster.commit_offsets(GROUP, &offsets)).expect("commit");
}

fn failback(dir: &std::path::Path) -> std::path::PathBuf {
    // No failover ran here: only the translation is under test.
    let run = switch(dir, "failback", &["--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    logs(dir)
        .into_iter()
        .find(|l| l.display().to_string().contains("failback"))
        .expect("failback log")
}

#[test]
fn failback_maps_dr_commits_home_through_sparse_syncs_and_the_group_rereads_what_kdr_said() {
    let pair = Pair::start();
    create_layout(&pair);
    write(&pair.primary.bootstrap(), TOPIC, "p", 0, RECORDS);
    // Syncs every 5 records (0, 5, 10, 15 downstream) and none at the flush: sparse on purpose.
    let mut config = replicator_config(&pair);
    config.offset_lag_max = OffsetLagMax::new(4);
    config.offset_flush_interval = Duration::from_secs(600);
    let forward = Replicator::start(config).expect("primary -> dr");
    let primary = pair.primary.cluster(ClusterRole::Primary);
    let read_syncs = || forward_syncs(&primary);
    wait_until(
        Duration::from_secs(30),
        "a sync at 15 on every partition",
        || {
            let syncs = read_syncs();
            (0..PARTITIONS).all(|p| {
                syncs
                    .iter()
                    .any(|s| s.partition == p && s.downstream_offset == 15)
            })
        },
    );
    forward.stop();
    // Where the replicator put its syncs depends on how it batched its copies (every 5 records
    // when it copies one at a time; a batch under load moves a sync further on): the expected
    // rows follow the syncs really written, by the rule.
    let syncs = read_syncs();

    // On DR the group got to 13 (past the sync at 10), 10 (on a sync) and 12; at home it had
    // already read partition 2 up to 14, beyond where DR's commit maps.
    let on_dr = [(0, 13), (1, 10), (2, 12)];
    commit(&pair, ClusterRole::Dr, REMOTE_TOPIC, &on_dr);
    commit(&pair, ClusterRole::Primary, TOPIC, &[(2, 14)]);

    let dir = tempfile::tempdir().expect("tempdir");
    write_plan(dir.path(), &pair, "default");

    // The look-up shows the mapping before anything is written.
    let run = kdr(
        dir.path(),
        &[
            "offsets",
            "translate",
            "--plan",
            "drill.yaml",
            "--direction",
            "failback",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let out: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let looked: Vec<ReverseObservation> =
        serde_json::from_value(out["reverse"]["groups"].clone()).expect("reverse rows");

    let log = failback(dir.path());
    let said: Vec<ReverseObservation> = events(&log)
        .iter()
        .filter(|e| e["name"] == "reverse_translation")
        .map(|e| serde_json::from_value(e["data"].clone()).expect("a reverse_translation"))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    let rows = &said[0].partitions;
    assert_eq!(said[0].syncs_topic, "mm2-offset-syncs.dr.internal");
    /// Partition, commit on DR, sync (upstream, downstream), offset at home, action, re-reads.
    type Row<'a> = (
        i32,
        i64,
        Option<(i64, i64)>,
        Option<i64>,
        &'a str,
        Option<i64>,
    );
    let summary: Vec<Row<'_>> = rows
        .iter()
        .map(|r| {
            (
                r.partition,
                r.dr_committed,
                r.sync.map(|s| (s.upstream, s.downstream)),
                r.target_offset,
                r.action.as_str(),
                r.may_reread,
            )
        })
        .collect();
    let expected: Vec<Expected> = on_dr
        .iter()
        .map(|&(p, c)| Expected::by_the_rule(&syncs, p, c, (p == 2).then_some(14)))
        .collect();
    let wanted: Vec<Row<'_>> = expected
        .iter()
        .map(|e| {
            let action = if e.rewinds {
                "skip: would rewind"
            } else {
                "commit"
            };
            (
                e.partition,
                e.dr_committed,
                Some(e.sync),
                Some(e.position),
                action,
                Some(e.may_reread),
            )
        })
        .collect();
    assert_eq!(summary, wanted, "syncs: {syncs:?}");
    assert!(
        rows.iter()
            .all(|r| r.position_from == PositionFrom::ForwardSyncs)
    );
    assert_eq!(
        rows.iter().map(|r| r.reread_bound).collect::<Vec<_>>(),
        expected.iter().map(|e| Some(e.bound)).collect::<Vec<_>>()
    );
    // The look-up worked out the same positions (before the commit: "commit" there too).
    let looked_at: Vec<Option<i64>> = looked[0]
        .partitions
        .iter()
        .map(|r| r.target_offset)
        .collect();
    assert_eq!(
        looked_at,
        expected
            .iter()
            .map(|e| Some(e.position))
            .collect::<Vec<_>>()
    );
    let predicted: i64 = events(&log)
        .iter()
        .filter(|e| e["name"] == "reprocessing")
        .map(|e| e["data"]["may_reread"].as_i64().expect("a figure"))
        .sum();
    assert_eq!(
        predicted,
        expected.iter().map(|e| e.may_reread).sum::<i64>()
    );

    // Home: the group reads the primary's orders from where kdr put it; what it had read on
    // DR (below its commit there) and reads again is exactly kdr's figure.
    let home = consume(
        &pair.primary.bootstrap(),
        &[TOPIC],
        &(0..PARTITIONS)
            .map(|p| (TOPIC, p, RECORDS))
            .collect::<Vec<_>>(),
    );
    let read_on_dr: BTreeMap<i32, i64> = on_dr.into_iter().collect();
    let again = home
        .iter()
        .filter(|r| r.offset < read_on_dr[&r.partition])
        .count() as i64;
    let first: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| {
            let first = home
                .iter()
                .filter(|r| r.partition == p)
                .map(|r| r.offset)
                .min();
            (p, first.expect("read at home"))
        })
        .collect();
    let starts: BTreeMap<i32, i64> = expected
        .iter()
        .map(|e| (e.partition, if e.rewinds { 14 } else { e.position }))
        .collect();
    assert_eq!(first, starts);
    assert_eq!(
        again, predicted,
        "read again at home: {again}, kdr said {predicted}"
    );
}

/// One partition's mapping home worked out by the rule from the syncs read: the newest
/// sync at or below the commit on DR; its upstream offset when equal, one past it otherwise.
struct Expected {
    partition: i32,
    dr_committed: i64,
    sync: (i64, i64),
    position: i64,
    /// The group's commit at home is past the position: left where it is.
    rewinds: bool,
    /// Records below the commit on DR the group reads again from where it starts.
    may_reread: i64,
    /// Records below the commit on DR the position is behind.
    bound: i64,
}

impl Expected {
    fn by_the_rule(
        syncs: &[OffsetSync],
        partition: i32,
        committed: i64,
        home: Option<i64>,
    ) -> Self {
        let sync = syncs
            .iter()
            .filter(|s| s.partition == partition && s.downstream_offset <= committed)
            .max_by_key(|s| s.downstream_offset)
            .expect("a sync at or below the commit");
        let (upstream, downstream) = (sync.upstream_offset, sync.downstream_offset);
        let position = if downstream == committed {
            upstream
        } else {
            upstream + 1
        };
        let lands = upstream + (committed - downstream);
        let rewinds = home.is_some_and(|h| h > position);
        let starts = if rewinds {
            home.unwrap_or(position)
        } else {
            position
        };
        Expected {
            partition,
            dr_committed: committed,
            sync: (upstream, downstream),
            position,
            rewinds,
            may_reread: (lands - starts).max(0),
            bound: lands - position,
        }
    }
}

/// A plan that names its groups by pattern: the group that only read DR's `primary.orders`
/// during the outage is in no checkpoint of the reverse flow, yet DR knows it, so the failback
/// maps it home; a group on DR the pattern does not match is left alone.
#[test]
fn a_pattern_maps_home_a_group_only_dr_knows_and_leaves_the_others() {
    let pair = Pair::start();
    create_layout(&pair);
    write(&pair.primary.bootstrap(), TOPIC, "p", 0, RECORDS);
    let forward = Replicator::start(replicator_config(&pair)).expect("primary -> dr");
    let primary = pair.primary.cluster(ClusterRole::Primary);
    wait_until(
        Duration::from_secs(30),
        "every record replicated and synced",
        || {
            let syncs = forward_syncs(&primary);
            (0..PARTITIONS).all(|p| {
                syncs
                    .iter()
                    .any(|s| s.partition == p && s.downstream_offset <= 7)
            })
        },
    );
    forward.stop();
    commit(&pair, ClusterRole::Dr, REMOTE_TOPIC, &[(0, 7)]);
    let dr = pair.dr.cluster(ClusterRole::Dr);
    let other = [(TopicPartition::new(REMOTE_TOPIC, 0), 9)];
    block_on(dr.commit_offsets("audit", &other)).expect("commit audit");

    let dir = tempfile::tempdir().expect("tempdir");
    write_plan_for(dir.path(), &pair, "default", "\"re:order-.*\"");
    let log = failback(dir.path());
    let mapped: Vec<ReverseObservation> = events(&log)
        .iter()
        .filter(|e| e["name"] == "reverse_translation")
        .map(|e| serde_json::from_value(e["data"].clone()).expect("a reverse_translation"))
        .collect();
    assert_eq!(
        mapped.iter().map(|m| m.group.as_str()).collect::<Vec<_>>(),
        [GROUP],
        "{mapped:?}"
    );
    let row = &mapped[0].partitions[0];
    assert_eq!((row.partition, row.dr_committed), (0, 7));
    let position = row.target_offset.expect("a position at home");
    assert!((1..=7).contains(&position), "{row:?}");
    let home = |group: &str| {
        block_on(primary.committed_offsets(group, &[TopicPartition::new(TOPIC, 0)]))
            .expect("committed at home")[0]
            .1
    };
    assert_eq!(home(GROUP), Some(position));
    assert_eq!(
        home("audit"),
        None,
        "a group the pattern does not match moved"
    );
}

#[test]
fn under_the_identity_policy_reverse_checkpointing_is_skipped_with_its_reason() {
    let pair = Pair::start();
    create_layout(&pair);
    let dir = tempfile::tempdir().expect("tempdir");
    write_plan(dir.path(), &pair, "identity");
    commit(&pair, ClusterRole::Dr, TOPIC, &[(0, 3)]);
    let log = failback(dir.path());
    let decisions: Vec<serde_json::Value> = events(&log)
        .into_iter()
        .filter(|e| e["what"] == "skip reverse checkpointing")
        .collect();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0]["why"], IDENTITY_SKIP);
    // Nothing was committed at home.
    let home = block_on(
        pair.primary
            .cluster(ClusterRole::Primary)
            .committed_offsets(GROUP, &[TopicPartition::new(TOPIC, 0)]),
    )
    .expect("committed");
    assert_eq!(home[0].1, None);
}
