//! Ordered execution of a plan's steps: gates, timeouts, cancellation, dry run, resume, lock.
//!
//! The engine emits events through the [`Recorder`]; whoever watches a run (the terminal
//! display, the rehearsal's disaster) subscribes an [`EventSink`]. It never imports the
//! report's renderers.

pub mod resume;
#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::authority::{self, AuthorityState, Claim, MoveError};
use crate::journal::{
    self, EventBody, EventSink, Journal, JournalError, Outcome, Recorder, StepStatus, lock,
};
pub use crate::journal::{RunReport, StepReport};
use crate::plan::{Direction, Plan, Role, Step};
use crate::replication::Clusters;
use crate::report::count;
/// The human gates live with the steps that ask them; re-exported for the engine's callers.
pub use crate::steps::gate;
use crate::steps::{self, RunState, StepCtx, StepDone, StepError};
use gate::{Answer, Gate};
use resume::{InterruptedStep, ResumeError, ResumePoint};

/// A run that `--resume` continues: its log, where it picks up, and what its earlier
/// invocations logged, summed up.
struct Resuming {
    log: PathBuf,
    point: ResumePoint,
    earlier: journal::RunTally,
}

/// How long past its deadline a step may take to wind down (kill a hook, record its end)
/// before the engine stops waiting for it.
const STEP_OVERRUN_GRACE: Duration = Duration::from_secs(15);

