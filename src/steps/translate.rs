//! `translate_offsets`: start consumers on the target where they left off on the source.
//!
//! MM2 writes, per group and partition, the source offset and its translation onto the target
//! (`<source>.checkpoints.internal`). kdr reads that topic once (the last record per group and
//! partition wins, in log order, as `RemoteClusterUtils` does), refuses groups that have live
//! members on the target (the broker would reject the commit, and the members would overwrite
//! it), never moves a group backwards unless the plan allows it, clamps below the log start, and
//! commits. Every partition's numbers go in the log.

use serde::Serialize;

use super::flow::{Flow, now_ms};
use super::{StepCtx, StepDone, StepError, StepResult};
use crate::kafka::{KafkaError, TopicPartition};
use crate::mm2::{CheckpointIndex, ReplicationPolicy};
use crate::plan::{Groups, MissingCheckpoint, TranslateOffsets, matches_any};

/// One partition of one group: the JSON shape of the log and of `kdr offsets translate`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionTranslation {
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
    pub source_offset: i64,
    pub target_offset: i64,
    pub current_offset: Option<i64>,
    pub checkpoint_age_ms: i64,
    pub action: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupTranslation {
    pub group: String,
    pub state: String,
    pub partitions: Vec<PartitionTranslation>,
}

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
    let groups = resolve_groups(ctx, &t.groups, &index);
    if groups.is_empty() {
        return Ok(StepDone::Skipped(
            "the plan names no consumer groups to translate".to_owned(),
        ));
    }

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
        if plan.state == "active" {
            ctx.recorder.observe(
                "group",
                format!("group {group} has live members on {target_role}: refused"),
                serde_json::to_value(&plan).unwrap_or_default(),
            )?;
            refused.push(group);
            continue;
        }
        let commits: Vec<(TopicPartition, i64)> = plan
            .partitions
            .iter()
            .filter(|p| p.action == "commit" || p.action.starts_with("clamp"))
            .map(|p| {
                (
                    TopicPartition::new(p.target_topic.clone(), p.partition),
                    p.target_offset,
                )
            })
            .collect();
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

fn resolve_groups(ctx: &StepCtx<'_>, groups: &Groups, index: &CheckpointIndex) -> Vec<String> {
    let selectors = match groups {
        Groups::All => &ctx.plan.replication.groups,
        Groups::List(l) => l,
    };
    let mut out: Vec<String> = Vec::new();
    for s in selectors {
        match s {
            crate::plan::Selector::Name(n) => out.push(n.clone()),
            crate::plan::Selector::Pattern { .. } => {
                out.extend(
                    index
                        .groups()
                        .into_iter()
                        .filter(|g| matches_any(std::slice::from_ref(s), g))
                        .map(str::to_owned),
                );
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The source topic a checkpoint's (target-named) topic came from.
fn source_topic_of(flow: &Flow, target_topic: &str) -> String {
    match &flow.policy {
        ReplicationPolicy::Identity { .. } => target_topic.to_owned(),
        ReplicationPolicy::Default { .. } => {
            if flow.policy.topic_source(target_topic).as_deref() == Some(flow.source_alias()) {
                flow.policy
                    .upstream_topic(target_topic)
                    .unwrap_or_else(|| target_topic.to_owned())
            } else {
                // MM2 renamed a topic that came from the target back to its original name.
                flow.policy
                    .format_remote_topic(flow.target_alias(), target_topic)
            }
        }
    }
}

/// Work out what to do for every partition of a group, reading its state on the target.
pub async fn plan_group(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    group: &str,
    index: &CheckpointIndex,
    allow_rewind: bool,
) -> Result<GroupTranslation, StepError> {
    let state = match tokio::time::timeout_at(ctx.deadline, flow.target.group_state(group)).await {
        Ok(Ok(desc)) if desc.has_members() => {
            let members: Vec<String> = desc.members.iter().map(ToString::to_string).collect();
            ctx.recorder.observe(
                "group_members",
                format!(
                    "group {group} is {} on {} with members: {}",
                    desc.state,
                    flow.target_plan.role,
                    members.join(", ")
                ),
                serde_json::to_value(&desc).unwrap_or_default(),
            )?;
            "active".to_owned()
        }
        Ok(Ok(desc)) => desc.state.to_lowercase(),
        Ok(Err(KafkaError::Unsupported { .. })) => {
            "unknown (membership not reported by this cluster)".to_owned()
        }
        Ok(Err(e)) => format!("unknown ({e})"),
        Err(_) => "unknown (no answer in time)".to_owned(),
    };
    let now = now_ms();
    let checkpoints = index.for_group(group);
    let tps: Vec<TopicPartition> = checkpoints
        .iter()
        .map(|(c, _)| TopicPartition::new(c.topic.clone(), c.partition))
        .collect();
    let current = ctx
        .bounded(
            &format!("read group {group}'s committed offsets"),
            flow.target.committed_offsets(group, &tps),
        )
        .await?;
    let marks = ctx
        .bounded("read the target's watermarks", flow.target.watermarks(&tps))
        .await?;
    let mut partitions = Vec::new();
    for (checkpoint, ts) in checkpoints {
        let tp = (checkpoint.topic.clone(), checkpoint.partition);
        let current_offset = current
            .iter()
            .find(|(t, _)| (t.topic.as_str(), t.partition) == (tp.0.as_str(), tp.1))
            .and_then(|(_, o)| *o);
        let mark = marks
            .iter()
            .find(|w| (w.topic.as_str(), w.partition) == (tp.0.as_str(), tp.1));
        let translated = checkpoint.downstream_offset;
        let (target_offset, action) = match mark {
            None => (
                translated,
                "skip: no such partition on the target".to_owned(),
            ),
            Some(w) if translated < w.low => (
                w.low,
                format!("clamp: {translated} is below the log start {}", w.low),
            ),
            Some(w) if translated > w.high => (
                w.high,
                format!("clamp: {translated} is past the log end {}", w.high),
            ),
            Some(_) => (translated, String::new()),
        };
        let action = if !action.is_empty() && action.starts_with("skip") {
            action
        } else if current_offset.is_some_and(|c| target_offset < c) && !allow_rewind {
            "skip: would rewind".to_owned()
        } else if current_offset == Some(target_offset) {
            "unchanged".to_owned()
        } else if action.is_empty() {
            "commit".to_owned()
        } else {
            action
        };
        partitions.push(PartitionTranslation {
            source_topic: source_topic_of(flow, &checkpoint.topic),
            target_topic: checkpoint.topic.clone(),
            partition: checkpoint.partition,
            source_offset: checkpoint.upstream_offset,
            target_offset,
            current_offset,
            checkpoint_age_ms: now - ts,
            action,
        });
    }
    Ok(GroupTranslation {
        group: group.to_owned(),
        state,
        partitions,
    })
}
