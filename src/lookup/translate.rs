//! `kdr offsets translate`: where each consumer group would start on the target, worked out
//! exactly as the `translate_offsets` step does it (`replication::plan_group`), with the
//! group's committed offset on the source beside it where the source answers. Nothing is
//! written unless `--apply`; then the offsets are committed as the step commits them: groups
//! with live members are refused, no partition is moved backwards.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::{LookupCtx, LookupError, SCHEMA_VERSION, cell, count, table};
use crate::kafka::{Reachability, TopicPartition, Watermarks};
use crate::plan::{Direction, Plan, Role, Selector};
use crate::replication::{
    Action, Applied, Batching, Bound, Call, Clusters, Cut, Flow, GroupState, GroupTranslation,
    OPERATION_TIMEOUT, Planned, Reverse, ReverseObservation, Skip, SparseSync, TranslateError,
    apply, map_home, plan_groups, read_checkpoints, resolve_groups, source_committed, source_ends,
    sparse_syncs, sparse_syncs_warning,
};

/// `kdr offsets translate --output json`.
#[derive(Debug, Clone, Serialize)]
pub struct TranslateReport {
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
    pub groups: Vec<GroupRow>,
    /// `--direction failback` only: the groups' commits on DR's replica topics mapped home
    /// through the forward flow's offset syncs (reverse checkpointing); their positions are
    /// among `groups`' partitions too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverse: Option<ReverseReport>,
}

