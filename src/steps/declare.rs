//! `declare`: the human gate in front of a failover. Automatic failover risks split brain, so a
//! person declares it, and the log says who, when and why. Before asking, kdr probes both
//! clusters and takes the replication snapshot that is the RPO baseline, so the operator
//! decides on numbers.

use std::collections::BTreeMap;

use serde::Serialize;

use super::gate::Answer;
use super::{StepCtx, StepDone, StepError, StepResult, stranded};
use crate::authority::{Claim, MoveError, claim_and_move, contest};
use crate::kafka::{KafkaError, Reachability};
use crate::plan::{Confirm, Declare, Direction, Stranded};
use crate::replication::{Flow, PartitionLag, ReplicatedPartition, now_ms, total_lag};

pub async fn run(ctx: &mut StepCtx<'_>, declare: &Declare) -> StepResult {
    let expected = match declare.confirm {
        Confirm::PlanName => ctx.plan.name.clone(),
        Confirm::Yes => "yes".to_owned(),
    };
    let what = format!("declare the {} of plan {}", ctx.direction, ctx.plan.name);
    let snapshot = if ctx.clusters.is_some() {
        Some(take_snapshot(ctx).await?)
    } else {
        None
    };
    // A failback looks for the records only the old primary saw before anyone is asked: with
    // some and no choice in the plan it stops here, having claimed and changed nothing.
    let stranded = if ctx.clusters.is_some() && ctx.direction == Direction::Failback {
        let flow = ctx.flow()?;
        Some((stranded::find(ctx, &flow).await?, flow))
    } else {
        None
    };
    let missing_choice = declare.stranded.is_none();
    if ctx.dry_run {
        let stranded_text = stranded
            .as_ref()
            .map(|(finding, _)| match (finding.stranded(), declare.stranded) {
                (Some(_), Some(choice)) => {
                    format!("; {}: would {}", finding.summary(), choice.as_str())
                }
                (Some(_), None) => format!(
                    "; {}: would stop, the plan does not say what to do with them (`stranded:` on this declare)",
                    finding.summary()
                ),
                (None, _) => format!("; {}", finding.summary()),
            })
            .unwrap_or_default();
        return Ok(StepDone::DryRun(format!(
            "would ask the operator to type `{expected}` to {what}{}{stranded_text}",
            snapshot.map(|s| format!("; {s}")).unwrap_or_default()
        )));
    }
    if let Some(found) = stranded.as_ref().and_then(|(f, _)| f.stranded())
        && missing_choice
    {
        return Err(stranded::missing_choice(ctx, found));
    }
    let snapshot = snapshot.map(|s| format!("; {s}")).unwrap_or_default();
    if ctx.gate.unattended() {
        ctx.recorder.decide(
            ctx.operator,
            what,
            ctx.reason,
            serde_json::json!({ "confirmed_by": "--yes" }),
        )?;
        let moved = declared(ctx, declare, stranded.as_ref()).await?;
        return Ok(StepDone::Ok(format!(
            "declared by {} (--yes): {}{snapshot}{moved}",
            ctx.operator, ctx.reason
        )));
    }
    ctx.recorder.say(&format!(
        "\n  About to {what}.\n  Operator: {}\n  Reason:   {}\n",
        ctx.operator, ctx.reason
    ));
    let prompt = format!("  Type `{expected}` to declare, anything else aborts: ");
    match ctx
        .gate
        .ask(&prompt, ctx.step.timeout(), &mut ctx.cancel)
        .await
    {
        Answer::Text(t) if t == expected => {
            ctx.recorder.decide(
                ctx.operator,
                what,
                ctx.reason,
                serde_json::json!({ "confirmed_by": "typed" }),
            )?;
            let moved = declared(ctx, declare, stranded.as_ref()).await?;
            Ok(StepDone::Ok(format!(
                "declared by {}: {}{snapshot}{moved}",
                ctx.operator, ctx.reason
            )))
        }
        Answer::Text(t) => {
            ctx.recorder.decide(
                ctx.operator,
                format!("not {what}"),
                format!("typed `{t}` instead of `{expected}`"),
                serde_json::Value::Null,
            )?;
            Err(StepError::Aborted(format!(
                "not declared: the operator typed `{t}`, not `{expected}`"
            )))
        }
        Answer::Closed => Err(StepError::Aborted(
            "not declared: the terminal closed".to_owned(),
        )),
        Answer::TimedOut => Err(StepError::Aborted(format!(
            "not declared: no answer within {}",
            humantime::format_duration(ctx.step.timeout())
        ))),
        Answer::Cancelled => Err(StepError::Interrupted(
            "interrupted at the declaration".to_owned(),
        )),
    }
}

