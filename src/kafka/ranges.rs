//! Reading offset ranges of many partitions with one client: the records a failback finds on
//! the old primary past what DR received, on every affected partition at once.

use std::collections::HashMap;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::cluster::Cluster;
use super::error::{KafkaError, Operation};
use super::scope::{error_code, retriable};
use super::session::{POLL_STEP, Session, raw_record};
use super::types::{RawRecord, ReadOptions, TopicPartition};

/// Records `from..to` of one partition. `to` is an end offset the caller read beforehand, so
/// a read of a range never waits for records that are not there yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRange {
    pub partition: TopicPartition,
    pub from: i64,
    pub to: i64,
}

impl Cluster {
    /// Hands every record of every range to `step` (with the range's index), in offset order
    /// within a range, through one consumer assigned to all the ranges' partitions: one
    /// client and one fetch session however many partitions, never a round trip each.
    ///
    /// The reader never joins a group or commits. Not reaching the end of every range by the
    /// bound (`options.timeout`, else the operation timeout) is a `Timeout` error, never a
    /// silently short read. Returns the state and how many records each range gave.
    pub async fn scan_ranges<T, F>(
        &self,
        ranges: &[OffsetRange],
        options: ReadOptions,
        state: T,
        step: F,
    ) -> Result<(T, Vec<u64>), KafkaError>
    where
        T: Send + 'static,
        F: FnMut(&mut T, usize, RawRecord) + Send + 'static,
    {
        let bound = options.timeout.unwrap_or(self.operation_timeout());
        let mut config = self
            .inner
            .spec
            .consumer_config(Some(&format!("kdr-reader-{}", self.role())), bound);
        config.set("enable.partition.eof", "true");
        let operation = Operation::ReadRanges {
            partitions: ranges.len(),
        };
        let ranges = ranges.to_vec();
        self.run(operation, bound, config, move |session| {
            read_ranges(session, &ranges, state, step)
        })
        .await
    }
}

fn read_ranges<T>(
    session: &Session,
    ranges: &[OffsetRange],
    mut state: T,
    mut step: impl FnMut(&mut T, usize, RawRecord),
) -> Result<(T, Vec<u64>), KafkaError> {
    let mut counts = vec![0u64; ranges.len()];
    let mut next: Vec<i64> = ranges.iter().map(|r| r.from).collect();
    let index: HashMap<(&str, i32), usize> = ranges
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.partition.topic.as_str(), r.partition.partition), i))
        .collect();
    let open = |next: &[i64]| ranges.iter().zip(next).any(|(r, n)| *n < r.to);
    if !open(&next) {
        return Ok((state, counts));
    }
    let mut assignment = TopicPartitionList::with_capacity(ranges.len());
    for r in ranges.iter().filter(|r| r.from < r.to) {
        assignment
            .add_partition_offset(
                &r.partition.topic,
                r.partition.partition,
                Offset::Offset(r.from),
            )
            .map_err(|error| session.scope.fail(&error, None))?;
    }
    session
        .consumer
        .assign(&assignment)
        .map_err(|error| session.scope.fail(&error, None))?;
    let mut last_attempt = None;
    while open(&next) {
        let Some(remaining) = session.remaining() else {
            break;
        };
        match session.consumer.poll(remaining.min(POLL_STEP)) {
            None => {}
            Some(Ok(message)) => {
                use rdkafka::Message;
                let key = (message.topic(), message.partition());
                if let Some(&i) = index.get(&key) {
                    let offset = message.offset();
                    if offset < ranges[i].to && offset >= next[i] {
                        next[i] = offset + 1;
                        counts[i] += 1;
                        step(&mut state, i, raw_record(&message));
                    } else if offset >= ranges[i].to {
                        next[i] = next[i].max(ranges[i].to);
                    }
                }
            }
            // The end of one partition's readable log (the error names no topic): whatever
            // the consumer's position says is past a range's end closes that range, so a gap
            // (compaction, a control record) before the end never holds the read open.
            Some(Err(RdKafkaError::PartitionEOF(_))) => {
                if let Ok(positions) = session.consumer.position() {
                    for element in positions.elements() {
                        if let (Some(&i), Offset::Offset(at)) = (
                            index.get(&(element.topic(), element.partition())),
                            element.offset(),
                        ) && at >= ranges[i].to
                        {
                            next[i] = next[i].max(ranges[i].to);
                        }
                    }
                }
            }
            Some(Err(error)) => match error_code(&error) {
                Some(code) if retriable(code) => last_attempt = Some(code.to_string()),
                _ => return Err(session.scope.fail(&error, session.last_error(None))),
            },
        }
        if let Some(failure) = session.heard_failure() {
            return Err(failure);
        }
    }
    if !open(&next) {
        return Ok((state, counts));
    }
    let short: Vec<String> = ranges
        .iter()
        .zip(&next)
        .filter(|(r, n)| **n < r.to)
        .map(|(r, n)| format!("{} at {n} of {}", r.partition, r.to))
        .collect();
    let mut note = format!(
        "read {} record(s); not at the end of {}",
        counts.iter().sum::<u64>(),
        short.join(", ")
    );
    if let Some(last) = session.last_error(last_attempt) {
        note.push_str(&format!("; last error: {last}"));
    }
    Err(session.scope.timeout(Some(note)))
}
