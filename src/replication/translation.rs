//! Offset translation planning. Per group: what MM2's checkpoints say, against what the target
//! holds, decided per partition ([`plan_group`]); then, if asked, committed ([`apply`]). The
//! `translate_offsets` step and `kdr offsets translate` both go this one way and differ only in
//! what they record, print and refuse.
//!
//! The decisions are values, never words compared: what gets committed, and the exit code, do
//! not depend on how a decision is worded in the log or on the screen.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::kafka::{
    GroupCommit, GroupDescription, GroupPartitions, KafkaError, TopicPartition, Watermarks,
};
use crate::mm2::{Checkpoint, CheckpointIndex};
use crate::plan::{Role, Selector};

use super::{Bound, Cut, Flow};

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

impl GroupState {
    /// The target's listing of its groups answered without naming this one (`Dead`): it
    /// holds no committed offset for it.
    pub fn unlisted(&self) -> bool {
        matches!(self, GroupState::Idle(state) if state.eq_ignore_ascii_case("dead"))
    }
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
    Checkpoints {
        topic: String,
        target: Role,
    },
    GroupState {
        group: String,
        target: Role,
    },
    CommittedOffsets {
        group: String,
        target: Role,
    },
    Watermarks {
        target: Role,
    },
    Topics {
        target: Role,
    },
    /// The names of every group the cluster knows.
    GroupNames {
        target: Role,
    },
    Commit {
        group: String,
        target: Role,
    },
    /// The batched calls, for many groups at once.
    GroupStates {
        groups: usize,
        target: Role,
    },
    AllCommittedOffsets {
        groups: usize,
        target: Role,
    },
    Commits {
        groups: usize,
        target: Role,
    },
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
            Call::Topics { target } => write!(f, "list the topics on {target}"),
            Call::GroupNames { target } => write!(f, "list the consumer groups on {target}"),
            Call::Commit { group, target } => {
                write!(f, "commit offsets for group {group} on {target}")
            }
            Call::GroupStates { groups, target } => {
                write!(f, "read the states of {groups} groups on {target}")
            }
            Call::AllCommittedOffsets { groups, target } => {
                write!(
                    f,
                    "read the committed offsets of {groups} groups on {target}"
                )
            }
            Call::Commits { groups, target } => {
                write!(f, "commit offsets for {groups} groups on {target}")
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
pub(super) async fn call<T>(
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

/// MM2's checkpoints, read once from the target (each read bounded by `within` too), each
/// record counted in `read` as it is indexed.
pub async fn read_checkpoints(
    flow: &Flow,
    within: Duration,
    read: Arc<AtomicU64>,
    bound: &mut Bound,
) -> Result<CheckpointIndex, TranslateError> {
    let (topic, target) = (flow.checkpoints_topic(), flow.target_plan.role);
    let asked = Call::Checkpoints {
        topic: topic.clone(),
        target,
    };
    match call(bound, asked, flow.checkpoints_counted(within, read)).await {
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
    let answer = call(bound, asked, flow.target.group_state(group)).await;
    let mut states = states_from(answer, 1, |desc| vec![described(desc)])?;
    Ok(states.remove(0))
}

/// Each of `count` groups' state from the answer to a question about their states: an answer
/// that did not come is every group's [`GroupState::Unknown`]; only an interruption fails.
fn states_from<T>(
    answer: Result<T, TranslateError>,
    count: usize,
    each: impl FnOnce(T) -> Vec<(GroupState, Option<GroupDescription>)>,
) -> Result<Vec<(GroupState, Option<GroupDescription>)>, TranslateError> {
    let unknown = |why| Ok(vec![(GroupState::Unknown(why), None); count]);
    match answer {
        Ok(answer) => Ok(each(answer)),
        Err(TranslateError::Kafka {
            error: KafkaError::Unsupported { .. },
            ..
        }) => unknown(UnknownState::NotReported),
        Err(TranslateError::Kafka { error, .. }) => {
            unknown(UnknownState::Failed(error.to_string()))
        }
        Err(TranslateError::Cut {
            cut: Cut::Deadline, ..
        }) => unknown(UnknownState::NoAnswer),
        Err(e) => Err(e),
    }
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
#[derive(Debug, Clone, Copy)]
pub struct TargetPositions<'a> {
    /// The group's committed offsets there; a partition it has none for is absent.
    pub current: &'a HashMap<TopicPartition, i64>,
    /// The log start and end offsets of every partition the target has; one it does not have
    /// is absent.
    pub marks: &'a HashMap<TopicPartition, Watermarks>,
}

/// How the Kafka look-ups of a translation are batched.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// How many groups' offset fetches or commits are in flight at once.
    pub concurrency: NonZeroUsize,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            concurrency: crate::kafka::DEFAULT_CONCURRENCY,
        }
    }
}

/// Each of a group's checkpointed partitions' committed offset on one cluster, in the order of
/// [`CheckpointIndex::for_group`]; `None` where it has none, or where it was not asked. One
/// number per partition: thousands of groups' offsets are held in a few megabytes, and each
/// group's translation is made from them when its turn comes.
pub type Offsets = Vec<Option<i64>>;

/// What the target holds that every group's translation is planned against, read once.
#[derive(Debug, Clone)]
pub struct TargetView {
    /// Each group's state, and its description when it has live members, in the order asked.
    pub states: Vec<(GroupState, Option<GroupDescription>)>,
    /// The log start and end of every checkpointed partition the target has.
    pub marks: HashMap<TopicPartition, Watermarks>,
    /// Each group's committed offsets on the target, in the order asked.
    pub current: Vec<Offsets>,
}

impl TargetView {
    /// Each of `groups`' state on the target and its members when live, by name: `groups` as
    /// the view was read for them, in order.
    pub fn known_states<'g>(&self, groups: &'g [String]) -> super::KnownStates<'g> {
        groups
            .iter()
            .map(String::as_str)
            .zip(self.states.iter().cloned())
            .collect()
    }

    /// The plan of `group`, the `place`-th of the groups the view was read for: its
    /// translation ([`plan_read`]) and its description when it has live members. A checkpoint
    /// for a partition the target lacks is that partition's `skip: no such partition on the
    /// target`, never the whole translation's failure.
    pub fn plan(
        &self,
        flow: &Flow,
        index: &CheckpointIndex,
        group: &str,
        place: usize,
        allow_rewind: bool,
        now: i64,
    ) -> GroupPlan {
        let (state, members) = self.states[place].clone();
        GroupPlan {
            translation: GroupTranslation {
                group: group.to_owned(),
                state,
                partitions: plan_read(
                    flow,
                    index,
                    group,
                    &self.current[place],
                    &self.marks,
                    allow_rewind,
                    now,
                ),
            },
            members,
        }
    }
}

