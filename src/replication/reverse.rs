//! Reverse checkpointing (issue 11 #2): at failback, carry home what consumer groups did on
//! DR's replica topics (`primary.orders`), which MirrorMaker 2 never checkpoints back because it
//! checkpoints only in the direction of its flow (KIP-1098 proposes it; Cloudera's SRM ships it).
//!
//! The map is the **forward** flow's offset syncs (`mm2-offset-syncs.<dr alias>.internal`, on
//! the primary with `offset_syncs_location: source`, on DR with `target`): each pairs a
//! record's offset on the primary (upstream) with its copy's offset on DR (downstream). For a
//! group committed at `c` on a replica partition, take the newest sync (in log order) whose
//! downstream offset is `<= c`: the group's position on the primary is the sync's upstream
//! offset when `c` equals its downstream offset (the group has not read that record yet), else
//! upstream + 1 (it has read it, and nothing says how far beyond it the copies run in step).
//! That never skips a record; the group reads again at most `c - downstream - 1` records, the
//! distance between syncs. The position then goes through the forward translation's own rules
//! ([`super::translation::place`]): clamped into the log, never behind the group's commit on
//! the primary unless `allow_rewind`, and an active group is never touched.
//!
//! The reverse flow's own checkpoints (groups that read DR's own topics) are translated as
//! before. When both give a position for the same partition of the primary, the further one
//! wins: each is at or behind what the group consumed, so the further re-reads less and skips
//! nothing (ties go to MirrorMaker 2's checkpoint). Every partition's log record says which
//! gave its position ([`PositionFrom`]).
//!
//! Under the identity policy DR's `orders` holds both the primary's copies and DR's own new
//! records, so a commit there cannot be told apart: the mapping is skipped with that reason,
//! as SRM does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::kafka::{GroupDescription, GroupPartitions, RecordView, TopicPartition, Watermarks};
use crate::mm2::{OffsetSync, ReplicationPolicy};
use crate::plan::Selector;

use super::internal::read_options;
use super::translation::{
    Action, Batching, Call, GroupState, GroupTranslation, PartitionTranslation, TranslateError,
    call, place, target_group_states,
};
use super::{Bound, Cut, Flow, OPERATION_TIMEOUT, now_ms};

/// The sync a position was worked out from, as the offset-syncs topic holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncUsed {
    /// The record's offset on the primary.
    pub upstream: i64,
    /// Its copy's offset on DR.
    pub downstream: i64,
}

/// Where a group's position on a partition of the primary comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionFrom {
    /// The group's commit on DR's replica topic, mapped home through the forward offset syncs.
    ForwardSyncs,
    /// The reverse flow's checkpoint (MirrorMaker 2's own translation).
    ReverseCheckpoint,
    /// Neither: the group keeps its commit on the primary.
    None,
}

/// The rule for one partition: where a group committed at `committed` on DR's replica starts
/// on the primary, and how many records it may read again there at most. `None` without a
/// sync at or below the commit (the group is behind every sync: nothing says where it was).
pub fn reverse_position(committed: i64, sync: Option<SyncUsed>) -> Option<(i64, i64)> {
    let sync = sync.filter(|s| s.downstream <= committed)?;
    Some(if committed == sync.downstream {
        (sync.upstream, 0)
    } else {
        (sync.upstream + 1, committed - sync.downstream - 1)
    })
}

/// The forward flow's offset syncs, kept only as far as the look-ups need them: for every
/// (primary topic, partition) and every committed offset asked about, the newest sync in log
/// order whose downstream offset is at or below it. Built while the offset-syncs topic is read
/// once; memory is one slot per distinct commit, whatever the topic holds.
#[derive(Debug, Clone, Default)]
pub struct SyncIndex {
    /// Per partition, the commits asked about (ascending) and each one's newest sync so far.
    wanted: HashMap<(String, i32), Vec<Slot>>,
    records: u64,
    undecodable: u64,
}

