//! Offset translation planning. Per group: what MM2's checkpoints say, against what the target
//! holds, decided per partition ([`plan_group`]); then, if asked, committed ([`apply`]). The
//! `translate_offsets` step and `kdr offsets translate` both go this one way and differ only in
//! what they record, print and refuse.
//!
//! The decisions are values, never words compared: what gets committed, and the exit code, do
//! not depend on how a decision is worded in the log or on the screen.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::kafka::{GroupDescription, KafkaError, TopicPartition, Watermarks};
use crate::mm2::CheckpointIndex;
use crate::plan::{Role, Selector};

use super::{Bound, Cut, Flow, now_ms};

/// What translating does to one partition of a group. Only [`Action::Commit`] and
/// [`Action::Clamp`] write an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Commit the translated offset.
    Commit,
    /// Commit the translation moved into the target's log.
    Clamp(Clamp),
    /// The group is there already.
    Unchanged,
    /// Leave the partition alone.
    Skip(Skip),
    /// A commit that was set out to be done and could not be: why.
    Failed(String),
}

/// Why a translation was moved, and where to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    /// The translated offset is gone from the target (retention): its log start instead.
    BelowLogStart { translated: i64, log_start: i64 },
    /// The translated offset is not on the target yet: its log end instead.
    PastLogEnd { translated: i64, log_end: i64 },
}

/// Why a partition is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The checkpoint names a partition the target does not have.
    NoSuchPartition,
    /// The translation is behind the group's offset on the target, and rewinds are not allowed.
    WouldRewind,
    /// The group has live members on the target.
    Active,
}

impl Action {
    /// Whether applying the translation writes this partition's offset.
    pub fn commits(&self) -> bool {
        matches!(self, Action::Commit | Action::Clamp(_))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Commit => f.write_str("commit"),
            Action::Clamp(Clamp::BelowLogStart {
                translated,
                log_start,
            }) => write!(f, "clamp: {translated} is below the log start {log_start}"),
            Action::Clamp(Clamp::PastLogEnd {
                translated,
                log_end,
            }) => write!(f, "clamp: {translated} is past the log end {log_end}"),
            Action::Unchanged => f.write_str("unchanged"),
            Action::Skip(Skip::NoSuchPartition) => {
                f.write_str("skip: no such partition on the target")
            }
            Action::Skip(Skip::WouldRewind) => f.write_str("skip: would rewind"),
            Action::Skip(Skip::Active) => f.write_str("skip: active"),
            Action::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// The incident log and `--output json` carry the words.
impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A consumer group's state on the target, as far as translating it is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupState {
    /// Live members: the broker would refuse a commit, and they would overwrite it.
    Active,
    /// No live members; the broker's word for the state (`Empty`, `Dead`, …).
    Idle(String),
    /// The target did not say. This does not stop a translation: the broker's refusal of a
    /// commit to a live group is the last guard.
    Unknown(UnknownState),
}

/// Why a group's state is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownState {
    /// The cluster does not report group membership.
    NotReported,
    /// Asking failed.
    Failed(String),
    /// No answer before the deadline.
    NoAnswer,
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupState::Active => f.write_str("active"),
            GroupState::Idle(state) => f.write_str(&state.to_lowercase()),
            GroupState::Unknown(UnknownState::NotReported) => {
                f.write_str("unknown (membership not reported by this cluster)")
            }
            GroupState::Unknown(UnknownState::Failed(e)) => write!(f, "unknown ({e})"),
            GroupState::Unknown(UnknownState::NoAnswer) => {
                f.write_str("unknown (no answer in time)")
            }
        }
    }
}

impl Serialize for GroupState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One partition of one group's offset translation: the shape the translate_offsets step logs
/// (and the core of what `kdr offsets translate` prints).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionTranslation {
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
    pub source_offset: i64,
    pub target_offset: i64,
    pub current_offset: Option<i64>,
    pub checkpoint_age_ms: i64,
    pub action: Action,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupTranslation {
    pub group: String,
    pub state: GroupState,
    pub partitions: Vec<PartitionTranslation>,
}

impl GroupTranslation {
    /// The offsets applying the translation commits on the target.
    pub fn commits(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter(|p| p.action.commits())
            .map(|p| {
                (
                    TopicPartition::new(p.target_topic.clone(), p.partition),
                    p.target_offset,
                )
            })
            .collect()
    }

