//! Tests of the embedded world against the in-process mock clusters. Every wait polls a
//! condition with a deadline; nothing sleeps to synchronise.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::client::{self, DeliveryLog, ReadRecord, read_partition};
use super::replicator::{Pause, Replicator, ReplicatorConfig};
use super::workload::{Ledger, ProducedRecord, StartPoint, Workload, WorkloadConfig, seqs_on};
use super::world::{EmbeddedWorld, Role, TopicSpec, WorldSpec};
use crate::mm2::{
    Checkpoint, CheckpointIndex, Emit, HeartbeatView, OffsetLagMax, OffsetSync, OffsetSyncEmitter,
    OffsetSyncStore, OffsetSyncsLocation, RawRecord, ReplicationPolicy,
};

const WAIT: Duration = Duration::from_secs(30);
const READ: Duration = Duration::from_secs(10);

/// Polls `condition` every 10 ms until it holds; panics with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct TestRecord {
    topic: String,
    partition: i32,
    key: String,
    value: String,
    headers: Vec<(String, String)>,
    timestamp: i64,
}

fn records(topic: &str, partitions: i32, count: usize, start: usize) -> Vec<TestRecord> {
    (start..start + count)
        .map(|i| TestRecord {
            topic: topic.to_owned(),
            partition: i32::try_from(i).unwrap() % partitions,
            key: format!("key-{}", i % 7),
            value: format!("value-{i}"),
            headers: vec![
                ("trace".to_owned(), format!("t{i}")),
                ("n".to_owned(), i.to_string()),
            ],
            timestamp: 1_700_000_000_000 + i64::try_from(i).unwrap(),
        })
        .collect()
}