/// How many groups' offsets are asked in one batch: the asks and answers of a batch are whole
/// topic names per partition, so a bounded batch keeps them small while every batch still keeps
/// `--concurrency` calls in flight.
pub const GROUPS_PER_BATCH: usize = 500;

/// Reads what the target holds for `groups` ([`TargetView`]): their states from one listing
/// and the watermarks of their checkpointed partitions in one batch, both at once, then their
/// committed offsets for the partitions the target has, `batching.concurrency` groups in
/// flight. The first group whose offsets cannot be read fails the whole read.
pub async fn read_target(
    flow: &Flow,
    index: &CheckpointIndex,
    groups: &[String],
    batching: Batching,
    bound: &mut Bound,
) -> Result<TargetView, TranslateError> {
    let mut marks_bound = bound.clone();
    let (states, marks) = tokio::join!(
        target_group_states(flow, groups, bound),
        target_marks(flow, index, groups, &mut marks_bound),
    );
    let (states, marks) = (states?, marks?);
    let unlisted: HashSet<&str> = groups
        .iter()
        .zip(&states)
        .filter(|(_, (state, _))| state.unlisted())
        .map(|(group, _)| group.as_str())
        .collect();
    let current = target_committed(flow, index, groups, &marks, &unlisted, batching, bound).await?;
    Ok(TargetView {
        states,
        marks,
        current,
    })
}