/// A commit asked about, and the newest sync at or below it so far with its record's timestamp.
type Slot = (i64, Option<(SyncUsed, i64)>);

impl SyncIndex {
    /// An index for these commits, named by the primary's (upstream) topic.
    pub fn new(commits: impl IntoIterator<Item = ((String, i32), i64)>) -> Self {
        let mut sets: HashMap<(String, i32), BTreeSet<i64>> = HashMap::new();
        for (tp, offset) in commits {
            sets.entry(tp).or_default().insert(offset);
        }
        let wanted = sets
            .into_iter()
            .map(|(tp, offsets)| (tp, offsets.into_iter().map(|o| (o, None)).collect()))
            .collect();
        SyncIndex {
            wanted,
            ..SyncIndex::default()
        }
    }

    /// One record of the offset-syncs topic, in log order; `timestamp_ms` is the record's.
    pub fn push_record(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, timestamp_ms: i64) {
        self.records += 1;
        match OffsetSync::decode(key, value) {
            Ok(sync) => self.push(&sync, timestamp_ms),
            Err(_) => self.undecodable += 1,
        }
    }

    /// One sync, in log order: it is the newest for every asked commit at or above its
    /// downstream offset.
    pub fn push(&mut self, sync: &OffsetSync, timestamp_ms: i64) {
        let Some(slots) = self.wanted.get_mut(&(sync.topic.clone(), sync.partition)) else {
            return;
        };
        let used = SyncUsed {
            upstream: sync.upstream_offset,
            downstream: sync.downstream_offset,
        };
        let first = slots.partition_point(|(offset, _)| *offset < sync.downstream_offset);
        for slot in &mut slots[first..] {
            slot.1 = Some((used, timestamp_ms));
        }
    }

    /// The newest sync at or below `committed` on a partition of the primary, and its record's
    /// timestamp; `None` when none was read (or `committed` was not asked about).
    pub fn newest_at_or_below(
        &self,
        topic: &str,
        partition: i32,
        committed: i64,
    ) -> Option<(SyncUsed, i64)> {
        let slots = self.wanted.get(&(topic.to_owned(), partition))?;
        let i = slots.binary_search_by_key(&committed, |(o, _)| *o).ok()?;
        slots[i].1
    }

    /// Records read, and those that were not offset syncs.
    pub fn counts(&self) -> (u64, u64) {
        (self.records, self.undecodable)
    }
}

/// One partition of one group, mapped home: the `reverse_translation` observation's rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReversePartition {
    /// The replica topic on DR (`primary.orders`).
    pub replica_topic: String,
    /// Its original on the primary (`orders`).
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset on DR's replica.
    pub dr_committed: i64,
    /// The newest forward sync at or below it; `None`: the group is behind every sync read.
    pub sync: Option<SyncUsed>,
    /// The rule's position on the primary, before it is placed in the log.
    pub position: Option<i64>,
    /// At most this many records read again at home from this position.
    pub reread_bound: Option<i64>,
    /// Where the group's position on the primary comes from, once combined with the reverse
    /// flow's checkpoints.
    pub position_from: PositionFrom,
    /// The offset set on the primary (`None` when neither source gave one).
    pub target_offset: Option<i64>,
    /// The group's committed offset on the primary before this step.
    pub current_offset: Option<i64>,
    /// What was done: the words of the forward translation's actions, or why nothing.
    pub action: String,
    /// How many records the group may read again at home on this partition, when the
    /// mapping gave its position and that can be told (see [`ReverseGroup::finish`]).
    pub may_reread: Option<i64>,
}

