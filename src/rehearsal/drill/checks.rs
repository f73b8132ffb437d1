//! What a drill must show to pass: kdr's runs succeeded, and its own figures match what the
//! workload really lost and re-read.

use super::measure::Measurement;
use super::summary::figure;
use super::{CanaryFigures, Check, GroupRereads, ReverseHome, Scenario, StrandedFigures};
use crate::engine::RunReport;
use crate::journal::Outcome;

/// Every check of a drill, in the order the report shows them.
pub(super) fn all(
    scenario: Scenario,
    run: &RunReport,
    failback: Option<&RunReport>,
    measured: &Measurement,
) -> Vec<Check> {
    let controlled = scenario == Scenario::Controlled;
    let mut checks = vec![succeeded("failover succeeded", run), loss_matches(measured)];
    if controlled {
        checks.push(nothing_lost(measured));
    }
    checks.push(no_restart(&measured.rereads));
    checks.push(Check {
        name: "every surviving record was consumed".to_owned(),
        ok: measured.unseen == 0,
        detail: format!("{} records on DR that a group never read", measured.unseen),
    });
    if controlled {
        checks.push(estimate_matches(&measured.rereads, failback.is_some()));
    }
    if let Some(back) = failback {
        checks.push(succeeded("failback succeeded", back));
        if let (true, Some(r)) = (controlled, &measured.reverse_at_failback) {
            checks.push(reverse_matches(r));
        }
        checks.push(Check {
            name: "nothing written on DR was lost on the way back".to_owned(),
            ok: measured.records_lost_at_failback == Some(0),
            detail: format!(
                "{} records written on DR never reached the primary",
                figure(measured.records_lost_at_failback)
            ),
        });
    }
    checks
}

/// The canary's checks: what its clients lost and read twice matches what kdr said, at each
/// switch it saw. Duplicates are held to kdr's estimate where the workload's are (the
/// controlled scenario).
pub(super) fn canary(
    scenario: Scenario,
    failover: Option<&CanaryFigures>,
    failback: Option<&CanaryFigures>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for (at, figures) in [("failover", failover), ("failback", failback)] {
        let Some(c) = figures else { continue };
        checks.push(Check {
            name: format!("canary: the data gap at the {at} matches kdr's accepted RPO"),
            ok: c.gap_matches(),
            detail: format!(
                "{} canary records never seen on the new cluster, kdr accepted {}",
                c.gap_total(),
                c.accepted_total()
            ),
        });
        if scenario == Scenario::Controlled {
            checks.push(Check {
                name: format!("canary: duplicates at the {at} match kdr's re-read estimate"),
                ok: c.kdr_may_reread == Some(c.duplicates as i64),
                detail: format!(
                    "{} canary records read twice, kdr said {}",
                    c.duplicates,
                    figure(c.kdr_may_reread)
                ),
            });
        }
    }
    if failover.is_none() {
        checks.push(Check {
            name: "canary: measured at the failover".to_owned(),
            ok: false,
            detail: "the failover's RTO span is unknown".to_owned(),
        });
    }
    checks
}

pub(super) fn succeeded(name: &str, run: &RunReport) -> Check {
    Check {
        name: name.to_owned(),
        ok: run.outcome == Outcome::Succeeded,
        detail: run.message.clone(),
    }
}

fn loss_matches(measured: &Measurement) -> Check {
    Check {
        name: "kdr's accepted loss matches what is really missing".to_owned(),
        ok: measured
            .loss_per_partition
            .iter()
            .all(|p| p.accepted_by_kdr == p.really_missing),
        detail: format!(
            "kdr accepted {}, {} records never reached DR",
            measured.records_accepted_lost, measured.records_really_lost
        ),
    }
}

fn nothing_lost(measured: &Measurement) -> Check {
    Check {
        name: "nothing lost".to_owned(),
        ok: measured.records_really_lost == 0,
        detail: format!(
            "{} records written to the primary never reached DR",
            measured.records_really_lost
        ),
    }
}

fn no_restart(rereads: &[GroupRereads]) -> Check {
    Check {
        name: "no group restarted from the beginning".to_owned(),
        ok: rereads.iter().all(|g| g.restarted_from_beginning == 0),
        detail: rereads
            .iter()
            .map(|g| format!("{}: {}", g.group, g.restarted_from_beginning))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Each group re-read exactly what kdr's translate_offsets said it may, at the failover and,
/// when there was one, at the failback.
pub(super) fn estimate_matches(rereads: &[GroupRereads], with_failback: bool) -> Check {
    let matches = |actual: usize, said: Option<i64>| said == Some(actual as i64);
    Check {
        name: "kdr's reprocessing estimate matches what consumers re-read".to_owned(),
        ok: rereads.iter().all(|g| {
            matches(g.reread_at_failover, g.kdr_estimate_at_failover)
                && (!with_failback || matches(g.reread_at_failback, g.kdr_estimate_at_failback))
        }),
        detail: rereads
            .iter()
            .map(|g| {
                format!(
                    "{}: {} re-read at the failover (kdr said {}), {} at the failback (kdr said {})",
                    g.group,
                    g.reread_at_failover,
                    figure(g.kdr_estimate_at_failover),
                    g.reread_at_failback,
                    figure(g.kdr_estimate_at_failback)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// What the groups read again at home of the primary's own topics is what kdr's reverse
/// checkpointing said they would (issue 11 #2).
fn reverse_matches(r: &ReverseHome) -> Check {
    Check {
        name: "reverse checkpointing: what groups read again of the primary's topics at home matches kdr's figure".to_owned(),
        ok: r.kdr_may_reread == Some(r.reread_on_primary_topics as i64),
        detail: format!(
            "{} read again, kdr said {} ({} partitions moved home, {} left where they were)",
            r.reread_on_primary_topics,
            figure(r.kdr_may_reread),
            r.partitions_moved,
            r.partitions_left
        ),
    }
}

/// Every record only the old primary saw is accounted for: kdr's count at the failback equals
/// what the primary really held beyond DR, partition by partition, and the failback placed
/// them (none when there were none).
pub(super) fn stranded(figures: Option<&StrandedFigures>) -> Option<Check> {
    let f = figures?;
    let placed = f.found_by_kdr == Some(0) || f.choice.is_some();
    Some(Check {
        name: "kdr's stranded records match what the primary really held beyond DR".to_owned(),
        ok: f.matches() && placed,
        detail: format!(
            "kdr found {}, the primary held {} that never reached DR; {}",
            figure(f.found_by_kdr),
            f.really_on_primary,
            f.destination()
        ),
    })
}
