//! `translate_offsets`: start consumers on the target where they left off on the source.
//!
//! MM2 writes, per group and partition, the source offset and its translation onto the target
//! (`<source>.checkpoints.internal`). kdr reads that topic once (the last record per group and
//! partition wins, in log order, as `RemoteClusterUtils` does), refuses groups that have live
//! members on the target (the broker would reject the commit, and the members would overwrite
//! it), never moves a group backwards unless the plan allows it, clamps below the log start, and
//! commits. Every partition's numbers go in the log. The planning is `replication`'s, shared
//! with `kdr offsets translate`; this step records it and commits.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::{StepCtx, StepDone, StepError, StepResult};

mod reverse;
use crate::journal::GroupOutcome;
use crate::kafka::{KafkaError, TopicPartition};
use crate::mm2::CheckpointIndex;
use crate::plan::{Direction, Groups, MissingCheckpoint, Role, TranslateOffsets};
use crate::replication::{
    Applied, Batching, Bound, Call, Cut, Flow, GROUPS_PER_BATCH, GroupPlan, GroupState,
    GroupTranslation, OPERATION_TIMEOUT, OffsetSyncs, ReverseGroup, ReversePartition, SparseSync,
    TargetView, TranslateError, apply, checkpointed_source_committed, now_ms, read_checkpoints,
    read_target, resolve_groups, source_committed, source_partition_ends, sparse_syncs,
    sparse_syncs_warning,
};

pub async fn run(ctx: &mut StepCtx<'_>, t: &TranslateOffsets) -> StepResult {
    let flow = ctx.flow()?;
    // Every wait of this step ends at its deadline, or at once on Ctrl-C.
    let mut bound = Bound::cancellable(ctx.deadline, ctx.cancel.clone());
    let index = read_index(ctx, &flow, &mut bound).await?;
    let plan = ctx.plan;
    let selectors = match &t.groups {
        Groups::All => &plan.replication.groups,
        Groups::List(l) => l,
    };
    let mut groups = resolve_groups(selectors, &index);
    // The groups the plan asked for; at failback, those only DR knows follow them.
    let asked = groups.len();
    if ctx.direction == Direction::Failback {
        let more = reverse::more_groups(ctx, &flow, selectors, &groups, &mut bound).await?;
        groups.extend(more);
    }
    if groups.is_empty() {
        return Ok(StepDone::Skipped(
            "the plan names no consumer groups to translate".to_owned(),
        ));
    }
    let syncs = offset_syncs(ctx, &flow, &mut bound).await?;
    let checkpointed: Vec<String> = groups
        .iter()
        .filter(|g| index.has_group(g))
        .cloned()
        .collect();
    let batching = Batching::default();
    // The target's side and the source's committed offsets (the reprocessing ledger), at once:
    // the checkpoints say which source partitions each group's translation is made of.
    let mut source_bound = bound.clone();
    let source_gone = ctx.state.source_unreachable.is_some();
    let both = async {
        tokio::join!(
            read_target(&flow, &index, &checkpointed, batching, &mut bound),
            read_source(
                source_gone,
                &flow,
                checkpointed.len(),
                checkpointed_source_committed(&flow, &index, &checkpointed, batching),
                &mut source_bound,
            ),
        )
    };
    let (target, source) = ctx
        .recorder
        .say_while(both, || {
            format!(
                "reading the states and offsets of {} groups on {} and {}",
                checkpointed.len(),
                flow.target_plan.role,
                flow.source_plan.role
            )
        })
        .await;
    let target = target.map_err(|e| step_error(e, ctx.step.timeout()))?;
    let source = source?;
    let reverse = match ctx.direction {
        Direction::Failback => {
            let known = target.known_states(&checkpointed);
            reverse::map(ctx, &flow, &groups, &known, t.allow_rewind, &mut bound).await?
        }
        Direction::Failover => None,
    };
    let ends = sparse_sync_ends(ctx, &flow, &index, &checkpointed, &mut bound).await?;
    let late =
        reverse_only_source(ctx, &flow, &groups, &index, reverse.as_deref(), &mut bound).await?;
    let mut planner = Planner {
        flow: &flow,
        index: &index,
        target: &target,
        allow_rewind: t.allow_rewind,
        now: now_ms(),
        checkpointed: 0,
        early: source.into_iter(),
        late: late.into_iter(),
        reverse: reverse.map(Vec::into_iter),
        ends: ends.as_ref(),
        sparse: Vec::new(),
    };
    let mut ledger = Ledger {
        syncs: syncs.as_ref(),
        asked,
        total: groups.len(),
        on_missing_checkpoint: t.on_missing_checkpoint,
        recorded: 0,
        tally: Tally::default(),
        failure: None,
    };
    let sending = Sending {
        dry_run: ctx.dry_run,
        timeout: ctx.step.timeout(),
        batching,
    };
    // A batch of groups at a time: planned, committed, then recorded with one fsync while the
    // next batch's commits are on the wire (they run on threads of their own), so a crash loses
    // the record of at most two batches of commits (the journal's module doc). Only the batches
    // in hand (recorded, committed, planned: three at most) hold translations, never every group.
    let mut chunks = groups.chunks(GROUPS_PER_BATCH);
    let mut next = chunks.next().map(|chunk| planner.plan(chunk));
    let mut previous: Option<Batch> = None;
    while let Some(batch) = next.take() {
        let translations: Vec<&GroupTranslation> = batch
            .groups
            .iter()
            .filter_map(|(_, plan)| plan.as_ref())
            .map(|(g, _)| &g.translation)
            .collect();
        // While this batch's commits are out: the batch before is recorded, the next planned.
        let (applied, recorded) =
            tokio::join!(sending.commit(&flow, &translations, &mut bound), async {
                let recorded = ledger.record(ctx, &flow, previous.take());
                next = chunks.next().map(|chunk| planner.plan(chunk));
                recorded
            },);
        recorded?;
        previous = Some(Batch {
            applied: applied?,
            ..batch
        });
    }
    ledger.record(ctx, &flow, previous)?;
    warn_sparse_syncs(ctx, &flow, &planner.sparse)?;
    ledger.finish(ctx.dry_run, flow.target_plan.role)
}

