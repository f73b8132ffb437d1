//! Live progress of a run on stderr: one line per step start and finish, hook output indented,
//! and a counting line per batch where a step records thousands of groups.

use std::io::{IsTerminal, Write};

use crate::journal::{Event, EventBody, EventSink, Outcome, StepStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// `auto` is off when stderr is not a terminal, under `NO_COLOR`, or with `TERM=dumb`.
    pub fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var("TERM").map_or(true, |t| t != "dumb")
            }
        }
    }
}

/// The terminal display of a run: one [`EventSink`] of the engine's event stream.
pub struct Progress {
    color: bool,
    total_steps: usize,
}

impl Progress {
    pub fn new(color: bool, total_steps: usize) -> Self {
        Progress { color, total_steps }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Free text for the operator (prompts, hints), on stderr.
    pub fn say(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    /// A line of a hook's output, shown as it arrives.
    pub fn hook_line(&mut self, stream: &str, line: &str) {
        let marker = if stream == "stderr" { "!" } else { "|" };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "      {} {line}", self.paint("2", marker));
    }

    pub fn event(&mut self, event: &Event) {
        let line = match &event.body {
            EventBody::RunStarted {
                plan,
                direction,
                operator,
                dry_run,
                resumed,
                ..
            } => {
                let mode = match (dry_run, resumed) {
                    (true, _) => " (dry run)",
                    (false, true) => " (resumed)",
                    _ => "",
                };
                Some(format!(
                    "{} {direction} of plan {plan}{mode}, run {}, operator {operator}",
                    self.paint("1", "kdr"),
                    event.run_id
                ))
            }
            EventBody::StepStarted {
                step,
                kind,
                summary,
            } => Some(format!(
                "{} [{step}/{}] {kind}: {summary}",
                self.paint("36", ">"),
                self.total_steps
            )),
            EventBody::Observation { name, detail, .. }
                if name != "output" && name != crate::journal::HOOK_STARTED =>
            {
                Some(format!("      {} {detail}", self.paint("2", "·")))
            }
            EventBody::Decision { who, what, why, .. } => Some(format!(
                "      {} {who}: {what}{}",
                self.paint("33", "decision"),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                }
            )),
            EventBody::StepFinished {
                step,
                kind,
                status,
                duration_ms,
                message,
            } => {
                let (mark, color) = match status {
                    StepStatus::Ok => ("ok", "32"),
                    StepStatus::Failed => ("FAILED", "31"),
                    StepStatus::Skipped => ("skipped", "33"),
                    StepStatus::DryRun => ("dry run", "36"),
                };
                Some(format!(
                    "{} [{step}/{}] {kind} {} in {}: {message}",
                    self.paint(
                        color,
                        if *status == StepStatus::Failed {
                            "x"
                        } else {
                            "+"
                        }
                    ),
                    self.total_steps,
                    self.paint(color, mark),
                    format_ms(*duration_ms),
                ))
            }
            EventBody::RunFinished {
                outcome,
                duration_ms,
                message,
            } => {
                let color = match outcome {
                    Outcome::Succeeded | Outcome::DryRun => "32",
                    _ => "31",
                };
                Some(format!(
                    "{} {} after {}: {message}",
                    self.paint("1", "run"),
                    self.paint(color, outcome.words()),
                    format_ms(*duration_ms)
                ))
            }
            EventBody::Observation { .. } => None,
        };
        if let Some(line) = line {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
        }
    }
}

impl EventSink for Progress {
    fn event(&mut self, event: &Event) {
        Progress::event(self, event);
    }

    fn notice(&mut self, text: &str) {
        self.say(text);
    }

    fn hook_line(&mut self, stream: &str, line: &str) {
        Progress::hook_line(self, stream, line);
    }

    /// A step that records thousands of groups shows one counting line per batch; the log
    /// keeps every event.
    fn batch(&mut self, _events: &[Event], counted: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "      {} {counted}", self.paint("2", "·"));
    }
}

/// `850ms`, `12.3s`, `2m 05s`: short, for humans.
pub fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}