/// `primary.orders[0] committed 15 on DR, sync 14->14: 15 on orders[0] (commit), re-reads at
/// most 0`: the step's and the look-up's words for one row.
impl std::fmt::Display for ReversePartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}[{}] committed {} on DR, ",
            self.replica_topic, self.partition, self.dr_committed
        )?;
        match self.sync {
            Some(s) => write!(f, "sync {}->{}", s.upstream, s.downstream)?,
            None => f.write_str("no sync")?,
        }
        match self.target_offset {
            Some(o) => write!(f, ": {o} on {}[{}]", self.topic, self.partition)?,
            None => write!(f, ": nothing on {}[{}]", self.topic, self.partition)?,
        }
        write!(f, " ({}", self.action)?;
        if self.position_from == PositionFrom::ReverseCheckpoint {
            f.write_str(", from the reverse flow's checkpoint, further")?;
        }
        f.write_str(")")?;
        if let Some(bound) = self.reread_bound {
            write!(f, ", re-reads at most {bound}")?;
        }
        Ok(())
    }
}

/// The `reverse_translation` observation: one group's reverse mapping, as it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseObservation {
    pub group: String,
    /// The forward flow's offset-syncs topic the positions come from.
    pub syncs_topic: String,
    pub partitions: Vec<ReversePartition>,
}

/// A group's reverse mapping: its rows, and the translations to commit on the primary.
#[derive(Debug, Clone)]
pub struct ReverseGroup {
    pub group: String,
    /// The forward flow's offset-syncs topic the positions come from.
    pub syncs_topic: String,
    pub partitions: Vec<ReversePartition>,
    /// One per row with a position, placed in the primary's log as a checkpoint would be.
    translations: Vec<PartitionTranslation>,
    /// The group's state on the primary and its members when live.
    pub state: GroupState,
    pub members: Option<GroupDescription>,
}

/// The failback's reverse mapping for every group asked, or why there is none.
#[derive(Debug, Clone)]
pub enum Reverse {
    Mapped(ReverseRead),
    /// Not attempted, and why (the identity policy; no replica topics on DR).
    Skipped(String),
}

/// What reading the forward flow's offset syncs and the groups' commits on DR gave.
#[derive(Debug, Clone)]
pub struct ReverseRead {
    /// The forward flow's offset-syncs topic and the cluster that holds it.
    pub syncs_topic: String,
    pub syncs_holder: crate::plan::Role,
    /// Records of it read, and how many were not offset syncs.
    pub syncs_read: u64,
    pub syncs_undecodable: u64,
    /// One per group asked, in order.
    pub groups: Vec<ReverseGroup>,
}

/// Why the identity policy gets no reverse mapping: the one wording for the step and the
/// look-up.
pub const IDENTITY_SKIP: &str = "reverse checkpointing skipped: under the identity policy DR's topics hold both the primary's copies and DR's own new records under the same names, so a group's commit there cannot be mapped back to the primary (SRM skips it too)";

/// The groups whose state on the primary is already known (from planning the reverse flow's
/// checkpoints), with their members when live: the mapping asks only for the others.
pub type KnownStates<'a> = HashMap<&'a str, (GroupState, Option<GroupDescription>)>;

/// At failback, the groups on DR that a pattern among `selectors` matches and `groups` (the
/// reverse flow's checkpointed groups and the names given) does not hold. A group that only
/// read DR's replicas of the primary's topics during the outage is known to DR but never to
/// the reverse flow's checkpoints (MirrorMaker 2 does not checkpoint a replica back), so a
/// pattern alone would miss it. Mapped with the others; kept only where the mapping gives a
/// position. None without a pattern.
pub async fn more_groups_on_dr(
    back: &Flow,
    selectors: &[Selector],
    groups: &[String],
    bound: &mut Bound,
) -> Result<Vec<String>, TranslateError> {
    if !selectors
        .iter()
        .any(|s| matches!(s, Selector::Pattern { .. }))
    {
        return Ok(Vec::new());
    }
    let asked = Call::GroupNames {
        target: back.source_plan.role,
    };
    let names = call(bound, asked, back.source.group_names()).await?;
    let known: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
    Ok(names
        .into_iter()
        .filter(|name| !known.contains(name.as_str()))
        .filter(|name| {
            selectors
                .iter()
                .any(|s| matches!(s, Selector::Pattern { .. }) && s.matches(name))
        })
        .collect())
}

