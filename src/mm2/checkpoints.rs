//! What kdr learns from reading a checkpoints topic or a heartbeats topic once, from the
//! beginning to the end offset captured at start (SPEC §5).
//!
//! This is `RemoteClusterUtils.translateOffsets` made fit for an incident: the same
//! "last record per partition wins" answer, but nothing in the topic can abort the read,
//! and nothing unreadable is silently believed. Every record that is skipped is counted by
//! reason, and the first few are kept with their offsets, so the operator sees that the
//! answer rests on a partly unreadable topic.

use std::collections::{BTreeMap, HashMap};

use super::codec::{Checkpoint, CheckpointKey, DecodeError, Heartbeat};

/// How many skipped records are kept with their error, for the report.
pub const MAX_SKIP_EXAMPLES: usize = 10;

/// One consumed record, as the Kafka client hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// The record's offset in its partition.
    pub offset: i64,
    /// The key; `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value; `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// The record timestamp. MM2 stamps checkpoints and heartbeats with the wall clock at
    /// emission, so this is when MM2 last vouched for the record.
    pub timestamp_ms: i64,
}

impl<'a> From<(i64, Option<&'a [u8]>, Option<&'a [u8]>, i64)> for RawRecord<'a> {
    fn from(
        (offset, key, value, timestamp_ms): (i64, Option<&'a [u8]>, Option<&'a [u8]>, i64),
    ) -> Self {
        Self {
            offset,
            key,
            value,
            timestamp_ms,
        }
    }
}

/// Why a record was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// A null value or a null key.
    Tombstone,
    /// Bytes that are not a record of the expected layout.
    Malformed,
    /// A value header with a version kdr does not know (see
    /// [`DecodeError::UnsupportedVersion`]); counted apart because it points to a newer
    /// MM2, not to corruption.
    UnsupportedVersion,
}

impl SkipReason {
    fn of(error: &DecodeError) -> Self {
        match error {
            DecodeError::Tombstone { .. } => Self::Tombstone,
            DecodeError::UnsupportedVersion { .. } => Self::UnsupportedVersion,
            DecodeError::Truncated { .. } | DecodeError::NegativeStringLength { .. } => {
                Self::Malformed
            }
        }
    }
}

/// How many records were skipped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipCounts {
    /// Null values or null keys.
    pub tombstones: u64,
    /// Undecodable records.
    pub malformed: u64,
    /// Records with an unknown value version.
    pub unsupported_version: u64,
}

impl SkipCounts {
    /// All skipped records.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.tombstones
            .saturating_add(self.malformed)
            .saturating_add(self.unsupported_version)
    }
}

/// A skipped record, kept so the report can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRecord {
    /// The record's offset.
    pub offset: i64,
    /// Why it could not be used.
    pub error: DecodeError,
}

/// Counts and the first examples of skipped records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SkipTally {
    counts: SkipCounts,
    examples: Vec<SkippedRecord>,
}

impl SkipTally {
    fn record(&mut self, offset: i64, error: DecodeError) {
        let counter = match SkipReason::of(&error) {
            SkipReason::Tombstone => &mut self.counts.tombstones,
            SkipReason::Malformed => &mut self.counts.malformed,
            SkipReason::UnsupportedVersion => &mut self.counts.unsupported_version,
        };
        *counter = counter.saturating_add(1);
        if self.examples.len() < MAX_SKIP_EXAMPLES {
            self.examples.push(SkippedRecord { offset, error });
        }
    }
}

/// What is kept of a checkpoint: its offsets, and where and when it was read. The group and
/// topic names are the index's keys, kept once each, so memory grows with the
/// group/partitions kept, not with the records read (a million records of 5 000 groups x 100
/// partitions index in about 40 MB).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    upstream_offset: i64,
    downstream_offset: i64,
    offset: i64,
    timestamp_ms: i64,
    /// Almost always empty: `None` then, to keep the entry small.
    metadata: Option<Box<str>>,
}

/// A topic named in the checkpoints, by its place in [`CheckpointIndex::topics`].
type TopicId = u32;

