//! The incident report as Markdown, for the incident channel and the post-mortem.

use std::fmt::Write;

use super::incident::IncidentReport;
use super::sections::{self, Table};

pub fn render(report: &IncidentReport) -> String {
    let mut out = format!("# {}\n", sections::title(report));
    table_md(&mut out, &sections::summary(report));
    for run in sections::runs(report) {
        let _ = write!(out, "\n## {}\n\n", cell(&run.heading));
        for (label, value) in &run.facts {
            let _ = writeln!(out, "- **{label}:** {}", cell(value));
        }
        if let Some(rto) = &run.rto {
            let _ = write!(out, "\n**{}**\n", cell(rto));
        }
        for table in &run.tables {
            table_md(&mut out, table);
        }
    }
    out
}

fn table_md(out: &mut String, table: &Table) {
    let _ = write!(out, "\n### {}\n\n", cell(&table.title));
    if let Some(note) = &table.note {
        let _ = write!(out, "{}\n\n", cell(note));
    }
    if table.rows.is_empty() {
        out.push_str("_None in this log._\n");
        return;
    }
    let _ = writeln!(out, "| {} |", table.headers.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        table.headers.iter().map(|_| "---|").collect::<String>()
    );
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// Text safe inside a table cell or a line: no pipes that split cells, no line breaks, no HTML.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace(['\r', '\n'], " ")
}