/// Plans the step's groups a batch at a time, in order, from what was read of both clusters
/// for all of them: the checkpoints' translations, the reverse mapping folded in at failback,
/// each planned group's committed offsets on the source, and the translations that land far
/// below what their groups had consumed.
struct Planner<'a> {
    flow: &'a Flow,
    index: &'a CheckpointIndex,
    /// What the target holds for the checkpointed groups, in their order.
    target: &'a TargetView,
    allow_rewind: bool,
    now: i64,
    /// How many checkpointed groups are planned.
    checkpointed: usize,
    /// The checkpointed groups' committed offsets on the source, in order.
    early: std::vec::IntoIter<SourceCommitted>,
    /// Those of the groups only the reverse mapping plans, in order.
    late: std::vec::IntoIter<SourceCommitted>,
    /// At failback, the reverse mapping of every group of the step, in order.
    reverse: Option<std::vec::IntoIter<ReverseGroup>>,
    /// The source's log ends, for the sparse-sync warning; `None` without them.
    ends: Option<&'a HashMap<TopicPartition, i64>>,
    /// Each group whose checkpoints' translation lands far below, and where.
    sparse: Vec<(String, Vec<SparseSync>)>,
}

impl Planner<'_> {
    fn plan(&mut self, chunk: &[String]) -> Batch {
        let plans: Vec<GroupPlan> = chunk
            .iter()
            .filter(|group| self.index.has_group(group))
            .map(|group| {
                let plan = self.target.plan(
                    self.flow,
                    self.index,
                    group,
                    self.checkpointed,
                    self.allow_rewind,
                    self.now,
                );
                self.checkpointed += 1;
                if let Some(ends) = self.ends {
                    let sparse = sparse_syncs(&plan.translation, &self.target.marks, ends);
                    if !sparse.is_empty() {
                        self.sparse.push((group.clone(), sparse));
                    }
                }
                plan
            })
            .collect();
        let reverse = self
            .reverse
            .as_mut()
            .map(|r| r.by_ref().take(chunk.len()).collect());
        let folded = reverse::fold(chunk, plans, reverse);
        let sources = folded
            .iter()
            .flatten()
            .map(|(plan, _)| {
                let next = if self.index.has_group(&plan.translation.group) {
                    self.early.next()
                } else {
                    self.late.next()
                };
                next.expect("a source read per planned group")
            })
            .collect();
        Batch {
            groups: chunk.iter().cloned().zip(folded).collect(),
            sources,
            applied: Vec::new(),
        }
    }
}

