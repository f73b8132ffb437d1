//! One file per step kind. Each step says what it would do (dry run) and does it, recording its
//! observations and decisions as it goes.

mod check_reverse;
mod declare;
mod exec;
pub mod gate;
mod notify;
mod pause;
mod quiesce;
mod repoint;
pub mod stranded;
mod translate;
mod validate;
mod wait_replication;

use std::time::Duration;

use tokio::sync::watch;

use crate::journal::{JournalError, Recorder};
use crate::plan::{Direction, Plan, Step, StepKind};
pub use exec::{group_alive, kill_running_hooks};
use gate::Gate;

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
    pub clusters: Option<&'a crate::replication::Clusters>,
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
    pub partitions: Option<Vec<crate::replication::ReplicatedPartition>>,
    /// Lag per partition when the disaster was declared: the RPO baseline.
    pub baseline: Option<Vec<crate::replication::PartitionLag>>,
    /// Records accepted as lost, per partition.
    pub accepted_loss: Vec<crate::replication::PartitionLag>,
    /// Offsets translate_offsets committed, per group: (topic, partition, offset).
    pub committed: std::collections::BTreeMap<String, Vec<(String, i32, i64)>>,
    /// Write authority as read at the start of the run.
    pub authority: Option<crate::authority::AuthorityState>,
    /// `--force`: a lost claim of write authority is bid past (see [`crate::authority::Claim`]).
    pub force: bool,
    /// The failover's incident log, when the caller knows where it is (a failback otherwise
    /// looks for it by run id in the incident-log directories).
    pub failover_log: Option<std::path::PathBuf>,
}

impl StepCtx<'_> {
    pub fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    pub fn flow(&self) -> Result<crate::replication::Flow, StepError> {
        let clusters = self.clusters.ok_or_else(|| {
            StepError::Failed("no Kafka clients were made for this run".to_owned())
        })?;
        Ok(crate::replication::Flow::new(
            self.plan,
            clusters,
            self.direction,
        ))
    }

    /// Wait for `work` under the step's deadline and Ctrl-C, whichever comes first: the one
    /// `select!` every wait of a step goes through.
    pub async fn wait<T>(&self, work: impl std::future::Future<Output = T>) -> Waited<T> {
        let mut cancel = self.cancel.clone();
        tokio::select! {
            biased;
            () = until_cancelled(&mut cancel) => Waited::Cancelled,
            r = tokio::time::timeout_at(self.deadline, work) => match r {
                Ok(v) => Waited::Done(v),
                Err(_) => Waited::DeadlinePassed,
            },
        }
    }

    /// Run Kafka work under the step's deadline and Ctrl-C.
    pub async fn bounded<T>(
        &mut self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, crate::kafka::KafkaError>>,
    ) -> Result<T, StepError> {
        match self.wait(work).await {
            Waited::Done(Ok(v)) => Ok(v),
            Waited::Done(Err(e)) => Err(StepError::Failed(format!("failed to {what}: {e}"))),
            Waited::DeadlinePassed => Err(StepError::Failed(format!(
                "failed to {what}: the step's timeout ({}) passed first",
                humantime::format_duration(self.step.timeout())
            ))),
            Waited::Cancelled => Err(StepError::Interrupted(format!(
                "interrupted while trying to {what}"
            ))),
        }
    }

    /// Every partition of the target's topics that `keep` selects.
    pub async fn target_partitions(
        &mut self,
        flow: &crate::replication::Flow,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<crate::kafka::TopicPartition>, StepError> {
        let listed = self
            .bounded("list the target's topics", flow.target.topics(keep))
            .await?;
        Ok(listed
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| crate::kafka::TopicPartition::new(t.name.clone(), *p))
            })
            .collect())
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// How a wait of a step ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited<T> {
    Done(T),
    /// The step's deadline passed first.
    DeadlinePassed,
    /// Ctrl-C came first.
    Cancelled,
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
    /// The run may not go on, and resuming it will not help: another run won write authority,
    /// or a failback found stranded records its plan says nothing about.
    #[error("{0}")]
    Refused(String),
    /// The incident log could not be written: stop, the run has no evidence any more.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

pub type StepResult = Result<StepDone, StepError>;

/// One line saying what a step will do, in the plan's words (secrets as their references).
pub fn summary(plan: &Plan, direction: Direction, step: &Step) -> String {
    match &step.kind {
        StepKind::Declare(d) => declare::summary(plan, direction, d),
        StepKind::QuiesceProducers(q) => quiesce::summary(plan, direction, q),
        StepKind::WaitReplication(w) => wait_replication::summary(plan, direction, w),
        StepKind::Repoint(r) => repoint::summary(plan, direction, r),
        StepKind::TranslateOffsets(t) => translate::summary(plan, direction, t),
        StepKind::Validate(v) => validate::summary(plan, direction, v),
        StepKind::Exec(e) => exec::summary(e),
        StepKind::Pause(p) => pause::summary(p),
        StepKind::CheckReverseReplication(c) => check_reverse::summary(plan, direction, c),
        StepKind::Notify(n) => notify::summary(n),
    }
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
        StepKind::Notify(n) => notify::run(ctx, n).await,
    }
}

/// Sleep for `d` unless cancelled first; true when cancelled.
pub async fn sleep_or_cancel(d: Duration, cancel: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        biased;
        () = until_cancelled(cancel) => true,
        () = tokio::time::sleep(d) => false,
    }
}

/// Resolves once the run is cancelled (at once if it already is); never, should the sender be
/// gone without cancelling.
pub async fn until_cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|cancelled| *cancelled).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests;
