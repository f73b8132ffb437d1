//! One file per step kind. Each step says what it would do (dry run) and does it, recording its
//! observations and decisions as it goes.

mod declare;
mod exec;
mod pause;

use std::time::Duration;

use tokio::sync::watch;

use crate::engine::gate::Gate;
use crate::engine::recorder::Recorder;
use crate::journal::JournalError;
use crate::plan::{Direction, Plan, Step, StepKind};

/// What a step works with. The cancellation receiver turns true on the first Ctrl-C.
pub struct StepCtx<'a> {
    pub plan: &'a Plan,
    pub direction: Direction,
    pub run_id: &'a str,
    pub step: &'a Step,
    pub dry_run: bool,
    pub operator: &'a str,
    pub reason: &'a str,
    pub gate: &'a mut Gate,
    pub recorder: &'a mut Recorder,
    pub cancel: watch::Receiver<bool>,
}

impl StepCtx<'_> {
    pub fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }
}

/// How a step ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDone {
    Ok(String),
    Skipped(String),
    /// Dry run: what it would have done.
    DryRun(String),
}

/// How a step ended badly.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Failed(String),
    /// An operator said no at a human gate.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Interrupted(String),
    /// The incident log could not be written: stop, the run has no evidence any more.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

pub type StepResult = Result<StepDone, StepError>;

/// One line saying what a step will do, in the plan's words (secrets as their references).
pub fn summary(plan: &Plan, direction: Direction, step: &Step) -> String {
    let (source, target) = plan.source_target(direction);
    match &step.kind {
        StepKind::Declare(d) => format!(
            "declare the {direction} ({} → {}); operator confirms by typing {}",
            source.role,
            target.role,
            match d.confirm {
                crate::plan::Confirm::PlanName => format!("the plan name `{}`", plan.name),
                crate::plan::Confirm::Yes => "`yes`".to_owned(),
            }
        ),
        StepKind::QuiesceProducers(q) => format!(
            "{}prove {}'s end offsets stay still for {}",
            q.run
                .as_ref()
                .map(|c| format!("run `{}`, then ", c.shown))
                .unwrap_or_default(),
            source.role,
            humantime::format_duration(q.idle_for)
        ),
        StepKind::WaitReplication(w) => format!(
            "wait until {} → {} lag is at most {} records per partition, else {}",
            source.role,
            target.role,
            w.max_lag_records,
            match w.on_timeout {
                crate::plan::OnTimeout::Abort => "abort",
                crate::plan::OnTimeout::AcceptRpo => "accept the RPO",
            }
        ),
        StepKind::Repoint(r) => {
            let mut parts = Vec::new();
            if let Some(c) = &r.run {
                parts.push(format!("run `{}`", c.shown));
            }
            if let Some(w) = &r.write_file {
                parts.push(format!(
                    "write {}'s servers to {}",
                    target.role,
                    w.path.display()
                ));
            }
            if let Some(within) = r.verify_writes_within {
                parts.push(format!(
                    "prove producers write to {}'s original topics within {}",
                    target.role,
                    humantime::format_duration(within)
                ));
            }
            parts.join(", ")
        }
        StepKind::TranslateOffsets(t) => format!(
            "commit translated offsets on {} for {} groups from {}{}",
            target.role,
            match &t.groups {
                crate::plan::Groups::All => "the plan's".to_owned(),
                crate::plan::Groups::List(l) => l
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            crate::steps::checkpoints_topic_name(plan, direction),
            if t.allow_rewind {
                " (rewinds allowed)"
            } else {
                ""
            }
        ),
        StepKind::Validate(v) => format!(
            "check within {} that groups progress on {} without a reset{}",
            humantime::format_duration(v.within),
            target.role,
            if v.require_producers {
                " and producers write there"
            } else {
                ""
            }
        ),
        StepKind::Exec(e) => format!("run `{}`", e.run.shown),
        StepKind::Pause(p) => format!("wait for the operator: {}", p.message),
    }
}

/// `<source alias>.checkpoints.internal` under the plan's naming.
pub fn checkpoints_topic_name(plan: &Plan, direction: Direction) -> String {
    let (source, _) = plan.source_target(direction);
    let r = &plan.replication;
    let isep = if r.internal_separator {
        r.separator.as_str()
    } else {
        "."
    };
    format!("{}{isep}checkpoints{isep}internal", source.mm2_alias)
}

/// Run one step.
pub async fn run(ctx: &mut StepCtx<'_>) -> StepResult {
    match &ctx.step.kind {
        StepKind::Exec(exec) => exec::run(ctx, exec).await,
        StepKind::Pause(pause) => pause::run(ctx, pause).await,
        StepKind::Declare(declare) => declare::run(ctx, declare).await,
        other => Err(StepError::Failed(format!(
            "the `{}` step needs the Kafka layer, which this build of kdr does not have yet",
            other.name()
        ))),
    }
}

/// Sleep for `d` unless cancelled first; true when cancelled.
pub async fn sleep_or_cancel(d: Duration, cancel: &mut watch::Receiver<bool>) -> bool {
    if *cancel.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = cancel.changed() => true,
    }
}