/// The latest checkpoint per (group, topic, partition) of one checkpoints topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointIndex {
    groups: BTreeMap<Box<str>, BTreeMap<(TopicId, i32), Entry>>,
    /// Every topic named, once; a [`TopicId`] is a place here.
    topics: Vec<Box<str>>,
    topic_ids: HashMap<Box<str>, TopicId>,
    skipped: SkipTally,
    records_read: u64,
}

impl CheckpointIndex {
    /// Builds the index from records of partition 0 in log order (MM2 writes checkpoints
    /// only there).
    pub fn from_records<'a, I>(records: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<RawRecord<'a>>,
    {
        let mut index = Self::default();
        for record in records {
            index.push(record.into());
        }
        index
    }

    /// Adds the next record in log order.
    ///
    /// The last record per key wins, not the largest offset: after a group is rewound on
    /// the source, MM2 deliberately writes a smaller checkpoint, and the newest one is the
    /// truth. A tombstone whose key decodes removes the key's checkpoint, as compaction
    /// eventually would, so the answer does not depend on whether the log cleaner has run.
    pub fn push(&mut self, record: RawRecord<'_>) {
        self.records_read = self.records_read.saturating_add(1);
        match Checkpoint::decode(record.key, record.value) {
            Ok(checkpoint) => {
                let topic = self.topic_id(&checkpoint.topic);
                let entry = Entry {
                    upstream_offset: checkpoint.upstream_offset,
                    downstream_offset: checkpoint.downstream_offset,
                    offset: record.offset,
                    timestamp_ms: record.timestamp_ms,
                    metadata: (!checkpoint.metadata.is_empty())
                        .then(|| checkpoint.metadata.into_boxed_str()),
                };
                let partitions = match self.groups.get_mut(checkpoint.group.as_str()) {
                    Some(partitions) => partitions,
                    None => self
                        .groups
                        .entry(checkpoint.group.into_boxed_str())
                        .or_default(),
                };
                partitions.insert((topic, checkpoint.partition), entry);
            }
            Err(error) => {
                if record.value.is_none()
                    && let Ok(key) = CheckpointKey::decode(record.key)
                {
                    self.remove(&key);
                }
                self.skipped.record(record.offset, error);
            }
        }
    }

    fn topic_id(&mut self, topic: &str) -> TopicId {
        if let Some(&id) = self.topic_ids.get(topic) {
            return id;
        }
        let id = TopicId::try_from(self.topics.len()).expect("fewer than 2^32 topics");
        self.topics.push(topic.into());
        self.topic_ids.insert(topic.into(), id);
        id
    }

    fn remove(&mut self, key: &CheckpointKey) {
        let Some(&topic) = self.topic_ids.get(key.topic.as_str()) else {
            return;
        };
        if let Some(partitions) = self.groups.get_mut(key.group.as_str()) {
            partitions.remove(&(topic, key.partition));
            if partitions.is_empty() {
                self.groups.remove(key.group.as_str());
            }
        }
    }

    fn checkpoint(&self, group: &str, (topic, partition): (TopicId, i32), e: &Entry) -> Checkpoint {
        Checkpoint {
            group: group.to_owned(),
            topic: self.topics[topic as usize].to_string(),
            partition,
            upstream_offset: e.upstream_offset,
            downstream_offset: e.downstream_offset,
            metadata: e.metadata.as_deref().unwrap_or_default().to_owned(),
        }
    }

    /// The group's checkpoints with their record timestamps, sorted by topic then
    /// partition. The timestamp tells how old the checkpoint is: a stale one means MM2
    /// stopped checkpointing this group, and the offset may be far behind.
    #[must_use]
    pub fn for_group(&self, group: &str) -> Vec<(Checkpoint, i64)> {
        let Some(partitions) = self.groups.get(group) else {
            return Vec::new();
        };
        let mut out: Vec<(Checkpoint, i64)> = partitions
            .iter()
            .map(|(&key, e)| (self.checkpoint(group, key, e), e.timestamp_ms))
            .collect();
        out.sort_by(|(a, _), (b, _)| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }

    fn entry(&self, group: &str, topic: &str, partition: i32) -> Option<((TopicId, i32), &Entry)> {
        let key = (*self.topic_ids.get(topic)?, partition);
        self.groups.get(group)?.get(&key).map(|e| (key, e))
    }

    /// The checkpoint of one group on one target partition, with its record timestamp.
    #[must_use]
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<(Checkpoint, i64)> {
        self.entry(group, topic, partition)
            .map(|(key, e)| (self.checkpoint(group, key, e), e.timestamp_ms))
    }

    /// The log offset of the record that supplied a checkpoint, for the incident log.
    #[must_use]
    pub fn source_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.entry(group, topic, partition).map(|(_, e)| e.offset)
    }

