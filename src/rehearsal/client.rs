//! The rdkafka plumbing shared by the replicator and the workload: client settings tuned
//! for loopback brokers, a producer context that hands delivery reports back to the
//! thread that produced, and small bounded reads and commits.
//!
//! Everything here takes bootstrap strings, never a mock cluster, so the same code runs
//! against librdkafka's in-process mock and against separate broker processes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;
use rdkafka::topic_partition_list::TopicPartitionListElem;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

/// How long any single blocking librdkafka call may take before we give up on it and
/// look again at the stop flag.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings every rehearsal client shares.
///
/// The reconnect backoff is capped at one second so that a cluster brought back up is
/// noticed quickly; librdkafka's default cap (10 s) would make a drill wait for nothing.
pub(crate) fn base_config(bootstrap_servers: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", client_id)
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "1000")
        .set("socket.connection.setup.timeout.ms", "5000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("log_level", "0");
    config
}

/// A consumer that never joins a group: partitions are assigned by hand and offsets are
/// committed explicitly, so that the mock's sticky member state never gets in the way
/// (../shared/BROKERS.md, outside this repository) and a real broker sees an ordinary
/// "simple consumer" group.
pub(crate) fn assign_only_consumer(
    bootstrap_servers: &str,
    client_id: &str,
    group_id: &str,
) -> Result<BaseConsumer, KafkaError> {
    base_config(bootstrap_servers, client_id)
        .set("group.id", group_id)
        // These consumers never join their group, so the session timeout only bounds how long
        // librdkafka holds a commit for an unknown coordinator (a dead cluster), and a
        // consumer's close waits for that: 45 s by default.
        .set("session.timeout.ms", "3000")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20")
        .set("allow.auto.create.topics", "false")
        .create()
}

/// What one delivery report said: the opaque the record was sent with, and the
/// `(partition, offset)` the broker assigned, or the error.
pub(crate) type Delivery = (usize, Result<(i32, i64), KafkaError>);

/// A producer context that keeps delivery reports for the producing thread to drain,
/// in the order librdkafka reported them.
#[derive(Default)]
pub(crate) struct DeliveryLog {
    reports: Mutex<Vec<Delivery>>,
}

impl DeliveryLog {
    /// Takes every report received so far.
    pub(crate) fn drain(&self) -> Vec<Delivery> {
        match self.reports.lock() {
            Ok(mut reports) => std::mem::take(&mut *reports),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let outcome = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.clone()),
        };
        match self.reports.lock() {
            Ok(mut reports) => reports.push((opaque, outcome)),
            Err(poisoned) => poisoned.into_inner().push((opaque, outcome)),
        }
    }
}

/// A producer context that only counts: for records nobody waits for (heartbeats).
#[derive(Default)]
pub(crate) struct DeliveryCounter {
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The partition count of each of `topics` that exists, in the order given. Topics the
/// cluster does not know are left out; an unreachable cluster is an error.
pub(crate) fn partition_counts(
    consumer: &BaseConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<(String, i32)>, KafkaError> {
    let metadata = consumer.fetch_metadata(None, timeout)?;
    let mut found = Vec::new();
    for wanted in topics {
        if let Some(topic) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == wanted && t.error().is_none())
        {
            let count = i32::try_from(topic.partitions().len()).unwrap_or(i32::MAX);
            if count > 0 {
                found.push((wanted.clone(), count));
            }
        }
    }
    Ok(found)
}

/// The committed offset of a list element, if the group has one.
pub(crate) fn committed_offset(elem: &TopicPartitionListElem<'_>) -> Option<i64> {
    match elem.offset() {
        Offset::Offset(offset) if offset >= 0 => Some(offset),
        _ => None,
    }
}

/// Commits `offsets` for `group_id` on the cluster at `bootstrap_servers` without
/// joining the group, and waits until the broker has them.
///
/// librdkafka reports nothing back for an asynchronous manual commit, and a synchronous
/// one has no timeout of its own (it waits for the coordinator indefinitely), so the
/// commit is sent asynchronously and then read back with OffsetFetch until it shows,
/// bounded by `timeout`.
///
/// # Errors
/// The client could not be created, the commit could not be sent, or it did not show
/// within `timeout`.
pub fn commit_offsets(
    bootstrap_servers: &str,
    group_id: &str,
    offsets: &[(String, i32, i64)],
    timeout: Duration,
) -> Result<(), KafkaError> {
    let consumer = assign_only_consumer(bootstrap_servers, "kdr-rehearsal-commit", group_id)?;
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&list, CommitMode::Async)?;
    if wait_committed(&consumer, &list, timeout) {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(
            RDKafkaErrorCode::RequestTimedOut,
        ))
    }
}

/// Whether the group of `consumer` has exactly the offsets of `list` committed, read
/// back repeatedly until `timeout`.
pub(crate) fn wait_committed(
    consumer: &BaseConsumer,
    list: &TopicPartitionList,
    timeout: Duration,
) -> bool {
    let wanted = list.to_topic_map();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut query = TopicPartitionList::new();
        for (topic, partition) in wanted.keys() {
            query.add_partition(topic, *partition);
        }
        if let Ok(committed) = consumer.committed_offsets(query, left.min(CALL_TIMEOUT))
            && committed.to_topic_map() == wanted
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10).min(left));
    }
}

/// One record read back by [`read_partition`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Offset in the partition.
    pub offset: i64,
    /// Key bytes, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Value bytes, `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in order, `(name, value)`.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Record timestamp in epoch milliseconds, when the record has one.
    pub timestamp_ms: Option<i64>,
}

impl ReadRecord {
    /// The value of the first header called `name`.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }
}

/// Reads one partition from its low watermark to the high watermark captured at start.
///
/// # Errors
/// The cluster did not answer, or the end was not reached within `timeout`.
pub fn read_partition(
    bootstrap_servers: &str,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Vec<ReadRecord>, KafkaError> {
    use rdkafka::message::Headers;

    let deadline = Instant::now() + timeout;
    let consumer = assign_only_consumer(
        bootstrap_servers,
        "kdr-rehearsal-reader",
        "kdr-rehearsal-reader",
    )?;
    let (_, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
    let mut records = Vec::new();
    if high <= 0 {
        return Ok(records);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&list)?;
    let mut next = 0;
    while next < high {
        if Instant::now() >= deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        // Transport hiccups and empty polls are retried until the deadline. The
        // consumer's position also counts, as in Kafka's KafkaBasedLog: a compacted log
        // or a transaction marker can leave the last offsets without a record.
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) else {
            next = next.max(position(&consumer, topic, partition).unwrap_or(0));
            continue;
        };
        next = message.offset() + 1;
        records.push(ReadRecord {
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
            timestamp_ms: message.timestamp().to_millis(),
        });
    }
    Ok(records)
}

/// The consumer's fetch position in one assigned partition, once it has one.
pub(crate) fn position(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let positions = consumer.position().ok()?;
    let elem = positions.find_partition(topic, partition)?;
    match elem.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// Sleeps up to `duration` in short slices, returning early when `stop` says so. Keeps
/// every loop responsive to `stop()` without busy waiting.
pub(crate) fn sleep_unless(duration: Duration, stop: impl Fn() -> bool) {
    let deadline = Instant::now() + duration;
    loop {
        if stop() {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Milliseconds since the Unix epoch, as MM2 stamps its records.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
