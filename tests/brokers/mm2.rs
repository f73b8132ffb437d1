//! An MM2 deployment between the two Nisshi brokers: the topics of `WorldSpec::layout`, records
//! on the primary, a consumer group's commits there, and kdr's MM2-compatible replicator
//! `primary -> dr` running until the value is dropped.

use std::time::Duration;

use kdr::kafka::{Cluster, ClusterRole, TopicCreation, TopicPartition};
use kdr::mm2::Checkpoint;
use kdr::rehearsal::{
    Endpoint, Replicator, ReplicatorConfig, ReplicatorStats, Role, TopicSpec, WorldSpec,
};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::harness::{Pair, Storage, block_on, wait_until};

pub const TOPIC: &str = "orders";
pub const REMOTE_TOPIC: &str = "primary.orders";
pub const PARTITIONS: i32 = 3;
pub const RECORDS_PER_PARTITION: i64 = 10;
pub const GROUP: &str = "order-processor";
/// The group's commits on the primary: the end of partitions 0 and 2, the middle of 1.
pub const COMMITS: [(i32, i64); 3] = [(0, 10), (1, 4), (2, 10)];

/// The topics, aliases and policy the tests use: the embedded world's, with one topic.
pub fn spec() -> WorldSpec {
    WorldSpec {
        topics: vec![TopicSpec::new(TOPIC, PARTITIONS)],
        groups: vec![GROUP.to_owned()],
        ..WorldSpec::default()
    }
}

/// Creates every topic of a two-way MM2 deployment (`WorldSpec::layout`: originals and
/// `heartbeats` on both, remote topics, `primary.heartbeats` and the checkpoints topic on DR,
/// the offset-syncs topic on the primary, and the mirror images for `dr -> primary`) with
/// kdr's own admin call, as an operator's cluster would have them.
pub fn create_layout(pair: &Pair) {
    create_layout_of(pair, &spec());
}

/// [`create_layout`] for the topics and groups of `spec`.
pub fn create_layout_of(pair: &Pair, spec: &WorldSpec) {
    let clusters = [
        pair.primary.cluster(ClusterRole::Primary),
        pair.dr.cluster(ClusterRole::Dr),
    ];
    block_on(async {
        for placement in spec.layout() {
            let cluster = match placement.cluster {
                Role::Primary => &clusters[0],
                Role::Dr => &clusters[1],
            };
            let created = cluster
                .create_topic(&placement.name, placement.partitions, 1, &[])
                .await
                .unwrap_or_else(|e| {
                    panic!("create {} on {}: {e}", placement.name, placement.cluster)
                });
            assert_eq!(created, TopicCreation::Created, "{}", placement.name);
        }
    });
}

/// Writes `count` records to one partition and returns their offsets, each acknowledged.
pub fn produce(bootstrap: &str, topic: &str, partition: i32, count: i64) -> Vec<i64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .set("log_level", "0")
        .create()
        .expect("producer");
    block_on(async {
        let mut offsets = Vec::new();
        for i in 0..count {
            let key = format!("k{partition}-{i}");
            let value = format!("v{partition}-{i}");
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&value);
            let delivery = producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition}: {e}"));
            offsets.push(delivery.offset);
        }
        offsets
    })
}

/// Writes `drill.yaml` into `dir`: the two clusters at `primary` and `dr`, the `orders` topic
/// and the group, and the given steps (YAML list items, each line indented by two spaces).
pub fn write_plan(dir: &std::path::Path, primary: &str, dr: &str, failover: &str, failback: &str) {
    let text = format!(
        "version: 1\nname: drill\nclusters:\n  primary: {{ bootstrap_servers: \"{primary}\" }}\n  dr: {{ bootstrap_servers: \"{dr}\" }}\nreplication: {{ topics: [{TOPIC}], groups: [{GROUP}] }}\nfailover:\n{failover}failback:\n{failback}"
    );
    std::fs::write(dir.join("drill.yaml"), text).expect("plan");
}

/// The replicator's configuration for `primary -> dr` between the two brokers.
pub fn replicator_config(pair: &Pair) -> ReplicatorConfig {
    let mut config = ReplicatorConfig::new(
        Endpoint::new("primary", pair.primary.bootstrap()),
        Endpoint::new("dr", pair.dr.bootstrap()),
    );
    config.topics = vec![TOPIC.to_owned()];
    config.groups = vec![GROUP.to_owned()];
    config
}