/// Maps every group's commits on DR's replica topics home through the forward flow's offset
/// syncs, for the failback flow `back` (DR -> primary), and places each position in the
/// primary's log. Batched: the replica partitions from one listing on DR, the groups'
/// commits on DR and on the primary `batching.concurrency` groups at a time, the offset syncs
/// read once, the primary's watermarks in one call, and the states of groups not
/// (`known`) from one listing.
pub async fn map_home(
    back: &Flow,
    forward: &Flow,
    groups: &[String],
    known: &KnownStates<'_>,
    allow_rewind: bool,
    batching: Batching,
    bound: &mut Bound,
) -> Result<Reverse, TranslateError> {
    if matches!(forward.policy, ReplicationPolicy::Identity { .. }) {
        return Ok(Reverse::Skipped(IDENTITY_SKIP.to_owned()));
    }
    let dr = back.source_plan.role;
    let replicas = call(
        bound,
        Call::Topics { target: dr },
        forward.partitions_from_target(),
    )
    .await?;
    if replicas.is_empty() || groups.is_empty() {
        return Ok(Reverse::Skipped(format!(
            "reverse checkpointing: no replica of the primary's topics on {dr}, or no group"
        )));
    }
    let replica_tps: Vec<TopicPartition> = replicas
        .iter()
        .map(|r| TopicPartition::new(r.target_topic.clone(), r.partition))
        .collect();
    let on_dr = committed(back, &back.source, groups, &replica_tps, batching, bound).await?;
    let commits = on_dr.iter().flat_map(|offsets| {
        replicas.iter().filter_map(|r| {
            let tp = TopicPartition::new(r.target_topic.clone(), r.partition);
            Some(((r.source_topic.clone(), r.partition), *offsets.get(&tp)?))
        })
    });
    let index = SyncIndex::new(commits.collect::<Vec<_>>());
    let (syncs_topic, holder, syncs_holder) = forward.offset_syncs_holder();
    let within = bound.within(OPERATION_TIMEOUT * 2);
    let scan = holder.scan_to_end(
        &syncs_topic,
        0,
        read_options(within, false),
        index,
        |index: &mut SyncIndex, r: RecordView<'_>| {
            index.push_record(r.key, r.value, r.timestamp_ms.unwrap_or(0));
        },
    );
    let asked = Call::Checkpoints {
        topic: syncs_topic.clone(),
        target: syncs_holder,
    };
    let index = match call(bound, asked, scan).await {
        Ok((index, _)) => index,
        Err(TranslateError::Kafka {
            error: crate::kafka::KafkaError::TopicNotFound { .. },
            ..
        }) => {
            return Ok(Reverse::Skipped(format!(
                "reverse checkpointing skipped: no {syncs_topic} on {syncs_holder} (is the {}->{} flow emitting offset syncs?)",
                forward.source_alias(),
                forward.target_alias()
            )));
        }
        Err(e) => return Err(e),
    };
    let home_tps: Vec<TopicPartition> = replicas
        .iter()
        .map(|r| TopicPartition::new(r.source_topic.clone(), r.partition))
        .collect();
    let marks = watermarks(back, &home_tps, bound).await?;
    let at_home = committed(back, &back.target, groups, &home_tps, batching, bound).await?;
    let unknown: Vec<String> = groups
        .iter()
        .filter(|g| !known.contains_key(g.as_str()))
        .cloned()
        .collect();
    let mut asked_states = target_group_states(back, &unknown, bound)
        .await?
        .into_iter();
    let now = now_ms();
    let mut out = Vec::with_capacity(groups.len());
    for ((group, on_dr), at_home) in groups.iter().zip(&on_dr).zip(&at_home) {
        let (state, members) = match known.get(group.as_str()) {
            Some(s) => s.clone(),
            None => asked_states.next().expect("a state per group asked"),
        };
        let mut mapped = ReverseGroup {
            group: group.clone(),
            syncs_topic: syncs_topic.clone(),
            partitions: Vec::new(),
            translations: Vec::new(),
            state,
            members,
        };
        for r in &replicas {
            let Some(&c) = on_dr.get(&TopicPartition::new(r.target_topic.clone(), r.partition))
            else {
                continue;
            };
            let home = TopicPartition::new(r.source_topic.clone(), r.partition);
            let found = index.newest_at_or_below(&r.source_topic, r.partition, c);
            let sync = found.map(|(s, _)| s);
            let rule = reverse_position(c, sync);
            let current_offset = at_home.get(&home).copied();
            let mut row = ReversePartition {
                replica_topic: r.target_topic.clone(),
                topic: r.source_topic.clone(),
                partition: r.partition,
                dr_committed: c,
                sync,
                position: rule.map(|(p, _)| p),
                reread_bound: rule.map(|(_, b)| b),
                position_from: PositionFrom::None,
                target_offset: None,
                current_offset,
                action: format!(
                    "skip: no offset sync at or below {c} in {syncs_topic} (the group is behind every sync read)"
                ),
                may_reread: None,
            };
            if let (Some((position, _)), Some((_, ts))) = (rule, found) {
                let (target_offset, action) =
                    place(position, current_offset, marks.get(&home), allow_rewind);
                row.position_from = PositionFrom::ForwardSyncs;
                row.target_offset = Some(target_offset);
                row.action = action.to_string();
                mapped.translations.push(PartitionTranslation {
                    source_topic: r.target_topic.clone(),
                    target_topic: r.source_topic.clone(),
                    partition: r.partition,
                    source_offset: c,
                    target_offset,
                    current_offset,
                    // No checkpoint: the age of the sync the position rests on.
                    checkpoint_age_ms: now - ts,
                    action,
                });
            }
            mapped.partitions.push(row);
        }
        out.push(mapped);
    }
    let (syncs_read, syncs_undecodable) = index.counts();
    Ok(Reverse::Mapped(ReverseRead {
        syncs_topic,
        syncs_holder,
        syncs_read,
        syncs_undecodable,
        groups: out,
    }))
}

