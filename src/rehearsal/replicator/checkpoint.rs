//! The checkpoint loop: `MirrorCheckpointTask` with its `OffsetSyncStore` and
//! `CheckpointStore` (SPEC §4).
//!
//! Like MM2, the offset syncs are read back from Kafka rather than taken from the copy
//! loop's memory, so checkpoints depend only on what is durably in the offset-syncs
//! topic, and the initial read-to-end gate applies. At start the existing checkpoints
//! topic is loaded for the monotonicity filter; if that fails, the store is started with
//! `initializationMustReadToEnd = true`, as MM2 does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{ReplicatorConfig, ReplicatorError, Shared};
use crate::mm2::{Checkpoint, CheckpointIndex, OffsetSync, OffsetSyncStore, RawRecord};
use crate::rehearsal::client::{
    self, CALL_TIMEOUT, DeliveryLog, assign_only_consumer, now_ms, sleep_unless,
};

/// How long the checkpoints topic may take to load at start before MM2's fallback
/// (`initializationMustReadToEnd = true`) is used.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the source partitions are looked up again.
const METADATA_REFRESH: Duration = Duration::from_secs(2);

type CheckpointKey = (String, String, i32);

/// MM2's `checkpointIsMoreRecent`: emit when there is no previous checkpoint, when the
/// group was rewound upstream, or when the downstream offset moved forward.
pub(crate) fn checkpoint_is_more_recent(previous: Option<&Checkpoint>, new: &Checkpoint) -> bool {
    previous.is_none_or(|last| {
        new.upstream_offset < last.upstream_offset || new.downstream_offset > last.downstream_offset
    })
}

pub(super) struct CheckpointTask {
    config: ReplicatorConfig,
    shared: Arc<Shared>,
    syncs_topic: String,
    syncs_consumer: BaseConsumer,
    groups: Vec<(String, BaseConsumer)>,
    producer: BaseProducer<DeliveryLog>,
}

/// The store with the bookkeeping of its initial read.
struct SyncsState {
    store: OffsetSyncStore,
    /// The end offset captured at start, once it could be read.
    initial_end: Option<i64>,
    next: i64,
}

impl CheckpointTask {
    pub(super) fn new(
        config: ReplicatorConfig,
        shared: Arc<Shared>,
    ) -> Result<Self, ReplicatorError> {
        let flow = format!("kdr-mm2-{}-{}", config.source.alias, config.target.alias);
        let (syncs_topic, syncs_endpoint) = config.offset_syncs();
        let syncs_consumer = assign_only_consumer(
            &syncs_endpoint.bootstrap_servers,
            &format!("{flow}-offset-syncs-reader"),
            &flow,
        )
        .map_err(|source| ReplicatorError::Client {
            what: "offset-syncs consumer",
            source,
        })?;
        let mut groups = Vec::new();
        for group in &config.groups {
            let consumer = assign_only_consumer(
                &config.source.bootstrap_servers,
                &format!("{flow}-offsets"),
                group,
            )
            .map_err(|source| ReplicatorError::Client {
                what: "group offsets",
                source,
            })?;
            groups.push((group.clone(), consumer));
        }
        let producer = super::copy::new_producer(
            &config.target.bootstrap_servers,
            &format!("{flow}-checkpoints"),
            config.delivery_timeout,
        )
        .map_err(|source| ReplicatorError::Client {
            what: "checkpoints producer",
            source,
        })?;
        Ok(Self {
            config,
            shared,
            syncs_topic,
            syncs_consumer,
            groups,
            producer,
        })
    }