/// A batch of groups planned, and once sent, what became of their commits.
struct Batch {
    groups: Vec<(String, Option<reverse::Folded>)>,
    /// Each planned group's committed offsets on the source, in order.
    sources: Vec<SourceCommitted>,
    /// Each planned group's outcome in order, `None` where nothing was sent.
    applied: Vec<Option<Applied>>,
}

/// What the step records batch after batch, and what it made of the groups so far.
struct Ledger<'s> {
    syncs: Option<&'s OffsetSyncs>,
    /// How many groups the plan asked for; those after them only DR knows.
    asked: usize,
    total: usize,
    on_missing_checkpoint: MissingCheckpoint,
    /// How many groups are recorded.
    recorded: usize,
    tally: Tally,
    /// A commit that failed for a reason other than a refusal: the step's failure, once every
    /// group is recorded.
    failure: Option<StepError>,
}

impl Ledger<'_> {
    /// Records a batch of groups with one fsync, and a counting line on the display above
    /// [`COUNTED_ABOVE`] groups.
    fn record(
        &mut self,
        ctx: &mut StepCtx<'_>,
        flow: &Flow,
        batch: Option<Batch>,
    ) -> Result<(), StepError> {
        let Some(Batch {
            groups,
            sources,
            applied,
        }) = batch
        else {
            return Ok(());
        };
        let mut applied = applied.into_iter();
        let mut sources = sources.into_iter();
        ctx.recorder.begin_batch();
        for (group, plan) in groups {
            let place = self.recorded;
            self.recorded += 1;
            let Some((plan, reverse)) = plan else {
                // A group only DR knows that the mapping gives no position: nothing to do.
                if place < self.asked {
                    no_checkpoint(
                        ctx,
                        flow,
                        group,
                        self.on_missing_checkpoint,
                        &mut self.tally,
                    )?;
                }
                continue;
            };
            let outcome = Outcome {
                plan,
                source_committed: sources.next().expect("a source read per planned group"),
                applied: applied.next().expect("an outcome per planned group"),
                syncs: self.syncs,
                reverse,
            };
            if let Err(e) = record_group(ctx, flow, outcome, &mut self.tally) {
                self.failure.get_or_insert(e);
            }
        }
        let counted = (self.total > COUNTED_ABOVE)
            .then(|| self.tally.counted(self.recorded, self.total, ctx));
        ctx.recorder.commit_batch(counted.as_deref())?;
        Ok(())
    }

    fn finish(self, dry_run: bool, target_role: Role) -> StepResult {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        self.tally.outcome(dry_run, target_role)
    }
}

/// Above this many groups the display shows a counting line per batch of groups rather than
/// each group's lines (the log keeps them all).
const COUNTED_ABOVE: usize = 20;

/// What a batch read of committed offsets gives: per group, its offsets or why not.
type SourceRead = Vec<Result<Vec<(TopicPartition, Option<i64>)>, KafkaError>>;