impl ReverseGroup {
    /// Whether the mapping gives the group any position on the primary.
    pub fn has_positions(&self) -> bool {
        !self.translations.is_empty()
    }

    /// Folds the mapping into the group's checkpoint translation (empty for a group the
    /// reverse flow never checkpointed): a partition only the mapping knows is added; one
    /// both know keeps the further position (ties to the checkpoint). Each row says which
    /// source won.
    pub fn combine_into(&mut self, translation: &mut GroupTranslation) {
        let translations = std::mem::take(&mut self.translations);
        for (mapped, row) in translations.into_iter().zip(
            self.partitions
                .iter_mut()
                .filter(|r| r.position_from == PositionFrom::ForwardSyncs),
        ) {
            let same = translation
                .partitions
                .iter_mut()
                .find(|p| p.target_topic == mapped.target_topic && p.partition == mapped.partition);
            match same {
                Some(checkpointed) if checkpointed.target_offset >= mapped.target_offset => {
                    row.position_from = PositionFrom::ReverseCheckpoint;
                }
                Some(checkpointed) => *checkpointed = mapped,
                None => translation.partitions.push(mapped),
            }
        }
    }

    /// The group's rows as they ended, from its final translation (after refusals and
    /// commits): each row's offset and action, and for the rows whose position the mapping
    /// gave, how many records the group may read again at home. That runs from where it starts
    /// (the position set, or its commit where it is left alone) to where its commit on DR
    /// lands on the primary: past the sync, offsets run in step, the forward ledger's
    /// assumption too.
    pub fn finish(&self, translation: &GroupTranslation) -> Vec<ReversePartition> {
        self.partitions
            .iter()
            .map(|row| {
                let mut row = row.clone();
                let last = translation
                    .partitions
                    .iter()
                    .find(|p| p.target_topic == row.topic && p.partition == row.partition);
                let Some(last) = last.filter(|_| row.position_from != PositionFrom::None) else {
                    return row;
                };
                row.target_offset = Some(last.target_offset);
                row.action = last.action.to_string();
                if row.position_from == PositionFrom::ForwardSyncs {
                    let starts = match last.action {
                        Action::Commit | Action::Clamp(_) | Action::Unchanged => {
                            Some(last.target_offset)
                        }
                        Action::Skip(_) | Action::Failed(_) => last.current_offset,
                    };
                    let lands_at = row
                        .sync
                        .map(|s| s.upstream + (row.dr_committed - s.downstream));
                    row.may_reread = lands_at
                        .zip(starts)
                        .map(|(lands, starts)| (lands - starts).max(0));
                }
                row
            })
            .collect()
    }
}

