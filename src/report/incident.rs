//! The incident report's model, built from incident logs alone: what `kdr report` renders as
//! Markdown, HTML or JSON.
//!
//! Everything here comes from the logs' events (src/journal), so a report can be rebuilt long
//! after the run, on another machine, by somebody who was not there. The observation payloads
//! are read through small typed mirrors of what the steps write today; a payload that does not
//! fit is not guessed at, it becomes a warning in the report.
//!
//! Canary figures: `kdr rehearse` appends them to its runs' logs (src/rehearsal/drill/canary.rs).
//! Any observation whose name starts with `canary_` is
//! listed with its scalar data fields; one whose data has a numeric `p99_ms` is also a point on
//! the publish-latency line, and `canary_data_gap` with
//! `partitions: [{topic, partition, missing}]` is the RPO observed per partition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::journal::{self, Event, EventBody, JournalError, Outcome, StepStatus};
use crate::plan::Direction;

/// The JSON report's schema version; bump it when a field changes meaning or goes away.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Log(#[from] JournalError),
    #[error("{}:{line}: {message}", path.display())]
    Shape {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("failed to write the report to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One report over one or more runs (a failover and its failback, in the order given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentReport {
    pub v: u32,
    pub runs: Vec<RunSection>,
}

/// One incident log: one run, continued by any `--resume`s recorded in the same file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    pub log: String,
    pub run_id: String,
    pub plan: String,
    pub direction: Direction,
    pub operator: String,
    pub reason: String,
    pub dry_run: bool,
    /// RFC 3339 UTC, as in the log.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<Outcome>,
    pub duration_ms: Option<u64>,
    pub message: Option<String>,
    /// The log's last line was cut short by a crash and is not in the report.
    pub torn_tail: bool,
    pub steps: Vec<StepSpan>,
    pub timeline: Vec<TimelineEntry>,
    pub moments: Vec<Moment>,
    pub rto: Option<Rto>,
    pub rpo: Vec<PartitionRpo>,
    pub lag: Vec<Sample>,
    pub translations: Vec<GroupTranslationTable>,
    pub reprocessing: Vec<Reread>,
    pub canary: Vec<CanaryFigure>,
    pub canary_latency: Vec<Sample>,
    /// Events whose payload kdr could not read (they stay in the timeline).
    pub warnings: Vec<String>,
}

/// One execution of one step, from its step_started to its step_finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpan {
    pub step: usize,
    pub kind: String,
    pub summary: String,
    pub started_at: String,
    /// Milliseconds after the run started.
    pub start_ms: u64,
    pub finished_at: Option<String>,
    pub end_ms: Option<u64>,
    pub status: Option<StepStatus>,
    pub duration_ms: Option<u64>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineEntry {
    pub seq: u64,
    pub ts: String,
    pub at_ms: u64,
    pub step: Option<usize>,
    /// The event's name: run_started, step_started, observation, decision, step_finished,
    /// run_finished.
    pub event: String,
    pub text: String,
}

/// A moment marked on the timeline picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moment {
    /// `declared`, `repointed` or `validated`.
    pub name: String,
    pub ts: String,
    pub at_ms: u64,
}

/// The recovery time, exactly as the label says: from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rto {
    /// `<from_what> → <to_what>`: exactly what the number spans.
    pub label: String,
    pub from_what: String,
    pub from: String,
    pub to_what: String,
    pub to: String,
    pub total_ms: u64,
    /// Whether `to` is a validate step that finished ok (else the run's last finished step).
    pub validated: bool,
    pub phases: Vec<Phase>,
    /// Steps of other kinds inside the span (exec, pause, checks…).
    pub other_steps_ms: u64,
    /// Time between steps: the total less every step's duration.
    pub between_steps_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    pub step_kind: String,
    pub duration_ms: u64,
    pub steps: Vec<usize>,
}

/// Data loss per partition: what kdr estimated, and what was observed when the log says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRpo {
    pub topic: String,
    pub partition: i32,
    /// Records not yet on the target when the run was declared (declare's RPO baseline).
    pub lag_at_declaration: Option<i64>,
    /// Records kdr estimated lost when wait_replication ended (0 when it caught up).
    pub estimated_loss: Option<i64>,
    /// Records observed missing on the target (a canary's data gap).
    pub observed_loss: Option<i64>,
}

