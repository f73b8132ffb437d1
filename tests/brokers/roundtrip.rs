//! A full failover and failback on the two Nisshi brokers with a real consumer group: an
//! application that subscribes (joins the group, is assigned partitions by a rebalance) and
//! commits, on the primary, then on DR, then on the primary again, with kdr's replicator running
//! `primary -> dr` and, for the failback, `dr -> primary`. No record is lost (lag was zero at
//! each declaration), the group resumes where the translated offsets say, and the records it
//! reads twice are exactly those MM2's translation rules predict, as kdr's incident log says.
//! At failback, what the group read on DR's `primary.orders` comes home too (reverse
//! checkpointing through the forward flow's offset syncs).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kdr::kafka::ClusterRole;
use kdr::rehearsal::{Endpoint, Replicator, ReplicatorConfig};
use kdr::replication::{PositionFrom, ReverseObservation};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};

use crate::harness::{Pair, Run, block_on, events, kdr, logs, wait_until};
use crate::mm2::{GROUP, PARTITIONS, TOPIC, create_layout, replicator_config, write_plan};

/// One record as the application read it.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub value: String,
}

/// The application: joins `GROUP` on `bootstrap` subscribed to `topics`, reads until it has
/// read up to `ends` (exclusive) on every listed partition, commits what it read, and leaves.
pub(crate) fn consume(bootstrap: &str, topics: &[&str], ends: &[(&str, i32, i64)]) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("client.id", "order-app")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("log_level", "0")
        .create()
        .expect("consumer");
    consumer.subscribe(topics).expect("subscribe");
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut read = Vec::new();
    let started = Instant::now();
    let done = |next: &BTreeMap<(String, i32), i64>| {
        ends.iter()
            .all(|(t, p, end)| next.get(&((*t).to_owned(), *p)).is_some_and(|n| n >= end))
    };
    while !done(&next) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the application did not read up to {ends:?} on {bootstrap}; it read {next:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                read.push(Read {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                });
            }
            Some(Err(e)) => panic!("consume on {bootstrap}: {e}"),
            None => {}
        }
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit what was read");
    consumer.unsubscribe();
    drop(consumer);
    read
}

/// Writes `count` records with unique values (`<prefix>-<partition>-<n>`) to every partition.
pub(crate) fn write(bootstrap: &str, topic: &str, prefix: &str, from: i64, count: i64) {
    for partition in 0..PARTITIONS {
        let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "10000")
            .set("log_level", "0")
            .create()
            .expect("producer");
        block_on(async {
            for n in from..from + count {
                let value = format!("{prefix}-{partition}-{n}");
                producer
                    .send(
                        rdkafka::producer::FutureRecord::to(topic)
                            .partition(partition)
                            .key("k")
                            .payload(&value),
                        Duration::from_secs(10),
                    )
                    .await
                    .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
            }
        });
    }
}

/// `kdr failover` or `kdr failback` of `drill.yaml`, confirmed by alice, with `extra` flags.
pub(crate) fn switch(dir: &Path, command: &str, extra: &[&str]) -> Run {
    let mut args = vec![command, "--plan", "drill.yaml"];
    args.extend_from_slice(extra);
    args.extend(["--yes", "--operator", "alice", "--reason", "drill"]);
    kdr(dir, &args)
}

fn ends(topic: &str, end: i64) -> Vec<(&str, i32, i64)> {
    (0..PARTITIONS).map(|p| (topic, p, end)).collect()
}

/// How many records kdr's `reprocessing` observations said the group may read again.
fn predicted_rereads(log: &Path) -> i64 {
    events(log)
        .iter()
        .filter(|e| e["name"] == "reprocessing")
        .map(|e| {
            e["data"]["may_reread"]
                .as_i64()
                .unwrap_or_else(|| panic!("no figure: {e}"))
        })
        .sum()
}

