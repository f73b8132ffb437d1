//! `kdr rehearse`: a game day on the embedded world, measured.
//!
//! Builds two in-process clusters, replicates between them the way MirrorMaker 2 does, runs a
//! workload whose every record is accounted for, and runs a plan's failover against it with the
//! same engine and steps as a real incident. Then it checks kdr's own numbers (the RPO it
//! accepted) against what the workload really lost, so a drill proves the tool as well as the
//! runbook.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::{
    EmbeddedWorld, Pause, Replicator, Role as WorldRole, TopicSpec, Workload, WorldSpec, seqs_on,
};
use crate::engine::{self, EngineError, RunReport, RunRequest, gate::Gate};
use crate::journal::{self, Event, EventBody, EventSink, Outcome};
use crate::plan::{self, Direction, Plan, PlanError, Selector};
use crate::report::Progress;

/// The plan `kdr rehearse` runs when none is given; also `runbooks/rehearsal.yaml`.
pub const BUNDLED_PLAN: &str = include_str!("../../runbooks/rehearsal.yaml");
pub const BUNDLED_PLAN_PATH: &str = "runbooks/rehearsal.yaml";

/// Partitions per topic in the embedded world.
const PARTITIONS: i32 = 4;
/// Records per second the workload writes.
const RATE: u32 = 400;
/// Records written, in the disaster scenario, after replication stalls and before the primary
/// goes down: the data in flight.
const IN_FLIGHT: u64 = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// The primary is alive: producers are quiesced, replication catches up, nothing is lost.
    Controlled,
    /// Replication stalls, records pile up on the primary, and the primary's brokers go down
    /// right after the declaration: the loss is accepted and checked per partition.
    Disaster,
}