/// The checkpoint the replicator last wrote for the group on a partition of the remote topic.
pub fn checkpoint(stats: &ReplicatorStats, partition: i32) -> Option<&Checkpoint> {
    stats
        .last_checkpoints
        .get(&(GROUP.to_owned(), REMOTE_TOPIC.to_owned(), partition))
}

/// Two brokers with the MM2 layout, records and group commits on the primary, and the
/// replicator running until dropped.
pub struct Mm2 {
    pub replicator: Option<Replicator>,
    // Declared last: dropped after the replicator, whose clients talk to the brokers.
    pub pair: Pair,
}

impl Mm2 {
    /// Everything set up and replicated: every record copied and a checkpoint per partition,
    /// those of the partitions committed at their end translated to the end (bounded).
    pub fn start() -> Mm2 {
        Mm2::start_with(Storage::Memory)
    }

    /// As [`Mm2::start`], with both brokers on the given storage (sqlite to restart one).
    pub fn start_with(storage: Storage) -> Mm2 {
        let pair = Pair::start_with(storage);
        create_layout(&pair);
        for partition in 0..PARTITIONS {
            let offsets = produce(
                &pair.primary.bootstrap(),
                TOPIC,
                partition,
                RECORDS_PER_PARTITION,
            );
            assert_eq!(offsets, (0..RECORDS_PER_PARTITION).collect::<Vec<_>>());
        }
        let commits: Vec<(TopicPartition, i64)> = COMMITS
            .iter()
            .map(|&(p, o)| (TopicPartition::new(TOPIC, p), o))
            .collect();
        block_on(
            pair.primary
                .cluster(ClusterRole::Primary)
                .commit_offsets(GROUP, &commits),
        )
        .expect("commit on the primary");
        let replicator = Replicator::start(replicator_config(&pair)).expect("replicator");
        let total = u64::try_from(i64::from(PARTITIONS) * RECORDS_PER_PARTITION).expect("count");
        wait_until(
            Duration::from_secs(30),
            "every record copied and every partition checkpointed",
            || {
                let stats = replicator.stats();
                stats.copied_from(&[TOPIC.to_owned()]) >= total
                    && COMMITS.iter().all(|&(p, upstream)| {
                        checkpoint(&stats, p).is_some_and(|c| {
                            c.upstream_offset == upstream
                                && (upstream != RECORDS_PER_PARTITION
                                    || c.downstream_offset == RECORDS_PER_PARTITION)
                        })
                    })
            },
        );
        Mm2 {
            replicator: Some(replicator),
            pair,
        }
    }

    pub fn stats(&self) -> ReplicatorStats {
        self.replicator.as_ref().expect("replicator").stats()
    }

    /// Stops replicating (the replicator's clients leave both brokers alone from here on).
    pub fn stop_replicator(&mut self) {
        if let Some(replicator) = self.replicator.take() {
            replicator.stop();
        }
    }

    /// The offsets a failover commits on DR for the group: the checkpoints' translations, as
    /// the replicator last wrote them.
    pub fn translated(&self) -> Vec<(TopicPartition, Option<i64>)> {
        let stats = self.stats();
        COMMITS
            .iter()
            .map(|&(p, _)| {
                let c = checkpoint(&stats, p).expect("checkpoint");
                (
                    TopicPartition::new(REMOTE_TOPIC, p),
                    Some(c.downstream_offset),
                )
            })
            .collect()
    }

    /// The group's committed offsets on DR's remote topic.
    pub fn committed_on_dr(&self) -> Vec<(TopicPartition, Option<i64>)> {
        let partitions: Vec<TopicPartition> = COMMITS
            .iter()
            .map(|&(p, _)| TopicPartition::new(REMOTE_TOPIC, p))
            .collect();
        block_on(self.dr().committed_offsets(GROUP, &partitions)).expect("committed on dr")
    }

    pub fn dr(&self) -> Cluster {
        self.pair.dr.cluster(ClusterRole::Dr)
    }
}

impl Drop for Mm2 {
    fn drop(&mut self) {
        if let Some(replicator) = self.replicator.take() {
            replicator.stop();
        }
    }
}
