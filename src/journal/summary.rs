//! A run's summary: what the engine hands back and the reports render (the final table, the
//! `--output json` of a run). It lives beside the events it summarises, below both.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Event, EventBody, Outcome, StepStatus};
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
    /// This invocation's duration.
    pub duration_ms: u64,
    /// Every step of the run that ended, also in earlier invocations (a `--resume` continues
    /// the run of its log): each step's latest ending.
    pub steps: Vec<StepReport>,
    pub message: String,
    /// 1, plus one per `--resume`.
    pub invocations: usize,
    /// The whole run's duration, from its first start, across invocations.
    pub total_duration_ms: u64,
    /// From the declaration to the end, for a run that succeeded.
    pub rto_ms: Option<u64>,
    /// What to run next, when the run stopped short: the exact `--resume` command, or for a
    /// dry run the dry run again.
    pub next_command: Option<String>,
}

/// A run as its whole log tells it, across every invocation (`--resume` appends to the log).
#[derive(Debug, Clone)]
pub struct WholeRun {
    /// Each step's latest ending, in step order.
    pub steps: Vec<StepReport>,
    /// How many processes ran it: 1, plus one per `--resume`.
    pub invocations: usize,
    /// From the first start to the last event.
    pub total_ms: u64,
    /// Recovery time of a run that succeeded: from its declaration (the first `declare` step's
    /// start, else the run's start) to its end.
    pub rto_ms: Option<u64>,
}

/// Sum up a run from its log's events.
pub fn whole_run(events: &[Event]) -> WholeRun {
    let mut tally = RunTally::default();
    for event in events {
        tally.add(&event.ts, &event.body);
    }
    tally.whole()
}

/// A [`WholeRun`] kept up to date one event at a time, so the end of a run sums it up without
/// reading its log back: the recorder folds in every event it writes, and a resumed run starts
/// from what its earlier invocations logged. It holds a few words per step, never a payload.
#[derive(Debug, Clone, Default)]
pub struct RunTally {
    steps: BTreeMap<usize, StepReport>,
    invocations: usize,
    first: Option<String>,
    last: Option<String>,
    /// The first `declare` step's start.
    declared: Option<String>,
    /// The last `run_finished` said the run succeeded.
    succeeded: bool,
}

impl RunTally {
    /// Fold in one event, in log order.
    pub fn add(&mut self, ts: &str, body: &EventBody) {
        if self.first.is_none() {
            self.first = Some(ts.to_owned());
        }
        match &mut self.last {
            Some(last) => ts.clone_into(last),
            None => self.last = Some(ts.to_owned()),
        }
        match body {
            EventBody::RunStarted { .. } => self.invocations += 1,
            EventBody::StepStarted { kind, .. } if kind == "declare" && self.declared.is_none() => {
                self.declared = Some(ts.to_owned());
            }
            EventBody::StepFinished {
                step,
                kind,
                status,
                duration_ms,
                message,
            } => {
                self.steps.insert(
                    *step,
                    StepReport {
                        step: *step,
                        kind: kind.clone(),
                        status: *status,
                        duration_ms: *duration_ms,
                        message: message.clone(),
                    },
                );
            }
            EventBody::RunFinished { outcome, .. } => {
                self.succeeded = *outcome == Outcome::Succeeded;
            }
            _ => {}
        }
    }

    /// The run as the events folded in so far tell it.
    pub fn whole(&self) -> WholeRun {
        let last = self.last.as_deref();
        let span = |from: Option<&str>| millis_between(from?, last?);
        let first = self.first.as_deref();
        WholeRun {
            steps: self.steps.values().cloned().collect(),
            invocations: self.invocations,
            total_ms: span(first).unwrap_or(0),
            rto_ms: if self.succeeded {
                span(self.declared.as_deref().or(first))
            } else {
                None
            },
        }
    }
}

/// Milliseconds from one RFC 3339 time to a later one; `None` when either does not parse.
fn millis_between(from: &str, to: &str) -> Option<u64> {
    let from = humantime::parse_rfc3339(from).ok()?;
    let to = humantime::parse_rfc3339(to).ok()?;
    Some(to.duration_since(from).map_or(0, |d| d.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u32, body: EventBody) -> Event {
        Event {
            v: 1,
            seq: u64::from(second),
            ts: format!("2026-12-02T03:{:02}:{:02}.000Z", second / 60, second % 60),
            run_id: "r".into(),
            body,
        }
    }

    fn started() -> EventBody {
        EventBody::RunStarted {
            plan: "p".into(),
            fingerprint: "f".into(),
            plan_file: "p.yaml".into(),
            direction: Direction::Failover,
            operator: "alice".into(),
            reason: "r".into(),
            dry_run: false,
            resumed: false,
            kdr_version: "0".into(),
            host: "h".into(),
            pid: 1,
        }
    }

    fn step(step: usize, kind: &str, started: bool, status: StepStatus) -> EventBody {
        if started {
            return EventBody::StepStarted {
                step,
                kind: kind.into(),
                summary: String::new(),
            };
        }
        EventBody::StepFinished {
            step,
            kind: kind.into(),
            status,
            duration_ms: 1000,
            message: status.as_str().into(),
        }
    }

    fn finished(outcome: Outcome) -> EventBody {
        EventBody::RunFinished {
            outcome,
            duration_ms: 1,
            message: String::new(),
        }
    }

    #[test]
    fn a_resumed_run_is_summed_up_whole_from_its_log() {
        use StepStatus::{Failed, Ok};
        let events = vec![
            at(0, started()),
            at(1, step(1, "exec", true, Ok)),
            at(2, step(1, "exec", false, Ok)),
            at(3, step(2, "declare", true, Ok)),
            at(4, step(2, "declare", false, Ok)),
            at(5, step(3, "exec", true, Ok)),
            at(6, step(3, "exec", false, Failed)),
            at(7, finished(Outcome::Failed)),
            at(400, started()),
            at(401, step(3, "exec", true, Ok)),
            at(412, step(3, "exec", false, Ok)),
            at(412, finished(Outcome::Succeeded)),
        ];
        let whole = whole_run(&events);
        let steps: Vec<(usize, StepStatus)> =
            whole.steps.iter().map(|s| (s.step, s.status)).collect();
        assert_eq!(steps, [(1, Ok), (2, Ok), (3, Ok)]);
        assert_eq!(whole.invocations, 2);
        assert_eq!(whole.total_ms, 412_000);
        assert_eq!(whole.rto_ms, Some(409_000), "from the declaration");
        let failed = whole_run(&events[..8]);
        assert_eq!((failed.invocations, failed.rto_ms), (1, None));
        assert_eq!(failed.steps.last().map(|s| s.status), Some(Failed));
    }
}
