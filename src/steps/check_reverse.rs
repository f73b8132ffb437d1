//! `check_reverse_replication`: before a failback moves anything, prove the flow back into the
//! primary works. Everything written on DR since the failover reaches the primary only through
//! it, so a failback over a broken reverse flow loses exactly that.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{StepCtx, StepDone, StepError, StepResult, Waited};
use crate::kafka::{KafkaError, Reachability};
use crate::plan::{CheckReverseReplication, Selector};
use crate::replication::{now_ms, total_lag};
use crate::report::count;

pub async fn run(ctx: &mut StepCtx<'_>, c: &CheckReverseReplication) -> StepResult {
    let flow = ctx.flow()?;
    let (source, target) = (flow.source_plan.role, flow.target_plan.role);
    let (src_alias, tgt_alias) = (
        flow.source_alias().to_owned(),
        flow.target_alias().to_owned(),
    );
    let flow_name = format!("{src_alias}->{tgt_alias}");
    match waited(ctx.wait(flow.source_reachable()).await)? {
        Reachability::Unreachable { reason } => {
            return Err(StepError::Failed(format!(
                "{source} is unreachable ({reason}): there is nothing to replicate from"
            )));
        }
        Reachability::Reachable(_) => {}
    }
    match waited(ctx.wait(flow.target.probe()).await)? {
        Ok(Reachability::Reachable(_)) => {}
        Ok(Reachability::Unreachable { reason }) => {
            return Err(StepError::Failed(format!(
                "{target} is unreachable: {reason}"
            )));
        }
        Err(e) => return Err(StepError::Failed(format!("{target} is unreachable: {e}"))),
    }
    let mut problems = Vec::new();

    // Heartbeats copied by the flow's source connector: records really cross. (The plain
    // `heartbeats` topic is filled by the herder even for a disabled flow, so it proves less.)
    let within = ctx.remaining().min(crate::replication::OPERATION_TIMEOUT);
    let heartbeat_age = waited(ctx.wait(flow.newest_replicated_heartbeat_ms(within)).await)?
        .map(|ts| now_ms() - ts);
    let heartbeats_topic = flow.remote_topic(flow.policy.heartbeats_topic());
    match heartbeat_age {
        Some(age) if Duration::from_millis(age.max(0) as u64) <= c.max_heartbeat_age => {}
        Some(age) => problems.push(format!(
            "the newest heartbeat in {heartbeats_topic} on {target} is {} old (limit {}): is the {flow_name} MirrorMaker flow running?",
            humantime::format_duration(Duration::from_millis(age.max(0) as u64)),
            humantime::format_duration(c.max_heartbeat_age)
        )),
        None => problems.push(format!(
            "no heartbeats in {heartbeats_topic} on {target}: is the {flow_name} MirrorMaker flow running?"
        )),
    }

    // Remote topics: every topic the source would replicate has its copy on the target.
    let partitions = ctx
        .bounded(
            &format!("list the replicated topics on {source}"),
            flow.partitions_from_source(),
        )
        .await?;
    let on_target: BTreeSet<String> = ctx
        .bounded(
            &format!("list the topics on {target}"),
            flow.target.topics(|_| true),
        )
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let missing: BTreeSet<&str> = partitions
        .iter()
        .filter(|p| !on_target.contains(&p.target_topic))
        .map(|p| p.target_topic.as_str())
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "missing on {target}: {} (is the {flow_name} flow replicating these topics?)",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let present: Vec<_> = partitions
        .into_iter()
        .filter(|p| on_target.contains(&p.target_topic))
        .collect();
    let lags = ctx
        .bounded("measure replication lag", flow.measure_lag(&present, None))
        .await?;

    // Checkpoints: consumers can be moved back at translated offsets.
    let checkpoints_topic = flow.checkpoints_topic();
    let mut checkpoint_ages = serde_json::Map::new();
    match ctx.wait(flow.checkpoints(ctx.remaining())).await {
        Waited::Cancelled => return Err(interrupted()),
        Waited::Done(Ok(index)) => {
            let now = now_ms();
            for selector in &ctx.plan.replication.groups {
                let Selector::Name(group) = selector else { continue };
                let newest = index.for_group(group).iter().map(|(_, ts)| *ts).max();
                checkpoint_ages.insert(group.clone(), serde_json::json!(newest.map(|ts| now - ts)));
                match (newest, c.max_checkpoint_age) {
                    (None, _) => problems.push(format!("no checkpoint for group {group} in {checkpoints_topic} on {target}")),
                    (Some(ts), Some(limit)) if Duration::from_millis((now - ts).max(0) as u64) > limit => problems.push(format!(
                        "the newest checkpoint for group {group} is {} old (limit {})",
                        humantime::format_duration(Duration::from_millis((now - ts).max(0) as u64)),
                        humantime::format_duration(limit)
                    )),
                    _ => {}
                }
            }
        }
        Waited::Done(Err(KafkaError::TopicNotFound { .. })) => problems.push(format!(
            "no {checkpoints_topic} on {target}: is the {flow_name} MirrorMaker flow running with emit.checkpoints.enabled?"
        )),
        Waited::Done(Err(e)) => problems.push(format!("cannot read {checkpoints_topic} on {target}: {e}")),
        Waited::DeadlinePassed => problems.push(format!("cannot read {checkpoints_topic} on {target} within the step's timeout")),
    }

    ctx.recorder.observe(
        "reverse_replication",
        format!(
            "{flow_name}: newest heartbeat {}, lag {} over {}",
            heartbeat_age.map_or("none".to_owned(), |a| format!("{} old", age(a))),
            count(total_lag(&lags).max(0) as usize, "record"),
            count(lags.len(), "partition")
        ),
        serde_json::json!({
            "heartbeat_age_ms": heartbeat_age,
            "partitions": lags,
            "checkpoint_age_ms": checkpoint_ages,
            "problems": problems,
        }),
    )?;
    if !problems.is_empty() {
        return Err(StepError::Failed(problems.join("; ")));
    }
    let done = format!(
        "{flow_name} is healthy: heartbeats {} old, lag {}, checkpoints for every group",
        age(heartbeat_age.unwrap_or(0)),
        count(total_lag(&lags).max(0) as usize, "record")
    );
    Ok(if ctx.dry_run {
        StepDone::DryRun(done)
    } else {
        StepDone::Ok(done)
    })
}

fn interrupted() -> StepError {
    StepError::Interrupted("interrupted while checking reverse replication".to_owned())
}

/// A probe's answer, or why there is none: Ctrl-C, or the step's deadline.
fn waited<T>(w: Waited<T>) -> Result<T, StepError> {
    match w {
        Waited::Done(v) => Ok(v),
        Waited::Cancelled => Err(interrupted()),
        Waited::DeadlinePassed => Err(StepError::Failed(
            "the step's timeout passed before the clusters answered".to_owned(),
        )),
    }
}

/// One line saying what the step will do, in the plan's words.
pub fn summary(
    plan: &crate::plan::Plan,
    direction: crate::plan::Direction,
    c: &CheckReverseReplication,
) -> String {
    let (source, target) = plan.source_target(direction);
    format!(
        "prove {} → {} replication is healthy: heartbeats younger than {}, remote topics present, checkpoints for the plan's groups",
        source.role,
        target.role,
        humantime::format_duration(c.max_heartbeat_age)
    )
}

/// An age in milliseconds as people read it; a clock ahead of this host's reads as `0ms`.
fn age(ms: i64) -> String {
    crate::report::format_ms(u64::try_from(ms).unwrap_or(0))
}
