//! `validate`: a failover is half done until the target shows it works. Within a window: every
//! group's committed offsets advance (or its lag shrinks, or, with nothing left to read, it has
//! live members on the target), no group was reset to the log start
//! (the sign of a failed translation and mass reprocessing), and, when asked, producers write to
//! the target's original topics.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use super::{StepCtx, StepDone, StepError, StepResult, sleep_or_cancel};
use crate::kafka::{DEFAULT_CONCURRENCY, GroupPartitions, KafkaError, TopicPartition};
use crate::mm2::ReplicationPolicy;
use crate::plan::{Groups, Selector, Validate};
use crate::replication::{Flow, present};

pub async fn run(ctx: &mut StepCtx<'_>, v: &Validate) -> StepResult {
    let flow = ctx.flow()?;
    let target_role = flow.target_plan.role;
    let groups = groups_to_watch(ctx, v);
    if ctx.dry_run {
        return Ok(StepDone::DryRun(format!(
            "would watch groups {} on {target_role} for {}{}",
            if groups.is_empty() {
                "(none)".to_owned()
            } else {
                groups.join(", ")
            },
            humantime::format_duration(v.within),
            if v.require_producers {
                ", and require new writes to its original topics"
            } else {
                ""
            }
        )));
    }
    let (tps, originals) = target_partitions(ctx, &flow).await?;
    let mut watch = Watch::default();
    let producers_before = ctx
        .bounded(
            "read the target's end offsets",
            sum_of_ends(&flow, &originals),
        )
        .await?;
    let mut producers_ok = !v.require_producers;
    let window_end = (tokio::time::Instant::now() + v.within).min(ctx.deadline);
    loop {
        let marks = ctx
            .bounded("read the target's watermarks", async {
                present(flow.target.batch_watermarks(&tps).await?)
            })
            .await?;
        let mark_of: BTreeMap<(String, i32), (i64, i64)> = marks
            .into_iter()
            .flatten()
            .map(|w| ((w.topic, w.partition), (w.low, w.high)))
            .collect();
        // Every group still to prove, its offsets read in one bounded batch.
        let pending: Vec<GroupPartitions> = groups
            .iter()
            .filter(|g| !watch.progressed.contains_key(*g))
            .map(|g| GroupPartitions {
                group: g.clone(),
                partitions: tps.clone(),
            })
            .collect();
        let offsets = ctx
            .bounded(
                "read the groups' offsets",
                read_offsets(&flow, &pending, DEFAULT_CONCURRENCY),
            )
            .await?;
        for (ask, offsets) in pending.iter().zip(offsets) {
            check_group(ctx, &flow, &mut watch, &ask.group, offsets, &mark_of).await?;
        }
        if !producers_ok {
            let total = ctx
                .bounded(
                    "read the target's end offsets",
                    sum_of_ends(&flow, &originals),
                )
                .await?;
            if total > producers_before {
                producers_ok = true;
                ctx.recorder.observe(
                    "producers",
                    format!(
                        "{} new records on {target_role}'s original topics",
                        total - producers_before
                    ),
                    serde_json::Value::Null,
                )?;
            }
        }
        if watch.progressed.len() == groups.len() && producers_ok {
            return Ok(StepDone::Ok(format!(
                "{} consuming on {target_role}, none reset{}",
                crate::report::count(groups.len(), "group"),
                if v.require_producers {
                    ", producers writing there"
                } else {
                    ""
                }
            )));
        }
        if tokio::time::Instant::now() >= window_end {
            return Err(window_failure(v, &flow, &groups, &watch, producers_ok));
        }
        if sleep_or_cancel(std::time::Duration::from_millis(250), &mut ctx.cancel).await {
            return Err(StepError::Interrupted(
                "interrupted while validating".to_owned(),
            ));
        }
    }
}

/// The sum of the end offsets of the partitions the target has, in one batched read.
async fn sum_of_ends(flow: &Flow, tps: &[TopicPartition]) -> Result<i64, KafkaError> {
    Ok(present(flow.target.batch_end_offsets(tps).await?)?
        .into_iter()
        .flatten()
        .sum())
}

