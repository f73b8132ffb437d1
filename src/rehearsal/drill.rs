//! `kdr rehearse`: a game day on the embedded world, measured.
//!
//! Builds two in-process clusters, replicates between them the way MirrorMaker 2 does, runs a
//! workload whose every record is accounted for, and runs a plan's failover against it with the
//! same engine and steps as a real incident. Then it checks kdr's own numbers (the RPO it
//! accepted) against what the workload really lost, so a drill proves the tool as well as the
//! runbook.
//!
//! The drill runs in the order of a game day, one function per phase: the warm-up and, in the
//! disaster scenario, the stalled replication (`stage`); the disaster itself, struck right
//! after the plan's declaration (`disaster`); the failover, traffic on DR and the failback
//! (here and in `stage`); the measurement (`measure`, reading kdr's own figures back from
//! the incident logs through `evidence`); and the checks (`checks`).

mod canary;
mod checks;
pub mod clusters;
mod disaster;
mod evidence;
mod measure;
mod stage;
mod stranded;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

pub use canary::{CanaryFigures, GapRow, Latency};
pub use evidence::EvidenceError;
pub use stranded::{StrandedFigures, StrandedRow};
pub use summary::summary;

use self::disaster::Disaster;
use self::evidence::Evidence;
use self::measure::Measurement;
use self::stage::Stage;
use super::{EmbeddedWorld, Role as WorldRole, TopicSpec, WorldError, WorldSpec};
use crate::engine::{self, EngineError, RunReport, RunRequest, gate::Gate};
use crate::journal::{Event, EventSink, Outcome};
use crate::plan::{self, Direction, Plan, PlanError, Selector};
use crate::report::Progress;
use crate::report::incident::{self, Rto};

/// The plan `kdr rehearse` runs when none is given; also `runbooks/rehearsal.yaml`.
pub const BUNDLED_PLAN: &str = include_str!("../../runbooks/rehearsal.yaml");
pub const BUNDLED_PLAN_PATH: &str = "runbooks/rehearsal.yaml";

/// Partitions per topic in the embedded world.
const PARTITIONS: i32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// The primary is alive: producers are quiesced, replication catches up, nothing is lost.
    Controlled,
    /// Replication stalls, records pile up on the primary, and the primary's brokers go down
    /// right after the declaration: the loss is accepted and checked per partition.
    Disaster,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Controlled => "controlled",
            Scenario::Disaster => "disaster",
        }
    }
}