/// One value on a line of the timeline picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub ts: String,
    pub at_ms: u64,
    pub value: f64,
    /// The event it comes from.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupTranslationTable {
    pub group: String,
    pub state: String,
    pub partitions: Vec<TranslationRow>,
}

/// One partition of a group's translation, as translate_offsets logs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslationRow {
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
    pub source_offset: i64,
    pub target_offset: i64,
    pub current_offset: Option<i64>,
    pub checkpoint_age_ms: i64,
    pub action: String,
}

/// The re-read ledger: how many records a group may read again on the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reread {
    pub group: String,
    pub may_reread: Option<i64>,
    pub basis: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryFigure {
    pub ts: String,
    pub name: String,
    pub detail: String,
    /// The observation's scalar data fields, by name.
    pub figures: BTreeMap<String, serde_json::Value>,
}

// ---- What the steps write today (read side) ---------------------------------------------

#[derive(Deserialize)]
struct LagRow {
    #[serde(alias = "topic")]
    source_topic: String,
    partition: i32,
    #[serde(default)]
    lag: Option<i64>,
}

#[derive(Deserialize)]
struct Baseline {
    partitions: Vec<LagRow>,
    total_lag_records: Option<i64>,
}

#[derive(Deserialize)]
struct CaughtUp {
    partitions: Vec<LagRow>,
}

/// wait_replication's decision when the bound is reached (abort or accept the RPO).
#[derive(Deserialize)]
struct Settled {
    lost_records: i64,
    partitions_with_unknown_lag: usize,
    /// Only the partitions that lost records.
    per_partition: Vec<LagRow>,
}

#[derive(Deserialize)]
struct GroupObserved {
    group: String,
    state: String,
    partitions: Vec<TranslationRow>,
}

#[derive(Deserialize)]
struct Reprocessing {
    group: String,
    may_reread: Option<i64>,
    basis: String,
}

#[derive(Deserialize)]
struct DataGap {
    partitions: Vec<GapRow>,
}

#[derive(Deserialize)]
struct GapRow {
    topic: String,
    partition: i32,
    missing: i64,
}

/// Read every log and build one report over them, in the order given.
pub fn load(paths: &[PathBuf]) -> Result<IncidentReport, ReportError> {
    let mut runs = Vec::with_capacity(paths.len());
    for path in paths {
        let contents = journal::read(path)?;
        runs.push(RunSection::from_events(
            path,
            &contents.events,
            contents.torn_tail,
        )?);
    }
    Ok(IncidentReport {
        v: REPORT_SCHEMA_VERSION,
        runs,
    })
}

/// Milliseconds since the epoch of an RFC 3339 timestamp.
fn epoch_ms(ts: &str) -> Option<i128> {
    let t = humantime::parse_rfc3339(ts).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(d.as_millis() as i128)
}

/// The RTO of one run's events, exactly as the report computes it (the metrics file shows the
/// same figure); None when it has no finished step or the events are not an incident log.
pub fn run_rto(events: &[Event]) -> Option<Rto> {
    if events.is_empty() {
        return None;
    }
    RunSection::from_events(Path::new("-"), events, false)
        .ok()?
        .rto
}

/// The date and time of a log timestamp for people: `2026-12-02 06:24:30.875`.
pub fn human_ts(ts: &str) -> String {
    ts.trim_end_matches('Z').replacen('T', " ", 1)
}

/// The phases of a run's RTO, in order: (phase, the step kind that makes it).
const PHASES: [(&str, &str); 6] = [
    ("decision", "declare"),
    ("quiesce", "quiesce_producers"),
    ("catch-up", "wait_replication"),
    ("repoint", "repoint"),
    ("translation", "translate_offsets"),
    ("validation", "validate"),
];

