//! `kdr drill`: the game day on the clusters the plan names, not the embedded ones.
//!
//! The plan's replication must cover the canary's topic and group: whatever replicates the
//! applications' topics (MirrorMaker 2) replicates the canary's too, and the failover translates
//! its group like theirs. The canary's clients find their cluster the way the rehearsal's do, in
//! files under `$KDR_REHEARSAL_DIR` that the plan's hooks rewrite (see runbooks/rehearsal.yaml):
//! producers read `producers.bootstrap` and stop while `producers.paused` exists, consumers read
//! `consumers.bootstrap`. So the canary goes through the same indirection `repoint` rewrites,
//! and what it sees is what the applications would.
//!
//! The plan's failover runs; with `--failback`, once the canary has been on DR long enough to
//! show whether publishing stabilized, so does its failback. Then the canary stops and its
//! figures are measured, logged and checked exactly as `kdr rehearse` does it (`canary`,
//! `evidence`, `checks`, `summary`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::evidence::Evidence;
use super::stage::{settle, wait_for};
use super::{CanaryFigures, CanaryGround, Check, DrillError, Scenario, Switches, canary, checks};
use crate::engine::{self, RunReport, RunRequest, gate::Gate};
use crate::journal::{EventSink, Outcome};
use crate::plan::{self, Direction, Plan};
use crate::rehearsal::{Endpoint, Workload, WorkloadConfig};
use crate::report::incident::Rto;
use crate::report::{Progress, tables::run_table};

/// How long the canary may take, before the failover, to publish and commit on the primary.
const WARM_UP: Duration = Duration::from_secs(30);

/// How long the canary stays on DR at most, between the failover and the failback, waiting for
/// its consumer to read there and for publishing to stabilize.
const ON_DR_AT_MOST: Duration = Duration::from_secs(120);

pub struct ClusterDrillOptions {
    /// Also run the plan's failback once the canary has settled on DR.
    pub failback: bool,
    /// Where the runs' incident logs go (the plan's incident-log directory otherwise).
    pub log_dir: Option<PathBuf>,
    /// How long publishing must stay clean (no errors, p99 within 2x its baseline) to count as
    /// stabilized.
    pub stable_for: Duration,
    /// Who the incident logs name: the operator who typed the confirmation (or passed --yes).
    pub operator: String,
    pub color: bool,
}

/// What `kdr drill` found.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterDrillReport {
    pub plan: String,
    pub primary_bootstrap_servers: String,
    pub dr_bootstrap_servers: String,
    pub run: RunReport,
    /// None without --failback, or when the failover did not succeed.
    pub failback: Option<RunReport>,
    /// Each run's RTO as `kdr report` computes it from its log.
    pub rto: Option<Rto>,
    pub rto_failback: Option<Rto>,
    pub canary: Option<CanaryFigures>,
    pub canary_failback: Option<CanaryFigures>,
    pub checks: Vec<Check>,
}

impl ClusterDrillReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The incident logs of the drill's runs, the failover's first.
    pub fn logs(&self) -> Vec<&Path> {
        let mut logs = vec![self.run.log.as_path()];
        logs.extend(self.failback.as_ref().map(|b| b.log.as_path()));
        logs
    }
}

/// The plan `kdr drill` runs: loaded, its replication checked to cover the canary's topic and
/// group, and its clusters reachable by the canary's plain clients.
pub fn load_plan(path: &Path) -> Result<Plan, DrillError> {
    let plan = plan::load(path)?;
    let mut missing = Vec::new();
    if !plan::matches_any(&plan.replication.topics, canary::TOPIC) {
        missing.push(format!("`{}` to replication.topics", canary::TOPIC));
    }
    if !plan::matches_any(&plan.replication.groups, canary::GROUP) {
        missing.push(format!("`{}` to replication.groups", canary::GROUP));
    }
    if !missing.is_empty() {
        return Err(DrillError::CanaryNotReplicated {
            plan_file: path.to_owned(),
            add: missing.join(" and "),
        });
    }
    if let Some(role) = [&plan.primary, &plan.dr]
        .into_iter()
        .find(|c| !c.client.is_empty())
    {
        return Err(DrillError::Unsuitable {
            plan: plan.name.clone(),
            why: format!(
                "the canary's clients connect with bootstrap servers alone, and clusters.{}.client sets client properties (TLS, SASL): kdr drill does not support them yet",
                role.role
            ),
        });
    }
    Ok(plan)
}

/// The clusters a drill disturbs, for the confirmation: `primary (p1:9092) and dr (d1:9092)`.
pub fn clusters_named(plan: &Plan) -> String {
    format!(
        "{} ({}) and {} ({})",
        plan.primary.role, plan.primary.bootstrap_servers, plan.dr.role, plan.dr.bootstrap_servers
    )
}