pub struct DrillOptions {
    pub plan: Option<PathBuf>,
    pub scenario: Scenario,
    pub log: Option<PathBuf>,
    /// Where every log of the drill goes (the plan's incident-log directory for this run).
    pub log_dir: Option<PathBuf>,
    pub color: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("failed to rehearse plan {plan}: {why}")]
    Unsuitable { plan: String, why: String },
    /// `kdr drill`'s canary would not be replicated or translated: nothing was started.
    #[error(
        "failed to drill with {}: its replication does not cover the canary; add {add} (and have MirrorMaker 2 replicate them too)",
        plan_file.display()
    )]
    CanaryNotReplicated { plan_file: PathBuf, add: String },
    #[error("failed to set up the embedded world: {0}")]
    World(String),
    /// The disaster scenario could not take the primary down: what ran was no disaster.
    #[error("failed to take the primary down after the declaration: {0}")]
    Disaster(#[source] WorldError),
    /// kdr's own figures could not be read back: they are unknown, never zero.
    #[error("failed to read kdr's figures back from the incident log: {0}")]
    Evidence(#[from] EvidenceError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Ctrl-C before any run started.
    #[error("{0}")]
    Interrupted(String),
}

impl DrillError {
    fn world(error: impl std::fmt::Display) -> Self {
        DrillError::World(error.to_string())
    }
}

/// One thing the drill checked, and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionLoss {
    pub topic: String,
    pub partition: i32,
    /// What kdr accepted as lost.
    pub accepted_by_kdr: i64,
    /// What the workload wrote to the primary and never reached DR.
    pub really_missing: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRereads {
    pub group: String,
    /// Records the group read again on DR that it had read on the primary.
    pub reread_at_failover: usize,
    /// Records the group read again on the primary after the failback that it had read before.
    pub reread_at_failback: usize,
    /// What kdr's translate_offsets said the group may read again, at each boundary.
    pub kdr_estimate_at_failover: Option<i64>,
    pub kdr_estimate_at_failback: Option<i64>,
    /// Partitions where the group started again from the beginning (mass reprocessing).
    pub restarted_from_beginning: usize,
}

/// The failback's reverse checkpointing (issue 11 #2): what kdr did with the groups' commits on
/// DR's replica topics, and what the groups then read again of the primary's own topics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReverseHome {
    /// Partitions whose group kdr moved forward at home through the forward offset syncs.
    pub partitions_moved: usize,
    /// Partitions left where they were (already further, a live group, or the reverse flow's
    /// checkpoint further still).
    pub partitions_left: usize,
    /// Partitions with a commit on DR behind every offset sync read.
    pub partitions_unmapped: usize,
    /// What kdr said the groups may read again of the primary's topics (None: unknown).
    pub kdr_may_reread: Option<i64>,
    /// What the ledger shows they did.
    pub reread_on_primary_topics: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub scenario: Scenario,
    pub run: RunReport,
    /// The failback half: traffic on DR, then back to the primary. None when the failover failed.
    pub failback: Option<RunReport>,
    /// The failover's RTO as `kdr report` computes it from the log: its span, label and phases.
    /// None when the log holds no finished step.
    pub rto: Option<Rto>,
    /// `rto.total_ms`, 0 when unknown.
    pub rto_ms: u64,
    /// Records written on DR that never reached the primary by the end of the failback.
    pub records_lost_at_failback: Option<usize>,
    /// Replication lag kdr measured at the declaration.
    pub lag_at_declaration: Option<i64>,
    pub records_written: usize,
    pub records_accepted_lost: i64,
    pub records_really_lost: usize,
    pub loss_per_partition: Vec<PartitionLoss>,
    pub rereads: Vec<GroupRereads>,
    /// The failback's reverse checkpointing; None without a failback.
    pub reverse_at_failback: Option<ReverseHome>,
    /// The records only the old primary saw, as the failback found and placed them, next to
    /// what the primary really held beyond DR. None without a failback.
    pub stranded: Option<StrandedFigures>,
    /// What the canary's clients saw across the failover, and across the failback.
    pub canary: Option<CanaryFigures>,
    pub canary_failback: Option<CanaryFigures>,
    pub checks: Vec<Check>,
}

impl DrillReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// The plan to rehearse: the bundled one, or the operator's (its steps and topics, run against
/// the embedded clusters, never the clusters it names).
pub fn load_plan(path: Option<&Path>) -> Result<Plan, DrillError> {
    Ok(match path {
        Some(p) => plan::load(p)?,
        None => plan::load_bytes(
            Path::new(BUNDLED_PLAN_PATH),
            BUNDLED_PLAN.as_bytes(),
            Path::new("."),
            &plan::SystemSubstitutions,
        )?,
    })
}

fn world_spec(plan: &Plan) -> Result<WorldSpec, DrillError> {
    let names = |selectors: &[Selector], what: &str| -> Result<Vec<String>, DrillError> {
        selectors
            .iter()
            .map(|s| match s {
                Selector::Name(n) => Ok(n.clone()),
                Selector::Pattern { source, .. } => Err(DrillError::Unsuitable {
                    plan: plan.name.clone(),
                    why: format!("the embedded world needs {what} names to create, not the pattern `re:{source}`"),
                }),
            })
            .collect()
    };
    let topics = names(&plan.replication.topics, "topic")?;
    Ok(WorldSpec {
        topics: topics
            .iter()
            .map(|t| TopicSpec::new(t.clone(), PARTITIONS))
            .collect(),
        groups: names(&plan.replication.groups, "group")?,
        primary_alias: plan.primary.mm2_alias.clone(),
        dr_alias: plan.dr.mm2_alias.clone(),
        policy: plan.replication.mm2_policy(&plan.primary.mm2_alias),
        offset_syncs_location: match plan.replication.offset_syncs_location {
            plan::OffsetSyncsLocation::Source => crate::mm2::OffsetSyncsLocation::Source,
            plan::OffsetSyncsLocation::Target => crate::mm2::OffsetSyncsLocation::Target,
        },
        brokers_per_cluster: 3,
    })
}