/// Committed offsets on the source for the reprocessing ledger, from `read` (one answer per
/// group of `groups`); `None` for a group whose offsets could not be read (or all, with the
/// source gone, as an earlier step of the run found it, or the deadline passed).
async fn read_source(
    source_gone: bool,
    flow: &Flow,
    groups: usize,
    read: impl Future<Output = SourceRead>,
    bound: &mut Bound,
) -> Result<Vec<SourceCommitted>, StepError> {
    if source_gone {
        return Ok(vec![None; groups]);
    }
    match bound.wait(read).await {
        Ok(read) => Ok(read.into_iter().map(Result::ok).collect()),
        Err(Cut::Deadline) => Ok(vec![None; groups]),
        Err(Cut::Interrupted) => Err(StepError::Interrupted(format!(
            "interrupted while trying to read the groups' committed offsets on {}",
            flow.source_plan.role
        ))),
    }
}

/// At failback, the committed offsets on the source of the groups only the reverse mapping
/// plans (none of them checkpointed), in the order of `groups`; none at failover.
async fn reverse_only_source(
    ctx: &StepCtx<'_>,
    flow: &Flow,
    groups: &[String],
    index: &CheckpointIndex,
    reverse: Option<&[ReverseGroup]>,
    bound: &mut Bound,
) -> Result<Vec<SourceCommitted>, StepError> {
    let Some(reverse) = reverse else {
        return Ok(Vec::new());
    };
    let (only, mapped): (Vec<String>, Vec<ReverseGroup>) = groups
        .iter()
        .zip(reverse)
        .filter(|(group, r)| !index.has_group(group) && r.has_positions())
        .map(|(group, r)| (group.clone(), r.clone()))
        .unzip();
    if only.is_empty() {
        return Ok(Vec::new());
    }
    let folded = reverse::fold(&only, Vec::new(), Some(mapped));
    let translations: Vec<&GroupTranslation> = folded
        .iter()
        .flatten()
        .map(|(g, _)| &g.translation)
        .collect();
    let read = source_committed(flow, &translations, Batching::default());
    let source_gone = ctx.state.source_unreachable.is_some();
    read_source(source_gone, flow, translations.len(), read, bound).await
}

/// A group's committed offsets on the source, when they could be read.
type SourceCommitted = Option<Vec<(TopicPartition, Option<i64>)>>;

/// The source's log ends of every checkpointed group's partitions, for the warning that
/// offset syncs look sparse; `None` (and the warning quiet) with the source gone, failing to
/// answer, or out of time.
async fn sparse_sync_ends(
    ctx: &StepCtx<'_>,
    flow: &Flow,
    index: &CheckpointIndex,
    checkpointed: &[String],
    bound: &mut Bound,
) -> Result<Option<HashMap<TopicPartition, i64>>, StepError> {
    if ctx.state.source_unreachable.is_some() {
        return Ok(None);
    }
    let union: BTreeSet<TopicPartition> = checkpointed
        .iter()
        .flat_map(|group| index.for_group(group))
        .map(|(c, _)| TopicPartition::new(flow.source_topic_of(&c.topic), c.partition))
        .collect();
    match bound.wait(source_partition_ends(flow, union)).await {
        Ok(Ok(ends)) => Ok(Some(ends)),
        Ok(Err(_)) | Err(Cut::Deadline) => Ok(None),
        Err(Cut::Interrupted) => Err(StepError::Interrupted(format!(
            "interrupted while trying to read the log ends on {}",
            flow.source_plan.role
        ))),
    }
}

/// Records, once for all groups, translations that land far below what their groups had
/// consumed (`sparse`, as the batches were planned): offset syncs look sparse (issue 14 #5).
fn warn_sparse_syncs(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    sparse: &[(String, Vec<SparseSync>)],
) -> Result<(), StepError> {
    let borrowed: Vec<(&str, &[SparseSync])> = sparse
        .iter()
        .map(|(g, s)| (g.as_str(), s.as_slice()))
        .collect();
    let Some(warning) = sparse_syncs_warning(flow, &borrowed) else {
        return Ok(());
    };
    let groups: serde_json::Map<String, serde_json::Value> = sparse
        .iter()
        .map(|(g, s)| Ok((g.clone(), detail(s)?)))
        .collect::<Result<_, StepError>>()?;
    ctx.recorder.observe(
        "sparse_offset_syncs",
        warning,
        serde_json::json!({ "groups": groups }),
    )?;
    Ok(())
}

