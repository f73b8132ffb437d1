//! `kdr offsets translate`: where each consumer group would start on the target, worked out
//! exactly as the `translate_offsets` step does it (`replication::plan_read`), with the
//! group's committed offset on the source beside it where the source answers. Nothing is
//! written unless `--apply`; then the offsets are committed as the step commits them: groups
//! with live members are refused, no partition is moved backwards.
//!
//! At thousands of groups the report is streamed: everything the rows depend on is read first
//! (the checkpoints, then the target's and the source's offsets at once, one number per
//! partition), and then the groups are planned, committed and written a batch at a time, so
//! memory follows the checkpoints kept, not the rows printed. The JSON is byte for byte what
//! one serialised document would be; the table is one grid per [`TABLE_ROWS`] rows.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::{LookupCtx, LookupError, SCHEMA_VERSION, cell, count, table};
use crate::kafka::{GroupPartitions, Reachability, TopicPartition};
use crate::mm2::CheckpointIndex;
use crate::plan::{Direction, Plan, Role, Selector};
use crate::replication::{
    Action, Applied, Batching, Bound, Call, Clusters, Cut, Flow, GROUPS_PER_BATCH, GroupState,
    GroupTranslation, OPERATION_TIMEOUT, Offsets, Reverse, ReverseGroup, ReverseObservation, Skip,
    SparseSync, TargetView, TranslateError, apply, listed_groups, map_home, more_groups_on_dr,
    now_ms, plan_read, read_checkpoints, read_target, resolve_groups, source_partition_ends,
    sparse_syncs, sparse_syncs_warning,
};

/// `kdr offsets translate --output json` up to its groups: the document is this, then
/// `groups`, an array of [`GroupRow`] (written as they are made, see [`JsonWriter`]).
#[derive(Debug, Clone, Serialize)]
pub struct ReportHead {
    /// [`SCHEMA_VERSION`].
    pub v: u32,
    pub direction: Direction,
    pub source: Role,
    pub target: Role,
    /// Where the translations come from, on the target.
    pub checkpoints_topic: String,
    /// Whether the actions were carried out (`--apply`) or only worked out.
    pub applied: bool,
    /// Why the groups' committed offsets on the source could not be read.
    pub source_error: Option<String>,
}

/// `--direction failback` only: the groups' commits on DR's replica topics mapped home through
/// the forward flow's offset syncs (reverse checkpointing), written after `groups` as the
/// document's `reverse`; their positions are among `groups`' partitions too.
#[derive(Debug, Clone, Serialize)]
pub struct ReverseReport {
    /// Why there is no mapping (the identity policy, no replica on DR, an error).
    pub skipped: Option<String>,
    pub groups: Vec<ReverseObservation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub group: String,
    /// `active` (live members on the target), the broker's state (`empty`, `dead`, …), or
    /// `unknown (…)` when the target does not report membership.
    pub state: GroupState,
    /// Empty when the checkpoints hold nothing for the group.
    pub partitions: Vec<PartitionRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionRow {
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
    /// The checkpoint's source offset: where the group was on the source when MM2 last
    /// checkpointed it.
    pub source_offset: i64,
    /// The offset to commit on the target (the translation, clamped into the log).
    pub target_offset: i64,
    pub checkpoint_age_ms: i64,
    /// `commit`, `unchanged`, `skip: active`, `skip: would rewind`, `skip: no such partition
    /// on the target`, `clamp: …`; with `--apply` a commit that failed is `failed: …`.
    pub action: Action,
    /// The group's committed offset on the source now; `None` when it has none there or the
    /// source could not be read.
    pub source_committed_offset: Option<i64>,
    /// The group's committed offset on the target before this command.
    pub current_offset: Option<i64>,
}

impl PartitionRow {
    /// Whether `--apply` writes (or wrote) this partition's offset.
    pub fn commits(&self) -> bool {
        self.action.commits()
    }
}

impl GroupRow {
    /// Whether the group leaves the command unfinished: it has no checkpoint, or `--apply`
    /// could not commit all it set out to (a failure, or live members).
    fn incomplete(&self, applied: bool) -> bool {
        self.partitions.is_empty()
            || (applied
                && self
                    .partitions
                    .iter()
                    .any(|p| matches!(p.action, Action::Failed(_) | Action::Skip(Skip::Active))))
    }
}

/// What a translation came to, once every group was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translated {
    /// A group has no checkpoint, or `--apply` could not commit all it set out to.
    pub incomplete: bool,
}

impl Translated {
    /// 1 when a group has no checkpoint, or `--apply` could not commit all it set out to.
    pub fn exit_code(&self) -> u8 {
        if self.incomplete {
            crate::exit::FAILED
        } else {
            crate::exit::OK
        }
    }
}

