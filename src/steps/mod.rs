//! One file per step kind. Each step says what it would do (dry run) and does it, recording its
//! observations and decisions as it goes.

mod check_reverse;
mod declare;
mod exec;
mod pause;
mod quiesce;
mod repoint;
mod translate;
mod validate;
mod wait_replication;

use std::time::Duration;

use tokio::sync::watch;

use crate::engine::gate::Gate;
use crate::engine::recorder::Recorder;
use crate::journal::JournalError;
use crate::plan::{Direction, Plan, Step, StepKind};
use crate::replication::{Clusters, Flow, PartitionLag, ReplicatedPartition};

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
    /// Clients for both clusters; `None` for plans whose steps never talk to Kafka.
    pub clusters: Option<&'a Clusters>,
    /// What earlier steps of this run learnt (lost on `--resume`; steps re-measure then).
    pub state: &'a mut RunState,
    /// When the step's own work must be done.
    pub deadline: tokio::time::Instant,
    /// Extra environment for hooks.
    pub hook_env: &'a [(String, String)],
}

/// What the Kafka steps hand to each other within one run.
#[derive(Debug, Default)]
pub struct RunState {
    /// Why the source cluster is considered gone, once a step found it unreachable.
    pub source_unreachable: Option<String>,
    /// The source's end offsets the last time they could be read.
    pub last_source_ends: Option<std::collections::BTreeMap<(String, i32), i64>>,
    /// The replicated partitions, once listed.
    pub partitions: Option<Vec<ReplicatedPartition>>,
    /// Lag per partition when the disaster was declared: the RPO baseline.
    pub baseline: Option<Vec<PartitionLag>>,
    /// Records accepted as lost, per partition.
    pub accepted_loss: Vec<PartitionLag>,
    /// Offsets translate_offsets committed, per group: (topic, partition, offset).
    pub committed: std::collections::BTreeMap<String, Vec<(String, i32, i64)>>,
    /// Write authority as read at the start of the run.
    pub authority: Option<crate::authority::AuthorityState>,
}

impl StepCtx<'_> {
    pub fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    pub fn flow(&self) -> Result<Flow, StepError> {
        let clusters = self.clusters.ok_or_else(|| {
            StepError::Failed("no Kafka clients were made for this run".to_owned())
        })?;
        Ok(Flow::new(self.plan, clusters, self.direction))
    }

    /// Run Kafka work under the step's deadline and Ctrl-C.
    pub async fn bounded<T>(
        &mut self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, crate::kafka::KafkaError>>,
    ) -> Result<T, StepError> {
        let mut cancel = self.cancel.clone();
        tokio::select! {
            r = tokio::time::timeout_at(self.deadline, work) => match r {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(StepError::Failed(format!("failed to {what}: {e}"))),
                Err(_) => Err(StepError::Failed(format!(
                    "failed to {what}: the step's timeout ({}) passed first",
                    humantime::format_duration(self.step.timeout())
                ))),
            },
            _ = cancel.changed() => Err(StepError::Interrupted(format!("interrupted while trying to {what}"))),
        }
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
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
        StepKind::CheckReverseReplication(c) => format!(
            "prove {} → {} replication is healthy: heartbeats younger than {}, remote topics present, checkpoints for the plan's groups",
            source.role,
            target.role,
            humantime::format_duration(c.max_heartbeat_age)
        ),
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
        StepKind::QuiesceProducers(q) => quiesce::run(ctx, q).await,
        StepKind::WaitReplication(w) => wait_replication::run(ctx, w).await,
        StepKind::Repoint(r) => repoint::run(ctx, r).await,
        StepKind::TranslateOffsets(t) => translate::run(ctx, t).await,
        StepKind::Validate(v) => validate::run(ctx, v).await,
        StepKind::CheckReverseReplication(c) => check_reverse::run(ctx, c).await,
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
