//! `--metrics-file`: a run's figures in the Prometheus text exposition format (version 0.0.4),
//! for node_exporter's textfile collector.
//!
//! The figures are read from the incident log and nothing else, so the file says what the
//! evidence says. It is written whole or not at all: a temporary file in the same directory,
//! renamed over the target, so the collector never reads half a file. The temporary name does
//! not end in `.prom`, which the collector ignores.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Deserialize;

use super::incident;
use crate::journal::{self, Event, EventBody, GroupOutcome, JournalError, Outcome, StepStatus};
use crate::plan::Direction;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("failed to read the run's figures for the metrics file: {0}")]
    Log(#[from] JournalError),
    #[error("failed to write the metrics file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What one run's incident log says, as the metrics file shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFigures {
    pub plan: String,
    pub direction: Option<Direction>,
    pub run_id: String,
    pub operator: String,
    /// None when the log has no `run_finished` (the run did not end).
    pub outcome: Option<Outcome>,
    pub duration_ms: Option<u64>,
    /// Unix time of the `run_finished` event, in seconds.
    pub finished_at: Option<f64>,
    /// Each step's last `step_finished`, by step number (a resumed run's earlier steps too).
    pub steps: BTreeMap<usize, StepFigure>,
    /// The report's RTO (declare gate opened -> validated, see [`incident::run_rto`]), for a
    /// run that succeeded.
    pub rto_seconds: Option<f64>,
    /// Records accepted as lost by wait_replication (None: no loss was decided on).
    pub records_accepted_lost: Option<i64>,
    /// Replication lag the declaration measured, in records, where it was known.
    pub lag_at_declaration: Option<i64>,
    /// Groups whose translated offsets translate_offsets committed.
    pub groups_translated: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFigure {
    pub kind: String,
    pub status: StepStatus,
    pub duration_ms: u64,
}

/// The declaration's `rpo_baseline` observation, as far as the metrics read it.
#[derive(Deserialize)]
struct RpoBaseline {
    total_lag_records: Option<i64>,
}

/// translate_offsets' `group` observation, as far as the metrics read it (older logs have no
/// `outcome`: their groups are not counted).
#[derive(Deserialize)]
struct GroupObserved {
    outcome: Option<GroupOutcome>,
}

/// What kind of event a line of the log is, and nothing else of it.
#[derive(Deserialize)]
struct Head {
    event: String,
    name: Option<String>,
    kind: Option<String>,
}

/// A `group` observation's line, as far as the metrics read it.
#[derive(Deserialize)]
struct GroupLine {
    data: GroupObserved,
}

/// wait_replication's decision at its bound.
#[derive(Deserialize)]
struct LossDecision {
    lost_records: Option<i64>,
}

impl RunFigures {
    /// Read one run's incident log, one line at a time: the figures need every event but the
    /// observations (thousands of translated groups, each with its partitions), of which they
    /// read a word or two. The events they need are held (a few per step), nothing else.
    pub fn read(log: &Path) -> Result<Self, MetricsError> {
        let mut held = Vec::new();
        let mut groups_translated = 0;
        journal::scan(log, |line| {
            let head: Head = serde_json::from_str(line)?;
            if head.event == "observation" && head.name.as_deref() != Some("rpo_baseline") {
                let counted = head.kind.as_deref() == Some("translate_offsets")
                    && head.name.as_deref() == Some("group");
                // Older logs have no `outcome`: their groups are not counted.
                if counted
                    && serde_json::from_str::<GroupLine>(line)
                        .is_ok_and(|g| g.data.outcome == Some(GroupOutcome::Committed))
                {
                    groups_translated += 1;
                }
                return Ok(());
            }
            held.push(serde_json::from_str::<Event>(line)?);
            Ok(())
        })?;
        let mut figures = Self::from_events(&held);
        figures.groups_translated = groups_translated;
        Ok(figures)
    }

    pub fn from_events(events: &[Event]) -> Self {
        let mut f = RunFigures::default();
        for event in events {
            match &event.body {
                EventBody::RunStarted {
                    plan,
                    direction,
                    operator,
                    ..
                } => {
                    f.plan.clone_from(plan);
                    f.direction = Some(*direction);
                    f.operator.clone_from(operator);
                    f.run_id.clone_from(&event.run_id);
                }
                EventBody::StepFinished {
                    step,
                    kind,
                    status,
                    duration_ms,
                    ..
                } => {
                    f.steps.insert(
                        *step,
                        StepFigure {
                            kind: kind.clone(),
                            status: *status,
                            duration_ms: *duration_ms,
                        },
                    );
                }
                EventBody::Observation { name, data, .. } if name == "rpo_baseline" => {
                    if let Ok(b) = RpoBaseline::deserialize(data) {
                        f.lag_at_declaration = b.total_lag_records;
                    }
                }
                EventBody::Observation {
                    kind, name, data, ..
                } if kind.as_deref() == Some("translate_offsets") && name == "group" => {
                    let outcome = GroupObserved::deserialize(data)
                        .ok()
                        .and_then(|g| g.outcome);
                    if outcome == Some(GroupOutcome::Committed) {
                        f.groups_translated += 1;
                    }
                }
                EventBody::Decision { kind, data, .. }
                    if kind.as_deref() == Some("wait_replication") =>
                {
                    if let Ok(d) = LossDecision::deserialize(data) {
                        f.records_accepted_lost = d.lost_records;
                    }
                }
                EventBody::RunFinished {
                    outcome,
                    duration_ms,
                    ..
                } => {
                    f.outcome = Some(*outcome);
                    f.duration_ms = Some(*duration_ms);
                    f.finished_at = unix_seconds(&event.ts);
                }
                _ => {}
            }
        }
        if f.outcome == Some(Outcome::Succeeded) {
            f.rto_seconds = incident::run_rto(events).map(|rto| seconds(rto.total_ms));
        }
        f
    }

    fn labels(&self) -> Vec<(&'static str, String)> {
        vec![
            ("plan", self.plan.clone()),
            (
                "direction",
                self.direction
                    .map(Direction::as_str)
                    .unwrap_or("")
                    .to_owned(),
            ),
        ]
    }
}

fn unix_seconds(ts: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(ts).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs_f64())
}