/// What `kdr offsets translate` was asked.
#[derive(Debug, Clone)]
pub struct TranslateRequest {
    pub direction: Direction,
    pub apply: bool,
    /// `--concurrency`: how many groups' offset fetches or commits are in flight at once.
    pub batching: Batching,
}

/// `--group` values: a name, or `re:<regex>` matching whole group names as in plans.
pub fn selectors(groups: &[String]) -> Result<Vec<Selector>, String> {
    groups
        .iter()
        .map(|g| match g.strip_prefix("re:") {
            Some(pattern) => regex::Regex::new(&format!("^(?:{pattern})$"))
                .map(|regex| Selector::Pattern {
                    source: pattern.to_owned(),
                    regex,
                })
                .map_err(|e| format!("invalid --group regex `{pattern}`: {e}")),
            None if g.trim().is_empty() => Err("--group must not be empty".to_owned()),
            None => Ok(Selector::Name(g.clone())),
        })
        .collect()
}

pub async fn run(
    plan: &Plan,
    clusters: &Clusters,
    request: &TranslateRequest,
    // `--group`: names or `re:` patterns; the plan's `replication.groups` when empty.
    selectors: &[Selector],
    ctx: LookupCtx,
    out: &mut dyn ReportWriter,
) -> Result<Translated, LookupError> {
    let flow = Flow::new(plan, clusters, request.direction);
    let (source_role, target_role) = (flow.source_plan.role, flow.target_plan.role);
    let topic = flow.checkpoints_topic();
    let ticker = Ticker::new(&ctx);
    let mut bound = ctx.bound();
    let within = bound.within(OPERATION_TIMEOUT * 2);
    let read = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&read);
    let (index, source) = tokio::join!(
        ticker.while_running(
            read_checkpoints(&flow, within, counted, &mut bound),
            || format!(
                "read {} records of {topic}",
                count(read.load(Ordering::Relaxed) as i64)
            ),
        ),
        tokio::time::timeout_at(ctx.deadline, flow.source_reachable()),
    );
    let index = index.map_err(lookup_error)?;
    ticker.say(&format!(
        "read {} records of {topic}: checkpoints for {} groups",
        count(index.records_read() as i64),
        count(index.groups().len() as i64)
    ));
    let mut source_error = match source {
        Ok(Reachability::Reachable(_)) => None,
        Ok(Reachability::Unreachable { reason }) => {
            Some(format!("{source_role} unreachable: {reason}"))
        }
        Err(_) => Some(format!("{source_role} did not answer before the deadline")),
    };
    let skipped = index.skipped();
    if skipped.total() > 0 {
        ctx.say(&format!(
            "note: {} records of {topic} skipped (tombstones {}, malformed {}, unknown version {})",
            skipped.total(),
            skipped.tombstones,
            skipped.malformed,
            skipped.unsupported_version
        ));
    }
    let selectors = if selectors.is_empty() {
        &plan.replication.groups
    } else {
        selectors
    };
    let mut groups = resolve_groups(selectors, &index);
    // The groups asked for; at failback, those only DR knows follow them (kept where the
    // reverse mapping gives them a position).
    let asked = groups.len();
    if request.direction == Direction::Failback {
        match more_groups_on_dr(&flow, selectors, &groups, &mut bound).await {
            Ok(more) => groups.extend(more),
            Err(e) => ctx.say(&format!(
                "note: only the checkpointed and named groups are mapped home: failed to {e}"
            )),
        }
    }
    if groups.is_empty() {
        ctx.say(
            "note: no consumer group to translate (the plan names none, or no pattern matched a checkpointed group)",
        );
    }
    // What the rows depend on, before the first is written: the target's side and the
    // source's, at once (two clusters).
    let mut source_bound = bound.clone();
    let (target, source) = tokio::join!(
        ticker.while_running(
            read_target(&flow, &index, &groups, request.batching, &mut bound),
            || format!(
                "reading the states and offsets of {} groups on {target_role}",
                count(groups.len() as i64)
            ),
        ),
        read_source(
            &flow,
            &index,
            &groups,
            request.batching,
            &mut source_error,
            &mut source_bound,
        ),
    );
    let target = target.map_err(lookup_error)?;
    let Source { committed, ends } = source;
    let mut reverse = match request.direction {
        Direction::Failback => Some(
            reverse_map(plan, clusters, &flow, &groups, &target, request, &mut bound)
                .await
                // The checkpoints' translations stand without it: say why, and go on.
                .unwrap_or_else(|e| {
                    Reverse::Skipped(format!("reverse checkpointing skipped: {e}"))
                }),
        ),
        Direction::Failover => None,
    };
    let mut reverse_rows = Vec::new();
    ticker.say(&format!(
        "read the offsets of {} groups: {} partitions",
        count(groups.len() as i64),
        count(index.len() as i64)
    ));
    for group in groups[..asked].iter().filter(|g| !index.has_group(g)) {
        ctx.say(&format!(
            "warning: no checkpoint for group {group} in {topic}: MM2 has not seen it commit, or it is filtered out"
        ));
    }
    out.head(&ReportHead {
        v: SCHEMA_VERSION,
        direction: request.direction,
        source: source_role,
        target: target_role,
        checkpoints_topic: topic,
        applied: request.apply,
        source_error: source_error.clone(),
    });
    let written = Written {
        flow: &flow,
        index: &index,
        target: &target,
        ends: ends.as_ref().filter(|_| source_error.is_none()),
    };
    let mut streamed = Streamed::default();
    let now = now_ms();
    let total = groups.len();
    let mut mapped_batches = match &mut reverse {
        Some(Reverse::Mapped(read)) => Some(read.groups.chunks_mut(GROUPS_PER_BATCH)),
        _ => None,
    };
    let mut rows = Rows {
        asked,
        committed: &committed,
        apply: request.apply,
        streamed: &mut streamed,
        reverse_rows: &mut reverse_rows,
        out,
    };
    // With --apply, a batch's commits are on the wire while the batch before it is written.
    let mut previous: Option<Planned> = None;
    for (batch, first) in groups
        .chunks(GROUPS_PER_BATCH)
        .zip((0..).step_by(GROUPS_PER_BATCH))
    {
        let mut mapped = mapped_batches.as_mut().and_then(Iterator::next);
        let mut translations =
            written.plan(batch, first, now, rows.streamed, mapped.as_deref_mut());
        if request.apply {
            let (_, ()) = tokio::join!(
                commit(&flow, &mut translations, request.batching, &mut bound),
                async { rows.write(previous.take()) },
            );
            ticker.say(&format!(
                "committed {} of {} groups",
                count((first + batch.len()) as i64),
                count(total as i64)
            ));
        } else {
            rows.write(previous.take());
        }
        previous = Some(Planned {
            first,
            translations,
            mapped,
        });
    }
    rows.write(previous);
    out.end(reverse.map(|r| match r {
        Reverse::Skipped(why) => ReverseReport {
            skipped: Some(why),
            groups: Vec::new(),
        },
        Reverse::Mapped(_) => ReverseReport {
            skipped: None,
            groups: reverse_rows,
        },
    }));
    let sparse: Vec<(&str, &[SparseSync])> = streamed
        .sparse
        .iter()
        .map(|(g, s)| (g.as_str(), std::slice::from_ref(s)))
        .collect();
    if let Some(warning) = sparse_syncs_warning(&flow, &sparse) {
        ctx.say(&format!("warning: {warning}"));
    }
    if let Some(e) = &source_error {
        ctx.say(&format!("note: source committed offsets not shown: {e}"));
    }
    Ok(Translated {
        incomplete: streamed.incomplete,
    })
}

