//! translate_offsets at failback: the reverse mapping of `replication::reverse` (groups'
//! commits on DR's replica topics, carried home through the forward flow's offset syncs),
//! folded into the reverse flow's checkpoint translations and recorded per partition.

use std::collections::BTreeSet;

use super::{detail, step_error};
use crate::plan::{Direction, Selector};
use crate::replication::{
    Batching, Bound, Cut, Flow, GroupPlan, GroupTranslation, KnownStates, Reverse, ReverseGroup,
    ReverseObservation, ReversePartition, TranslateError, map_home, more_groups_on_dr,
};
use crate::steps::{StepCtx, StepError};

/// The groups on DR a pattern of the plan matches that the reverse flow's checkpoints do not
/// name ([`more_groups_on_dr`]). A failure to list them is recorded and adds none: the
/// checkpoints' groups go on; only Ctrl-C stops the step.
pub(super) async fn more_groups(
    ctx: &mut StepCtx<'_>,
    back: &Flow,
    selectors: &[Selector],
    groups: &[String],
    bound: &mut Bound,
) -> Result<Vec<String>, StepError> {
    if ctx.state.source_unreachable.is_some() {
        return Ok(Vec::new());
    }
    match more_groups_on_dr(back, selectors, groups, bound).await {
        Ok(more) => Ok(more),
        Err(
            e @ TranslateError::Cut {
                cut: Cut::Interrupted,
                ..
            },
        ) => Err(step_error(e, ctx.step.timeout())),
        Err(e) => {
            ctx.recorder.decide(
                "kdr",
                "map home only the groups the reverse flow's checkpoints or the plan name",
                format!(
                    "the groups on {} could not be listed: {e}",
                    back.source_plan.role
                ),
                serde_json::Value::Null,
            )?;
            Ok(Vec::new())
        }
    }
}

/// The groups' commits on DR's replica topics mapped home, one per group of `groups`; `None`
/// when the mapping does not apply (recorded with its reason).
pub(super) async fn map(
    ctx: &mut StepCtx<'_>,
    back: &Flow,
    groups: &[String],
    known: &KnownStates<'_>,
    allow_rewind: bool,
    bound: &mut Bound,
) -> Result<Option<Vec<ReverseGroup>>, StepError> {
    let clusters = ctx
        .clusters
        .ok_or_else(|| StepError::Failed("no Kafka clients were made for this run".to_owned()))?;
    let forward = Flow::new(ctx.plan, clusters, Direction::Failover);
    let mapped = match &ctx.state.source_unreachable {
        Some(why) => Reverse::Skipped(format!(
            "reverse checkpointing skipped: {} cannot be read ({why})",
            back.source_plan.role
        )),
        None => map_home(
            back,
            &forward,
            groups,
            known,
            allow_rewind,
            Batching::default(),
            bound,
        )
        .await
        .or_else(|e| match e {
            TranslateError::Cut {
                cut: Cut::Interrupted,
                ..
            } => Err(step_error(e, ctx.step.timeout())),
            // The checkpoints' translations stand without it: say why, and go on.
            e => Ok(Reverse::Skipped(format!(
                "reverse checkpointing skipped: {e}"
            ))),
        })?,
    };
    match mapped {
        Reverse::Skipped(why) => {
            ctx.recorder.decide(
                "kdr",
                "skip reverse checkpointing",
                why,
                serde_json::Value::Null,
            )?;
            Ok(None)
        }
        Reverse::Mapped(read) => {
            let positions: usize = read
                .groups
                .iter()
                .map(|g| g.partitions.iter().filter(|p| p.position.is_some()).count())
                .sum();
            ctx.recorder.observe(
                "reverse_syncs_read",
                format!(
                    "read {} records of {} on {} for reverse checkpointing: positions on {} for {positions} partitions of {} groups",
                    read.syncs_read,
                    read.syncs_topic,
                    read.syncs_holder,
                    back.target_plan.role,
                    read.groups.iter().filter(|g| g.has_positions()).count(),
                ),
                serde_json::json!({
                    "topic": read.syncs_topic,
                    "holder": read.syncs_holder,
                    "records": read.syncs_read,
                    "undecodable": read.syncs_undecodable,
                }),
            )?;
            Ok(Some(read.groups))
        }
    }
}

