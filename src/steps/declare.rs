//! `declare`: the human gate in front of a failover. Automatic failover risks split brain, so a
//! person declares it, and the log says who, when and why.

use super::{StepCtx, StepDone, StepError, StepResult};
use crate::engine::gate::Answer;
use crate::plan::{Confirm, Declare};

pub async fn run(ctx: &mut StepCtx<'_>, declare: &Declare) -> StepResult {
    let expected = match declare.confirm {
        Confirm::PlanName => ctx.plan.name.clone(),
        Confirm::Yes => "yes".to_owned(),
    };
    let what = format!("declare the {} of plan {}", ctx.direction, ctx.plan.name);
    if ctx.dry_run {
        return Ok(StepDone::DryRun(format!(
            "would ask the operator to type `{expected}` to {what}"
        )));
    }
    if ctx.gate.unattended() {
        ctx.recorder.decide(
            ctx.operator,
            what,
            ctx.reason,
            serde_json::json!({ "confirmed_by": "--yes" }),
        )?;
        return Ok(StepDone::Ok(format!(
            "declared by {} (--yes): {}",
            ctx.operator, ctx.reason
        )));
    }
    ctx.recorder.progress().say(&format!(
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
            Ok(StepDone::Ok(format!(
                "declared by {}: {}",
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
