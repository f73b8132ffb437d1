//! `kdr status`: can we fail over right now? Both clusters' reachability, replication health
//! both ways (newest heartbeat, lag, checkpoint age per group), and a one-line verdict about
//! the failover direction (primary → dr). Healthy exits 0, anything else 1.
//!
//! Write authority (which cluster owns writes, from `__kdr_authority` on each cluster) is part of
//! the report; split brain is the most serious problem it can show.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::{LookupCtx, LookupError, SCHEMA_VERSION, bounded, count, table, within};
use crate::kafka::Reachability;
use crate::mm2::{Checkpoint, CheckpointIndex};
use crate::plan::{ClusterPlan, Direction, Plan, Role};
use crate::replication::{
    Clusters, Flow, OPERATION_TIMEOUT, PartitionLag, now_ms, resolve_groups,
    topics_missing_on_target,
};

/// `kdr status --output json`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// [`SCHEMA_VERSION`].
    pub v: u32,
    pub plan: String,
    /// Primary first, then dr.
    pub clusters: Vec<ClusterState>,
    /// What each cluster records about who owns writes.
    pub authority: crate::authority::AuthorityState,
    /// The failover flow (primary → dr) first, then the failback flow (dr → primary).
    pub replication: Vec<FlowHealth>,
    /// The first of `problems`, or `ready` when there is none.
    pub verdict: Verdict,
    /// Everything that stands in the way of a clean failover, most serious first.
    pub problems: Vec<Verdict>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterState {
    pub role: Role,
    pub bootstrap_servers: String,
    pub reachable: bool,
    /// Brokers in the metadata, when reachable.
    pub brokers: Option<usize>,
    /// Why it is not reachable.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlowHealth {
    pub direction: Direction,
    pub source: Role,
    pub target: Role,
    /// Age of the newest heartbeat from source to target seen on the target; `None` when none
    /// was seen (or the target could not be read).
    pub heartbeat_age_ms: Option<i64>,
    /// `None` when it could not be measured; `lag_error` says why.
    pub lag: Option<LagSummary>,
    pub lag_error: Option<String>,
    /// Per group of the plan, the age of its newest checkpoint on the target.
    pub checkpoints: Vec<GroupCheckpoint>,
    pub checkpoints_error: Option<String>,
    /// Checkpoints that translate far below the replica's end although the group had read
    /// its source partition to the end: the sign of sparse offset syncs.
    pub sparse_checkpoints: Vec<SparseCheckpoint>,
}

