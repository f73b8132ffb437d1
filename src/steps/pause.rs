//! `pause`: a manual checkpoint. The operator reads the message and says go on or abort.

use super::gate::Answer;
use super::{StepCtx, StepDone, StepError, StepResult};
use crate::plan::Pause;

pub async fn run(ctx: &mut StepCtx<'_>, pause: &Pause) -> StepResult {
    if ctx.dry_run {
        return Ok(StepDone::DryRun(format!(
            "would wait for the operator: {}",
            pause.message
        )));
    }
    if ctx.gate.unattended() {
        ctx.recorder.decide(
            ctx.operator,
            "continue past the pause",
            format!("--yes given; the pause said: {}", pause.message),
            serde_json::Value::Null,
        )?;
        return Ok(StepDone::Ok("continued (--yes)".to_owned()));
    }
    ctx.recorder.say(&format!("\n  PAUSE: {}\n", pause.message));
    let prompt = "  Type `continue` to go on, or `abort` to stop the run: ";
    let timeout = ctx.step.timeout();
    loop {
        match ctx.gate.ask(prompt, timeout, &mut ctx.cancel).await {
            Answer::Text(t) if t == "continue" => {
                ctx.recorder.decide(
                    ctx.operator,
                    "continue past the pause",
                    pause.message.clone(),
                    serde_json::Value::Null,
                )?;
                return Ok(StepDone::Ok("operator continued".to_owned()));
            }
            Answer::Text(t) if t == "abort" => {
                ctx.recorder.decide(
                    ctx.operator,
                    "abort at the pause",
                    pause.message.clone(),
                    serde_json::Value::Null,
                )?;
                return Err(StepError::Aborted(
                    "the operator aborted at the pause".to_owned(),
                ));
            }
            Answer::Text(_) => continue,
            Answer::Closed => {
                return Err(StepError::Aborted(
                    "no answer: the terminal closed at the pause".to_owned(),
                ));
            }
            Answer::TimedOut => {
                return Err(StepError::Failed(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                )));
            }
            Answer::Cancelled => {
                return Err(StepError::Interrupted(
                    "interrupted at the pause".to_owned(),
                ));
            }
        }
    }
}

/// One line saying what the step will do.
pub fn summary(pause: &Pause) -> String {
    format!("wait for the operator: {}", pause.message)
}