/// A drill's verdict, shown beside its runs' figures.
#[derive(Debug, Clone)]
pub struct DrillFigures {
    pub plan: String,
    pub scenario: String,
    pub passed: bool,
}

/// The exposition text: one family after another, each with its HELP and TYPE lines and the
/// samples of every run given.
pub fn render(runs: &[RunFigures], drill: Option<&DrillFigures>) -> String {
    let mut out = Exposition::default();
    out.family("kdr_run_info", "The run this file describes (always 1).");
    for r in runs {
        let mut labels = r.labels();
        labels.push(("run_id", r.run_id.clone()));
        labels.push(("operator", r.operator.clone()));
        out.sample("kdr_run_info", &labels, 1.0);
    }
    out.family(
        "kdr_run_outcome",
        "The run's outcome: 1 for the one it had, 0 for the others.",
    );
    for r in runs {
        let Some(outcome) = r.outcome else { continue };
        for o in OUTCOMES {
            let mut labels = r.labels();
            labels.push(("outcome", o.as_str().to_owned()));
            out.sample("kdr_run_outcome", &labels, flag(o == outcome));
        }
    }
    out.per_run(
        runs,
        "kdr_run_success",
        "1 when the run succeeded (a dry run that found nothing stopping it counts), else 0.",
        |r| {
            r.outcome
                .map(|o| flag(matches!(o, Outcome::Succeeded | Outcome::DryRun)))
        },
    );
    out.per_run(
        runs,
        "kdr_run_duration_seconds",
        "How long the run took.",
        |r| r.duration_ms.map(seconds),
    );
    out.per_run(
        runs,
        "kdr_run_finished_timestamp_seconds",
        "When the run ended, in Unix time.",
        |r| r.finished_at,
    );
    out.family("kdr_step_duration_seconds", "How long each step took.");
    for r in runs {
        for (step, s) in &r.steps {
            out.sample(
                "kdr_step_duration_seconds",
                &step_labels(r, *step, s),
                seconds(s.duration_ms),
            );
        }
    }
    out.family(
        "kdr_step_status",
        "Each step's status: 1 for the one it ended with, 0 for the others.",
    );
    for r in runs {
        for (step, s) in &r.steps {
            for status in STATUSES {
                let mut labels = step_labels(r, *step, s);
                labels.push(("status", status.as_str().to_owned()));
                let value = flag(status == s.status);
                out.sample("kdr_step_status", &labels, value);
            }
        }
    }
    out.per_run(
        runs,
        "kdr_rto_seconds",
        "Recovery time, as kdr report states it: from the declare gate opening to the validated switch (or the last finished step), for a run that succeeded.",
        |r| r.rto_seconds,
    );
    out.per_run(
        runs,
        "kdr_records_accepted_lost",
        "Records not replicated that the run accepted as lost (wait_replication's decision).",
        |r| r.records_accepted_lost.map(|n| n as f64),
    );
    out.per_run(
        runs,
        "kdr_lag_at_declaration_records",
        "Replication lag measured at the declaration, where it was known.",
        |r| r.lag_at_declaration.map(|n| n as f64),
    );
    out.per_run(
        runs,
        "kdr_groups_translated",
        "Consumer groups whose translated offsets were committed.",
        |r| Some(r.groups_translated as f64),
    );
    if let Some(d) = drill {
        out.family(
            "kdr_rehearsal_passed",
            "1 when every check of the rehearsal held, else 0.",
        );
        let labels = [("plan", d.plan.clone()), ("scenario", d.scenario.clone())];
        out.sample("kdr_rehearsal_passed", &labels, flag(d.passed));
    }
    out.text
}