impl RunSection {
    fn from_events(path: &Path, events: &[Event], torn_tail: bool) -> Result<Self, ReportError> {
        let shape = |line: usize, message: String| ReportError::Shape {
            path: path.to_owned(),
            line,
            message,
        };
        let first = &events[0];
        let EventBody::RunStarted {
            plan,
            direction,
            operator,
            reason,
            dry_run,
            ..
        } = &first.body
        else {
            return Err(shape(
                1,
                format!(
                    "the log starts with {} where run_started was expected: not the start of an incident log",
                    first.body.name()
                ),
            ));
        };
        let origin =
            epoch_ms(&first.ts).ok_or_else(|| shape(1, format!("bad timestamp {:?}", first.ts)))?;
        let mut section = RunSection {
            log: path.display().to_string(),
            run_id: first.run_id.clone(),
            plan: plan.clone(),
            direction: *direction,
            operator: operator.clone(),
            reason: reason.clone(),
            dry_run: *dry_run,
            started_at: first.ts.clone(),
            finished_at: None,
            outcome: None,
            duration_ms: None,
            message: None,
            torn_tail,
            steps: Vec::new(),
            timeline: Vec::new(),
            moments: Vec::new(),
            rto: None,
            rpo: Vec::new(),
            lag: Vec::new(),
            translations: Vec::new(),
            reprocessing: Vec::new(),
            canary: Vec::new(),
            canary_latency: Vec::new(),
            warnings: Vec::new(),
        };
        let mut rpo: BTreeMap<(String, i32), PartitionRpo> = BTreeMap::new();
        let mut translations: BTreeMap<String, GroupTranslationTable> = BTreeMap::new();
        let mut rereads: BTreeMap<String, Reread> = BTreeMap::new();
        for (i, event) in events.iter().enumerate() {
            let at = epoch_ms(&event.ts)
                .ok_or_else(|| shape(i + 1, format!("bad timestamp {:?}", event.ts)))?;
            let at_ms = (at - origin).max(0) as u64;
            section.timeline.push(TimelineEntry {
                seq: event.seq,
                ts: event.ts.clone(),
                at_ms,
                step: event.body.step(),
                event: event.body.name().to_owned(),
                text: timeline_text(&event.body),
            });
            let mut ctx = Fold {
                section: &mut section,
                rpo: &mut rpo,
                event,
                at_ms,
            };
            match &event.body {
                EventBody::StepStarted {
                    step,
                    kind,
                    summary,
                } => ctx.section.steps.push(StepSpan {
                    step: *step,
                    kind: kind.clone(),
                    summary: summary.clone(),
                    started_at: event.ts.clone(),
                    start_ms: at_ms,
                    finished_at: None,
                    end_ms: None,
                    status: None,
                    duration_ms: None,
                    message: None,
                }),
                EventBody::StepFinished {
                    step,
                    kind,
                    status,
                    duration_ms,
                    message,
                } => ctx.step_finished(*step, kind, *status, *duration_ms, message),
                EventBody::Observation {
                    name, detail, data, ..
                } => {
                    ctx.observation(name, detail, data, &mut translations, &mut rereads);
                }
                EventBody::Decision { data, .. } => ctx.decision(data),
                EventBody::RunFinished {
                    outcome,
                    duration_ms,
                    message,
                } => {
                    section.finished_at = Some(event.ts.clone());
                    section.outcome = Some(*outcome);
                    // The engine's monotonic figure, never less than what the log's own
                    // timestamps span: the RTO is measured on those (millisecond stamps of the
                    // wall clock), and must not come out longer than the run that holds it.
                    section.duration_ms = Some((*duration_ms).max(at_ms));
                    section.message = Some(message.clone());
                }
                EventBody::RunStarted { .. } => {}
            }
        }
        section.rpo = rpo.into_values().collect();
        section.translations = translations.into_values().collect();
        section.reprocessing = rereads.into_values().collect();
        section.rto = rto(&section.steps, &section.started_at, section.direction);
        Ok(section)
    }
}

/// Folds one event into the section being built.
struct Fold<'a> {
    section: &'a mut RunSection,
    rpo: &'a mut BTreeMap<(String, i32), PartitionRpo>,
    event: &'a Event,
    at_ms: u64,
}

