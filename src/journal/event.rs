//! Incident-log events: the versioned contract of the JSON Lines file.

use serde::{Deserialize, Serialize};

use crate::plan::Direction;

/// The incident log's schema version; bump it when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

/// One line of the incident log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    /// 1, 2, 3… within a log file, across resumes.
    pub seq: u64,
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    pub run_id: String,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventBody {
    RunStarted {
        plan: String,
        fingerprint: String,
        plan_file: String,
        direction: Direction,
        operator: String,
        reason: String,
        dry_run: bool,
        /// True when this run continues an earlier one from the same log (`--resume`).
        resumed: bool,
        kdr_version: String,
        host: String,
        pid: u32,
    },
    StepStarted {
        step: usize,
        kind: String,
        /// What the step is about to do, in the plan's words (secrets shown as references).
        summary: String,
    },
    /// Something kdr saw: a command's output, an offset, a lag.
    Observation {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        name: String,
        detail: String,
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        data: serde_json::Value,
    },
    /// Something somebody chose: who (an operator's name or `kdr`), what, and why.
    Decision {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        who: String,
        what: String,
        why: String,
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        data: serde_json::Value,
    },
    StepFinished {
        step: usize,
        kind: String,
        status: StepStatus,
        duration_ms: u64,
        message: String,
    },
    RunFinished {
        outcome: Outcome,
        duration_ms: u64,
        message: String,
    },
}

impl EventBody {
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::RunStarted { .. } => "run_started",
            EventBody::StepStarted { .. } => "step_started",
            EventBody::Observation { .. } => "observation",
            EventBody::Decision { .. } => "decision",
            EventBody::StepFinished { .. } => "step_finished",
            EventBody::RunFinished { .. } => "run_finished",
        }
    }

    pub fn step(&self) -> Option<usize> {
        match self {
            EventBody::StepStarted { step, .. } | EventBody::StepFinished { step, .. } => {
                Some(*step)
            }
            EventBody::Observation { step, .. } | EventBody::Decision { step, .. } => *step,
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Failed,
    Skipped,
    /// Dry run: the step said what it would do and did nothing.
    DryRun,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::DryRun => "dry_run",
        }
    }

    /// How a sentence or a table says it: `dry run` rather than `dry_run`.
    pub fn words(self) -> &'static str {
        match self {
            StepStatus::DryRun => "dry run",
            other => other.as_str(),
        }
    }

    /// Done for good: `--resume` does not run it again.
    pub fn is_done(self) -> bool {
        matches!(self, StepStatus::Ok | StepStatus::Skipped)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// A dry run that found nothing stopping the plan.
    DryRun,
    Failed,
    /// An operator declined at a human gate.
    Aborted,
    /// Ctrl-C.
    Interrupted,
}

/// What translate_offsets did with one group: the `outcome` field of its `group` observation,
/// the typed word readers count (the metrics' translated groups), never the observation's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupOutcome {
    /// The translated offsets were committed on the target.
    Committed,
    /// A dry run: they would have been.
    WouldCommit,
    /// The group has live members on the target: it was not touched.
    Refused,
    /// The target refused the commit.
    CommitRefused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::DryRun => "dry_run",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// How a sentence says it: `dry run passed` rather than `dry_run`.
    pub fn words(self) -> &'static str {
        match self {
            Outcome::DryRun => "dry run passed",
            other => other.as_str(),
        }
    }
}
