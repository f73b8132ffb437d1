//! `validate`: a failover is half done until the target shows it works. Within a window: every
//! group's committed offsets advance (or its lag shrinks, or, with nothing left to read, it has
//! live members on the target), no group was reset to the log start
//! (the sign of a failed translation and mass reprocessing), and, when asked, producers write to
//! the target's original topics.

use std::collections::BTreeMap;

use super::{StepCtx, StepDone, StepError, StepResult, sleep_or_cancel};
use crate::kafka::TopicPartition;
use crate::mm2::ReplicationPolicy;
use crate::plan::{Groups, Selector, Validate};

pub async fn run(ctx: &mut StepCtx<'_>, v: &Validate) -> StepResult {
    let flow = ctx.flow()?;
    let target_role = flow.target_plan.role;
    let groups: Vec<String> = {
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
    };
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
    // Every topic of the plan as the target holds it: originals (new writes) and MM2's replicas.
    let source_alias = flow.source_alias().to_owned();
    let policy = flow.policy.clone();
    let topics = flow.topics.clone();
    let listed = ctx
        .bounded(
            "list the target's topics",
            flow.target.topics(move |t| {
                if policy.is_internal_topic(t) {
                    return false;
                }
                let original = match &policy {
                    ReplicationPolicy::Default { .. }
                        if policy.topic_source(t).as_deref() == Some(source_alias.as_str()) =>
                    {
                        policy.upstream_topic(t).unwrap_or_else(|| t.to_owned())
                    }
                    _ => t.to_owned(),
                };
                crate::plan::matches_any(&topics, &original)
            }),
        )
        .await?;
    let tps: Vec<TopicPartition> = listed
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.clone(), *p))
        })
        .collect();
    let originals: Vec<TopicPartition> = tps
        .iter()
        .filter(|tp| !matches!(flow.policy, ReplicationPolicy::Default { .. } if flow.policy.topic_source(&tp.topic).as_deref() == Some(flow.source_alias())))
        .cloned()
        .collect();

    let mut first: BTreeMap<String, BTreeMap<(String, i32), i64>> = BTreeMap::new();
    let mut first_lag: BTreeMap<String, i64> = BTreeMap::new();
    let mut progressed: BTreeMap<String, String> = BTreeMap::new();
    // Groups seen caught up with no consumer attached, and the state the target reported.
    let mut idle: BTreeMap<String, String> = BTreeMap::new();
    let producers_before = ctx
        .bounded(
            "read the target's end offsets",
            flow.target.end_offsets(&originals),
        )
        .await?;
    let producers_before: i64 = producers_before.iter().map(|(_, e)| e).sum();
    let mut producers_ok = !v.require_producers;
    let window_end = (tokio::time::Instant::now() + v.within).min(ctx.deadline);
    loop {
        let marks = ctx
            .bounded("read the target's watermarks", flow.target.watermarks(&tps))
            .await?;
        let mark_of: BTreeMap<(String, i32), (i64, i64)> = marks
            .iter()
            .map(|w| ((w.topic.clone(), w.partition), (w.low, w.high)))
            .collect();
        for group in &groups {
            if progressed.contains_key(group) {
                continue;
            }
            let offsets = ctx
                .bounded(
                    &format!("read group {group}'s offsets"),
                    flow.target.committed_offsets(group, &tps),
                )
                .await?;
            let now: BTreeMap<(String, i32), i64> = offsets
                .into_iter()
                .filter_map(|(tp, o)| o.map(|o| ((tp.topic, tp.partition), o)))
                .collect();
            // A committed offset back at the log start where a translation put it further on:
            // the group was reset and is re-reading everything.
            if let Some(translated) = ctx.state.committed.get(group) {
                for (topic, partition, offset) in translated {
                    let key = (topic.clone(), *partition);
                    if let (Some(c), Some((low, _))) = (now.get(&key), mark_of.get(&key))
                        && *c == *low
                        && *offset > *low
                        && c < offset
                    {
                        ctx.recorder.observe(
                            "group_reset",
                            format!("group {group} is at the log start of {topic}-{partition} ({c}), though it was translated to {offset}"),
                            serde_json::json!({ "group": group, "topic": topic, "partition": partition, "committed": c, "translated": offset }),
                        )?;
                        return Err(StepError::Failed(format!(
                            "group {group} was reset to the start of {topic}-{partition}: it is reprocessing from the beginning, not from its translated offset {offset}"
                        )));
                    }
                }
            }
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
                        progressed.insert(group.clone(), how);
                        continue;
                    }
                    None => {
                        idle.insert(group.clone(), state.to_string());
                    }
                }
            }
            match first.get(group) {
                None => {
                    first.insert(group.clone(), now);
                    first_lag.insert(group.clone(), lag);
                }
                Some(before) => {
                    let advanced: i64 = now
                        .iter()
                        .map(|(k, o)| (o - before.get(k).copied().unwrap_or(*o)).max(0))
                        .sum::<i64>()
                        + now.iter().filter(|(k, _)| !before.contains_key(*k)).count() as i64;
                    let shrunk = first_lag.get(group).is_some_and(|l| lag < *l);
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
                        progressed.insert(group.clone(), how);
                    }
                }
            }
        }
        if !producers_ok {
            let ends = ctx
                .bounded(
                    "read the target's end offsets",
                    flow.target.end_offsets(&originals),
                )
                .await?;
            let total: i64 = ends.iter().map(|(_, e)| e).sum();
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
        if progressed.len() == groups.len() && producers_ok {
            return Ok(StepDone::Ok(format!(
                "{} groups consuming on {target_role}, none reset{}",
                groups.len(),
                if v.require_producers {
                    ", producers writing there"
                } else {
                    ""
                }
            )));
        }
        if tokio::time::Instant::now() >= window_end {
            let stuck: Vec<&String> = groups
                .iter()
                .filter(|g| !progressed.contains_key(*g))
                .collect();
            let mut parts = Vec::new();
            if !stuck.is_empty() {
                parts.push(format!(
                    "groups not progressing on {target_role}: {}",
                    stuck
                        .iter()
                        .map(|g| match idle.get(g.as_str()) {
                            Some(state) =>
                                format!("{g} (caught up, but no consumer attached: {state})"),
                            None => (*g).clone(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !producers_ok {
                parts.push(format!("no new records on {target_role}'s original topics"));
            }
            return Err(StepError::Failed(format!(
                "within {}: {}",
                humantime::format_duration(v.within),
                parts.join("; ")
            )));
        }
        if sleep_or_cancel(std::time::Duration::from_millis(250), &mut ctx.cancel).await {
            return Err(StepError::Interrupted(
                "interrupted while validating".to_owned(),
            ));
        }
    }
}
