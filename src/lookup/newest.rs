//! The newest record of many partitions: how old the last replicated write on the target is.
//!
//! `Cluster::read_to_end` reads whole partitions, which suits MM2's small internal topics but
//! not a replicated data topic, so this reads one record per partition: each is assigned at
//! its end offset minus one, and the first record (or the end of the partition) settles it.
//! All partitions are read at once, by a bounded number of consumers each assigned a share.
//! Like every call of the Kafka layer it runs on a blocking thread with its own client, bounded
//! by librdkafka's timeouts and by the async side, and it never joins or commits for a group.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{Cluster, TopicPartition};

/// How long one poll may block; the deadline is checked between polls.
const POLL_STEP: Duration = Duration::from_millis(50);

/// Partitions one consumer reads at most, unless that would take more than [`MOST_READERS`].
/// One consumer for 20 000 partitions sends fetch requests that name all of them, and a
/// broker may answer only part of each (measured on Nisshi: some partitions then waited for
/// seconds); shares of about 1 500, eight consumers at once, read them all in under a second.
const PARTITIONS_PER_READER: usize = 1500;

/// Consumers reading at once: each is a connection to every leader, fetching.
const MOST_READERS: usize = 8;

/// The longest an end-of-partition event waits for the positions to be read while records
/// keep coming (they are read at once when nothing came for a poll). Reading the positions
/// of 20 000 partitions takes milliseconds, so reading them for every such event, thousands
/// of them, took longer than the whole read.
const POSITIONS_EVERY: Duration = Duration::from_millis(250);

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
    // Detached, as in the Kafka layer: the answer comes back on the channel and the clients'
    // teardown does not hold up the caller.
    drop(tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + bound;
        let shares = shares(partitions);
        let (parts, consumers): (Vec<Newest>, Vec<Option<BaseConsumer>>) =
            std::thread::scope(|threads| {
                let readers: Vec<_> = shares
                    .into_iter()
                    .map(|share| threads.spawn(|| read(&config, share, deadline)))
                    .collect();
                readers
                    .into_iter()
                    .map(|reader| {
                        reader
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .unzip()
            });
        let _ = tx.send(merge(parts));
        // Consumers of thousands of partitions take a while to close: not the caller's wait.
        drop(consumers);
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

/// The partitions split into the shares of at most [`MOST_READERS`] consumers, each of about
/// [`PARTITIONS_PER_READER`] partitions or more, in the order given.
fn shares(partitions: Vec<(TopicPartition, i64)>) -> Vec<Vec<(TopicPartition, i64)>> {
    let readers = partitions
        .len()
        .div_ceil(PARTITIONS_PER_READER)
        .clamp(1, MOST_READERS);
    let per_reader = partitions.len().div_ceil(readers).max(1);
    let mut shares = Vec::with_capacity(readers);
    let mut partitions = partitions.into_iter().peekable();
    while partitions.peek().is_some() {
        shares.push(partitions.by_ref().take(per_reader).collect());
    }
    if shares.is_empty() {
        shares.push(Vec::new());
    }
    shares
}

/// The readers' answers as one: every partition's timestamp, and what each could not read.
fn merge(parts: Vec<Newest>) -> Newest {
    let mut newest = Newest::default();
    let mut unread = Vec::new();
    for part in parts {
        newest.timestamps.extend(part.timestamps);
        unread.extend(part.unread);
    }
    newest.unread = (!unread.is_empty()).then(|| unread.join("; "));
    newest
}

/// What was read, and the consumer that read it, to be dropped after the answer is sent.
fn read(
    config: &rdkafka::ClientConfig,
    partitions: Vec<(TopicPartition, i64)>,
    deadline: std::time::Instant,
) -> (Newest, Option<BaseConsumer>) {
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
        return (newest, None);
    }
    let consumer: BaseConsumer = match config.create() {
        Ok(c) => c,
        Err(e) => {
            newest.unread = Some(format!("cannot create a client: {e}"));
            return (newest, None);
        }
    };
    if let Err(e) = consumer.assign(&assignment) {
        newest.unread = Some(format!("cannot assign the partitions: {e}"));
        return (newest, Some(consumer));
    }
    // Pending partitions per partition number: an end-of-partition event names only the
    // number, so this says at once whether it can concern a pending partition at all.
    let mut pending_numbers: HashMap<i32, usize> = HashMap::new();
    for tp in pending.keys() {
        *pending_numbers.entry(tp.partition).or_default() += 1;
    }
    let mut last_error = None;
    // An end-of-partition event for a number some pending partition has: which one it was
    // is read from the positions, once for many such events (reading them all is linear in
    // the partitions assigned, so once per event would be quadratic).
    let mut ends_to_check = false;
    let mut last_check = std::time::Instant::now();
    while !pending.is_empty() {
        let Some(remaining) = deadline.checked_duration_since(std::time::Instant::now()) else {
            break;
        };
        let polled = consumer.poll(remaining.min(POLL_STEP));
        let idle = polled.is_none();
        match polled {
            None => {}
            Some(Ok(message)) => {
                let tp = TopicPartition::new(message.topic(), message.partition());
                if pending.remove(&tp).is_some() {
                    forget(&mut pending_numbers, tp.partition);
                    newest
                        .timestamps
                        .insert(tp, message.timestamp().to_millis());
                }
            }
            // The end of a partition without a record at its last offset (a transaction
            // marker, a compaction gap, or records deleted meanwhile). The event does not
            // name the topic, so the positions tell which partitions are done.
            Some(Err(RdKafkaError::PartitionEOF(partition))) => {
                ends_to_check |= pending_numbers.contains_key(&partition);
            }
            Some(Err(e)) => last_error = Some(e.to_string()),
        }
        if ends_to_check && (idle || last_check.elapsed() >= POSITIONS_EVERY) {
            ends_to_check = false;
            last_check = std::time::Instant::now();
            settle_ends(&consumer, &mut pending, &mut pending_numbers, &mut newest);
        }
    }
    if ends_to_check {
        settle_ends(&consumer, &mut pending, &mut pending_numbers, &mut newest);
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
    (newest, Some(consumer))
}

/// Settles the pending partitions whose position reached their end without a record: empty
/// at the end.
fn settle_ends(
    consumer: &BaseConsumer,
    pending: &mut BTreeMap<TopicPartition, i64>,
    pending_numbers: &mut HashMap<i32, usize>,
    newest: &mut Newest,
) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    for elem in positions.elements() {
        let tp = TopicPartition::new(elem.topic(), elem.partition());
        if let (Offset::Offset(position), Some(end)) = (elem.offset(), pending.get(&tp))
            && position >= *end
        {
            pending.remove(&tp);
            forget(pending_numbers, tp.partition);
            newest.timestamps.insert(tp, None);
        }
    }
}

/// One pending partition with this number fewer.
fn forget(pending_numbers: &mut HashMap<i32, usize>, partition: i32) {
    if let Some(left) = pending_numbers.get_mut(&partition) {
        *left -= 1;
        if *left == 0 {
            pending_numbers.remove(&partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(n: usize) -> Vec<(TopicPartition, i64)> {
        (0..n)
            .map(|p| (TopicPartition::new("t", i32::try_from(p).expect("fits")), 1))
            .collect()
    }

    #[test]
    fn every_partition_goes_to_exactly_one_of_a_bounded_number_of_readers() {
        for (n, readers) in [
            (0, 1),
            (1, 1),
            (PARTITIONS_PER_READER, 1),
            (PARTITIONS_PER_READER + 1, 2),
            (20_000, MOST_READERS),
            (100_000, MOST_READERS),
        ] {
            let shares = shares(partitions(n));
            assert_eq!(shares.len(), readers, "{n} partitions");
            let all: Vec<(TopicPartition, i64)> = shares.into_iter().flatten().collect();
            assert_eq!(all, partitions(n), "{n} partitions, in order, each once");
        }
    }

    #[test]
    fn the_readers_answers_merge_into_one() {
        let part = |p: i32, ts: Option<i64>, unread: Option<&str>| Newest {
            timestamps: [(TopicPartition::new("t", p), ts)].into_iter().collect(),
            unread: unread.map(str::to_owned),
        };
        let merged = merge(vec![
            part(0, Some(5), None),
            part(1, None, Some("t-2 not read in time")),
            part(3, Some(7), Some("t-4 not read in time")),
        ]);
        assert_eq!(merged.timestamps.len(), 3);
        assert_eq!(
            merged.unread.as_deref(),
            Some("t-2 not read in time; t-4 not read in time")
        );
        assert_eq!(merge(vec![part(0, Some(1), None)]).unread, None);
    }
}