    /// Whether the group has at least one checkpoint.
    #[must_use]
    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// The groups with at least one checkpoint, sorted.
    #[must_use]
    pub fn groups(&self) -> Vec<&str> {
        self.groups.keys().map(AsRef::as_ref).collect()
    }

    /// How many checkpoints are indexed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    /// Whether no checkpoint is indexed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// How many records were read, used or not.
    #[must_use]
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// How many records were skipped, by reason.
    #[must_use]
    pub fn skipped(&self) -> SkipCounts {
        self.skipped.counts
    }

    /// The first [`MAX_SKIP_EXAMPLES`] skipped records with their errors.
    #[must_use]
    pub fn skip_examples(&self) -> &[SkippedRecord] {
        &self.skipped.examples
    }
}

/// The newest heartbeat per (source alias, target alias) in a heartbeats topic.
///
/// Newest means the largest timestamp in the heartbeat value, not the last record read:
/// a heartbeat is evidence that the flow was alive at that time, and a record read later
/// with an older timestamp cannot take that evidence back. Tombstones are counted but
/// remove nothing, for the same reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatView {
    newest: BTreeMap<(String, String), i64>,
    skipped: SkipTally,
    records_read: u64,
}

impl HeartbeatView {
    /// Builds the view from records of a heartbeats topic.
    pub fn from_records<'a, I>(records: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<RawRecord<'a>>,
    {
        let mut view = Self::default();
        for record in records {
            view.push(record.into());
        }
        view
    }

    /// Adds one record.
    pub fn push(&mut self, record: RawRecord<'_>) {
        self.records_read = self.records_read.saturating_add(1);
        match Heartbeat::decode(record.key, record.value) {
            Ok(beat) => {
                let newest = self
                    .newest
                    .entry((beat.source_alias, beat.target_alias))
                    .or_insert(beat.timestamp_ms);
                *newest = (*newest).max(beat.timestamp_ms);
            }
            Err(error) => self.skipped.record(record.offset, error),
        }
    }

    /// The newest heartbeat timestamp for `source -> target`.
    #[must_use]
    pub fn latest(&self, source_alias: &str, target_alias: &str) -> Option<i64> {
        self.newest
            .get(&(source_alias.to_owned(), target_alias.to_owned()))
            .copied()
    }

    /// Every (source, target, newest timestamp), sorted by source then target.
    #[must_use]
    pub fn pairs(&self) -> Vec<(&str, &str, i64)> {
        self.newest
            .iter()
            .map(|((source, target), &ts)| (source.as_str(), target.as_str(), ts))
            .collect()
    }

    /// How many records were read, used or not.
    #[must_use]
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// How many records were skipped, by reason.
    #[must_use]
    pub fn skipped(&self) -> SkipCounts {
        self.skipped.counts
    }

    /// The first [`MAX_SKIP_EXAMPLES`] skipped records with their errors.
    #[must_use]
    pub fn skip_examples(&self) -> &[SkippedRecord] {
        &self.skipped.examples
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm2::codec::{RecordKind, RecordPart};

    fn checkpoint(group: &str, topic: &str, partition: i32, up: i64, down: i64) -> Checkpoint {
        Checkpoint {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
            upstream_offset: up,
            downstream_offset: down,
            metadata: String::new(),
        }
    }

    /// Owned key/value bytes of a record, borrowed later as a `RawRecord`.
    struct Owned {
        offset: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp_ms: i64,
    }

    impl Owned {
        fn checkpoint(offset: i64, c: &Checkpoint, timestamp_ms: i64) -> Self {
            Self {
                offset,
                key: Some(c.encode_key().unwrap()),
                value: Some(c.encode_value().unwrap()),
                timestamp_ms,
            }
        }

        fn raw(&self) -> RawRecord<'_> {
            RawRecord {
                offset: self.offset,
                key: self.key.as_deref(),
                value: self.value.as_deref(),
                timestamp_ms: self.timestamp_ms,
            }
        }
    }

