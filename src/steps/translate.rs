//! `translate_offsets`: start consumers on the target where they left off on the source.
//!
//! MM2 writes, per group and partition, the source offset and its translation onto the target
//! (`<source>.checkpoints.internal`). kdr reads that topic once (the last record per group and
//! partition wins, in log order, as `RemoteClusterUtils` does), refuses groups that have live
//! members on the target (the broker would reject the commit, and the members would overwrite
//! it), never moves a group backwards unless the plan allows it, clamps below the log start, and
//! commits. Every partition's numbers go in the log.

use super::flow::{
    Flow, GroupTranslation, TargetPositions, checkpointed_partitions, now_ms, plan_translation,
    resolve_groups,
};
use super::{StepCtx, StepDone, StepError, StepResult};
use crate::kafka::{KafkaError, TopicPartition};
use crate::mm2::CheckpointIndex;
use crate::plan::{Groups, MissingCheckpoint, TranslateOffsets};

pub async fn run(ctx: &mut StepCtx<'_>, t: &TranslateOffsets) -> StepResult {
    let flow = ctx.flow()?;
    let target_role = flow.target_plan.role;
    let topic = flow.checkpoints_topic();
    let within = ctx.remaining();
    let index = match tokio::time::timeout_at(ctx.deadline, flow.checkpoints(within)).await {
        Ok(Ok(index)) => index,
        Ok(Err(KafkaError::TopicNotFound { .. })) => {
            return Err(StepError::Failed(format!(
                "no {topic} on {target_role}: is the {}->{} MirrorMaker 2 flow running with emit.checkpoints.enabled?",
                flow.source_alias(),
                flow.target_alias()
            )));
        }
        Ok(Err(e)) => {
            return Err(StepError::Failed(format!(
                "failed to read {topic} on {target_role}: {e}"
            )));
        }
        Err(_) => {
            return Err(StepError::Failed(format!(
                "failed to read {topic} on {target_role} within the step's timeout"
            )));
        }
    };
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
    let selectors = match &t.groups {
        Groups::All => &ctx.plan.replication.groups,
        Groups::List(l) => l,
    };
    let groups = resolve_groups(selectors, &index);
    if groups.is_empty() {
        return Ok(StepDone::Skipped(
            "the plan names no consumer groups to translate".to_owned(),
        ));
    }

    // For the reprocessing ledger: where each source record landed on the target.
    let syncs = match ctx.state.source_unreachable {
        None => {
            flow.offset_syncs(ctx.remaining().min(super::flow::OPERATION_TIMEOUT))
                .await
        }
        Some(_) => None,
    };
    let mut refused = Vec::new();
    let mut missing = Vec::new();
    let mut committed_partitions = 0;
    let mut translated_groups = 0;
    for group in groups {
        let checkpoints = index.for_group(&group);
        if checkpoints.is_empty() {
            let why = format!(
                "no checkpoint for group {group} in {topic}: MM2 has not seen it commit, or it is filtered out"
            );
            match t.on_missing_checkpoint {
                MissingCheckpoint::Skip => {
                    ctx.recorder.decide(
                        "plan",
                        format!("skip group {group}"),
                        why,
                        serde_json::Value::Null,
                    )?;
                }
                MissingCheckpoint::Fail => {
                    ctx.recorder.decide(
                        "plan",
                        format!("fail on group {group}"),
                        why,
                        serde_json::Value::Null,
                    )?;
                    missing.push(group);
                }
            }
            continue;
        }
        let plan = plan_group(ctx, &flow, &group, &index, t.allow_rewind).await?;
        record_reprocessing(ctx, &flow, &plan, syncs.as_ref()).await?;
        if plan.state == "active" {
            ctx.recorder.observe(
                "group",
                format!("group {group} has live members on {target_role}: refused"),
                serde_json::to_value(&plan).unwrap_or_default(),
            )?;
            refused.push(group);
            continue;
        }
        let commits: Vec<(TopicPartition, i64)> = plan.commits();
        if ctx.dry_run {
            ctx.recorder.observe(
                "group",
                format!("group {group}: would commit {} partitions", commits.len()),
                serde_json::to_value(&plan).unwrap_or_default(),
            )?;
            translated_groups += 1;
            continue;
        }
        if !commits.is_empty() {
            match tokio::time::timeout_at(
                ctx.deadline,
                flow.target.commit_offsets(&group, &commits),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(
                    e @ (KafkaError::GroupNotEmpty { .. } | KafkaError::GroupActive { .. }),
                )) => {
                    ctx.recorder.observe(
                        "group",
                        format!("group {group}: the commit was refused: {e}"),
                        serde_json::to_value(&plan).unwrap_or_default(),
                    )?;
                    refused.push(group);
                    continue;
                }
                Ok(Err(e)) => {
                    return Err(StepError::Failed(format!(
                        "failed to commit offsets for group {group} on {target_role}: {e}"
                    )));
                }
                Err(_) => {
                    return Err(StepError::Failed(format!(
                        "failed to commit offsets for group {group} within the step's timeout"
                    )));
                }
            }
        }
        committed_partitions += commits.len();
        translated_groups += 1;
        ctx.state.committed.insert(
            group.clone(),
            commits
                .iter()
                .map(|(tp, o)| (tp.topic.clone(), tp.partition, *o))
                .collect(),
        );
        ctx.recorder.observe(
            "group",
            format!(
                "group {group}: committed {} of {} partitions on {target_role}",
                commits.len(),
                plan.partitions.len()
            ),
            serde_json::to_value(&plan).unwrap_or_default(),
        )?;
    }
    if ctx.dry_run {
        return Ok(StepDone::DryRun(format!(
            "would commit translated offsets for {translated_groups} groups"
        )));
    }
    if !refused.is_empty() || !missing.is_empty() {
        let mut parts = Vec::new();
        if !refused.is_empty() {
            parts.push(format!("groups with live members on {target_role} were refused: {} (stop their consumers, then resume)", refused.join(", ")));
        }
        if !missing.is_empty() {
            parts.push(format!(
                "groups without a checkpoint: {}",
                missing.join(", ")
            ));
        }
        return Err(StepError::Failed(parts.join("; ")));
    }
    Ok(StepDone::Ok(format!(
        "translated {translated_groups} groups: {committed_partitions} partitions committed on {target_role}"
    )))
}

