//! `kdr offsets translate`: where each consumer group would start on the target, worked out
//! exactly as the `translate_offsets` step does it (`replication::plan_group`), with the
//! group's committed offset on the source beside it where the source answers. Nothing is
//! written unless `--apply`; then the offsets are committed as the step commits them: groups
//! with live members are refused, no partition is moved backwards.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::time::Instant;

use super::{LookupCtx, LookupError, SCHEMA_VERSION, bounded, cell, table};
use crate::kafka::{Reachability, TopicPartition};
use crate::mm2::CheckpointIndex;
use crate::plan::{Direction, Plan, Role, Selector};
use crate::replication::{
    Action, Applied, Bound, Call, Clusters, Cut, Flow, GroupState, OPERATION_TIMEOUT,
    PartitionTranslation, Skip, TranslateError, apply, plan_group, read_checkpoints,
    resolve_groups,
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
    let mut bound = ctx.bound();
    let within = bound.within(OPERATION_TIMEOUT * 2);
    let (index, source) = tokio::join!(
        read_checkpoints(&flow, within, &mut bound),
        tokio::time::timeout_at(ctx.deadline, flow.source_reachable()),
    );
    let index = index.map_err(lookup_error)?;
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
    let mut rows = Vec::new();
    for group in groups {
        let row = translate_group(
            &flow,
            &group,
            &index,
            request.apply,
            &mut source_error,
            &mut bound,
        )
        .await?;
        if row.partitions.is_empty() {
            ctx.say(&format!(
                "warning: no checkpoint for group {group} in {topic}: MM2 has not seen it commit, or it is filtered out"
            ));
        }
        rows.push(row);
    }
    if let Some(e) = &source_error {
        ctx.say(&format!("note: source committed offsets not shown: {e}"));
    }
    Ok(TranslateReport {
        v: SCHEMA_VERSION,
        direction: request.direction,
        source: source_role,
        target: target_role,
        checkpoints_topic: topic,
        applied: request.apply,
        source_error,
        groups: rows,
    })
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

/// One group: planned as the step plans it (it never rewinds from the command line), with
/// its committed offsets on the source beside it, and committed with `--apply`.
async fn translate_group(
    flow: &Flow,
    group: &str,
    index: &CheckpointIndex,
    apply_it: bool,
    source_error: &mut Option<String>,
    bound: &mut Bound,
) -> Result<GroupRow, LookupError> {
    let mut translation = plan_group(flow, index, group, false, bound)
        .await
        .map_err(lookup_error)?
        .translation;
    let source_committed = source_committed(
        flow,
        group,
        &translation.partitions,
        source_error,
        bound.deadline(),
    )
    .await;
    if translation.state == GroupState::Active {
        translation.refuse();
    } else if apply_it {
        match apply(flow, &translation, bound).await {
            Ok(Applied::Committed(_)) => {}
            Ok(Applied::Refused(_)) => translation.refuse(),
            Err(TranslateError::Kafka { error, .. }) => translation.fail(&error.to_string()),
            Err(_) => translation.fail("the command's deadline passed first"),
        }
    }
    Ok(GroupRow {
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
    })
}

/// The group's committed offsets on the source, by source topic and partition. Once the source
/// fails to answer, it is not asked again for the other groups.
async fn source_committed(
    flow: &Flow,
    group: &str,
    partitions: &[PartitionTranslation],
    source_error: &mut Option<String>,
    deadline: Instant,
) -> BTreeMap<(String, i32), Option<i64>> {
    if source_error.is_some() || partitions.is_empty() {
        return BTreeMap::new();
    }
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|p| TopicPartition::new(p.source_topic.clone(), p.partition))
        .collect();
    match bounded(
        deadline,
        &format!(
            "read group {group}'s committed offsets on {}",
            flow.source_plan.role
        ),
        flow.source.committed_offsets(group, &tps),
    )
    .await
    {
        Ok(offsets) => offsets
            .into_iter()
            .map(|(tp, o)| ((tp.topic, tp.partition), o))
            .collect(),
        Err(e) => {
            *source_error = Some(e);
            BTreeMap::new()
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
