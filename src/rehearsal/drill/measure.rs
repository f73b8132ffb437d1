//! What really happened, counted from the workload's ledger and the clusters' contents, next
//! to what kdr said in its incident logs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::canary;
use super::evidence::Evidence;
use super::{DrillError, GroupRereads, PartitionLoss, ReverseHome};
use crate::engine::RunReport;
use crate::plan::Plan;
use crate::rehearsal::{ConsumedRecord, EmbeddedWorld, Ledger, LedgerReport, Role, seqs_on};
use crate::replication::{PositionFrom, ReversePartition};

/// The drill's figures, before the checks judge them.
pub(super) struct Measurement {
    pub records_written: usize,
    pub lag_at_declaration: Option<i64>,
    pub loss_per_partition: Vec<PartitionLoss>,
    pub records_accepted_lost: i64,
    pub records_really_lost: usize,
    /// Records written on DR that never reached the primary; None without a failback.
    pub records_lost_at_failback: Option<usize>,
    pub rereads: Vec<GroupRereads>,
    /// Surviving records (on DR, or never written to the primary) that a group never read.
    pub unseen: usize,
    /// Sequence numbers found on DR (the primary's topics) and, after a failback, on the
    /// primary (DR's topics).
    pub on_dr: BTreeSet<u64>,
    pub on_primary: Option<BTreeSet<u64>>,
    /// The failback's reverse checkpointing, against what the groups re-read at home.
    pub reverse_at_failback: Option<ReverseHome>,
    /// kdr's figures, from the failover's and the failback's logs.
    pub at_failover: Evidence,
    pub at_failback: Option<Evidence>,
}

impl Measurement {
    /// Counts, once the workload has stopped: `run` is the failover, `failback` the way back
    /// when it ran.
    pub(super) async fn take(
        plan: &Plan,
        world: &EmbeddedWorld,
        groups: &[String],
        ledger: &Ledger,
        run: &RunReport,
        failback: Option<&RunReport>,
    ) -> Result<Self, DrillError> {
        let on_dr = seqs_on_cluster(
            &plan.dr.bootstrap_servers,
            remote_topics(world, Role::Primary),
        )
        .await?;
        let at_failover = Evidence::read(&run.log)?;
        let at_failback = failback.map(|b| Evidence::read(&b.log)).transpose()?;
        let missing = missing_on_dr(plan, ledger, &on_dr);
        let on_primary = match failback {
            Some(_) => Some(
                seqs_on_cluster(
                    &plan.primary.bootstrap_servers,
                    remote_topics(world, Role::Dr),
                )
                .await?,
            ),
            None => None,
        };
        let records_lost_at_failback = on_primary
            .as_ref()
            .map(|on_primary| lost_on_the_way_back(plan, ledger, on_primary));
        let report = ledger.report(groups, Some(&on_dr));
        let reverse_at_failback = at_failback.as_ref().map(|evidence| {
            let copies = remote_topics(world, Role::Dr);
            let home = |r: &ConsumedRecord| {
                r.cluster == plan.primary.mm2_alias && !copies.contains(&r.topic)
            };
            let reread = groups
                .iter()
                .map(|g| rereads_by_boundary(ledger, g, home).1)
                .sum();
            ReverseHome::from_rows(evidence.reverse.values().flatten(), reread)
        });
        Ok(Measurement {
            records_written: report.acknowledged,
            lag_at_declaration: at_failover.lag_at_declaration,
            loss_per_partition: losses(&at_failover.accepted_loss, &missing),
            records_accepted_lost: at_failover.accepted_loss.values().sum(),
            records_really_lost: missing.values().map(|n| *n as usize).sum(),
            records_lost_at_failback,
            rereads: rereads(groups, ledger, &report, &at_failover, at_failback.as_ref()),
            unseen: unseen(groups, ledger, &report, &on_dr, &plan.primary.mm2_alias),
            on_dr,
            on_primary,
            reverse_at_failback,
            at_failover,
            at_failback,
        })
    }
}

impl ReverseHome {
    /// kdr's reverse mapping (every group's rows) next to `reread`, what the groups read again
    /// at home of the primary's own topics.
    pub(super) fn from_rows<'a>(
        rows: impl Iterator<Item = &'a ReversePartition>,
        reread: usize,
    ) -> Self {
        let mut home = ReverseHome {
            reread_on_primary_topics: reread,
            kdr_may_reread: Some(0),
            ..ReverseHome::default()
        };
        for row in rows {
            match row.position_from {
                PositionFrom::ForwardSyncs
                    if row.action == "commit" || row.action.starts_with("clamp") =>
                {
                    home.partitions_moved += 1;
                }
                PositionFrom::ForwardSyncs | PositionFrom::ReverseCheckpoint => {
                    home.partitions_left += 1;
                }
                PositionFrom::None => home.partitions_unmapped += 1,
            }
            if row.position_from == PositionFrom::ForwardSyncs {
                home.kdr_may_reread = home.kdr_may_reread.zip(row.may_reread).map(|(a, b)| a + b);
            }
        }
        home
    }
}