/// Produces and waits for every acknowledgement; returns `(partition, offset)` each.
fn produce(bootstrap: &str, batch: &[TestRecord]) -> Vec<(i32, i64)> {
    let producer: BaseProducer<DeliveryLog> = client::base_config(bootstrap, "kdr-test")
        .set("linger.ms", "1")
        .set("enable.idempotence", "true")
        .create_with_context(DeliveryLog::default())
        .unwrap();
    for (index, record) in batch.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut base = BaseRecord::with_opaque_to(&record.topic, index)
            .partition(record.partition)
            .key(&record.key)
            .payload(&record.value)
            .timestamp(record.timestamp)
            .headers(headers);
        loop {
            match producer.send(base) {
                Ok(()) => break,
                Err((_, returned)) => {
                    base = returned;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(WAIT).unwrap();
    let mut acks = vec![None; batch.len()];
    for (index, outcome) in producer.context().drain() {
        acks[index] = Some(outcome.unwrap());
    }
    acks.into_iter().map(Option::unwrap).collect()
}

fn metadata(bootstrap: &str) -> BTreeMap<String, i32> {
    let consumer: BaseConsumer =
        client::assign_only_consumer(bootstrap, "kdr-test", "kdr-test").unwrap();
    let metadata = consumer.fetch_metadata(None, READ).unwrap();
    metadata
        .topics()
        .iter()
        .map(|t| {
            (
                t.name().to_owned(),
                i32::try_from(t.partitions().len()).unwrap(),
            )
        })
        .collect()
}

fn raw(record: &ReadRecord) -> RawRecord<'_> {
    RawRecord {
        offset: record.offset,
        key: record.key.as_deref(),
        value: record.value.as_deref(),
        timestamp_ms: record.timestamp_ms.unwrap_or(0),
    }
}

fn offset_syncs(config: &ReplicatorConfig) -> Vec<OffsetSync> {
    let (topic, holder) = config.offset_syncs();
    read_partition(&holder.bootstrap_servers, &topic, 0, READ)
        .unwrap()
        .iter()
        .map(|r| OffsetSync::decode(r.key.as_deref(), r.value.as_deref()).unwrap())
        .collect()
}

fn quiet(mut config: ReplicatorConfig) -> ReplicatorConfig {
    config.heartbeat_interval = Duration::from_millis(100);
    config.checkpoint_interval = Duration::from_millis(100);
    config.offset_flush_interval = Duration::from_millis(100);
    config
}

fn single_topic_spec(name: &str, partitions: i32) -> WorldSpec {
    WorldSpec {
        topics: vec![TopicSpec::new(name, partitions)],
        ..WorldSpec::default()
    }
}

#[test]
fn world_creates_every_topic_with_its_partitions_on_both_clusters() {
    for policy in [
        ReplicationPolicy::default_policy(),
        ReplicationPolicy::identity(None),
    ] {
        let spec = WorldSpec {
            policy: policy.clone(),
            ..WorldSpec::default()
        };
        let world = EmbeddedWorld::start(spec).unwrap();
        eprintln!("world start-up ({policy:?}): {:?}", world.started_in());
        let primary = metadata(world.bootstrap_servers(Role::Primary));
        let dr = metadata(world.bootstrap_servers(Role::Dr));
        for placement in world.spec().layout() {
            let topics = match placement.cluster {
                Role::Primary => &primary,
                Role::Dr => &dr,
            };
            assert_eq!(
                topics.get(&placement.name),
                Some(&placement.partitions),
                "{placement:?}"
            );
        }
        let expected_dr: &[(&str, i32)] = if matches!(policy, ReplicationPolicy::Identity { .. }) {
            &[("orders", 4), ("payments.eu", 3), ("primary.heartbeats", 1)]
        } else {
            &[
                ("orders", 4),
                ("payments.eu", 3),
                ("primary.orders", 4),
                ("primary.payments.eu", 3),
                ("primary.heartbeats", 1),
            ]
        };
        for (name, partitions) in expected_dr {
            assert_eq!(dr.get(*name), Some(partitions), "{name} on dr");
        }
        for (name, role) in [
            ("primary.checkpoints.internal", Role::Dr),
            ("dr.checkpoints.internal", Role::Primary),
            ("mm2-offset-syncs.dr.internal", Role::Primary),
            ("mm2-offset-syncs.primary.internal", Role::Dr),
            ("heartbeats", Role::Primary),
            ("heartbeats", Role::Dr),
        ] {
            let topics = if role == Role::Primary { &primary } else { &dr };
            assert_eq!(topics.get(name), Some(&1), "{name} on {role}");
        }
        assert_ne!(
            world.bootstrap_servers(Role::Primary),
            world.bootstrap_servers(Role::Dr)
        );
        assert!(
            world
                .bootstrap_servers(Role::Primary)
                .starts_with("127.0.0.1:")
        );
    }
}

#[test]
fn world_layout_follows_a_custom_separator_and_the_offset_syncs_location() {
    let spec = WorldSpec {
        policy: ReplicationPolicy::Default {
            separator: "_".to_owned(),
            internal_separator: true,
        },
        offset_syncs_location: OffsetSyncsLocation::Target,
        ..WorldSpec::default()
    };
    let world = EmbeddedWorld::start(spec).unwrap();
    let on = |role: Role| -> Vec<(String, i32)> {
        let mut topics: Vec<(String, i32)> = metadata(world.bootstrap_servers(role))
            .into_iter()
            .collect();
        topics.sort();
        topics
    };
    let expected = |remote: &str| -> Vec<(String, i32)> {
        let mut topics: Vec<(String, i32)> = [
            ("orders".to_owned(), 4),
            ("payments.eu".to_owned(), 3),
            ("heartbeats".to_owned(), 1),
            (format!("{remote}_orders"), 4),
            (format!("{remote}_payments.eu"), 3),
            (format!("{remote}_heartbeats"), 1),
            (format!("{remote}_checkpoints_internal"), 1),
            // Location `target`: the flow's syncs live here, named after its source.
            (format!("mm2-offset-syncs_{remote}_internal"), 1),
        ]
        .into_iter()
        .collect();
        topics.sort();
        topics
    };
    assert_eq!(on(Role::Dr), expected("primary"));
    assert_eq!(on(Role::Primary), expected("dr"));
}

#[test]
fn replicator_copies_every_record_exactly_and_syncs_pair_the_same_record() {
    let world = EmbeddedWorld::start(WorldSpec::default()).unwrap();
    let primary = world.bootstrap_servers(Role::Primary).to_owned();
    let dr = world.bootstrap_servers(Role::Dr).to_owned();
    let mut batch = records("orders", 4, 1000, 0);
    batch.extend(records("payments.eu", 3, 300, 0));
    produce(&primary, &batch);

    let config = world.replicator_config(Role::Primary);
    let topics = config.topics.clone();
    let replicator = Replicator::start(config.clone()).unwrap();
    wait_until("1300 records copied", WAIT, || {
        replicator.stats().copied_from(&topics) == 1300
    });
    wait_until("offset syncs written", WAIT, || {
        replicator.stats().offset_syncs_outstanding == 0
    });
    let stats = replicator.stop();
    assert_eq!(
        stats.records_copied,
        stats.copied_from(&topics) + stats.copied("heartbeats", 0)
    );

    let mut source = BTreeMap::new();
    for (topic, partitions) in [("orders", 4), ("payments.eu", 3)] {
        for partition in 0..partitions {
            let upstream = read_partition(&primary, topic, partition, READ).unwrap();
            let remote = config.remote_topic(topic);
            let downstream = read_partition(&dr, &remote, partition, READ).unwrap();
            assert_eq!(upstream.len(), downstream.len(), "{topic}-{partition}");
            for (up, down) in upstream.iter().zip(&downstream) {
                assert_eq!(up.offset, down.offset);
                assert_eq!(up.key, down.key);
                assert_eq!(up.value, down.value);
                assert_eq!(up.headers, down.headers);
                assert_eq!(up.timestamp_ms, down.timestamp_ms);
            }
            source.insert((topic.to_owned(), partition), (upstream, downstream));
        }
    }
    let syncs = offset_syncs(&config);
    assert!(!syncs.is_empty());
    // Which records get a sync depends on how fast syncs are acknowledged (10 in-flight
    // permits; a pending sync is replaced by its partition's next one, as in MM2), so
    // the exact sequence is checked on one partition in the next test. Here: every sync
    // pairs the same record, and once everything is flushed, the last record of every
    // partition is synced (immediately or by the periodic flush).
    let mut last_synced: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for sync in syncs.iter().filter(|s| s.topic != "heartbeats") {
        let (upstream, downstream) = &source[&(sync.topic.clone(), sync.partition)];
        let up = &upstream[usize::try_from(sync.upstream_offset).unwrap()];
        let down = &downstream[usize::try_from(sync.downstream_offset).unwrap()];
        assert_eq!((up.offset, &up.value), (sync.upstream_offset, &down.value));
        assert_eq!(up.headers, down.headers);
        let last = last_synced
            .entry((sync.topic.clone(), sync.partition))
            .or_insert(-1);
        assert!(sync.upstream_offset > *last, "syncs are written in order");
        *last = sync.upstream_offset;
    }
    let last_records: BTreeMap<(String, i32), i64> = source
        .iter()
        .map(|(key, (upstream, _))| (key.clone(), upstream.last().unwrap().offset))
        .collect();
    assert_eq!(last_synced, last_records);
}

#[test]
fn offset_syncs_follow_the_emitter_rules_then_the_periodic_flush() {
    let world = EmbeddedWorld::start(single_topic_spec("audit", 1)).unwrap();
    let primary = world.bootstrap_servers(Role::Primary).to_owned();
    produce(&primary, &records("audit", 1, 1000, 0));

    let mut config = world.replicator_config(Role::Primary);
    config.replicate_heartbeats = false;
    config.offset_flush_interval = Duration::from_secs(3600);
    let replicator = Replicator::start(config.clone()).unwrap();
    wait_until("1000 records copied", WAIT, || {
        replicator.stats().records_copied == 1000
    });
    // 1000 contiguous records with offset.lag.max 100 make exactly 10 immediate syncs,
    // never more than the 10 in-flight permits, so all are written whatever the timing.
    let mut model = OffsetSyncEmitter::new(OffsetLagMax::DEFAULT);
    let expected: Vec<OffsetSync> = (0..1000)
        .filter_map(
            |offset| match model.on_replicated("audit", 0, offset, offset) {
                Emit::Immediate(sync) => Some(sync),
                Emit::Delayed => None,
            },
        )
        .collect();
    let ups: Vec<i64> = expected.iter().map(|s| s.upstream_offset).collect();
    assert_eq!(ups, vec![0, 101, 202, 303, 404, 505, 606, 707, 808, 909]);
    wait_until("10 immediate syncs", WAIT, || {
        replicator.stats().offset_syncs_written == 10
    });
    assert_eq!(offset_syncs(&config), expected);
    wait_until("only 999 left, delayed", WAIT, || {
        replicator.stats().offset_syncs_outstanding == 1
    });
    drop(replicator);

    // A flow with a short flush interval writes the delayed sync of the last record.
    config.offset_flush_interval = Duration::from_millis(50);
    config.start_from = super::StartFrom::Latest;
    let replicator = Replicator::start(config.clone()).unwrap();
    wait_until("the new flow positioned at the end", WAIT, || {
        replicator.stats().positions().get(&("audit".to_owned(), 0)) == Some(&1000)
    });
    produce(&primary, &records("audit", 1, 5, 1000));
    wait_until("5 more records copied", WAIT, || {
        replicator.stats().records_copied == 5
    });
    wait_until("the delayed sync flushed", WAIT, || {
        replicator.stats().offset_syncs_outstanding == 0
    });
    let syncs = offset_syncs(&config);
    // A new task syncs its first record at once (1000, no history), and the periodic
    // flush writes the last one (and, depending on timing, delayed ones in between).
    let new: Vec<(i64, i64)> = syncs[10..]
        .iter()
        .map(|s| (s.upstream_offset, s.downstream_offset))
        .collect();
    assert_eq!(new.first(), Some(&(1000, 1000)));
    assert_eq!(new.last(), Some(&(1004, 1004)));
    assert!(
        new.iter()
            .all(|(up, down)| up == down && (1000..1005).contains(up))
    );
}

/// Commits a group on the primary, waits for its checkpoints on DR, and checks each
/// against the translation `OffsetSyncStore` makes from the syncs actually written.
fn checkpoint_matches_the_store(policy: ReplicationPolicy, location: OffsetSyncsLocation) {
    let spec = WorldSpec {
        policy: policy.clone(),
        offset_syncs_location: location,
        ..WorldSpec::default()
    };
    let world = EmbeddedWorld::start(spec).unwrap();
    let primary = world.bootstrap_servers(Role::Primary).to_owned();
    let dr = world.bootstrap_servers(Role::Dr).to_owned();
    produce(&primary, &records("orders", 4, 500, 0));
    let mut config = quiet(world.replicator_config(Role::Primary));
    // Without heartbeat copies, no sync is written once `orders` is copied and flushed.
    config.replicate_heartbeats = false;
    let replicator = Replicator::start(config.clone()).unwrap();
    wait_until("500 records copied", WAIT, || {
        replicator.stats().copied_from(&config.topics) == 500
    });
    wait_until("every sync written", WAIT, || {
        let stats = replicator.stats();
        stats.offset_syncs_outstanding == 0 && stats.offset_syncs_loaded
    });

    let group = "order-processor";
    let committed = [(0, 37), (1, 101), (2, 124), (3, 0)];
    let offsets: Vec<(String, i32, i64)> = committed
        .iter()
        .map(|(p, o)| ("orders".to_owned(), *p, *o))
        .collect();
    // The replicator loaded the (empty) checkpoints topic, so its store indexes every
    // sync normally: `initializationMustReadToEnd = false`.
    let mut store = OffsetSyncStore::new(false);
    for sync in offset_syncs(&config) {
        store.sync(&sync);
    }
    store.finish_initial_read();
    let remote = config.checkpoint_topic_name("orders");
    let expected: BTreeMap<i32, i64> = committed
        .iter()
        .map(|(p, o)| (*p, store.translate_downstream("orders", *p, *o).unwrap()))
        .collect();

    let committed_at = Instant::now();
    client::commit_offsets(&primary, group, &offsets, READ).unwrap();
    wait_until("the predicted checkpoint for every partition", WAIT, || {
        let stats = replicator.stats();
        committed.iter().all(|(p, o)| {
            stats
                .last_checkpoints
                .get(&(group.to_owned(), remote.clone(), *p))
                .is_some_and(|c| (c.upstream_offset, c.downstream_offset) == (*o, expected[p]))
        })
    });
    eprintln!(
        "checkpoint latency ({policy:?}, {location:?}): {:?} with a 100 ms interval",
        committed_at.elapsed()
    );

    let topic = config.checkpoints_topic();
    let records = read_partition(&dr, &topic, 0, READ).unwrap();
    let index = CheckpointIndex::from_records(records.iter().map(raw));
    assert_eq!(index.skipped().total(), 0);
    for (partition, upstream) in committed {
        let (checkpoint, timestamp) = index.get(group, &remote, partition).unwrap();
        let expected = expected[&partition];
        assert_eq!(
            checkpoint,
            Checkpoint {
                group: group.to_owned(),
                topic: remote.clone(),
                partition,
                upstream_offset: upstream,
                downstream_offset: expected,
                metadata: String::new(),
            }
        );
        assert!(timestamp > 1_700_000_000_000, "stamped with the wall clock");
        // Never past the group's real position: nothing it has not read is skipped.
        assert!(checkpoint.downstream_offset <= upstream);
    }
    // Exact syncs translate exactly: the first record, and the flushed last record.
    assert_eq!(index.get(group, &remote, 3).unwrap().0.downstream_offset, 0);
    assert_eq!(
        index.get(group, &remote, 2).unwrap().0.downstream_offset,
        124
    );
    assert_eq!(
        index.get(group, &remote, 1).unwrap().0.downstream_offset,
        101
    );
}

#[test]
fn checkpoints_match_the_offset_sync_store_under_the_default_policy() {
    checkpoint_matches_the_store(
        ReplicationPolicy::default_policy(),
        OffsetSyncsLocation::Source,
    );
}

#[test]
fn checkpoints_match_the_offset_sync_store_under_the_identity_policy() {
    checkpoint_matches_the_store(
        ReplicationPolicy::identity(None),
        OffsetSyncsLocation::Target,
    );
}

#[test]
fn checkpoints_match_the_offset_sync_store_with_a_custom_separator() {
    let policy = ReplicationPolicy::Default {
        separator: "_".to_owned(),
        internal_separator: true,
    };
    let config = ReplicatorConfig {
        policy: policy.clone(),
        ..ReplicatorConfig::new(
            super::Endpoint::new("primary", ""),
            super::Endpoint::new("dr", ""),
        )
    };
    assert_eq!(config.checkpoints_topic(), "primary_checkpoints_internal");
    assert_eq!(config.offset_syncs().0, "mm2-offset-syncs_dr_internal");
    assert_eq!(config.checkpoint_topic_name("orders"), "primary_orders");
    checkpoint_matches_the_store(policy, OffsetSyncsLocation::Source);
}

#[test]
fn checkpoint_names_follow_the_renaming_rule() {
    let forward = ReplicatorConfig::new(
        super::Endpoint::new("primary", ""),
        super::Endpoint::new("dr", ""),
    );
    assert_eq!(forward.checkpoint_topic_name("orders"), "primary.orders");
    let reverse = ReplicatorConfig::new(
        super::Endpoint::new("dr", ""),
        super::Endpoint::new("primary", ""),
    );
    // A topic that came from the target goes back to its original name.
    assert_eq!(reverse.checkpoint_topic_name("primary.orders"), "orders");
    assert_eq!(reverse.checkpoint_topic_name("orders"), "dr.orders");
}

#[test]
fn checkpoints_are_only_rewritten_when_more_recent() {
    use super::replicator::checkpoint_is_more_recent;
    let at = |upstream, downstream| Checkpoint {
        group: "g".into(),
        topic: "primary.orders".into(),
        partition: 0,
        upstream_offset: upstream,
        downstream_offset: downstream,
        metadata: String::new(),
    };
    assert!(checkpoint_is_more_recent(None, &at(5, 5)));
    assert!(!checkpoint_is_more_recent(Some(&at(5, 5)), &at(5, 5)));
    assert!(
        !checkpoint_is_more_recent(Some(&at(5, 5)), &at(6, 5)),
        "same downstream"
    );
    assert!(checkpoint_is_more_recent(Some(&at(5, 5)), &at(6, 6)));
    assert!(
        checkpoint_is_more_recent(Some(&at(5, 5)), &at(4, 4)),
        "upstream rewind"
    );
    assert!(
        !checkpoint_is_more_recent(Some(&at(5, 5)), &at(7, 4)),
        "downstream rewind only"
    );
}

fn heartbeats(bootstrap: &str, topic: &str) -> HeartbeatView {
    let records = read_partition(bootstrap, topic, 0, READ).unwrap();
    HeartbeatView::from_records(records.iter().map(raw))
}

#[test]
fn heartbeats_go_where_mm2_herders_write_them() {
    for policy in [
        ReplicationPolicy::default_policy(),
        ReplicationPolicy::identity(None),
    ] {
        let world = EmbeddedWorld::start(WorldSpec {
            policy,
            ..WorldSpec::default()
        })
        .unwrap();
        let primary = world.bootstrap_servers(Role::Primary).to_owned();
        let dr = world.bootstrap_servers(Role::Dr).to_owned();
        let mut config = world.replicator_config(Role::Primary);
        config.heartbeat_interval = Duration::from_millis(50);
        let replicated = config.remote_topic("heartbeats");
        assert_eq!(replicated, "primary.heartbeats");
        let replicator = Replicator::start(config).unwrap();
        wait_until("heartbeats in all three topics", WAIT, || {
            heartbeats(&dr, "heartbeats")
                .latest("primary", "dr")
                .is_some()
                && heartbeats(&primary, "heartbeats")
                    .latest("dr", "primary")
                    .is_some()
                && heartbeats(&dr, &replicated)
                    .latest("dr", "primary")
                    .is_some()
        });
        let stats = replicator.stop();
        assert!(stats.heartbeats_written >= 2);
        // Nothing else is written into them.
        assert_eq!(heartbeats(&dr, "heartbeats").pairs().len(), 1);
        assert_eq!(heartbeats(&primary, "heartbeats").pairs().len(), 1);
        let copied = heartbeats(&dr, &replicated);
        assert_eq!(copied.pairs().len(), 1);
        assert_eq!(copied.skipped().total(), 0);
    }
}

fn assert_identical(
    world: &EmbeddedWorld,
    config: &ReplicatorConfig,
    topic: &str,
    partitions: i32,
) {
    let primary = world.bootstrap_servers(Role::Primary);
    let dr = world.bootstrap_servers(Role::Dr);
    for partition in 0..partitions {
        let up = read_partition(primary, topic, partition, READ).unwrap();
        let down = read_partition(dr, &config.remote_topic(topic), partition, READ).unwrap();
        let values = |records: &[ReadRecord]| {
            records
                .iter()
                .map(|r| (r.offset, r.value.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&up), values(&down), "{topic}-{partition}");
    }
}

#[test]
fn pause_builds_lag_and_resume_clears_it() {
    let world = EmbeddedWorld::start(single_topic_spec("orders", 4)).unwrap();
    let primary = world.bootstrap_servers(Role::Primary).to_owned();
    let config = quiet(world.replicator_config(Role::Primary));
    let replicator = Replicator::start(config.clone()).unwrap();
    produce(&primary, &records("orders", 4, 100, 0));
    wait_until("100 copied", WAIT, || {
        replicator.stats().copied_from(&config.topics) == 100
    });

    replicator.pause(Pause::Copying);
    wait_until("the copy loop paused", WAIT, || {
        replicator.stats().copy_paused
    });
    let beats = replicator.stats().heartbeats_written;
    produce(&primary, &records("orders", 4, 200, 100));
    // Heartbeats go on while copying is paused; meanwhile nothing is copied.
    wait_until("heartbeats while paused", WAIT, || {
        replicator.stats().heartbeats_written > beats + 2
    });
    let stats = replicator.stats();
    assert_eq!(stats.copied_from(&config.topics), 100, "paused: lag of 200");
    let source_end: i64 = (0..4)
        .map(|p| {
            let consumer: BaseConsumer =
                client::assign_only_consumer(&primary, "kdr-test", "kdr-test").unwrap();
            consumer.fetch_watermarks("orders", p, READ).unwrap().1
        })
        .sum();
    let copied_next: i64 = stats
        .positions()
        .iter()
        .filter(|((topic, _), _)| topic == "orders")
        .map(|(_, next)| next)
        .sum();
    assert_eq!(source_end - copied_next, 200);

    replicator.resume();
    wait_until("the lag cleared", WAIT, || {
        replicator.stats().copied_from(&config.topics) == 300
    });
    assert!(!replicator.stats().copy_paused);
    drop(replicator);
    assert_identical(&world, &config, "orders", 4);
}

#[test]
fn pausing_everything_stops_heartbeats_and_checkpoints_too() {
    let world = EmbeddedWorld::start(single_topic_spec("orders", 2)).unwrap();
    let primary = world.bootstrap_servers(Role::Primary).to_owned();
    let config = quiet(world.replicator_config(Role::Primary));
    let replicator = Replicator::start(config.clone()).unwrap();
    produce(&primary, &records("orders", 2, 10, 0));
    let group = "order-processor";
    let checkpoint_at = |upstream: i64| {
        let key = (group.to_owned(), "primary.orders".to_owned(), 0);
        move |stats: &super::ReplicatorStats| {
            stats
                .last_checkpoints
                .get(&key)
                .is_some_and(|c| c.upstream_offset == upstream)
        }
    };
    client::commit_offsets(&primary, group, &[("orders".to_owned(), 0, 3)], READ).unwrap();
    let at_3 = checkpoint_at(3);
    wait_until("copied and checkpointed", WAIT, || {
        let stats = replicator.stats();
        stats.copied_from(&config.topics) == 10 && at_3(&stats)
    });

    replicator.pause(Pause::Everything);
    wait_until("the copy loop paused", WAIT, || {
        replicator.stats().copy_paused
    });
    // Copy rounds go on while paused (about 20 ms each): let in-flight heartbeats land.
    let rounds = replicator.stats().copy_rounds;
    wait_until("10 paused rounds", WAIT, || {
        replicator.stats().copy_rounds >= rounds + 10
    });
    let paused = replicator.stats();
    client::commit_offsets(&primary, group, &[("orders".to_owned(), 0, 5)], READ).unwrap();
    produce(&primary, &records("orders", 2, 10, 10));
    // Several heartbeat and checkpoint intervals (100 ms) go by.
    wait_until("20 more paused rounds", WAIT, || {
        replicator.stats().copy_rounds >= paused.copy_rounds + 20
    });
    let still = replicator.stats();
    assert_eq!(still.heartbeats_written, paused.heartbeats_written);
    assert_eq!(still.checkpoints_written, paused.checkpoints_written);
    assert_eq!(still.copied_from(&config.topics), 10);

    replicator.resume();
    let at_5 = checkpoint_at(5);
    wait_until("everything resumed", WAIT, || {
        let stats = replicator.stats();
        stats.copied_from(&config.topics) == 20
            && at_5(&stats)
            && stats.heartbeats_written > paused.heartbeats_written
    });
}

#[test]
fn replicator_survives_the_source_going_down_and_resumes_when_it_returns() {
    let world = EmbeddedWorld::start(single_topic_spec("orders", 4)).unwrap();
    let primary = world.bootstrap_servers(Role::Primary).to_owned();
    let config = quiet(world.replicator_config(Role::Primary));
    let replicator = Replicator::start(config.clone()).unwrap();
    produce(&primary, &records("orders", 4, 100, 0));
    wait_until("100 copied", WAIT, || {
        replicator.stats().copied_from(&config.topics) == 100
    });

    world.cluster_down(Role::Primary).unwrap();
    let down_at = Instant::now();
    let before = replicator.stats();
    // The loop keeps going (rounds advance) and reports errors, with backoff between.
    wait_until(
        "copy rounds and errors while the source is down",
        WAIT,
        || {
            let stats = replicator.stats();
            stats.errors >= before.errors + 3 && stats.copy_rounds >= before.copy_rounds + 5
        },
    );
    let after = replicator.stats();
    let rounds = after.copy_rounds - before.copy_rounds;
    let rate = rounds as f64 / down_at.elapsed().as_secs_f64();
    eprintln!(
        "source down for {:?}: {rounds} copy rounds ({rate:.0}/s), {} errors, last: {:?}",
        down_at.elapsed(),
        after.errors - before.errors,
        after.last_error
    );
    assert!(rate < 200.0, "the copy loop backs off instead of spinning");

    world.cluster_up(Role::Primary).unwrap();
    let up_at = Instant::now();
    produce(&primary, &records("orders", 4, 100, 100));
    let produced_in = up_at.elapsed();
    wait_until("the records written after recovery copied", WAIT, || {
        replicator.stats().copied_from(&config.topics) == 200
    });
    eprintln!(
        "after the source came back: produced in {produced_in:?}, copied within {:?}",
        up_at.elapsed()
    );
    drop(replicator);
    assert_identical(&world, &config, "orders", 4);
}

#[test]
fn replicator_stops_promptly_while_its_source_is_down() {
    let world = EmbeddedWorld::start(single_topic_spec("orders", 2)).unwrap();
    let config = quiet(world.replicator_config(Role::Primary));
    let replicator = Replicator::start(config).unwrap();
    wait_until("the first copy rounds", WAIT, || {
        replicator.stats().copy_rounds > 3
    });
    world.cluster_down(Role::Primary).unwrap();
    wait_until("an error while down", WAIT, || {
        replicator.stats().errors > 0
    });
    let stopping = Instant::now();
    let _ = replicator.stop();
    eprintln!("stop with the source down took {:?}", stopping.elapsed());
    assert!(stopping.elapsed() < Duration::from_secs(15));
}

#[test]
fn replicator_throughput_on_the_mock() {
    let world = EmbeddedWorld::start(single_topic_spec("orders", 4)).unwrap();
    let primary = world.bootstrap_servers(Role::Primary).to_owned();
    let count = 50_000;
    produce(&primary, &records("orders", 4, count, 0));
    let config = world.replicator_config(Role::Primary);
    let started = Instant::now();
    let replicator = Replicator::start(config.clone()).unwrap();
    wait_until("everything copied", Duration::from_secs(120), || {
        replicator.stats().copied_from(&config.topics) == count as u64
    });
    let elapsed = started.elapsed();
    let rate = count as f64 / elapsed.as_secs_f64();
    eprintln!("replicator throughput: {count} records in {elapsed:?} = {rate:.0} records/s");
    assert!(rate > 2_000.0);
}

struct Drill {
    _dir: tempfile::TempDir,
    indirection: std::path::PathBuf,
    pause: std::path::PathBuf,
}

impl Drill {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            indirection: dir.path().join("bootstrap"),
            pause: dir.path().join("producers.paused"),
            _dir: dir,
        }
    }

    fn point_at(&self, bootstrap: &str) {
        std::fs::write(&self.indirection, format!("{bootstrap}\n")).unwrap();
    }

    fn quiesce(&self, workload: &Workload) {
        std::fs::write(&self.pause, b"").unwrap();
        wait_until("producers quiesced", WAIT, || {
            workload.stats().producers_paused()
        });
    }

    fn resume(&self) {
        std::fs::remove_file(&self.pause).unwrap();
    }
}

fn workload_config(world: &EmbeddedWorld, drill: &Drill) -> WorkloadConfig {
    let mut config = world.workload_config(&drill.indirection, &drill.pause);
    config.rate_per_sec = 400;
    config.producers = 2;
    config.commit_every_records = 20;
    config.commit_interval = Duration::from_millis(50);
    config
}

/// Waits until every group has read every acknowledged record at least once.
fn wait_consumers_caught_up(workload: &Workload) {
    let groups = workload.config().groups.clone();
    wait_until("every group read every acknowledged record", WAIT, || {
        let report = workload.ledger().report(&groups, None);
        report.groups.iter().all(|g| g.unseen.is_empty())
    });
}

fn produced_on<'a>(ledger: &'a Ledger, cluster: &str) -> Vec<&'a ProducedRecord> {
    ledger
        .produced
        .iter()
        .filter(|r| r.cluster == cluster)
        .collect()
}

