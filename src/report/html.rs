//! The incident report as one self-contained HTML file: inline CSS and an inline SVG timeline,
//! no script and no network reference, so it opens offline, from an attachment or an archive.

use std::fmt::Write;

use super::format_ms;
use super::incident::{IncidentReport, RunSection, Sample, StepSpan};
use super::sections::{self, Table};
use crate::journal::StepStatus;

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 1em auto; padding: 0 1em; max-width: 1150px; color: #1d2329; background: #fff; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 2px solid #d0d7de; } h3 { margin-top: 1.5em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; } dd { margin: 0; }
.rto { font-size: 1.2em; font-weight: bold; background: #eef6ff; padding: 0.5em; border-left: 4px solid #0969da; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.note { color: #57606a; }
svg text { font-family: system-ui, sans-serif; font-size: 12px; fill: #1d2329; }
";

pub fn render(report: &IncidentReport) -> String {
    let title = sections::title(report);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    table_html(&mut out, &sections::summary(report));
    for run in sections::runs(report) {
        let _ = writeln!(out, "<section>\n<h2>{}</h2>\n<dl>", esc(&run.heading));
        for (label, value) in &run.facts {
            let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", esc(label), esc(value));
        }
        out.push_str("</dl>\n");
        if let Some(rto) = &run.rto {
            let _ = writeln!(out, "<p class=\"rto\">{}</p>", esc(rto));
        }
        out.push_str("<h3>Timeline picture</h3>\n");
        out.push_str(&timeline_svg(run.run));
        for table in &run.tables {
            table_html(&mut out, table);
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn table_html(out: &mut String, table: &Table) {
    let _ = writeln!(out, "<h3>{}</h3>", esc(&table.title));
    if let Some(note) = &table.note {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(note));
    }
    if table.rows.is_empty() {
        out.push_str("<p class=\"note\">None in this log.</p>\n");
        return;
    }
    out.push_str("<table>\n<tr>");
    for h in &table.headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>\n");
    for row in &table.rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn esc(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            c => s.push(c),
        }
    }
    s
}

// ---- The SVG timeline ----------------------------------------------------------------------

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 56.0;
const ROW: f64 = 24.0;
const CHART: f64 = 110.0;

/// Maps milliseconds after the run's start to x.
struct Axis {
    span_ms: f64,
}

impl Axis {
    fn x(&self, ms: u64) -> f64 {
        LEFT + (ms as f64 / self.span_ms) * (WIDTH - LEFT - RIGHT)
    }

    /// A round tick interval giving at most ten ticks.
    fn tick_ms(&self) -> u64 {
        const STEPS: [u64; 16] = [
            100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
            600_000, 1_800_000, 3_600_000, 7_200_000,
        ];
        STEPS
            .into_iter()
            .find(|s| self.span_ms / (*s as f64) <= 10.0)
            .unwrap_or(14_400_000)
    }
}

fn status_colour(status: Option<StepStatus>) -> &'static str {
    match status {
        Some(StepStatus::Ok) => "#2da44e",
        Some(StepStatus::Failed) => "#cf222e",
        Some(StepStatus::Skipped) => "#8c959f",
        Some(StepStatus::DryRun) => "#0969da",
        None => "#bf8700",
    }
}

fn timeline_svg(run: &RunSection) -> String {
    let end = run
        .timeline
        .iter()
        .map(|e| e.at_ms)
        .chain(run.duration_ms)
        .max()
        .unwrap_or(0);
    let axis = Axis {
        span_ms: end.max(1) as f64,
    };
    let lines: Vec<(&str, &str, &[Sample], &str)> = [
        ("replication lag", "#8250df", run.lag.as_slice(), "records"),
        (
            "canary publish latency p99",
            "#d4520f",
            run.canary_latency.as_slice(),
            "ms",
        ),
    ]
    .into_iter()
    .filter(|(_, _, s, _)| !s.is_empty())
    .collect();
    let bars_bottom = TOP + ROW * run.steps.len() as f64;
    let chart_top = bars_bottom + 20.0;
    let height = if lines.is_empty() {
        bars_bottom + 40.0
    } else {
        chart_top + CHART + 20.0 * lines.len() as f64 + 30.0
    };
    let mut svg = format!(
        "<svg role=\"img\" aria-label=\"timeline of the {} run\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">\n<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>\n",
        run.direction
    );
    ticks(&mut svg, &axis, end, height);
    for (i, step) in run.steps.iter().enumerate() {
        step_bar(&mut svg, &axis, step, TOP + ROW * i as f64, end);
    }
    let mut legend_y = chart_top + CHART + 20.0;
    for (name, colour, samples, unit) in lines {
        line(&mut svg, &axis, samples, colour, chart_top);
        let max = samples.iter().map(|s| s.value).fold(0.0, f64::max);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"2\"/><text x=\"{tx}\" y=\"{ty}\">{} (top of the chart: {} {unit})</text>",
            esc(name),
            max,
            y = legend_y - 4.0,
            x2 = LEFT + 24.0,
            tx = LEFT + 30.0,
            ty = legend_y,
        );
        legend_y += 20.0;
    }
    for (i, m) in run.moments.iter().enumerate() {
        let x = axis.x(m.at_ms);
        // Alternate label rows so moments close together stay readable; near the right edge
        // the label ends at its line instead of running off the picture.
        let label_y = TOP - 8.0 - 16.0 * (i % 2) as f64;
        let (tx, anchor) = if x > WIDTH - 120.0 {
            (x - 3.0, "end")
        } else {
            (x + 3.0, "start")
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#0969da\" stroke-dasharray=\"4 3\"><title>{} at {}</title></line><text x=\"{tx:.1}\" y=\"{label_y:.1}\" text-anchor=\"{anchor}\" fill=\"#0969da\">{}</text>",
            label_y - 10.0,
            height - 28.0,
            esc(&m.name),
            esc(&m.ts),
            esc(&m.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn ticks(svg: &mut String, axis: &Axis, end: u64, height: f64) {
    let tick = axis.tick_ms();
    let mut t = 0;
    while t <= end {
        let x = axis.x(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#eaeef2\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">+{}</text>",
            height - 28.0,
            height - 14.0,
            format_ms(t)
        );
        t += tick;
    }
}

fn step_bar(svg: &mut String, axis: &Axis, step: &StepSpan, y: f64, end: u64) {
    let x = axis.x(step.start_ms);
    let x2 = axis.x(step.end_ms.unwrap_or(end));
    let w = (x2 - x).max(2.0);
    let status = step.status.map_or("did not finish", StepStatus::as_str);
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} {}</text><rect x=\"{x:.1}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" rx=\"3\" fill=\"{}\"><title>step {} {}: {} in {}</title></rect>",
        LEFT - 8.0,
        y + ROW * 0.65,
        step.step,
        esc(&step.kind),
        y + 3.0,
        ROW - 6.0,
        status_colour(step.status),
        step.step,
        esc(&step.kind),
        status,
        step.duration_ms.map_or("—".to_owned(), format_ms)
    );
}

/// One series as a line scaled to its own maximum, with a dot per value.
fn line(svg: &mut String, axis: &Axis, samples: &[Sample], colour: &str, top: f64) {
    let max = samples.iter().map(|s| s.value).fold(0.0, f64::max);
    let y = |v: f64| {
        if max > 0.0 {
            top + CHART - v / max * CHART
        } else {
            top + CHART
        }
    };
    let points: Vec<String> = samples
        .iter()
        .map(|s| format!("{:.1},{:.1}", axis.x(s.at_ms), y(s.value)))
        .collect();
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#d0d7de\"/><polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
        points.join(" "),
        b = top + CHART,
        r = WIDTH - RIGHT,
    );
    for s in samples {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"><title>{} at {}: {}</title></circle>",
            axis.x(s.at_ms),
            y(s.value),
            esc(&s.source),
            esc(&s.ts),
            s.value
        );
    }
}
