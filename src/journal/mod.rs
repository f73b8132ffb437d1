//! The incident log: append-only JSON Lines, one event per line, fsynced before kdr moves on.
//!
//! The log is the evidence a failover or a game day leaves behind, and what `--resume` reads to
//! continue after a crash. A line is written whole and synced before kdr moves on, so a crash
//! leaves at most a torn last line, which the reader reports and ignores.
//!
//! Most events are synced one by one. A step that records thousands of observations at once
//! (translate_offsets: several per consumer group) writes them in batches with one fsync per
//! batch ([`Recorder::begin_batch`]): the sequence numbers stay
//! consecutive, and the display and every other sink see a batch's events only once the whole
//! batch is on disk. What a crash can cost: the observations of at most two batches, written
//! after the commits they describe (translate_offsets sends a batch's commits while it records
//! the batch before; a crash between the commits and the sync loses their record, never an
//! offset). The step's `step_finished` is written after its last batch, so
//! the log then shows the step as started and not finished, and `--resume` runs it again:
//! translate_offsets is idempotent (translation never moves a group backwards), so the groups
//! are translated and recorded again.

mod event;
pub mod lock;
mod recorder;
mod summary;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use event::{Event, EventBody, GroupOutcome, Outcome, SCHEMA_VERSION, StepStatus};
pub use recorder::{EventSink, Recorder};
pub use summary::{RunReport, RunTally, StepReport, WholeRun, whole_run};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failed to open incident log {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("failed to append to incident log {}: {source}", path.display())]
    Append { path: PathBuf, source: io::Error },
    #[error("failed to read incident log {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}:{line}: not an incident-log event: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: the log is empty", path.display())]
    Empty { path: PathBuf },
    #[error("failed to encode the data of `{what}` for incident log {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        what: String,
        source: serde_json::Error,
    },
}

/// The observation a hook's start is logged as: its `pid` and `pgid` in the data. A hook's end
/// is the `output` observation, with the same `pid`.
pub const HOOK_STARTED: &str = "hook_started";

/// Appends events to one incident-log file.
pub struct Journal {
    file: File,
    path: PathBuf,
    run_id: String,
    next_seq: u64,
}

impl Journal {
    /// Start a new log. Refuses to overwrite: `create_new` makes two runs that picked the same
    /// name collide loudly instead of interleaving.
    pub fn create(path: &Path, run_id: &str) -> Result<Journal, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| JournalError::Open {
                path: path.to_owned(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|source| JournalError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Journal {
            file,
            path: path.to_owned(),
            run_id: run_id.to_owned(),
            next_seq: 1,
        })
    }