#[test]
fn workload_follows_the_indirection_and_pause_files() {
    let world = EmbeddedWorld::start(WorldSpec::default()).unwrap();
    let drill = Drill::new();
    drill.point_at(world.bootstrap_servers(Role::Primary));
    let mut config = workload_config(&world, &drill);
    config.reattach_wait_for_offsets = Duration::ZERO;
    let groups = config.groups.clone();
    let workload = Workload::start(config).unwrap();

    wait_until("records produced and consumed on the primary", WAIT, || {
        let stats = workload.stats();
        stats.acknowledged >= 100
            && stats
                .producer_clusters
                .iter()
                .all(|c| c.as_deref() == Some("primary"))
            && groups.iter().all(|g| {
                stats.groups.get(g).is_some_and(|s| {
                    s.cluster.as_deref() == Some("primary") && s.consumed_in_session >= 20
                })
            })
    });

    drill.quiesce(&workload);
    let acknowledged = workload.stats().acknowledged;
    wait_consumers_caught_up(&workload);
    assert_eq!(
        workload.stats().acknowledged,
        acknowledged,
        "nothing produced while paused"
    );

    drill.point_at(world.bootstrap_servers(Role::Dr));
    drill.resume();
    wait_until("producers and consumers on DR", WAIT, || {
        let stats = workload.stats();
        let ledger = workload.ledger();
        stats
            .producer_clusters
            .iter()
            .all(|c| c.as_deref() == Some("dr"))
            && produced_on(&ledger, "dr").len() >= 50
            && groups.iter().all(|g| {
                ledger
                    .consumed
                    .iter()
                    .filter(|r| &r.group == g && r.cluster == "dr")
                    .count()
                    >= 20
            })
    });
    let ledger = workload.ledger();
    // DR's own original topics take the writes, never the remote topics.
    assert!(
        produced_on(&ledger, "dr")
            .iter()
            .all(|r| r.topic == "orders" || r.topic == "payments.eu")
    );
    let attached: BTreeSet<&str> = ledger
        .attachments
        .iter()
        .filter(|a| a.cluster == "dr")
        .flat_map(|a| a.partitions.iter().map(|(t, _, _)| t.as_str()))
        .collect();
    let expected: BTreeSet<&str> = [
        "orders",
        "payments.eu",
        "primary.orders",
        "primary.payments.eu",
    ]
    .into_iter()
    .collect();
    assert_eq!(attached, expected, "original and remote topics on DR");

    drill.quiesce(&workload);
    wait_consumers_caught_up(&workload);
    let ledger = workload.stop();
    let report = ledger.report(&groups, None);
    assert!(report.lost.is_empty());
    assert_eq!(
        report.acknowledged,
        ledger.produced.len(),
        "every seq acknowledged once"
    );
    for group in &report.groups {
        assert_eq!(group.duplicates, 0, "{group:?}");
        assert!(group.jumped_to_start.is_empty(), "{group:?}");
    }
    // Every record carries its headers, and its sequence number is unique.
    let seqs = seqs_on(
        world.bootstrap_servers(Role::Primary),
        &world.spec().topic_names(),
        READ,
    )
    .unwrap();
    assert_eq!(seqs.len(), report.acknowledged_by_cluster["primary"]);
}

