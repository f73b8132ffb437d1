//! Where a resumed run picks up, read from its incident log.

use crate::journal::{Event, EventBody, Outcome, StepStatus};
use crate::plan::{Direction, Plan};

/// The state of an earlier run, as its log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub run_id: String,
    pub last_seq: u64,
    pub operator: String,
    pub reason: String,
    /// 1-based index of the first step that is not done.
    pub next_step: usize,
    /// The step that was running when the earlier process stopped (started, never finished).
    pub interrupted: Option<InterruptedStep>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptedStep {
    pub index: usize,
    pub kind: String,
    /// Safe to run again without asking.
    pub idempotent: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResumeError {
    #[error("the log does not start with a run_started event")]
    NoStart,
    #[error("the log is of a {found} run; this is a {wanted}")]
    WrongDirection { found: Direction, wanted: Direction },
    #[error("the log is of plan `{found}`; this plan is `{wanted}`")]
    WrongPlan { found: String, wanted: String },
    #[error(
        "the plan changed since the logged run (fingerprint {found}, now {now}): resuming would run steps the log does not describe; start a new run instead"
    )]
    FingerprintChanged { found: String, now: String },
    #[error("the logged run was a dry run: there is nothing to resume; start a real run")]
    DryRun,
    #[error("the logged run already {0}: there is nothing to resume")]
    Finished(&'static str),
}

pub fn resume_point(
    events: &[Event],
    plan: &Plan,
    direction: Direction,
) -> Result<ResumePoint, ResumeError> {
    let Some(first) = events.first() else {
        return Err(ResumeError::NoStart);
    };
    let EventBody::RunStarted {
        plan: plan_name,
        fingerprint,
        direction: logged_direction,
        operator,
        reason,
        dry_run,
        ..
    } = &first.body
    else {
        return Err(ResumeError::NoStart);
    };
    if *plan_name != plan.name {
        return Err(ResumeError::WrongPlan {
            found: plan_name.clone(),
            wanted: plan.name.clone(),
        });
    }
    if *logged_direction != direction {
        return Err(ResumeError::WrongDirection {
            found: *logged_direction,
            wanted: direction,
        });
    }
    if *fingerprint != plan.fingerprint {
        return Err(ResumeError::FingerprintChanged {
            found: fingerprint.clone(),
            now: plan.fingerprint.clone(),
        });
    }
    if *dry_run {
        return Err(ResumeError::DryRun);
    }
    // Only the latest run_finished matters: a resumed run appends its own.
    let last_finish = events.iter().rev().find_map(|e| match &e.body {
        EventBody::RunFinished { outcome, .. } => Some(*outcome),
        _ => None,
    });
    let last_start = events
        .iter()
        .rposition(|e| matches!(e.body, EventBody::RunStarted { .. }));
    let finished_after_last_start = events
        .iter()
        .rposition(|e| matches!(e.body, EventBody::RunFinished { .. }))
        .zip(last_start)
        .is_some_and(|(f, s)| f > s);
    if finished_after_last_start && last_finish == Some(Outcome::Succeeded) {
        return Err(ResumeError::Finished("succeeded"));
    }

    let steps = plan.steps(direction);
    let mut done = vec![false; steps.len()];
    let mut open: Option<usize> = None;
    for event in events {
        match &event.body {
            EventBody::StepStarted { step, .. } => open = Some(*step),
            EventBody::StepFinished { step, status, .. } => {
                if let Some(slot) = step.checked_sub(1).and_then(|i| done.get_mut(i)) {
                    *slot = status.is_done();
                }
                if open == Some(*step) {
                    open = None;
                }
            }
            // A new process started: whatever was open before it was cut off.
            EventBody::RunStarted { .. } => {}
            _ => {}
        }
    }
    let next_step = done
        .iter()
        .position(|d| !d)
        .map_or(steps.len() + 1, |i| i + 1);
    let interrupted = open.filter(|i| *i == next_step).and_then(|index| {
        steps.get(index - 1).map(|s| InterruptedStep {
            index,
            kind: s.kind.name().to_owned(),
            idempotent: s.kind.idempotent(),
        })
    });
    Ok(ResumePoint {
        run_id: first.run_id.clone(),
        last_seq: events.last().map_or(0, |e| e.seq),
        operator: operator.clone(),
        reason: reason.clone(),
        next_step,
        interrupted,
    })
}

/// Whether a status means the run should not go past this step.
pub fn stops_run(status: StepStatus) -> bool {
    status == StepStatus::Failed
}