/// Each group's committed offsets on `cluster` for `partitions`, in the order asked; a
/// partition it has none for is absent. One failing group fails the mapping.
async fn committed(
    flow: &Flow,
    cluster: &crate::kafka::Cluster,
    groups: &[String],
    partitions: &[TopicPartition],
    batching: Batching,
    bound: &mut Bound,
) -> Result<Vec<BTreeMap<TopicPartition, i64>>, TranslateError> {
    let role = if std::ptr::eq(cluster, &flow.source) {
        flow.source_plan.role
    } else {
        flow.target_plan.role
    };
    let asks: Vec<GroupPartitions> = groups
        .iter()
        .map(|g| GroupPartitions {
            group: g.clone(),
            partitions: partitions.to_vec(),
        })
        .collect();
    let answers = bound
        .wait(cluster.batch_committed_offsets(&asks, batching.concurrency))
        .await
        .map_err(|cut: Cut| TranslateError::Cut {
            call: Call::AllCommittedOffsets {
                groups: groups.len(),
                target: role,
            },
            cut,
        })?;
    groups
        .iter()
        .zip(answers)
        .map(|(group, answer)| {
            let offsets = answer.map_err(|error| TranslateError::Kafka {
                call: Call::CommittedOffsets {
                    group: group.clone(),
                    target: role,
                },
                error,
            })?;
            Ok(offsets
                .into_iter()
                .filter_map(|(tp, o)| Some((tp, o?)))
                .collect())
        })
        .collect()
}

