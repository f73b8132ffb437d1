//! One stream of events feeds the incident log and the terminal, as nextest's reporter does.
//!
//! Everything a step wants remembered goes through here: it is scrubbed of the plan's secrets,
//! appended (and fsynced) to the incident log, and then shown to the operator.

use crate::journal::{Event, EventBody, Journal, JournalError};
use crate::plan::Secrets;
use crate::report::Progress;

pub struct Recorder {
    journal: Journal,
    progress: Progress,
    secrets: Secrets,
    /// The step now running, stamped on observations and decisions.
    current: Option<(usize, String)>,
    events: Vec<Event>,
}

impl Recorder {
    pub fn new(journal: Journal, progress: Progress, secrets: Secrets) -> Self {
        Recorder {
            journal,
            progress,
            secrets,
            current: None,
            events: Vec::new(),
        }
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn progress(&mut self) -> &mut Progress {
        &mut self.progress
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The events this process wrote, for the summary.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn set_current_step(&mut self, step: Option<(usize, String)>) {
        self.current = step;
    }

    pub fn record(&mut self, body: EventBody) -> Result<Event, JournalError> {
        let body = self.scrub(body);
        let event = self.journal.append(body)?;
        self.progress.event(&event);
        self.events.push(event.clone());
        Ok(event)
    }

    pub fn observe(
        &mut self,
        name: &str,
        detail: impl Into<String>,
        data: serde_json::Value,
    ) -> Result<Event, JournalError> {
        let (step, kind) = self.step_fields();
        self.record(EventBody::Observation {
            step,
            kind,
            name: name.to_owned(),
            detail: detail.into(),
            data,
        })
    }

    pub fn decide(
        &mut self,
        who: &str,
        what: impl Into<String>,
        why: impl Into<String>,
        data: serde_json::Value,
    ) -> Result<Event, JournalError> {
        let (step, kind) = self.step_fields();
        self.record(EventBody::Decision {
            step,
            kind,
            who: who.to_owned(),
            what: what.into(),
            why: why.into(),
            data,
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
        let Ok(mut value) = serde_json::to_value(&body) else {
            return body;
        };
        scrub_value(&mut value, &self.secrets);
        serde_json::from_value(value).unwrap_or_else(|_| EventBody::Observation {
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
