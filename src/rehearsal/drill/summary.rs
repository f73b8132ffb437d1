//! The summary `kdr rehearse` prints: the failover's table, the drill's figures, the failback,
//! the reprocessing ledger and the checks.

use std::fmt::Display;

use super::{CanaryFigures, Check, DrillReport, Latency, ReverseHome};
use crate::report::incident::Rto;
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
        if let Some(r) = &report.reverse_at_failback {
            reverse(&mut out, r);
        }
    }
    if let Some(s) = &report.stranded {
        stranded(&mut out, s);
    }
    rereads(&mut out, report);
    for (at, figures) in [
        ("failover", &report.canary),
        ("failback", &report.canary_failback),
    ] {
        if let Some(c) = figures {
            canary(&mut out, at, c);
        }
    }
    out.push('\n');
    checks(&mut out, &report.checks);
    out
}

/// Each check, `[ok]` or `[FAILED]`, with its detail.
pub(super) fn checks(out: &mut String, checks: &[Check]) {
    for c in checks {
        let mark = if c.ok { "ok" } else { "FAILED" };
        out.push_str(&format!("  [{mark}] {}: {}\n", c.name, c.detail));
    }
}

/// RTO, lag, records written and lost, and the partitions where anything was lost.
fn figures(out: &mut String, report: &DrillReport) {
    out.push_str(&format!(
        "\nrehearsal ({} scenario)\n",
        report.scenario.name()
    ));
    rto(out, report.rto.as_ref());
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

/// The records only the old primary saw: how many, per partition, and where they went.
fn stranded(out: &mut String, s: &super::StrandedFigures) {
    out.push_str(&format!(
        "  stranded on the old primary:              {} found by kdr, {} really held beyond DR\n",
        figure(s.found_by_kdr),
        s.really_on_primary
    ));
    for r in &s.per_partition {
        out.push_str(&format!(
            "    {}-{}: {} found, {} held\n",
            r.topic, r.partition, r.found_by_kdr, r.really_on_primary
        ));
    }
    out.push_str(&format!("    where they went: {}\n", s.destination()));
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

/// The failback's reverse checkpointing: DR's progress on the primary's topics carried home.
fn reverse(out: &mut String, r: &ReverseHome) {
    out.push_str(&format!(
        "  reverse checkpointing (commits on DR's replica topics, home): {} partitions moved, {} left where they were, {} behind every sync\n    read again at home of the primary's topics: {} (kdr said {})\n",
        r.partitions_moved,
        r.partitions_left,
        r.partitions_unmapped,
        r.reread_on_primary_topics,
        figure(r.kdr_may_reread)
    ));
}

/// What the canary's clients saw across one switch.
pub(super) fn canary(out: &mut String, at: &str, c: &CanaryFigures) {
    let ms = |v: Option<f64>| figure(v.map(|v| format!("{v:.1} ms")));
    let latency = |l: &Latency| {
        format!(
            "p50 {}, p99 {}, max {}, {} errors",
            ms(l.p50_ms),
            ms(l.p99_ms),
            ms(l.max_ms),
            l.errors
        )
    };
    out.push_str(&format!("  canary at the {at}:\n"));
    out.push_str(&format!(
        "    client-visible outage:    {}\n",
        ms(c.outage_ms)
    ));
    for (when, l) in [
        ("before", &c.before),
        ("during", &c.during),
        ("after", &c.after),
    ] {
        out.push_str(&format!("    publish {when:<6}           {}\n", latency(l)));
    }
    out.push_str(&format!(
        "    stabilized:               {}\n",
        match &c.stabilized_at {
            Some(_) => format!(
                "{} after the first publish on the new cluster",
                ms(c.stabilized_after_first_ack_ms)
            ),
            None => "not within the drill".to_owned(),
        }
    ));
    for (when, l) in [("before", &c.e2e_before), ("after", &c.e2e_after)] {
        out.push_str(&format!(
            "    end-to-end {when:<6}        p50 {}, p99 {}\n",
            ms(l.p50_ms),
            ms(l.p99_ms)
        ));
    }
    out.push_str(&format!(
        "    data gap:                 {} (kdr accepted {})\n    duplicates:               {} (kdr said {})\n",
        c.gap_total(),
        c.accepted_total(),
        c.duplicates,
        figure(c.kdr_may_reread)
    ));
}

/// The RTO with exactly what it spans, and its phases.
pub(super) fn rto(out: &mut String, rto: Option<&Rto>) {
    let Some(rto) = rto else {
        out.push_str("  RTO:                                     unknown (no step finished)\n");
        return;
    };
    out.push_str(&format!(
        "  RTO:                                     {} ({})\n",
        format_ms(rto.total_ms),
        rto.label
    ));
    for p in &rto.phases {
        out.push_str(&format!(
            "    {:<12} {:>10}\n",
            p.name,
            format_ms(p.duration_ms)
        ));
    }
    out.push_str(&format!(
        "    {:<12} {:>10}\n    {:<12} {:>10}\n",
        "other steps",
        format_ms(rto.other_steps_ms),
        "between steps",
        format_ms(rto.between_steps_ms)
    ));
}