/// The command that goes on from the run in progress if it is cut short now, for the second
/// Ctrl-C: that one ends the process at once, before the run can say it itself. Process-wide,
/// as the signal handler is.
static INTERRUPTED_NEXT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// What to run after an interruption of the run in progress (none before its log exists).
pub fn interrupted_next_command() -> Option<String> {
    INTERRUPTED_NEXT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub direction: Direction,
    pub dry_run: bool,
    pub yes: bool,
    pub operator: Option<String>,
    pub reason: Option<String>,
    pub resume: Option<PathBuf>,
    pub log: Option<PathBuf>,
    /// The operator's answer, given in advance, for a non-idempotent step that was interrupted.
    pub interrupted_step: Option<InterruptedChoice>,
    /// Run although write authority is not where the direction expects it (recorded with the
    /// reason).
    pub force: bool,
    /// Extra environment for the plan's hooks (`kdr rehearse` tells them where its clients
    /// read their bootstrap servers).
    pub hook_env: Vec<(String, String)>,
    /// A failback: where the failover's incident log is, when it is not in the incident-log
    /// directory (`kdr rehearse --log`); its stranded records are counted from it.
    pub failover_log: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InterruptedChoice {
    /// Run the interrupted step again.
    Rerun,
    /// Count the interrupted step as done and go on with the next one.
    Skip,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad usage: exit 2.
    #[error("{0}")]
    Usage(String),
    #[error("cannot resume from {}: {source}", log.display())]
    Resume { log: PathBuf, source: ResumeError },
    /// The run may not start: exit 1.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The plan's client settings cannot make a Kafka client: exit 2.
    #[error("failed to configure the Kafka clients: {0}")]
    Config(String),
}

/// Run a direction of a plan. `gate` answers the human gates; `sinks` see every event as it is
/// logged; `cancel` turns true on Ctrl-C.
pub async fn run(
    plan: &Plan,
    request: &RunRequest,
    gate: Gate,
    sinks: Vec<Box<dyn EventSink>>,
    cancel: watch::Receiver<bool>,
) -> Result<RunReport, EngineError> {
    let gate = preflight(request, gate)?;
    // Read the old log first, so a bad --resume fails before anything is locked.
    let resume_point = read_resume(plan, request, &gate)?;
    // Clients are only made (not connected) here, so bad client settings fail before anything
    // is locked or logged. A plan of only exec/pause steps never makes one.
    let clusters = if plan.needs_clusters(request.direction) {
        Some(Clusters::from_plan(plan).map_err(|e| EngineError::Config(e.to_string()))?)
    } else {
        None
    };
    let mut run = Run::open(
        plan,
        request,
        gate,
        sinks,
        clusters,
        resume_point.as_ref(),
        cancel,
    )
    .await?;
    let first_step = match &resume_point {
        Some(resuming) => match run.resume(&resuming.point).await? {
            Resumed::At(step) => step,
            Resumed::Undecided(message) => {
                return run.finish(Outcome::Aborted, message, None);
            }
        },
        None => 1,
    };
    if let Some(refusal) = run.check_authority().await? {
        return run.finish(Outcome::Failed, refusal, None);
    }
    let mut end = run.run_steps(first_step).await?;
    run.return_authority(&mut end).await?;
    if end.message.is_empty() {
        end.message = match end.outcome {
            Outcome::DryRun => format!(
                "dry run: {} would run; nothing was changed",
                count(end.reports.len(), "step")
            ),
            _ => run.done_message(end.reports.len()),
        };
    }
    let next = run.next_command(end.outcome);
    run.finish(end.outcome, end.message, next)
}

/// A word as a shell reads it: as is when it is plain, else single-quoted.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Who owns writes, read before anybody is asked anything (operator, reason, confirmation), for
/// a run that is not a resume: a run that would be refused says so at once, in the words of
/// `kdr status`, and asks nothing. `None`: go on (authority is where the direction expects it,
/// or could not be read within the bound of one Kafka operation: the run's own check decides).
pub async fn authority_refusal(
    plan: &Plan,
    direction: Direction,
) -> Result<Option<String>, EngineError> {
    if !plan.needs_clusters(direction) {
        return Ok(None);
    }
    let clusters = Clusters::from_plan(plan).map_err(|e| EngineError::Config(e.to_string()))?;
    let read = authority::read_both(&clusters.primary, &clusters.dr, &plan.name);
    let Ok(state) = tokio::time::timeout(crate::replication::OPERATION_TIMEOUT, read).await else {
        return Ok(None);
    };
    Ok(
        wrong_owner(plan, direction, &state).map(|what| match state.split_brain() {
            Some(alarm) => format!("!!! {alarm}\n{}", refusal(&what)),
            None => refusal(&what),
        }),
    )
}

/// What `kdr status` says when write authority is not where `direction` moves it from.
fn wrong_owner(plan: &Plan, direction: Direction, state: &AuthorityState) -> Option<String> {
    let (owner, epoch) = state.owner();
    if owner == plan.source_target(direction).0.role {
        return None;
    }
    let plan_file = shell_word(&plan.path.display().to_string());
    Some(match (direction, state.latest()) {
        (Direction::Failover, _) => format!(
            "already failed over ({owner} owns writes at epoch {epoch}); fail back with kdr failback --plan {plan_file}"
        ),
        (Direction::Failback, None) => format!(
            "already on the primary: it owns writes, and no failover of plan {} was ever recorded (no epoch); there is nothing to fail back",
            plan.name
        ),
        (Direction::Failback, Some(_)) => format!(
            "already on the primary ({owner} owns writes at epoch {epoch}); there is nothing to fail back"
        ),
    })
}

fn refusal(what: &str) -> String {
    format!("refused: {what} (to run anyway: --force --reason TEXT)")
}

/// The request's usage checks alone, as [`run`] makes them first (for a caller that does
/// something before it runs: read authority).
pub fn check_usage(request: &RunRequest) -> Result<(), EngineError> {
    preflight(request, Gate::Terminal).map(|_| ())
}

/// Check the request before anything is read, locked or logged; returns who answers the gates.
fn preflight(request: &RunRequest, gate: Gate) -> Result<Gate, EngineError> {
    if request.yes && (request.operator.is_none() || request.reason.is_none()) {
        return Err(EngineError::Usage(
            "--yes answers the human gates for the operator, so it needs --operator NAME and --reason TEXT to record who and why".to_owned(),
        ));
    }
    if matches!(gate, Gate::Terminal)
        && !request.yes
        && !request.dry_run
        && !std::io::stdin().is_terminal()
    {
        return Err(EngineError::Usage(
            "no terminal to ask at the human gates: run from a terminal, or pass --yes with --operator and --reason".to_owned(),
        ));
    }
    if request.force && request.reason.is_none() {
        return Err(EngineError::Usage(
            "--force needs --reason: say why authority is overridden".to_owned(),
        ));
    }
    Ok(if request.yes { Gate::Unattended } else { gate })
}

/// Where `--resume` picks up, read from its log; `None` for a new run.
fn read_resume(
    plan: &Plan,
    request: &RunRequest,
    gate: &Gate,
) -> Result<Option<Resuming>, EngineError> {
    let Some(log) = &request.resume else {
        return Ok(None);
    };
    let contents = journal::read(log)?;
    if let Some(winner) = authority::lost_in(&contents.events) {
        return Err(EngineError::Refused(format!(
            "cannot resume from {}: that run lost write authority for epoch {} to {}; nothing of it is left to resume",
            log.display(),
            winner.epoch,
            winner.who()
        )));
    }
    let point =
        resume::resume_point(&contents.events, plan, request.direction).map_err(|source| {
            EngineError::Resume {
                log: log.clone(),
                source,
            }
        })?;
    // A hook the earlier process started and never saw end may still be running: never start
    // the step again beside it.
    if let Some(hook) = point
        .unfinished_hooks
        .iter()
        .find(|h| steps::group_alive(h.pid))
    {
        return Err(EngineError::Resume {
            log: log.clone(),
            source: ResumeError::HookRunning { hook: hook.clone() },
        });
    }
    if let Some(i) = &point.interrupted
        && !i.idempotent
        && request.interrupted_step.is_none()
        && (gate.unattended() || !std::io::stdin().is_terminal())
    {
        return Err(EngineError::Usage(format!(
            "step {} ({}) was interrupted and may have run; it is not idempotent, so kdr will not decide alone: pass --interrupted-step rerun or --interrupted-step skip (--yes does not answer this)",
            i.index, i.kind
        )));
    }
    let mut earlier = journal::RunTally::default();
    for event in &contents.events {
        earlier.add(&event.ts, &event.body);
    }
    Ok(Some(Resuming {
        log: log.clone(),
        point,
        earlier,
    }))
}

/// How a resumed run goes on.
enum Resumed {
    /// At this step.
    At(usize),
    /// Nobody said whether to run an interrupted step again: the run stops, with this message.
    Undecided(String),
}

/// How the steps ended.
struct StepsEnd {
    reports: Vec<StepReport>,
    outcome: Outcome,
    /// Empty when the run went through.
    message: String,
}

/// A run in progress: what every phase of it works with.
struct Run<'a> {
    plan: &'a Plan,
    request: &'a RunRequest,
    direction: Direction,
    run_id: String,
    operator: String,
    reason: String,
    gate: Gate,
    recorder: Recorder,
    clusters: Option<Clusters>,
    state: RunState,
    cancel: watch::Receiver<bool>,
    clock: Instant,
    /// Held until the run's end is logged; `None` for a dry run.
    lock: Option<lock::RunLock>,
}

