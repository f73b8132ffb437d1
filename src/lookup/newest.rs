//! The newest record of many partitions: how old the last replicated write on the target is.
//!
//! `Cluster::read_to_end` reads whole partitions, which suits MM2's small internal topics but
//! not a replicated data topic, so this reads one record per partition: each is assigned at
//! its end offset minus one, and the first record (or the end of the partition) settles it.
//! Like every call of the Kafka layer it runs on a blocking thread with its own client, bounded
//! by librdkafka's timeouts and by the async side, and it never joins or commits for a group.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{Cluster, TopicPartition};

/// How long one poll may block; the deadline is checked between polls.
const POLL_STEP: Duration = Duration::from_millis(50);

/// What was learnt per partition: the newest record's timestamp (`None` for an empty
/// partition, or one whose last offset holds no readable record), and the partitions that
/// could not be read in time, with why.
#[derive(Debug, Default)]
pub struct Newest {
    pub timestamps: BTreeMap<TopicPartition, Option<i64>>,
    pub unread: Option<String>,
}

/// Reads the last record of each partition below its given end offset, within `bound`.
pub async fn newest_timestamps(
    cluster: &Cluster,
    partitions: Vec<(TopicPartition, i64)>,
    bound: Duration,
) -> Newest {
    let redactor = cluster.spec().redactor();
    let mut config = cluster
        .spec()
        .consumer_config(Some(&format!("kdr-reader-{}", cluster.role())), bound);
    config.set("enable.partition.eof", "true");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let asked = partitions.len();
    // Detached, as in the Kafka layer: the answer comes back on the channel and the client's
    // teardown does not hold up the caller.
    drop(tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + bound;
        let _ = tx.send(read(&config, partitions, deadline));
    }));
    let mut newest = match tokio::time::timeout(bound + Duration::from_millis(250), rx).await {
        Ok(Ok(newest)) => newest,
        Ok(Err(_)) | Err(_) => Newest {
            timestamps: BTreeMap::new(),
            unread: Some(format!(
                "{asked} partitions: the reader did not answer within {}",
                humantime::format_duration(bound)
            )),
        },
    };
    newest.unread = newest.unread.map(|u| redactor.scrub(&u));
    newest
}

fn read(
    config: &rdkafka::ClientConfig,
    partitions: Vec<(TopicPartition, i64)>,
    deadline: std::time::Instant,
) -> Newest {
    let mut newest = Newest::default();
    let mut pending: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for (tp, end) in partitions {
        if end <= 0 {
            newest.timestamps.insert(tp, None);
            continue;
        }
        if let Err(e) =
            assignment.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(end - 1))
        {
            newest.unread = Some(format!("{tp}: {e}"));
            continue;
        }
        pending.insert(tp, end);
    }
    if pending.is_empty() {
        return newest;
    }
    let consumer: BaseConsumer = match config.create() {
        Ok(c) => c,
        Err(e) => {
            newest.unread = Some(format!("cannot create a client: {e}"));
            return newest;
        }
    };
    if let Err(e) = consumer.assign(&assignment) {
        newest.unread = Some(format!("cannot assign the partitions: {e}"));
        return newest;
    }
    let mut last_error = None;
    while !pending.is_empty() {
        let Some(remaining) = deadline.checked_duration_since(std::time::Instant::now()) else {
            break;
        };
        match consumer.poll(remaining.min(POLL_STEP)) {
            None => {}
            Some(Ok(message)) => {
                let tp = TopicPartition::new(message.topic(), message.partition());
                if pending.remove(&tp).is_some() {
                    newest
                        .timestamps
                        .insert(tp, message.timestamp().to_millis());
                }
            }
            // The end of a partition without a record at its last offset (a transaction
            // marker, a compaction gap, or records deleted meanwhile). The event does not
            // name the topic, so the positions tell which partitions are done.
            Some(Err(RdKafkaError::PartitionEOF(_))) => {
                if let Ok(positions) = consumer.position() {
                    for elem in positions.elements() {
                        let tp = TopicPartition::new(elem.topic(), elem.partition());
                        if let (Offset::Offset(position), Some(end)) =
                            (elem.offset(), pending.get(&tp))
                            && position >= *end
                        {
                            pending.remove(&tp);
                            newest.timestamps.insert(tp, None);
                        }
                    }
                }
            }
            Some(Err(e)) => last_error = Some(e.to_string()),
        }
    }
    if !pending.is_empty() {
        let names: Vec<String> = pending.keys().map(ToString::to_string).collect();
        newest.unread = Some(format!(
            "{} not read in time{}",
            names.join(", "),
            last_error
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        ));
    }
    newest
}
