//! A run's summary: what the engine hands back and the reports render (the final table, the
//! `--output json` of a run). It lives beside the events it summarises, below both.

use std::path::PathBuf;

use super::{Outcome, StepStatus};
use crate::plan::Direction;

/// One step's result, for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub step: usize,
    pub kind: String,
    pub status: StepStatus,
    pub duration_ms: u64,
    pub message: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub plan: String,
    pub direction: Direction,
    pub outcome: Outcome,
    pub dry_run: bool,
    pub log: PathBuf,
    pub duration_ms: u64,
    pub steps: Vec<StepReport>,
    pub message: String,
}