/// The partitions of a group's checkpoints, in the order of [`CheckpointIndex::for_group`].
pub fn checkpointed_partitions(index: &CheckpointIndex, group: &str) -> Vec<TopicPartition> {
    index
        .for_group(group)
        .into_iter()
        .map(|(c, _)| TopicPartition::new(c.topic, c.partition))
        .collect()
}

/// The groups' committed offsets on the target for the checkpointed partitions it has, in
/// batches of [`GROUPS_PER_BATCH`] groups; those the target's listing did not name
/// (`unlisted`) are not asked.
async fn target_committed(
    flow: &Flow,
    index: &CheckpointIndex,
    groups: &[String],
    marks: &HashMap<TopicPartition, Watermarks>,
    unlisted: &HashSet<&str>,
    batching: Batching,
    bound: &mut Bound,
) -> Result<Vec<Offsets>, TranslateError> {
    let target = flow.target_plan.role;
    let mut current = Vec::with_capacity(groups.len());
    for batch in groups.chunks(GROUPS_PER_BATCH) {
        let checkpointed: Vec<Vec<TopicPartition>> = batch
            .iter()
            .map(|g| checkpointed_partitions(index, g))
            .collect();
        let asks: Vec<GroupPartitions> = batch
            .iter()
            .zip(&checkpointed)
            .map(|(group, partitions)| GroupPartitions {
                group: group.clone(),
                partitions: partitions
                    .iter()
                    .filter(|tp| marks.contains_key(*tp))
                    .cloned()
                    .collect(),
            })
            .collect();
        let read = flow.target.batch_committed_offsets_listed(
            &asks,
            |group| unlisted.contains(group),
            batching.concurrency,
        );
        let answers = bound.wait(read).await.map_err(|cut| TranslateError::Cut {
            call: Call::AllCommittedOffsets {
                groups: groups.len(),
                target,
            },
            cut,
        })?;
        for ((group, partitions), answer) in batch.iter().zip(checkpointed).zip(answers) {
            let mut found = answer
                .map_err(|error| TranslateError::Kafka {
                    call: Call::CommittedOffsets {
                        group: group.clone(),
                        target,
                    },
                    error,
                })?
                .into_iter();
            // The answer holds the asked partitions, in order: those the target has.
            let offsets = partitions
                .iter()
                .map(|tp| {
                    if marks.contains_key(tp) {
                        found.next().and_then(|(_, offset)| offset)
                    } else {
                        None
                    }
                })
                .collect();
            current.push(offsets);
        }
    }
    Ok(current)
}

/// One group's translation ([`plan_translation`]) from its committed offsets on the target
/// (`current`, as [`TargetView::current`] holds them) and the target's watermarks. Pure.
pub fn plan_read(
    flow: &Flow,
    index: &CheckpointIndex,
    group: &str,
    current: &Offsets,
    marks: &HashMap<TopicPartition, Watermarks>,
    allow_rewind: bool,
    now_ms: i64,
) -> Vec<PartitionTranslation> {
    let checkpoints = index.for_group(group);
    let current: HashMap<TopicPartition, i64> = checkpoints
        .iter()
        .zip(current)
        .filter_map(|((c, _), offset)| {
            Some((
                TopicPartition::new(c.topic.clone(), c.partition),
                (*offset)?,
            ))
        })
        .collect();
    let positions = TargetPositions {
        current: &current,
        marks,
    };
    plan_checkpoints(flow, &checkpoints, positions, allow_rewind, now_ms)
}

/// The groups' states on the target from one listing, as [`target_group_state`] gives each.
pub(super) async fn target_group_states(
    flow: &Flow,
    groups: &[String],
    bound: &mut Bound,
) -> Result<Vec<(GroupState, Option<GroupDescription>)>, TranslateError> {
    let asked = Call::GroupStates {
        groups: groups.len(),
        target: flow.target_plan.role,
    };
    let answer = call(bound, asked, flow.target.batch_group_states(groups)).await;
    states_from(answer, groups.len(), |descriptions| {
        descriptions.into_iter().map(described).collect()
    })
}