/// A batch of groups planned (and, with --apply, committed), not yet written.
struct Planned<'m> {
    /// The place of its first group among all the groups.
    first: usize,
    translations: Vec<GroupTranslation>,
    /// At failback, the batch's groups' commits on DR mapped home.
    mapped: Option<&'m mut [ReverseGroup]>,
}

/// Where a batch's rows go, and what is kept of them.
struct Rows<'a> {
    /// How many groups were asked for; those after them only DR knows.
    asked: usize,
    /// Each group's committed offsets on the source.
    committed: &'a [Offsets],
    apply: bool,
    streamed: &'a mut Streamed,
    reverse_rows: &'a mut Vec<ReverseObservation>,
    out: &'a mut dyn ReportWriter,
}

impl Rows<'_> {
    /// Writes a batch's rows, and keeps its reverse observations.
    fn write(&mut self, planned: Option<Planned<'_>>) {
        let Some(Planned {
            first,
            translations,
            mapped,
        }) = planned
        else {
            return;
        };
        for (i, t) in translations.into_iter().enumerate() {
            if first + i >= self.asked && t.partitions.is_empty() {
                // Only DR knows the group, and the mapping gives it no position.
                continue;
            }
            let mapped = mapped.as_deref().map(|m| &m[i]);
            let source = source_column(&t, self.committed.get(first + i), mapped);
            if let Some(m) = mapped.filter(|m| !m.partitions.is_empty()) {
                self.reverse_rows.push(ReverseObservation {
                    group: m.group.clone(),
                    syncs_topic: m.syncs_topic.clone(),
                    partitions: m.finish(&t),
                });
            }
            let row = row(t, Some(&source));
            self.streamed.incomplete |= row.incomplete(self.apply);
            self.out.group(&row);
        }
    }
}

