//! One stream of events feeds the incident log and every subscriber, as nextest's reporter does.
//!
//! Everything a step wants remembered goes through here: it is scrubbed of the plan's secrets,
//! appended (and fsynced) to the incident log, and then handed to each [`EventSink`] in turn:
//! the terminal display, and whatever else a caller subscribed (the rehearsal's disaster).

use serde::Serialize;

use super::{Event, EventBody, Journal, JournalError};
use crate::plan::Secrets;

/// A subscriber to a run's events. The incident log is written first, so a sink only ever sees
/// events that are already on disk; a sink cannot fail the run.
pub trait EventSink: Send {
    /// An event, as it was appended to the incident log.
    fn event(&mut self, event: &Event);

    /// Free text for the operator that is not an event (prompts, hints).
    fn notice(&mut self, _text: &str) {}

    /// One line of a hook's output (`stream` is `stdout` or `stderr`), already scrubbed.
    fn hook_line(&mut self, _stream: &str, _line: &str) {}
}

/// A closure is a sink that only cares about events.
impl<F: FnMut(&Event) + Send> EventSink for F {
    fn event(&mut self, event: &Event) {
        self(event);
    }
}

pub struct Recorder {
    journal: Journal,
    sinks: Vec<Box<dyn EventSink>>,
    secrets: Secrets,
    /// The step now running, stamped on observations and decisions.
    current: Option<(usize, String)>,
}

impl Recorder {
    pub fn new(journal: Journal, sinks: Vec<Box<dyn EventSink>>, secrets: Secrets) -> Self {
        Recorder {
            journal,
            sinks,
            secrets,
            current: None,
        }
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn set_current_step(&mut self, step: Option<(usize, String)>) {
        self.current = step;
    }

    /// Free text for the operator, scrubbed of the plan's secrets, through every sink.
    pub fn say(&mut self, text: &str) {
        let text = self.secrets.redact(text);
        for sink in &mut self.sinks {
            sink.notice(&text);
        }
    }

    /// A line of a hook's output, scrubbed of the plan's secrets, through every sink.
    pub fn hook_line(&mut self, stream: &str, line: &str) {
        let line = self.secrets.redact(line);
        for sink in &mut self.sinks {
            sink.hook_line(stream, &line);
        }
    }

    pub fn record(&mut self, body: EventBody) -> Result<Event, JournalError> {
        let body = self.scrub(body);
        let event = self.journal.append(body)?;
        for sink in &mut self.sinks {
            sink.event(&event);
        }
        Ok(event)
    }

    /// Record what was seen. `data` is anything serialisable; should it not serialise to JSON,
    /// that is an error of the log, never a silently empty payload.
    pub fn observe(
        &mut self,
        name: &str,
        detail: impl Into<String>,
        data: impl Serialize,
    ) -> Result<Event, JournalError> {
        let data = self.payload(name, data)?;
        let (step, kind) = self.step_fields();
        self.record(EventBody::Observation {
            step,
            kind,
            name: name.to_owned(),
            detail: detail.into(),
            data,
        })
    }

    /// Record who decided what and why; `data` as for [`Recorder::observe`].
    pub fn decide(
        &mut self,
        who: &str,
        what: impl Into<String>,
        why: impl Into<String>,
        data: impl Serialize,
    ) -> Result<Event, JournalError> {
        let what = what.into();
        let data = self.payload(&what, data)?;
        let (step, kind) = self.step_fields();
        self.record(EventBody::Decision {
            step,
            kind,
            who: who.to_owned(),
            what,
            why: why.into(),
            data,
        })
    }

    fn payload(&self, what: &str, data: impl Serialize) -> Result<serde_json::Value, JournalError> {
        serde_json::to_value(data).map_err(|source| JournalError::Encode {
            path: self.journal.path().to_owned(),
            what: what.to_owned(),
            source,
        })
    }

    fn step_fields(&self) -> (Option<usize>, Option<String>) {
        match &self.current {
            Some((i, k)) => (Some(*i), Some(k.clone())),
            None => (None, None),
        }
    }

    /// Scrub through the JSON form, so every string field of every event kind is covered,
    /// including ones added later.
    fn scrub(&self, body: EventBody) -> EventBody {
        if self.secrets.is_empty() {
            return body;
        }
        let scrubbed = serde_json::to_value(&body).and_then(|mut value| {
            scrub_value(&mut value, &self.secrets);
            serde_json::from_value(value)
        });
        // An event that cannot be scrubbed is withheld: never written with its secrets.
        scrubbed.unwrap_or_else(|_| EventBody::Observation {
            step: body.step(),
            kind: None,
            name: "withheld".to_owned(),
            detail: format!(
                "a {} event could not be scrubbed of secrets and was not written",
                body.name()
            ),
            data: serde_json::Value::Null,
        })
    }
}

fn scrub_value(value: &mut serde_json::Value, secrets: &Secrets) {
    match value {
        serde_json::Value::String(s) => *s = secrets.redact(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, secrets)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| scrub_value(v, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What a sink got: events, notices and hook lines, in order.
    #[derive(Clone, Default)]
    struct Tape(Arc<Mutex<Vec<String>>>);

    impl EventSink for Tape {
        fn event(&mut self, event: &Event) {
            let line = serde_json::to_string(&event.body).expect("json");
            self.0.lock().expect("lock").push(line);
        }

        fn notice(&mut self, text: &str) {
            self.0.lock().expect("lock").push(format!("notice {text}"));
        }

        fn hook_line(&mut self, stream: &str, line: &str) {
            self.0
                .lock()
                .expect("lock")
                .push(format!("{stream} {line}"));
        }
    }

    #[test]
    fn sinks_see_what_is_logged_scrubbed_of_secrets_and_nothing_is_swallowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.jsonl");
        let tape = Tape::default();
        let mut recorder = Recorder::new(
            Journal::create(&path, "r1").expect("log"),
            vec![Box::new(tape.clone())],
            Secrets::new(vec!["hunter2".to_owned()]),
        );
        recorder
            .observe("probe", "password hunter2 seen", ["hunter2"])
            .expect("observe");
        recorder.say("say hunter2");
        recorder.hook_line("stderr", "echo hunter2");
        // A map with non-string keys has no JSON form: an error, never an empty payload.
        let unencodable = BTreeMap::from([((1, 2), 3)]);
        let err = recorder
            .decide("kdr", "what", "why", &unencodable)
            .expect_err("no JSON form");
        assert!(matches!(err, JournalError::Encode { .. }), "{err}");

        let logged = super::super::read(&path).expect("read").events;
        assert_eq!(logged.len(), 1, "the failed decision was not written");
        let seen = tape.0.lock().expect("lock").clone();
        assert_eq!(
            seen[0],
            serde_json::to_string(&logged[0].body).expect("json")
        );
        assert!(!seen.iter().any(|l| l.contains("hunter2")), "{seen:?}");
        assert_eq!(
            seen[2], "stderr echo ***",
            "hook lines are scrubbed before any sink"
        );
    }
}