pub async fn run(
    options: DrillOptions,
    cancel: watch::Receiver<bool>,
) -> Result<DrillReport, DrillError> {
    let mut plan = load_plan(options.plan.as_deref())?;
    if let Some(dir) = &options.log_dir {
        plan.incident_log_dir.clone_from(dir);
    }
    // The canary's topic and group are replicated, failed over and translated like the plan's.
    plan.replication
        .topics
        .push(Selector::Name(canary::TOPIC.to_owned()));
    plan.replication
        .groups
        .push(Selector::Name(canary::GROUP.to_owned()));
    let spec = world_spec(&plan)?;
    if options.scenario == Scenario::Disaster {
        // Refuse before anything starts: the disaster has no moment to strike at.
        disaster::declaration_step(&plan)?;
    }
    let groups = spec.groups.clone();
    let world = Arc::new(EmbeddedWorld::start(spec).map_err(DrillError::world)?);
    plan.primary.bootstrap_servers = world.bootstrap_servers(WorldRole::Primary).to_owned();
    plan.dr.bootstrap_servers = world.bootstrap_servers(WorldRole::Dr).to_owned();

    let dir = std::env::temp_dir().join(format!(
        "kdr-rehearsal-{}-{}",
        std::process::id(),
        engine::new_run_id(std::time::SystemTime::now())
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| DrillError::World(format!("cannot create {}: {e}", dir.display())))?;
    let result = drill(&options, &plan, &world, &dir, &groups, cancel).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The game day, phase by phase.
async fn drill(
    options: &DrillOptions,
    plan: &Plan,
    world: &Arc<EmbeddedWorld>,
    dir: &Path,
    groups: &[String],
    cancel: watch::Receiver<bool>,
) -> Result<DrillReport, DrillError> {
    let (stage, replicator) = Stage::start(plan, world, dir, groups)?;
    stage.warm_up(&replicator).await?;
    let disaster = match options.scenario {
        Scenario::Disaster => {
            stage.stall_replication(&replicator).await?;
            Some(Disaster::new(plan, world)?)
        }
        Scenario::Controlled => None,
    };

    let run = failover(options, plan, dir, disaster.as_ref(), cancel.clone()).await?;
    let forward = replicator.stop();

    // The failback half: the primary is back, MirrorMaker 2's flow is turned around, DR takes
    // traffic for a while, then the plan's failback steps bring everything home.
    let mut back = None;
    if run.outcome == Outcome::Succeeded {
        if disaster.is_some() {
            world
                .cluster_up(WorldRole::Primary)
                .map_err(DrillError::world)?;
        }
        let flow_back = stage.traffic_on_dr(&forward).await?;
        let failback = failback(options, plan, dir, &run.log, cancel).await?;
        back = Some((failback, flow_back));
    }

    let (ledger, canary_ledger) = stage.wind_down().await?;
    let failback = back.map(|(failback, flow_back)| {
        flow_back.stop();
        failback
    });
    let measured = Measurement::take(plan, world, groups, &ledger, &run, failback.as_ref()).await?;
    let stranded = match &failback {
        Some(back) => {
            Some(stranded::account(plan, world, &ledger, &measured.on_dr, &back.log).await?)
        }
        None => None,
    };
    let canary_group = measured.rereads.iter().find(|g| g.group == canary::GROUP);
    let ground = CanaryGround {
        on_dr: &measured.on_dr,
        on_primary: measured.on_primary.as_ref(),
        at_failover: &measured.at_failover,
        at_failback: measured.at_failback.as_ref(),
        rereads: canary_group.map_or((0, 0), |g| (g.reread_at_failover, g.reread_at_failback)),
        stable_for: canary::STABLE_FOR,
    };
    let Switches {
        rto,
        canary,
        canary_failback,
        ..
    } = switches(plan, &canary_ledger, &ground, &run, failback.as_ref())?;
    let mut checks = checks::all(options.scenario, &run, failback.as_ref(), &measured);
    checks.extend(checks::canary(
        options.scenario,
        canary.as_ref(),
        canary_failback.as_ref(),
    ));
    checks.extend(checks::stranded(stranded.as_ref()));
    Ok(DrillReport {
        stranded,
        canary,
        canary_failback,
        scenario: options.scenario,
        rto_ms: rto.as_ref().map_or(0, |r| r.total_ms),
        rto,
        records_lost_at_failback: measured.records_lost_at_failback,
        lag_at_declaration: measured.lag_at_declaration,
        records_written: measured.records_written,
        records_accepted_lost: measured.records_accepted_lost,
        records_really_lost: measured.records_really_lost,
        loss_per_partition: measured.loss_per_partition,
        rereads: measured.rereads,
        reverse_at_failback: measured.reverse_at_failback,
        checks,
        failback,
        run,
    })
}

/// What the canary's figures are measured against: the sequence numbers found on each switch's
/// new cluster, kdr's figures from each run's log, and what the canary group read twice at each.
struct CanaryGround<'a> {
    /// The canary's records found on DR (its replica of the primary's topic), and after a
    /// failback on the primary (its replica of DR's).
    on_dr: &'a BTreeSet<u64>,
    on_primary: Option<&'a BTreeSet<u64>>,
    at_failover: &'a Evidence,
    at_failback: Option<&'a Evidence>,
    /// Canary records read twice at the failover and at the failback.
    rereads: (usize, usize),
    /// How long publishing must stay clean to count as stabilized.
    stable_for: std::time::Duration,
}

/// The runs' RTOs as `kdr report` computes them from their logs, and the canary's figures
/// around each switch (None where a run's RTO span is unknown).
struct Switches {
    rto: Option<Rto>,
    rto_back: Option<Rto>,
    canary: Option<CanaryFigures>,
    canary_failback: Option<CanaryFigures>,
}

/// Measures the canary around the failover and, when it ran, the failback, and appends its
/// figures to each run's log (so `kdr report` rebuilds them from the logs alone).
fn switches(
    plan: &Plan,
    ledger: &super::Ledger,
    ground: &CanaryGround<'_>,
    run: &RunReport,
    failback: Option<&RunReport>,
) -> Result<Switches, DrillError> {
    let mut logs = vec![run.log.clone()];
    logs.extend(failback.map(|b| b.log.clone()));
    let mut rtos = incident::load(&logs)
        .map_err(EvidenceError::from)?
        .runs
        .into_iter()
        .map(|r| r.rto);
    let rto = rtos.next().flatten();
    let rto_back = rtos.next().flatten();
    let (canary, canary_failback) =
        canary_figures(plan, ledger, ground, rto.as_ref(), rto_back.as_ref());
    for (figures, log) in [(&canary, &run.log)]
        .into_iter()
        .chain(failback.map(|b| (&canary_failback, &b.log)))
    {
        if let Some(figures) = figures {
            figures.append_to(log).map_err(EvidenceError::from)?;
        }
    }
    Ok(Switches {
        rto,
        rto_back,
        canary,
        canary_failback,
    })
}

/// The canary's figures around the failover and, when it ran, the failback (None where a run's
/// RTO span is unknown).
fn canary_figures(
    plan: &Plan,
    ledger: &super::Ledger,
    ground: &CanaryGround<'_>,
    rto: Option<&Rto>,
    rto_back: Option<&Rto>,
) -> (Option<CanaryFigures>, Option<CanaryFigures>) {
    let span = rto.and_then(canary::Switch::span);
    let span_back = rto_back.and_then(canary::Switch::span);
    let failover = span.map(|(start_us, end_us)| {
        let switch = canary::Switch {
            from: &plan.primary.mm2_alias,
            to: &plan.dr.mm2_alias,
            start_us,
            end_us,
            lo_us: 0,
            hi_us: span_back.map_or(u64::MAX, |(s, _)| s),
            stable_for: ground.stable_for,
        };
        CanaryFigures::measure(
            ledger,
            &switch,
            ground.on_dr,
            ground.at_failover.accepted_loss_on(canary::TOPIC),
            ground.rereads.0,
            ground.at_failover.may_reread(canary::GROUP),
        )
    });
    let failback = span.zip(span_back).zip(ground.on_primary).map(
        |(((_, failover_end), (start_us, end_us)), on_primary)| {
            let switch = canary::Switch {
                from: &plan.dr.mm2_alias,
                to: &plan.primary.mm2_alias,
                start_us,
                end_us,
                lo_us: failover_end,
                hi_us: u64::MAX,
                stable_for: ground.stable_for,
            };
            let evidence = ground.at_failback.cloned().unwrap_or_default();
            CanaryFigures::measure(
                ledger,
                &switch,
                on_primary,
                evidence.accepted_loss_on(canary::TOPIC),
                ground.rereads.1,
                evidence.may_reread(canary::GROUP),
            )
        },
    );
    (failover, failback)
}

/// The failover's progress on the terminal; in the disaster scenario, the primary goes down as
/// soon as the declaration has finished.
fn failover_sinks(
    color: bool,
    plan: &Plan,
    disaster: Option<&Arc<Disaster>>,
) -> Vec<Box<dyn EventSink>> {
    let progress = Progress::new(color, plan.steps(Direction::Failover).len());
    let mut sinks: Vec<Box<dyn EventSink>> = vec![Box::new(progress)];
    if let Some(disaster) = disaster {
        let disaster = Arc::clone(disaster);
        sinks.push(Box::new(move |event: &Event| disaster.on_event(event)));
    }
    sinks
}

/// The plan's failover; in the disaster scenario, an error if the primary did not go down.
async fn failover(
    options: &DrillOptions,
    plan: &Plan,
    dir: &Path,
    disaster: Option<&Arc<Disaster>>,
    cancel: watch::Receiver<bool>,
) -> Result<RunReport, DrillError> {
    let request = failover_request(options, dir);
    let sinks = failover_sinks(options.color, plan, disaster);
    let run = engine::run(plan, &request, Gate::Unattended, sinks, cancel).await?;
    if let Some(disaster) = disaster {
        disaster.outcome()?;
    }
    Ok(run)
}

fn failover_request(options: &DrillOptions, dir: &Path) -> RunRequest {
    RunRequest {
        direction: Direction::Failover,
        dry_run: false,
        yes: true,
        operator: Some("kdr-rehearse".to_owned()),
        reason: Some(format!("rehearsal: {} scenario", options.scenario.name())),
        resume: None,
        log: options.log.clone(),
        interrupted_step: None,
        force: false,
        hook_env: vec![("KDR_REHEARSAL_DIR".to_owned(), dir.display().to_string())],
        failover_log: None,
    }
}

/// The plan's failback, run as the failover was (its log goes where failbacks' logs go).
async fn failback(
    options: &DrillOptions,
    plan: &Plan,
    dir: &Path,
    failover_log: &Path,
    cancel: watch::Receiver<bool>,
) -> Result<RunReport, DrillError> {
    let mut progress = Progress::new(options.color, plan.steps(Direction::Failback).len());
    progress.say("");
    let request = RunRequest {
        direction: Direction::Failback,
        reason: Some(format!(
            "rehearsal: failback after the {} scenario",
            options.scenario.name()
        )),
        log: None,
        // Its stranded records are counted from the failover's log, wherever --log put it.
        failover_log: Some(failover_log.to_owned()),
        ..failover_request(options, dir)
    };
    let sinks: Vec<Box<dyn EventSink>> = vec![Box::new(progress)];
    Ok(engine::run(plan, &request, Gate::Unattended, sinks, cancel).await?)
}