/// `--direction failback`: the groups' commits on DR's replica topics, mapped home as the
/// failback's translate_offsets maps them.
async fn reverse_map(
    plan: &Plan,
    clusters: &Clusters,
    back: &Flow,
    groups: &[String],
    target: &TargetView,
    request: &TranslateRequest,
    bound: &mut Bound,
) -> Result<Reverse, TranslateError> {
    let forward = Flow::new(plan, clusters, Direction::Failover);
    map_home(
        back,
        &forward,
        groups,
        &target.known_states(groups),
        false,
        request.batching,
        bound,
    )
    .await
}

/// A group's committed offsets on the source beside its final partitions: those read for its
/// checkpoints, and for a partition the reverse mapping placed, its commit on DR's replica.
fn source_column(
    t: &GroupTranslation,
    committed: Option<&Offsets>,
    mapped: Option<&ReverseGroup>,
) -> Offsets {
    let mut column = committed.cloned().unwrap_or_default();
    column.resize(t.partitions.len(), None);
    for r in mapped.map_or(&[][..], |m| m.partitions.as_slice()) {
        if let Some(i) = t
            .partitions
            .iter()
            .position(|p| p.source_topic == r.replica_topic && p.partition == r.partition)
        {
            column[i] = Some(r.dr_committed);
        }
    }
    column
}

/// What the groups are planned from, once read.
struct Written<'a> {
    flow: &'a Flow,
    index: &'a CheckpointIndex,
    target: &'a TargetView,
    /// The source partitions' log ends, when the source answered for every group.
    ends: Option<&'a HashMap<TopicPartition, i64>>,
}

/// What is kept of the rows already written.
#[derive(Default)]
struct Streamed {
    incomplete: bool,
    /// Each group whose translation lands far below what it had consumed, with the first such
    /// partition (all the warning names).
    sparse: Vec<(String, SparseSync)>,
}

impl Written<'_> {
    /// The translations of `batch` (the groups from place `first` on), as the step plans them
    /// (never rewinding from the command line), with groups that have live members refused.
    fn plan(
        &self,
        batch: &[String],
        first: usize,
        now: i64,
        streamed: &mut Streamed,
        mut mapped: Option<&mut [ReverseGroup]>,
    ) -> Vec<GroupTranslation> {
        let (states, current) = (&self.target.states, &self.target.current);
        batch
            .iter()
            .enumerate()
            .map(|(i, group)| {
                let (state, _) = &states[first + i];
                let partitions = plan_read(
                    self.flow,
                    self.index,
                    group,
                    &current[first + i],
                    &self.target.marks,
                    false,
                    now,
                );
                let mut t = GroupTranslation {
                    group: group.clone(),
                    state: state.clone(),
                    partitions,
                };
                // Far below is judged on the translation, before a refusal marks it.
                if let Some(ends) = self.ends
                    && let Some(first) = sparse_syncs(&t, &self.target.marks, ends)
                        .into_iter()
                        .next()
                {
                    streamed.sparse.push((t.group.clone(), first));
                }
                // After the warning: it speaks of the reverse flow's syncs, not the forward
                // flow's; before the refusal, which must cover the mapped partitions too.
                if let Some(m) = mapped.as_deref_mut() {
                    m[i].combine_into(&mut t);
                }
                if t.state == GroupState::Active {
                    t.refuse();
                }
                t
            })
            .collect()
    }
}

/// `--apply`: commits every group of a batch that is not refused, and marks what could not be
/// committed.
async fn commit(
    flow: &Flow,
    translations: &mut [GroupTranslation],
    batching: Batching,
    bound: &mut Bound,
) {
    let asked: Vec<&GroupTranslation> = translations
        .iter()
        .filter(|t| t.state != GroupState::Active)
        .collect();
    let (mut applied, failed) = match apply(flow, &asked, batching, bound).await {
        Ok(applied) => (applied.into_iter(), None),
        Err(TranslateError::Kafka { error, .. }) => {
            (Vec::new().into_iter(), Some(error.to_string()))
        }
        Err(_) => (
            Vec::new().into_iter(),
            Some("the command's deadline passed first".to_owned()),
        ),
    };
    for t in translations
        .iter_mut()
        .filter(|t| t.state != GroupState::Active)
    {
        match (applied.next(), &failed) {
            (_, Some(why)) => t.fail(why),
            (Some(Applied::Refused(_)), None) => t.refuse(),
            (Some(Applied::Failed(error)), None) => t.fail(&error.to_string()),
            (Some(Applied::Committed(_)) | None, None) => {}
        }
    }
}

