//! `wait_replication`: let the target catch up with what the source holds, within a bound. The
//! plan must say what happens at the bound (abort, or accept the RPO); kdr never guesses.

use super::{StepCtx, StepDone, StepError, StepResult, Waited, sleep_or_cancel};
use crate::kafka::Reachability;
use crate::plan::{Direction, OnTimeout, Plan, WaitReplication};
use crate::replication::{Flow, PartitionLag, ReplicatedPartition, total_lag};

pub async fn run(ctx: &mut StepCtx<'_>, w: &WaitReplication) -> StepResult {
    let flow = ctx.flow()?;
    let partitions = replicated_partitions(ctx, &flow).await?;
    ctx.state.partitions = Some(partitions.clone());
    let mut polls = 0u64;
    let mut last_lags: Option<Vec<PartitionLag>> = None;
    loop {
        polls += 1;
        let lags = match measure(ctx, &flow, &partitions).await? {
            Some(lags) => lags,
            // The bound passed while measuring: decide on the last measurement.
            None => match last_lags.take() {
                Some(lags) => return settle(ctx, w, &lags, &still_over(ctx, w)),
                None => {
                    return Err(StepError::Failed(format!(
                        "failed to measure replication lag within the step's timeout ({})",
                        humantime::format_duration(ctx.step.timeout())
                    )));
                }
            },
        };
        if let Some(end) = verdict(ctx, w, &flow, &lags, polls)? {
            return end;
        }
        last_lags = Some(lags);
        if sleep_or_cancel(w.poll_interval, &mut ctx.cancel).await {
            return Err(interrupted());
        }
    }
}

fn interrupted() -> StepError {
    StepError::Interrupted("interrupted while waiting for replication".to_owned())
}

fn still_over(ctx: &StepCtx<'_>, w: &WaitReplication) -> String {
    format!(
        "lag still over {} per partition after {}",
        w.max_lag_records,
        humantime::format_duration(ctx.step.timeout())
    )
}

/// The partitions to watch: as the run already knows them, else listed on the source while it
/// answers, else on the target.
async fn replicated_partitions(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
) -> Result<Vec<ReplicatedPartition>, StepError> {
    if let Some(p) = ctx.state.partitions.clone() {
        return Ok(p);
    }
    if ctx.state.source_unreachable.is_none() {
        let from_source = ctx
            .bounded(
                "list the replicated topics on the source",
                flow.partitions_from_source(),
            )
            .await;
        match from_source {
            Ok(p) => return Ok(p),
            Err(e @ StepError::Interrupted(_)) => return Err(e),
            Err(_) => {}
        }
    }
    ctx.bounded(
        "list the replicated topics on the target",
        flow.partitions_from_target(),
    )
    .await
}

/// Lag per partition now. While the source answers, measure against its live end offsets; once
/// it is gone, against the last ones seen: nothing newer can arrive on the target any more.
/// `None` when the step's deadline passed while measuring.
async fn measure(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    partitions: &[ReplicatedPartition],
) -> Result<Option<Vec<PartitionLag>>, StepError> {
    let (source_role, target_role) = (flow.source_plan.role, flow.target_plan.role);
    if ctx.state.source_unreachable.is_none() {
        match ctx.wait(flow.measure_lag(partitions, None)).await {
            Waited::Done(Ok(lags)) => {
                ctx.state.last_source_ends = Some(
                    lags.iter()
                        .filter_map(|l| {
                            l.source_end
                                .map(|e| ((l.source_topic.clone(), l.partition), e))
                        })
                        .collect(),
                );
                return Ok(Some(lags));
            }
            Waited::Done(Err(_)) => match ctx.wait(flow.source_reachable()).await {
                Waited::Done(Reachability::Unreachable { reason }) => {
                    ctx.recorder.observe(
                        "source_probe",
                        format!("{source_role} became unreachable: {reason}"),
                        serde_json::Value::Null,
                    )?;
                    ctx.state.source_unreachable = Some(reason);
                }
                Waited::Cancelled => return Err(interrupted()),
                Waited::Done(Reachability::Reachable(_)) | Waited::DeadlinePassed => {}
            },
            // Out of time while measuring; fall through to the last measurement.
            Waited::DeadlinePassed => {}
            Waited::Cancelled => return Err(interrupted()),
        }
    }
    let ends = ctx.state.last_source_ends.clone().unwrap_or_default();
    match ctx.wait(flow.measure_lag(partitions, Some(&ends))).await {
        Waited::Done(Ok(lags)) => Ok(Some(lags)),
        Waited::Done(Err(e)) => Err(StepError::Failed(format!(
            "failed to measure replication lag on the {target_role} cluster: {e}"
        ))),
        Waited::DeadlinePassed => Ok(None),
        Waited::Cancelled => Err(interrupted()),
    }
}