    /// Continue an existing log after its last event.
    pub fn reopen(path: &Path, run_id: &str, last_seq: u64) -> Result<Journal, JournalError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| JournalError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Journal {
            file,
            path: path.to_owned(),
            run_id: run_id.to_owned(),
            next_seq: last_seq + 1,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Write one event and fsync it before returning.
    pub fn append(&mut self, body: EventBody) -> Result<Event, JournalError> {
        let event = self.stamp(body, 0);
        self.write(std::slice::from_ref(&event))?;
        Ok(event)
    }

    /// The event `body` will be when written after `ahead` others not yet written.
    fn stamp(&self, body: EventBody, ahead: u64) -> Event {
        Event {
            v: SCHEMA_VERSION,
            seq: self.next_seq + ahead,
            ts: now_rfc3339(),
            run_id: self.run_id.clone(),
            body,
        }
    }

    /// Write stamped events, the next ones in sequence, and fsync once. Each line is whole in
    /// one buffer, so a crash cuts at most the last line of the batch short.
    fn write(&mut self, events: &[Event]) -> Result<(), JournalError> {
        debug_assert!(
            events
                .iter()
                .zip(self.next_seq..)
                .all(|(e, seq)| e.seq == seq),
            "events are written in sequence"
        );
        let append_error = |source| JournalError::Append {
            path: self.path.clone(),
            source,
        };
        let mut lines = Vec::new();
        for event in events {
            serde_json::to_writer(&mut lines, event)
                .map_err(|e| append_error(io::Error::other(e)))?;
            lines.push(b'\n');
        }
        self.file
            .write_all(&lines)
            .and_then(|()| self.file.sync_data())
            .map_err(append_error)?;
        self.next_seq += events.len() as u64;
        Ok(())
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A log read back: its events and whether the last line was torn by a crash.
#[derive(Debug)]
pub struct LogContents {
    pub events: Vec<Event>,
    pub torn_tail: bool,
}

/// Read a whole incident log. A final line without its newline is a write a crash cut short:
/// it is dropped and reported, never trusted. Any other bad line is an error.
pub fn read(path: &Path) -> Result<LogContents, JournalError> {
    let mut events = Vec::new();
    let torn_tail = scan(path, |line| {
        events.push(serde_json::from_str(line)?);
        Ok(())
    })?;
    Ok(LogContents { events, torn_tail })
}

/// Hand each event's line of a log to `each`, in order, one at a time, for a reader that needs
/// a few fields of thousands of events and would not hold them all (`--metrics-file`); `each`
/// parses what it needs, and its error is the line's. Returns whether the last line was torn
/// (see [`read`]: such a line is not handed on). A log without an event is an error.
pub fn scan(
    path: &Path,
    mut each: impl FnMut(&str) -> Result<(), serde_json::Error>,
) -> Result<bool, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let mut seen = 0;
    let mut torn_tail = false;
    let mut line_no = 0;
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = reader
            .read_line(&mut buf)
            .map_err(|source| JournalError::Read {
                path: path.to_owned(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let last = !buf.ends_with('\n');
        if last {
            torn_tail = serde_json::from_str::<Event>(&buf).is_err();
        }
        if torn_tail || buf.trim().is_empty() {
            continue;
        }
        each(&buf).map_err(|e| JournalError::Parse {
            path: path.to_owned(),
            line: line_no,
            message: e.to_string(),
        })?;
        seen += 1;
    }
    if seen == 0 {
        return Err(JournalError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(torn_tail)
}

/// One incident log of a directory, as `kdr log show DIR` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEntry {
    pub log: PathBuf,
    pub run_id: String,
    pub plan: String,
    pub direction: String,
    pub operator: String,
    pub dry_run: bool,
    /// When the run first started (RFC 3339, UTC).
    pub started: String,
    /// How its last invocation ended; `None` while unfinished (running, or cut short).
    pub outcome: Option<Outcome>,
    /// Why the log could not be read, when it could not.
    pub error: Option<String>,
}

/// The incident logs (`*.jsonl`) in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<LogEntry>, JournalError> {
    let read_dir = |source| JournalError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        if path.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        let mut listed = LogEntry {
            log: path.clone(),
            run_id: String::new(),
            plan: String::new(),
            direction: String::new(),
            operator: String::new(),
            dry_run: false,
            started: String::new(),
            outcome: None,
            error: None,
        };
        match read(&path) {
            Ok(contents) => {
                let first = &contents.events[0];
                listed.run_id = first.run_id.clone();
                listed.started = first.ts.clone();
                if let EventBody::RunStarted {
                    plan,
                    direction,
                    operator,
                    dry_run,
                    ..
                } = &first.body
                {
                    listed.plan = plan.clone();
                    listed.direction = direction.to_string();
                    listed.operator = operator.clone();
                    listed.dry_run = *dry_run;
                }
                listed.outcome = match contents.events.last().map(|e| &e.body) {
                    Some(EventBody::RunFinished { outcome, .. }) => Some(*outcome),
                    _ => None,
                };
            }
            Err(e) => listed.error = Some(e.to_string()),
        }
        entries.push(listed);
    }
    entries.sort_by(|a, b| (&a.started, &a.log).cmp(&(&b.started, &b.log)));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Direction;

    fn started() -> EventBody {
        EventBody::RunStarted {
            plan: "p".into(),
            fingerprint: "sha256:00".into(),
            plan_file: "p.yaml".into(),
            direction: Direction::Failover,
            operator: "alice".into(),
            reason: "drill".into(),
            dry_run: false,
            resumed: false,
            kdr_version: "0.1.0".into(),
            host: "h".into(),
            pid: 1,
        }
    }

    #[test]
    fn events_are_appended_with_sequence_and_read_back_equal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.jsonl");
        let mut journal = Journal::create(&path, "r1").expect("create");
        let a = journal.append(started()).expect("append");
        let b = journal
            .append(EventBody::StepFinished {
                step: 1,
                kind: "exec".into(),
                status: StepStatus::Ok,
                duration_ms: 12,
                message: "exit 0".into(),
            })
            .expect("append");
        assert_eq!((a.seq, b.seq), (1, 2));
        let back = read(&path).expect("read");
        assert_eq!(back.events, vec![a, b]);
        assert!(!back.torn_tail);
        // Reopening continues the sequence.
        let mut again = Journal::reopen(&path, "r1", 2).expect("reopen");
        assert_eq!(again.append(started()).expect("append").seq, 3);
        assert!(
            Journal::create(&path, "r2").is_err(),
            "an existing log is never overwritten"
        );
    }

    #[test]
    fn every_line_has_the_contract_fields_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.jsonl");
        let mut journal = Journal::create(&path, "r1").expect("create");
        journal.append(started()).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        let value: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
        let keys: std::collections::BTreeSet<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let expected = [
            "v",
            "seq",
            "ts",
            "run_id",
            "event",
            "plan",
            "fingerprint",
            "plan_file",
            "direction",
            "operator",
            "reason",
            "dry_run",
            "resumed",
            "kdr_version",
            "host",
            "pid",
        ];
        assert_eq!(keys, expected.into_iter().collect());
        assert_eq!(value["v"], 1);
        assert_eq!(value["event"], "run_started");
        let ts = value["ts"].as_str().expect("ts");
        assert!(
            ts.ends_with('Z') && ts.len() == "2026-01-01T00:00:00.000Z".len(),
            "{ts}"
        );
    }

    #[test]
    fn a_torn_last_line_is_reported_and_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.jsonl");
        let mut journal = Journal::create(&path, "r1").expect("create");
        journal.append(started()).expect("append");
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"{\"v\":1,\"seq\":2,\"ts\":\"20")
            .expect("write");
        let back = read(&path).expect("read");
        assert_eq!(back.events.len(), 1);
        assert!(back.torn_tail);
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error_with_its_line_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.jsonl");
        std::fs::write(&path, "not json\n").expect("write");
        let err = read(&path).expect_err("corrupt");
        assert!(
            err.to_string()
                .contains("run.jsonl:1: not an incident-log event"),
            "{err}"
        );
    }
}