/// The command's words for a translation that could not be worked out.
fn lookup_error(e: TranslateError) -> LookupError {
    LookupError::Failed(match e {
        TranslateError::Cut {
            call: Call::Checkpoints { topic, target },
            cut: Cut::Deadline,
        } => format!("failed to read {topic} on {target} before the deadline"),
        TranslateError::Cut {
            call,
            cut: Cut::Deadline,
        } => format!("failed to {call}: the command's deadline passed first"),
        e => e.to_string(),
    })
}

/// One group's row: its translation, with its committed offsets on the source beside it
/// (`source`, aligned with its partitions; `None` when not read).
fn row(translation: GroupTranslation, source: Option<&Offsets>) -> GroupRow {
    let source = source.map_or(&[][..], Vec::as_slice);
    GroupRow {
        group: translation.group,
        state: translation.state,
        partitions: translation
            .partitions
            .into_iter()
            .enumerate()
            .map(|(i, p)| PartitionRow {
                source_committed_offset: source.get(i).copied().flatten(),
                source_topic: p.source_topic,
                target_topic: p.target_topic,
                partition: p.partition,
                source_offset: p.source_offset,
                target_offset: p.target_offset,
                checkpoint_age_ms: p.checkpoint_age_ms,
                action: p.action,
                current_offset: p.current_offset,
            })
            .collect(),
    }
}

/// What the source says: each group's committed offsets there, aligned with its checkpoints
/// (empty where not read), and the log ends of the checkpointed source partitions when every
/// group's offsets were read.
struct Source {
    committed: Vec<Offsets>,
    ends: Option<HashMap<TopicPartition, i64>>,
}

/// Every group's committed offsets on the source, for the source partitions of its
/// checkpoints, in batches; then, when all were read, those partitions' log ends (for the
/// sparse-sync warning, issue 14 #5). Once the source fails to answer for a group, the groups
/// after it show none, as when each was asked in turn and the source was not asked again.
async fn read_source(
    flow: &Flow,
    index: &CheckpointIndex,
    groups: &[String],
    batching: Batching,
    source_error: &mut Option<String>,
    bound: &mut Bound,
) -> Source {
    let mut committed = vec![Vec::new(); groups.len()];
    if source_error.is_some() {
        return Source {
            committed,
            ends: None,
        };
    }
    let source = flow.source_plan.role;
    let Ok(listed) = bound.wait(listed_groups(&flow.source)).await else {
        *source_error = Some(format!(
            "failed to list the groups on {source}: the command's deadline passed first"
        ));
        return Source {
            committed,
            ends: None,
        };
    };
    let mut union = BTreeSet::new();
    for (batch, first) in groups
        .chunks(GROUPS_PER_BATCH)
        .zip((0..).step_by(GROUPS_PER_BATCH))
    {
        let (places, asks): (Vec<usize>, Vec<GroupPartitions>) = batch
            .iter()
            .enumerate()
            .filter_map(|(i, group)| {
                let partitions: Vec<TopicPartition> = index
                    .for_group(group)
                    .into_iter()
                    .map(|(c, _)| TopicPartition::new(flow.source_topic_of(&c.topic), c.partition))
                    .collect();
                (!partitions.is_empty()).then(|| {
                    let ask = GroupPartitions {
                        group: group.clone(),
                        partitions,
                    };
                    (first + i, ask)
                })
            })
            .unzip();
        union.extend(asks.iter().flat_map(|a| a.partitions.iter().cloned()));
        let read = flow.source.batch_committed_offsets_listed(
            &asks,
            |group| listed.unlisted(group),
            batching.concurrency,
        );
        let Ok(answers) = bound.wait(read).await else {
            *source_error = Some(format!(
                "failed to read the groups' committed offsets on {source}: the command's deadline passed first"
            ));
            return Source {
                committed: vec![Vec::new(); groups.len()],
                ends: None,
            };
        };
        for ((place, ask), answer) in places.into_iter().zip(&asks).zip(answers) {
            match answer {
                Ok(offsets) => committed[place] = offsets.into_iter().map(|(_, o)| o).collect(),
                Err(e) => {
                    *source_error = Some(format!(
                        "failed to read group {}'s committed offsets on {source}: {e}",
                        ask.group
                    ));
                    return Source {
                        committed,
                        ends: None,
                    };
                }
            }
        }
    }
    let ends = match bound.wait(source_partition_ends(flow, union)).await {
        Ok(Ok(ends)) => Some(ends),
        _ => None,
    };
    Source { committed, ends }
}

/// Progress for a translation that takes longer than a second: counts on stderr through the
/// look-up's channel, at most once a second while a long read runs; nothing for short runs.
struct Ticker<'a> {
    ctx: &'a LookupCtx,
    started: std::time::Instant,
}

/// How long a translation runs before it tells its progress, and how often it does then.
const TICK: Duration = Duration::from_secs(1);

