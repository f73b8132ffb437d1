//! Every acknowledged and every consumed record of a drill, and what they add up to.
//!
//! A drill is only as good as its accounting: "no data lost" must be a computed fact,
//! not an impression. Producers stamp every record with a global sequence number
//! (`kdr-seq`); the ledger keeps where each acknowledged record landed and where each
//! group read it, so losses, re-reads and restarts from the beginning can be counted
//! exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A record a producer wrote and the cluster acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedRecord {
    /// The cluster label (MM2 alias, or the bootstrap string if unknown).
    pub cluster: String,
    /// Topic written to.
    pub topic: String,
    /// Partition assigned.
    pub partition: i32,
    /// Offset assigned.
    pub offset: i64,
    /// The record's `kdr-seq`.
    pub seq: u64,
    /// The producer's number (`kdr-producer`).
    pub producer: u32,
    /// When it was handed to the producer, in microseconds since the Unix epoch.
    pub sent_at_us: u64,
    /// When its acknowledgement arrived, in microseconds since the Unix epoch.
    pub acked_at_us: u64,
}

/// A record a producer gave up on: what a client sees as a publish error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedSend {
    /// When it was handed to the producer, in microseconds since the Unix epoch.
    pub sent_at_us: u64,
    /// When the failure was reported.
    pub failed_at_us: u64,
}

/// A record a group read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The consumer group.
    pub group: String,
    /// The cluster label.
    pub cluster: String,
    /// Topic read (original or remote name).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// `kdr-seq`, if the record carried one (heartbeats and foreign records do not).
    pub seq: Option<u64>,
    /// Which attachment of the group read it (1 for the first cluster attached to).
    pub session: u32,
    /// When it was read, in microseconds since the Unix epoch.
    pub read_at_us: u64,
}

/// Where a group started reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPoint {
    /// The group's committed offset on that cluster.
    Committed(i64),
    /// The beginning of the partition: the group had no committed offset there.
    Earliest,
}

/// A group being given partitions on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The consumer group.
    pub group: String,
    /// The cluster label.
    pub cluster: String,
    /// The attachment number (1 for the first cluster attached to).
    pub session: u32,
    /// Each partition assigned and where it started.
    pub partitions: Vec<(String, i32, StartPoint)>,
}

/// The raw accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Acknowledged records, in acknowledgement order.
    pub produced: Vec<ProducedRecord>,
    /// Consumed records, in consumption order.
    pub consumed: Vec<ConsumedRecord>,
    /// Partition assignments, in order.
    pub attachments: Vec<Attachment>,
    /// Records the producers gave up on, in the order they failed.
    pub failed: Vec<FailedSend>,
}

/// What one group's reading adds up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// The consumer group.
    pub group: String,
    /// Records read that carried a `kdr-seq`.
    pub consumed: usize,
    /// Distinct sequence numbers read.
    pub distinct: usize,
    /// Reads of a sequence number already read (`consumed - distinct`): the
    /// reprocessing an idempotent consumer must absorb.
    pub duplicates: usize,
    /// Acknowledged sequence numbers the group never read.
    pub unseen: Vec<u64>,
    /// Partitions a re-attached group read from the beginning although it had read their
    /// records before, as `(cluster, topic, partition, session)`: mass reprocessing.
    pub jumped_to_start: Vec<(String, String, i32, u32)>,
}

/// What the ledger adds up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerReport {
    /// Acknowledged records.
    pub acknowledged: usize,
    /// Acknowledged records per cluster label.
    pub acknowledged_by_cluster: BTreeMap<String, usize>,
    /// Acknowledged sequence numbers that no group ever read and that were not found
    /// replicated (when a set of replicated sequence numbers was given).
    pub lost: Vec<u64>,
    /// Per group, in the order of the groups seen.
    pub groups: Vec<GroupReport>,
}

impl Ledger {
    /// Sequence numbers of every acknowledged record.
    #[must_use]
    pub fn acknowledged_seqs(&self) -> BTreeSet<u64> {
        self.produced.iter().map(|r| r.seq).collect()
    }

    /// Adds everything up. `replicated` is the set of sequence numbers found on the other
    /// cluster (for example with [`super::seqs_on`]); a record counts as lost when it was
    /// acknowledged, no group read it, and it is not in `replicated`.
    #[must_use]
    pub fn report(&self, groups: &[String], replicated: Option<&BTreeSet<u64>>) -> LedgerReport {
        let acknowledged = self.acknowledged_seqs();
        let mut acknowledged_by_cluster = BTreeMap::new();
        for record in &self.produced {
            *acknowledged_by_cluster
                .entry(record.cluster.clone())
                .or_insert(0) += 1;
        }
        let mut group_names: Vec<String> = groups.to_vec();
        for record in &self.consumed {
            if !group_names.contains(&record.group) {
                group_names.push(record.group.clone());
            }
        }
        let mut read_by_any = HashSet::new();
        let reports = group_names
            .iter()
            .map(|group| {
                let report = self.group_report(group, &acknowledged);
                read_by_any.extend(
                    self.consumed
                        .iter()
                        .filter(|r| &r.group == group)
                        .filter_map(|r| r.seq),
                );
                report
            })
            .collect();
        let lost = acknowledged
            .iter()
            .copied()
            .filter(|seq| !read_by_any.contains(seq))
            .filter(|seq| replicated.is_none_or(|set| !set.contains(seq)))
            .collect();
        LedgerReport {
            acknowledged: acknowledged.len(),
            acknowledged_by_cluster,
            lost,
            groups: reports,
        }
    }