impl Fold<'_> {
    fn step_finished(
        &mut self,
        step: usize,
        kind: &str,
        status: StepStatus,
        duration_ms: u64,
        message: &str,
    ) {
        if let Some(span) = self
            .section
            .steps
            .iter_mut()
            .rev()
            .find(|s| s.step == step && s.end_ms.is_none())
        {
            span.finished_at = Some(self.event.ts.clone());
            span.end_ms = Some(self.at_ms);
            span.status = Some(status);
            span.duration_ms = Some(duration_ms);
            span.message = Some(message.to_owned());
        }
        let moment = match kind {
            "declare" => "declared",
            "repoint" => "repointed",
            "validate" => "validated",
            _ => return,
        };
        if status == StepStatus::Ok {
            self.section.moments.push(Moment {
                name: moment.to_owned(),
                ts: self.event.ts.clone(),
                at_ms: self.at_ms,
            });
        }
    }

    fn sample(&self, value: f64) -> Sample {
        Sample {
            ts: self.event.ts.clone(),
            at_ms: self.at_ms,
            value,
            source: self.event.body.name().to_owned(),
        }
    }

    fn rpo_row(&mut self, topic: &str, partition: i32) -> &mut PartitionRpo {
        self.rpo
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| PartitionRpo {
                topic: topic.to_owned(),
                partition,
                lag_at_declaration: None,
                estimated_loss: None,
                observed_loss: None,
            })
    }

    /// A payload that does not have the shape kdr writes: say so, do not guess.
    fn typed<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &str,
        data: &serde_json::Value,
    ) -> Option<T> {
        match serde_json::from_value(data.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.section.warnings.push(format!(
                    "event {}: the data of {what} was not understood ({e}); it is in the timeline only",
                    self.event.seq
                ));
                None
            }
        }
    }

    fn observation(
        &mut self,
        name: &str,
        detail: &str,
        data: &serde_json::Value,
        translations: &mut BTreeMap<String, GroupTranslationTable>,
        rereads: &mut BTreeMap<String, Reread>,
    ) {
        match name {
            "rpo_baseline" => {
                if let Some(b) = self.typed::<Baseline>(name, data) {
                    for p in &b.partitions {
                        self.rpo_row(&p.source_topic, p.partition)
                            .lag_at_declaration = p.lag;
                    }
                    if let Some(total) = b.total_lag_records {
                        let s = self.sample(total as f64);
                        self.section.lag.push(s);
                    }
                }
            }
            "caught_up" => {
                if let Some(c) = self.typed::<CaughtUp>(name, data) {
                    let total: i64 = c.partitions.iter().filter_map(|p| p.lag).sum();
                    for p in &c.partitions {
                        self.rpo_row(&p.source_topic, p.partition).estimated_loss = p.lag;
                    }
                    let s = self.sample(total as f64);
                    self.section.lag.push(s);
                }
            }
            "group" => {
                if let Some(g) = self.typed::<GroupObserved>(name, data) {
                    translations.insert(
                        g.group.clone(),
                        GroupTranslationTable {
                            group: g.group,
                            state: g.state,
                            partitions: g.partitions,
                        },
                    );
                }
            }
            "reprocessing" => {
                if let Some(r) = self.typed::<Reprocessing>(name, data) {
                    rereads.insert(
                        r.group.clone(),
                        Reread {
                            group: r.group,
                            may_reread: r.may_reread,
                            basis: r.basis,
                        },
                    );
                }
            }
            canary if canary.starts_with("canary_") => self.canary(name, detail, data),
            _ => {}
        }
    }

    fn canary(&mut self, name: &str, detail: &str, data: &serde_json::Value) {
        let figures: BTreeMap<String, serde_json::Value> = data
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(_, v)| !(v.is_array() || v.is_object()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(p99) = data.get("p99_ms").and_then(serde_json::Value::as_f64) {
            let s = self.sample(p99);
            self.section.canary_latency.push(s);
        }
        if name == "canary_data_gap"
            && let Some(gap) = self.typed::<DataGap>(name, data)
        {
            for p in gap.partitions {
                self.rpo_row(&p.topic, p.partition).observed_loss = Some(p.missing);
            }
        }
        self.section.canary.push(CanaryFigure {
            ts: self.event.ts.clone(),
            name: name.to_owned(),
            detail: detail.to_owned(),
            figures,
        });
    }

    fn decision(&mut self, data: &serde_json::Value) {
        // wait_replication's settlement is the only decision that carries lost_records.
        if data.get("lost_records").is_none() {
            return;
        }
        if let Some(s) = self.typed::<Settled>("wait_replication's decision", data) {
            // Partitions left out lost nothing, unless some lag could not be measured.
            if s.partitions_with_unknown_lag == 0 {
                for row in self.rpo.values_mut() {
                    row.estimated_loss = Some(0);
                }
            }
            for p in &s.per_partition {
                self.rpo_row(&p.source_topic, p.partition).estimated_loss = p.lag;
            }
            let sample = self.sample(s.lost_records as f64);
            self.section.lag.push(sample);
        }
    }
}