/// What sending a batch's commits needs of the step: none of its recorder, so a batch is sent
/// while the one before it is recorded.
struct Sending {
    dry_run: bool,
    timeout: Duration,
    batching: Batching,
}

impl Sending {
    /// Commits every group that is neither refused nor in a dry run, in one batch; each
    /// group's outcome in order, `None` where nothing was sent.
    async fn commit(
        &self,
        flow: &Flow,
        translations: &[&GroupTranslation],
        bound: &mut Bound,
    ) -> Result<Vec<Option<Applied>>, StepError> {
        let sent = |t: &&GroupTranslation| !self.dry_run && t.state != GroupState::Active;
        let asked: Vec<&GroupTranslation> = translations.iter().copied().filter(sent).collect();
        let mut applied = apply(flow, &asked, self.batching, bound)
            .await
            .map_err(|e| step_error(e, self.timeout))?
            .into_iter();
        Ok(translations
            .iter()
            .map(|t| if sent(t) { applied.next() } else { None })
            .collect())
    }
}

/// For the reprocessing ledger: where each source record landed on the target. `None` when
/// the offset syncs cannot be read (the source is gone, or time ran out).
async fn offset_syncs(
    ctx: &StepCtx<'_>,
    flow: &Flow,
    bound: &mut Bound,
) -> Result<Option<OffsetSyncs>, StepError> {
    if ctx.state.source_unreachable.is_some() {
        return Ok(None);
    }
    match bound
        .wait(flow.offset_syncs(bound.within(OPERATION_TIMEOUT)))
        .await
    {
        Ok(syncs) => Ok(syncs),
        Err(Cut::Deadline) => Ok(None),
        Err(Cut::Interrupted) => Err(StepError::Interrupted(
            "interrupted while reading the offset syncs".to_owned(),
        )),
    }
}

/// MM2's checkpoints on the target, read once, and what the read found.
async fn read_index(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    bound: &mut Bound,
) -> Result<CheckpointIndex, StepError> {
    let topic = flow.checkpoints_topic();
    let read = Arc::new(AtomicU64::new(0));
    let reading = read_checkpoints(flow, ctx.remaining(), Arc::clone(&read), bound);
    let index = ctx
        .recorder
        .say_while(reading, || {
            let read = read.load(Ordering::Relaxed);
            format!("read {read} records of {topic} so far")
        })
        .await
        .map_err(|e| step_error(e, ctx.step.timeout()))?;
    let skipped = index.skipped();
    ctx.recorder.observe(
        "checkpoints_read",
        format!(
            "read {} records of {topic}: checkpoints for {} groups; {} skipped (tombstones {}, malformed {}, unknown version {})",
            index.records_read(),
            index.groups().len(),
            skipped.total(),
            skipped.tombstones,
            skipped.malformed,
            skipped.unsupported_version
        ),
        serde_json::json!({
            "topic": topic,
            "records": index.records_read(),
            "groups": index.groups(),
            "skipped": { "tombstones": skipped.tombstones, "malformed": skipped.malformed, "unsupported_version": skipped.unsupported_version },
            "skip_examples": index.skip_examples().iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
        }),
    )?;
    Ok(index)
}

/// A group of the plan without a checkpoint: skipped or failed, as the plan says.
fn no_checkpoint(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    group: String,
    policy: MissingCheckpoint,
    tally: &mut Tally,
) -> Result<(), StepError> {
    let why = format!(
        "no checkpoint for group {group} in {}: MM2 has not seen it commit, or it is filtered out",
        flow.checkpoints_topic()
    );
    let what = match policy {
        MissingCheckpoint::Skip => format!("skip group {group}"),
        MissingCheckpoint::Fail => format!("fail on group {group}"),
    };
    ctx.recorder
        .decide("plan", what, why, serde_json::Value::Null)?;
    if policy == MissingCheckpoint::Fail {
        tally.missing.push(group);
    }
    Ok(())
}