/// The next offset after the last acknowledged record, per partition written on `cluster`.
fn end_offsets(ledger: &Ledger, cluster: &str) -> BTreeMap<(String, i32), i64> {
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for record in produced_on(ledger, cluster) {
        let end = ends
            .entry((record.topic.clone(), record.partition))
            .or_default();
        *end = (*end).max(record.offset + 1);
    }
    ends
}

/// Waits until the flow has checkpointed every group at `ends` (its final positions) and
/// translated them exactly, as it does once the last records' delayed syncs are flushed.
/// `downstream` gives the expected target offset of each end.
fn wait_exact_checkpoints(
    replicator: &Replicator,
    groups: &[String],
    ends: &BTreeMap<(String, i32), i64>,
    downstream: impl Fn(&str, i32, i64) -> i64,
) {
    let config = replicator.config().clone();
    wait_until(
        "exact checkpoints at the groups' final positions",
        WAIT,
        || {
            let stats = replicator.stats();
            groups.iter().all(|group| {
                ends.iter().all(|((topic, partition), end)| {
                    let name = config.checkpoint_topic_name(topic);
                    stats
                        .last_checkpoints
                        .get(&(group.clone(), name, *partition))
                        .is_some_and(|c| {
                            (c.upstream_offset, c.downstream_offset)
                                == (*end, downstream(topic, *partition, *end))
                        })
                })
            })
        },
    );
}

