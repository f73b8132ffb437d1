//! The incident report as JSON: the model itself, versioned by its `v` field
//! (`incident::REPORT_SCHEMA_VERSION`), like the look-ups' `--output json`.

use super::incident::IncidentReport;

pub fn render(report: &IncidentReport) -> String {
    let mut text = serde_json::to_string_pretty(report)
        .expect("the report model holds only strings, numbers, lists and maps");
    text.push('\n');
    text
}