    pub(super) fn run(self) {
        let (mut last, loaded) = self.load_checkpoints();
        let mut syncs = SyncsState {
            store: OffsetSyncStore::new(!loaded),
            initial_end: None,
            next: 0,
        };
        let mut list = TopicPartitionList::new();
        if list
            .add_partition_offset(&self.syncs_topic, 0, Offset::Beginning)
            .and_then(|()| self.syncs_consumer.assign(&list))
            .is_err()
        {
            self.shared
                .error("read offset syncs", "cannot assign the offset-syncs topic");
        }
        let mut partitions: Vec<(String, i32)> = Vec::new();
        let mut next_refresh = Instant::now();
        let mut next_round = Instant::now();
        while !self.shared.stopping() {
            self.read_syncs(&mut syncs);
            if self.shared.all_paused() || Instant::now() < next_round {
                continue;
            }
            if !syncs.store.is_initial_read_complete() {
                next_round = Instant::now() + Duration::from_millis(100);
                continue;
            }
            if Instant::now() >= next_refresh || partitions.is_empty() {
                match self.source_partitions() {
                    Ok(found) => {
                        partitions = found;
                        next_refresh = Instant::now() + METADATA_REFRESH;
                    }
                    Err(error) => {
                        self.shared.error("look up source partitions", error);
                        next_round = Instant::now() + Duration::from_millis(500);
                        continue;
                    }
                }
            }
            self.emit_round(&syncs.store, &partitions, &mut last);
            next_round = Instant::now() + self.config.checkpoint_interval;
        }
    }

    /// Reads the existing checkpoints on T (the CheckpointStore), keeping the last one
    /// per key for this flow's groups. `false` when the topic could not be read.
    fn load_checkpoints(&self) -> (BTreeMap<CheckpointKey, Checkpoint>, bool) {
        let topic = self.config.checkpoints_topic();
        let records = match client::read_partition(
            &self.config.target.bootstrap_servers,
            &topic,
            0,
            LOAD_TIMEOUT,
        ) {
            Ok(records) => records,
            Err(error) => {
                self.shared.error("load the checkpoints topic", error);
                return (BTreeMap::new(), false);
            }
        };
        let index = CheckpointIndex::from_records(records.iter().map(|r| RawRecord {
            offset: r.offset,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            timestamp_ms: r.timestamp_ms.unwrap_or(0),
        }));
        let mut last = BTreeMap::new();
        for group in &self.config.groups {
            for (checkpoint, _) in index.for_group(group) {
                last.insert(
                    (
                        checkpoint.group.clone(),
                        checkpoint.topic.clone(),
                        checkpoint.partition,
                    ),
                    checkpoint.clone(),
                );
            }
        }
        (last, true)
    }