pub struct DrillOptions {
    pub plan: Option<PathBuf>,
    pub scenario: Scenario,
    pub log: Option<PathBuf>,
    pub color: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("failed to rehearse plan {plan}: {why}")]
    Unsuitable { plan: String, why: String },
    #[error("failed to set up the embedded world: {0}")]
    World(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
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

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub scenario: Scenario,
    pub run: RunReport,
    /// The failback half: traffic on DR, then back to the primary. None when the failover failed.
    pub failback: Option<RunReport>,
    /// Declaration to validated failover.
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
            &plan::SystemLookup,
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

/// Poll `cond` every 20 ms until it holds or `bound` passes; false on timeout.
async fn wait_for(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(
    options: DrillOptions,
    cancel: watch::Receiver<bool>,
) -> Result<DrillReport, DrillError> {
    let mut plan = load_plan(options.plan.as_deref())?;
    let spec = world_spec(&plan)?;
    let groups = spec.groups.clone();
    let world = Arc::new(EmbeddedWorld::start(spec).map_err(|e| DrillError::World(e.to_string()))?);
    let primary = world.bootstrap_servers(WorldRole::Primary).to_owned();
    let dr = world.bootstrap_servers(WorldRole::Dr).to_owned();
    plan.primary.bootstrap_servers = primary.clone();
    plan.dr.bootstrap_servers = dr.clone();

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

async fn drill(
    options: &DrillOptions,
    plan: &Plan,
    world: &Arc<EmbeddedWorld>,
    dir: &Path,
    groups: &[String],
    cancel: watch::Receiver<bool>,
) -> Result<DrillReport, DrillError> {
    let world_err = |e: &dyn std::fmt::Display| DrillError::World(e.to_string());
    let bootstrap_file = dir.join("producers.bootstrap");
    let consumers_file = dir.join("consumers.bootstrap");
    let pause_file = dir.join("producers.paused");
    for file in [&bootstrap_file, &consumers_file] {
        std::fs::write(file, format!("{}\n", plan.primary.bootstrap_servers))
            .map_err(|e| world_err(&e))?;
    }

    let replicator = Replicator::start(world.replicator_config(WorldRole::Primary))
        .map_err(|e| world_err(&e))?;
    let mut workload_config = world.workload_config(&bootstrap_file, &pause_file);
    workload_config.rate_per_sec = RATE;
    workload_config.consumer_indirection_file = Some(consumers_file.clone());
    let workload = Workload::start(workload_config).map_err(|e| world_err(&e))?;

    // Warm up: traffic flows, every group has committed, and MM2 has checkpointed them.
    let warm = wait_for(Duration::from_secs(30), || {
        let w = workload.stats();
        let r = replicator.stats();
        w.acknowledged >= 200
            && groups
                .iter()
                .all(|g| w.groups.get(g).is_some_and(|s| s.commits > 0))
            && r.checkpoints_written >= groups.len() as u64
    })
    .await;
    if !warm {
        return Err(DrillError::World(format!(
            "the embedded world did not warm up within 30s: {:?} / {:?}",
            workload.stats().last_error,
            replicator.stats().last_error
        )));
    }

    if options.scenario == Scenario::Disaster {
        // Replication stalls; the primary keeps taking writes that will never reach DR.
        replicator.pause(Pause::Copying);
        let before = workload.stats().acknowledged;
        wait_for(Duration::from_secs(20), || {
            workload.stats().acknowledged >= before + IN_FLIGHT
        })
        .await;
        std::fs::write(&pause_file, "").map_err(|e| world_err(&e))?;
        wait_for(Duration::from_secs(10), || {
            workload.stats().producers_paused()
        })
        .await;
    }

    let progress = Progress::new(options.color, plan.steps(Direction::Failover).len());
    let mut sinks: Vec<Box<dyn EventSink>> = vec![Box::new(progress)];
    if options.scenario == Scenario::Disaster {
        let world = Arc::clone(world);
        sinks.push(Box::new(move |event: &Event| {
            // The data centre goes dark right after the declaration.
            if let EventBody::StepFinished { step: 1, .. } = event.body {
                let _ = world.cluster_down(WorldRole::Primary);
            }
        }));
    }
    let request = RunRequest {
        direction: Direction::Failover,
        dry_run: false,
        yes: true,
        operator: Some("kdr-rehearse".to_owned()),
        reason: Some(format!(
            "rehearsal: {} scenario",
            scenario_name(options.scenario)
        )),
        resume: None,
        log: options.log.clone(),
        interrupted_step: None,
        force: false,
        hook_env: vec![("KDR_REHEARSAL_DIR".to_owned(), dir.display().to_string())],
    };
    let run = engine::run(plan, &request, Gate::Unattended, sinks, cancel.clone()).await?;
    let forward = replicator.stop();

    // The failback half: the primary is back, MirrorMaker 2's flow is turned around, DR takes
    // traffic for a while, then the plan's failback steps bring everything home.
    let mut failback = None;
    let mut reverse = None;
    if run.outcome == Outcome::Succeeded {
        if options.scenario == Scenario::Disaster {
            world
                .cluster_up(WorldRole::Primary)
                .map_err(|e| world_err(&e))?;
        }
        let mut config = world.replicator_config(WorldRole::Dr);
        if let crate::mm2::ReplicationPolicy::Identity { .. } = config.policy {
            // Under the identity policy DR's `orders` also holds the primary's history: start
            // the flow back where the failover left it, or the history is copied home again.
            let start: BTreeMap<(String, i32), i64> = forward
                .partitions
                .iter()
                .filter_map(|(k, p)| p.last_downstream_offset.map(|o| (k.clone(), o + 1)))
                .collect();
            config.start_from = super::StartFrom::Offsets(start);
        }
        let flow_back = Replicator::start(config).map_err(|e| world_err(&e))?;
        let traffic = workload.stats().acknowledged;
        let ready = wait_for(Duration::from_secs(30), || {
            let r = flow_back.stats();
            workload.stats().acknowledged >= traffic + 200
                && r.records_copied > 0
                && r.checkpoints_written >= groups.len() as u64
        })
        .await;
        if !ready {
            return Err(DrillError::World(format!(
                "the dr -> primary flow did not start within 30s: {:?}",
                flow_back.stats().last_error
            )));
        }
        let mut progress = Progress::new(options.color, plan.steps(Direction::Failback).len());
        progress.say("");
        let back = RunRequest {
            direction: Direction::Failback,
            reason: Some(format!(
                "rehearsal: failback after the {} scenario",
                scenario_name(options.scenario)
            )),
            log: None,
            ..request.clone()
        };
        let sinks: Vec<Box<dyn EventSink>> = vec![Box::new(progress)];
        failback = Some(engine::run(plan, &back, Gate::Unattended, sinks, cancel).await?);
        reverse = Some(flow_back);
    }

    // Let consumers finish what was written, then count.
    let _ = std::fs::write(&pause_file, "");
    wait_for(Duration::from_secs(10), || {
        workload.stats().producers_paused()
    })
    .await;
    let mut last = workload.stats().consumed;
    let mut still_since = Instant::now();
    wait_for(Duration::from_secs(10), || {
        let now = workload.stats().consumed;
        if now != last {
            last = now;
            still_since = Instant::now();
        }
        still_since.elapsed() > Duration::from_millis(600)
    })
    .await;
    let ledger = workload.stop();
    let reverse_stats = reverse.map(Replicator::stop);

    let remote_topics: Vec<String> = world
        .spec()
        .topic_names()
        .iter()
        .map(|t| world.replicator_config(WorldRole::Primary).remote_topic(t))
        .collect();
    let on_dr = tokio::task::spawn_blocking({
        let dr = plan.dr.bootstrap_servers.clone();
        move || seqs_on(&dr, &remote_topics, Duration::from_secs(10))
    })
    .await
    .map_err(|e| world_err(&e))?
    .map_err(|e| world_err(&e))?;

    let primary_alias = &plan.primary.mm2_alias;
    // Only what the primary took before the failover: after the failback it takes writes again.
    let first_on_dr = ledger
        .produced
        .iter()
        .position(|r| r.cluster == plan.dr.mm2_alias)
        .unwrap_or(ledger.produced.len());
    let mut missing: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for r in ledger.produced[..first_on_dr]
        .iter()
        .filter(|r| &r.cluster == primary_alias)
    {
        if !on_dr.contains(&r.seq) {
            *missing.entry((r.topic.clone(), r.partition)).or_default() += 1;
        }
    }
    let events = journal::read(&run.log)
        .map(|c| c.events)
        .unwrap_or_default();
    let mut accepted: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut lag_at_declaration = None;
    for e in &events {
        match &e.body {
            EventBody::Observation { name, data, .. } if name == "rpo_baseline" => {
                lag_at_declaration = data["total_lag_records"].as_i64();
            }
            EventBody::Decision { data, .. } if data.get("lost_records").is_some() => {
                for p in data["per_partition"].as_array().into_iter().flatten() {
                    if let (Some(t), Some(part), Some(lag)) = (
                        p["source_topic"].as_str(),
                        p["partition"].as_i64(),
                        p["lag"].as_i64(),
                    ) {
                        accepted.insert((t.to_owned(), part as i32), lag);
                    }
                }
            }
            _ => {}
        }
    }
    let keys: BTreeSet<(String, i32)> = missing.keys().chain(accepted.keys()).cloned().collect();
    let loss_per_partition: Vec<PartitionLoss> = keys
        .into_iter()
        .map(|(topic, partition)| PartitionLoss {
            accepted_by_kdr: accepted
                .get(&(topic.clone(), partition))
                .copied()
                .unwrap_or(0),
            really_missing: missing
                .get(&(topic.clone(), partition))
                .copied()
                .unwrap_or(0),
            topic,
            partition,
        })
        .collect();
    let records_accepted_lost: i64 = accepted.values().sum();
    let records_really_lost: usize = missing.values().map(|v| *v as usize).sum();

    // Written on DR (its own topics), never copied back to the primary.
    let dr_alias = &plan.dr.mm2_alias;
    let records_lost_at_failback = match &reverse_stats {
        Some(stats) => {
            let back_topics: Vec<String> = world
                .spec()
                .topic_names()
                .iter()
                .map(|t| world.replicator_config(WorldRole::Dr).remote_topic(t))
                .collect();
            let primary = plan.primary.bootstrap_servers.clone();
            let on_primary = tokio::task::spawn_blocking(move || {
                seqs_on(&primary, &back_topics, Duration::from_secs(10))
            })
            .await
            .map_err(|e| world_err(&e))?
            .map_err(|e| world_err(&e))?;
            let _ = stats;
            Some(
                ledger
                    .produced
                    .iter()
                    .filter(|r| &r.cluster == dr_alias && !on_primary.contains(&r.seq))
                    .count(),
            )
        }
        None => None,
    };
    let ledger_report = ledger.report(groups, Some(&on_dr));
    let rereads: Vec<GroupRereads> = ledger_report
        .groups
        .iter()
        .filter(|g| groups.contains(&g.group))
        .map(|g| {
            let (at_failover, at_failback) = rereads_by_boundary(&ledger, &g.group);
            GroupRereads {
                group: g.group.clone(),
                reread_at_failover: at_failover,
                reread_at_failback: at_failback,
                kdr_estimate_at_failover: reprocessing_estimate(&run.log, &g.group),
                kdr_estimate_at_failback: failback
                    .as_ref()
                    .and_then(|b| reprocessing_estimate(&b.log, &g.group)),
                restarted_from_beginning: g.jumped_to_start.len(),
            }
        })
        .collect();

    let mut checks = vec![Check {
        name: "failover succeeded".to_owned(),
        ok: run.outcome == Outcome::Succeeded,
        detail: run.message.clone(),
    }];
    checks.push(Check {
        name: "kdr's accepted loss matches what is really missing".to_owned(),
        ok: loss_per_partition
            .iter()
            .all(|p| p.accepted_by_kdr == p.really_missing),
        detail: format!(
            "kdr accepted {records_accepted_lost}, {records_really_lost} records never reached DR"
        ),
    });
    if options.scenario == Scenario::Controlled {
        checks.push(Check {
            name: "nothing lost".to_owned(),
            ok: records_really_lost == 0,
            detail: format!(
                "{records_really_lost} records written to the primary never reached DR"
            ),
        });
    }
    checks.push(Check {
        name: "no group restarted from the beginning".to_owned(),
        ok: rereads.iter().all(|g| g.restarted_from_beginning == 0),
        detail: rereads
            .iter()
            .map(|g| format!("{}: {}", g.group, g.restarted_from_beginning))
            .collect::<Vec<_>>()
            .join(", "),
    });
    let unseen: usize = ledger_report
        .groups
        .iter()
        .filter(|g| groups.contains(&g.group))
        .map(|g| {
            g.unseen
                .iter()
                .filter(|s| {
                    on_dr.contains(s)
                        || !ledger
                            .produced
                            .iter()
                            .any(|r| r.seq == **s && &r.cluster == primary_alias)
                })
                .count()
        })
        .sum();
    checks.push(Check {
        name: "every surviving record was consumed".to_owned(),
        ok: unseen == 0,
        detail: format!("{unseen} records on DR that a group never read"),
    });

    if options.scenario == Scenario::Controlled {
        let matches = |actual: usize, said: Option<i64>| said == Some(actual as i64);
        checks.push(Check {
            name: "kdr's reprocessing estimate matches what consumers re-read".to_owned(),
            ok: rereads.iter().all(|g| {
                matches(g.reread_at_failover, g.kdr_estimate_at_failover)
                    && (failback.is_none()
                        || matches(g.reread_at_failback, g.kdr_estimate_at_failback))
            }),
            detail: rereads
                .iter()
                .map(|g| {
                    format!(
                        "{}: {}/{:?} and {}/{:?}",
                        g.group,
                        g.reread_at_failover,
                        g.kdr_estimate_at_failover,
                        g.reread_at_failback,
                        g.kdr_estimate_at_failback
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if let Some(back) = &failback {
        checks.push(Check {
            name: "failback succeeded".to_owned(),
            ok: back.outcome == Outcome::Succeeded,
            detail: back.message.clone(),
        });
        checks.push(Check {
            name: "nothing written on DR was lost on the way back".to_owned(),
            ok: records_lost_at_failback == Some(0),
            detail: format!(
                "{} records written on DR never reached the primary",
                records_lost_at_failback.unwrap_or(0)
            ),
        });
    }
    Ok(DrillReport {
        failback,
        records_lost_at_failback,
        scenario: options.scenario,
        rto_ms: run.duration_ms,
        lag_at_declaration,
        records_written: ledger_report.acknowledged,
        records_accepted_lost,
        records_really_lost,
        loss_per_partition,
        rereads,
        checks,
        run,
    })
}

/// The `may_reread` kdr logged for a group in a run's translate_offsets.
fn reprocessing_estimate(log: &Path, group: &str) -> Option<i64> {
    let events = journal::read(log).ok()?.events;
    events.iter().rev().find_map(|e| match &e.body {
        EventBody::Observation { name, data, .. }
            if name == "reprocessing" && data["group"] == group =>
        {
            data["may_reread"].as_i64()
        }
        _ => None,
    })
}

/// Records a group read again after a move that it had read before: at the failover (its second
/// attachment, on DR) and at the failback (its third, back on the primary).
fn rereads_by_boundary(ledger: &super::Ledger, group: &str) -> (usize, usize) {
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    let mut at = [0usize; 2];
    let mut records: Vec<&super::ConsumedRecord> = ledger
        .consumed
        .iter()
        .filter(|r| r.group == group)
        .collect();
    records.sort_by_key(|r| r.session);
    let mut current = 0;
    let mut seen_before_session: BTreeSet<u64> = BTreeSet::new();
    for r in records {
        if r.session != current {
            current = r.session;
            seen_before_session = seen.clone();
        }
        let Some(seq) = r.seq else { continue };
        if seen_before_session.contains(&seq) {
            match r.session {
                2 => at[0] += 1,
                s if s >= 3 => at[1] += 1,
                _ => {}
            }
        }
        seen.insert(seq);
    }
    (at[0], at[1])
}

fn scenario_name(s: Scenario) -> &'static str {
    match s {
        Scenario::Controlled => "controlled",
        Scenario::Disaster => "disaster",
    }
}

/// The summary `kdr rehearse` prints.
pub fn summary(report: &DrillReport) -> String {
    let mut out = crate::report::tables::run_table(&report.run);
    out.push_str(&format!(
        "\nrehearsal ({} scenario)\n",
        scenario_name(report.scenario)
    ));
    out.push_str(&format!(
        "  RTO (declaration to validated failover): {}\n",
        crate::report::format_ms(report.rto_ms)
    ));
    out.push_str(&format!(
        "  replication lag at declaration:          {}\n",
        report
            .lag_at_declaration
            .map_or("unknown".to_owned(), |l| format!("{l} records"))
    ));
    out.push_str(&format!(
        "  records written by the workload:         {}\n",
        report.records_written
    ));
    out.push_str(&format!(
        "  records lost (RPO):                      {} accepted by kdr, {} really missing on DR\n",
        report.records_accepted_lost, report.records_really_lost
    ));
    for p in report
        .loss_per_partition
        .iter()
        .filter(|p| p.accepted_by_kdr != 0 || p.really_missing != 0)
    {
        out.push_str(&format!(
            "    {}-{}: {} accepted, {} missing\n",
            p.topic, p.partition, p.accepted_by_kdr, p.really_missing
        ));
    }
    if let Some(back) = &report.failback {
        out.push_str("\nfailback\n");
        out.push_str(&crate::report::tables::run_table(back));
        out.push_str(&format!(
            "  records written on DR lost on the way back: {}\n",
            report
                .records_lost_at_failback
                .map_or("unknown".to_owned(), |n| n.to_string())
        ));
    }
    out.push_str("  reprocessing ledger (records read twice; idempotent consumers absorb them):\n");
    for g in &report.rereads {
        let est = |e: Option<i64>| e.map_or("?".to_owned(), |n| n.to_string());
        out.push_str(&format!(
            "    group {:<20} at the failover: {:>5} (kdr said {:>5})   at the failback: {:>5} (kdr said {:>5})\n",
            g.group,
            g.reread_at_failover,
            est(g.kdr_estimate_at_failover),
            g.reread_at_failback,
            est(g.kdr_estimate_at_failback)
        ));
    }
    out.push('\n');
    for c in &report.checks {
        out.push_str(&format!(
            "  [{}] {}: {}\n",
            if c.ok { "ok" } else { "FAILED" },
            c.name,
            c.detail
        ));
    }
    out
}