/// Each group's committed offsets, in the order asked, at most `concurrency` in flight; the
/// first group that cannot be read fails the look, as one group's read did.
async fn read_offsets(
    flow: &Flow,
    asks: &[GroupPartitions],
    concurrency: NonZeroUsize,
) -> Result<Vec<Vec<(TopicPartition, Option<i64>)>>, KafkaError> {
    flow.target
        .batch_committed_offsets(asks, concurrency)
        .await
        .into_iter()
        .collect()
}

/// What the window has seen of each group so far.
#[derive(Default)]
struct Watch {
    /// Committed offsets and lag at the first look.
    first: BTreeMap<String, BTreeMap<(String, i32), i64>>,
    first_lag: BTreeMap<String, i64>,
    /// Groups shown to work, and how.
    progressed: BTreeMap<String, String>,
    /// Groups seen caught up with no consumer attached, and the state the target reported.
    idle: BTreeMap<String, crate::replication::GroupState>,
}

/// The plan's named groups, and those translate_offsets committed that the selectors match.
fn groups_to_watch(ctx: &StepCtx<'_>, v: &Validate) -> Vec<String> {
    let selectors = match &v.groups {
        Groups::All => &ctx.plan.replication.groups,
        Groups::List(l) => l,
    };
    let mut names: Vec<String> = selectors
        .iter()
        .filter_map(|s| match s {
            Selector::Name(n) => Some(n.clone()),
            Selector::Pattern { .. } => None,
        })
        .collect();
    names.extend(
        ctx.state
            .committed
            .keys()
            .filter(|g| crate::plan::matches_any(selectors, g))
            .cloned(),
    );
    names.sort();
    names.dedup();
    names
}

/// Every partition of the plan's topics as the target holds them (originals, where new writes
/// land, and MM2's replicas), and the originals alone.
async fn target_partitions(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
) -> Result<(Vec<TopicPartition>, Vec<TopicPartition>), StepError> {
    let policy = &flow.policy;
    let tps = ctx
        .target_partitions(flow, |t| {
            if policy.is_internal_topic(t) {
                return false;
            }
            let original = match policy {
                ReplicationPolicy::Default { .. }
                    if policy.topic_source(t).as_deref() == Some(flow.source_alias()) =>
                {
                    policy.upstream_topic(t).unwrap_or_else(|| t.to_owned())
                }
                _ => t.to_owned(),
            };
            crate::plan::matches_any(&flow.topics, &original)
        })
        .await?;
    let originals: Vec<TopicPartition> = tps
        .iter()
        .filter(|tp| !matches!(flow.policy, ReplicationPolicy::Default { .. } if flow.policy.topic_source(&tp.topic).as_deref() == Some(flow.source_alias())))
        .cloned()
        .collect();
    Ok((tps, originals))
}