/// A group's state as translating sees it, and its description when it has live members.
fn described(desc: GroupDescription) -> (GroupState, Option<GroupDescription>) {
    if desc.has_members() {
        (GroupState::Active, Some(desc))
    } else {
        (GroupState::Idle(desc.state), None)
    }
}

/// The watermarks on the target of every checkpointed partition of `groups`, asked once. A
/// partition the target does not have is left out; any other failure fails the translation,
/// as it did when each group asked for its own.
async fn target_marks(
    flow: &Flow,
    index: &CheckpointIndex,
    groups: &[String],
    bound: &mut Bound,
) -> Result<HashMap<TopicPartition, Watermarks>, TranslateError> {
    let target = flow.target_plan.role;
    let union: BTreeSet<TopicPartition> = groups
        .iter()
        .flat_map(|g| checkpointed_partitions(index, g))
        .collect();
    let union: Vec<TopicPartition> = union.into_iter().collect();
    let read = Call::Watermarks { target };
    let answers = call(bound, read, flow.target.batch_watermarks(&union)).await?;
    let mut marks = HashMap::with_capacity(union.len());
    for (tp, answer) in union.into_iter().zip(answers) {
        match answer {
            Ok(w) => {
                marks.insert(tp, w);
            }
            Err(KafkaError::TopicNotFound { .. } | KafkaError::PartitionNotFound { .. }) => {}
            Err(error) => {
                return Err(TranslateError::Kafka {
                    call: Call::Watermarks { target },
                    error,
                });
            }
        }
    }
    Ok(marks)
}

/// What became of committing a group's translation.
#[derive(Debug)]
pub enum Applied {
    /// These offsets were committed (none when there was nothing to write).
    Committed(Vec<(TopicPartition, i64)>),
    /// The broker refused: the group has live members after all.
    Refused(KafkaError),
    /// The commit failed for another reason.
    Failed(KafkaError),
}

/// Commits what each translation says to commit, `batching.concurrency` groups in flight;
/// each group's outcome in the order given. The caller leaves out groups it refuses.
pub async fn apply(
    flow: &Flow,
    translations: &[&GroupTranslation],
    batching: Batching,
    bound: &mut Bound,
) -> Result<Vec<Applied>, TranslateError> {
    let commits: Vec<GroupCommit> = translations
        .iter()
        .map(|t| GroupCommit {
            group: t.group.clone(),
            offsets: t.commits(),
        })
        .filter(|c| !c.offsets.is_empty())
        .collect();
    let write = flow
        .target
        .batch_commit_offsets(&commits, batching.concurrency);
    let mut answers = bound
        .wait(write)
        .await
        .map_err(|cut| TranslateError::Cut {
            call: Call::Commits {
                groups: commits.len(),
                target: flow.target_plan.role,
            },
            cut,
        })?
        .into_iter()
        .zip(commits);
    Ok(translations
        .iter()
        .map(|t| {
            if !t.partitions.iter().any(|p| p.action.commits()) {
                return Applied::Committed(Vec::new());
            }
            match answers.next() {
                Some((Ok(()), commit)) => Applied::Committed(commit.offsets),
                Some((
                    Err(e @ (KafkaError::GroupNotEmpty { .. } | KafkaError::GroupActive { .. })),
                    _,
                )) => Applied::Refused(e),
                Some((Err(e), _)) => Applied::Failed(e),
                None => unreachable!("one answer per group with commits"),
            }
        })
        .collect())
}

/// Each group's committed offsets on the source, for the source partitions of its translation,
/// in the order given; `batching.concurrency` groups in flight.
pub async fn source_committed(
    flow: &Flow,
    translations: &[&GroupTranslation],
    batching: Batching,
) -> Vec<Result<Vec<(TopicPartition, Option<i64>)>, KafkaError>> {
    let asks: Vec<GroupPartitions> = translations
        .iter()
        .map(|t| GroupPartitions {
            group: t.group.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| TopicPartition::new(p.source_topic.clone(), p.partition))
                .collect(),
        })
        .collect();
    let listed = listed_groups(&flow.source).await;
    flow.source
        .batch_committed_offsets_listed(&asks, |group| listed.unlisted(group), batching.concurrency)
        .await
}

