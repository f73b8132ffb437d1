//! Tables for stdout: the plan's steps, a run's summary, an incident log.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use crate::journal::{Event, EventBody, RunReport};
use crate::plan::{Direction, Plan};
use crate::report::progress::format_ms;
use crate::steps;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    if let Some((w, _)) = terminal_width() {
        t.set_width(w);
    } else {
        t.set_width(120);
    }
    t
}

fn terminal_width() -> Option<(u16, u16)> {
    std::env::var("COLUMNS").ok()?.parse().ok().map(|w| (w, 0))
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
            s.status.as_str().to_owned(),
            format_ms(s.duration_ms),
            s.message.clone(),
        ]);
    }
    format!(
        "{}\n{} {} of {}: {} in {} (run {}, log {})\n",
        t,
        report.direction,
        if report.dry_run { "dry run" } else { "run" },
        report.plan,
        report.outcome.as_str(),
        format_ms(report.duration_ms),
        report.run_id,
        report.log.display()
    )
}

/// `kdr log show`: every event of a run, one row each.
pub fn log_table(events: &[Event]) -> String {
    let mut t = table(&["time", "step", "event", "status", "detail"]);
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
                status.as_str().to_owned(),
                format!("{message} [{}]", format_ms(*duration_ms)),
            ),
            EventBody::RunFinished {
                outcome,
                duration_ms,
                message,
            } => (
                outcome.as_str().to_owned(),
                format!("{message} [{}]", format_ms(*duration_ms)),
            ),
        };
        let time = e.ts.get(11..23).unwrap_or(&e.ts).to_owned();
        t.add_row(vec![time, step, e.body.name().to_owned(), status, detail]);
    }
    let mut out = t.to_string();
    out.push('\n');
    out
}