/// One look at a group: fail on a reset to the log start, note progress (commits advanced, lag
/// shrank, or caught up with live members), or remember where it is.
async fn check_group(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    watch: &mut Watch,
    group: &str,
    offsets: Vec<(TopicPartition, Option<i64>)>,
    mark_of: &BTreeMap<(String, i32), (i64, i64)>,
) -> Result<(), StepError> {
    let target_role = flow.target_plan.role;
    let now: BTreeMap<(String, i32), i64> = offsets
        .into_iter()
        .filter_map(|(tp, o)| o.map(|o| ((tp.topic, tp.partition), o)))
        .collect();
    check_not_reset(ctx, group, &now, mark_of)?;
    let lag: i64 = now
        .iter()
        .map(|(k, o)| mark_of.get(k).map_or(0, |(_, high)| (high - o).max(0)))
        .sum();
    // Nothing left to read and consumers attached: the group works, it is just quiet.
    // Commits cannot advance with nothing to read, so this is the only proof there is.
    if lag == 0 && !now.is_empty() {
        let (state, members) = flow.target_group_state(group, ctx.deadline).await;
        match members {
            Some(desc) => {
                let n = desc.members.len();
                let how = format!(
                    "caught up (lag 0) with {n} live member{}",
                    if n == 1 { "" } else { "s" }
                );
                ctx.recorder.observe(
                    "group_progress",
                    format!("group {group} is consuming on {target_role}: {how}"),
                    serde_json::json!({ "group": group, "lag": 0, "state": state, "members": desc.members.len() }),
                )?;
                watch.progressed.insert(group.to_owned(), how);
                return Ok(());
            }
            None => {
                watch.idle.insert(group.to_owned(), state);
            }
        }
    }
    let Some(before) = watch.first.get(group) else {
        watch.first.insert(group.to_owned(), now);
        watch.first_lag.insert(group.to_owned(), lag);
        return Ok(());
    };
    let advanced: i64 = now
        .iter()
        .map(|(k, o)| (o - before.get(k).copied().unwrap_or(*o)).max(0))
        .sum::<i64>()
        + now.iter().filter(|(k, _)| !before.contains_key(*k)).count() as i64;
    let shrunk = watch.first_lag.get(group).is_some_and(|l| lag < *l);
    if advanced > 0 || shrunk {
        let how = if advanced > 0 {
            format!("committed offsets advanced by {advanced}")
        } else {
            format!("lag shrank to {lag}")
        };
        ctx.recorder.observe(
            "group_progress",
            format!("group {group} is consuming on {target_role}: {how}"),
            serde_json::json!({ "group": group, "lag": lag, "advanced": advanced }),
        )?;
        watch.progressed.insert(group.to_owned(), how);
    }
    Ok(())
}

/// A committed offset back at the log start where a translation put it further on: the group
/// was reset and is re-reading everything.
fn check_not_reset(
    ctx: &mut StepCtx<'_>,
    group: &str,
    now: &BTreeMap<(String, i32), i64>,
    mark_of: &BTreeMap<(String, i32), (i64, i64)>,
) -> Result<(), StepError> {
    let Some(translated) = ctx.state.committed.get(group) else {
        return Ok(());
    };
    for (topic, partition, offset) in translated {
        let key = (topic.clone(), *partition);
        if let (Some(c), Some((low, _))) = (now.get(&key), mark_of.get(&key))
            && *c == *low
            && *offset > *low
            && c < offset
        {
            let message = format!(
                "group {group} was reset to the start of {topic}-{partition}: it is reprocessing from the beginning, not from its translated offset {offset}"
            );
            let data = serde_json::json!({ "group": group, "topic": topic, "partition": partition, "committed": c, "translated": offset });
            ctx.recorder.observe(
                "group_reset",
                format!("group {group} is at the log start of {topic}-{partition} ({c}), though it was translated to {offset}"),
                data,
            )?;
            return Err(StepError::Failed(message));
        }
    }
    Ok(())
}

/// The window closed: name the groups that showed no progress, and missing writes.
fn window_failure(
    v: &Validate,
    flow: &Flow,
    groups: &[String],
    watch: &Watch,
    producers_ok: bool,
) -> StepError {
    let target_role = flow.target_plan.role;
    let stuck: Vec<&String> = groups
        .iter()
        .filter(|g| !watch.progressed.contains_key(*g))
        .collect();
    let mut parts = Vec::new();
    if !stuck.is_empty() {
        parts.push(format!(
            "groups not progressing on {target_role}: {}",
            stuck
                .iter()
                .map(|g| match watch.idle.get(g.as_str()) {
                    Some(state) => format!("{g} (caught up, but no consumer attached: {state})"),
                    None => (*g).clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !producers_ok {
        parts.push(format!("no new records on {target_role}'s original topics"));
    }
    StepError::Failed(format!(
        "within {}: {}",
        humantime::format_duration(v.within),
        parts.join("; ")
    ))
}

/// One line saying what the step will do, in the plan's words.
pub fn summary(
    plan: &crate::plan::Plan,
    direction: crate::plan::Direction,
    v: &Validate,
) -> String {
    let (_, target) = plan.source_target(direction);
    format!(
        "check within {} that groups progress on {} without a reset{}",
        humantime::format_duration(v.within),
        target.role,
        if v.require_producers {
            " and producers write there"
        } else {
            ""
        }
    )
}
