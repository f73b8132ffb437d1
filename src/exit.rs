//! Exit codes: a documented contract, one per kind of ending (see `kdr --help`).
//!
//! Each error type that can end a command says which code it ends with ([`ExitStatus`], as
//! nextest's `ExpectedError::process_exit_code`), so `app.rs` prints and maps in one place and a
//! plan problem is 2 whichever command found it.

use crate::engine::EngineError;
use crate::journal::{JournalError, Outcome};
use crate::lookup::LookupError;
use crate::plan::PlanError;
use crate::rehearsal::drill::DrillError;
use crate::report::incident::ReportError;

/// The run or check succeeded (a dry run that would proceed counts).
pub const OK: u8 = 0;
/// A step failed, or a check did not hold.
pub const FAILED: u8 = 1;
/// Bad usage or an invalid plan: nothing was done.
pub const USAGE: u8 = 2;
/// An operator aborted at a human gate.
pub const ABORTED: u8 = 3;
/// Interrupted with Ctrl-C.
pub const INTERRUPTED: u8 = 130;

pub const HELP: &str = "Exit codes:
  0    success (a dry run that would proceed counts)
  1    a step failed or a check did not hold
  2    bad usage or an invalid plan; nothing was done
  3    aborted by the operator at a human gate
  130  interrupted (Ctrl-C)";

/// An error that ends a command: how it reads on stderr and which exit code it ends with.
pub trait ExitStatus: std::fmt::Display {
    fn exit_code(&self) -> u8;

    /// The text for stderr. Errors that already show where they point (a plan's problems with
    /// file, line and key path) print themselves; the rest read after `error: `.
    fn message(&self) -> String {
        format!("error: {self}")
    }
}

impl ExitStatus for PlanError {
    fn exit_code(&self) -> u8 {
        USAGE
    }

    fn message(&self) -> String {
        match self {
            PlanError::Invalid { .. } => self.to_string(),
            PlanError::Read { .. } => format!("error: {self}"),
        }
    }
}

impl ExitStatus for EngineError {
    fn exit_code(&self) -> u8 {
        match self {
            EngineError::Usage(_) | EngineError::Resume { .. } | EngineError::Config(_) => USAGE,
            EngineError::Refused(_) | EngineError::Lock(_) | EngineError::Journal(_) => FAILED,
        }
    }
}

impl ExitStatus for LookupError {
    fn exit_code(&self) -> u8 {
        match self {
            LookupError::Config(_) => USAGE,
            LookupError::Failed(_) | LookupError::TimedOut(_) => FAILED,
        }
    }
}

/// `kdr log show` of a log that cannot be read: the operator named the wrong file.
impl ExitStatus for JournalError {
    fn exit_code(&self) -> u8 {
        USAGE
    }
}

impl ExitStatus for DrillError {
    fn exit_code(&self) -> u8 {
        match self {
            DrillError::Plan(e) => e.exit_code(),
            // A plan the drill cannot rehearse is a plan problem, found before anything ran.
            DrillError::Unsuitable { .. } | DrillError::CanaryNotReplicated { .. } => USAGE,
            DrillError::Engine(e) => e.exit_code(),
            // The embedded world failed, the disaster could not be staged, or kdr's own log
            // could not be read back: the drill failed, nothing was wrong with the plan.
            DrillError::World(_) | DrillError::Disaster(_) | DrillError::Evidence(_) => FAILED,
            DrillError::Interrupted(_) => INTERRUPTED,
        }
    }

    fn message(&self) -> String {
        match self {
            DrillError::Plan(e) => e.message(),
            _ => format!("error: {self}"),
        }
    }
}

/// `kdr report` of logs that cannot be read, or a report that cannot be written: the operator
/// named the wrong file.
impl ExitStatus for ReportError {
    fn exit_code(&self) -> u8 {
        USAGE
    }
}

/// Why the command could not be carried out at all, outside any domain (the machine's side).
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("failed to start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// A usage rule the command line cannot express (clap reports the rest itself).
    #[error("{0}")]
    Usage(String),
    /// The operator did not confirm at the terminal: nothing was done.
    #[error("{0}")]
    Aborted(String),
}

impl ExitStatus for EdgeError {
    fn exit_code(&self) -> u8 {
        match self {
            EdgeError::Runtime(_) => FAILED,
            EdgeError::Usage(_) => USAGE,
            EdgeError::Aborted(_) => ABORTED,
        }
    }
}

/// How a run that ended (a report, not an error) maps to an exit code.
pub fn of_outcome(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Succeeded | Outcome::DryRun => OK,
        Outcome::Failed => FAILED,
        Outcome::Aborted => ABORTED,
        Outcome::Interrupted => INTERRUPTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_problem_is_usage_whichever_command_found_it() {
        let unsuitable = DrillError::Unsuitable {
            plan: "p".into(),
            why: "patterns".into(),
        };
        assert_eq!(unsuitable.exit_code(), USAGE);
        let engine_usage = DrillError::Engine(EngineError::Usage("bad".into()));
        assert_eq!(engine_usage.exit_code(), USAGE);
        assert_eq!(engine_usage.message(), "error: bad");
    }

    #[test]
    fn a_journal_failure_in_a_drill_is_a_failure_not_usage() {
        let e = DrillError::Engine(EngineError::Journal(JournalError::Empty {
            path: "x.jsonl".into(),
        }));
        assert_eq!(e.exit_code(), FAILED);
    }
}