/// The checkpointed `groups`' committed offsets on the source, for the source partitions
/// their checkpoints name, in order. The asks (a whole topic name per partition) are made a
/// batch of groups at a time, so they never hold every group's partitions at once; one
/// listing of the source's groups for all the batches.
pub async fn checkpointed_source_committed(
    flow: &Flow,
    index: &CheckpointIndex,
    groups: &[String],
    batching: Batching,
) -> Vec<Result<Vec<(TopicPartition, Option<i64>)>, KafkaError>> {
    let listed = listed_groups(&flow.source).await;
    let mut answers = Vec::with_capacity(groups.len());
    for batch in groups.chunks(GROUPS_PER_BATCH) {
        let asks: Vec<GroupPartitions> = batch
            .iter()
            .map(|group| GroupPartitions {
                group: group.clone(),
                partitions: index
                    .for_group(group)
                    .into_iter()
                    .map(|(c, _)| TopicPartition::new(flow.source_topic_of(&c.topic), c.partition))
                    .collect(),
            })
            .collect();
        let read = flow.source.batch_committed_offsets_listed(
            &asks,
            |group| listed.unlisted(group),
            batching.concurrency,
        );
        answers.extend(read.await);
    }
    answers
}

/// The groups a cluster named in one listing, to leave out of offset fetches the groups it
/// did not name ([`crate::kafka::Cluster::batch_committed_offsets_listed`]).
pub struct GroupListing(Option<HashSet<String>>);

impl GroupListing {
    /// Whether the listing answered without naming `group`. Without a listing (a cluster that
    /// refuses ListGroups, or an error) no group is unlisted, and every group is asked.
    pub fn unlisted(&self, group: &str) -> bool {
        self.0.as_ref().is_some_and(|names| !names.contains(group))
    }
}

/// Every group `cluster` lists, from one listing.
pub async fn listed_groups(cluster: &crate::kafka::Cluster) -> GroupListing {
    GroupListing(
        cluster
            .group_names()
            .await
            .ok()
            .map(|names| names.into_iter().collect()),
    )
}

/// A partition whose translation lands far below what its group had consumed: the group was
/// at the end of the source partition, and the checkpoint puts it far behind the end of the
/// remote partition (issue 14 #5). The mark of offset syncs too sparse for the data, most
/// often a worker's flush interval set where MirrorMaker 2 ignores it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SparseSync {
    pub target_topic: String,
    pub partition: i32,
    /// The checkpoint's translation.
    pub translated: i64,
    /// The remote partition's log end on the target.
    pub log_end: i64,
    /// The source partition's log end, where the group's checkpointed offset was.
    pub source_end: i64,
}

/// Below this many records behind, a translation is never called far below: MM2's translation
/// lags by design (the "+1" rule, syncs every `offset.lag.max` records).
const SPARSE_MIN_GAP: i64 = 10;

/// Whether a group that had read its source partition to the end (`source_offset` at
/// `source_end`) lands far below the replica's end (`behind` records) once translated: at least
/// [`SPARSE_MIN_GAP`] records and more than half of the `replica_records` the replica holds. MM2
/// translates through the newest offset sync at or below the group's offset and emits a sync only
/// every `offset.lag.max` records or at its worker's offset flush, so some distance is normal; a
/// gap the size of the partition itself is a flush interval that never came around. The one rule
/// for `kdr status`, `kdr offsets translate` and the translate_offsets step.
pub fn lands_far_below(
    source_offset: i64,
    source_end: i64,
    behind: i64,
    replica_records: i64,
) -> bool {
    source_end > 0
        && source_offset >= source_end
        && behind >= SPARSE_MIN_GAP
        && behind * 2 > replica_records
}

