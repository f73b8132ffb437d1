//! The summary `kdr rehearse` prints: the failover's table, the drill's figures, the failback,
//! the reprocessing ledger and the checks.

use std::fmt::Display;

use super::DrillReport;
use crate::report::{format_ms, tables::run_table};

/// A figure for people: the number, or "unknown" when there is none (never Rust's `None`).
pub(super) fn figure<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
}

/// The summary `kdr rehearse` prints.
pub fn summary(report: &DrillReport) -> String {
    let mut out = run_table(&report.run);
    figures(&mut out, report);
    if let Some(back) = &report.failback {
        out.push_str("\nfailback\n");
        out.push_str(&run_table(back));
        out.push_str(&format!(
            "  records written on DR lost on the way back: {}\n",
            figure(report.records_lost_at_failback)
        ));
    }
    rereads(&mut out, report);
    out.push('\n');
    for c in &report.checks {
        let mark = if c.ok { "ok" } else { "FAILED" };
        out.push_str(&format!("  [{mark}] {}: {}\n", c.name, c.detail));
    }
    out
}

/// RTO, lag, records written and lost, and the partitions where anything was lost.
fn figures(out: &mut String, report: &DrillReport) {
    out.push_str(&format!(
        "\nrehearsal ({} scenario)\n",
        report.scenario.name()
    ));
    out.push_str(&format!(
        "  RTO (declaration to validated failover): {}\n",
        format_ms(report.rto_ms)
    ));
    out.push_str(&format!(
        "  replication lag at declaration:          {}\n",
        figure(report.lag_at_declaration.map(|l| format!("{l} records")))
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
}

/// Per group, what it read twice at each move next to kdr's estimate.
fn rereads(out: &mut String, report: &DrillReport) {
    out.push_str("  reprocessing ledger (records read twice; idempotent consumers absorb them):\n");
    for g in &report.rereads {
        out.push_str(&format!("    group {:<20} at the failover: {:>5} (kdr said {:>5})   at the failback: {:>5} (kdr said {:>5})\n",
            g.group,
            g.reread_at_failover,
            figure(g.kdr_estimate_at_failover),
            g.reread_at_failback,
            figure(g.kdr_estimate_at_failback)
        ));
    }
}