/// Once declared: take write authority, then (a failback that found stranded records) do what
/// the plan says with them. Returns the fragments for the step's message.
async fn declared(
    ctx: &mut StepCtx<'_>,
    declare: &Declare,
    stranded: Option<&(stranded::Finding, Flow)>,
) -> Result<String, StepError> {
    let mut text = take_authority(ctx).await?;
    let Some((finding, flow)) = stranded else {
        return Ok(text);
    };
    match (finding.stranded(), declare.stranded) {
        (Some(found), Some(choice)) => {
            text.push_str(&format!("; {}", finding.summary()));
            text.push_str(&stranded::settle(ctx, flow, choice, found).await?);
        }
        _ => text.push_str(&format!("; {}", finding.summary())),
    }
    Ok(text)
}

/// The declaration claims the next epoch of write authority on the target (see
/// [`crate::authority`]): a run that loses the claim to another run stops here, before any
/// step has changed a cluster. A failover moves authority to the target at once; a failback
/// only when its last step is done (until then the DR side still owns writes), and there its
/// claim is found again.
async fn take_authority(ctx: &mut StepCtx<'_>) -> Result<String, StepError> {
    let Some(clusters) = ctx.clusters else {
        return Ok(String::new());
    };
    let target = ctx.plan.source_target(ctx.direction).1.role;
    if ctx
        .state
        .authority
        .as_ref()
        .is_some_and(|a| a.owner().0 == target)
    {
        return Ok(String::new());
    }
    let claim = Claim {
        plan: &ctx.plan.name,
        owner: target,
        direction: ctx.direction,
        operator: ctx.operator,
        force: ctx.state.force,
    };
    let current = ctx.state.authority.as_ref();
    let (primary, dr) = (&clusters.primary, &clusters.dr);
    let taken = match ctx.direction {
        Direction::Failover => claim_and_move(ctx.recorder, primary, dr, current, claim).await,
        Direction::Failback => contest(ctx.recorder, primary, dr, current, claim).await,
    };
    match (taken, ctx.direction) {
        (Ok(epoch), Direction::Failover) => Ok(format!(
            "; write authority moved to {target} (epoch {epoch})"
        )),
        (Ok(epoch), Direction::Failback) => Ok(format!(
            "; epoch {epoch} of write authority claimed for {target}, to move when the failback is done"
        )),
        (Err(MoveError::NotRecorded { source, .. }), _) => Err(StepError::Failed(format!(
            "declared, but write authority could not be recorded on {target}: {source}"
        ))),
        (Err(e @ MoveError::NotClaimed { .. }), _) => {
            Err(StepError::Failed(format!("declared, but {e}")))
        }
        (Err(e @ MoveError::Lost { .. }), _) => Err(StepError::Refused(format!(
            "{e}; this run changed nothing on any cluster"
        ))),
        (Err(MoveError::Journal(e)), _) => Err(e.into()),
    }
}