/// What the reverse mapping found: its rows per group, or why it was skipped.
#[derive(Debug, Clone, Serialize)]
pub struct ReverseReport {
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

impl TranslateReport {
    /// 1 when a group has no checkpoint, or `--apply` could not commit all it set out to.
    pub fn exit_code(&self) -> u8 {
        let incomplete = self.groups.iter().any(|g| {
            g.partitions.is_empty()
                || (self.applied
                    && g.partitions.iter().any(|p| {
                        matches!(p.action, Action::Failed(_) | Action::Skip(Skip::Active))
                    }))
        });
        if incomplete {
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
) -> Result<TranslateReport, LookupError> {
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
    let groups = resolve_groups(selectors, &index);
    if groups.is_empty() {
        ctx.say(
            "note: no consumer group to translate (the plan names none, or no pattern matched a checkpointed group)",
        );
    }
    // Planned as the step plans it; it never rewinds from the command line.
    let planned = plan_groups(&flow, &index, &groups, false, request.batching, &mut bound)
        .await
        .map_err(lookup_error)?;
    drop(index);
    let mut reverse = match request.direction {
        Direction::Failback => Some(
            reverse_map(
                plan, clusters, &flow, &planned, &groups, request, &mut bound,
            )
            .await
            // The checkpoints' translations stand without it: say why, and go on.
            .unwrap_or_else(|e| Reverse::Skipped(format!("reverse checkpointing skipped: {e}"))),
        ),
        Direction::Failover => None,
    };
    let mut translations: Vec<GroupTranslation> =
        planned.groups.into_iter().map(|g| g.translation).collect();
    ticker.say(&format!(
        "planned {} groups: {} partitions",
        count(translations.len() as i64),
        count(translations.iter().map(|t| t.partitions.len() as i64).sum())
    ));
    for t in translations.iter().filter(|t| t.partitions.is_empty()) {
        ctx.say(&format!(
            "warning: no checkpoint for group {} in {topic}: MM2 has not seen it commit, or it is filtered out",
            t.group
        ));
    }
    let source_committed = read_source(
        &flow,
        &translations,
        request.batching,
        &mut source_error,
        &mut bound,
    )
    .await;
    let mut source_committed = source_committed;
    if source_error.is_none() {
        warn_sparse_syncs(&flow, &translations, &planned.marks, &ctx, &mut bound).await;
    }
    // After the warning: it speaks of the reverse flow's syncs, not the forward flow's.
    if let Some(Reverse::Mapped(read)) = &mut reverse {
        for ((t, r), source) in translations
            .iter_mut()
            .zip(&mut read.groups)
            .zip(&mut source_committed)
        {
            r.combine_into(t);
            for p in &r.partitions {
                source.insert((p.replica_topic.clone(), p.partition), Some(p.dr_committed));
            }
        }
    }
    for t in &mut translations {
        if t.state == GroupState::Active {
            t.refuse();
        }
    }
    if request.apply {
        commit(
            &flow,
            &mut translations,
            request.batching,
            &ticker,
            &mut bound,
        )
        .await;
    }
    if let Some(e) = &source_error {
        ctx.say(&format!("note: source committed offsets not shown: {e}"));
    }
    let reverse = reverse.map(|r| reverse_report(r, &translations));
    let rows = translations
        .into_iter()
        .zip(source_committed)
        .map(|(t, source)| row(t, &source))
        .collect();
    Ok(TranslateReport {
        v: SCHEMA_VERSION,
        direction: request.direction,
        source: source_role,
        target: target_role,
        checkpoints_topic: topic,
        applied: request.apply,
        source_error,
        groups: rows,
        reverse,
    })
}

/// `--direction failback`: the groups' commits on DR's replica topics, mapped home as the
/// failback's translate_offsets maps them.
async fn reverse_map(
    plan: &Plan,
    clusters: &Clusters,
    back: &Flow,
    planned: &Planned,
    groups: &[String],
    request: &TranslateRequest,
    bound: &mut Bound,
) -> Result<Reverse, TranslateError> {
    let forward = Flow::new(plan, clusters, Direction::Failover);
    map_home(
        back,
        &forward,
        groups,
        planned,
        false,
        request.batching,
        bound,
    )
    .await
}

/// The reverse mapping's rows as the translations ended (refused, committed or failed).
fn reverse_report(reverse: Reverse, translations: &[GroupTranslation]) -> ReverseReport {
    match reverse {
        Reverse::Skipped(why) => ReverseReport {
            skipped: Some(why),
            groups: Vec::new(),
        },
        Reverse::Mapped(read) => ReverseReport {
            skipped: None,
            groups: read
                .groups
                .iter()
                .zip(translations)
                .filter(|(r, _)| !r.partitions.is_empty())
                .map(|(r, t)| ReverseObservation {
                    group: r.group.clone(),
                    syncs_topic: r.syncs_topic.clone(),
                    partitions: r.finish(t),
                })
                .collect(),
        },
    }
}

/// How many groups are committed between two progress lines.
const COMMIT_CHUNK: usize = 500;

/// `--apply`: commits every group that is not refused, a chunk at a time so that progress can
/// be told, and marks what could not be committed.
async fn commit(
    flow: &Flow,
    translations: &mut [GroupTranslation],
    batching: Batching,
    ticker: &Ticker<'_>,
    bound: &mut Bound,
) {
    let total = translations.len();
    let mut done = 0;
    for chunk in translations.chunks_mut(COMMIT_CHUNK) {
        let asked: Vec<&GroupTranslation> = chunk
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
        for t in chunk.iter_mut().filter(|t| t.state != GroupState::Active) {
            match (applied.next(), &failed) {
                (_, Some(why)) => t.fail(why),
                (Some(Applied::Refused(_)), None) => t.refuse(),
                (Some(Applied::Failed(error)), None) => t.fail(&error.to_string()),
                (Some(Applied::Committed(_)) | None, None) => {}
            }
        }
        done += chunk.len();
        ticker.say(&format!(
            "committed {} of {} groups",
            count(done as i64),
            count(total as i64)
        ));
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

/// One group's row: its translation, with its committed offsets on the source beside it.
fn row(
    translation: GroupTranslation,
    source_committed: &BTreeMap<(String, i32), Option<i64>>,
) -> GroupRow {
    GroupRow {
        group: translation.group,
        state: translation.state,
        partitions: translation
            .partitions
            .into_iter()
            .map(|p| PartitionRow {
                source_committed_offset: source_committed
                    .get(&(p.source_topic.clone(), p.partition))
                    .copied()
                    .flatten(),
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

/// Every group's committed offsets on the source, by source topic and partition, asked in one
/// batch. Once the source fails to answer for a group, the groups after it show none, as when
/// each was asked in turn and the source was not asked again.
async fn read_source(
    flow: &Flow,
    translations: &[GroupTranslation],
    batching: Batching,
    source_error: &mut Option<String>,
    bound: &mut Bound,
) -> Vec<BTreeMap<(String, i32), Option<i64>>> {
    let mut out = vec![BTreeMap::new(); translations.len()];
    if source_error.is_some() {
        return out;
    }
    let asked: Vec<&GroupTranslation> = translations
        .iter()
        .filter(|t| !t.partitions.is_empty())
        .collect();
    let source = flow.source_plan.role;
    let answers = match bound.wait(source_committed(flow, &asked, batching)).await {
        Ok(answers) => answers,
        Err(_) => {
            *source_error = Some(format!(
                "failed to read the groups' committed offsets on {source}: the command's deadline passed first"
            ));
            return out;
        }
    };
    let mut answers = asked.iter().zip(answers);
    for (t, slot) in translations.iter().zip(&mut out) {
        if t.partitions.is_empty() {
            continue;
        }
        match answers.next() {
            Some((_, Ok(offsets))) => {
                *slot = offsets
                    .into_iter()
                    .map(|(tp, o)| ((tp.topic, tp.partition), o))
                    .collect();
            }
            Some((t, Err(e))) => {
                *source_error = Some(format!(
                    "failed to read group {}'s committed offsets on {source}: {e}",
                    t.group
                ));
                break;
            }
            None => break,
        }
    }
    out
}

/// Says when translations land far below what their groups had consumed (issue 14 #5), from
/// the source partitions' ends, asked once. Quiet when the source cannot say.
async fn warn_sparse_syncs(
    flow: &Flow,
    translations: &[GroupTranslation],
    marks: &HashMap<TopicPartition, Watermarks>,
    ctx: &LookupCtx,
    bound: &mut Bound,
) {
    let all: Vec<&GroupTranslation> = translations.iter().collect();
    let Ok(Ok(ends)) = bound.wait(source_ends(flow, &all)).await else {
        return;
    };
    let sparse: Vec<(&str, Vec<SparseSync>)> = translations
        .iter()
        .map(|t| (t.group.as_str(), sparse_syncs(t, marks, &ends)))
        .collect();
    let sparse: Vec<(&str, &[SparseSync])> =
        sparse.iter().map(|(g, s)| (*g, s.as_slice())).collect();
    if let Some(warning) = sparse_syncs_warning(flow, &sparse) {
        ctx.say(&format!("warning: {warning}"));
    }
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

/// The table `kdr offsets translate` prints.
pub fn render(report: &TranslateReport) -> String {
    let mut t = table(&[
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
        if report.applied {
            "done"
        } else {
            "--apply would"
        },
    ]);
    for g in &report.groups {
        if g.partitions.is_empty() {
            let mut row = vec![g.group.clone(), g.state.to_string()];
            row.extend(std::iter::repeat_n("-".to_owned(), 8));
            row.push("skip: no checkpoint".to_owned());
            t.add_row(row);
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
        }
    }
    let mut out = format!(
        "{} → {}: translations from {} on {}\n{t}\n",
        report.source, report.target, report.checkpoints_topic, report.target
    );
    if let Some(reverse) = &report.reverse {
        render_reverse(&mut out, reverse);
    }
    if !report.applied
        && report
            .groups
            .iter()
            .any(|g| g.partitions.iter().any(PartitionRow::commits))
    {
        out.push_str("nothing was written; run again with --apply to commit\n");
    }
    out
}

/// The reverse mapping under the table: a line per partition, or why there is none.
fn render_reverse(out: &mut String, reverse: &ReverseReport) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
