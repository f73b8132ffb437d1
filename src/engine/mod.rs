//! Ordered execution of a plan's steps: gates, timeouts, cancellation, dry run, resume, lock.

pub mod gate;
pub mod recorder;
pub mod resume;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::journal::{self, EventBody, Journal, JournalError, Outcome, StepStatus, lock};
use crate::plan::{Direction, Plan, Role};
use crate::report::Progress;
use crate::steps::{self, StepCtx, StepDone, StepError};
use gate::Gate;
use recorder::Recorder;
use resume::ResumeError;

/// How long past its deadline a step may take to wind down (kill a hook, record its end)
/// before the engine stops waiting for it.
const STEP_OVERRUN_GRACE: Duration = Duration::from_secs(15);

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
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The plan's client settings cannot make a Kafka client: exit 2.
    #[error("failed to configure the Kafka clients: {0}")]
    Config(String),
}

/// One step's result, for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub step: usize,
    pub kind: String,
    pub status: StepStatus,
    pub duration_ms: u64,
    pub message: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub plan: String,
    pub direction: Direction,
    pub outcome: Outcome,
    pub dry_run: bool,
    pub log: PathBuf,
    pub duration_ms: u64,
    pub steps: Vec<StepReport>,
    pub message: String,
}

/// Run a direction of a plan. `gate` answers the human gates; `cancel` turns true on Ctrl-C.
pub async fn run(
    plan: &Plan,
    request: &RunRequest,
    mut gate: Gate,
    progress: Progress,
    cancel: watch::Receiver<bool>,
) -> Result<RunReport, EngineError> {
    let direction = request.direction;
    let steps_of_direction = plan.steps(direction);

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
    if request.yes {
        gate = Gate::Unattended;
    }

    // Resume: read the old log first, so a bad --resume fails before anything is locked.
    let resume_point = match &request.resume {
        Some(log) => {
            let contents = journal::read(log)?;
            let point =
                resume::resume_point(&contents.events, plan, direction).map_err(|source| {
                    EngineError::Resume {
                        log: log.clone(),
                        source,
                    }
                })?;
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
            Some((log.clone(), point))
        }
        None => None,
    };

    // Clients are only made (not connected) here, so bad client settings fail before anything
    // is locked or logged. A plan of only exec/pause steps never makes one.
    let clusters = if plan.needs_clusters(direction) {
        Some(
            crate::replication::Clusters::from_plan(plan)
                .map_err(|e| EngineError::Config(e.to_string()))?,
        )
    } else {
        None
    };
    let mut state = steps::RunState::default();

    let operator = request
        .operator
        .clone()
        .or_else(|| resume_point.as_ref().map(|(_, p)| p.operator.clone()))
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let mut reason = request
        .reason
        .clone()
        .or_else(|| resume_point.as_ref().map(|(_, p)| p.reason.clone()))
        .unwrap_or_default();

    let started_at = SystemTime::now();
    let (run_id, log_path) = match &resume_point {
        Some((log, point)) => (point.run_id.clone(), log.clone()),
        None => {
            let run_id = new_run_id(started_at);
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
        Some(lock::acquire(
            &plan.incident_log_dir,
            &plan.name,
            lock::LockHolder {
                pid: std::process::id(),
                pid_start: lock::process_start(std::process::id()),
                host: lock::hostname(),
                run_id: run_id.clone(),
                operator: operator.clone(),
                direction: direction.to_string(),
                since: journal::now_rfc3339(),
            },
        )?)
    };

    if reason.is_empty() && !request.dry_run && !gate.unattended() {
        let mut c = cancel.clone();
        if let gate::Answer::Text(t) = gate
            .ask(
                "Reason for this run (recorded in the incident log): ",
                Duration::from_secs(3600),
                &mut c,
            )
            .await
        {
            reason = t;
        }
    }

    let journal = match &resume_point {
        Some((log, point)) => Journal::reopen(log, &run_id, point.last_seq)?,
        None => Journal::create(&log_path, &run_id)?,
    };
    let mut recorder = Recorder::new(journal, progress, plan.secrets.clone());
    let clock = Instant::now();
    recorder.record(EventBody::RunStarted {
        plan: plan.name.clone(),
        fingerprint: plan.fingerprint.clone(),
        plan_file: plan.path.display().to_string(),
        direction,
        operator: operator.clone(),
        reason: reason.clone(),
        dry_run: request.dry_run,
        resumed: resume_point.is_some(),
        kdr_version: env!("CARGO_PKG_VERSION").to_owned(),
        host: lock::hostname(),
        pid: std::process::id(),
    })?;
    recorder
        .progress()
        .say(&format!("    incident log: {}", log_path.display()));
    if let Some(replaced) = lock.as_ref().and_then(|l| l.replaced.clone()) {
        recorder.decide(
            "kdr",
            "took over a stale run lock",
            format!(
                "its holder, pid {} on {} (run {}), is no longer running",
                replaced.pid, replaced.host, replaced.run_id
            ),
            serde_json::to_value(&replaced).unwrap_or_default(),
        )?;
    }

    let mut first_step = 1;
    if let Some((_, point)) = &resume_point {
        first_step = point.next_step;
        recorder.decide(
            &operator,
            format!("resume at step {}", point.next_step),
            "steps before it finished in the logged run",
            serde_json::json!({ "next_step": point.next_step }),
        )?;
        if let Some(i) = &point.interrupted {
            let choice = if i.idempotent {
                InterruptedChoice::Rerun
            } else if let Some(choice) = request.interrupted_step {
                choice
            } else {
                let prompt = format!(
                    "Step {} ({}) was interrupted and may already have run. Run it again? Type `rerun` or `skip`: ",
                    i.index, i.kind
                );
                let mut c = cancel.clone();
                match gate.ask(&prompt, Duration::from_secs(3600), &mut c).await {
                    gate::Answer::Text(t) if t == "rerun" => InterruptedChoice::Rerun,
                    gate::Answer::Text(t) if t == "skip" => InterruptedChoice::Skip,
                    _ => {
                        let message = format!(
                            "step {} was interrupted and the operator did not say whether to run it again",
                            i.index
                        );
                        return finish(
                            recorder,
                            plan,
                            direction,
                            request,
                            clock,
                            Vec::new(),
                            Outcome::Aborted,
                            message,
                            lock,
                        );
                    }
                }
            };
            let why = if i.idempotent {
                "the step is idempotent".to_owned()
            } else if request.interrupted_step.is_some() {
                "--interrupted-step".to_owned()
            } else {
                "the operator answered at the prompt".to_owned()
            };
            match choice {
                InterruptedChoice::Rerun => {
                    recorder.decide(
                        &operator,
                        format!("run interrupted step {} ({}) again", i.index, i.kind),
                        why,
                        serde_json::Value::Null,
                    )?;
                }
                InterruptedChoice::Skip => {
                    recorder.decide(
                        &operator,
                        format!("skip interrupted step {} ({})", i.index, i.kind),
                        why,
                        serde_json::Value::Null,
                    )?;
                    recorder.record(EventBody::StepFinished {
                        step: i.index,
                        kind: i.kind.clone(),
                        status: StepStatus::Skipped,
                        duration_ms: 0,
                        message: "interrupted earlier; skipped on resume by the operator"
                            .to_owned(),
                    })?;
                    first_step = i.index + 1;
                }
            }
        }
    }

    if let Some(clusters) = &clusters {
        let authority =
            crate::authority::read_both(&clusters.primary, &clusters.dr, &plan.name).await;
        recorder.observe(
            "authority",
            authority.summary(),
            serde_json::to_value(&authority).unwrap_or_default(),
        )?;
        if let Some(alarm) = authority.split_brain() {
            recorder.progress().say(&format!("\n  !!! {alarm}\n"));
            recorder.observe(
                "split_brain",
                alarm,
                serde_json::to_value(&authority).unwrap_or_default(),
            )?;
        }
        let (owner, epoch) = authority.owner();
        let expected = plan.source_target(direction).0.role;
        // A resumed run may already have moved authority itself.
        let moved_by_this_run = authority.latest().is_some_and(|r| r.run_id == run_id);
        if owner != expected && !moved_by_this_run {
            let what = format!(
                "write authority is already on {owner} (epoch {epoch}): a {direction} moves it away from {expected}"
            );
            if request.force {
                recorder.decide(
                    &operator,
                    format!("force the {direction} although {what}"),
                    reason.clone(),
                    serde_json::to_value(&authority).unwrap_or_default(),
                )?;
            } else {
                recorder.decide(
                    "kdr",
                    format!("refuse to start the {direction}"),
                    what.clone(),
                    serde_json::to_value(&authority).unwrap_or_default(),
                )?;
                let message = format!(
                    "refused: {what}; if that is really intended, run again with --force --reason TEXT"
                );
                return finish(
                    recorder,
                    plan,
                    direction,
                    request,
                    clock,
                    Vec::new(),
                    Outcome::Failed,
                    message,
                    lock,
                );
            }
        }
        state.authority = Some(authority);
    }

    let mut reports = Vec::new();
    let mut outcome = if request.dry_run {
        Outcome::DryRun
    } else {
        Outcome::Succeeded
    };
    let mut message = String::new();
    for step in steps_of_direction.iter().filter(|s| s.index >= first_step) {
        if *cancel.borrow() {
            outcome = Outcome::Interrupted;
            message = format!("interrupted before step {}", step.index);
            break;
        }
        let kind = step.kind.name().to_owned();
        recorder.record(EventBody::StepStarted {
            step: step.index,
            kind: kind.clone(),
            summary: steps::summary(plan, direction, step),
        })?;
        recorder.set_current_step(Some((step.index, kind.clone())));
        let step_clock = Instant::now();
        let deadline = tokio::time::Instant::now() + step.timeout();
        let result = {
            let mut ctx = StepCtx {
                plan,
                direction,
                run_id: &run_id,
                step,
                dry_run: request.dry_run,
                operator: &operator,
                reason: &reason,
                gate: &mut gate,
                recorder: &mut recorder,
                cancel: cancel.clone(),
                clusters: clusters.as_ref(),
                state: &mut state,
                deadline,
                hook_env: &request.hook_env,
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
        };
        recorder.set_current_step(None);
        let duration_ms = step_clock.elapsed().as_millis() as u64;
        let (status, step_message, stop) = match result {
            Ok(StepDone::Ok(m)) => (StepStatus::Ok, m, None),
            Ok(StepDone::Skipped(m)) => (StepStatus::Skipped, m, None),
            Ok(StepDone::DryRun(m)) => (StepStatus::DryRun, m, None),
            Err(StepError::Failed(m)) => (StepStatus::Failed, m, Some(Outcome::Failed)),
            Err(StepError::Aborted(m)) => (StepStatus::Failed, m, Some(Outcome::Aborted)),
            Err(StepError::Interrupted(m)) => (StepStatus::Failed, m, Some(Outcome::Interrupted)),
            Err(StepError::Journal(e)) => return Err(e.into()),
        };
        recorder.record(EventBody::StepFinished {
            step: step.index,
            kind: kind.clone(),
            status,
            duration_ms,
            message: step_message.clone(),
        })?;
        reports.push(StepReport {
            step: step.index,
            kind: kind.clone(),
            status,
            duration_ms,
            message: step_message.clone(),
        });
        if let Some(stop) = stop {
            outcome = stop;
            message = match stop {
                Outcome::Interrupted => format!("interrupted during step {} ({kind})", step.index),
                Outcome::Aborted => {
                    format!("aborted at step {} ({kind}): {step_message}", step.index)
                }
                _ => format!(
                    "step {} ({kind}) failed: {step_message}; fix the cause, then continue with `kdr {direction} --plan {} --resume {}`",
                    step.index,
                    plan.path.display(),
                    log_path.display()
                ),
            };
            break;
        }
    }
    if direction == Direction::Failback
        && outcome == Outcome::Succeeded
        && let Some(clusters) = &clusters
        && let Err(why) = move_authority(
            &mut recorder,
            plan,
            clusters,
            &state,
            Role::Primary,
            direction,
            &operator,
        )
        .await?
    {
        outcome = Outcome::Failed;
        message = format!(
            "the failback's steps succeeded, but write authority could not be moved back: {why}"
        );
    }
    if message.is_empty() {
        let done = reports.len();
        message = match outcome {
            Outcome::DryRun => format!("dry run: {done} steps would run; nothing was changed"),
            _ => format!("{done} steps done"),
        };
    }
    finish(
        recorder, plan, direction, request, clock, reports, outcome, message, lock,
    )
}

/// Record `owner` as the write authority on every cluster that answers, with the epoch plus
/// one. The new owner must take the record; the other side is best effort (it may be down),
/// and what happened there is logged. `Ok(Err(why))` when the new owner could not be written.
pub async fn move_authority(
    recorder: &mut Recorder,
    plan: &Plan,
    clusters: &crate::replication::Clusters,
    state: &steps::RunState,
    owner: Role,
    direction: Direction,
    operator: &str,
) -> Result<Result<u64, String>, JournalError> {
    let (_, epoch) = state
        .authority
        .as_ref()
        .map_or((Role::Primary, 0), |a| a.owner());
    let record = crate::authority::AuthorityRecord {
        v: crate::authority::RECORD_VERSION,
        plan: plan.name.clone(),
        owner,
        epoch: epoch + 1,
        run_id: recorder.journal().run_id().to_owned(),
        operator: operator.to_owned(),
        direction,
        at: journal::now_rfc3339(),
    };
    let other = match owner {
        Role::Primary => Role::Dr,
        Role::Dr => Role::Primary,
    };
    if let Err(e) = crate::authority::write(clusters.get(owner), &record).await {
        recorder.observe(
            "authority_write",
            format!("could not record {owner} as the write authority on {owner}: {e}"),
            serde_json::Value::Null,
        )?;
        return Ok(Err(e.to_string()));
    }
    let other_result = crate::authority::write(clusters.get(other), &record).await;
    let detail = match &other_result {
        Ok(_) => format!("{other} records that {owner} owns writes"),
        Err(e) => format!(
            "{other} could not be told ({e}); until it is, it may still claim writes: split brain will be reported"
        ),
    };
    recorder.decide(
        operator,
        format!("move write authority to {owner} (epoch {})", record.epoch),
        detail,
        serde_json::to_value(&record).unwrap_or_default(),
    )?;
    Ok(Ok(record.epoch))
}

#[expect(
    clippy::too_many_arguments,
    reason = "the run's closing needs everything the run built"
)]
fn finish(
    mut recorder: Recorder,
    plan: &Plan,
    direction: Direction,
    request: &RunRequest,
    clock: Instant,
    steps: Vec<StepReport>,
    outcome: Outcome,
    message: String,
    lock: Option<lock::RunLock>,
) -> Result<RunReport, EngineError> {
    let duration_ms = clock.elapsed().as_millis() as u64;
    recorder.record(EventBody::RunFinished {
        outcome,
        duration_ms,
        message: message.clone(),
    })?;
    drop(lock);
    Ok(RunReport {
        run_id: recorder.journal().run_id().to_owned(),
        plan: plan.name.clone(),
        direction,
        outcome,
        dry_run: request.dry_run,
        log: recorder.journal().path().to_owned(),
        duration_ms,
        steps,
        message,
    })
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