/// A checkpoint that lands far below where its group stood (see [`is_sparse`]).
#[derive(Debug, Clone, Serialize)]
pub struct SparseCheckpoint {
    pub group: String,
    pub target_topic: String,
    pub partition: i32,
    /// The group's committed offset on the source when it was checkpointed: the source end.
    pub upstream_offset: i64,
    /// Where the group would resume on the target.
    pub downstream_offset: i64,
    /// The target partition's end offset.
    pub target_end: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LagSummary {
    pub total_records: i64,
    pub partitions: usize,
    pub partitions_lagging: usize,
    pub max_lag: i64,
    /// Source topics the target lacks: every record of theirs is at risk (in the totals).
    pub missing_on_target: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupCheckpoint {
    pub group: String,
    /// `None` when the group has no checkpoint.
    pub checkpoint_age_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub healthy: bool,
    /// `ready`, `dr_unreachable`, `primary_unreachable`, `no_heartbeats`, `stale_heartbeats`,
    /// `missing_on_target`, `lagging`, `lag_unknown`, `checkpoints_unreadable`,
    /// `missing_checkpoints` or `sparse_offset_syncs`.
    pub kind: &'static str,
    pub message: String,
}

impl StatusReport {
    pub fn exit_code(&self) -> u8 {
        if self.verdict.healthy {
            crate::exit::OK
        } else {
            crate::exit::FAILED
        }
    }
}

/// What counts as healthy.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// The most records the failover flow may be behind in all.
    pub max_lag_records: u64,
    /// The oldest the newest heartbeat may be.
    pub max_heartbeat_age: Duration,
}

pub async fn run(
    plan: &Plan,
    clusters: &Clusters,
    thresholds: Thresholds,
    ctx: LookupCtx,
) -> Result<StatusReport, LookupError> {
    let deadline = ctx.deadline;
    let (primary, dr) = tokio::join!(
        probe(&plan.primary, clusters, deadline),
        probe(&plan.dr, clusters, deadline)
    );
    let up = |role: Role| match role {
        Role::Primary => primary.error.clone(),
        Role::Dr => dr.error.clone(),
    };
    let failover = Flow::new(plan, clusters, Direction::Failover);
    let failback = Flow::new(plan, clusters, Direction::Failback);
    let (failover, failback) = ctx
        .noting("measuring replication both ways", async {
            tokio::join!(
                flow_health(plan, &failover, &up, deadline),
                flow_health(plan, &failback, &up, deadline),
            )
        })
        .await;
    let authority = match tokio::time::timeout_at(
        deadline,
        crate::authority::read_both(&clusters.primary, &clusters.dr, &plan.name),
    )
    .await
    {
        Ok(a) => a,
        Err(_) => crate::authority::AuthorityState {
            primary: crate::authority::ClusterView::Unreadable {
                reason: "no answer before the deadline".to_owned(),
            },
            dr: crate::authority::ClusterView::Unreadable {
                reason: "no answer before the deadline".to_owned(),
            },
        },
    };
    let mut problems = problems(plan, &primary, &dr, &failover, thresholds);
    // Who owns writes comes before everything else: after a split brain or a failover, "ready
    // to fail over" would be the wrong thing to say.
    let (owner, epoch) = authority.owner();
    if owner == Role::Dr {
        problems.insert(0, Verdict {
            healthy: false,
            kind: "failed_over",
            message: format!("dr owns writes (epoch {epoch}): already failed over; fail back with kdr failback --plan {}", plan.path.display()),
        });
    }
    if let Some(alarm) = authority.split_brain() {
        problems.insert(
            0,
            Verdict {
                healthy: false,
                kind: "split_brain",
                message: alarm,
            },
        );
    }
    let verdict = problems.first().cloned().unwrap_or_else(|| Verdict {
        healthy: true,
        kind: "ready",
        message: "ready to fail over".to_owned(),
    });
    Ok(StatusReport {
        v: SCHEMA_VERSION,
        plan: plan.name.clone(),
        clusters: vec![primary, dr],
        authority,
        replication: vec![failover, failback],
        verdict,
        problems,
    })
}

async fn probe(cluster: &ClusterPlan, clusters: &Clusters, deadline: Instant) -> ClusterState {
    let answer = tokio::time::timeout_at(deadline, clusters.get(cluster.role).probe()).await;
    let (brokers, error) = match answer {
        Ok(Ok(Reachability::Reachable(info))) => (Some(info.brokers.len()), None),
        Ok(Ok(Reachability::Unreachable { reason })) => (None, Some(reason)),
        Ok(Err(e)) => (None, Some(e.to_string())),
        Err(_) => (None, Some("no answer before the deadline".to_owned())),
    };
    ClusterState {
        role: cluster.role,
        bootstrap_servers: cluster.bootstrap_servers.clone(),
        reachable: error.is_none(),
        brokers,
        error,
    }
}

async fn flow_health(
    plan: &Plan,
    flow: &Flow,
    unreachable: &impl Fn(Role) -> Option<String>,
    deadline: Instant,
) -> FlowHealth {
    let (source, target) = (flow.source_plan.role, flow.target_plan.role);
    let mut health = FlowHealth {
        direction: flow.direction,
        source,
        target,
        heartbeat_age_ms: None,
        lag: None,
        lag_error: None,
        checkpoints: Vec::new(),
        checkpoints_error: None,
        sparse_checkpoints: Vec::new(),
    };
    if unreachable(target).is_some() {
        let why = format!("{target} unreachable");
        health.lag_error = Some(why.clone());
        health.checkpoints_error = Some(why);
        return health;
    }
    let source_down = unreachable(source).map(|_| format!("{source} unreachable"));
    let read_bound = within(deadline, OPERATION_TIMEOUT);
    let reading = format!("read {} on {target}", flow.checkpoints_topic());
    let (heartbeat, lag, checkpoints) = tokio::join!(
        tokio::time::timeout_at(deadline, flow.newest_heartbeat_ms(read_bound)),
        lag(flow, source_down, deadline),
        bounded(deadline, &reading, flow.checkpoints(read_bound)),
    );
    let now = now_ms();
    health.heartbeat_age_ms = heartbeat.ok().flatten().map(|ts| now - ts);
    let lags = match lag {
        Ok((summary, lags)) => {
            health.lag = Some(summary);
            lags
        }
        Err(e) => {
            health.lag_error = Some(e);
            Vec::new()
        }
    };
    match checkpoints {
        Ok(index) => {
            health.sparse_checkpoints = sparse_checkpoints(plan, &index, &lags);
            health.checkpoints = resolve_groups(&plan.replication.groups, &index)
                .into_iter()
                .map(|group| GroupCheckpoint {
                    checkpoint_age_ms: index
                        .for_group(&group)
                        .iter()
                        .map(|(_, ts)| *ts)
                        .max()
                        .map(|ts| now - ts),
                    group,
                })
                .collect();
        }
        Err(e) => health.checkpoints_error = Some(e),
    }
    health
}

async fn lag(
    flow: &Flow,
    source_down: Option<String>,
    deadline: Instant,
) -> Result<(LagSummary, Vec<PartitionLag>), String> {
    if let Some(why) = source_down {
        return Err(why);
    }
    let (_, lags) = bounded(
        deadline,
        "measure replication lag",
        flow.list_and_measure_lag(),
    )
    .await?;
    let known: Vec<i64> = lags.iter().filter_map(|l| l.lag).collect();
    let summary = LagSummary {
        total_records: known.iter().sum(),
        partitions: lags.len(),
        partitions_lagging: known.iter().filter(|l| **l > 0).count(),
        max_lag: known.iter().copied().max().unwrap_or(0),
        missing_on_target: topics_missing_on_target(&lags),
    };
    Ok((summary, lags))
}

/// The plan's groups' checkpoints that look translated through sparse offset syncs.
fn sparse_checkpoints(
    plan: &Plan,
    index: &CheckpointIndex,
    lags: &[PartitionLag],
) -> Vec<SparseCheckpoint> {
    let ends: HashMap<(&str, i32), (i64, i64)> = lags
        .iter()
        .filter_map(|l| {
            let source_end = l.source_end?;
            Some((
                (l.target_topic.as_str(), l.partition),
                (source_end, l.target_end),
            ))
        })
        .collect();
    let mut out = Vec::new();
    for group in resolve_groups(&plan.replication.groups, index) {
        for (checkpoint, _) in index.for_group(&group) {
            let Some(&(source_end, target_end)) =
                ends.get(&(checkpoint.topic.as_str(), checkpoint.partition))
            else {
                continue;
            };
            if is_sparse(&checkpoint, source_end, target_end) {
                out.push(SparseCheckpoint {
                    group: group.clone(),
                    target_topic: checkpoint.topic.clone(),
                    partition: checkpoint.partition,
                    upstream_offset: checkpoint.upstream_offset,
                    downstream_offset: checkpoint.downstream_offset,
                    target_end,
                });
            }
        }
    }
    out
}

/// Whether a checkpoint lands far below the replica's end although its group had read the
/// source partition to its end (see [`crate::replication::lands_far_below`]; the replica's
/// records are counted from offset 0, as status reads no log start).
pub fn is_sparse(checkpoint: &Checkpoint, source_end: i64, target_end: i64) -> bool {
    crate::replication::lands_far_below(
        checkpoint.upstream_offset,
        source_end,
        target_end - checkpoint.downstream_offset,
        target_end,
    )
}

/// What stands in the way of failing over, most serious first.
fn problems(
    plan: &Plan,
    primary: &ClusterState,
    dr: &ClusterState,
    failover: &FlowHealth,
    thresholds: Thresholds,
) -> Vec<Verdict> {
    let (p, d) = (plan.primary.role, plan.dr.role);
    let problem = |kind, message| Verdict {
        healthy: false,
        kind,
        message,
    };
    let mut out = Vec::new();
    if !dr.reachable {
        out.push(problem(
            "dr_unreachable",
            format!("{d} unreachable: cannot fail over"),
        ));
    }
    if !primary.reachable {
        out.push(problem(
            "primary_unreachable",
            format!(
                "{p} unreachable: fail over with kdr failover --plan {}",
                plan.path.display()
            ),
        ));
    }
    // With DR gone nothing of the failover can be measured; with only the primary gone,
    // everything DR holds still can, and each problem there is one more thing to know
    // before failing over.
    if !dr.reachable {
        return out;
    }
    match failover.heartbeat_age_ms {
        None => out.push(problem(
            "no_heartbeats",
            format!("no heartbeats from {p} on {d}: is MirrorMaker 2 running?"),
        )),
        Some(age) if age > thresholds.max_heartbeat_age.as_millis() as i64 => out.push(problem(
            "stale_heartbeats",
            format!(
                "newest heartbeat from {p} on {d} is {} old: is MirrorMaker 2 running?",
                super::age(age)
            ),
        )),
        Some(_) => {}
    }
    if let Some(lag) = &failover.lag
        && !lag.missing_on_target.is_empty()
    {
        out.push(problem(
            "missing_on_target",
            format!(
                "{} missing on {d}: every record of {} is at risk",
                lag.missing_on_target.join(", "),
                if lag.missing_on_target.len() == 1 {
                    "it"
                } else {
                    "them"
                }
            ),
        ));
    }
    match (&failover.lag, &failover.lag_error) {
        // The source being down is said already, first.
        (None, _) if !primary.reachable => {}
        (Some(lag), _) if lag.total_records > thresholds.max_lag_records as i64 => {
            out.push(problem(
                "lagging",
                format!(
                    "replication lagging: {} records behind",
                    count(lag.total_records)
                ),
            ));
        }
        (Some(_), _) => {}
        (None, e) => out.push(problem(
            "lag_unknown",
            format!(
                "replication lag unknown: {}",
                e.as_deref().unwrap_or("not measured")
            ),
        )),
    }
    if let Some(e) = &failover.checkpoints_error {
        out.push(problem("checkpoints_unreadable", e.clone()));
    }
    let missing: Vec<&str> = failover
        .checkpoints
        .iter()
        .filter(|g| g.checkpoint_age_ms.is_none())
        .map(|g| g.group.as_str())
        .collect();
    if !missing.is_empty() {
        out.push(problem(
            "missing_checkpoints",
            format!(
                "no checkpoint on {d} for {}: they would not resume where they left off",
                missing.join(", ")
            ),
        ));
    }
    if !failover.sparse_checkpoints.is_empty() {
        out.push(problem(
            "sparse_offset_syncs",
            sparse_message(plan, failover),
        ));
    }
    out
}

/// What sparse offset syncs look like and which MirrorMaker 2 settings control them.
fn sparse_message(plan: &Plan, failover: &FlowHealth) -> String {
    let d = plan.dr.role;
    let examples: Vec<String> = failover
        .sparse_checkpoints
        .iter()
        .take(3)
        .map(|c| {
            format!(
                "{} on {}/{} at {} of {}",
                c.group, c.target_topic, c.partition, c.downstream_offset, c.target_end
            )
        })
        .collect();
    let more = failover
        .sparse_checkpoints
        .len()
        .saturating_sub(examples.len());
    format!(
        "offset syncs look sparse: checkpoints on {d} land far below the replica's end while the groups had read to the end ({}{}); they would re-read most records after a failover: lower offset.lag.max and the worker's flush interval ({alias}.offset.flush.interval.ms in dedicated mode; a top-level offset.flush.interval.ms is ignored there)",
        examples.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
        alias = plan.primary.mm2_alias,
    )
}

/// The table `kdr status` prints, then the verdict.
pub fn render(report: &StatusReport) -> String {
    let mut t = table(&["", "state"]);
    for c in &report.clusters {
        t.add_row(vec![
            c.role.to_string(),
            match (&c.brokers, &c.error) {
                (Some(n), _) => format!(
                    "reachable ({}) at {}",
                    crate::report::count(*n, "broker"),
                    c.bootstrap_servers
                ),
                (None, e) => format!(
                    "unreachable at {}: {}",
                    c.bootstrap_servers,
                    e.as_deref().unwrap_or("")
                ),
            },
        ]);
    }
    t.add_row(vec![
        "write authority".to_owned(),
        report.authority.summary(),
    ]);
    for f in &report.replication {
        let name = format!("{} → {}", f.source, f.target);
        let target_down = report
            .clusters
            .iter()
            .any(|c| c.role == f.target && !c.reachable);
        t.add_row(vec![
            format!("{name} heartbeat"),
            match f.heartbeat_age_ms {
                Some(a) => format!("{} ago", super::age(a)),
                None if target_down => format!("unknown: {} unreachable", f.target),
                None => "none seen".to_owned(),
            },
        ]);
        t.add_row(vec![
            format!("{name} lag"),
            match (&f.lag, &f.lag_error) {
                (Some(l), _) if l.missing_on_target.is_empty() => format!(
                    "{} records ({} of {} partitions lagging, max {})",
                    count(l.total_records),
                    l.partitions_lagging,
                    l.partitions,
                    count(l.max_lag)
                ),
                (Some(l), _) => format!(
                    "{} records ({} of {} partitions lagging, max {}; missing on {}: {})",
                    count(l.total_records),
                    l.partitions_lagging,
                    l.partitions,
                    count(l.max_lag),
                    f.target,
                    l.missing_on_target.join(", ")
                ),
                (None, e) => format!("unknown: {}", e.as_deref().unwrap_or("not measured")),
            },
        ]);
        t.add_row(vec![
            format!("{name} checkpoints"),
            match &f.checkpoints_error {
                Some(e) => format!("unknown: {e}"),
                None if f.checkpoints.is_empty() => "no groups in the plan".to_owned(),
                None => f
                    .checkpoints
                    .iter()
                    .map(|g| {
                        format!(
                            "{}: {}",
                            g.group,
                            g.checkpoint_age_ms.map_or_else(
                                || "none".to_owned(),
                                |a| format!("{} ago", super::age(a))
                            )
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        ]);
    }
    let mut out = format!("{t}\n{}\n", report.verdict.message);
    for p in report.problems.iter().skip(1) {
        out.push_str(&format!("also: {}\n", p.message));
    }
    out
}
