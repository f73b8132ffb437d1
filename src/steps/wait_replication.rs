//! `wait_replication`: let the target catch up with what the source holds, within a bound. The
//! plan must say what happens at the bound (abort, or accept the RPO); kdr never guesses.

use super::{StepCtx, StepDone, StepError, StepResult, sleep_or_cancel};
use crate::kafka::Reachability;
use crate::plan::{OnTimeout, WaitReplication};
use crate::replication::{PartitionLag, total_lag};

pub async fn run(ctx: &mut StepCtx<'_>, w: &WaitReplication) -> StepResult {
    let flow = ctx.flow()?;
    let (source_role, target_role) = (flow.source_plan.role, flow.target_plan.role);
    let partitions = match ctx.state.partitions.clone() {
        Some(p) => p,
        None if ctx.state.source_unreachable.is_none() => {
            match ctx
                .bounded(
                    "list the replicated topics on the source",
                    flow.partitions_from_source(),
                )
                .await
            {
                Ok(p) => p,
                Err(_) => {
                    ctx.bounded(
                        "list the replicated topics on the target",
                        flow.partitions_from_target(),
                    )
                    .await?
                }
            }
        }
        None => {
            ctx.bounded(
                "list the replicated topics on the target",
                flow.partitions_from_target(),
            )
            .await?
        }
    };
    ctx.state.partitions = Some(partitions.clone());
    let mut polls = 0u64;
    let mut last_lags: Option<Vec<PartitionLag>> = None;
    loop {
        polls += 1;
        // While the source answers, measure against its live end offsets; once it is gone,
        // against the last ones seen: nothing newer can arrive on the target any more.
        let live = if ctx.state.source_unreachable.is_none() {
            match tokio::time::timeout_at(ctx.deadline, flow.measure_lag(&partitions, None)).await {
                Ok(Ok(lags)) => Some(lags),
                Ok(Err(_)) => {
                    if let Reachability::Unreachable { reason } = flow.source_reachable().await {
                        ctx.recorder.observe(
                            "source_probe",
                            format!("{source_role} became unreachable: {reason}"),
                            serde_json::Value::Null,
                        )?;
                        ctx.state.source_unreachable = Some(reason);
                    }
                    None
                }
                // Out of time while measuring; fall through to the last measurement.
                Err(_) => None,
            }
        } else {
            None
        };
        let lags = match live {
            Some(lags) => {
                ctx.state.last_source_ends = Some(
                    lags.iter()
                        .filter_map(|l| {
                            l.source_end
                                .map(|e| ((l.source_topic.clone(), l.partition), e))
                        })
                        .collect(),
                );
                lags
            }
            None => {
                let ends = ctx.state.last_source_ends.clone().unwrap_or_default();
                match tokio::time::timeout_at(
                    ctx.deadline,
                    flow.measure_lag(&partitions, Some(&ends)),
                )
                .await
                {
                    Ok(Ok(lags)) => lags,
                    Ok(Err(e)) => {
                        return Err(StepError::Failed(format!(
                            "failed to measure replication lag on the {target_role} cluster: {e}"
                        )));
                    }
                    // The bound passed while measuring: decide on the last measurement.
                    Err(_) => match last_lags.take() {
                        Some(lags) => {
                            let why = format!(
                                "lag still over {} per partition after {}",
                                w.max_lag_records,
                                humantime::format_duration(ctx.step.timeout())
                            );
                            return settle(ctx, w, &lags, &why);
                        }
                        None => {
                            return Err(StepError::Failed(format!(
                                "failed to measure replication lag within the step's timeout ({})",
                                humantime::format_duration(ctx.step.timeout())
                            )));
                        }
                    },
                }
            }
        };
        last_lags = Some(lags.clone());
        let over: Vec<&PartitionLag> = lags
            .iter()
            .filter(|l| l.lag.is_none_or(|lag| lag > w.max_lag_records as i64))
            .collect();
        if over.is_empty() && ctx.dry_run {
            return Ok(StepDone::DryRun(format!(
                "lag is {} records: within the bound already; would go on",
                total_lag(&lags)
            )));
        }
        if over.is_empty() {
            ctx.recorder.observe(
                "caught_up",
                format!(
                    "{target_role} has caught up: lag {} records (bound {} per partition)",
                    total_lag(&lags),
                    w.max_lag_records
                ),
                serde_json::json!({ "partitions": lags, "polls": polls }),
            )?;
            return Ok(StepDone::Ok(format!(
                "caught up: lag {} records over {} partitions",
                total_lag(&lags),
                lags.len()
            )));
        }
        let source_gone = ctx.state.source_unreachable.clone();
        let out_of_time = tokio::time::Instant::now() + w.poll_interval > ctx.deadline;
        if ctx.dry_run && polls == 1 {
            return Ok(StepDone::DryRun(format!(
                "lag is {} records over {} partitions; would wait up to {} for at most {} per partition, then {}",
                total_lag(&lags),
                over.len(),
                humantime::format_duration(ctx.step.timeout()),
                w.max_lag_records,
                on_timeout_text(w.on_timeout)
            )));
        }
        if source_gone.is_some() || out_of_time {
            let why = match &source_gone {
                Some(reason) => format!(
                    "{source_role} is unreachable ({reason}): replication cannot catch up any further"
                ),
                None => format!(
                    "lag still over {} per partition after {}",
                    w.max_lag_records,
                    humantime::format_duration(ctx.step.timeout())
                ),
            };
            return settle(ctx, w, &lags, &why);
        }
        if sleep_or_cancel(w.poll_interval, &mut ctx.cancel).await {
            return Err(StepError::Interrupted(
                "interrupted while waiting for replication".to_owned(),
            ));
        }
    }
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
    let data = serde_json::json!({
        "lost_records": total,
        "partitions_with_unknown_lag": unknown,
        "per_partition": lost,
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