/// A group's plan, and at failback its reverse mapping.
pub(super) type Folded = (GroupPlan, Option<ReverseGroup>);

/// Per group of the step, in order: its plan (the reverse flow's checkpoints, with the reverse
/// mapping folded in at failback) and its reverse mapping; `None` for a group neither gives
/// anything to commit or report. `checkpointed` holds the checkpointed groups' plans in the
/// order of `groups`; `reverse`, when there is one, a mapping per group of `groups`.
pub(super) fn fold(
    groups: &[String],
    checkpointed: Vec<GroupPlan>,
    reverse: Option<Vec<ReverseGroup>>,
) -> Vec<Option<Folded>> {
    let mut checkpointed = checkpointed.into_iter().peekable();
    let mut reverse = reverse.map(Vec::into_iter);
    groups
        .iter()
        .map(|group| {
            let plan = checkpointed
                .next_if(|p| &p.translation.group == group)
                .map(Some)
                .unwrap_or_default();
            let mapped = reverse.as_mut().and_then(Iterator::next);
            match (plan, mapped) {
                (None, None) => None,
                (Some(plan), None) => Some((plan, None)),
                (None, Some(r)) if !r.has_positions() => None,
                (plan, Some(mut r)) => {
                    let mut plan = plan.unwrap_or_else(|| GroupPlan {
                        translation: GroupTranslation {
                            group: group.clone(),
                            state: r.state.clone(),
                            partitions: Vec::new(),
                        },
                        members: r.members.clone(),
                    });
                    r.combine_into(&mut plan.translation);
                    Some((plan, Some(r)))
                }
            }
        })
        .collect()
}

/// Records one group's reverse mapping as it ended (`refused`: the group was left alone) in a
/// `reverse_translation` observation, and returns its rows for the re-read ledger.
pub(super) fn record(
    ctx: &mut StepCtx<'_>,
    reverse: &ReverseGroup,
    plan: &GroupTranslation,
    refused: bool,
) -> Result<Vec<ReversePartition>, StepError> {
    let rows = if refused {
        let mut left = plan.clone();
        left.refuse();
        reverse.finish(&left)
    } else {
        reverse.finish(plan)
    };
    let what = rows
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let observation = ReverseObservation {
        group: reverse.group.clone(),
        syncs_topic: reverse.syncs_topic.clone(),
        partitions: rows.clone(),
    };
    ctx.recorder.observe(
        "reverse_translation",
        format!("group {}: {what}", reverse.group),
        detail(&observation)?,
    )?;
    Ok(rows)
}

/// The primary's partitions whose position the reverse mapping gave.
pub(super) fn mapped(rows: &[ReversePartition]) -> BTreeSet<(&str, i32)> {
    rows.iter()
        .filter(|r| r.position_from == crate::replication::PositionFrom::ForwardSyncs)
        .map(|r| (r.topic.as_str(), r.partition))
        .collect()
}

/// Adds the reverse mapping's re-reads to the group's `reprocessing` figure and rows.
pub(super) fn rereads(
    rows: &[ReversePartition],
    total: &mut Option<i64>,
    partitions: &mut Vec<serde_json::Value>,
) {
    for r in rows
        .iter()
        .filter(|r| r.position_from == crate::replication::PositionFrom::ForwardSyncs)
    {
        if let Some(n) = r.may_reread {
            *total = Some(total.unwrap_or(0) + n);
        }
        partitions.push(serde_json::json!({
            "target_topic": r.topic,
            "partition": r.partition,
            "position_from": r.position_from,
            "dr_committed": r.dr_committed,
            "sync": r.sync,
            "target_offset": r.target_offset,
            "may_reread": r.may_reread,
        }));
    }
}