/// Work out what to do for every partition of a group, reading its state on the target.
async fn plan_group(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    group: &str,
    index: &CheckpointIndex,
    allow_rewind: bool,
) -> Result<GroupTranslation, StepError> {
    let (state, members) = flow.target_group_state(group, ctx.deadline).await;
    if let Some(desc) = members {
        let names: Vec<String> = desc.members.iter().map(ToString::to_string).collect();
        ctx.recorder.observe(
            "group_members",
            format!(
                "group {group} is {} on {} with members: {}",
                desc.state,
                flow.target_plan.role,
                names.join(", ")
            ),
            serde_json::to_value(&desc).unwrap_or_default(),
        )?;
    }
    let now = now_ms();
    let tps = checkpointed_partitions(index, group);
    let current = ctx
        .bounded(
            &format!("read group {group}'s committed offsets"),
            flow.target.committed_offsets(group, &tps),
        )
        .await?;
    let marks = ctx
        .bounded("read the target's watermarks", flow.target.watermarks(&tps))
        .await?;
    let target = TargetPositions { current, marks };
    Ok(GroupTranslation {
        group: group.to_owned(),
        state,
        partitions: plan_translation(flow, group, index, &target, allow_rewind, now),
    })
}

/// How many records a group may read again on the target: between its translated offset and
/// where its last commit on the source lands there. MM2's translation is deliberately behind
/// (the "+1" rule, sparse offset syncs), so this is the duplicate load idempotent consumers must
/// absorb at this boundary. The estimate assumes no filtered or compacted records between the
/// last sync and the commit. With the source gone, the checkpoint's own source offset stands in
/// for the last commit, and the figure is a lower bound.
async fn record_reprocessing(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    plan: &GroupTranslation,
    syncs: Option<&std::collections::BTreeMap<(String, i32), Vec<crate::mm2::OffsetSync>>>,
) -> Result<(), StepError> {
    let source_tps: Vec<TopicPartition> = plan
        .partitions
        .iter()
        .map(|p| TopicPartition::new(p.source_topic.clone(), p.partition))
        .collect();
    let committed = match ctx.state.source_unreachable {
        None => tokio::time::timeout_at(
            ctx.deadline,
            flow.source.committed_offsets(&plan.group, &source_tps),
        )
        .await
        .ok()
        .and_then(Result::ok),
        Some(_) => None,
    };
    let basis = if committed.is_some() {
        "the group's commits on the source"
    } else {
        "the checkpoints (the source cannot be read): a lower bound"
    };
    let mut total: Option<i64> = None;
    let mut partitions = Vec::new();
    for p in &plan.partitions {
        let source_commit = committed
            .as_ref()
            .and_then(|c| {
                c.iter()
                    .find(|(tp, _)| tp.topic == p.source_topic && tp.partition == p.partition)
            })
            .and_then(|(_, o)| *o)
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