/// The game day on the plan's clusters. The confirmation is the caller's.
pub async fn run(
    mut plan: Plan,
    options: ClusterDrillOptions,
    cancel: watch::Receiver<bool>,
) -> Result<ClusterDrillReport, DrillError> {
    if let Some(dir) = &options.log_dir {
        plan.incident_log_dir.clone_from(dir);
    }
    let dir = std::env::temp_dir().join(format!(
        "kdr-drill-{}-{}",
        std::process::id(),
        engine::new_run_id(std::time::SystemTime::now())
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| DrillError::World(format!("cannot create {}: {e}", dir.display())))?;
    let result = drill(&plan, &options, &dir, cancel).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The drill's phases, with the canary's files in `dir`.
async fn drill(
    plan: &Plan,
    options: &ClusterDrillOptions,
    dir: &Path,
    cancel: watch::Receiver<bool>,
) -> Result<ClusterDrillReport, DrillError> {
    let canary = start_canary(plan, dir)?;
    warm_up(&canary, &cancel).await?;
    checkpointed(plan, &canary, &cancel).await?;

    let run = run_direction(
        plan,
        options,
        Direction::Failover,
        dir,
        None,
        cancel.clone(),
    )
    .await?;
    let mut failback = None;
    if options.failback && run.outcome == Outcome::Succeeded {
        settle_on_dr(plan, &canary, options.stable_for, &cancel).await;
        failback = Some(
            run_direction(
                plan,
                options,
                Direction::Failback,
                dir,
                Some(&run.log),
                cancel,
            )
            .await?,
        );
    }

    settle(&dir.join(PAUSE_FILE), &[&canary]).await?;
    let ledger = canary.stop();
    let on_dr = seqs_on(plan, Direction::Failover).await?;
    let on_primary = match &failback {
        Some(_) => Some(seqs_on(plan, Direction::Failback).await?),
        None => None,
    };
    let at_failover = Evidence::read(&run.log)?;
    let at_failback = failback
        .as_ref()
        .map(|b| Evidence::read(&b.log))
        .transpose()?;
    let ground = CanaryGround {
        on_dr: &on_dr,
        on_primary: on_primary.as_ref(),
        at_failover: &at_failover,
        at_failback: at_failback.as_ref(),
        rereads: super::measure::rereads_by_boundary(&ledger, canary::GROUP, |_| true),
        stable_for: options.stable_for,
    };
    let Switches {
        rto,
        rto_back,
        canary,
        canary_failback,
    } = super::switches(plan, &ledger, &ground, &run, failback.as_ref())?;

    let mut checks = vec![checks::succeeded("failover succeeded", &run)];
    if options.failback {
        checks.push(match &failback {
            Some(back) => checks::succeeded("failback succeeded", back),
            None => Check {
                name: "failback succeeded".to_owned(),
                ok: false,
                detail: "not run: the failover did not succeed".to_owned(),
            },
        });
    }
    checks.extend(followed(plan, &ledger, failback.is_some()));
    // The primary is alive in a drill: producers are quiesced and replication catches up, so
    // duplicates are held to kdr's estimate as in the controlled rehearsal.
    checks.extend(checks::canary(
        Scenario::Controlled,
        canary.as_ref(),
        canary_failback.as_ref(),
    ));
    Ok(ClusterDrillReport {
        plan: plan.name.clone(),
        primary_bootstrap_servers: plan.primary.bootstrap_servers.clone(),
        dr_bootstrap_servers: plan.dr.bootstrap_servers.clone(),
        run,
        failback,
        rto,
        rto_failback: rto_back,
        canary,
        canary_failback,
        checks,
    })
}

const PRODUCERS_FILE: &str = "producers.bootstrap";
const CONSUMERS_FILE: &str = "consumers.bootstrap";
const PAUSE_FILE: &str = "producers.paused";

/// Points the canary's producer and consumer at the primary through the files the plan's hooks
/// rewrite, and starts it. Its records are numbered from this moment on, apart from earlier
/// drills' records still on the canary's topics.
fn start_canary(plan: &Plan, dir: &Path) -> Result<Workload, DrillError> {
    for file in [PRODUCERS_FILE, CONSUMERS_FILE] {
        std::fs::write(
            dir.join(file),
            format!("{}\n", plan.primary.bootstrap_servers),
        )
        .map_err(DrillError::world)?;
    }
    let mut base = WorkloadConfig::new(
        Vec::new(),
        Vec::new(),
        vec![
            Endpoint::new(&plan.primary.mm2_alias, &plan.primary.bootstrap_servers),
            Endpoint::new(&plan.dr.mm2_alias, &plan.dr.bootstrap_servers),
        ],
        plan.replication.mm2_policy(&plan.primary.mm2_alias),
        dir.join(PRODUCERS_FILE),
        dir.join(PAUSE_FILE),
    );
    base.consumer_indirection_file = Some(dir.join(CONSUMERS_FILE));
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0));
    let config = canary::workload(&base, canary::FIRST_SEQ + now_us);
    Workload::start(config).map_err(DrillError::world)
}

