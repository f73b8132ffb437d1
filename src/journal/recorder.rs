//! One stream of events feeds the incident log and every subscriber, as nextest's reporter does.
//!
//! Everything a step wants remembered goes through here: it is scrubbed of the plan's secrets,
//! appended (and fsynced) to the incident log, and then handed to each [`EventSink`] in turn:
//! the terminal display, and whatever else a caller subscribed (the rehearsal's disaster).

use serde::Serialize;

use super::{Event, EventBody, Journal, JournalError, RunTally, WholeRun};
use crate::plan::Secrets;

/// How long work runs before [`Recorder::say_while`] says how it is going, and how often then.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A subscriber to a run's events. The incident log is written first, so a sink only ever sees
/// events that are already on disk; a sink cannot fail the run.
pub trait EventSink: Send {
    /// An event, as it was appended to the incident log.
    fn event(&mut self, event: &Event);

    /// Free text for the operator that is not an event (prompts, hints).
    fn notice(&mut self, _text: &str) {}

    /// One line of a hook's output (`stream` is `stdout` or `stderr`), already scrubbed.
    fn hook_line(&mut self, _stream: &str, _line: &str) {}

    /// A batch of events written with one fsync, with a line that counts what it holds for a
    /// display that shows batches rather than each of their events (thousands of groups). By
    /// default each event is seen as if recorded alone.
    fn batch(&mut self, events: &[Event], _counted: &str) {
        for event in events {
            self.event(event);
        }
    }
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
    /// Events recorded since [`Recorder::begin_batch`], not yet written.
    pending: Option<Vec<Event>>,
    /// The whole run so far, earlier invocations included, for its summary at the end.
    tally: RunTally,
}

impl Recorder {
    pub fn new(journal: Journal, sinks: Vec<Box<dyn EventSink>>, secrets: Secrets) -> Self {
        Recorder {
            journal,
            sinks,
            secrets,
            current: None,
            pending: None,
            tally: RunTally::default(),
        }
    }

    /// Continue the summary of a run whose earlier invocations logged these events.
    pub fn with_earlier(mut self, earlier: RunTally) -> Self {
        self.tally = earlier;
        self
    }