impl<'a> Run<'a> {
    /// Name the run, take the lock, open the log and record the start.
    async fn open(
        plan: &'a Plan,
        request: &'a RunRequest,
        mut gate: Gate,
        sinks: Vec<Box<dyn EventSink>>,
        clusters: Option<Clusters>,
        resume_point: Option<&Resuming>,
        cancel: watch::Receiver<bool>,
    ) -> Result<Run<'a>, EngineError> {
        let direction = request.direction;
        let point = resume_point.map(|r| &r.point);
        let operator = request
            .operator
            .clone()
            .or_else(|| point.map(|p| p.operator.clone()))
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".to_owned());
        let reason = request
            .reason
            .clone()
            .or_else(|| point.map(|p| p.reason.clone()))
            .unwrap_or_default();
        let (run_id, log_path) = match resume_point {
            Some(r) => (r.point.run_id.clone(), r.log.clone()),
            None => {
                let run_id = new_run_id(SystemTime::now());
                let log = request.log.clone().unwrap_or_else(|| {
                    default_log_path(&plan.incident_log_dir, &plan.name, direction, &run_id)
                });
                (run_id, log)
            }
        };
        // One run of a plan at a time. A dry run changes nothing and takes no lock.
        let lock = if request.dry_run {
            None
        } else {
            Some(take_lock(plan, direction, &run_id, &operator)?)
        };
        let reason = if reason.is_empty() && !request.dry_run && !gate.unattended() {
            ask_reason(&mut gate, cancel.clone())
                .await
                .unwrap_or(reason)
        } else {
            reason
        };
        let journal = match point {
            Some(point) => Journal::reopen(&log_path, &run_id, point.last_seq)?,
            None => Journal::create(&log_path, &run_id)?,
        };
        let mut run = Run {
            plan,
            request,
            direction,
            run_id,
            operator,
            reason,
            gate,
            recorder: Recorder::new(journal, sinks, plan.secrets.clone())
                .with_earlier(resume_point.map(|r| r.earlier.clone()).unwrap_or_default()),
            clusters,
            state: RunState {
                failover_log: request.failover_log.clone(),
                ..RunState::default()
            },
            cancel,
            clock: Instant::now(),
            lock,
        };
        run.record_start(point.is_some())?;
        *INTERRUPTED_NEXT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            run.next_command(Outcome::Interrupted);
        Ok(run)
    }

    fn record_start(&mut self, resumed: bool) -> Result<(), EngineError> {
        self.recorder.record(EventBody::RunStarted {
            plan: self.plan.name.clone(),
            fingerprint: self.plan.fingerprint.clone(),
            plan_file: self.plan.path.display().to_string(),
            direction: self.direction,
            operator: self.operator.clone(),
            reason: self.reason.clone(),
            dry_run: self.request.dry_run,
            resumed,
            kdr_version: env!("CARGO_PKG_VERSION").to_owned(),
            host: lock::hostname(),
            pid: std::process::id(),
        })?;
        let log = self.recorder.journal().path().display().to_string();
        self.recorder.say(&format!("    incident log: {log}"));
        if let Some(replaced) = self.lock.as_ref().and_then(|l| l.replaced.clone()) {
            self.recorder.decide(
                "kdr",
                "took over a stale run lock",
                format!(
                    "its holder, pid {} on {} (run {}), is no longer running",
                    replaced.pid, replaced.host, replaced.run_id
                ),
                &replaced,
            )?;
        }
        Ok(())
    }

    /// Record where the resumed run goes on, settling a step the earlier run was cut off in.
    async fn resume(&mut self, point: &ResumePoint) -> Result<Resumed, EngineError> {
        self.recorder.decide(
            &self.operator,
            format!("resume at step {}", point.next_step),
            "steps before it finished in the logged run",
            serde_json::json!({ "next_step": point.next_step }),
        )?;
        let Some(i) = &point.interrupted else {
            return Ok(Resumed::At(point.next_step));
        };
        let (choice, why) = if i.idempotent {
            (InterruptedChoice::Rerun, "the step is idempotent")
        } else if let Some(choice) = self.request.interrupted_step {
            (choice, "--interrupted-step")
        } else {
            match self.ask_interrupted(i).await {
                Some(choice) => (choice, "the operator answered at the prompt"),
                None => {
                    return Ok(Resumed::Undecided(format!(
                        "step {} was interrupted and the operator did not say whether to run it again",
                        i.index
                    )));
                }
            }
        };
        let what = match choice {
            InterruptedChoice::Rerun => {
                format!("run interrupted step {} ({}) again", i.index, i.kind)
            }
            InterruptedChoice::Skip => format!("skip interrupted step {} ({})", i.index, i.kind),
        };
        self.recorder
            .decide(&self.operator, what, why, serde_json::Value::Null)?;
        if choice == InterruptedChoice::Rerun {
            return Ok(Resumed::At(point.next_step));
        }
        self.recorder.record(EventBody::StepFinished {
            step: i.index,
            kind: i.kind.clone(),
            status: StepStatus::Skipped,
            duration_ms: 0,
            message: "interrupted earlier; skipped on resume by the operator".to_owned(),
        })?;
        Ok(Resumed::At(i.index + 1))
    }

    async fn ask_interrupted(&mut self, i: &InterruptedStep) -> Option<InterruptedChoice> {
        let prompt = format!(
            "Step {} ({}) was interrupted and may already have run. Run it again? Type `rerun` or `skip`: ",
            i.index, i.kind
        );
        let mut cancel = self.cancel.clone();
        match self
            .gate
            .ask(&prompt, Duration::from_secs(3600), &mut cancel)
            .await
        {
            Answer::Text(t) if t == "rerun" => Some(InterruptedChoice::Rerun),
            Answer::Text(t) if t == "skip" => Some(InterruptedChoice::Skip),
            _ => None,
        }
    }

    /// Read who owns writes and refuse a run that would move authority from where it is not,
    /// unless forced. Returns the refusal, if any. A run without clusters has nothing to check.
    async fn check_authority(&mut self) -> Result<Option<String>, EngineError> {
        let Some(clusters) = &self.clusters else {
            return Ok(None);
        };
        let authority =
            authority::read_both(&clusters.primary, &clusters.dr, &self.plan.name).await;
        self.recorder
            .observe("authority", authority.summary(), &authority)?;
        if let Some(alarm) = authority.split_brain() {
            self.recorder.say(&format!("\n  !!! {alarm}\n"));
            self.recorder.observe("split_brain", alarm, &authority)?;
        }
        let refusal = self.judge_authority(&authority)?;
        if refusal.is_some()
            && let Some(clusters) = &self.clusters
            && let Some(who) =
                authority::moved_by(&authority, &clusters.primary, &clusters.dr).await
        {
            let detail = format!(
                "write authority was moved to {} by {who}",
                authority.owner().0
            );
            self.recorder.observe("authority_moved_by", detail, &who)?;
        }
        self.state.authority = Some(authority);
        self.state.force = self.request.force;
        Ok(refusal)
    }

    fn judge_authority(
        &mut self,
        authority: &AuthorityState,
    ) -> Result<Option<String>, EngineError> {
        let direction = self.direction;
        // A resumed run may already have moved authority itself.
        let moved_by_this_run = authority.latest().is_some_and(|r| r.run_id == self.run_id);
        let Some(what) =
            wrong_owner(self.plan, direction, authority).filter(|_| !moved_by_this_run)
        else {
            return Ok(None);
        };
        if self.request.force {
            self.recorder.decide(
                &self.operator,
                format!("force the {direction} although {what}"),
                self.reason.clone(),
                authority,
            )?;
            return Ok(None);
        }
        self.recorder.decide(
            "kdr",
            format!("refuse to start the {direction}"),
            what.clone(),
            authority,
        )?;
        Ok(Some(refusal(&what)))
    }

    /// Run the steps from `first_step` on, in order, until one stops the run.
    async fn run_steps(&mut self, first_step: usize) -> Result<StepsEnd, EngineError> {
        let plan = self.plan;
        let mut end = StepsEnd {
            reports: Vec::new(),
            outcome: if self.request.dry_run {
                Outcome::DryRun
            } else {
                Outcome::Succeeded
            },
            message: String::new(),
        };
        for step in plan
            .steps(self.direction)
            .iter()
            .filter(|s| s.index >= first_step)
        {
            if *self.cancel.borrow() {
                end.outcome = Outcome::Interrupted;
                end.message = format!("interrupted before step {}", step.index);
                break;
            }
            let (report, stop) = self.run_step(step).await?;
            end.reports.push(report);
            if let Some((outcome, message)) = stop {
                end.outcome = outcome;
                end.message = message;
                break;
            }
        }
        Ok(end)
    }

    /// Run one step under its deadline and log its start and end. Returns its report, and the
    /// run's outcome and message when the step stops the run.
    async fn run_step(
        &mut self,
        step: &Step,
    ) -> Result<(StepReport, Option<(Outcome, String)>), EngineError> {
        let kind = step.kind.name().to_owned();
        self.recorder.record(EventBody::StepStarted {
            step: step.index,
            kind: kind.clone(),
            summary: steps::summary(self.plan, self.direction, step),
        })?;
        self.recorder
            .set_current_step(Some((step.index, kind.clone())));
        let step_clock = Instant::now();
        let result = self.run_step_bounded(step).await;
        // A step that stopped inside a batch of events (an error, the deadline) still leaves
        // them in the log, before its end.
        self.recorder.commit_batch(None)?;
        self.recorder.set_current_step(None);
        let duration_ms = step_clock.elapsed().as_millis() as u64;
        let refused = matches!(result, Err(StepError::Refused(_)));
        let (status, message, stop) = match result {
            Ok(StepDone::Ok(m)) => (StepStatus::Ok, m, None),
            Ok(StepDone::Skipped(m)) => (StepStatus::Skipped, m, None),
            Ok(StepDone::DryRun(m)) => (StepStatus::DryRun, m, None),
            Err(StepError::Failed(m)) => (StepStatus::Failed, m, Some(Outcome::Failed)),
            Err(StepError::Aborted(m)) => (StepStatus::Failed, m, Some(Outcome::Aborted)),
            Err(StepError::Interrupted(m)) => (StepStatus::Failed, m, Some(Outcome::Interrupted)),
            Err(StepError::Refused(m)) => (StepStatus::Failed, m, Some(Outcome::Failed)),
            Err(StepError::Journal(e)) => return Err(e.into()),
        };
        self.recorder.record(EventBody::StepFinished {
            step: step.index,
            kind: kind.clone(),
            status,
            duration_ms,
            message: message.clone(),
        })?;
        let stop = stop.map(|outcome| {
            let message = if refused {
                // Resuming would not help: the run's message offers no `--resume`.
                format!("step {} ({kind}) refused: {message}", step.index)
            } else {
                self.stop_message(outcome, step, &message)
            };
            (outcome, message)
        });
        let report = StepReport {
            step: step.index,
            kind,
            status,
            duration_ms,
            message,
        };
        Ok((report, stop))
    }

    async fn run_step_bounded(&mut self, step: &Step) -> steps::StepResult {
        let deadline = tokio::time::Instant::now() + step.timeout();
        let mut ctx = StepCtx {
            plan: self.plan,
            direction: self.direction,
            run_id: &self.run_id,
            step,
            dry_run: self.request.dry_run,
            operator: &self.operator,
            reason: &self.reason,
            gate: &mut self.gate,
            recorder: &mut self.recorder,
            cancel: self.cancel.clone(),
            clusters: self.clusters.as_ref(),
            state: &mut self.state,
            deadline,
            hook_env: &self.request.hook_env,
        };
        // Steps keep their own deadline; this is the net under it, should a step not.
        let net = deadline + STEP_OVERRUN_GRACE;
        match tokio::time::timeout_at(net, steps::run(&mut ctx)).await {
            Ok(result) => result,
            Err(_) => Err(StepError::Failed(format!(
                "the step did not finish within its timeout of {}",
                humantime::format_duration(step.timeout())
            ))),
        }
    }

    fn stop_message(&self, outcome: Outcome, step: &Step, message: &str) -> String {
        let kind = step.kind.name();
        let next = self.next_command(outcome).unwrap_or_default();
        match (outcome, self.request.dry_run) {
            (Outcome::Interrupted, _) => format!(
                "interrupted during step {} ({kind}); continue with `{next}`",
                step.index
            ),
            (Outcome::Aborted, _) => format!(
                "aborted at step {} ({kind}): {message}; to go on later: `{next}`",
                step.index
            ),
            (_, true) => format!(
                "step {} ({kind}) failed: {message}; fix the cause, then check again with `{next}`",
                step.index
            ),
            _ => format!(
                "step {} ({kind}) failed: {message}; fix the cause, then continue with `{next}`",
                step.index
            ),
        }
    }

    /// The command that goes on from where a run stopped short: the same dry run again (a dry
    /// run's log cannot be resumed), else `--resume` of this run's log.
    fn next_command(&self, outcome: Outcome) -> Option<String> {
        if !matches!(
            outcome,
            Outcome::Failed | Outcome::Aborted | Outcome::Interrupted
        ) {
            return None;
        }
        let plan = shell_word(&self.plan.path.display().to_string());
        let direction = self.direction;
        Some(if self.request.dry_run {
            format!("kdr {direction} --plan {plan} --dry-run")
        } else {
            let log = shell_word(&self.recorder.journal().path().display().to_string());
            format!("kdr {direction} --plan {plan} --resume {log}")
        })
    }

    /// `3 steps done`; after a resume, how many of them this invocation ran.
    fn done_message(&self, here: usize) -> String {
        let whole = self.recorder.whole_run();
        if whole.invocations > 1 {
            format!(
                "{} done, {here} of them after the resume ({} invocations)",
                count(whole.steps.len(), "step"),
                whole.invocations
            )
        } else {
            format!("{} done", count(here, "step"))
        }
    }

    /// A failback whose steps all succeeded hands write authority back to the primary.
    async fn return_authority(&mut self, end: &mut StepsEnd) -> Result<(), EngineError> {
        let Some(clusters) = &self.clusters else {
            return Ok(());
        };
        if self.direction != Direction::Failback || end.outcome != Outcome::Succeeded {
            return Ok(());
        }
        let claim = Claim {
            plan: &self.plan.name,
            owner: Role::Primary,
            direction: self.direction,
            operator: &self.operator,
            force: self.request.force,
        };
        let current = self.state.authority.as_ref();
        // The declaration claimed the epoch already (this finds the claim again); a failback
        // without one contests it here.
        match authority::claim_and_move(
            &mut self.recorder,
            &clusters.primary,
            &clusters.dr,
            current,
            claim,
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(MoveError::Journal(e)) => Err(e.into()),
            Err(e) => {
                end.outcome = Outcome::Failed;
                end.message = format!(
                    "the failback's steps succeeded, but write authority could not be moved back: {e}"
                );
                Ok(())
            }
        }
    }

    /// Log the run's end, release the lock, and sum the run up.
    fn finish(
        mut self,
        outcome: Outcome,
        message: String,
        next_command: Option<String>,
    ) -> Result<RunReport, EngineError> {
        let duration_ms = self.clock.elapsed().as_millis() as u64;
        self.recorder.record(EventBody::RunFinished {
            outcome,
            duration_ms,
            message: message.clone(),
        })?;
        drop(self.lock.take());
        // The summary is the whole run's, as its log tells it (kept up to date as events were
        // recorded, never read back): after a resume, the steps of the earlier invocations too.
        let whole = self.recorder.whole_run();
        Ok(RunReport {
            run_id: self.run_id,
            plan: self.plan.name.clone(),
            direction: self.direction,
            outcome,
            dry_run: self.request.dry_run,
            log: self.recorder.journal().path().to_owned(),
            duration_ms,
            steps: whole.steps,
            message,
            invocations: whole.invocations,
            total_duration_ms: whole.total_ms,
            rto_ms: whole.rto_ms,
            next_command,
        })
    }
}