/// What a measurement means: caught up, a dry run's answer, the bound reached (settle), or
/// `None` to poll again.
fn verdict(
    ctx: &mut StepCtx<'_>,
    w: &WaitReplication,
    flow: &Flow,
    lags: &[PartitionLag],
    polls: u64,
) -> Result<Option<StepResult>, StepError> {
    let (source_role, target_role) = (flow.source_plan.role, flow.target_plan.role);
    let over = lags
        .iter()
        .filter(|l| l.lag.is_none_or(|lag| lag > w.max_lag_records as i64))
        .count();
    if over == 0 && ctx.dry_run {
        return Ok(Some(Ok(StepDone::DryRun(format!(
            "lag is {} records: within the bound already; would go on",
            total_lag(lags)
        )))));
    }
    if over == 0 {
        ctx.recorder.observe(
            "caught_up",
            format!(
                "{target_role} has caught up: lag {} records (bound {} per partition)",
                total_lag(lags),
                w.max_lag_records
            ),
            serde_json::json!({ "partitions": lags, "polls": polls }),
        )?;
        return Ok(Some(Ok(StepDone::Ok(format!(
            "caught up: lag {} records over {} partitions",
            total_lag(lags),
            lags.len()
        )))));
    }
    if ctx.dry_run && polls == 1 {
        return Ok(Some(Ok(StepDone::DryRun(format!(
            "lag is {} records over {over} partitions; would wait up to {} for at most {} per partition, then {}",
            total_lag(lags),
            humantime::format_duration(ctx.step.timeout()),
            w.max_lag_records,
            on_timeout_text(w.on_timeout)
        )))));
    }
    let out_of_time = tokio::time::Instant::now() + w.poll_interval > ctx.deadline;
    let why = match ctx.state.source_unreachable.clone() {
        Some(reason) => format!(
            "{source_role} is unreachable ({reason}): replication cannot catch up any further"
        ),
        None if out_of_time => still_over(ctx, w),
        None => return Ok(None),
    };
    Ok(Some(settle(ctx, w, lags, &why)))
}

fn on_timeout_text(o: OnTimeout) -> &'static str {
    match o {
        OnTimeout::Abort => "abort",
        OnTimeout::AcceptRpo => "accept the RPO",
    }
}

/// The bound is reached: abort, or record the accepted loss per partition and go on.
fn settle(
    ctx: &mut StepCtx<'_>,
    w: &WaitReplication,
    lags: &[PartitionLag],
    why: &str,
) -> StepResult {
    let lost: Vec<PartitionLag> = lags
        .iter()
        .filter(|l| l.lag.unwrap_or(0) > 0)
        .cloned()
        .collect();
    let total = total_lag(lags);
    let unknown = lags.iter().filter(|l| l.lag.is_none()).count();
    // Every partition's measurement, not only the lagging ones: a failback reads the
    // replicated-to offsets back from here to find the records only the old primary saw.
    let data = serde_json::json!({
        "lost_records": total,
        "partitions_with_unknown_lag": unknown,
        "per_partition": lost,
        "partitions": lags,
    });
    // Partitions that could not be measured are not "0 lost": say so wherever the total goes.
    let not_replicated = if unknown > 0 {
        format!("{total} records not replicated, lag unknown on {unknown} partitions")
    } else {
        format!("{total} records not replicated")
    };
    match w.on_timeout {
        OnTimeout::Abort => {
            ctx.recorder
                .decide("plan", "abort: replication did not catch up", why, data)?;
            Err(StepError::Failed(format!(
                "{why}; {not_replicated}; the plan says abort"
            )))
        }
        OnTimeout::AcceptRpo => {
            let mut what = format!(
                "accept the RPO: {total} records lost over {} partitions",
                lost.len()
            );
            if unknown > 0 {
                what.push_str(&format!(", {unknown} partitions unmeasured"));
            }
            ctx.recorder.decide("plan", what, why, data)?;
            ctx.state.accepted_loss = lost;
            Ok(StepDone::Ok(format!(
                "RPO accepted: {not_replicated} ({why})"
            )))
        }
    }
}

/// One line saying what the step will do, in the plan's words.
pub fn summary(plan: &Plan, direction: Direction, w: &WaitReplication) -> String {
    let (source, target) = plan.source_target(direction);
    format!(
        "wait until {} → {} lag is at most {} records per partition, else {}",
        source.role,
        target.role,
        w.max_lag_records,
        on_timeout_text(w.on_timeout)
    )
}