    /// Marks every partition: the group is not touched.
    pub fn refuse(&mut self) {
        self.state = GroupState::Active;
        for p in &mut self.partitions {
            p.action = Action::Skip(Skip::Active);
        }
    }

    /// Marks every partition that was to be committed as failed, for `why`.
    pub fn fail(&mut self, why: &str) {
        for p in self.partitions.iter_mut().filter(|p| p.action.commits()) {
            p.action = Action::Failed(why.to_owned());
        }
    }
}

/// A group's translation, and its live members on the target when it has any.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub translation: GroupTranslation,
    pub members: Option<GroupDescription>,
}

/// A call to a cluster that translating makes, named for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Checkpoints { topic: String, target: Role },
    GroupState { group: String, target: Role },
    CommittedOffsets { group: String, target: Role },
    Watermarks { target: Role },
    Commit { group: String, target: Role },
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Checkpoints { topic, target } => write!(f, "read {topic} on {target}"),
            Call::GroupState { group, target } => {
                write!(f, "read group {group}'s state on {target}")
            }
            Call::CommittedOffsets { group, target } => {
                write!(f, "read group {group}'s committed offsets on {target}")
            }
            Call::Watermarks { target } => write!(f, "read the watermarks on {target}"),
            Call::Commit { group, target } => {
                write!(f, "commit offsets for group {group} on {target}")
            }
        }
    }
}

/// Why a translation could not be planned or applied.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error(
        "no {topic} on {target}: is the {source_alias}->{target_alias} MirrorMaker 2 flow running with emit.checkpoints.enabled?"
    )]
    NoCheckpoints {
        topic: String,
        target: Role,
        source_alias: String,
        target_alias: String,
    },
    #[error("failed to {call}: {error}")]
    Kafka { call: Call, error: KafkaError },
    /// The wait was cut short by the deadline or an interruption; callers say which in their
    /// own words.
    #[error("failed to {call}: {}", match cut { Cut::Deadline => "the deadline passed first", Cut::Interrupted => "interrupted" })]
    Cut { call: Call, cut: Cut },
}

/// Awaits one call under `bound`, naming it in the error.
async fn call<T>(
    bound: &mut Bound,
    call: Call,
    work: impl Future<Output = Result<T, KafkaError>>,
) -> Result<T, TranslateError> {
    match bound.wait(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(error)) => Err(TranslateError::Kafka { call, error }),
        Err(cut) => Err(TranslateError::Cut { call, cut }),
    }
}

/// MM2's checkpoints, read once from the target (each read bounded by `within` too).
pub async fn read_checkpoints(
    flow: &Flow,
    within: Duration,
    bound: &mut Bound,
) -> Result<CheckpointIndex, TranslateError> {
    let (topic, target) = (flow.checkpoints_topic(), flow.target_plan.role);
    let read = Call::Checkpoints {
        topic: topic.clone(),
        target,
    };
    match call(bound, read, flow.checkpoints(within)).await {
        Err(TranslateError::Kafka {
            error: KafkaError::TopicNotFound { .. },
            ..
        }) => Err(TranslateError::NoCheckpoints {
            topic,
            target,
            source_alias: flow.source_alias().to_owned(),
            target_alias: flow.target_alias().to_owned(),
        }),
        other => other,
    }
}