    /// Feeds newly written syncs to the store and completes the initial read once the end
    /// captured at start is reached. Waits up to 20 ms for the first record.
    fn read_syncs(&self, syncs: &mut SyncsState) {
        if syncs.initial_end.is_none() {
            match self
                .syncs_consumer
                .fetch_watermarks(&self.syncs_topic, 0, CALL_TIMEOUT)
            {
                Ok((_, high)) => syncs.initial_end = Some(high),
                Err(error) => {
                    self.shared.error("read the offset-syncs end offset", error);
                    sleep_unless(Duration::from_millis(200), || self.shared.stopping());
                    return;
                }
            }
        }
        let mut wait = Duration::from_millis(20);
        let mut errors = 0;
        for _ in 0..10_000 {
            match self.syncs_consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    syncs.next = message.offset() + 1;
                    // Tombstones and malformed records are skipped, as MM2 logs and skips
                    // records that fail to deserialize.
                    if let Ok(sync) = OffsetSync::decode(message.key(), message.payload()) {
                        syncs.store.sync(&sync);
                    }
                }
                // Keep draining: a cluster that was down leaves many error events queued.
                Some(Err(error)) => {
                    self.shared.error("read offset syncs", error);
                    errors += 1;
                }
            }
            wait = Duration::ZERO;
        }
        if errors > 0 {
            sleep_unless(Duration::from_millis(100), || self.shared.stopping());
        }
        if !syncs.store.is_initial_read_complete() {
            // The position counts too (KafkaBasedLog's read-to-end): compaction can leave
            // the last offsets without a record.
            let position = client::position(&self.syncs_consumer, &self.syncs_topic, 0);
            syncs.next = syncs.next.max(position.unwrap_or(0));
        }
        if !syncs.store.is_initial_read_complete()
            && syncs.initial_end.is_some_and(|end| syncs.next >= end)
        {
            syncs.store.finish_initial_read();
            self.shared.stats().offset_syncs_loaded = true;
        }
    }

    fn source_partitions(&self) -> Result<Vec<(String, i32)>, KafkaError> {
        let Some((_, consumer)) = self.groups.first() else {
            return Ok(Vec::new());
        };
        let counts = client::partition_counts(consumer, &self.config.topics, CALL_TIMEOUT)?;
        Ok(counts
            .into_iter()
            .flat_map(|(topic, count)| (0..count).map(move |p| (topic.clone(), p)))
            .collect())
    }

    /// One `emit.checkpoints.interval`: every group's committed offsets on S, translated,
    /// renamed, filtered, written to T.
    fn emit_round(
        &self,
        store: &OffsetSyncStore,
        partitions: &[(String, i32)],
        last: &mut BTreeMap<CheckpointKey, Checkpoint>,
    ) {
        if partitions.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition(topic, *partition);
        }
        let mut fresh = Vec::new();
        for (group, consumer) in &self.groups {
            let committed = match consumer.committed_offsets(list.clone(), CALL_TIMEOUT) {
                Ok(committed) => committed,
                Err(error) => {
                    self.shared
                        .error(&format!("fetch the offsets of group {group}"), error);
                    continue;
                }
            };
            for elem in committed.elements() {
                let Some(upstream) = client::committed_offset(&elem) else {
                    continue;
                };
                let Some(downstream) =
                    store.translate_downstream(elem.topic(), elem.partition(), upstream)
                else {
                    continue;
                };
                if downstream < 0 {
                    continue;
                }
                let checkpoint = Checkpoint {
                    group: group.clone(),
                    topic: self.config.checkpoint_topic_name(elem.topic()),
                    partition: elem.partition(),
                    upstream_offset: upstream,
                    downstream_offset: downstream,
                    metadata: elem.metadata().to_owned(),
                };
                let key = (
                    group.clone(),
                    checkpoint.topic.clone(),
                    checkpoint.partition,
                );
                if checkpoint_is_more_recent(last.get(&key), &checkpoint) {
                    fresh.push(checkpoint);
                }
            }
        }
        self.write(fresh, last);
    }

    /// Writes checkpoints to partition 0 of `<S>.checkpoints.internal` on T and waits
    /// for the acknowledgements; only acknowledged ones update the filter's memory, so a
    /// failed write is retried next round.
    fn write(&self, checkpoints: Vec<Checkpoint>, last: &mut BTreeMap<CheckpointKey, Checkpoint>) {
        if checkpoints.is_empty() {
            return;
        }
        // Reports of an earlier round cannot be left over (every report arrives within
        // the delivery timeout waited for below), but never let one be misattributed.
        self.producer.context().drain();
        let topic = self.config.checkpoints_topic();
        let now = now_ms();
        let mut sent = 0;
        for (index, checkpoint) in checkpoints.iter().enumerate() {
            let (Ok(key), Ok(value)) = (checkpoint.encode_key(), checkpoint.encode_value()) else {
                self.shared.error("encode a checkpoint", "string too long");
                continue;
            };
            let record = BaseRecord::with_opaque_to(&topic, index)
                .partition(0)
                .key(&key)
                .payload(&value)
                .timestamp(now);
            match self.producer.send(record) {
                Ok(()) => sent += 1,
                Err((error, _)) => self.shared.error("write a checkpoint", error),
            }
        }
        let deadline = Instant::now() + self.config.delivery_timeout + Duration::from_secs(1);
        let mut reports = Vec::new();
        while reports.len() < sent && Instant::now() < deadline && !self.shared.stopping() {
            self.producer.poll(Duration::from_millis(20));
            reports.extend(self.producer.context().drain());
        }
        let mut stats = self.shared.stats();
        for (index, outcome) in reports {
            let Some(checkpoint) = checkpoints.get(index) else {
                continue;
            };
            match outcome {
                Ok(_) => {
                    let key = (
                        checkpoint.group.clone(),
                        checkpoint.topic.clone(),
                        checkpoint.partition,
                    );
                    last.insert(key.clone(), checkpoint.clone());
                    stats.checkpoints_written += 1;
                    stats.last_checkpoints.insert(key, checkpoint.clone());
                }
                Err(error) => {
                    stats.errors += 1;
                    stats.last_error = Some(format!("write a checkpoint: {error}"));
                }
            }
        }
    }
}
