//! `quiesce_producers`: stop writes on the source, then prove it. Every write that lands on the
//! source after this point would never reach the target, so "the hook exited 0" is not enough:
//! the source's end offsets must stay still for `idle_for`.

use std::collections::BTreeMap;

use super::exec::run_hook;
use super::{StepCtx, StepDone, StepError, StepResult, Waited, sleep_or_cancel};
use crate::kafka::{Reachability, TopicPartition};
use crate::plan::{Direction, Plan, QuiesceProducers};
use crate::replication::{ReplicatedPartition, present, total_lag};

pub async fn run(ctx: &mut StepCtx<'_>, q: &QuiesceProducers) -> StepResult {
    let flow = ctx.flow()?;
    let source_role = flow.source_plan.role;
    if ctx.state.source_unreachable.is_none() {
        match ctx.wait(flow.source_reachable()).await {
            Waited::Done(Reachability::Unreachable { reason }) => {
                ctx.state.source_unreachable = Some(reason);
            }
            Waited::Cancelled => return Err(interrupted()),
            Waited::Done(Reachability::Reachable(_)) | Waited::DeadlinePassed => {}
        }
    }
    if let Some(reason) = ctx.state.source_unreachable.clone() {
        return source_gone(ctx, &reason);
    }
    if ctx.dry_run {
        return Ok(StepDone::DryRun(format!(
            "{}would prove {source_role}'s end offsets stay still for {}",
            q.run
                .as_ref()
                .map(|c| format!("would run `{}`; ", c.shown))
                .unwrap_or_default(),
            humantime::format_duration(q.idle_for)
        )));
    }
    if let Some(command) = &q.run {
        let timeout = ctx.remaining();
        let outcome = run_hook(ctx, command, timeout, std::time::Duration::from_secs(5)).await?;
        outcome.into_result(timeout)?;
    }
    let partitions = match ctx.state.partitions.clone() {
        Some(p) => p,
        None => {
            ctx.bounded(
                "list the replicated topics on the source",
                flow.partitions_from_source(),
            )
            .await?
        }
    };
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|p| TopicPartition::new(p.source_topic.clone(), p.partition))
        .collect();
    let mut last: Option<BTreeMap<(String, i32), i64>> = None;
    let mut still_since = tokio::time::Instant::now();
    let mut writes_seen = 0i64;
    loop {
        // One batched read for every partition; a topic deleted meanwhile is no longer
        // watched rather than failing the step.
        let read = ctx
            .wait(async { present(flow.source.batch_end_offsets(&tps).await?) })
            .await;
        let ends = match read {
            Waited::Done(Ok(ends)) => tps
                .iter()
                .zip(ends)
                .filter_map(|(tp, end)| Some(((tp.topic.clone(), tp.partition), end?)))
                .collect::<BTreeMap<_, _>>(),
            Waited::Done(Err(e)) => {
                // The source went away while we watched it: that is the disaster, not a bug.
                match ctx.wait(flow.source_reachable()).await {
                    Waited::Done(Reachability::Unreachable { reason }) => {
                        ctx.state.source_unreachable = Some(reason.clone());
                        return source_gone(ctx, &reason);
                    }
                    Waited::Cancelled => return Err(interrupted()),
                    Waited::Done(Reachability::Reachable(_)) | Waited::DeadlinePassed => {}
                }
                return Err(StepError::Failed(format!(
                    "failed to read {source_role}'s end offsets: {e}"
                )));
            }
            Waited::DeadlinePassed => return Err(still_moving(ctx, q, writes_seen)),
            Waited::Cancelled => return Err(interrupted()),
        };
        if let Some(prev) = &last {
            let moved: i64 = ends
                .iter()
                .map(|(k, v)| v - prev.get(k).copied().unwrap_or(*v))
                .sum();
            if moved != 0 {
                writes_seen += moved;
                still_since = tokio::time::Instant::now();
                ctx.recorder.observe(
                    "writes_seen",
                    format!(
                        "{moved} more records were written to {source_role}; waiting for quiet"
                    ),
                    serde_json::json!({ "records": moved }),
                )?;
            }
        }
        ctx.state.last_source_ends = Some(ends.clone());
        last = Some(ends);
        let now = tokio::time::Instant::now();
        if now.duration_since(still_since) >= q.idle_for {
            let total: i64 = last.as_ref().map_or(0, |l| l.values().sum());
            ctx.recorder.observe(
                "quiesced",
                format!(
                    "{source_role}'s end offsets stayed still for {}",
                    humantime::format_duration(q.idle_for)
                ),
                serde_json::json!({
                    "partitions": partitions_json(&partitions, last.as_ref()),
                    "sum_of_end_offsets": total,
                    "writes_seen_while_waiting": writes_seen,
                }),
            )?;
            return Ok(StepDone::Ok(format!(
                "no writes on {source_role} for {}",
                humantime::format_duration(q.idle_for)
            )));
        }
        if now + q.poll_interval > ctx.deadline {
            return Err(still_moving(ctx, q, writes_seen));
        }
        if sleep_or_cancel(q.poll_interval, &mut ctx.cancel).await {
            return Err(interrupted());
        }
    }
}

fn interrupted() -> StepError {
    StepError::Interrupted("interrupted while waiting for producers to stop".to_owned())
}

fn still_moving(ctx: &StepCtx<'_>, q: &QuiesceProducers, writes_seen: i64) -> StepError {
    StepError::Failed(format!(
        "producers did not stop: {writes_seen} records were written while waiting, and the end offsets did not stay still for {} within {}",
        humantime::format_duration(q.idle_for),
        humantime::format_duration(ctx.step.timeout())
    ))
}

fn partitions_json(
    partitions: &[ReplicatedPartition],
    ends: Option<&BTreeMap<(String, i32), i64>>,
) -> serde_json::Value {
    serde_json::Value::Array(
        partitions
            .iter()
            .map(|p| {
                serde_json::json!({
                    "topic": p.source_topic,
                    "partition": p.partition,
                    "end_offset": ends.and_then(|e| e.get(&(p.source_topic.clone(), p.partition))),
                })
            })
            .collect(),
    )
}

/// The source is unreachable: producers cannot be stopped or watched there. Skip, and record
/// the in-flight loss being accepted (the lag at declaration, when it was measured).
fn source_gone(ctx: &mut StepCtx<'_>, reason: &str) -> StepResult {
    let flow_source = ctx.plan.source_target(ctx.direction).0.role;
    let baseline = ctx.state.baseline.as_deref().map(total_lag);
    let estimate = baseline.map_or(
        "unknown (no lag was measured before it went)".to_owned(),
        |n| format!("{n} records (the lag at declaration)"),
    );
    ctx.recorder.decide(
        "kdr",
        format!("skip quiescing: {flow_source} is unreachable"),
        format!("{reason}; records written only to {flow_source} are lost; in-flight loss accepted: {estimate}"),
        serde_json::json!({
            "accepted_in_flight_records": baseline,
            "per_partition": ctx.state.baseline,
        }),
    )?;
    Ok(StepDone::Skipped(format!(
        "{flow_source} is unreachable; in-flight loss accepted: {estimate}"
    )))
}

/// One line saying what the step will do, in the plan's words (secrets as their references).
pub fn summary(plan: &Plan, direction: Direction, q: &QuiesceProducers) -> String {
    let (source, _) = plan.source_target(direction);
    format!(
        "{}prove {}'s end offsets stay still for {}",
        q.run
            .as_ref()
            .map(|c| format!("run `{}`, then ", c.shown))
            .unwrap_or_default(),
        source.role,
        humantime::format_duration(q.idle_for)
    )
}
