//! `notify`: POST a JSON message to a webhook. Slack-compatible (`text`), with the run's state
//! beside it for anything that reads JSON.
//!
//! A message that cannot be delivered is recorded and, unless the step is `required`, the run
//! goes on: telling people is worth a few seconds, not an outage. The URL is shown as written
//! (a `${env:…}` reference for one from the environment), and its value is kept out of every
//! message this step writes, whatever the HTTP client put in its errors.

use std::time::Duration;

use serde::Serialize;

use super::{StepCtx, StepDone, StepError, StepResult, Waited};
use crate::journal::{self, EventBody, StepStatus};
use crate::plan::Notify;

/// The most of a webhook's answer kept for the log (Slack says `invalid_token` and the like).
const ANSWER_LIMIT: u64 = 1024;

/// What is posted.
#[derive(Debug, Serialize)]
struct Message<'a> {
    text: String,
    plan: &'a str,
    direction: &'a str,
    step: usize,
    steps: usize,
    run_id: &'a str,
    operator: &'a str,
    dry_run: bool,
    /// The run has not ended when a step posts: `in_progress`, with what its steps did so far.
    outcome: &'static str,
    steps_finished: StepsFinished,
}

/// How the run's steps before this one ended, as the incident log has them.
#[derive(Debug, Default, Serialize)]
struct StepsFinished {
    ok: usize,
    skipped: usize,
    failed: usize,
    dry_run: usize,
}

pub async fn run(ctx: &mut StepCtx<'_>, notify: &Notify) -> StepResult {
    let body = serde_json::to_string(&message(ctx, notify))
        .map_err(|e| StepError::Failed(format!("failed to encode the message: {e}")))?;
    let shown = &notify.url.shown;
    if ctx.dry_run {
        return Ok(StepDone::DryRun(format!("would POST to {shown}: {body}")));
    }
    let timeout = ctx.step.timeout();
    let url = notify.url.value.clone();
    let post = tokio::task::spawn_blocking(move || post(&url, &body, timeout));
    let delivered = match ctx.wait(post).await {
        Waited::Done(Ok(answer)) => answer,
        Waited::Done(Err(e)) => Err(format!("the request ended abnormally: {e}")),
        Waited::DeadlinePassed => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
        Waited::Cancelled => {
            return Err(StepError::Interrupted(
                "interrupted while posting the message".to_owned(),
            ));
        }
    };
    // Whatever the client wrote, the URL's value never leaves this function.
    let delivered = delivered.map_err(|e| e.replace(&notify.url.value, shown));
    match delivered {
        Ok(status) => {
            ctx.recorder.observe(
                "notified",
                format!("posted to {shown}: HTTP {status}"),
                serde_json::json!({ "status": status }),
            )?;
            Ok(StepDone::Ok(format!("posted: HTTP {status}")))
        }
        Err(why) if notify.required => {
            ctx.recorder.observe(
                "not_notified",
                format!("failed to post to {shown}: {why}"),
                serde_json::Value::Null,
            )?;
            Err(StepError::Failed(format!(
                "failed to post to {shown}: {why}; the step is required"
            )))
        }
        Err(why) => {
            ctx.recorder.decide(
                "plan",
                "go on without the notification",
                format!("failed to post to {shown}: {why}; the step is not required"),
                serde_json::Value::Null,
            )?;
            Ok(StepDone::Skipped(format!("not delivered: {why}")))
        }
    }
}

fn message<'a>(ctx: &'a StepCtx<'_>, notify: &Notify) -> Message<'a> {
    let steps_finished = steps_finished(ctx);
    let steps = ctx.plan.steps(ctx.direction).len();
    let text = notify.text.clone().unwrap_or_else(|| {
        format!(
            "kdr {}: {} of plan {} at step {}/{} ({} steps ok so far{}), run {}, operator {}",
            if ctx.dry_run { "dry run" } else { "run" },
            ctx.direction,
            ctx.plan.name,
            ctx.step.index,
            steps,
            steps_finished.ok,
            match steps_finished.skipped {
                0 => String::new(),
                n => format!(", {n} skipped"),
            },
            ctx.run_id,
            ctx.operator,
        )
    });
    Message {
        text,
        plan: &ctx.plan.name,
        direction: ctx.direction.as_str(),
        step: ctx.step.index,
        steps,
        run_id: ctx.run_id,
        operator: ctx.operator,
        dry_run: ctx.dry_run,
        outcome: "in_progress",
        steps_finished,
    }
}

/// Each earlier step's last status in this run's log (a resumed run's earlier steps too). A log
/// that cannot be read leaves the counts at zero: the message is still worth sending.
fn steps_finished(ctx: &StepCtx<'_>) -> StepsFinished {
    let mut last = std::collections::BTreeMap::new();
    if let Ok(contents) = journal::read(ctx.recorder.journal().path()) {
        for event in contents.events {
            if let EventBody::StepFinished { step, status, .. } = event.body
                && step < ctx.step.index
            {
                last.insert(step, status);
            }
        }
    }
    let mut counts = StepsFinished::default();
    for status in last.values() {
        match status {
            StepStatus::Ok => counts.ok += 1,
            StepStatus::Skipped => counts.skipped += 1,
            StepStatus::Failed => counts.failed += 1,
            StepStatus::DryRun => counts.dry_run += 1,
        }
    }
    counts
}

/// POST `body` as JSON; the HTTP status of a 2xx answer, or why there was none. Blocking: run
/// it off the async threads. Bounded by `timeout` in all (connect, send, answer).
fn post(url: &str, body: &str, timeout: Duration) -> Result<u16, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("kdr/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let mut answer = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => {
                format!("no answer within {}", humantime::format_duration(timeout))
            }
            e => e.to_string(),
        })?;
    let status = answer.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    let said = answer
        .body_mut()
        .with_config()
        .limit(ANSWER_LIMIT)
        .read_to_string()
        .unwrap_or_default();
    let said = said.trim();
    Err(if said.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {said}", status.as_u16())
    })
}

/// One line saying what the step will do, in the plan's words.
pub fn summary(notify: &Notify) -> String {
    format!(
        "POST a message to {}{}",
        notify.url.shown,
        if notify.required {
            " (required: the run stops if it cannot be delivered)"
        } else {
            ""
        }
    )
}