/// The names the world's topics have on the other cluster of the flow out of `source`.
fn remote_topics(world: &EmbeddedWorld, source: Role) -> Vec<String> {
    let config = world.replicator_config(source);
    world
        .spec()
        .topic_names()
        .iter()
        .map(|t| config.remote_topic(t))
        .collect()
}

/// The sequence numbers of every record in `topics` on a cluster.
pub(super) async fn seqs_on_cluster(
    bootstrap_servers: &str,
    topics: Vec<String>,
) -> Result<BTreeSet<u64>, DrillError> {
    let bootstrap_servers = bootstrap_servers.to_owned();
    tokio::task::spawn_blocking(move || {
        seqs_on(&bootstrap_servers, &topics, Duration::from_secs(10))
    })
    .await
    .map_err(DrillError::world)?
    .map_err(DrillError::world)
}

/// Per partition, records the primary acknowledged before the failover that never reached DR.
fn missing_on_dr(
    plan: &Plan,
    ledger: &Ledger,
    on_dr: &BTreeSet<u64>,
) -> BTreeMap<(String, i32), i64> {
    // Only what the primary took before the failover: after the failback it takes writes again.
    let first_on_dr = ledger
        .produced
        .iter()
        .position(|r| r.cluster == plan.dr.mm2_alias)
        .unwrap_or(ledger.produced.len());
    let mut missing: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for r in ledger.produced[..first_on_dr]
        .iter()
        .filter(|r| r.cluster == plan.primary.mm2_alias && !on_dr.contains(&r.seq))
    {
        *missing.entry((r.topic.clone(), r.partition)).or_default() += 1;
    }
    missing
}

/// What kdr accepted next to what is missing, for every partition where either is known.
fn losses(
    accepted: &BTreeMap<(String, i32), i64>,
    missing: &BTreeMap<(String, i32), i64>,
) -> Vec<PartitionLoss> {
    let keys: BTreeSet<&(String, i32)> = missing.keys().chain(accepted.keys()).collect();
    keys.into_iter()
        .map(|key| PartitionLoss {
            topic: key.0.clone(),
            partition: key.1,
            accepted_by_kdr: accepted.get(key).copied().unwrap_or(0),
            really_missing: missing.get(key).copied().unwrap_or(0),
        })
        .collect()
}

/// Records written on DR (to its own topics) that never reached the primary.
fn lost_on_the_way_back(plan: &Plan, ledger: &Ledger, on_primary: &BTreeSet<u64>) -> usize {
    ledger
        .produced
        .iter()
        .filter(|r| r.cluster == plan.dr.mm2_alias && !on_primary.contains(&r.seq))
        .count()
}

/// Per group of the plan: what it read again at each move, and what kdr said it would.
fn rereads(
    groups: &[String],
    ledger: &Ledger,
    report: &LedgerReport,
    at_failover: &Evidence,
    at_failback: Option<&Evidence>,
) -> Vec<GroupRereads> {
    report
        .groups
        .iter()
        .filter(|g| groups.contains(&g.group))
        .map(|g| {
            let (reread_at_failover, reread_at_failback) =
                rereads_by_boundary(ledger, &g.group, |_| true);
            GroupRereads {
                group: g.group.clone(),
                reread_at_failover,
                reread_at_failback,
                kdr_estimate_at_failover: at_failover.may_reread(&g.group),
                kdr_estimate_at_failback: at_failback.and_then(|e| e.may_reread(&g.group)),
                restarted_from_beginning: g.jumped_to_start.len(),
            }
        })
        .collect()
}

/// Records a group read again after a move that it had read before: at the failover (its second
/// attachment, on DR) and at the failback (its third, back on the primary).
/// Only the records for which `counts` holds are counted.
pub(super) fn rereads_by_boundary(
    ledger: &Ledger,
    group: &str,
    counts: impl Fn(&ConsumedRecord) -> bool,
) -> (usize, usize) {
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    let mut at = [0usize; 2];
    let mut records: Vec<&ConsumedRecord> = ledger
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
        if seen_before_session.contains(&seq) && counts(r) {
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

/// Records that survived (they are on DR, or the primary never had them) and that some group of
/// the plan never read.
fn unseen(
    groups: &[String],
    ledger: &Ledger,
    report: &LedgerReport,
    on_dr: &BTreeSet<u64>,
    primary_alias: &str,
) -> usize {
    let written_to_primary = |seq: u64| {
        ledger
            .produced
            .iter()
            .any(|r| r.seq == seq && r.cluster == primary_alias)
    };
    report
        .groups
        .iter()
        .filter(|g| groups.contains(&g.group))
        .map(|g| {
            // A group owes the records of its own workload: the canary's group the canary's.
            let canary_group = g.group == canary::GROUP;
            g.unseen
                .iter()
                .filter(|s| canary::is_canary_seq(**s) == canary_group)
                .filter(|s| on_dr.contains(s) || !written_to_primary(**s))
                .count()
        })
        .sum()
}