impl<'a> Ticker<'a> {
    fn new(ctx: &'a LookupCtx) -> Self {
        Ticker {
            ctx,
            started: std::time::Instant::now(),
        }
    }

    /// Says `text` once the run has lasted a second.
    fn say(&self, text: &str) {
        if self.started.elapsed() >= TICK {
            self.ctx.say(&format!(
                "{text} ({})",
                super::age(self.started.elapsed().as_millis() as i64)
            ));
        }
    }

    /// Awaits `work`, saying `progress()` every second while it runs.
    async fn while_running<T>(
        &self,
        work: impl Future<Output = T>,
        progress: impl Fn() -> String,
    ) -> T {
        tokio::pin!(work);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick() => self.say(&progress()),
            }
        }
    }
}

/// Where `kdr offsets translate` writes its report as it is made: the head once, each group's
/// row once it is final, then the end.
pub trait ReportWriter {
    fn head(&mut self, head: &ReportHead);
    fn group(&mut self, row: &GroupRow);
    /// After the last group; `reverse` only for `--direction failback`.
    fn end(&mut self, reverse: Option<ReverseReport>);
}

/// The rows kept in memory, for a caller that reads them rather than prints them (a handful of
/// groups: kdr drill's wait for the canary's checkpoints).
#[derive(Debug, Default)]
pub struct KeptRows(pub Vec<GroupRow>);

impl ReportWriter for KeptRows {
    fn head(&mut self, _head: &ReportHead) {}

    fn group(&mut self, row: &GroupRow) {
        self.0.push(row.clone());
    }

    fn end(&mut self, _reverse: Option<ReverseReport>) {}
}

/// How much output a writer gathers before handing it to `print`.
const PRINT_AT: usize = 64 * 1024;

/// `--output json`: the document [`ReportHead`] + `groups` exactly as `serde_json`'s pretty
/// printer writes it whole, written a group at a time. Pretty JSON never holds a raw newline
/// inside a string, so a group's own pretty text, indented, is its text inside the document.
pub struct JsonWriter<P: FnMut(&str)> {
    print: P,
    text: String,
    groups: usize,
}

impl<P: FnMut(&str)> JsonWriter<P> {
    pub fn new(print: P) -> Self {
        JsonWriter {
            print,
            text: String::new(),
            groups: 0,
        }
    }

    fn flush(&mut self) {
        (self.print)(&self.text);
        self.text.clear();
    }
}

/// Pretty JSON of kdr's own report types; they cannot fail to serialise (string keys, and
/// serialisers that only write words).
fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("kdr's report types serialise")
}

impl<P: FnMut(&str)> ReportWriter for JsonWriter<P> {
    fn head(&mut self, head: &ReportHead) {
        let text = pretty(head);
        let open = text.strip_suffix("\n}").unwrap_or(&text);
        self.text.push_str(open);
        self.text.push_str(",\n  \"groups\": [");
    }

    fn group(&mut self, row: &GroupRow) {
        self.text
            .push_str(if self.groups == 0 { "\n" } else { ",\n" });
        self.groups += 1;
        for (i, line) in pretty(row).lines().enumerate() {
            if i > 0 {
                self.text.push('\n');
            }
            self.text.push_str("    ");
            self.text.push_str(line);
        }
        if self.text.len() >= PRINT_AT {
            self.flush();
        }
    }

    fn end(&mut self, reverse: Option<ReverseReport>) {
        self.text
            .push_str(if self.groups == 0 { "]" } else { "\n  ]" });
        if let Some(reverse) = reverse {
            self.text.push_str(",\n  \"reverse\": ");
            for (i, line) in pretty(&reverse).lines().enumerate() {
                if i > 0 {
                    self.text.push_str("\n  ");
                }
                self.text.push_str(line);
            }
        }
        self.text.push_str("\n}\n");
        self.flush();
    }
}

/// Partition rows per grid of the table: a grid lays out its columns only once it has all its
/// rows, so a long report is a grid per this many rows (a group is never split), each with its
/// header, and never a whole report held to be laid out.
pub const TABLE_ROWS: usize = 1000;

/// The table `kdr offsets translate` prints.
pub struct TableWriter<P: FnMut(&str)> {
    print: P,
    applied: bool,
    grid: Option<crate::report::tables::Grid>,
    rows: usize,
    grids: usize,
    commits: bool,
}

impl<P: FnMut(&str)> TableWriter<P> {
    pub fn new(print: P) -> Self {
        TableWriter {
            print,
            applied: false,
            grid: None,
            rows: 0,
            grids: 0,
            commits: false,
        }
    }

    fn flush(&mut self) {
        let grid = self.grid.take().unwrap_or_else(|| self.grid());
        (self.print)(&format!("{grid}\n"));
        self.rows = 0;
        self.grids += 1;
    }

