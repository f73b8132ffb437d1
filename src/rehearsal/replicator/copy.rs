//! The copy loop: `MirrorSourceTask` plus its `OffsetSyncWriter`.
//!
//! Records are copied in batches: poll up to `max_batch` records, produce them all, wait
//! for every delivery report, and only then advance the source positions and feed the
//! acknowledged `(upstream, downstream)` pairs to [`OffsetSyncEmitter`] in source order.
//! A record the target did not acknowledge rewinds its partition to that record, so
//! nothing is skipped; at worst a record is copied twice, as with MM2 (at-least-once).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{PartitionStats, ReplicatorConfig, ReplicatorError, Shared, StartFrom};
use crate::mm2::{Emit, OffsetSync, OffsetSyncEmitter};
use crate::rehearsal::client::{
    self, CALL_TIMEOUT, DeliveryLog, assign_only_consumer, sleep_unless,
};

/// How often the set of source partitions is looked up again.
const METADATA_REFRESH: Duration = Duration::from_secs(2);
/// The first and the longest wait after an error.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

pub(super) fn new_producer(
    bootstrap_servers: &str,
    client_id: &str,
    delivery_timeout: Duration,
) -> Result<BaseProducer<DeliveryLog>, KafkaError> {
    client::base_config(bootstrap_servers, client_id)
        // Idempotence keeps each partition's copies in source order across retries.
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().max(1).to_string(),
        )
        .create_with_context(DeliveryLog::default())
}

/// One source partition being copied.
struct Assigned {
    remote_topic: String,
    /// The next source offset to copy; `None` until known (start from the beginning).
    next: Option<i64>,
}

pub(super) struct CopyTask {
    config: ReplicatorConfig,
    shared: Arc<Shared>,
    consumer: BaseConsumer,
    producer: BaseProducer<DeliveryLog>,
    syncs_producer: BaseProducer<DeliveryLog>,
    syncs_topic: String,
    emitter: OffsetSyncEmitter,
    assigned: BTreeMap<(String, i32), Assigned>,
    topics: Vec<String>,
}

impl CopyTask {
    pub(super) fn new(
        config: ReplicatorConfig,
        shared: Arc<Shared>,
    ) -> Result<Self, ReplicatorError> {
        let flow = format!("kdr-mm2-{}-{}", config.source.alias, config.target.alias);
        let consumer = assign_only_consumer(&config.source.bootstrap_servers, &flow, &flow)
            .map_err(|source| ReplicatorError::Client {
                what: "source consumer",
                source,
            })?;
        let producer = new_producer(
            &config.target.bootstrap_servers,
            &flow,
            config.delivery_timeout,
        )
        .map_err(|source| ReplicatorError::Client {
            what: "target producer",
            source,
        })?;
        let (syncs_topic, syncs_endpoint) = config.offset_syncs();
        let syncs_producer = new_producer(
            &syncs_endpoint.bootstrap_servers,
            &format!("{flow}-offset-syncs"),
            config.delivery_timeout,
        )
        .map_err(|source| ReplicatorError::Client {
            what: "offset-syncs producer",
            source,
        })?;
        let mut topics = config.topics.clone();
        if config.replicate_heartbeats {
            topics.push(config.policy.heartbeats_topic().to_owned());
        }
        Ok(Self {
            emitter: OffsetSyncEmitter::new(config.offset_lag_max),
            config,
            shared,
            consumer,
            producer,
            syncs_producer,
            syncs_topic,
            assigned: BTreeMap::new(),
            topics,
        })
    }