/// One planned group, and what became of it.
struct Outcome<'a> {
    plan: GroupPlan,
    source_committed: SourceCommitted,
    /// `None` when nothing was sent (a live group, or a dry run).
    applied: Option<Applied>,
    syncs: Option<&'a OffsetSyncs>,
    /// At failback: the group's commits on DR's replica topics, mapped home.
    reverse: Option<ReverseGroup>,
}

/// What the step did so far, for its outcome.
#[derive(Default)]
struct Tally {
    refused: Vec<String>,
    missing: Vec<String>,
    committed_partitions: usize,
    translated_groups: usize,
}

impl Tally {
    /// The display's line for a batch: how many of the step's groups are recorded, and what
    /// was committed so far.
    fn counted(&self, recorded: usize, total: usize, ctx: &StepCtx<'_>) -> String {
        if ctx.dry_run {
            return format!("{recorded}/{total} groups recorded (dry run: nothing committed)");
        }
        let target = ctx.plan.source_target(ctx.direction).1.role;
        format!(
            "{recorded}/{total} groups recorded: {} partitions committed on {target}",
            self.committed_partitions
        )
    }

    fn outcome(self, dry_run: bool, target_role: Role) -> StepResult {
        let translated_groups = self.translated_groups;
        if dry_run {
            return Ok(StepDone::DryRun(format!(
                "would commit translated offsets for {translated_groups} groups"
            )));
        }
        if !self.refused.is_empty() || !self.missing.is_empty() {
            let mut parts = Vec::new();
            if !self.refused.is_empty() {
                parts.push(format!("groups with live members on {target_role} were refused: {} (stop their consumers, then resume)", self.refused.join(", ")));
            }
            if !self.missing.is_empty() {
                parts.push(format!(
                    "groups without a checkpoint: {}",
                    self.missing.join(", ")
                ));
            }
            return Err(StepError::Failed(parts.join("; ")));
        }
        Ok(StepDone::Ok(format!(
            "translated {translated_groups} groups: {} partitions committed on {target_role}",
            self.committed_partitions
        )))
    }
}

/// Records one group's translation: its live members, the records it may read again, and
/// what was committed or refused. A commit that failed for another reason is the step's
/// failure, returned once every group is recorded.
fn record_group(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    outcome: Outcome<'_>,
    tally: &mut Tally,
) -> Result<(), StepError> {
    let Outcome {
        plan: planned,
        source_committed,
        applied,
        syncs,
        reverse,
    } = outcome;
    let (name, target_role) = (planned.translation.group.clone(), flow.target_plan.role);
    if let Some(desc) = &planned.members {
        let names: Vec<String> = desc.members.iter().map(ToString::to_string).collect();
        ctx.recorder.observe(
            "group_members",
            format!(
                "group {name} is {} on {target_role} with members: {}",
                desc.state,
                names.join(", ")
            ),
            detail(desc)?,
        )?;
    }
    let plan = planned.translation;
    let refused = plan.state == GroupState::Active || matches!(applied, Some(Applied::Refused(_)));
    let reversed = match &reverse {
        Some(r) => Some(reverse::record(ctx, r, &plan, refused)?),
        None => None,
    };
    record_reprocessing(ctx, &plan, source_committed, syncs, reversed.as_deref())?;
    if plan.state == GroupState::Active {
        let what = format!("group {name} has live members on {target_role}: refused");
        let data = observed(&plan, GroupOutcome::Refused);
        ctx.recorder.observe("group", what, data)?;
        tally.refused.push(name);
        return Ok(());
    }
    if ctx.dry_run {
        let what = format!(
            "group {name}: would commit {} partitions",
            plan.commits().len()
        );
        let data = observed(&plan, GroupOutcome::WouldCommit);
        ctx.recorder.observe("group", what, data)?;
        tally.translated_groups += 1;
        return Ok(());
    }
    let commits = match applied {
        Some(Applied::Committed(commits)) => commits,
        None => Vec::new(),
        Some(Applied::Refused(e)) => {
            let what = format!("group {name}: the commit was refused: {e}");
            let data = observed(&plan, GroupOutcome::CommitRefused);
            ctx.recorder.observe("group", what, data)?;
            tally.refused.push(name);
            return Ok(());
        }
        Some(Applied::Failed(error)) => {
            let call = Call::Commit {
                group: name,
                target: target_role,
            };
            return Err(step_error(
                TranslateError::Kafka { call, error },
                ctx.step.timeout(),
            ));
        }
    };
    tally.committed_partitions += commits.len();
    tally.translated_groups += 1;
    let what = format!(
        "group {name}: committed {} of {} partitions on {target_role}",
        commits.len(),
        plan.partitions.len()
    );
    ctx.state.committed.insert(
        name,
        commits
            .into_iter()
            .map(|(tp, o)| (tp.topic, tp.partition, o))
            .collect(),
    );
    let data = observed(&plan, GroupOutcome::Committed);
    ctx.recorder.observe("group", what, data)?;
    Ok(())
}