    /// The run as its log tells it so far, across invocations, without reading the log back.
    pub fn whole_run(&self) -> WholeRun {
        self.tally.whole()
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

    /// Awaits `work`, and while it runs tells every sink how it is going: `progress()` once a
    /// second, with the seconds since it began, so a look-up of thousands of groups is never a
    /// silent wait at the terminal. Not logged: the log says what the work found once it ends.
    pub async fn say_while<T>(
        &mut self,
        work: impl Future<Output = T>,
        progress: impl Fn() -> String,
    ) -> T {
        let began = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(began + PROGRESS_EVERY, PROGRESS_EVERY);
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                at = tick.tick() => {
                    let secs = (at - began).as_secs();
                    self.say(&format!("      … {} ({secs}s)", progress()));
                }
            }
        }
    }

    /// A line of a hook's output, scrubbed of the plan's secrets, through every sink.
    pub fn hook_line(&mut self, stream: &str, line: &str) {
        let line = self.secrets.redact(line);
        for sink in &mut self.sinks {
            sink.hook_line(stream, &line);
        }
    }

    /// Record an event: appended and fsynced, then shown to every sink; its sequence number.
    /// Within a batch it is numbered now and written with the batch (not on disk yet).
    pub fn record(&mut self, body: EventBody) -> Result<u64, JournalError> {
        let body = self.scrub(body);
        if let Some(pending) = &mut self.pending {
            let event = self.journal.stamp(body, pending.len() as u64);
            let seq = event.seq;
            pending.push(event);
            return Ok(seq);
        }
        let event = self.journal.append(body)?;
        self.tally.add(&event.ts, &event.body);
        for sink in &mut self.sinks {
            sink.event(&event);
        }
        Ok(event.seq)
    }

    /// From now on, hold recorded events until [`Recorder::commit_batch`] writes them with one
    /// fsync (the journal's module doc says what a crash can cost).
    pub fn begin_batch(&mut self) {
        self.pending.get_or_insert_with(Vec::new);
    }

    /// Write the events held since [`Recorder::begin_batch`] with one fsync, then show them to
    /// every sink: with a `counted` line, as a batch (a display may show that line instead of
    /// each event); without, each event as if recorded alone. Ends the batch.
    pub fn commit_batch(&mut self, counted: Option<&str>) -> Result<(), JournalError> {
        let Some(events) = self.pending.take().filter(|e| !e.is_empty()) else {
            return Ok(());
        };
        self.journal.write(&events)?;
        for event in &events {
            self.tally.add(&event.ts, &event.body);
        }
        let counted = counted.map(|c| self.secrets.redact(c));
        for sink in &mut self.sinks {
            match &counted {
                Some(counted) => sink.batch(&events, counted),
                None => events.iter().for_each(|e| sink.event(e)),
            }
        }
        Ok(())
    }

    /// Record what was seen. `data` is anything serialisable; should it not serialise to JSON,
    /// that is an error of the log, never a silently empty payload.
    pub fn observe(
        &mut self,
        name: &str,
        detail: impl Into<String>,
        data: impl Serialize,
    ) -> Result<u64, JournalError> {
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
    ) -> Result<u64, JournalError> {
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

        fn batch(&mut self, events: &[Event], counted: &str) {
            let seqs: Vec<String> = events.iter().map(|e| e.seq.to_string()).collect();
            self.0
                .lock()
                .expect("lock")
                .push(format!("batch {} {counted}", seqs.join(",")));
        }
    }

    /// A recorder of a new log at `path` that keeps `hunter2` secret, and what its sink got.
    fn taped(path: &std::path::Path) -> (Recorder, Tape) {
        let tape = Tape::default();
        let recorder = Recorder::new(
            Journal::create(path, "r1").expect("log"),
            vec![Box::new(tape.clone())],
            Secrets::new(vec!["hunter2".to_owned()]),
        );
        (recorder, tape)
    }

    #[test]
    fn a_batch_is_one_write_in_sequence_that_sinks_see_once_it_is_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.jsonl");
        let (mut recorder, tape) = taped(&path);
        recorder.observe("before", "alone", 1).expect("observe");
        recorder.begin_batch();
        let held: Vec<u64> = (0..3)
            .map(|i| recorder.observe("group", format!("g{i}"), i).expect("held"))
            .collect();
        assert_eq!(held, [2, 3, 4], "numbered in sequence as they are held");
        let logged = || super::super::read(&path).expect("read").events.len();
        assert_eq!(logged(), 1, "nothing held is written before the commit");
        assert_eq!(tape.0.lock().expect("lock").len(), 1, "nor shown to a sink");
        recorder
            .commit_batch(Some("3 groups, hunter2"))
            .expect("commit");
        assert_eq!(logged(), 4);
        recorder.begin_batch();
        recorder.observe("group", "g3", 3).expect("held");
        recorder.commit_batch(None).expect("commit");
        recorder
            .commit_batch(Some("nothing held"))
            .expect("no batch");
        recorder.observe("after", "alone", 5).expect("observe");

        let events = super::super::read(&path).expect("read").events;
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        let seen = tape.0.lock().expect("lock").clone();
        assert_eq!(
            seen[1], "batch 2,3,4 3 groups, ***",
            "the counted line is scrubbed"
        );
        assert_eq!(
            seen[2..],
            [&events[4], &events[5]].map(|e| serde_json::to_string(&e.body).expect("json")),
            "without a counted line, each event as if alone; an empty commit shows nothing"
        );
        let whole = recorder.whole_run();
        let read_back = super::super::whole_run(&events);
        assert_eq!(
            (whole.invocations, whole.total_ms, whole.steps.len()),
            (
                read_back.invocations,
                read_back.total_ms,
                read_back.steps.len()
            )
        );
    }

    /// Work that takes 2.4 s is told once a second, with how far it got, and nothing of it is
    /// logged; work done within the second says nothing.
    #[tokio::test(start_paused = true)]
    async fn long_work_is_told_every_second_while_it_runs_and_not_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.jsonl");
        let (mut recorder, tape) = taped(&path);
        let read = std::sync::atomic::AtomicU64::new(0);
        let work = async {
            for _ in 0..8 {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                read.fetch_add(100, std::sync::atomic::Ordering::Relaxed);
            }
            "done"
        };
        let done = recorder
            .say_while(work, || {
                let n = read.load(std::sync::atomic::Ordering::Relaxed);
                format!("read {n} records, hunter2")
            })
            .await;
        assert_eq!(done, "done");
        let quick = recorder
            .say_while(async { 7 }, || "never said".to_owned())
            .await;
        assert_eq!(quick, 7);
        assert_eq!(
            tape.0.lock().expect("lock").clone(),
            [
                "notice       … read 300 records, *** (1s)",
                "notice       … read 600 records, *** (2s)",
            ]
        );
        let logged = std::fs::read(&path).expect("the log");
        assert!(logged.is_empty(), "nothing of it logged");
    }

    #[test]
    fn sinks_see_what_is_logged_scrubbed_of_secrets_and_nothing_is_swallowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.jsonl");
        let (mut recorder, tape) = taped(&path);
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