/// kdr's `translate_offsets`: the last checkpoint per partition of `<source>.checkpoints
/// .internal` on the target, committed there for each group.
fn commit_translated(world: &EmbeddedWorld, source: Role, groups: &[String]) -> usize {
    let target = world.bootstrap_servers(source.other());
    let topic = world.replicator_config(source).checkpoints_topic();
    let records = read_partition(target, &topic, 0, READ).unwrap();
    let index = CheckpointIndex::from_records(records.iter().map(raw));
    let mut committed = 0;
    for group in groups {
        let offsets: Vec<(String, i32, i64)> = index
            .for_group(group)
            .into_iter()
            .map(|(c, _)| (c.topic.clone(), c.partition, c.downstream_offset))
            .collect();
        committed += offsets.len();
        client::commit_offsets(target, group, &offsets, READ).unwrap();
    }
    committed
}

fn high_watermarks(bootstrap: &str, topics: &[String]) -> BTreeMap<(String, i32), i64> {
    let consumer = client::assign_only_consumer(bootstrap, "kdr-test", "kdr-test").unwrap();
    let mut marks = BTreeMap::new();
    for (topic, count) in client::partition_counts(&consumer, topics, READ).unwrap() {
        for partition in 0..count {
            let (_, high) = consumer.fetch_watermarks(&topic, partition, READ).unwrap();
            marks.insert((topic.clone(), partition), high);
        }
    }
    marks
}