/// A `group` observation's data: the group's translation, and what was done with it.
#[derive(Serialize)]
struct GroupObservation<'a> {
    outcome: GroupOutcome,
    #[serde(flatten)]
    translation: &'a GroupTranslation,
}

/// Handed to the recorder as it is: it makes the log's JSON of it once (thousands of groups,
/// a hundred partitions each).
fn observed(translation: &GroupTranslation, outcome: GroupOutcome) -> GroupObservation<'_> {
    GroupObservation {
        outcome,
        translation,
    }
}

/// An observation's detail. These types serialise to JSON without fail (string keys, plain
/// values); should one ever not, the step fails rather than log an empty detail.
fn detail(value: &impl Serialize) -> Result<serde_json::Value, StepError> {
    serde_json::to_value(value)
        .map_err(|e| StepError::Failed(format!("failed to record an observation: {e}")))
}

/// The step's words for a translation that could not be made, as the incident log has them.
fn step_error(e: TranslateError, timeout: Duration) -> StepError {
    let words = |call: &Call| match call {
        Call::CommittedOffsets { group, .. } => format!("read group {group}'s committed offsets"),
        Call::Watermarks { .. } => "read the target's watermarks".to_owned(),
        other => other.to_string(),
    };
    match e {
        TranslateError::Cut {
            call,
            cut: Cut::Interrupted,
        } => StepError::Interrupted(format!("interrupted while trying to {}", words(&call))),
        TranslateError::Cut {
            call: Call::Checkpoints { topic, target },
            ..
        } => StepError::Failed(format!(
            "failed to read {topic} on {target} within the step's timeout"
        )),
        TranslateError::Cut {
            call: Call::Commit { group, .. },
            ..
        } => StepError::Failed(format!(
            "failed to commit offsets for group {group} within the step's timeout"
        )),
        TranslateError::Cut { call, .. } => StepError::Failed(format!(
            "failed to {}: the step's timeout ({}) passed first",
            words(&call),
            humantime::format_duration(timeout)
        )),
        TranslateError::Kafka { call, error } => {
            StepError::Failed(format!("failed to {}: {error}", words(&call)))
        }
        e @ TranslateError::NoCheckpoints { .. } => StepError::Failed(e.to_string()),
    }
}