/// The primary's watermarks of the replicated partitions, in one call; a partition it lacks is
/// absent.
async fn watermarks(
    back: &Flow,
    partitions: &[TopicPartition],
    bound: &mut Bound,
) -> Result<HashMap<TopicPartition, Watermarks>, TranslateError> {
    let target = back.target_plan.role;
    let answers = call(
        bound,
        Call::Watermarks { target },
        back.target.batch_watermarks(partitions),
    )
    .await?;
    Ok(partitions
        .iter()
        .cloned()
        .zip(answers)
        .filter_map(|(tp, w)| Some((tp, w.ok()?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Direction;
    use crate::replication::flow::tests::flow;
    use crate::replication::{Clamp, Skip};

    fn sync(upstream: i64, downstream: i64) -> SyncUsed {
        SyncUsed {
            upstream,
            downstream,
        }
    }

    fn offset_sync(partition: i32, upstream: i64, downstream: i64) -> OffsetSync {
        OffsetSync {
            topic: "orders".to_owned(),
            partition,
            upstream_offset: upstream,
            downstream_offset: downstream,
        }
    }

    #[test]
    fn a_commit_at_the_syncs_downstream_offset_starts_at_its_upstream_offset() {
        // The group has not read the synced record yet: nothing to read again.
        assert_eq!(reverse_position(480, Some(sync(500, 480))), Some((500, 0)));
    }

    #[test]
    fn a_commit_past_the_sync_starts_one_past_its_upstream_offset_and_rereads_the_gap() {
        // The group read the synced record and 9 more copies: at most those 9 again.
        assert_eq!(reverse_position(490, Some(sync(500, 480))), Some((501, 9)));
        assert_eq!(reverse_position(481, Some(sync(500, 480))), Some((501, 0)));
    }

    #[test]
    fn a_commit_behind_every_sync_has_no_position() {
        assert_eq!(reverse_position(479, Some(sync(500, 480))), None);
        assert_eq!(reverse_position(479, None), None);
    }

    #[test]
    fn the_index_keeps_the_newest_sync_at_or_below_each_commit_in_log_order() {
        let mut index = SyncIndex::new([
            (("orders".to_owned(), 0), 15),
            (("orders".to_owned(), 0), 5),
            (("orders".to_owned(), 0), 2),
            (("orders".to_owned(), 1), 7),
        ]);
        for (i, s) in [
            offset_sync(0, 0, 0),
            offset_sync(0, 4, 3),
            offset_sync(1, 10, 8),
            offset_sync(0, 14, 14),
            offset_sync(0, 20, 16),
            offset_sync(2, 1, 1),
        ]
        .iter()
        .enumerate()
        {
            index.push(s, i as i64);
        }
        assert_eq!(
            index.newest_at_or_below("orders", 0, 15),
            Some((sync(14, 14), 3))
        );
        assert_eq!(
            index.newest_at_or_below("orders", 0, 5),
            Some((sync(4, 3), 1))
        );
        assert_eq!(
            index.newest_at_or_below("orders", 0, 2),
            Some((sync(0, 0), 0))
        );
        assert_eq!(index.newest_at_or_below("orders", 1, 7), None, "8 > 7");
        assert_eq!(index.newest_at_or_below("orders", 0, 6), None, "not asked");
        // A replica recreated on DR: its offsets start again, and the newer sync wins.
        index.push(&offset_sync(0, 30, 1), 9);
        assert_eq!(
            index.newest_at_or_below("orders", 0, 15),
            Some((sync(30, 1), 9))
        );
        index.push_record(None, None, 10);
        assert_eq!(index.counts(), (1, 1), "a tombstone is not a sync");
    }

    #[tokio::test]
    async fn the_identity_policy_is_skipped_with_its_reason() {
        let back = flow("policy: identity", Direction::Failback);
        let forward = flow("policy: identity", Direction::Failover);
        let mut bound = Bound::until(tokio::time::Instant::now());
        let mapped = map_home(
            &back,
            &forward,
            &["g".to_owned()],
            &KnownStates::new(),
            false,
            Batching::default(),
            &mut bound,
        )
        .await
        .expect("no call is made");
        match mapped {
            Reverse::Skipped(why) => {
                assert_eq!(why, IDENTITY_SKIP);
                assert!(why.contains("cannot be mapped back"), "{why}");
            }
            Reverse::Mapped(_) => panic!("mapped under the identity policy"),
        }
    }

    fn row(partition: i32, committed: i64, sync: Option<SyncUsed>) -> ReversePartition {
        let rule = reverse_position(committed, sync);
        ReversePartition {
            replica_topic: "primary.orders".to_owned(),
            topic: "orders".to_owned(),
            partition,
            dr_committed: committed,
            sync,
            position: rule.map(|r| r.0),
            reread_bound: rule.map(|r| r.1),
            position_from: if rule.is_some() {
                PositionFrom::ForwardSyncs
            } else {
                PositionFrom::None
            },
            target_offset: None,
            current_offset: None,
            action: "skip: no offset sync".to_owned(),
            may_reread: None,
        }
    }

    fn translation(partition: i32, target_offset: i64, action: Action) -> PartitionTranslation {
        PartitionTranslation {
            source_topic: "primary.orders".to_owned(),
            target_topic: "orders".to_owned(),
            partition,
            source_offset: 0,
            target_offset,
            current_offset: Some(10),
            checkpoint_age_ms: 0,
            action,
        }
    }

    /// The rows and translations of the mapping of one group, through the forward rules.
    fn mapped(rows: Vec<ReversePartition>) -> ReverseGroup {
        let marks = Watermarks {
            topic: "orders".to_owned(),
            partition: 0,
            low: 0,
            high: 100,
        };
        let translations = rows
            .iter()
            .filter_map(|r| {
                let (offset, action) = place(r.position?, Some(10), Some(&marks), false);
                Some(translation(r.partition, offset, action))
            })
            .collect();
        ReverseGroup {
            group: "g".to_owned(),
            syncs_topic: "mm2-offset-syncs.dr.internal".to_owned(),
            partitions: rows,
            translations,
            state: GroupState::Idle("Empty".to_owned()),
            members: None,
        }
    }

    #[test]
    fn the_further_position_wins_and_each_row_says_where_it_came_from() {
        // 0: only the mapping knows it. 1: the mapping is further than the checkpoint. 2: the
        // checkpoint is further. 3: the group is behind every sync. 4: the mapping would
        // move the group back from its commit at home (10).
        let mut group = mapped(vec![
            row(0, 15, Some(sync(14, 14))),
            row(1, 15, Some(sync(12, 12))),
            row(2, 15, Some(sync(12, 12))),
            row(3, 15, None),
            row(4, 5, Some(sync(4, 4))),
        ]);
        let mut plan = GroupTranslation {
            group: "g".to_owned(),
            state: GroupState::Idle("Empty".to_owned()),
            partitions: vec![
                translation(1, 11, Action::Commit),
                translation(2, 14, Action::Commit),
            ],
        };
        group.combine_into(&mut plan);
        let rows = group.finish(&plan);
        type Summary<'a> = (i32, PositionFrom, Option<i64>, &'a str, Option<i64>);
        let summary: Vec<Summary<'_>> = rows
            .iter()
            .map(|r| {
                (
                    r.partition,
                    r.position_from,
                    r.target_offset,
                    r.action.as_str(),
                    r.may_reread,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (0, PositionFrom::ForwardSyncs, Some(15), "commit", Some(0)),
                (1, PositionFrom::ForwardSyncs, Some(13), "commit", Some(2)),
                (2, PositionFrom::ReverseCheckpoint, Some(14), "commit", None),
                (3, PositionFrom::None, None, "skip: no offset sync", None),
                // Left at 10, where its commit on DR (5) lands past: nothing read again.
                (
                    4,
                    PositionFrom::ForwardSyncs,
                    Some(5),
                    "skip: would rewind",
                    Some(0)
                ),
            ]
        );
        let committed: Vec<(i32, i64)> = plan
            .commits()
            .into_iter()
            .map(|(tp, o)| (tp.partition, o))
            .collect();
        assert_eq!(committed, [(1, 13), (2, 14), (0, 15)]);

        // A group left alone (live members) starts where it was: 10 on partition 0, which
        // its commit on DR lands 5 past.
        plan.refuse();
        let rows = group.finish(&plan);
        assert_eq!(rows[0].action, "skip: active");
        assert_eq!(rows[0].may_reread, Some(5));
    }

    #[test]
    fn a_position_past_the_primarys_log_end_is_clamped_as_a_checkpoint_is() {
        let end = Watermarks {
            topic: "orders".to_owned(),
            partition: 0,
            low: 0,
            high: 12,
        };
        let (offset, action) = place(15, Some(10), Some(&end), false);
        assert_eq!(offset, 12);
        assert_eq!(
            action,
            Action::Clamp(Clamp::PastLogEnd {
                translated: 15,
                log_end: 12
            })
        );
        assert_eq!(
            place(15, None, None, false).1,
            Action::Skip(Skip::NoSuchPartition)
        );
    }
}