/// What kdr's `reprocessing` observations said the group may read again on the partitions of
/// `topic` on the cluster it moved to (`dr.orders` from the reverse flow's checkpoints,
/// `orders` from the reverse mapping at failback).
fn predicted_rereads_on(log: &Path, topic: &str) -> i64 {
    events(log)
        .iter()
        .filter(|e| e["name"] == "reprocessing")
        .flat_map(|e| {
            e["data"]["partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|p| p["target_topic"] == topic)
        .map(|p| {
            p["may_reread"]
                .as_i64()
                .unwrap_or_else(|| panic!("no figure: {p}"))
        })
        .sum()
}

/// The failback's `reverse_translation` observations, read back as kdr writes them.
fn reverse_translations(log: &Path) -> Vec<ReverseObservation> {
    events(log)
        .iter()
        .filter(|e| e["name"] == "reverse_translation")
        .map(|e| serde_json::from_value(e["data"].clone()).expect("a reverse_translation"))
        .collect()
}

/// Values read more than once, by prefix, across every read so far.
fn duplicates(reads: &[Read], prefix: &str) -> i64 {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for r in reads.iter().filter(|r| r.value.starts_with(prefix)) {
        *count.entry(r.value.as_str()).or_default() += 1;
    }
    count.values().map(|c| c - 1).sum()
}

fn assert_every_record_read(reads: &[Read], prefix: &str, per_partition: i64) {
    for partition in 0..PARTITIONS {
        for n in 0..per_partition {
            let value = format!("{prefix}-{partition}-{n}");
            assert!(
                reads.iter().any(|r| r.value == value),
                "{value} was never read: lost"
            );
        }
    }
}

/// Waits until `replicator` has copied `copied` records of `orders` and checkpointed the group
/// at source offset `upstream` on every partition of `remote_topic`.
fn wait_checkpointed(replicator: &Replicator, copied: u64, remote_topic: &str, upstream: i64) {
    wait_until(
        Duration::from_secs(30),
        &format!("{copied} records copied and the group checkpointed at {upstream}"),
        || {
            let stats = replicator.stats();
            stats.copied_from(&[TOPIC.to_owned()]) >= copied
                && (0..PARTITIONS).all(|p| {
                    stats
                        .last_checkpoints
                        .get(&(GROUP.to_owned(), remote_topic.to_owned(), p))
                        .is_some_and(|c| c.upstream_offset == upstream)
                })
        },
    );
}

#[test]
fn failover_and_failback_with_a_subscribed_consumer_group_lose_nothing_and_reread_what_mm2_predicts()
 {
    let pair = Pair::start();
    create_layout(&pair);
    let (primary, dr) = (pair.primary.bootstrap(), pair.dr.bootstrap());
    let mut reads: Vec<Read> = Vec::new();

    // Day one on the primary: 10 records a partition, all read and committed; then 5 more the
    // application has not read when disaster is declared.
    write(&primary, TOPIC, "p", 0, 10);
    reads.extend(consume(&primary, &[TOPIC], &ends(TOPIC, 10)));
    write(&primary, TOPIC, "p", 10, 5);
    let forward = Replicator::start(replicator_config(&pair)).expect("primary -> dr");
    wait_checkpointed(&forward, 45, "primary.orders", 10);

    let dir = tempfile::tempdir().expect("tempdir");
    write_plan(
        dir.path(),
        &primary,
        &dr,
        "  - declare: {}\n  - wait_replication: { timeout: 20s, poll_interval: 100ms, on_timeout: abort }\n  - translate_offsets: { groups: all }\n",
        "  - declare: {}\n  - check_reverse_replication: { max_heartbeat_age: 10s }\n  - wait_replication: { timeout: 20s, poll_interval: 100ms, on_timeout: abort }\n  - translate_offsets: { groups: all }\n",
    );
    let run = switch(dir.path(), "failover", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let failover_log = logs(dir.path()).pop().expect("failover log");
    let predicted = predicted_rereads(&failover_log);
    let translated: BTreeMap<i32, i64> = block_on(
        pair.dr.cluster(ClusterRole::Dr).committed_offsets(
            GROUP,
            &(0..PARTITIONS)
                .map(|p| kdr::kafka::TopicPartition::new("primary.orders", p))
                .collect::<Vec<_>>(),
        ),
    )
    .expect("committed on DR")
    .into_iter()
    .map(|(tp, o)| (tp.partition, o.expect("a translated offset")))
    .collect();

    // On DR: the application joins the same group there, reads what it had not read on the
    // primary (as primary.orders) from the translated offsets, then new records on DR's orders.
    write(&dr, TOPIC, "d", 0, 7);
    let on_dr = consume(
        &dr,
        &["primary.orders", TOPIC],
        &[ends("primary.orders", 15), ends(TOPIC, 7)].concat(),
    );
    let first_on_dr: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| {
            let first = on_dr
                .iter()
                .filter(|r| r.topic == "primary.orders" && r.partition == p)
                .map(|r| r.offset)
                .min()
                .expect("read on primary.orders");
            (p, first)
        })
        .collect();
    reads.extend(on_dr);
    assert_every_record_read(&reads, "p", 15);
    assert_eq!(
        duplicates(&reads, "p"),
        predicted,
        "kdr predicted {predicted} records read again on DR; resumed at {first_on_dr:?}"
    );
    // The group resumed on DR exactly where kdr committed its translated offsets.
    assert_eq!(first_on_dr, translated);

    // Three records on DR the application has not read when the failback starts.
    write(&dr, TOPIC, "d", 7, 3);
    forward.stop();
    let mut back =
        ReplicatorConfig::new(Endpoint::new("dr", &dr), Endpoint::new("primary", &primary));
    back.topics = vec![TOPIC.to_owned()];
    back.groups = vec![GROUP.to_owned()];
    let reverse = Replicator::start(back).expect("dr -> primary");
    wait_checkpointed(&reverse, 30, "dr.orders", 7);
    let run = switch(dir.path(), "failback", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let failback_log = logs(dir.path())
        .into_iter()
        .find(|l| l.display().to_string().contains("failback"))
        .expect("failback log");
    let predicted_back = predicted_rereads(&failback_log);
    let predicted_home = predicted_rereads_on(&failback_log, TOPIC);
    assert_eq!(
        predicted_back,
        predicted_rereads_on(&failback_log, "dr.orders") + predicted_home
    );
    // Reverse checkpointing: the group's commits on DR's primary.orders (15) went home
    // through the forward flow's offset syncs, each within the distance of its sync.
    let mapped = reverse_translations(&failback_log);
    assert_eq!(mapped.len(), 1, "{mapped:?}");
    let mut bound = 0;
    for p in &mapped[0].partitions {
        assert_eq!(
            (p.replica_topic.as_str(), p.topic.as_str(), p.dr_committed),
            ("primary.orders", TOPIC, 15),
            "{p:?}"
        );
        assert_eq!(p.position_from, PositionFrom::ForwardSyncs, "{p:?}");
        let sync = p.sync.expect("a sync at or below the commit");
        assert!(sync.downstream <= 15, "{p:?}");
        assert_eq!(p.action, "commit", "{p:?}");
        assert!(
            p.target_offset > Some(10),
            "moved past its old commit: {p:?}"
        );
        bound += p.reread_bound.expect("a bound");
    }
    assert_eq!(predicted_home, bound, "past the sync, offsets ran in step");
    reverse.stop();

    // Home again: new records on the primary; the application reads DR's records (as
    // dr.orders) from the translated offsets and the primary's orders from its commit there.
    write(&primary, TOPIC, "q", 0, 4);
    let home = consume(
        &primary,
        &[TOPIC, "dr.orders"],
        &[ends(TOPIC, 19), ends("dr.orders", 10)].concat(),
    );
    reads.extend(home);
    assert_every_record_read(&reads, "d", 10);
    assert_every_record_read(&reads, "q", 4);
    assert_eq!(
        duplicates(&reads, "d"),
        predicted_back - predicted_home,
        "DR's records read again at home"
    );
    assert_eq!(duplicates(&reads, "q"), 0);
    // What the group read on DR from primary.orders (offsets 10..15) MM2 never checkpoints
    // home (it checkpoints a topic only in the direction it is replicated): without reverse
    // checkpointing the group would read all of it again on the primary's orders from its
    // old commit there (10), 5 a partition. kdr mapped it home: it reads again at most the
    // distance to each partition's sync, exactly what kdr said.
    let home = duplicates(&reads, "p") - predicted;
    assert_eq!(
        home, predicted_home,
        "the primary's records read again at home"
    );
    assert!(home < 5 * i64::from(PARTITIONS), "{home}");

    eprintln!(
        "read again: {predicted} on DR (resumed at {first_on_dr:?}), {} of DR's at home, {home} of the primary's at home (15 without reverse checkpointing)",
        predicted_back - predicted_home
    );
    // Write authority is back home.
    block_on(async {
        let view = kdr::authority::read(&pair.primary.cluster(ClusterRole::Primary), "drill").await;
        let record = view.record().expect("authority on the primary");
        assert_eq!(
            (record.owner.to_string(), record.epoch),
            ("primary".to_owned(), 2)
        );
    });
}