/// The partitions of a translation that land far below what the group had consumed: the
/// checkpoint's source offset is at the source partition's end (`source_ends`), and the
/// translation is behind the remote partition's end by at least [`SPARSE_MIN_GAP`] records
/// and by more than half of what its log holds.
pub fn sparse_syncs(
    translation: &GroupTranslation,
    marks: &HashMap<TopicPartition, Watermarks>,
    source_ends: &HashMap<TopicPartition, i64>,
) -> Vec<SparseSync> {
    translation
        .partitions
        .iter()
        .filter_map(|p| {
            let translated = match p.action {
                Action::Clamp(Clamp::BelowLogStart { translated, .. }) => translated,
                Action::Clamp(Clamp::PastLogEnd { .. }) | Action::Skip(Skip::NoSuchPartition) => {
                    return None;
                }
                _ => p.target_offset,
            };
            let source = TopicPartition::new(p.source_topic.clone(), p.partition);
            let source_end = *source_ends.get(&source)?;
            let mark = marks.get(&TopicPartition::new(p.target_topic.clone(), p.partition))?;
            let far = lands_far_below(
                p.source_offset,
                source_end,
                mark.high - translated,
                mark.high - mark.low,
            );
            far.then(|| SparseSync {
                target_topic: p.target_topic.clone(),
                partition: p.partition,
                translated,
                log_end: mark.high,
                source_end,
            })
        })
        .collect()
}

/// What to tell the operator about groups whose translations land far below what they had
/// consumed: that offset syncs look sparse, and the MirrorMaker 2 settings behind them.
pub fn sparse_syncs_warning(flow: &Flow, groups: &[(&str, &[SparseSync])]) -> Option<String> {
    let (group, first) = groups.iter().find_map(|(g, s)| Some((*g, s.first()?)))?;
    let affected = groups.iter().filter(|(_, s)| !s.is_empty()).count();
    let (source, target) = (flow.source_plan.role, flow.target_plan.role);
    Some(format!(
        "translations of {affected} group(s) land far below what they had consumed (group {group}: {}[{}] translates to {} while it ends at {} on {target}, and the group was at the end, {}, on {source}): MirrorMaker 2's offset syncs look sparse. It emits one when a replica has moved offset.lag.max records (default 100) past the last one, otherwise only at its worker's offset flush, which in dedicated mode is {}.offset.flush.interval.ms (default 60000; a top-level offset.flush.interval.ms is ignored). Lower them and let MirrorMaker 2 checkpoint again, or expect these groups to read again what they had consumed",
        first.target_topic,
        first.partition,
        first.translated,
        first.log_end,
        first.source_end,
        flow.target_alias(),
    ))
}

/// The log end on the source of each of `partitions`, in one batch; a partition the source
/// cannot answer for is left out.
pub async fn source_partition_ends(
    flow: &Flow,
    partitions: BTreeSet<TopicPartition>,
) -> Result<HashMap<TopicPartition, i64>, KafkaError> {
    let union: Vec<TopicPartition> = partitions.into_iter().collect();
    let ends = flow.source.batch_end_offsets(&union).await?;
    Ok(union
        .into_iter()
        .zip(ends)
        .filter_map(|(tp, end)| Some((tp, end.ok()?)))
        .collect())
}

/// What to do for every checkpointed partition of a group, given what the target holds.
/// Translations below the log start or past the log end are clamped; a translation behind the
/// group's current offset is skipped unless `allow_rewind`. Pure: the reads are the caller's.
pub fn plan_translation(
    flow: &Flow,
    group: &str,
    index: &CheckpointIndex,
    target: TargetPositions<'_>,
    allow_rewind: bool,
    now_ms: i64,
) -> Vec<PartitionTranslation> {
    plan_checkpoints(flow, &index.for_group(group), target, allow_rewind, now_ms)
}

