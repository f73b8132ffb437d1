//! Tables for stdout: the plan's steps, a run's summary, an incident log.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ColumnConstraint, ContentArrangement, Table, Width};

use crate::journal::{Event, EventBody, RunReport};
use crate::plan::{Direction, Plan};
use crate::report::progress::format_ms;
use crate::steps;

/// A table for stdout that never splits a word: every column is at least as wide as its
/// longest word (an identifier: a topic, a group, a path), and longer text wraps at spaces.
/// Its width is the terminal's when stdout is one, else `COLUMNS` when set; a pipe or a file
/// without `COLUMNS` gets whole lines, unwrapped.
pub struct Grid {
    table: Table,
}

impl Grid {
    pub fn add_row<T: Into<comfy_table::Row>>(&mut self, row: T) -> &mut Self {
        self.table.add_row(row);
        self
    }
}

impl Grid {
    /// The table laid out in `width` columns; `None`: whole lines, unwrapped.
    fn render(&self, width: Option<u16>) -> String {
        let mut t = self.table.clone();
        let mut longest = vec![0u16; t.column_count()];
        let cells = t
            .header()
            .into_iter()
            .chain(t.row_iter())
            .flat_map(|row| row.cell_iter().enumerate());
        for (i, cell) in cells {
            let widest = cell
                .content()
                .split_whitespace()
                .map(|w| u16::try_from(w.chars().count()).unwrap_or(u16::MAX))
                .max()
                .unwrap_or(0);
            if let Some(l) = longest.get_mut(i) {
                *l = (*l).max(widest);
            }
        }
        for (column, width) in t.column_iter_mut().zip(longest) {
            // The preset pads each cell with a space either side.
            column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(
                width.saturating_add(2),
            )));
        }
        match width {
            Some(width) => t.set_width(width),
            None => t.set_content_arrangement(ContentArrangement::Disabled),
        };
        t.to_string()
    }
}

/// The terminal's width when stdout is a terminal, else `COLUMNS`, else none.
fn output_width() -> Option<u16> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        // comfy-table asks the terminal when no width was set.
        if let Some(width) = Table::new().width() {
            return Some(width);
        }
    }
    std::env::var("COLUMNS").ok()?.trim().parse().ok()
}

impl std::fmt::Display for Grid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(output_width()))
    }
}

/// A [`Grid`] with the table style every kdr table shares.
pub fn table(header: &[&str]) -> Grid {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    Grid { table: t }
}