/// How many records a group may read again on the target: between its translated offset and
/// where its last commit on the source lands there. MM2's translation is deliberately behind
/// (the "+1" rule, sparse offset syncs), so this is the duplicate load idempotent consumers must
/// absorb at this boundary. The estimate assumes no filtered or compacted records between the
/// last sync and the commit. With the source gone, the checkpoint's own source offset stands in
/// for the last commit, and the figure is a lower bound.
fn record_reprocessing(
    ctx: &mut StepCtx<'_>,
    plan: &GroupTranslation,
    committed: SourceCommitted,
    syncs: Option<&OffsetSyncs>,
    reversed: Option<&[ReversePartition]>,
) -> Result<(), StepError> {
    let basis = if committed.is_some() {
        "the group's commits on the source"
    } else {
        "the checkpoints (the source cannot be read): a lower bound"
    };
    let mut total: Option<i64> = None;
    let mut partitions = Vec::new();
    // The partitions whose position the reverse mapping gave have its own figure.
    let mapped = reverse::mapped(reversed.unwrap_or_default());
    reverse::rereads(reversed.unwrap_or_default(), &mut total, &mut partitions);
    // Each partition's commit looked up once (a hundred partitions a group, thousands of
    // groups): the first answer for a partition, as a search in order would find it.
    let mut commits: HashMap<(&str, i32), Option<i64>> = HashMap::new();
    for (tp, offset) in committed.iter().flatten() {
        commits
            .entry((tp.topic.as_str(), tp.partition))
            .or_insert(*offset);
    }
    for p in plan
        .partitions
        .iter()
        .filter(|p| !mapped.contains(&(p.target_topic.as_str(), p.partition)))
    {
        let source_commit = commits
            .get(&(p.source_topic.as_str(), p.partition))
            .copied()
            .flatten()
            .unwrap_or(p.source_offset);
        // The newest sync at or before the commit: a later one (MM2 went on copying past the
        // group's commit) says nothing about where the commit itself landed.
        let sync = syncs
            .and_then(|s| s.get(&(p.source_topic.clone(), p.partition)))
            .and_then(|s| {
                s.iter()
                    .rev()
                    .find(|sync| sync.upstream_offset <= source_commit)
            });
        // Where `source_commit` lands on the target: past the newest sync, offsets run in step.
        let lands_at = match sync {
            Some(s) if source_commit > s.upstream_offset => {
                Some(s.downstream_offset + (source_commit - s.upstream_offset))
            }
            Some(s) if source_commit == s.upstream_offset => Some(s.downstream_offset),
            _ => None,
        };
        let may_reread = lands_at.map(|at| (at - p.target_offset).max(0));
        if let Some(n) = may_reread {
            total = Some(total.unwrap_or(0) + n);
        }
        partitions.push(serde_json::json!({
            "target_topic": p.target_topic,
            "partition": p.partition,
            "source_commit": source_commit,
            "lands_at": lands_at,
            "target_offset": p.target_offset,
            "may_reread": may_reread,
        }));
    }
    ctx.recorder.observe(
        "reprocessing",
        match total {
            Some(total) => format!(
                "group {} may read {total} records again on {} ({basis})",
                plan.group,
                ctx.plan.source_target(ctx.direction).1.role
            ),
            None => format!(
                "group {}: how many records it may read again is unknown (no offset sync could be read)",
                plan.group
            ),
        },
        serde_json::json!({
            "group": plan.group,
            "direction": ctx.direction,
            "may_reread": total,
            "basis": basis,
            "partitions": partitions,
        }),
    )?;
    Ok(())
}

/// One line saying what the step will do, in the plan's words.
pub fn summary(
    plan: &crate::plan::Plan,
    direction: crate::plan::Direction,
    t: &TranslateOffsets,
) -> String {
    let (source, target) = plan.source_target(direction);
    let checkpoints_topic = plan
        .replication
        .mm2_policy(&source.mm2_alias)
        .checkpoints_topic(&source.mm2_alias);
    format!(
        "commit translated offsets on {} for {} groups from {checkpoints_topic}{}",
        target.role,
        match &t.groups {
            Groups::All => "the plan's".to_owned(),
            Groups::List(l) => l
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        },
        if t.allow_rewind {
            " (rewinds allowed)"
        } else {
            ""
        }
    )
}
