//! Where a resumed run picks up, read from its incident log.

use crate::journal::{Event, EventBody, Outcome};
use crate::plan::{Direction, Plan};

/// The state of an earlier run, as its log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub run_id: String,
    pub last_seq: u64,
    pub operator: String,
    pub reason: String,
    /// 1-based index of the first step that is not done.
    pub next_step: usize,
    /// The step that was running when the earlier process stopped (started, never finished).
    pub interrupted: Option<InterruptedStep>,
    /// Hooks the log saw start and never saw end: an earlier process was killed while they ran,
    /// and they may still be running.
    pub unfinished_hooks: Vec<LoggedHook>,
}

/// A hook as its `hook_started` observation logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedHook {
    pub step: Option<usize>,
    /// The hook's pid, which is also its process group.
    pub pid: i32,
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptedStep {
    pub index: usize,
    pub kind: String,
    /// Safe to run again without asking.
    pub idempotent: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResumeError {
    #[error("the log does not start with a run_started event")]
    NoStart,
    #[error("the log is of a {found} run; this is a {wanted}")]
    WrongDirection { found: Direction, wanted: Direction },
    #[error("the log is of plan `{found}`; this plan is `{wanted}`")]
    WrongPlan { found: String, wanted: String },
    #[error(
        "the plan changed since the logged run (fingerprint {found}, now {now}): resuming would run steps the log does not describe; start a new run instead"
    )]
    FingerprintChanged { found: String, now: String },
    #[error("the logged run was a dry run: there is nothing to resume; start a real run")]
    DryRun,
    #[error("the logged run already {0}: there is nothing to resume")]
    Finished(&'static str),
    #[error(
        "the hook of step {step} (`{command}`) that the earlier run started is still running as pid {pid}: running the step again beside it could do its work twice; let it end or stop it (`kill -TERM -- -{pid}`, its process group), then resume",
        step = hook.step.map_or("?".to_owned(), |s| s.to_string()), command = hook.command, pid = hook.pid
    )]
    HookRunning { hook: LoggedHook },
}