    #[test]
    fn last_record_wins_even_when_it_goes_backwards() {
        let first = checkpoint("app", "primary.orders", 0, 500, 480);
        let rewound = checkpoint("app", "primary.orders", 0, 100, 90);
        let other = checkpoint("app", "primary.orders", 1, 7, 7);
        let records = [
            Owned::checkpoint(0, &first, 1_000),
            Owned::checkpoint(1, &other, 1_500),
            Owned::checkpoint(2, &rewound, 2_000),
        ];
        let index = CheckpointIndex::from_records(records.iter().map(Owned::raw));
        assert_eq!(
            index.for_group("app"),
            vec![(rewound.clone(), 2_000), (other.clone(), 1_500)]
        );
        assert_eq!(index.source_offset("app", "primary.orders", 0), Some(2));
        assert_eq!(index.len(), 2);
        assert_eq!(index.records_read(), 3);
        assert_eq!(index.skipped(), SkipCounts::default());
    }

    #[test]
    fn for_group_is_sorted_by_topic_then_partition_and_groups_are_separate() {
        let records = [
            Owned::checkpoint(0, &checkpoint("b", "t2", 0, 1, 1), 10),
            Owned::checkpoint(1, &checkpoint("b", "t1", 10, 1, 1), 11),
            Owned::checkpoint(2, &checkpoint("b", "t1", 2, 1, 1), 12),
            Owned::checkpoint(3, &checkpoint("a", "t1", 0, 1, 1), 13),
        ];
        let index = CheckpointIndex::from_records(records.iter().map(Owned::raw));
        assert_eq!(index.groups(), ["a", "b"]);
        let checkpoints = index.for_group("b");
        let order: Vec<(&str, i32)> = checkpoints
            .iter()
            .map(|(c, _)| (c.topic.as_str(), c.partition))
            .collect();
        assert_eq!(order, [("t1", 2), ("t1", 10), ("t2", 0)]);
        assert!(index.for_group("missing").is_empty());
        assert_eq!(index.get("a", "t1", 0).map(|(_, ts)| ts), Some(13));
    }

    #[test]
    fn bad_records_are_counted_by_reason_and_never_fatal() {
        let good = checkpoint("app", "primary.orders", 0, 5, 5);
        let mut unknown_version = Owned::checkpoint(2, &good, 0);
        if let Some(value) = unknown_version.value.as_mut() {
            value[1] = 1;
        }
        let records = [
            Owned::checkpoint(0, &good, 100),
            Owned {
                offset: 1,
                key: Some(vec![0xff, 0xff]),
                value: Some(good.encode_value().unwrap()),
                timestamp_ms: 0,
            },
            unknown_version,
            Owned {
                offset: 3,
                key: None,
                value: Some(good.encode_value().unwrap()),
                timestamp_ms: 0,
            },
            Owned {
                offset: 4,
                key: Some(vec![0, 1]),
                value: Some(vec![0]),
                timestamp_ms: 0,
            },
        ];
        let index = CheckpointIndex::from_records(records.iter().map(Owned::raw));
        assert_eq!(
            index.skipped(),
            SkipCounts {
                tombstones: 1,
                malformed: 2,
                unsupported_version: 1
            }
        );
        assert_eq!(index.skipped().total(), 4);
        assert_eq!(index.for_group("app"), vec![(good, 100)]);
        let offsets: Vec<i64> = index.skip_examples().iter().map(|s| s.offset).collect();
        assert_eq!(offsets, [1, 2, 3, 4]);
        assert_eq!(
            index.skip_examples()[1].error,
            DecodeError::UnsupportedVersion {
                record: RecordKind::Checkpoint,
                version: 1
            }
        );
        assert_eq!(
            index.skip_examples()[2].error,
            DecodeError::Tombstone {
                record: RecordKind::Checkpoint,
                part: RecordPart::Key
            }
        );
    }