const OUTCOMES: [Outcome; 5] = [
    Outcome::Succeeded,
    Outcome::DryRun,
    Outcome::Failed,
    Outcome::Aborted,
    Outcome::Interrupted,
];

const STATUSES: [StepStatus; 4] = [
    StepStatus::Ok,
    StepStatus::Failed,
    StepStatus::Skipped,
    StepStatus::DryRun,
];

fn step_labels(r: &RunFigures, step: usize, s: &StepFigure) -> Vec<(&'static str, String)> {
    let mut labels = r.labels();
    labels.push(("step", step.to_string()));
    labels.push(("kind", s.kind.clone()));
    labels
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Text being built. Every family is a gauge: each figure is a value of this run, not a count
/// that grows across runs.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} gauge");
    }

    /// A family with one sample per run that has a value for it, labelled with the run's.
    fn per_run(
        &mut self,
        runs: &[RunFigures],
        name: &str,
        help: &str,
        value: impl Fn(&RunFigures) -> Option<f64>,
    ) {
        self.family(name, help);
        for r in runs {
            if let Some(v) = value(r) {
                self.sample(name, &r.labels(), v);
            }
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, String)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let _ = writeln!(
            self.text,
            "{name}{{{}}} {}",
            labels.join(","),
            number(value)
        );
    }
}

/// Label values escape backslash, double quote and line feed; nothing else.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as Go's parser reads it (`NaN`, `+Inf`, `-Inf` for the specials).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        v.to_string()
    }
}

/// Read each log and write their figures to `path`, atomically.
pub fn write_for_logs(
    path: &Path,
    logs: &[&Path],
    drill: Option<&DrillFigures>,
) -> Result<(), MetricsError> {
    let runs = logs
        .iter()
        .map(|log| RunFigures::read(log))
        .collect::<Result<Vec<_>, _>>()?;
    write_atomically(path, &render(&runs, drill))
}