    fn group_report(&self, group: &str, acknowledged: &BTreeSet<u64>) -> GroupReport {
        let reads: Vec<&ConsumedRecord> =
            self.consumed.iter().filter(|r| r.group == group).collect();
        // The session in which each sequence number was first read.
        let mut first_session: HashMap<u64, u32> = HashMap::new();
        let mut consumed = 0;
        for read in &reads {
            if let Some(seq) = read.seq {
                consumed += 1;
                first_session.entry(seq).or_insert(read.session);
            }
        }
        let distinct = first_session.len();
        let unseen = acknowledged
            .iter()
            .copied()
            .filter(|seq| !first_session.contains_key(seq))
            .collect();
        let first_attach = self
            .attachments
            .iter()
            .filter(|a| a.group == group)
            .map(|a| a.session)
            .min();
        let mut jumped = BTreeSet::new();
        for attachment in self.attachments.iter().filter(|a| a.group == group) {
            if Some(attachment.session) == first_attach {
                continue;
            }
            for (topic, partition, start) in &attachment.partitions {
                if *start != StartPoint::Earliest {
                    continue;
                }
                let reread = reads.iter().any(|r| {
                    r.session == attachment.session
                        && r.cluster == attachment.cluster
                        && &r.topic == topic
                        && r.partition == *partition
                        && r.seq
                            .and_then(|seq| first_session.get(&seq))
                            .is_some_and(|first| *first < attachment.session)
                });
                if reread {
                    jumped.insert((
                        attachment.cluster.clone(),
                        topic.clone(),
                        *partition,
                        attachment.session,
                    ));
                }
            }
        }
        GroupReport {
            group: group.to_owned(),
            consumed,
            distinct,
            duplicates: consumed - distinct,
            unseen,
            jumped_to_start: jumped.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produced(seq: u64) -> ProducedRecord {
        ProducedRecord {
            cluster: "primary".into(),
            topic: "orders".into(),
            partition: 0,
            offset: i64::try_from(seq).unwrap_or(0),
            seq,
            producer: 0,
            sent_at_us: seq,
            acked_at_us: seq,
        }
    }

    fn consumed(group: &str, cluster: &str, topic: &str, seq: u64, session: u32) -> ConsumedRecord {
        ConsumedRecord {
            group: group.into(),
            cluster: cluster.into(),
            topic: topic.into(),
            partition: 0,
            offset: 0,
            seq: Some(seq),
            session,
            read_at_us: seq,
        }
    }

    fn attach(
        group: &str,
        cluster: &str,
        topic: &str,
        session: u32,
        start: StartPoint,
    ) -> Attachment {
        Attachment {
            group: group.into(),
            cluster: cluster.into(),
            session,
            partitions: vec![(topic.into(), 0, start)],
        }
    }

    #[test]
    fn counts_losses_duplicates_and_jumps() {
        let ledger = Ledger {
            produced: (0..5).map(produced).collect(),
            consumed: vec![
                consumed("g", "primary", "orders", 0, 1),
                consumed("g", "primary", "orders", 1, 1),
                consumed("g", "dr", "primary.orders", 0, 2),
                consumed("g", "dr", "primary.orders", 1, 2),
                consumed("g", "dr", "primary.orders", 2, 2),
            ],
            attachments: vec![
                attach("g", "primary", "orders", 1, StartPoint::Earliest),
                attach("g", "dr", "primary.orders", 2, StartPoint::Earliest),
            ],
            failed: Vec::new(),
        };
        let report = ledger.report(&["g".to_owned()], None);
        assert_eq!(report.acknowledged, 5);
        assert_eq!(report.lost, vec![3, 4]);
        let group = &report.groups[0];
        assert_eq!(
            (group.consumed, group.distinct, group.duplicates),
            (5, 3, 2)
        );
        assert_eq!(group.unseen, vec![3, 4]);
        assert_eq!(
            group.jumped_to_start,
            vec![("dr".into(), "primary.orders".into(), 0, 2)]
        );

        let replicated: BTreeSet<u64> = [3].into_iter().collect();
        assert_eq!(
            ledger.report(&["g".to_owned()], Some(&replicated)).lost,
            vec![4]
        );
    }

    #[test]
    fn reading_new_records_from_the_beginning_is_not_a_jump() {
        let ledger = Ledger {
            produced: (0..3).map(produced).collect(),
            consumed: vec![
                consumed("g", "primary", "orders", 0, 1),
                consumed("g", "dr", "orders", 1, 2),
                consumed("g", "dr", "primary.orders", 2, 2),
            ],
            attachments: vec![
                attach("g", "primary", "orders", 1, StartPoint::Earliest),
                attach("g", "dr", "orders", 2, StartPoint::Earliest),
                attach("g", "dr", "primary.orders", 2, StartPoint::Committed(1)),
            ],
            failed: Vec::new(),
        };
        let report = ledger.report(&["g".to_owned()], None);
        assert!(report.lost.is_empty());
        assert_eq!(report.groups[0].duplicates, 0);
        assert!(report.groups[0].jumped_to_start.is_empty());
    }
}