    #[test]
    fn keyed_tombstone_removes_the_checkpoint_like_compaction() {
        let kept = checkpoint("app", "t", 1, 1, 1);
        let deleted = checkpoint("app", "t", 0, 1, 1);
        let records = [
            Owned::checkpoint(0, &deleted, 1),
            Owned::checkpoint(1, &kept, 2),
            Owned {
                offset: 2,
                key: Some(deleted.encode_key().unwrap()),
                value: None,
                timestamp_ms: 3,
            },
        ];
        let index = CheckpointIndex::from_records(records.iter().map(Owned::raw));
        assert_eq!(index.for_group("app"), vec![(kept, 2)]);
        assert_eq!(index.skipped().tombstones, 1);
        // A later record for the key brings it back.
        let mut index = index;
        index.push(Owned::checkpoint(3, &deleted, 4).raw());
        assert_eq!(index.len(), 2);
        // Removing the last checkpoint of a group removes the group.
        let only = [
            Owned::checkpoint(0, &deleted, 1),
            Owned {
                offset: 1,
                key: Some(deleted.encode_key().unwrap()),
                value: None,
                timestamp_ms: 2,
            },
        ];
        let index = CheckpointIndex::from_records(only.iter().map(Owned::raw));
        assert!(index.is_empty());
        assert!(index.groups().is_empty());
    }

    #[test]
    fn skip_examples_are_bounded() {
        let records: Vec<Owned> = (0..25)
            .map(|offset| Owned {
                offset,
                key: None,
                value: None,
                timestamp_ms: 0,
            })
            .collect();
        let index = CheckpointIndex::from_records(records.iter().map(Owned::raw));
        assert_eq!(index.skipped().tombstones, 25);
        assert_eq!(index.skip_examples().len(), MAX_SKIP_EXAMPLES);
    }

    #[test]
    fn tuples_are_accepted_as_raw_records() {
        let c = checkpoint("g", "t", 0, 1, 2);
        let (key, value) = (c.encode_key().unwrap(), c.encode_value().unwrap());
        let index = CheckpointIndex::from_records([(
            7_i64,
            Some(key.as_slice()),
            Some(value.as_slice()),
            99_i64,
        )]);
        assert_eq!(index.get("g", "t", 0), Some((c, 99)));
    }

    fn heartbeat(offset: i64, source: &str, target: &str, ts: i64) -> Owned {
        let beat = Heartbeat {
            source_alias: source.to_owned(),
            target_alias: target.to_owned(),
            timestamp_ms: ts,
        };
        Owned {
            offset,
            key: Some(beat.encode_key().unwrap()),
            value: Some(beat.encode_value()),
            timestamp_ms: ts + 1,
        }
    }

    #[test]
    fn heartbeat_view_keeps_the_newest_timestamp_per_pair() {
        let records = [
            heartbeat(0, "dr", "primary", 1_000),
            heartbeat(1, "primary", "dr", 3_000),
            heartbeat(2, "dr", "primary", 2_000),
            heartbeat(3, "dr", "primary", 1_500),
            Owned {
                offset: 4,
                key: Some(vec![0, 2, b'd', b'r']),
                value: None,
                timestamp_ms: 0,
            },
            Owned {
                offset: 5,
                key: Some(vec![0, 2, b'd', b'r']),
                value: Some(vec![0, 0, 1]),
                timestamp_ms: 0,
            },
        ];
        let view = HeartbeatView::from_records(records.iter().map(Owned::raw));
        assert_eq!(view.latest("dr", "primary"), Some(2_000));
        assert_eq!(view.latest("primary", "dr"), Some(3_000));
        assert_eq!(view.latest("primary", "other"), None);
        assert_eq!(
            view.pairs(),
            [("dr", "primary", 2_000), ("primary", "dr", 3_000)]
        );
        assert_eq!(
            view.skipped(),
            SkipCounts {
                tombstones: 1,
                malformed: 1,
                unsupported_version: 0
            }
        );
        assert_eq!(view.records_read(), 6);
        assert_eq!(view.skip_examples().len(), 2);
    }
}