/// Write `text` to a temporary file beside `path`, flush it to disk, and rename it over `path`.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), MetricsError> {
    let error = |source| MetricsError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| error(std::io::Error::other("the path names no file")))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, ts: &str, body: EventBody) -> Event {
        Event {
            v: journal::SCHEMA_VERSION,
            seq,
            ts: ts.to_owned(),
            run_id: "r1".to_owned(),
            body,
        }
    }

    fn finished(step: usize, kind: &str, status: StepStatus, ms: u64) -> EventBody {
        EventBody::StepFinished {
            step,
            kind: kind.to_owned(),
            status,
            duration_ms: ms,
            message: String::new(),
        }
    }

    fn started(step: usize, kind: &str) -> EventBody {
        EventBody::StepStarted {
            step,
            kind: kind.to_owned(),
            summary: String::new(),
        }
    }

    /// translate_offsets' word on one group, as the step logs it: its translation and what was
    /// done with it.
    fn translate_group(seq: u64, detail: &str, outcome: GroupOutcome) -> Event {
        let body = EventBody::Observation {
            step: Some(3),
            kind: Some("translate_offsets".to_owned()),
            name: "group".to_owned(),
            detail: detail.to_owned(),
            data: serde_json::json!({
                "outcome": outcome,
                "group": "g",
                "state": "empty",
                "partitions": [],
            }),
        };
        event(seq, "2026-12-02T06:00:04.000Z", body)
    }

    /// A failover whose declare gate opens at 0.5 s and whose validate step finishes ok at
    /// 11.5 s; the run ends at 12 s.
    fn log() -> Vec<Event> {
        let ts = |s: &str| format!("2026-12-02T06:00:{s}Z");
        let at = |seq: u64, s: &str, body: EventBody| event(seq, &ts(s), body);
        vec![
            at(
                1,
                "00.000",
                EventBody::RunStarted {
                    plan: "orders \"dr\"".to_owned(),
                    fingerprint: "sha256:0".to_owned(),
                    plan_file: "p.yaml".to_owned(),
                    direction: Direction::Failover,
                    operator: "ana".to_owned(),
                    reason: "drill".to_owned(),
                    dry_run: false,
                    resumed: false,
                    kdr_version: "0".to_owned(),
                    host: "h".to_owned(),
                    pid: 1,
                },
            ),
            at(2, "00.500", started(1, "declare")),
            at(
                3,
                "01.500",
                EventBody::Observation {
                    step: Some(1),
                    kind: Some("declare".to_owned()),
                    name: "rpo_baseline".to_owned(),
                    detail: String::new(),
                    data: serde_json::json!({ "total_lag_records": 7 }),
                },
            ),
            at(4, "02.000", finished(1, "declare", StepStatus::Ok, 1500)),
            at(5, "02.000", started(2, "wait_replication")),
            at(
                6,
                "03.000",
                EventBody::Decision {
                    step: Some(2),
                    kind: Some("wait_replication".to_owned()),
                    who: "plan".to_owned(),
                    what: "accept the RPO".to_owned(),
                    why: String::new(),
                    data: serde_json::json!({ "lost_records": 7, "per_partition": [] }),
                },
            ),
            at(
                7,
                "03.000",
                finished(2, "wait_replication", StepStatus::Ok, 1000),
            ),
            at(8, "03.000", started(3, "translate_offsets")),
            translate_group(
                9,
                "group billing: committed 4 of 4 partitions on dr",
                GroupOutcome::Committed,
            ),
            // Its text says "committed", its outcome does not: the outcome is what counts.
            translate_group(
                10,
                "group app: committed nothing: has live members on dr: refused",
                GroupOutcome::Refused,
            ),
            at(
                11,
                "04.250",
                finished(3, "translate_offsets", StepStatus::Ok, 1250),
            ),
            at(12, "04.500", started(4, "validate")),
            at(13, "11.500", finished(4, "validate", StepStatus::Ok, 7000)),
            at(
                14,
                "12.000",
                EventBody::RunFinished {
                    outcome: Outcome::Succeeded,
                    duration_ms: 12_000,
                    message: String::new(),
                },
            ),
        ]
    }

    #[test]
    fn figures_come_from_the_log_and_rto_is_the_reports_from_declare_gate_to_validated() {
        let f = RunFigures::from_events(&log());
        assert_eq!(f.outcome, Some(Outcome::Succeeded));
        assert_eq!(f.duration_ms, Some(12_000));
        assert_eq!(f.rto_seconds, Some(11.0));
        let rto = incident::run_rto(&log()).expect("the report's rto");
        assert_eq!(f.rto_seconds, Some(rto.total_ms as f64 / 1000.0));
        assert_eq!(f.lag_at_declaration, Some(7));
        assert_eq!(f.records_accepted_lost, Some(7));
        assert_eq!(f.groups_translated, 1, "a refused group is not translated");
        assert_eq!(f.steps.len(), 4);
        assert_eq!(f.steps[&3].duration_ms, 1250);
    }

    #[test]
    fn a_log_read_line_by_line_gives_the_figures_of_its_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.jsonl");
        let mut text = String::new();
        for event in log() {
            text.push_str(&serde_json::to_string(&event).expect("json"));
            text.push('\n');
        }
        std::fs::write(&path, text).expect("write");
        let read = RunFigures::read(&path).expect("read");
        assert_eq!(read, RunFigures::from_events(&log()));
        assert_eq!(read.groups_translated, 1);
    }

    #[test]
    fn a_failed_run_has_no_rto_and_says_which_step_failed() {
        let mut events = log();
        events.truncate(8);
        events.push(event(
            9,
            "2026-12-02T06:00:05.000Z",
            finished(3, "translate_offsets", StepStatus::Failed, 10),
        ));
        events.push(event(
            10,
            "2026-12-02T06:00:05.000Z",
            EventBody::RunFinished {
                outcome: Outcome::Failed,
                duration_ms: 5000,
                message: String::new(),
            },
        ));
        let text = render(&[RunFigures::from_events(&events)], None);
        assert!(!text.contains("kdr_rto_seconds{"), "{text}");
        assert!(
            text.contains("kdr_run_success{plan=\"orders \\\"dr\\\"\",direction=\"failover\"} 0\n"),
            "{text}"
        );
        assert!(text.contains(
            "kdr_step_status{plan=\"orders \\\"dr\\\"\",direction=\"failover\",step=\"3\",kind=\"translate_offsets\",status=\"failed\"} 1\n"
        ), "{text}");
    }

    #[test]
    fn every_family_has_help_and_type_once_and_label_values_are_escaped() {
        let runs = [RunFigures::from_events(&log()), {
            let mut back = RunFigures::from_events(&log());
            back.direction = Some(Direction::Failback);
            back
        }];
        let text = render(&runs, None);
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types, unique);
        assert!(text.contains("plan=\"orders \\\"dr\\\"\""), "{text}");
        assert_eq!(escape_label("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kdr.prom");
        std::fs::write(&path, "old").expect("write");
        write_atomically(&path, "new\n").expect("write metrics");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("kdr.prom")]);
        let err = write_atomically(&dir.path().join("missing/kdr.prom"), "x").expect_err("no dir");
        assert!(err.to_string().contains("missing/kdr.prom"), "{err}");
    }
}