/// Probe both clusters and record the RPO baseline: lag per partition, newest heartbeat age,
/// newest checkpoint age per group. Returns a one-line summary.
async fn take_snapshot(ctx: &mut StepCtx<'_>) -> Result<String, StepError> {
    let flow = ctx.flow()?;
    let source_role = flow.source_plan.role;
    let target_role = flow.target_plan.role;
    // A cluster that answers and refuses kdr's credentials is not down: it may be serving its
    // producers right now. Declaring it gone would skip quiescing and split the brain.
    let source = match flow.source.probe().await {
        Ok(r) => r,
        Err(e @ (KafkaError::Authentication { .. } | KafkaError::NotAuthorized { .. })) => {
            ctx.recorder.observe(
                "source_probe",
                format!("{source_role} answered and refused kdr: {e}"),
                serde_json::Value::Null,
            )?;
            return Err(StepError::Failed(format!(
                "the {source_role} cluster answered and refused kdr's credentials ({e}): kdr cannot \
                 tell whether it still serves producers, so it will not declare it down; fix \
                 clusters.{source_role}.client in the plan and run again"
            )));
        }
        Err(e) => Reachability::Unreachable {
            reason: e.to_string(),
        },
    };
    match &source {
        Reachability::Reachable(info) => {
            ctx.recorder.observe(
                "source_probe",
                format!(
                    "{source_role} is reachable ({})",
                    crate::report::count(info.brokers.len(), "broker")
                ),
                &source,
            )?;
        }
        Reachability::Unreachable { reason } => {
            ctx.recorder.observe(
                "source_probe",
                format!("{source_role} is unreachable: {reason}"),
                &source,
            )?;
            ctx.state.source_unreachable = Some(reason.clone());
        }
    }
    let target = match flow.target.probe().await {
        Ok(r) => r,
        Err(e) => Reachability::Unreachable {
            reason: e.to_string(),
        },
    };
    if let Reachability::Unreachable { reason } = &target {
        ctx.recorder.observe(
            "target_probe",
            format!("{target_role} is unreachable: {reason}"),
            &target,
        )?;
        return Err(StepError::Failed(format!(
            "the {target_role} cluster is unreachable ({reason}): there is nothing to fail over to"
        )));
    }
    ctx.recorder.observe(
        "target_probe",
        format!("{target_role} is reachable"),
        &target,
    )?;

    let source_up = ctx.state.source_unreachable.is_none();
    let partitions = if source_up {
        ctx.bounded(
            "list the replicated topics on the source",
            flow.partitions_from_source(),
        )
        .await?
    } else {
        ctx.bounded(
            "list the replicated topics on the target",
            flow.partitions_from_target(),
        )
        .await?
    };
    if partitions.is_empty() {
        return Err(StepError::Failed(format!(
            "no topic of the plan ({}) was found on {}: check replication.topics",
            flow.topics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if source_up { source_role } else { target_role }
        )));
    }
    let lags = if source_up {
        Some(
            ctx.bounded(
                "measure replication lag",
                flow.measure_lag(&partitions, None),
            )
            .await?,
        )
    } else {
        None
    };
    if let Some(lags) = &lags {
        ctx.state.last_source_ends = Some(
            lags.iter()
                .filter_map(|l| {
                    l.source_end
                        .map(|e| ((l.source_topic.clone(), l.partition), e))
                })
                .collect::<BTreeMap<_, _>>(),
        );
    }
    let heartbeat = flow
        .newest_heartbeat_ms(ctx.remaining().min(crate::replication::OPERATION_TIMEOUT))
        .await;
    let heartbeat_age = heartbeat.map(|ts| now_ms() - ts);
    let checkpoint_ages = checkpoint_ages(ctx, &flow).await;
    let summary = match &lags {
        Some(l) => format!(
            "replication lag at declaration: {} over {}",
            crate::report::count(total_lag(l).max(0) as usize, "record"),
            crate::report::count(l.len(), "partition")
        ),
        None => format!("replication lag unknown: {source_role} is unreachable"),
    };
    ctx.recorder.observe(
        "rpo_baseline",
        format!(
            "{summary}; newest heartbeat {}",
            heartbeat_age.map_or("none seen".to_owned(), |a| format!(
                "{} old",
                crate::report::format_ms(u64::try_from(a).unwrap_or(0))
            ))
        ),
        RpoBaseline {
            source_reachable: source_up,
            partitions: match &lags {
                Some(l) => Measured::Lags(l),
                None => Measured::Listed(&partitions),
            },
            total_lag_records: lags.as_deref().map(total_lag),
            heartbeat_age_ms: heartbeat_age,
            checkpoint_age_ms: checkpoint_ages,
        },
    )?;
    ctx.state.partitions = Some(partitions);
    ctx.state.baseline = lags;
    Ok(summary)
}

/// The `rpo_baseline` observation's data.
#[derive(Serialize)]
struct RpoBaseline<'a> {
    source_reachable: bool,
    partitions: Measured<'a>,
    total_lag_records: Option<i64>,
    heartbeat_age_ms: Option<i64>,
    /// Per group; `None` when the checkpoints could not be read.
    checkpoint_age_ms: Option<BTreeMap<String, Option<i64>>>,
}

/// The partitions with their lag when the source answered, else only as listed on the target.
#[derive(Serialize)]
#[serde(untagged)]
enum Measured<'a> {
    Lags(&'a [PartitionLag]),
    Listed(&'a [ReplicatedPartition]),
}

/// Newest checkpoint age per plan group; `None` when the checkpoints cannot be read.
async fn checkpoint_ages(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
) -> Option<BTreeMap<String, Option<i64>>> {
    let within = ctx.remaining().min(crate::replication::OPERATION_TIMEOUT);
    let index = flow.checkpoints(within).await.ok()?;
    let now = now_ms();
    let ages = index
        .groups()
        .into_iter()
        .filter(|group| crate::plan::matches_any(&ctx.plan.replication.groups, group))
        .map(|group| {
            let newest = index.for_group(group).iter().map(|(_, ts)| *ts).max();
            (group.to_owned(), newest.map(|ts| now - ts))
        })
        .collect();
    Some(ages)
}

/// One line saying what the step will do, in the plan's words.
pub fn summary(plan: &crate::plan::Plan, direction: Direction, d: &Declare) -> String {
    let (source, target) = plan.source_target(direction);
    let stranded = match (direction, d.stranded) {
        (Direction::Failover, _) => String::new(),
        (Direction::Failback, Some(choice)) => format!(
            "; records only {} saw: {}",
            target.role,
            match choice {
                Stranded::Export => "export, then skip",
                Stranded::Skip => "skip",
                Stranded::Consume => "leave to the consumers",
            }
        ),
        (Direction::Failback, None) => format!(
            "; stops if {} holds records {} never received (no `stranded:` choice)",
            target.role, source.role
        ),
    };
    format!(
        "declare the {direction} ({} → {}); operator confirms by typing {}{stranded}",
        source.role,
        target.role,
        match d.confirm {
            Confirm::PlanName => format!("the plan name `{}`", plan.name),
            Confirm::Yes => "`yes`".to_owned(),
        }
    )
}