fn assert_clean(ledger: &Ledger, groups: &[String], phase: &str) {
    let report = ledger.report(groups, None);
    eprintln!(
        "{phase}: {} acknowledged {:?}",
        report.acknowledged, report.acknowledged_by_cluster
    );
    assert!(report.lost.is_empty(), "{phase}: lost {:?}", report.lost);
    for group in &report.groups {
        assert_eq!(group.duplicates, 0, "{phase}: {group:?}");
        assert!(group.unseen.is_empty(), "{phase}: {group:?}");
        assert!(group.jumped_to_start.is_empty(), "{phase}: {group:?}");
    }
}

/// The whole drill, as kdr drives it. Failover: quiesce, wait for replication, lose the
/// primary, commit the translated checkpoints on DR, repoint. Failback: the primary
/// returns, the reverse flow copies what DR took while active, quiesce, wait, commit the
/// reverse checkpoints on the primary, repoint. With exact syncs at the quiesced
/// positions, nothing is lost and nothing is read twice.
fn failover_and_failback(policy: ReplicationPolicy) {
    let world = EmbeddedWorld::start(WorldSpec {
        policy: policy.clone(),
        ..WorldSpec::default()
    })
    .unwrap();
    let primary = world.bootstrap_servers(Role::Primary).to_owned();
    let dr = world.bootstrap_servers(Role::Dr).to_owned();
    let drill = Drill::new();
    drill.point_at(&primary);
    let config = workload_config(&world, &drill);
    let groups = config.groups.clone();
    let topics = config.topics.clone();
    let workload = Workload::start(config).unwrap();
    let forward = Replicator::start(quiet(world.replicator_config(Role::Primary))).unwrap();
    wait_until("traffic on the primary", WAIT, || {
        workload.stats().acknowledged >= 300
    });

    // Failover.
    drill.quiesce(&workload);
    let acknowledged = workload.stats().acknowledged;
    wait_until("replication caught up", WAIT, || {
        forward.stats().copied_from(&topics) == acknowledged
    });
    wait_consumers_caught_up(&workload);
    let primary_ends = end_offsets(&workload.ledger(), "primary");
    // The remote partitions started empty: offsets are equal on both sides.
    wait_exact_checkpoints(&forward, &groups, &primary_ends, |_, _, end| end);
    drop(forward);
    world.cluster_down(Role::Primary).unwrap();
    let translated = commit_translated(&world, Role::Primary, &groups);
    assert_eq!(translated, groups.len() * primary_ends.len());
    // Where DR's own topics stand when it takes over: the reverse flow starts there, so
    // that under Identity the history replicated from the primary is not sent back.
    let dr_start = high_watermarks(&dr, &topics);
    drill.point_at(&dr);
    drill.resume();
    wait_until("traffic on DR", WAIT, || {
        produced_on(&workload.ledger(), "dr").len() >= 200
    });
    let ledger = workload.ledger();
    for attachment in ledger.attachments.iter().filter(|a| a.cluster == "dr") {
        for (topic, partition, start) in &attachment.partitions {
            let original = policy.original_topic(topic);
            if let Some(end) = primary_ends.get(&(original.clone(), *partition))
                && *topic
                    == world
                        .replicator_config(Role::Primary)
                        .remote_topic(&original)
            {
                assert_eq!(*start, StartPoint::Committed(*end), "{topic}-{partition}");
            }
        }
    }

    // Failback.
    world.cluster_up(Role::Primary).unwrap();
    let primary_base = high_watermarks(&primary, &topics);
    let mut reverse_config = quiet(world.replicator_config(Role::Dr));
    reverse_config.start_from = super::StartFrom::Offsets(dr_start.clone());
    let reverse = Replicator::start(reverse_config).unwrap();
    drill.quiesce(&workload);
    let on_dr = produced_on(&workload.ledger(), "dr").len() as u64;
    wait_until("reverse replication caught up", WAIT, || {
        reverse.stats().copied_from(&topics) == on_dr
    });
    wait_consumers_caught_up(&workload);
    let dr_ends = end_offsets(&workload.ledger(), "dr");
    let remote_base = |topic: &str, partition: i32| {
        let remote = reverse.config().remote_topic(topic);
        if remote == topic {
            primary_base[&(topic.to_owned(), partition)]
        } else {
            0
        }
    };
    wait_exact_checkpoints(&reverse, &groups, &dr_ends, |topic, partition, end| {
        let start = dr_start[&(topic.to_owned(), partition)];
        remote_base(topic, partition) + end - start
    });
    drop(reverse);
    commit_translated(&world, Role::Dr, &groups);
    drill.point_at(&primary);
    drill.resume();
    wait_until("traffic on the primary again", WAIT, || {
        workload
            .ledger()
            .produced
            .iter()
            .rev()
            .take_while(|r| r.cluster == "primary")
            .count()
            >= 200
    });
    drill.quiesce(&workload);
    wait_consumers_caught_up(&workload);
    let ledger = workload.stop();
    assert_clean(
        &ledger,
        &groups,
        &format!("failover and failback ({policy:?})"),
    );
    let sessions: BTreeSet<(String, u32)> = ledger
        .attachments
        .iter()
        .map(|a| (a.cluster.clone(), a.session))
        .collect();
    assert_eq!(
        sessions,
        [
            ("primary".to_owned(), 1),
            ("dr".to_owned(), 2),
            ("primary".to_owned(), 3)
        ]
        .into_iter()
        .collect()
    );
}