fn take_lock(
    plan: &Plan,
    direction: Direction,
    run_id: &str,
    operator: &str,
) -> Result<lock::RunLock, EngineError> {
    let me = lock::LockHolder {
        pid: std::process::id(),
        pid_start: lock::process_start(std::process::id()),
        host: lock::hostname(),
        run_id: run_id.to_owned(),
        operator: operator.to_owned(),
        direction: direction.to_string(),
        since: journal::now_rfc3339(),
    };
    Ok(lock::acquire(&plan.incident_log_dir, &plan.name, me)?)
}

/// Ask the operator why, when nothing said it; `None` when no answer came.
async fn ask_reason(gate: &mut Gate, mut cancel: watch::Receiver<bool>) -> Option<String> {
    match gate
        .ask(
            "Reason for this run (recorded in the incident log): ",
            Duration::from_secs(3600),
            &mut cancel,
        )
        .await
    {
        Answer::Text(t) => Some(t),
        _ => None,
    }
}

/// `20261121T203015Z-3f2a9c`: sortable, and unique enough across hosts and processes.
pub fn new_run_id(at: SystemTime) -> String {
    use std::hash::{BuildHasher, RandomState};
    let nanos = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let random = RandomState::new().hash_one((nanos, std::process::id())) & 0xff_ffff;
    format!("{}-{random:06x}", compact_time(at))
}

fn compact_time(at: SystemTime) -> String {
    // 2026-11-21T20:30:15Z → 20261121T203015Z
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replace(['-', ':'], "")
}

/// `<dir>/<plan>-<direction>-<run id>.jsonl`; the run id starts with the UTC time and ends with
/// a random part, so two runs started in the same second get two logs.
pub fn default_log_path(dir: &Path, plan: &str, direction: Direction, run_id: &str) -> PathBuf {
    dir.join(format!("{plan}-{direction}-{run_id}.jsonl"))
}