    fn grid(&self) -> crate::report::tables::Grid {
        table(&[
            "group",
            "state",
            "source topic",
            "partition",
            "source committed",
            "checkpointed at",
            "target topic",
            "target offset",
            "current on target",
            "checkpoint age",
            if self.applied {
                "done"
            } else {
                "--apply would"
            },
        ])
    }
}

impl<P: FnMut(&str)> ReportWriter for TableWriter<P> {
    fn head(&mut self, head: &ReportHead) {
        self.applied = head.applied;
        (self.print)(&format!(
            "{} → {}: translations from {} on {}\n",
            head.source, head.target, head.checkpoints_topic, head.target
        ));
    }

    fn group(&mut self, g: &GroupRow) {
        let mut t = match self.grid.take() {
            Some(t) => t,
            None => self.grid(),
        };
        if g.partitions.is_empty() {
            let mut row = vec![g.group.clone(), g.state.to_string()];
            row.extend(std::iter::repeat_n("-".to_owned(), 8));
            row.push("skip: no checkpoint".to_owned());
            t.add_row(row);
            self.rows += 1;
        }
        // The group and its state once, on its first row.
        for (i, p) in g.partitions.iter().enumerate() {
            let (group, state) = if i == 0 {
                (g.group.clone(), g.state.to_string())
            } else {
                (String::new(), String::new())
            };
            t.add_row(vec![
                group,
                state,
                p.source_topic.clone(),
                p.partition.to_string(),
                cell(p.source_committed_offset),
                p.source_offset.to_string(),
                p.target_topic.clone(),
                p.target_offset.to_string(),
                cell(p.current_offset),
                super::age(p.checkpoint_age_ms),
                p.action.to_string(),
            ]);
            self.rows += 1;
        }
        self.commits |= g.partitions.iter().any(PartitionRow::commits);
        self.grid = Some(t);
        if self.rows >= TABLE_ROWS {
            self.flush();
        }
    }

    fn end(&mut self, reverse: Option<ReverseReport>) {
        if self.grid.is_some() || self.grids == 0 {
            self.flush();
        }
        if let Some(reverse) = &reverse {
            (self.print)(&render_reverse(reverse));
        }
        if !self.applied && self.commits {
            (self.print)("nothing was written; run again with --apply to commit\n");
        }
    }
}