#[test]
fn failover_and_failback_lose_nothing_and_reread_nothing_under_the_default_policy() {
    failover_and_failback(ReplicationPolicy::default_policy());
}

#[test]
fn failover_and_failback_lose_nothing_and_reread_nothing_under_the_identity_policy() {
    failover_and_failback(ReplicationPolicy::identity(None));
}

#[test]
fn a_group_moved_without_translated_offsets_jumps_back_to_the_start() {
    let world = EmbeddedWorld::start(single_topic_spec("orders", 2)).unwrap();
    let drill = Drill::new();
    drill.point_at(world.bootstrap_servers(Role::Primary));
    let mut config = workload_config(&world, &drill);
    config.groups = vec!["order-processor".to_owned()];
    config.reattach_wait_for_offsets = Duration::from_millis(300);
    let groups = config.groups.clone();
    let workload = Workload::start(config).unwrap();
    let replicator = Replicator::start(quiet(world.replicator_config(Role::Primary))).unwrap();
    wait_until("traffic on the primary", WAIT, || {
        workload.stats().acknowledged >= 100
    });
    drill.quiesce(&workload);
    let acknowledged = workload.stats().acknowledged;
    wait_until("replication caught up", WAIT, || {
        replicator.stats().copied_from(&["orders".to_owned()]) == acknowledged
    });
    wait_consumers_caught_up(&workload);
    drop(replicator);

    drill.point_at(world.bootstrap_servers(Role::Dr));
    wait_until(
        "the group waited, then read DR from the start",
        WAIT,
        || {
            let stats = workload.stats();
            let group = &stats.groups["order-processor"];
            group.session == 2 && group.consumed_in_session >= acknowledged
        },
    );
    let report = workload.stop().report(&groups, None);
    let group = &report.groups[0];
    assert_eq!(
        group.duplicates, report.acknowledged,
        "everything read twice"
    );
    assert_eq!(
        group
            .jumped_to_start
            .iter()
            .map(|(c, t, _, s)| (c.as_str(), t.as_str(), *s))
            .collect::<BTreeSet<_>>(),
        [("dr", "primary.orders", 2)].into_iter().collect()
    );
}