pub fn resume_point(
    events: &[Event],
    plan: &Plan,
    direction: Direction,
) -> Result<ResumePoint, ResumeError> {
    let Some(first) = events.first() else {
        return Err(ResumeError::NoStart);
    };
    let EventBody::RunStarted {
        plan: plan_name,
        fingerprint,
        direction: logged_direction,
        operator,
        reason,
        dry_run,
        ..
    } = &first.body
    else {
        return Err(ResumeError::NoStart);
    };
    if *plan_name != plan.name {
        return Err(ResumeError::WrongPlan {
            found: plan_name.clone(),
            wanted: plan.name.clone(),
        });
    }
    if *logged_direction != direction {
        return Err(ResumeError::WrongDirection {
            found: *logged_direction,
            wanted: direction,
        });
    }
    if *fingerprint != plan.fingerprint {
        return Err(ResumeError::FingerprintChanged {
            found: fingerprint.clone(),
            now: plan.fingerprint.clone(),
        });
    }
    if *dry_run {
        return Err(ResumeError::DryRun);
    }
    // Only the latest run_finished matters: a resumed run appends its own.
    let last_finish = events.iter().rev().find_map(|e| match &e.body {
        EventBody::RunFinished { outcome, .. } => Some(*outcome),
        _ => None,
    });
    let last_start = events
        .iter()
        .rposition(|e| matches!(e.body, EventBody::RunStarted { .. }));
    let finished_after_last_start = events
        .iter()
        .rposition(|e| matches!(e.body, EventBody::RunFinished { .. }))
        .zip(last_start)
        .is_some_and(|(f, s)| f > s);
    if finished_after_last_start && last_finish == Some(Outcome::Succeeded) {
        return Err(ResumeError::Finished("succeeded"));
    }

    let steps = plan.steps(direction);
    let mut done = vec![false; steps.len()];
    let mut open: Option<usize> = None;
    let mut hooks: Vec<LoggedHook> = Vec::new();
    for event in events {
        match &event.body {
            EventBody::Observation {
                step, name, data, ..
            } => {
                let pid = data["pid"].as_i64().and_then(|p| i32::try_from(p).ok());
                match (name.as_str(), pid) {
                    (crate::journal::HOOK_STARTED, Some(pid)) => hooks.push(LoggedHook {
                        step: *step,
                        pid,
                        command: data["command"].as_str().unwrap_or_default().to_owned(),
                    }),
                    ("output", Some(pid)) => hooks.retain(|h| h.pid != pid),
                    _ => {}
                }
            }
            EventBody::StepStarted { step, .. } => open = Some(*step),
            EventBody::StepFinished { step, status, .. } => {
                if let Some(slot) = step.checked_sub(1).and_then(|i| done.get_mut(i)) {
                    *slot = status.is_done();
                }
                if open == Some(*step) {
                    open = None;
                }
            }
            // A new process started: whatever was open before it was cut off.
            EventBody::RunStarted { .. } => {}
            _ => {}
        }
    }
    let next_step = done
        .iter()
        .position(|d| !d)
        .map_or(steps.len() + 1, |i| i + 1);
    let interrupted = open.filter(|i| *i == next_step).and_then(|index| {
        steps.get(index - 1).map(|s| InterruptedStep {
            index,
            kind: s.kind.name().to_owned(),
            idempotent: s.kind.idempotent(),
        })
    });
    Ok(ResumePoint {
        run_id: first.run_id.clone(),
        last_seq: events.last().map_or(0, |e| e.seq),
        operator: operator.clone(),
        reason: reason.clone(),
        next_step,
        interrupted,
        unfinished_hooks: hooks,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::journal::{Event, EventBody, Outcome, StepStatus};
    use crate::plan::{Direction, SystemSubstitutions, load_bytes};

    fn plan() -> Plan {
        let text = "version: 1\nname: p\nclusters:\n  primary: { bootstrap_servers: \"a:1\" }\n  dr: { bootstrap_servers: \"b:1\" }\nreplication: { topics: [t] }\nfailover:\n  - exec: { run: \"one\", idempotent: true }\n  - exec: { run: \"two\" }\n  - pause: { message: \"m\" }\nfailback:\n  - exec: { run: \"x\" }\n";
        load_bytes(
            Path::new("p.yaml"),
            text.as_bytes(),
            Path::new("."),
            &SystemSubstitutions,
        )
        .expect("plan")
    }

    fn started(plan: &Plan, dry_run: bool) -> EventBody {
        EventBody::RunStarted {
            plan: plan.name.clone(),
            fingerprint: plan.fingerprint.clone(),
            plan_file: "p.yaml".into(),
            direction: Direction::Failover,
            operator: "alice".into(),
            reason: "why".into(),
            dry_run,
            resumed: false,
            kdr_version: "0".into(),
            host: "h".into(),
            pid: 1,
        }
    }

    fn step_started(step: usize) -> EventBody {
        EventBody::StepStarted {
            step,
            kind: "exec".into(),
            summary: String::new(),
        }
    }

    fn finished(step: usize, status: StepStatus) -> EventBody {
        EventBody::StepFinished {
            step,
            kind: "exec".into(),
            status,
            duration_ms: 1,
            message: String::new(),
        }
    }

    fn log(bodies: Vec<EventBody>) -> Vec<Event> {
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Event {
                v: 1,
                seq: i as u64 + 1,
                ts: String::new(),
                run_id: "r".into(),
                body,
            })
            .collect()
    }

    #[test]
    fn the_next_step_is_the_first_not_done_and_a_cut_step_is_reported() {
        let p = plan();
        // (name, the log, next step, the interrupted step and whether it is idempotent)
        type Case = (&'static str, Vec<EventBody>, usize, Option<(usize, bool)>);
        let cases: Vec<Case> = vec![
            ("nothing ran", vec![started(&p, false)], 1, None),
            (
                "first done",
                vec![
                    started(&p, false),
                    step_started(1),
                    finished(1, StepStatus::Ok),
                ],
                2,
                None,
            ),
            (
                "second failed: run it again",
                vec![
                    started(&p, false),
                    step_started(1),
                    finished(1, StepStatus::Ok),
                    step_started(2),
                    finished(2, StepStatus::Failed),
                ],
                2,
                None,
            ),
            (
                "second cut short: not idempotent",
                vec![
                    started(&p, false),
                    step_started(1),
                    finished(1, StepStatus::Ok),
                    step_started(2),
                ],
                2,
                Some((2, false)),
            ),
            (
                "first cut short: idempotent",
                vec![started(&p, false), step_started(1)],
                1,
                Some((1, true)),
            ),
            (
                "skipped counts as done",
                vec![
                    started(&p, false),
                    step_started(1),
                    finished(1, StepStatus::Skipped),
                    step_started(2),
                    finished(2, StepStatus::Ok),
                ],
                3,
                None,
            ),
        ];
        for (name, bodies, next, interrupted) in cases {
            let point = resume_point(&log(bodies), &p, Direction::Failover)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(point.next_step, next, "{name}");
            assert_eq!(
                point.interrupted.map(|i| (i.index, i.idempotent)),
                interrupted,
                "{name}"
            );
        }
    }

    #[test]
    fn a_hook_that_started_and_never_ended_is_reported_with_its_pid() {
        let p = plan();
        let hook = |name: &str, pid: i32| EventBody::Observation {
            step: Some(2),
            kind: Some("exec".into()),
            name: name.into(),
            detail: String::new(),
            data: serde_json::json!({ "command": "two", "pid": pid }),
        };
        let events = log(vec![
            started(&p, false),
            step_started(1),
            hook(crate::journal::HOOK_STARTED, 41),
            hook("output", 41),
            finished(1, StepStatus::Ok),
            step_started(2),
            hook(crate::journal::HOOK_STARTED, 42),
        ]);
        let point = resume_point(&events, &p, Direction::Failover).expect("point");
        assert_eq!(
            point.unfinished_hooks,
            [LoggedHook {
                step: Some(2),
                pid: 42,
                command: "two".into()
            }]
        );
    }

    #[test]
    fn logs_that_cannot_be_resumed_say_why() {
        let p = plan();
        let done = log(vec![
            started(&p, false),
            EventBody::RunFinished {
                outcome: Outcome::Succeeded,
                duration_ms: 1,
                message: String::new(),
            },
        ]);
        assert_eq!(
            resume_point(&done, &p, Direction::Failover),
            Err(ResumeError::Finished("succeeded"))
        );
        assert_eq!(
            resume_point(&log(vec![started(&p, true)]), &p, Direction::Failover),
            Err(ResumeError::DryRun)
        );
        assert!(matches!(
            resume_point(&log(vec![started(&p, false)]), &p, Direction::Failback),
            Err(ResumeError::WrongDirection { .. })
        ));
        let mut other = p.clone();
        other.fingerprint = "sha256:other".into();
        assert!(matches!(
            resume_point(&log(vec![started(&p, false)]), &other, Direction::Failover),
            Err(ResumeError::FingerprintChanged { .. })
        ));
        assert_eq!(
            resume_point(&log(vec![step_started(1)]), &p, Direction::Failover),
            Err(ResumeError::NoStart)
        );
        // A run that failed can be resumed even though it has a run_finished.
        let failed = log(vec![
            started(&p, false),
            step_started(1),
            finished(1, StepStatus::Failed),
            EventBody::RunFinished {
                outcome: Outcome::Failed,
                duration_ms: 1,
                message: String::new(),
            },
        ]);
        assert_eq!(
            resume_point(&failed, &p, Direction::Failover).map(|r| r.next_step),
            Ok(1)
        );
    }
}