/// [`plan_translation`] for a group's checkpoints, as [`CheckpointIndex::for_group`] gives them.
fn plan_checkpoints(
    flow: &Flow,
    checkpoints: &[(Checkpoint, i64)],
    target: TargetPositions<'_>,
    allow_rewind: bool,
    now_ms: i64,
) -> Vec<PartitionTranslation> {
    let mut partitions = Vec::with_capacity(checkpoints.len());
    for (checkpoint, ts) in checkpoints {
        let tp = TopicPartition::new(checkpoint.topic.clone(), checkpoint.partition);
        let current_offset = target.current.get(&tp).copied();
        let (target_offset, action) = place(
            checkpoint.downstream_offset,
            current_offset,
            target.marks.get(&tp),
            allow_rewind,
        );
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

/// Where a translated offset goes in the target's log, and what to do there: clamped into the
/// log (`mark`; `None` is a partition the target lacks), never behind the group's `current`
/// offset unless `allow_rewind`. The one rule for MM2's checkpoints and for the failback's
/// reverse mapping ([`super::reverse`]).
pub(super) fn place(
    translated: i64,
    current: Option<i64>,
    mark: Option<&Watermarks>,
    allow_rewind: bool,
) -> (i64, Action) {
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
        _ if current.is_some_and(|c| target_offset < c) && !allow_rewind => {
            Action::Skip(Skip::WouldRewind)
        }
        _ if current == Some(target_offset) => Action::Unchanged,
        None => Action::Commit,
        Some(clamp) => clamp,
    };
    (target_offset, action)
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

    fn marks(low: i64, high: i64, partitions: i32) -> HashMap<TopicPartition, Watermarks> {
        (0..partitions)
            .map(|p| {
                let w = Watermarks {
                    topic: "primary.orders".to_owned(),
                    partition: p,
                    low,
                    high,
                };
                (TopicPartition::new("primary.orders", p), w)
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
        // Partition 0 has no committed offset on the target; 5 is not on the target at all.
        let current = HashMap::from([(tp(3), 50), (tp(4), 60)]);
        let marks = marks(10, 200, 5);
        let target = TargetPositions {
            current: &current,
            marks: &marks,
        };
        let planned = plan_translation(&flow, "g", &index, target, false, 1500);
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

        let rewinding = plan_translation(&flow, "g", &index, target, true, 1500);
        assert_eq!(rewinding[3].action, Action::Commit);
    }

    /// Issue 14 #5: a group that had consumed everything on the source, translated to almost
    /// nothing on the target, is the mark of sparse offset syncs, and the warning names the
    /// settings behind them.
    #[test]
    fn a_translation_far_below_a_group_at_its_end_says_offset_syncs_look_sparse() {
        let flow = flow("policy: default", Direction::Failover);
        let index = index(&[
            ("g", "primary.orders", 0, 100, 1),
            ("g", "primary.orders", 1, 100, 95),
            ("g", "primary.orders", 2, 40, 1),
            ("g", "primary.orders", 3, 100, 1),
        ]);
        let tp = |t: &str, p| TopicPartition::new(t, p);
        let marks = marks(0, 100, 3);
        let current = HashMap::new();
        let target = TargetPositions {
            current: &current,
            marks: &marks,
        };
        let translation = GroupTranslation {
            group: "g".to_owned(),
            state: GroupState::Idle("Empty".to_owned()),
            partitions: plan_translation(&flow, "g", &index, target, false, 1500),
        };
        let ends: HashMap<TopicPartition, i64> = (0..4).map(|p| (tp("orders", p), 100)).collect();
        // 0: at its end, translated to 1 of 100. 1: 5 behind is MM2's usual lag. 2: the group
        // was not at its end. 3: no such partition on the target.
        let sparse = sparse_syncs(&translation, &marks, &ends);
        assert_eq!(
            sparse,
            [SparseSync {
                target_topic: "primary.orders".to_owned(),
                partition: 0,
                translated: 1,
                log_end: 100,
                source_end: 100,
            }]
        );
        let warning = sparse_syncs_warning(&flow, &[("g", &sparse)]).expect("a warning");
        assert!(warning.contains("offset syncs look sparse"), "{warning}");
        assert!(warning.contains("offset.lag.max"), "{warning}");
        assert!(warning.contains("dr.offset.flush.interval.ms"), "{warning}");
        assert!(
            warning.contains("primary.orders[0] translates to 1 while it ends at 100 on dr"),
            "{warning}"
        );
        assert_eq!(sparse_syncs_warning(&flow, &[("g", &[])]), None);
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
