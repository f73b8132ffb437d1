//! `kdr lag`: the RPO snapshot. Per replicated partition, how far the target is behind the
//! source in records (through MM2's offset syncs where readable, else by record counts, as
//! `wait_replication` measures it) and in time (the age of the newest record on the target).

use std::collections::BTreeSet;

use serde::Serialize;

use super::newest::newest_timestamps;
use super::{LookupCtx, LookupError, SCHEMA_VERSION, bounded, cell, count, table, within};
use crate::kafka::{Reachability, TopicPartition};
use crate::plan::{Direction, Plan, Role};
use crate::replication::{
    Clusters, Flow, LagMethod, OPERATION_TIMEOUT, PartitionLag, ReplicatedPartition, now_ms,
    topics_missing_on_target,
};

/// `kdr lag --output json`.
#[derive(Debug, Clone, Serialize)]
pub struct LagReport {
    /// [`SCHEMA_VERSION`].
    pub v: u32,
    pub direction: Direction,
    /// The cluster replicated from.
    pub source: Role,
    /// The cluster replicated to.
    pub target: Role,
    pub source_reachable: bool,
    /// Why the source could not be read; the numbers are then what the target knows.
    pub source_error: Option<String>,
    /// Sum of the partitions' lags; `None` when any is unknown.
    pub total_lag: Option<i64>,
    pub partitions: Vec<LagRow>,
}

/// One replicated partition.
#[derive(Debug, Clone, Serialize)]
pub struct LagRow {
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
    /// The source's log end offset; `None` when the source could not be read.
    pub source_end: Option<i64>,
    /// The source offset up to which records are on the target.
    pub replicated_to: Option<i64>,
    /// `source_end - replicated_to`, never negative; `None` when unknown.
    pub lag: Option<i64>,
    /// `offset_sync` or `count`: how `replicated_to` was worked out.
    pub method: LagMethod,
    /// The target partition's log end offset.
    pub target_end: i64,
    /// How long ago the newest record on the target partition was written (its timestamp
    /// against this host's clock); `None` when the partition is empty or could not be read.
    pub newest_record_age_ms: Option<i64>,
}

impl LagReport {
    /// A source that could not be read is a check that did not hold: the lag is unknown.
    pub fn exit_code(&self) -> u8 {
        if self.source_reachable {
            crate::exit::OK
        } else {
            crate::exit::FAILED
        }
    }
}

pub async fn run(
    plan: &Plan,
    clusters: &Clusters,
    direction: Direction,
    ctx: LookupCtx,
) -> Result<LagReport, LookupError> {
    let deadline = ctx.deadline;
    let flow = Flow::new(plan, clusters, direction);
    let (source_role, target_role) = (flow.source_plan.role, flow.target_plan.role);
    let (partitions, lags, source_error) = ctx
        .noting(
            &format!("measuring {source_role} → {target_role} lag"),
            measure(&flow, &ctx),
        )
        .await?;
    if partitions.is_empty() {
        return Err(LookupError::Failed(format!(
            "no topic of the plan ({}) was found on {}: check replication.topics",
            flow.topics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if source_error.is_none() {
                source_role
            } else {
                target_role
            }
        )));
    }
    let missing = topics_missing_on_target(&lags);
    if !missing.is_empty() {
        ctx.say(&format!(
            "warning: {} missing on {target_role}: every record of {} is at risk",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ));
    }
    let ends: Vec<(TopicPartition, i64)> = lags
        .iter()
        .map(|l| {
            (
                TopicPartition::new(l.target_topic.clone(), l.partition),
                l.target_end,
            )
        })
        .collect();
    let newest = ctx
        .noting(
            &format!("reading the newest records on {target_role}"),
            newest_timestamps(&flow.target, ends, within(deadline, OPERATION_TIMEOUT)),
        )
        .await;
    if let Some(unread) = &newest.unread {
        ctx.say(&format!(
            "warning: failed to read the newest records on {target_role}: {unread}"
        ));
    }
    let now = now_ms();
    let rows: Vec<LagRow> = lags
        .into_iter()
        .map(|l| {
            let tp = TopicPartition::new(l.target_topic.clone(), l.partition);
            LagRow {
                newest_record_age_ms: newest
                    .timestamps
                    .get(&tp)
                    .copied()
                    .flatten()
                    .map(|ts| now - ts),
                source_topic: l.source_topic,
                target_topic: l.target_topic,
                partition: l.partition,
                source_end: l.source_end,
                replicated_to: l.replicated_to,
                lag: l.lag,
                method: l.method,
                target_end: l.target_end,
            }
        })
        .collect();
    if let Some(e) = &source_error {
        ctx.say(&format!(
            "warning: {e}; showing what {target_role} holds: the lag is unknown"
        ));
    }
    Ok(LagReport {
        v: SCHEMA_VERSION,
        direction,
        source: source_role,
        target: target_role,
        source_reachable: source_error.is_none(),
        total_lag: rows.iter().map(|r| r.lag).sum(),
        source_error,
        partitions: rows,
    })
}