/// The groups to translate: names as given, `re:` patterns matched against the groups that have
/// checkpoints. Sorted, without duplicates.
pub fn resolve_groups(selectors: &[Selector], index: &CheckpointIndex) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in selectors {
        match s {
            Selector::Name(n) => out.push(n.clone()),
            Selector::Pattern { .. } => {
                out.extend(
                    index
                        .groups()
                        .into_iter()
                        .filter(|g| s.matches(g))
                        .map(str::to_owned),
                );
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The target partitions a group has checkpoints for.
pub fn checkpointed_partitions(index: &CheckpointIndex, group: &str) -> Vec<TopicPartition> {
    index
        .for_group(group)
        .iter()
        .map(|(c, _)| TopicPartition::new(c.topic.clone(), c.partition))
        .collect()
}

/// The group's state on the target, and its description when it has live members. Never fails
/// for want of an answer (see [`GroupState::Unknown`]); only an interruption ends it.
async fn target_group_state(
    flow: &Flow,
    group: &str,
    bound: &mut Bound,
) -> Result<(GroupState, Option<GroupDescription>), TranslateError> {
    let asked = Call::GroupState {
        group: group.to_owned(),
        target: flow.target_plan.role,
    };
    Ok(
        match call(bound, asked, flow.target.group_state(group)).await {
            Ok(desc) if desc.has_members() => (GroupState::Active, Some(desc)),
            Ok(desc) => (GroupState::Idle(desc.state), None),
            Err(TranslateError::Kafka {
                error: KafkaError::Unsupported { .. },
                ..
            }) => (GroupState::Unknown(UnknownState::NotReported), None),
            Err(TranslateError::Kafka { error, .. }) => (
                GroupState::Unknown(UnknownState::Failed(error.to_string())),
                None,
            ),
            Err(TranslateError::Cut {
                cut: Cut::Deadline, ..
            }) => (GroupState::Unknown(UnknownState::NoAnswer), None),
            Err(e) => return Err(e),
        },
    )
}

impl Flow {
    /// The group's state on the target as translations report it, and its description when
    /// it has live members; waits at most until `deadline`, and never fails (an unknown state
    /// is [`GroupState::Unknown`]).
    pub async fn target_group_state(
        &self,
        group: &str,
        deadline: tokio::time::Instant,
    ) -> (GroupState, Option<GroupDescription>) {
        target_group_state(self, group, &mut Bound::until(deadline))
            .await
            .unwrap_or((GroupState::Unknown(UnknownState::NoAnswer), None))
    }
}

/// What the target holds for a group's checkpointed partitions.
#[derive(Debug, Clone, Default)]
pub struct TargetPositions {
    /// The group's committed offsets there, `None` where it has none.
    pub current: Vec<(TopicPartition, Option<i64>)>,
    /// The partitions' log start and end offsets.
    pub marks: Vec<Watermarks>,
}

/// Reads the group's state, its committed offsets and the partitions' watermarks on the
/// target, and decides what to do for every checkpointed partition ([`plan_translation`]).
pub async fn plan_group(
    flow: &Flow,
    index: &CheckpointIndex,
    group: &str,
    allow_rewind: bool,
    bound: &mut Bound,
) -> Result<GroupPlan, TranslateError> {
    let target = flow.target_plan.role;
    let (state, members) = target_group_state(flow, group, bound).await?;
    let tps = checkpointed_partitions(index, group);
    let read = Call::CommittedOffsets {
        group: group.to_owned(),
        target,
    };
    let current = call(bound, read, flow.target.committed_offsets(group, &tps)).await?;
    let read = Call::Watermarks { target };
    let marks = call(bound, read, flow.target.watermarks(&tps)).await?;
    let positions = TargetPositions { current, marks };
    let partitions = plan_translation(flow, group, index, &positions, allow_rewind, now_ms());
    Ok(GroupPlan {
        translation: GroupTranslation {
            group: group.to_owned(),
            state,
            partitions,
        },
        members,
    })
}

/// What became of committing a group's translation.
#[derive(Debug)]
pub enum Applied {
    /// These offsets were committed (none when there was nothing to write).
    Committed(Vec<(TopicPartition, i64)>),
    /// The broker refused: the group has live members after all.
    Refused(KafkaError),
}

/// Commits what the translation says to commit, unless the group is active.
pub async fn apply(
    flow: &Flow,
    translation: &GroupTranslation,
    bound: &mut Bound,
) -> Result<Applied, TranslateError> {
    let commits = translation.commits();
    if commits.is_empty() {
        return Ok(Applied::Committed(commits));
    }
    let group = &translation.group;
    let write = Call::Commit {
        group: group.clone(),
        target: flow.target_plan.role,
    };
    match call(bound, write, flow.target.commit_offsets(group, &commits)).await {
        Ok(()) => Ok(Applied::Committed(commits)),
        Err(TranslateError::Kafka {
            error: e @ (KafkaError::GroupNotEmpty { .. } | KafkaError::GroupActive { .. }),
            ..
        }) => Ok(Applied::Refused(e)),
        Err(e) => Err(e),
    }
}

/// What to do for every checkpointed partition of a group, given what the target holds.
/// Translations below the log start or past the log end are clamped; a translation behind the
/// group's current offset is skipped unless `allow_rewind`. Pure: the reads are the caller's.
pub fn plan_translation(
    flow: &Flow,
    group: &str,
    index: &CheckpointIndex,
    target: &TargetPositions,
    allow_rewind: bool,
    now_ms: i64,
) -> Vec<PartitionTranslation> {
    let mut partitions = Vec::new();
    for (checkpoint, ts) in index.for_group(group) {
        let tp = (checkpoint.topic.as_str(), checkpoint.partition);
        let current_offset = target
            .current
            .iter()
            .find(|(t, _)| (t.topic.as_str(), t.partition) == tp)
            .and_then(|(_, o)| *o);
        let mark = target
            .marks
            .iter()
            .find(|w| (w.topic.as_str(), w.partition) == tp);
        let translated = checkpoint.downstream_offset;
        let (target_offset, placed) = match mark {
            None => (translated, Some(Action::Skip(Skip::NoSuchPartition))),
            Some(w) if translated < w.low => (
                w.low,
                Some(Action::Clamp(Clamp::BelowLogStart {
                    translated,
                    log_start: w.low,
                })),
            ),
            Some(w) if translated > w.high => (
                w.high,
                Some(Action::Clamp(Clamp::PastLogEnd {
                    translated,
                    log_end: w.high,
                })),
            ),
            Some(_) => (translated, None),
        };
        let action = match placed {
            Some(skip @ Action::Skip(_)) => skip,
            _ if current_offset.is_some_and(|c| target_offset < c) && !allow_rewind => {
                Action::Skip(Skip::WouldRewind)
            }
            _ if current_offset == Some(target_offset) => Action::Unchanged,
            None => Action::Commit,
            Some(clamp) => clamp,
        };
        partitions.push(PartitionTranslation {
            source_topic: flow.source_topic_of(&checkpoint.topic),
            target_topic: checkpoint.topic.clone(),
            partition: checkpoint.partition,
            source_offset: checkpoint.upstream_offset,
            target_offset,
            current_offset,
            checkpoint_age_ms: now_ms - ts,
            action,
        });
    }
    partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm2::Checkpoint;
    use crate::plan::Direction;
    use crate::replication::flow::tests::{flow, plan};

    /// Checkpoints as MM2 writes them, stamped 1000.
    fn index(checkpoints: &[(&str, &str, i32, i64, i64)]) -> CheckpointIndex {
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = checkpoints
            .iter()
            .map(|(group, topic, partition, upstream, downstream)| {
                let c = Checkpoint {
                    group: (*group).to_owned(),
                    topic: (*topic).to_owned(),
                    partition: *partition,
                    upstream_offset: *upstream,
                    downstream_offset: *downstream,
                    metadata: String::new(),
                };
                (
                    c.encode_key().expect("key"),
                    c.encode_value().expect("value"),
                )
            })
            .collect();
        CheckpointIndex::from_records(encoded.iter().enumerate().map(|(i, (k, v))| {
            crate::mm2::checkpoints::RawRecord {
                offset: i as i64,
                key: Some(k),
                value: Some(v),
                timestamp_ms: 1000,
            }
        }))
    }

    fn marks(low: i64, high: i64, partitions: i32) -> Vec<Watermarks> {
        (0..partitions)
            .map(|p| Watermarks {
                topic: "primary.orders".to_owned(),
                partition: p,
                low,
                high,
            })
            .collect()
    }

    fn actions(partitions: &[PartitionTranslation]) -> Vec<(i64, Action)> {
        partitions
            .iter()
            .map(|p| (p.target_offset, p.action.clone()))
            .collect()
    }

    #[test]
    fn translation_commits_clamps_and_never_rewinds_unless_allowed() {
        let flow = flow("policy: default", Direction::Failover);
        let index = index(&[
            ("g", "primary.orders", 0, 100, 90),
            ("g", "primary.orders", 1, 100, 5),
            ("g", "primary.orders", 2, 100, 500),
            ("g", "primary.orders", 3, 100, 40),
            ("g", "primary.orders", 4, 100, 60),
            ("g", "primary.orders", 5, 100, 70),
        ]);
        let tp = |p| TopicPartition::new("primary.orders", p);
        let target = TargetPositions {
            current: vec![(tp(3), Some(50)), (tp(4), Some(60)), (tp(0), None)],
            marks: marks(10, 200, 5),
        };
        let planned = plan_translation(&flow, "g", &index, &target, false, 1500);
        assert_eq!(
            actions(&planned),
            [
                (90, Action::Commit),
                (
                    10,
                    Action::Clamp(Clamp::BelowLogStart {
                        translated: 5,
                        log_start: 10
                    })
                ),
                (
                    200,
                    Action::Clamp(Clamp::PastLogEnd {
                        translated: 500,
                        log_end: 200
                    })
                ),
                (40, Action::Skip(Skip::WouldRewind)),
                (60, Action::Unchanged),
                (70, Action::Skip(Skip::NoSuchPartition)),
            ]
        );
        assert!(planned.iter().all(|p| p.source_topic == "orders"));
        assert!(planned.iter().all(|p| p.checkpoint_age_ms == 500));
        assert_eq!(planned[3].current_offset, Some(50));
        let mut group = GroupTranslation {
            group: "g".to_owned(),
            state: GroupState::Idle("Empty".to_owned()),
            partitions: planned,
        };
        assert_eq!(
            group.commits(),
            [(tp(0), 90), (tp(1), 10), (tp(2), 200)],
            "only commits and clamps are written"
        );
        group.fail("no leader");
        assert!(group.commits().is_empty(), "failed partitions are not");
        group.refuse();
        assert_eq!(group.state, GroupState::Active);
        assert!(
            group
                .partitions
                .iter()
                .all(|p| p.action == Action::Skip(Skip::Active))
        );

        let rewinding = plan_translation(&flow, "g", &index, &target, true, 1500);
        assert_eq!(rewinding[3].action, Action::Commit);
    }

    /// The words are the incident log's and `--output json`'s contract; what is committed
    /// must not hang on them.
    #[test]
    fn decisions_serialise_to_the_words_of_the_json_contract() {
        let words = |a: Action| serde_json::to_value(a).expect("json");
        assert_eq!(words(Action::Commit), "commit");
        assert_eq!(
            words(Action::Clamp(Clamp::BelowLogStart {
                translated: 5,
                log_start: 10
            })),
            "clamp: 5 is below the log start 10"
        );
        assert_eq!(
            words(Action::Clamp(Clamp::PastLogEnd {
                translated: 500,
                log_end: 200
            })),
            "clamp: 500 is past the log end 200"
        );
        assert_eq!(words(Action::Unchanged), "unchanged");
        assert_eq!(
            words(Action::Skip(Skip::NoSuchPartition)),
            "skip: no such partition on the target"
        );
        assert_eq!(words(Action::Skip(Skip::WouldRewind)), "skip: would rewind");
        assert_eq!(words(Action::Skip(Skip::Active)), "skip: active");
        assert_eq!(
            words(Action::Failed("timed out".to_owned())),
            "failed: timed out"
        );

        let state = |s: GroupState| serde_json::to_value(s).expect("json");
        assert_eq!(state(GroupState::Active), "active");
        assert_eq!(state(GroupState::Idle("Empty".to_owned())), "empty");
        assert_eq!(state(GroupState::Idle("Dead".to_owned())), "dead");
        assert_eq!(
            state(GroupState::Unknown(UnknownState::NotReported)),
            "unknown (membership not reported by this cluster)"
        );
        assert_eq!(
            state(GroupState::Unknown(UnknownState::Failed("boom".to_owned()))),
            "unknown (boom)"
        );
        assert_eq!(
            state(GroupState::Unknown(UnknownState::NoAnswer)),
            "unknown (no answer in time)"
        );
    }

    #[test]
    fn only_commits_and_clamps_write() {
        let clamp = Clamp::PastLogEnd {
            translated: 2,
            log_end: 1,
        };
        assert!(Action::Commit.commits());
        assert!(Action::Clamp(clamp).commits());
        for idle in [
            Action::Unchanged,
            Action::Skip(Skip::Active),
            Action::Skip(Skip::WouldRewind),
            Action::Skip(Skip::NoSuchPartition),
            Action::Failed("commit".to_owned()),
        ] {
            assert!(!idle.commits(), "{idle}");
        }
    }

    #[test]
    fn groups_are_named_or_matched_against_the_checkpointed_ones() {
        let plan = plan("policy: default");
        let index = index(&[
            ("app-1", "primary.orders", 0, 1, 1),
            ("app-2", "primary.orders", 0, 1, 1),
            ("other", "primary.orders", 0, 1, 1),
        ]);
        assert_eq!(
            resolve_groups(&plan.replication.groups, &index),
            ["app-1", "app-2", "g"]
        );
    }
}