/// The reverse mapping under the table: a line per partition, or why there is none.
fn render_reverse(reverse: &ReverseReport) -> String {
    let mut out = String::new();
    if let Some(why) = &reverse.skipped {
        out.push_str(&format!("{why}\n"));
    }
    for g in &reverse.groups {
        out.push_str(&format!(
            "reverse checkpointing, group {} (through {}):\n",
            g.group, g.syncs_topic
        ));
        for p in &g.partitions {
            out.push_str(&format!("  {p}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::{Clamp, UnknownState};

    /// The whole document as one `serde_json` value prints it: what `--output json` printed
    /// before it was streamed, and what consumers read.
    #[derive(Serialize)]
    struct Whole<'a> {
        v: u32,
        direction: Direction,
        source: Role,
        target: Role,
        checkpoints_topic: &'a str,
        applied: bool,
        source_error: Option<&'a str>,
        groups: &'a [GroupRow],
    }

    fn head(applied: bool, source_error: Option<&str>) -> ReportHead {
        ReportHead {
            v: SCHEMA_VERSION,
            direction: Direction::Failover,
            source: Role::Primary,
            target: Role::Dr,
            checkpoints_topic: "primary.checkpoints.internal".to_owned(),
            applied,
            source_error: source_error.map(str::to_owned),
        }
    }

    fn partition(p: i32, action: Action) -> PartitionRow {
        PartitionRow {
            source_topic: "orders".to_owned(),
            target_topic: "primary.orders".to_owned(),
            partition: p,
            source_offset: 100 + i64::from(p),
            target_offset: 90,
            checkpoint_age_ms: 1500,
            action,
            source_committed_offset: (p % 2 == 0).then_some(101),
            current_offset: None,
        }
    }

    fn group(name: &str, partitions: i32) -> GroupRow {
        GroupRow {
            group: name.to_owned(),
            state: GroupState::Idle("Empty".to_owned()),
            partitions: (0..partitions)
                .map(|p| {
                    let action = match p % 3 {
                        0 => Action::Commit,
                        1 => Action::Clamp(Clamp::BelowLogStart {
                            translated: 5,
                            log_start: 10,
                        }),
                        _ => Action::Failed("said \"no\"\nand \\ more".to_owned()),
                    };
                    partition(p, action)
                })
                .collect(),
        }
    }

    /// What `writer` prints for `head` and `groups`.
    fn written(json: bool, head: &ReportHead, groups: &[GroupRow]) -> (String, usize) {
        let mut out = String::new();
        let mut prints = 0;
        {
            let print = |text: &str| {
                out.push_str(text);
                prints += 1;
            };
            let mut writer: Box<dyn ReportWriter> = if json {
                Box::new(JsonWriter::new(print))
            } else {
                Box::new(TableWriter::new(print))
            };
            writer.head(head);
            for g in groups {
                writer.group(g);
            }
            writer.end(None);
        }
        (out, prints)
    }

    #[test]
    fn streamed_json_is_byte_for_byte_the_whole_document() {
        let mut unknown = group("ghost", 0);
        unknown.state = GroupState::Unknown(UnknownState::NotReported);
        let many: Vec<GroupRow> = (0..300).map(|g| group(&format!("app-{g}"), 7)).collect();
        let cases: Vec<(ReportHead, Vec<GroupRow>)> = vec![
            (head(false, None), Vec::new()),
            (
                head(true, Some("primary unreachable: \"refused\"")),
                vec![group("billing", 3)],
            ),
            (
                head(false, None),
                vec![group("a", 1), unknown, group("ü \t b", 2)],
            ),
            (head(true, None), many),
        ];
        for (head, groups) in &cases {
            let whole = Whole {
                v: head.v,
                direction: head.direction,
                source: head.source,
                target: head.target,
                checkpoints_topic: &head.checkpoints_topic,
                applied: head.applied,
                source_error: head.source_error.as_deref(),
                groups,
            };
            let want = format!("{}\n", serde_json::to_string_pretty(&whole).expect("json"));
            let (got, prints) = written(true, head, groups);
            assert_eq!(got, want, "{} groups", groups.len());
            if groups.len() == 300 {
                assert!(prints > 1, "a long report is written as it goes: {prints}");
            }
        }
    }

    #[test]
    fn a_long_table_is_a_grid_per_thousand_rows_with_groups_whole_and_one_footer() {
        let header = "--apply would";
        let (short, _) = written(false, &head(false, None), &[group("billing", 3)]);
        assert_eq!(short.matches(header).count(), 1, "{short}");
        assert!(
            short.starts_with(
                "primary → dr: translations from primary.checkpoints.internal on dr\n"
            )
        );
        assert!(short.ends_with("nothing was written; run again with --apply to commit\n"));

        let (empty, _) = written(false, &head(false, None), &[]);
        assert_eq!(
            empty.matches(header).count(),
            1,
            "an empty table still: {empty}"
        );
        assert!(!empty.contains("nothing was written"), "{empty}");

        // 31 groups of 70 rows: a grid closes at the first group that reaches 1 000 rows.
        let groups: Vec<GroupRow> = (0..31).map(|g| group(&format!("app-{g:02}"), 70)).collect();
        let (long, _) = written(false, &head(false, None), &groups);
        assert_eq!(long.matches(header).count(), 3, "1 050 + 1 050 + 70 rows");
        let (even, _) = written(false, &head(false, None), &groups[..30]);
        assert_eq!(
            even.matches(header).count(),
            2,
            "1 050 + 1 050 rows, no empty grid"
        );
        assert_eq!(long.matches("nothing was written").count(), 1);
        assert_eq!(long.matches("translations from").count(), 1);
        for g in &groups {
            assert_eq!(
                long.matches(&format!(" {} ", g.group)).count(),
                1,
                "{}",
                g.group
            );
        }
        let (applied, _) = written(false, &head(true, None), &groups[..1]);
        assert!(applied.contains(" done "), "{applied}");
        assert!(!applied.contains("nothing was written"), "{applied}");
    }

    #[test]
    fn failures_keep_the_commands_words() {
        let words = |e| lookup_error(e).to_string();
        let checkpoints = Call::Checkpoints {
            topic: "primary.checkpoints.internal".to_owned(),
            target: Role::Dr,
        };
        assert_eq!(
            words(TranslateError::Cut {
                call: checkpoints,
                cut: Cut::Deadline
            }),
            "failed to read primary.checkpoints.internal on dr before the deadline"
        );
        assert_eq!(
            words(TranslateError::Cut {
                call: Call::Watermarks { target: Role::Dr },
                cut: Cut::Deadline
            }),
            "failed to read the watermarks on dr: the command's deadline passed first"
        );
        assert_eq!(
            words(TranslateError::NoCheckpoints {
                topic: "primary.checkpoints.internal".to_owned(),
                target: Role::Dr,
                source_alias: "primary".to_owned(),
                target_alias: "dr".to_owned(),
            }),
            "no primary.checkpoints.internal on dr: is the primary->dr MirrorMaker 2 flow running with emit.checkpoints.enabled?"
        );
    }
}