/// The replicated partitions, their lag, and why the source could not be read if it could
/// not: listed on and measured against the source while it answers; listed on the target,
/// with unknown lag, once it does not.
///
/// The source is probed while both sides are listed and measured (one metadata request per
/// cluster, `Flow::list_and_measure_lag`): the probe's answer says why that failed.
async fn measure(
    flow: &Flow,
    ctx: &LookupCtx,
) -> Result<(Vec<ReplicatedPartition>, Vec<PartitionLag>, Option<String>), LookupError> {
    let deadline = ctx.deadline;
    let source_role = flow.source_plan.role;
    let measured = bounded(
        deadline,
        "measure replication lag",
        flow.list_and_measure_lag(),
    );
    let (reached, measured) = tokio::join!(
        tokio::time::timeout_at(deadline, flow.source_reachable()),
        ctx.noting("reading the offsets of the replicated partitions", measured)
    );
    let source_error = match (reached, measured) {
        (Ok(Reachability::Reachable(_)), Ok((partitions, lags))) => {
            return Ok((partitions, lags, None));
        }
        (Ok(Reachability::Unreachable { reason }), _) => {
            format!("{source_role} unreachable: {reason}")
        }
        (Err(_), _) => format!("{source_role} did not answer before the deadline"),
        (Ok(Reachability::Reachable(_)), Err(e)) => e,
    };
    let target_role = flow.target_plan.role;
    let partitions = bounded(
        deadline,
        &format!("list the replicated topics on {target_role}"),
        flow.partitions_from_target(),
    )
    .await
    .map_err(LookupError::Failed)?;
    let lags = bounded(
        deadline,
        &format!("read the replicated partitions on {target_role}"),
        flow.measure_lag(&partitions, Some(&Default::default())),
    )
    .await
    .map_err(LookupError::Failed)?;
    Ok((partitions, lags, Some(source_error)))
}

/// The table `kdr lag` prints.
pub fn render(report: &LagReport) -> String {
    let mut t = table(&[
        "source topic",
        "target topic",
        "partition",
        "source end",
        "replicated to",
        "lag",
        "method",
        "newest on target",
    ]);
    for r in &report.partitions {
        t.add_row(vec![
            r.source_topic.clone(),
            r.target_topic.clone(),
            r.partition.to_string(),
            cell(r.source_end),
            cell(r.replicated_to),
            r.lag.map_or_else(|| "-".to_owned(), count),
            r.method.to_string(),
            match r.newest_record_age_ms {
                _ if r.method == LagMethod::TargetMissing => {
                    format!("missing on {}", report.target)
                }
                Some(a) => format!("{} ago", super::age(a)),
                None => "empty".to_owned(),
            },
        ]);
    }
    let summary = match (&report.source_error, report.total_lag) {
        (Some(e), _) => format!("{} → {}: lag unknown: {e}", report.source, report.target),
        (None, Some(total)) => format!(
            "{} → {}: {} behind over {} ({} lagging)",
            report.source,
            report.target,
            match total {
                1 => "1 record".to_owned(),
                n => format!("{} records", count(n)),
            },
            crate::report::count(report.partitions.len(), "partition"),
            report
                .partitions
                .iter()
                .filter(|p| p.lag.is_some_and(|l| l > 0))
                .count()
        ),
        (None, None) => format!("{} → {}: lag unknown", report.source, report.target),
    };
    let missing: BTreeSet<&str> = report
        .partitions
        .iter()
        .filter(|p| p.method == LagMethod::TargetMissing)
        .map(|p| p.source_topic.as_str())
        .collect();
    if missing.is_empty() {
        return format!("{t}\n{summary}\n");
    }
    let at_risk: i64 = report
        .partitions
        .iter()
        .filter(|p| p.method == LagMethod::TargetMissing)
        .filter_map(|p| p.lag)
        .sum();
    format!(
        "{t}\n{summary}\nat risk: {} missing on {} ({} records not there)\n",
        missing.into_iter().collect::<Vec<_>>().join(", "),
        report.target,
        count(at_risk)
    )
}