/// `kdr plan show`: one table per direction.
pub fn plan_tables(plan: &Plan) -> String {
    let mut out = format!(
        "plan {} ({}): primary {} [{}], dr {} [{}]\n",
        plan.name,
        plan.path.display(),
        plan.primary.bootstrap_servers,
        plan.primary.mm2_alias,
        plan.dr.bootstrap_servers,
        plan.dr.mm2_alias,
    );
    if let Some(d) = &plan.description {
        out.push_str(d.trim());
        out.push('\n');
    }
    for direction in [Direction::Failover, Direction::Failback] {
        let (source, target) = plan.source_target(direction);
        out.push_str(&format!(
            "\n{direction} ({} → {})\n",
            source.role, target.role
        ));
        let mut t = table(&["#", "kind", "what it will do", "timeout"]);
        for step in plan.steps(direction) {
            t.add_row(vec![
                step.index.to_string(),
                step.kind.name().to_owned(),
                steps::summary(plan, direction, step),
                step.timeout_text(),
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out
}

/// The table printed at the end of a run.
pub fn run_table(report: &RunReport) -> String {
    let mut t = table(&["#", "kind", "status", "duration", "detail"]);
    for s in &report.steps {
        t.add_row(vec![
            s.step.to_string(),
            s.kind.clone(),
            s.status.words().to_owned(),
            format_ms(s.duration_ms),
            s.message.clone(),
        ]);
    }
    let mut whole = String::new();
    if report.invocations > 1 {
        whole.push_str(&format!(
            "; whole run {} over {} invocations",
            format_ms(report.total_duration_ms),
            report.invocations
        ));
    }
    if let Some(rto) = report.rto_ms {
        whole.push_str(&format!(", RTO {} (declaration to end)", format_ms(rto)));
    }
    let mut out = format!(
        "{}\n{} {} of {}: {} in {}{whole} (run {}, log {})\n",
        t,
        report.direction,
        if report.dry_run { "dry run" } else { "run" },
        report.plan,
        report.outcome.words(),
        format_ms(report.duration_ms),
        report.run_id,
        report.log.display()
    );
    if let Some(next) = &report.next_command {
        out.push_str(&format!("next: {next}\n"));
    }
    out
}

/// `2026-12-02 03:00:01.120` from `2026-12-02T03:00:01.120Z`.
fn day_and_time(ts: &str) -> String {
    ts.trim_end_matches('Z').replacen('T', " ", 1)
}

/// `kdr log show DIR`: the runs whose logs are in a directory, oldest first.
pub fn logs_table(entries: &[crate::journal::LogEntry]) -> String {
    let mut t = table(&[
        "started (UTC)",
        "plan",
        "direction",
        "operator",
        "outcome",
        "log",
    ]);
    for e in entries {
        let outcome = match (&e.error, e.outcome) {
            (Some(error), _) => format!("unreadable: {error}"),
            (None, Some(outcome)) => outcome.words().to_owned(),
            (None, None) => "unfinished".to_owned(),
        };
        t.add_row(vec![
            day_and_time(&e.started),
            e.plan.clone(),
            format!(
                "{}{}",
                e.direction,
                if e.dry_run { " (dry run)" } else { "" }
            ),
            e.operator.clone(),
            outcome,
            e.log.display().to_string(),
        ]);
    }
    format!("{t}\n{}\n", crate::report::count(entries.len(), "run"))
}

/// `kdr log show`: every event of a run, one row each.
pub fn log_table(events: &[Event]) -> String {
    let mut t = table(&["time (UTC)", "step", "event", "status", "detail"]);
    for e in events {
        let step = match &e.body {
            EventBody::StepStarted { step, kind, .. }
            | EventBody::StepFinished { step, kind, .. } => {
                format!("{step} {kind}")
            }
            EventBody::Observation {
                step: Some(step),
                kind,
                ..
            }
            | EventBody::Decision {
                step: Some(step),
                kind,
                ..
            } => {
                format!("{step} {}", kind.as_deref().unwrap_or(""))
            }
            _ => String::new(),
        };
        let (status, detail) = match &e.body {
            EventBody::RunStarted {
                plan,
                direction,
                operator,
                reason,
                dry_run,
                resumed,
                ..
            } => (
                String::new(),
                format!(
                    "{direction} of {plan} by {operator}: {reason}{}{}",
                    if *dry_run { " (dry run)" } else { "" },
                    if *resumed { " (resumed)" } else { "" }
                ),
            ),
            EventBody::StepStarted { summary, .. } => (String::new(), summary.clone()),
            EventBody::Observation { detail, .. } => (String::new(), detail.clone()),
            EventBody::Decision { who, what, why, .. } => {
                (String::new(), format!("{who}: {what} ({why})"))
            }
            EventBody::StepFinished {
                status,
                duration_ms,
                message,
                ..
            } => (
                status.words().to_owned(),
                format!("{message} [{}]", format_ms(*duration_ms)),
            ),
            EventBody::RunFinished {
                outcome,
                duration_ms,
                message,
            } => (
                outcome.words().to_owned(),
                format!("{message} [{}]", format_ms(*duration_ms)),
            ),
        };
        let time = day_and_time(&e.ts);
        t.add_row(vec![time, step, e.body.name().to_owned(), status, detail]);
    }
    let mut out = t.to_string();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_never_split_and_text_wraps_at_spaces() {
        let mut t = table(&["group", "detail"]);
        t.add_row(vec![
            "order-processor-with-a-long-name".to_owned(),
            "caught up, but no consumer attached to primary.orders-archive-2026".to_owned(),
        ]);
        let narrow = t.render(Some(60));
        for word in [
            "order-processor-with-a-long-name",
            "primary.orders-archive-2026",
        ] {
            assert!(narrow.contains(word), "{word} was split:\n{narrow}");
        }
        assert!(narrow.lines().count() > 5, "the detail wraps:\n{narrow}");
        let whole = t.render(None);
        assert_eq!(whole.lines().count(), 5, "unwrapped:\n{whole}");
    }
}