fn timeline_text(body: &EventBody) -> String {
    match body {
        EventBody::RunStarted {
            plan,
            direction,
            operator,
            reason,
            dry_run,
            resumed,
            ..
        } => format!(
            "{}{direction} of plan {plan} {} by {operator}: {reason}",
            if *dry_run { "dry run: " } else { "" },
            if *resumed { "resumed" } else { "started" }
        ),
        EventBody::StepStarted {
            step,
            kind,
            summary,
        } => format!("step {step} {kind} started: {summary}"),
        EventBody::Observation { name, detail, .. } => format!("{name}: {detail}"),
        EventBody::Decision { who, what, why, .. } => format!("{who} decided: {what} ({why})"),
        EventBody::StepFinished {
            step,
            kind,
            status,
            duration_ms,
            message,
        } => format!(
            "step {step} {kind} {} in {}: {message}",
            status.as_str(),
            super::format_ms(*duration_ms)
        ),
        EventBody::RunFinished {
            outcome,
            duration_ms,
            message,
        } => format!(
            "run {} after {}: {message}",
            outcome.as_str(),
            super::format_ms(*duration_ms)
        ),
    }
}

/// RTO from the first declare step's start to the last validate step that finished ok (or the
/// last finished step when none did), with each phase's share from its steps' durations.
fn rto(steps: &[StepSpan], run_start: &str, direction: Direction) -> Option<Rto> {
    let declare = steps.iter().find(|s| s.kind == "declare");
    let validated = steps
        .iter()
        .rev()
        .find(|s| s.kind == "validate" && s.status == Some(StepStatus::Ok));
    let last_finished = steps.iter().rev().find(|s| s.end_ms.is_some());
    let end = validated.or(last_finished)?;
    let end_ms = end.end_ms?;
    let (from_ms, from_label, from_ts) = match declare {
        Some(d) => (
            d.start_ms,
            format!("declare gate opened (step {} started)", d.step),
            d.started_at.clone(),
        ),
        None => (
            0,
            "run started (no declare step)".to_owned(),
            run_start.to_owned(),
        ),
    };
    let to_label = if validated.is_some() {
        format!(
            "{direction} validated (step {} validate finished ok)",
            end.step
        )
    } else {
        format!(
            "step {} {} finished: the run was never validated",
            end.step, end.kind
        )
    };
    let to_ts = end.finished_at.clone()?;
    let inside: Vec<&StepSpan> = steps
        .iter()
        .filter(|s| s.start_ms >= from_ms && s.end_ms.is_some_and(|e| e <= end_ms))
        .collect();
    let phases: Vec<Phase> = PHASES
        .iter()
        .map(|(name, kind)| {
            let of_kind: Vec<&&StepSpan> = inside.iter().filter(|s| s.kind == *kind).collect();
            Phase {
                name: (*name).to_owned(),
                step_kind: (*kind).to_owned(),
                duration_ms: of_kind.iter().filter_map(|s| s.duration_ms).sum(),
                steps: of_kind.iter().map(|s| s.step).collect(),
            }
        })
        .collect();
    let other_steps_ms: u64 = inside
        .iter()
        .filter(|s| !PHASES.iter().any(|(_, k)| *k == s.kind))
        .filter_map(|s| s.duration_ms)
        .sum();
    let total_ms = end_ms - from_ms;
    let in_steps: u64 = phases.iter().map(|p| p.duration_ms).sum::<u64>() + other_steps_ms;
    Some(Rto {
        label: format!("{from_label} → {to_label}"),
        from_what: from_label,
        from: from_ts,
        to_what: to_label,
        to: to_ts,
        total_ms,
        validated: validated.is_some(),
        phases,
        other_steps_ms,
        between_steps_ms: total_ms.saturating_sub(in_steps),
    })
}