/// The canary publishes on the primary and its group has committed there (what MirrorMaker 2
/// checkpoints and the failover translates).
async fn warm_up(canary: &Workload, cancel: &watch::Receiver<bool>) -> Result<(), DrillError> {
    let warm = wait_for(WARM_UP, || {
        let s = canary.stats();
        *cancel.borrow()
            || s.acknowledged >= 10 && s.groups.get(canary::GROUP).is_some_and(|g| g.commits > 0)
    })
    .await;
    interrupted(cancel)?;
    if warm {
        return Ok(());
    }
    let stats = canary.stats();
    Err(DrillError::World(format!(
        "the canary did not publish and commit on the primary within {}: {} records acknowledged; {}",
        humantime::format_duration(WARM_UP),
        stats.acknowledged,
        stats.last_error.as_deref().unwrap_or("no error")
    )))
}

/// How long MirrorMaker 2 may take to checkpoint the canary group's commits (its
/// `emit.checkpoints.interval.seconds` is 60 by default).
const CHECKPOINTED_WITHIN: Duration = Duration::from_secs(120);

/// Waits until MirrorMaker 2 has checkpointed every partition the canary group committed on the
/// primary, read as `kdr offsets translate` reads it: without a checkpoint the failover has no
/// translated offset for a partition, and the canary would read it from the beginning on DR.
async fn checkpointed(
    plan: &Plan,
    canary: &Workload,
    cancel: &watch::Receiver<bool>,
) -> Result<(), DrillError> {
    use crate::lookup::{LookupCtx, translate};
    let clusters = crate::replication::Clusters::from_plan(plan).map_err(DrillError::world)?;
    let request = translate::TranslateRequest {
        direction: Direction::Failover,
        apply: false,
        batching: crate::replication::Batching::default(),
    };
    let selectors = [plan::Selector::Name(canary::GROUP.to_owned())];
    let deadline = Instant::now() + CHECKPOINTED_WITHIN;
    let mut missing = String::from("nothing read yet");
    while Instant::now() < deadline {
        interrupted(cancel)?;
        let committed = canary
            .stats()
            .groups
            .get(canary::GROUP)
            .map(|g| g.committed.clone())
            .unwrap_or_default();
        let ctx = LookupCtx::quiet(tokio::time::Instant::now() + Duration::from_secs(10));
        let mut kept = translate::KeptRows::default();
        match translate::run(plan, &clusters, &request, &selectors, ctx, &mut kept).await {
            Ok(_) => {
                let rows: BTreeSet<(String, i32)> = kept
                    .0
                    .iter()
                    .flat_map(|g| &g.partitions)
                    .map(|p| (p.source_topic.clone(), p.partition))
                    .collect();
                let left: Vec<String> = committed
                    .iter()
                    .filter(|tp| !rows.contains(tp))
                    .map(|(t, p)| format!("{t}-{p}"))
                    .collect();
                if !committed.is_empty() && left.is_empty() {
                    return Ok(());
                }
                missing = format!("no checkpoint yet for {}", left.join(", "));
            }
            Err(e) => missing = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(DrillError::World(format!(
        "MirrorMaker 2 did not checkpoint the canary group {} on {} within {} ({missing}): does the primary -> dr flow replicate and checkpoint it?",
        canary::GROUP,
        plan.dr.role,
        humantime::format_duration(CHECKPOINTED_WITHIN)
    )))
}

/// After the failover: the canary publishes and reads on DR, long enough to show whether
/// publishing stabilized (at most [`ON_DR_AT_MOST`]; the failback runs either way, and the
/// figures say what was seen).
async fn settle_on_dr(
    plan: &Plan,
    canary: &Workload,
    stable_for: Duration,
    cancel: &watch::Receiver<bool>,
) {
    let since = Instant::now();
    let dr = &plan.dr.mm2_alias;
    wait_for(ON_DR_AT_MOST, || {
        let s = canary.stats();
        // Ctrl-C: the failback starts at once, and is interrupted before its first step.
        *cancel.borrow()
            || since.elapsed() >= stable_for + Duration::from_millis(500)
                && s.producer_clusters.iter().all(|c| c.as_deref() == Some(dr))
                && s.groups
                    .get(canary::GROUP)
                    .is_some_and(|g| g.cluster.as_deref() == Some(dr) && g.commits > 0)
    })
    .await;
}

/// Ctrl-C before the failover: the canary stops, nothing was failed over.
fn interrupted(cancel: &watch::Receiver<bool>) -> Result<(), DrillError> {
    if *cancel.borrow() {
        return Err(DrillError::Interrupted(
            "interrupted before the failover: the canary stopped and nothing was failed over"
                .to_owned(),
        ));
    }
    Ok(())
}

/// The plan's run in one direction, unattended: the operator confirmed the drill as a whole.
/// A failback is given the failover's log, where it finds what the failover accepted to lose.
async fn run_direction(
    plan: &Plan,
    options: &ClusterDrillOptions,
    direction: Direction,
    dir: &Path,
    failover_log: Option<&Path>,
    cancel: watch::Receiver<bool>,
) -> Result<RunReport, DrillError> {
    let mut progress = Progress::new(options.color, plan.steps(direction).len());
    if direction == Direction::Failback {
        progress.say("");
    }
    let request = RunRequest {
        direction,
        dry_run: false,
        yes: true,
        operator: Some(options.operator.clone()),
        reason: Some(format!(
            "game day: kdr drill against {}",
            clusters_named(plan)
        )),
        resume: None,
        log: None,
        interrupted_step: None,
        force: false,
        failover_log: failover_log.map(Path::to_path_buf),
        hook_env: vec![("KDR_REHEARSAL_DIR".to_owned(), dir.display().to_string())],
    };
    let sinks: Vec<Box<dyn EventSink>> = vec![Box::new(progress)];
    Ok(engine::run(plan, &request, Gate::Unattended, sinks, cancel).await?)
}

/// The canary's sequence numbers on the cluster a run moved it to: its replica there of the
/// canary topic it left.
async fn seqs_on(plan: &Plan, direction: Direction) -> Result<BTreeSet<u64>, DrillError> {
    let (source, target) = plan.source_target(direction);
    let remote = plan
        .replication
        .mm2_policy(&source.mm2_alias)
        .format_remote_topic(&source.mm2_alias, canary::TOPIC);
    super::measure::seqs_on_cluster(&target.bootstrap_servers, vec![remote]).await
}

/// Whether the plan's hooks moved the canary: a plan that repoints its applications some other
/// way leaves the canary behind, and its figures would describe nothing.
fn followed(plan: &Plan, ledger: &crate::rehearsal::Ledger, failback: bool) -> Vec<Check> {
    let published_on = |alias: &str| ledger.produced.iter().any(|r| r.cluster == alias);
    let mut checks = vec![Check {
        name: "canary: the plan's hooks moved it to dr".to_owned(),
        ok: published_on(&plan.dr.mm2_alias),
        detail: format!(
            "{} canary records acknowledged on {}; the hooks rewrite $KDR_REHEARSAL_DIR/{PRODUCERS_FILE} and {CONSUMERS_FILE}",
            ledger
                .produced
                .iter()
                .filter(|r| r.cluster == plan.dr.mm2_alias)
                .count(),
            plan.dr.role
        ),
    }];
    if failback {
        let home = ledger
            .produced
            .iter()
            .skip_while(|r| r.cluster != plan.dr.mm2_alias)
            .filter(|r| r.cluster == plan.primary.mm2_alias)
            .count();
        checks.push(Check {
            name: "canary: the plan's hooks moved it back to primary".to_owned(),
            ok: home > 0,
            detail: format!(
                "{home} canary records acknowledged on {} after the failback",
                plan.primary.role
            ),
        });
    }
    checks
}

/// The summary `kdr drill` prints: each run's table, its RTO and the canary's figures, then the
/// checks.
pub fn summary(report: &ClusterDrillReport) -> String {
    use super::summary::{canary as canary_lines, rto as rto_lines};
    let mut out = run_table(&report.run);
    out.push_str(&format!(
        "\ndrill against primary ({}) and dr ({})\n",
        report.primary_bootstrap_servers, report.dr_bootstrap_servers
    ));
    rto_lines(&mut out, report.rto.as_ref());
    if let Some(c) = &report.canary {
        canary_lines(&mut out, "failover", c);
    }
    if let Some(back) = &report.failback {
        out.push_str("\nfailback\n");
        out.push_str(&run_table(back));
        rto_lines(&mut out, report.rto_failback.as_ref());
        if let Some(c) = &report.canary_failback {
            canary_lines(&mut out, "failback", c);
        }
    }
    out.push('\n');
    super::summary::checks(&mut out, &report.checks);
    out
}