    pub(super) fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut next_refresh = Instant::now();
        let mut next_flush = Instant::now() + self.config.offset_flush_interval;
        while !self.shared.stopping() {
            self.shared.stats().copy_rounds += 1;
            self.serve_syncs();
            if Instant::now() >= next_flush {
                // MM2's task commit: delayed syncs become pending and are sent.
                self.emitter.take_delayed();
                self.fire_syncs();
                next_flush = Instant::now() + self.config.offset_flush_interval;
            }
            if self.shared.copy_paused() {
                self.shared.stats().copy_paused = true;
                sleep_unless(Duration::from_millis(20), || self.shared.stopping());
                continue;
            }
            self.shared.stats().copy_paused = false;
            if Instant::now() >= next_refresh || self.assigned.is_empty() {
                if let Err(error) = self.refresh_assignment() {
                    self.shared.error("look up source partitions", error);
                    self.backoff(&mut backoff);
                    continue;
                }
                next_refresh = Instant::now() + METADATA_REFRESH;
                if self.assigned.is_empty() {
                    self.backoff(&mut backoff);
                    continue;
                }
            }
            match self.poll_batch() {
                Err(error) => {
                    self.shared.error("consume from the source", error);
                    self.backoff(&mut backoff);
                }
                Ok(batch) if batch.is_empty() => {}
                Ok(batch) => {
                    if self.copy_batch(&batch) {
                        backoff = BACKOFF_MIN;
                    } else {
                        self.backoff(&mut backoff);
                    }
                }
            }
        }
    }

    fn backoff(&self, backoff: &mut Duration) {
        sleep_unless(*backoff, || self.shared.stopping());
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
    }

    /// Looks up the source partitions and assigns any new ones.
    fn refresh_assignment(&mut self) -> Result<(), KafkaError> {
        let counts = client::partition_counts(&self.consumer, &self.topics, CALL_TIMEOUT)?;
        let mut added = false;
        for (topic, count) in counts {
            for partition in 0..count {
                let key = (topic.clone(), partition);
                if self.assigned.contains_key(&key) {
                    continue;
                }
                let next = match &self.config.start_from {
                    StartFrom::Earliest => None,
                    StartFrom::Offsets(offsets) => offsets.get(&key).copied(),
                    StartFrom::Latest => {
                        let (_, high) =
                            self.consumer
                                .fetch_watermarks(&topic, partition, CALL_TIMEOUT)?;
                        Some(high)
                    }
                };
                let remote_topic = self.config.remote_topic(&topic);
                self.shared.stats().partitions.insert(
                    key.clone(),
                    PartitionStats {
                        remote_topic: remote_topic.clone(),
                        records_copied: 0,
                        next_upstream_offset: next,
                        last_upstream_offset: None,
                        last_downstream_offset: None,
                    },
                );
                self.assigned.insert(key, Assigned { remote_topic, next });
                added = true;
            }
        }
        if added {
            self.assign()?;
        }
        Ok(())
    }

    /// (Re)assigns every partition at its next offset: used for new partitions and to
    /// rewind after a failed delivery.
    fn assign(&self) -> Result<(), KafkaError> {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), assigned) in &self.assigned {
            let offset = assigned.next.map_or(Offset::Beginning, Offset::Offset);
            list.add_partition_offset(topic, *partition, offset)?;
        }
        self.consumer.assign(&list)
    }

    /// Up to `max_batch` records: waits briefly for the first, then takes what is
    /// already fetched. Error events are drained along the way (a cluster that was down
    /// leaves many queued; taking one per backoff would delay recovery by seconds); the
    /// last one is returned when no record came with them.
    fn poll_batch(&self) -> Result<Vec<OwnedMessage>, KafkaError> {
        let mut batch = Vec::new();
        let mut last_error = None;
        let mut wait = Duration::from_millis(50);
        while batch.len() < self.config.max_batch {
            match self.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    let key = (message.topic().to_owned(), message.partition());
                    // Drop records from before a rewind that were already fetched.
                    let expected = self.assigned.get(&key).and_then(|a| a.next);
                    if expected.is_none_or(|next| message.offset() >= next) {
                        batch.push(message.detach());
                    }
                }
                Some(Err(error)) => last_error = Some(error),
            }
            wait = Duration::ZERO;
        }
        match last_error {
            Some(error) if batch.is_empty() => Err(error),
            Some(error) => {
                self.shared.error("consume from the source", error);
                Ok(batch)
            }
            None => Ok(batch),
        }
    }

    /// Copies one batch; `false` when something was not acknowledged (the affected
    /// partitions are rewound and copied again later).
    fn copy_batch(&mut self, batch: &[OwnedMessage]) -> bool {
        let mut outcomes: Vec<Option<Result<(i32, i64), KafkaError>>> = vec![None; batch.len()];
        for (index, message) in batch.iter().enumerate() {
            if let Err(error) = self.send_copy(index, message) {
                outcomes[index] = Some(Err(error));
            }
            if self.shared.stopping() {
                return false;
            }
        }
        // Every record sent is reported once; wait for all of them, bounded by the
        // delivery timeout librdkafka enforces plus a margin.
        let deadline = Instant::now() + self.config.delivery_timeout + Duration::from_secs(5);
        let mut waiting = outcomes.iter().filter(|o| o.is_none()).count();
        while waiting > 0 {
            self.producer.poll(Duration::from_millis(20));
            for (index, outcome) in self.producer.context().drain() {
                if let Some(slot) = outcomes.get_mut(index)
                    && slot.is_none()
                {
                    *slot = Some(outcome);
                    waiting -= 1;
                }
            }
            if self.shared.stopping() {
                return false;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        self.account(batch, outcomes)
    }

    fn send_copy(&self, index: usize, message: &OwnedMessage) -> Result<(), KafkaError> {
        let key = (message.topic().to_owned(), message.partition());
        let remote_topic = self.assigned.get(&key).map_or_else(
            || self.config.remote_topic(message.topic()),
            |a| a.remote_topic.clone(),
        );
        let mut record =
            BaseRecord::with_opaque_to(&remote_topic, index).partition(message.partition());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        if let Some(timestamp) = message.timestamp().to_millis() {
            record = record.timestamp(timestamp);
        }
        if let Some(headers) = message.headers() {
            let mut copied = OwnedHeaders::new_with_capacity(headers.count());
            for header in headers.iter() {
                copied = copied.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
            record = record.headers(copied);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    self.producer.poll(Duration::from_millis(10));
                    if self.shared.stopping() {
                        return Err(KafkaError::Canceled);
                    }
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Applies the delivery outcomes in source order: acknowledged records advance their
    /// partition and go through the emitter; the first unacknowledged record of a
    /// partition rewinds it, and nothing after it counts.
    fn account(
        &mut self,
        batch: &[OwnedMessage],
        outcomes: Vec<Option<Result<(i32, i64), KafkaError>>>,
    ) -> bool {
        let mut failed: HashMap<(String, i32), i64> = HashMap::new();
        let mut first_error = None;
        let mut acknowledged = Vec::with_capacity(batch.len());
        for (message, outcome) in batch.iter().zip(outcomes) {
            let key = (message.topic().to_owned(), message.partition());
            if failed.contains_key(&key) {
                continue;
            }
            let upstream = message.offset();
            match outcome {
                Some(Ok((_, downstream))) => {
                    // `commitRecord`: queue the sync, and send pending syncs right away
                    // while permits are free, as MM2 does after every record.
                    let emit = self
                        .emitter
                        .on_replicated(&key.0, key.1, upstream, downstream);
                    if matches!(emit, Emit::Immediate(_)) {
                        self.serve_syncs();
                    }
                    if let Some(assigned) = self.assigned.get_mut(&key) {
                        assigned.next = Some(upstream + 1);
                    }
                    acknowledged.push((key, upstream, downstream));
                }
                Some(Err(error)) => {
                    first_error.get_or_insert(error);
                    failed.insert(key, upstream);
                }
                None => {
                    first_error.get_or_insert(KafkaError::MessageProduction(
                        RDKafkaErrorCode::MessageTimedOut,
                    ));
                    failed.insert(key, upstream);
                }
            }
        }
        {
            let mut stats = self.shared.stats();
            stats.records_copied += acknowledged.len() as u64;
            for (key, upstream, downstream) in acknowledged {
                if let Some(partition) = stats.partitions.get_mut(&key) {
                    partition.records_copied += 1;
                    partition.next_upstream_offset = Some(upstream + 1);
                    partition.last_upstream_offset = Some(upstream);
                    partition.last_downstream_offset = Some(downstream);
                }
            }
        }
        self.fire_syncs();
        if failed.is_empty() {
            return true;
        }
        if let Some(error) = first_error {
            self.shared.error("copy to the target", error);
        }
        for (key, upstream) in failed {
            if let Some(assigned) = self.assigned.get_mut(&key) {
                assigned.next = Some(upstream);
            }
        }
        if let Err(error) = self.assign() {
            self.shared.error("rewind the source consumer", error);
        }
        if self.producer.client().fatal_error().is_some() {
            // An idempotent producer can fence itself after long outages; start afresh.
            let flow = format!(
                "kdr-mm2-{}-{}",
                self.config.source.alias, self.config.target.alias
            );
            match new_producer(
                &self.config.target.bootstrap_servers,
                &flow,
                self.config.delivery_timeout,
            ) {
                Ok(fresh) => self.producer = fresh,
                Err(error) => self.shared.error("recreate the target producer", error),
            }
        }
        false
    }

    /// Sends pending syncs while in-flight permits are free (`firePendingOffsetSyncs`).
    fn fire_syncs(&mut self) {
        for sync in self.emitter.fire_pending() {
            if let Err(error) = self.send_sync(&sync) {
                self.emitter.sync_completed();
                self.shared.error("write an offset sync", error);
                self.shared.stats().offset_syncs_failed += 1;
            }
        }
        self.update_outstanding();
    }

    fn send_sync(&self, sync: &OffsetSync) -> Result<(), KafkaError> {
        let key = sync
            .encode_key()
            .map_err(|_| KafkaError::MessageProduction(RDKafkaErrorCode::InvalidMessage))?;
        let value = sync.encode_value();
        let record = BaseRecord::with_opaque_to(&self.syncs_topic, 0)
            .partition(0)
            .key(&key)
            .payload(&value);
        self.syncs_producer.send(record).map_err(|(error, _)| error)
    }

    /// Collects sync acknowledgements: each frees a permit, then more pending syncs go.
    fn serve_syncs(&mut self) {
        self.syncs_producer.poll(Duration::ZERO);
        let reports = self.syncs_producer.context().drain();
        if reports.is_empty() {
            self.fire_syncs();
            return;
        }
        let (mut written, mut failed) = (0, 0);
        for (_, outcome) in reports {
            self.emitter.sync_completed();
            if outcome.is_ok() {
                written += 1;
            } else {
                failed += 1;
            }
        }
        {
            let mut stats = self.shared.stats();
            stats.offset_syncs_written += written;
            stats.offset_syncs_failed += failed;
        }
        self.fire_syncs();
    }

    fn update_outstanding(&self) {
        let outstanding =
            self.emitter.delayed().len() + self.emitter.pending().len() + self.emitter.in_flight();
        self.shared.stats().offset_syncs_outstanding = outstanding;
    }
}
