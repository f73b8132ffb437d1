//! The writes only the old primary saw. After a disaster failover the records DR never received
//! (the loss kdr accepted, per partition) are still in the old primary's log when it comes
//! back; consumers at home would read them hours late, out of order with everything written on
//! DR since. A failback's declaration finds them from the failover's incident log (the
//! replicated-to offset of each partition when the loss was accepted), reports them, and does
//! what the plan says (`stranded: export | skip | consume`); with none said it stops before
//! anything is repointed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{StepCtx, StepError};
use crate::journal::{self, Event, EventBody};
use crate::kafka::{KafkaError, OffsetRange, RawRecord, ReadOptions, TopicPartition};
use crate::plan::{Direction, PolicyKind, Role, Selector, Stranded};
use crate::replication::{Flow, LagMethod, ReplicatedPartition, present};

/// The export file's format, named in each line (`"v"`) and in the README.
pub const EXPORT_VERSION: u32 = 1;

/// One partition's stranded records: `from..end` on the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrandedPartition {
    pub topic: String,
    pub partition: i32,
    /// DR had the partition's records before this offset when the failover accepted its loss.
    pub replicated_to: i64,
    /// First offset of the range (`replicated_to`, or the log start if retention passed it).
    pub from: i64,
    /// The primary's end offset when the failback looked: the range ends before it.
    pub end: i64,
    pub records: u64,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub first_timestamp_ms: Option<i64>,
    pub last_timestamp_ms: Option<i64>,
}

impl StrandedPartition {
    fn range(&self) -> OffsetRange {
        OffsetRange {
            partition: TopicPartition::new(self.topic.clone(), self.partition),
            from: self.from,
            to: self.end,
        }
    }

    fn line(&self) -> String {
        let ts = |ms: Option<i64>| ms.map_or_else(|| "no timestamp".to_owned(), rfc3339_ms);
        match (self.first_offset, self.last_offset) {
            (Some(first), Some(last)) => format!(
                "{}-{}: {} (offsets {first}..={last}, {} → {})",
                self.topic,
                self.partition,
                self.records,
                ts(self.first_timestamp_ms),
                ts(self.last_timestamp_ms)
            ),
            _ => format!("{}-{}: 0", self.topic, self.partition),
        }
    }
}

/// What the failback found on the primary past what DR received.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub failover_log: String,
    pub failover_run_id: String,
    /// Partitions with stranded records, in topic/partition order.
    pub partitions: Vec<StrandedPartition>,
    pub total_records: u64,
    /// Partitions the failover's log gives no replicated-to offset for (the primary was gone
    /// before kdr could measure them): not checked.
    pub unmeasured: Vec<String>,
    /// Partitions where DR now holds more than the failover measured (replication went on
    /// after the loss was accepted): those records reached DR and are not stranded.
    pub reached_dr_later: Vec<ReachedLater>,
    /// Why what DR holds now could not be measured, when it could not.
    pub dr_now_unknown: Option<String>,
}

/// A partition DR received more of after the failover accepted its loss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReachedLater {
    pub topic: String,
    pub partition: i32,
    /// The replicated-to offset in the failover's log.
    pub logged: i64,
    /// The replicated-to offset measured now.
    pub now: i64,
}

/// Raise each partition's replicated-to offset to what DR holds now, where that is measured
/// reliably: through MM2's offset syncs, or by record counts under the default policy (DR's
/// replica topic holds nothing else; under identity DR's own writes share the topic). A
/// failover that accepted its loss while MirrorMaker 2 still ran may have been followed by
/// more of those records reaching DR: they are not stranded. Never lowers an offset.
async fn what_dr_holds_now(
    ctx: &mut StepCtx<'_>,
    measured: &mut [((String, i32), i64)],
) -> (Vec<ReachedLater>, Option<String>) {
    let Some(clusters) = ctx.clusters else {
        return (Vec::new(), Some("no Kafka clients".to_owned()));
    };
    let forward = Flow::new(ctx.plan, clusters, Direction::Failover);
    let partitions: Vec<ReplicatedPartition> = measured
        .iter()
        .map(|((topic, partition), _)| ReplicatedPartition {
            source_topic: topic.clone(),
            target_topic: forward.remote_topic(topic),
            partition: *partition,
        })
        .collect();
    let lags = match ctx.wait(forward.measure_lag(&partitions, None)).await {
        super::Waited::Done(Ok(lags)) => lags,
        super::Waited::Done(Err(e)) => return (Vec::new(), Some(e.to_string())),
        super::Waited::DeadlinePassed | super::Waited::Cancelled => {
            return (Vec::new(), Some("out of time".to_owned()));
        }
    };
    let default_policy = ctx.plan.replication.policy == PolicyKind::Default;
    let mut later = Vec::new();
    for (((topic, partition), logged), lag) in measured.iter_mut().zip(&lags) {
        let reliable = lag.method == LagMethod::OffsetSync
            || (lag.method == LagMethod::Count && default_policy);
        if let Some(now) = lag.replicated_to.filter(|now| reliable && *now > *logged) {
            later.push(ReachedLater {
                topic: topic.clone(),
                partition: *partition,
                logged: *logged,
                now,
            });
            *logged = now;
        }
    }
    (later, None)
}

/// The outcome of the search: what was found, or why nothing could be looked for.
#[derive(Debug, Clone)]
pub enum Finding {
    Found(Found),
    /// No failover log to read the replicated-to offsets from: the records cannot be told.
    NoLog(String),
}

impl Finding {
    /// Stranded records, when some were found.
    pub fn stranded(&self) -> Option<&Found> {
        match self {
            Finding::Found(f) if f.total_records > 0 => Some(f),
            _ => None,
        }
    }

    /// A fragment for the step's message.
    pub fn summary(&self) -> String {
        match self {
            Finding::Found(f) if f.total_records == 0 && !f.unmeasured.is_empty() => format!(
                "no stranded records found on primary, {} not checked (the failover measured no replicated-to offset there)",
                crate::report::count(f.unmeasured.len(), "partition")
            ),
            Finding::Found(f) if f.total_records == 0 => {
                "no stranded records on primary".to_owned()
            }
            Finding::Found(f) => format!(
                "{} on primary never reached dr",
                crate::report::count(f.total_records as usize, "stranded record")
            ),
            Finding::NoLog(why) => format!("stranded records unknown: {why}"),
        }
    }
}

/// Look for stranded records (a failback's declaration, before its gate): read the failover's
/// log, the primary's offsets of the affected partitions, and their records in one batched
/// read. Records an observation either way.
pub async fn find(ctx: &mut StepCtx<'_>, flow: &Flow) -> Result<Finding, StepError> {
    let run_id = failover_run_id(ctx);
    let dirs = search_dirs(ctx);
    let Some(log) = find_failover_log(&dirs, &ctx.plan.name, run_id.as_deref(), ctx)? else {
        let why = format!(
            "no incident log of {} in {} (copy the failover's log there to have them counted)",
            run_id.map_or_else(
                || format!("a failover of plan {}", ctx.plan.name),
                |id| format!("failover run {id}")
            ),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        ctx.recorder.observe(
            "stranded_unknown",
            format!("stranded records unknown: {why}"),
            serde_json::Value::Null,
        )?;
        return Ok(Finding::NoLog(why));
    };
    let contents = journal::read(&log.log)
        .map_err(|e| StepError::Failed(format!("failed to read the failover's log: {e}")))?;
    let marks = replicated_to(&contents.events);
    let unmeasured: Vec<String> = marks
        .iter()
        .filter(|(_, m)| m.is_none())
        .map(|((t, p), _)| format!("{t}-{p}"))
        .collect();
    let mut measured: Vec<((String, i32), i64)> = marks
        .into_iter()
        .filter_map(|(k, m)| m.map(|m| (k, m)))
        .collect();
    let (reached_dr_later, dr_now_unknown) = what_dr_holds_now(ctx, &mut measured).await;
    let partitions = stranded_ranges(ctx, flow, &measured).await?;
    let ranges: Vec<OffsetRange> = partitions.iter().map(StrandedPartition::range).collect();
    let primary = flow.target.clone();
    let options = ReadOptions {
        timeout: Some(ctx.remaining()),
        allow_partial: false,
    };
    let (stats, _) = ctx
        .bounded(
            "read the stranded records on primary",
            primary.scan_ranges(&ranges, options, vec![Stats::default(); ranges.len()], {
                |stats: &mut Vec<Stats>, i, record: RawRecord| stats[i].add(&record)
            }),
        )
        .await?;
    let partitions: Vec<StrandedPartition> = partitions
        .into_iter()
        .zip(stats)
        .map(|(p, s)| StrandedPartition {
            records: s.records,
            first_offset: s.first_offset,
            last_offset: s.last_offset,
            first_timestamp_ms: s.first_ts,
            last_timestamp_ms: s.last_ts,
            ..p
        })
        .filter(|p| p.records > 0)
        .collect();
    let found = Found {
        failover_log: log.log.display().to_string(),
        failover_run_id: log.run_id.clone(),
        total_records: partitions.iter().map(|p| p.records).sum(),
        partitions,
        unmeasured,
        reached_dr_later,
        dr_now_unknown,
    };
    let mut detail = if found.total_records == 0 {
        format!(
            "no stranded records: primary holds nothing past what dr had when failover run {} accepted its loss",
            found.failover_run_id
        )
    } else {
        format!(
            "{} on primary never reached dr (failover run {}): {}",
            crate::report::count(found.total_records as usize, "record"),
            found.failover_run_id,
            found
                .partitions
                .iter()
                .map(StrandedPartition::line)
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    if !found.reached_dr_later.is_empty() {
        detail.push_str(&format!(
            "; reached dr after the failover accepted its loss, so not stranded: {}",
            found
                .reached_dr_later
                .iter()
                .map(|l| format!(
                    "{}-{} up to {} (logged {})",
                    l.topic, l.partition, l.now, l.logged
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(why) = &found.dr_now_unknown {
        detail.push_str(&format!(
            "; what dr holds now was not measured ({why}): the failover's figures stand"
        ));
    }
    if !found.unmeasured.is_empty() {
        detail.push_str(&format!(
            "; not checked (the failover measured no replicated-to offset): {}",
            found.unmeasured.join(", ")
        ));
    }
    ctx.recorder.observe("stranded_records", detail, &found)?;
    Ok(Finding::Found(found))
}

/// What each partition's range is: from the replicated-to offset (or the log start, if
/// retention passed it) to the primary's end offset now. Under the identity policy the
/// reverse flow copies DR's records into the same topics, after the stranded ones: its first
/// offset sync on a partition, where readable, ends the range there.
async fn stranded_ranges(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    measured: &[((String, i32), i64)],
) -> Result<Vec<StrandedPartition>, StepError> {
    let tps: Vec<TopicPartition> = measured
        .iter()
        .map(|((t, p), _)| TopicPartition::new(t.clone(), *p))
        .collect();
    let primary = flow.target.clone();
    let marks = ctx
        .bounded("read primary's offsets", async {
            present(primary.batch_watermarks(&tps).await?)
        })
        .await?;
    let reverse_starts = if ctx.plan.replication.policy == PolicyKind::Identity {
        let within = ctx.remaining().min(crate::replication::OPERATION_TIMEOUT);
        flow.offset_syncs(within).await.map(|syncs| {
            syncs
                .into_iter()
                .filter_map(|(k, s)| s.iter().map(|s| s.downstream_offset).min().map(|m| (k, m)))
                .collect::<BTreeMap<_, _>>()
        })
    } else {
        None
    };
    Ok(measured
        .iter()
        .zip(marks)
        .filter_map(|(((topic, partition), replicated_to), marks)| {
            let marks = marks?;
            let end = reverse_starts
                .as_ref()
                .and_then(|r| r.get(&(topic.clone(), *partition)))
                .map_or(marks.high, |start| marks.high.min(*start));
            let from = (*replicated_to).max(marks.low);
            (from < end).then(|| StrandedPartition {
                topic: topic.clone(),
                partition: *partition,
                replicated_to: *replicated_to,
                from,
                end,
                records: 0,
                first_offset: None,
                last_offset: None,
                first_timestamp_ms: None,
                last_timestamp_ms: None,
            })
        })
        .collect())
}

#[derive(Debug, Clone, Default)]
struct Stats {
    records: u64,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
}

impl Stats {
    fn add(&mut self, record: &RawRecord) {
        self.records += 1;
        self.first_offset.get_or_insert(record.offset);
        self.last_offset = Some(record.offset);
        if self.first_ts.is_none() {
            self.first_ts = record.timestamp_ms;
        }
        self.last_ts = record.timestamp_ms.or(self.last_ts);
    }
}

/// The failover whose loss is being looked at: the run that moved write authority to DR.
fn failover_run_id(ctx: &StepCtx<'_>) -> Option<String> {
    let state = ctx.state.authority.as_ref()?;
    [state.dr.record(), state.primary.record()]
        .into_iter()
        .flatten()
        .filter(|r| r.owner == Role::Dr && r.direction == Direction::Failover)
        .max_by_key(|r| r.epoch)
        .map(|r| r.run_id.clone())
}

/// Where failover logs may be: a log the run was pointed at, this run's log directory, and
/// the plan's incident-log directory.
fn search_dirs(ctx: &StepCtx<'_>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut add = |d: &Path| {
        let d = if d.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            d.to_owned()
        };
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    };
    if let Some(parent) = ctx.state.failover_log.as_deref().and_then(Path::parent) {
        add(parent);
    }
    if let Some(parent) = ctx.recorder.journal().path().parent() {
        add(parent);
    }
    add(&ctx.plan.incident_log_dir);
    dirs
}

/// The failover's log: the one of run `run_id` when write authority names it, else the newest
/// failover of the plan that was not a dry run.
fn find_failover_log(
    dirs: &[PathBuf],
    plan: &str,
    run_id: Option<&str>,
    ctx: &StepCtx<'_>,
) -> Result<Option<journal::LogEntry>, StepError> {
    let mut candidates: Vec<journal::LogEntry> = Vec::new();
    if let Some(given) = &ctx.state.failover_log
        && let Ok(contents) = journal::read(given)
        && let Some(first) = contents.events.first()
    {
        candidates.push(journal::LogEntry {
            log: given.clone(),
            run_id: first.run_id.clone(),
            plan: plan.to_owned(),
            direction: Direction::Failover.to_string(),
            operator: String::new(),
            dry_run: false,
            started: first.ts.clone(),
            outcome: None,
            error: None,
        });
    }
    for dir in dirs {
        // A directory that does not exist (yet) holds no log.
        if let Ok(listed) = journal::list(dir) {
            candidates.extend(listed.into_iter().filter(|e| {
                e.error.is_none()
                    && e.plan == plan
                    && e.direction == Direction::Failover.as_str()
                    && !e.dry_run
            }));
        }
    }
    candidates.sort_by(|a, b| a.started.cmp(&b.started));
    Ok(match run_id {
        Some(id) => candidates.into_iter().rev().find(|e| e.run_id == id),
        None => candidates.pop(),
    })
}

/// Each partition's replicated-to offset (a source offset: DR had every record before it) as
/// the failover last measured it: its declaration's baseline, then wait_replication's
/// measurement when it caught up or accepted the loss. `None` where it was never measured.
pub fn replicated_to(events: &[Event]) -> BTreeMap<(String, i32), Option<i64>> {
    let mut marks: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
    for event in events {
        let (kind, data) = match &event.body {
            EventBody::Observation { kind, data, .. } | EventBody::Decision { kind, data, .. } => {
                (kind.as_deref(), data)
            }
            _ => continue,
        };
        if !matches!(kind, Some("declare" | "wait_replication")) {
            continue;
        }
        for key in ["partitions", "per_partition"] {
            let Some(items) = data.get(key).and_then(serde_json::Value::as_array) else {
                continue;
            };
            for item in items {
                let (Some(topic), Some(partition)) = (
                    item.get("source_topic").and_then(serde_json::Value::as_str),
                    item.get("partition")
                        .and_then(serde_json::Value::as_i64)
                        .and_then(|p| i32::try_from(p).ok()),
                ) else {
                    continue;
                };
                let key = (topic.to_owned(), partition);
                match item
                    .get("replicated_to")
                    .and_then(serde_json::Value::as_i64)
                {
                    Some(at) => {
                        marks.insert(key, Some(at));
                    }
                    None => {
                        marks.entry(key).or_insert(None);
                    }
                }
            }
        }
    }
    marks
}

/// Carry out the plan's choice, once the declaration is made and its claim won. Returns a
/// fragment for the step's message.
pub async fn settle(
    ctx: &mut StepCtx<'_>,
    flow: &Flow,
    choice: Stranded,
    found: &Found,
) -> Result<String, StepError> {
    let data = serde_json::json!({
        "choice": choice.as_str(),
        "total_records": found.total_records,
        "partitions": found.partitions,
        "failover_run_id": found.failover_run_id,
    });
    let records = crate::report::count(found.total_records as usize, "stranded record");
    match choice {
        Stranded::Consume => {
            ctx.recorder.decide(
                ctx.operator,
                format!("leave {records} on primary to the consumers at home"),
                "the plan says `stranded: consume`: the consumers will read them after the failback, late and out of order with what was written on dr",
                data,
            )?;
            Ok(format!(
                "; {records} left to the consumers (stranded: consume)"
            ))
        }
        Stranded::Skip => {
            ctx.recorder.decide(
                ctx.operator,
                format!("skip {records} on primary"),
                "the plan says `stranded: skip`: the home groups are moved past them",
                data,
            )?;
            let moved = skip(ctx, flow, found).await?;
            Ok(format!("; {records} skipped: {moved}"))
        }
        Stranded::Export => {
            ctx.recorder.decide(
                ctx.operator,
                format!("export {records} on primary, then skip them"),
                "the plan says `stranded: export`",
                data,
            )?;
            let file = export(ctx, flow, found).await?;
            let moved = skip(ctx, flow, found).await?;
            Ok(format!(
                "; {records} exported to {} and skipped: {moved}",
                file.display()
            ))
        }
    }
}

/// Where an export goes: `stranded/<plan>-<run id>.jsonl` beside this run's incident log
/// (a folder of its own, so nothing takes it for an incident log).
pub fn export_path(ctx: &StepCtx<'_>) -> PathBuf {
    let dir = ctx
        .recorder
        .journal()
        .path()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    dir.join("stranded")
        .join(format!("{}-{}.jsonl", ctx.plan.name, ctx.run_id))
}

/// Write every stranded record to the export file: to a `.partial` file first, synced and
/// renamed only once every record is in it, so a failure never leaves a file that looks
/// complete, and the log claims the export only after the rename.
async fn export(ctx: &mut StepCtx<'_>, flow: &Flow, found: &Found) -> Result<PathBuf, StepError> {
    let path = export_path(ctx);
    let partial = path.with_extension("jsonl.partial");
    let failed = |what: String| {
        StepError::Failed(format!(
            "failed to export the stranded records: {what}; nothing was skipped and no export is claimed"
        ))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let file = std::fs::File::create(&partial)
        .map_err(|e| failed(format!("cannot create {}: {e}", partial.display())))?;
    let ranges: Vec<OffsetRange> = found
        .partitions
        .iter()
        .map(StrandedPartition::range)
        .collect();
    let state = Writer {
        names: found
            .partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect(),
        out: std::io::BufWriter::new(file),
        hash: Sha256::new(),
        error: None,
        written: 0,
    };
    let options = ReadOptions {
        timeout: Some(ctx.remaining()),
        allow_partial: false,
    };
    let primary = flow.target.clone();
    let read = ctx
        .bounded(
            "read the stranded records on primary for the export",
            primary.scan_ranges(&ranges, options, state, |w: &mut Writer, i, r| {
                w.write(i, &r)
            }),
        )
        .await;
    let outcome = match read {
        Ok((writer, _)) => writer.finish(found.total_records).map_err(failed),
        Err(StepError::Failed(m)) => Err(failed(m)),
        Err(other) => Err(other),
    };
    let (written, sha256) = match outcome {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&partial, &path) {
        let _ = std::fs::remove_file(&partial);
        return Err(failed(format!("cannot rename to {}: {e}", path.display())));
    }
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    ctx.recorder.observe(
        "stranded_exported",
        format!(
            "exported {} to {} (JSON Lines, format v{EXPORT_VERSION}, sha256 {sha256})",
            crate::report::count(written as usize, "stranded record"),
            path.display()
        ),
        serde_json::json!({
            "file": path.display().to_string(),
            "records": written,
            "sha256": sha256,
            "format": "jsonl",
            "v": EXPORT_VERSION,
        }),
    )?;
    Ok(path)
}

/// The export file being written, on the reader's thread.
struct Writer {
    /// Each range's topic and partition, by index.
    names: Vec<(String, i32)>,
    out: std::io::BufWriter<std::fs::File>,
    hash: Sha256,
    error: Option<std::io::Error>,
    written: u64,
}

impl Writer {
    fn write(&mut self, range: usize, record: &RawRecord) {
        if self.error.is_some() {
            return;
        }
        let (topic, partition) = &self.names[range];
        let mut line = export_line(topic, *partition, record);
        line.push('\n');
        self.hash.update(line.as_bytes());
        match self.out.write_all(line.as_bytes()) {
            Ok(()) => self.written += 1,
            Err(e) => self.error = Some(e),
        }
    }

    /// Flush and sync; `expected` records must all be in the file.
    fn finish(self, expected: u64) -> Result<(u64, String), String> {
        if let Some(e) = self.error {
            return Err(format!("cannot write: {e}"));
        }
        let Writer {
            out, hash, written, ..
        } = self;
        let file = out
            .into_inner()
            .map_err(|e| format!("cannot write: {}", e.error()))?;
        file.sync_all().map_err(|e| format!("cannot sync: {e}"))?;
        if written != expected {
            return Err(format!(
                "read {written} records where {expected} were found: the primary's log changed meanwhile"
            ));
        }
        Ok((written, format!("{:x}", hash.finalize())))
    }
}

/// One record of the export, as a line of JSON (no newline). Bytes are base64 (RFC 4648,
/// padded), `null` when absent.
pub fn export_line(topic: &str, partition: i32, record: &RawRecord) -> String {
    let b64 = |b: &Option<Vec<u8>>| b.as_deref().map(base64);
    serde_json::json!({
        "v": EXPORT_VERSION,
        "topic": topic,
        "partition": partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "key": b64(&record.key),
        "value": b64(&record.value),
        "headers": record.headers.iter().map(|(k, v)| serde_json::json!({ "key": k, "value": b64(v) })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// RFC 4648 base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn rfc3339_ms(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// What skipping did to one group's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipAction {
    /// Committed at the end of the stranded range.
    Commit,
    /// Already at or past the end: never moved backwards.
    Unchanged,
    /// The group has no commit there; it starts by its `auto.offset.reset`.
    NoCommit,
}

#[derive(Debug, Clone, Serialize)]
struct SkipRow {
    topic: String,
    partition: i32,
    was: Option<i64>,
    now: Option<i64>,
    action: SkipAction,
    /// Stranded records the move passes.
    stranded_skipped: i64,
    /// Records before the stranded range the move passes too: DR had them, and the group
    /// read them there (as the replica topic).
    also_passed: i64,
}

/// The plan's groups (names, and patterns matched against the groups the reverse flow
/// checkpoints) as they are on the primary.
async fn home_groups(ctx: &mut StepCtx<'_>, flow: &Flow) -> Vec<String> {
    let mut groups: BTreeSet<String> = BTreeSet::new();
    let mut patterns = false;
    for s in &ctx.plan.replication.groups {
        match s {
            Selector::Name(n) => {
                groups.insert(n.clone());
            }
            Selector::Pattern { .. } => patterns = true,
        }
    }
    if patterns {
        let within = ctx.remaining().min(crate::replication::OPERATION_TIMEOUT);
        if let Ok(index) = flow.checkpoints(within).await {
            groups.extend(
                index
                    .groups()
                    .into_iter()
                    .filter(|g| crate::plan::matches_any(&ctx.plan.replication.groups, g))
                    .map(str::to_owned),
            );
        }
    }
    groups.into_iter().collect()
}

/// Move every home group past the stranded records: never backwards, never a group with live
/// members (checked for all groups before any commit where the cluster reports membership;
/// the broker's refusal of the commit guards where it does not).
async fn skip(ctx: &mut StepCtx<'_>, flow: &Flow, found: &Found) -> Result<String, StepError> {
    let groups = home_groups(ctx, flow).await;
    let primary = flow.target.clone();
    match ctx.wait(primary.batch_group_states(&groups)).await {
        super::Waited::Done(Ok(states)) => {
            let active: Vec<String> = states
                .iter()
                .filter(|d| d.has_members())
                .map(|d| {
                    format!(
                        "{} ({})",
                        d.group,
                        d.members
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect();
            if !active.is_empty() {
                return Err(StepError::Failed(format!(
                    "groups with live members on primary were not moved past the stranded records: {}; stop their consumers at home and run again (nothing was skipped)",
                    active.join("; ")
                )));
            }
        }
        super::Waited::Done(Err(KafkaError::Unsupported { .. })) => {}
        super::Waited::Done(Err(e)) => {
            return Err(StepError::Failed(format!(
                "failed to read the home groups' states on primary: {e}; nothing was skipped"
            )));
        }
        super::Waited::DeadlinePassed => {
            return Err(StepError::Failed(
                "failed to read the home groups' states on primary within the step's timeout; nothing was skipped".to_owned(),
            ));
        }
        super::Waited::Cancelled => {
            return Err(StepError::Interrupted(
                "interrupted before skipping the stranded records".to_owned(),
            ));
        }
    }
    let tps: Vec<TopicPartition> = found
        .partitions
        .iter()
        .map(|p| TopicPartition::new(p.topic.clone(), p.partition))
        .collect();
    let mut moved = 0usize;
    for group in &groups {
        let committed = ctx
            .bounded(
                &format!("read group {group}'s offsets on primary"),
                primary.committed_offsets(group, &tps),
            )
            .await?;
        let rows: Vec<SkipRow> = found
            .partitions
            .iter()
            .zip(&committed)
            .map(|(p, (_, was))| skip_row(p, *was))
            .collect();
        let commits: Vec<(TopicPartition, i64)> = rows
            .iter()
            .filter(|r| r.action == SkipAction::Commit)
            .filter_map(|r| Some((TopicPartition::new(r.topic.clone(), r.partition), r.now?)))
            .collect();
        let skipped: i64 = rows.iter().map(|r| r.stranded_skipped).sum();
        if commits.is_empty() {
            let unchanged = rows
                .iter()
                .filter(|r| r.action == SkipAction::Unchanged)
                .count();
            ctx.recorder.observe(
                "stranded_group",
                format!(
                    "group {group}: not moved: past the stranded records on {unchanged} of {} partitions, no commit on the others",
                    rows.len()
                ),
                serde_json::json!({ "group": group, "partitions": rows }),
            )?;
            continue;
        }
        if let Err(e) = ctx
            .bounded(
                &format!("commit group {group} past the stranded records on primary"),
                primary.commit_offsets(group, &commits),
            )
            .await
        {
            ctx.recorder.observe(
                "stranded_group",
                format!("group {group}: not moved: {e}"),
                serde_json::json!({ "group": group, "partitions": rows, "error": e.to_string() }),
            )?;
            return Err(e);
        }
        moved += 1;
        ctx.recorder.decide(
            "kdr",
            format!(
                "move group {group} past {} on primary",
                crate::report::count(usize::try_from(skipped).unwrap_or(0), "stranded record")
            ),
            format!(
                "committed {} of {} partitions at the end of the stranded records; never backwards",
                commits.len(),
                rows.len()
            ),
            serde_json::json!({ "group": group, "partitions": rows }),
        )?;
    }
    Ok(format!(
        "{} of {} moved past them",
        moved,
        crate::report::count(groups.len(), "home group")
    ))
}

fn skip_row(p: &StrandedPartition, was: Option<i64>) -> SkipRow {
    let (now, action) = match was {
        None => (None, SkipAction::NoCommit),
        Some(c) if c >= p.end => (Some(c), SkipAction::Unchanged),
        Some(_) => (Some(p.end), SkipAction::Commit),
    };
    let moved = action == SkipAction::Commit;
    let c = was.unwrap_or(p.end);
    SkipRow {
        topic: p.topic.clone(),
        partition: p.partition,
        was,
        now,
        action,
        stranded_skipped: if moved {
            i64::try_from(p.records)
                .unwrap_or(i64::MAX)
                .min(p.end - c.max(p.from))
        } else {
            0
        },
        also_passed: if moved { (p.from - c).max(0) } else { 0 },
    }
}

/// The stop when the plan has no choice: what to add, where. A refusal, not a failure: a
/// resume would stop again, and once the plan says more its fingerprint no longer matches the
/// log, so the way on is a new run (nothing was claimed or changed).
pub fn missing_choice(ctx: &StepCtx<'_>, found: &Found) -> StepError {
    let step = ctx.step.index;
    StepError::Refused(format!(
        "{} on primary never reached dr ({}), and the plan does not say what to do with them: add `stranded: export`, `stranded: skip` or `stranded: consume` to `failback[{}].declare` (step {step}) in {} line {}, e.g. `- declare: {{ confirm: plan-name, stranded: export }}`, then run the failback again; nothing was repointed",
        crate::report::count(found.total_records as usize, "record"),
        found
            .partitions
            .iter()
            .map(StrandedPartition::line)
            .collect::<Vec<_>>()
            .join("; "),
        step - 1,
        ctx.plan.path.display(),
        ctx.step.line,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_follows_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn an_export_line_carries_every_field_of_the_record() {
        let record = RawRecord {
            offset: 7,
            key: Some(b"k".to_vec()),
            value: None,
            timestamp_ms: Some(1_700_000_000_000),
            headers: vec![
                ("h".to_owned(), Some(b"v1".to_vec())),
                ("n".to_owned(), None),
            ],
        };
        let line: serde_json::Value =
            serde_json::from_str(&export_line("orders", 2, &record)).expect("json");
        assert_eq!(
            line,
            serde_json::json!({
                "v": 1, "topic": "orders", "partition": 2, "offset": 7,
                "timestamp_ms": 1_700_000_000_000_i64, "key": "aw==", "value": null,
                "headers": [ { "key": "h", "value": "djE=" }, { "key": "n", "value": null } ]
            })
        );
    }

    fn event(seq: u64, body: EventBody) -> Event {
        Event {
            v: 1,
            seq,
            ts: "2026-12-02T00:00:00.000Z".to_owned(),
            run_id: "r".to_owned(),
            body,
        }
    }

    fn lag(topic: &str, partition: i32, replicated_to: Option<i64>) -> serde_json::Value {
        serde_json::json!({ "source_topic": topic, "target_topic": format!("primary.{topic}"),
            "partition": partition, "replicated_to": replicated_to })
    }

    #[test]
    fn the_replicated_to_offsets_are_the_failovers_last_measurement() {
        let events = vec![
            event(
                1,
                EventBody::Observation {
                    step: Some(1),
                    kind: Some("declare".to_owned()),
                    name: "rpo_baseline".to_owned(),
                    detail: String::new(),
                    data: serde_json::json!({ "partitions": [lag("orders", 0, Some(5)), lag("orders", 1, Some(9)), lag("orders", 2, None)] }),
                },
            ),
            // An observation of another step is not a measurement of replication.
            event(
                2,
                EventBody::Observation {
                    step: Some(2),
                    kind: Some("validate".to_owned()),
                    name: "x".to_owned(),
                    detail: String::new(),
                    data: serde_json::json!({ "partitions": [lag("orders", 0, Some(100))] }),
                },
            ),
            event(
                3,
                EventBody::Decision {
                    step: Some(3),
                    kind: Some("wait_replication".to_owned()),
                    who: "plan".to_owned(),
                    what: "accept the RPO".to_owned(),
                    why: String::new(),
                    data: serde_json::json!({ "per_partition": [lag("orders", 0, Some(7))] }),
                },
            ),
        ];
        let marks = replicated_to(&events);
        assert_eq!(marks.get(&("orders".to_owned(), 0)), Some(&Some(7)));
        assert_eq!(marks.get(&("orders".to_owned(), 1)), Some(&Some(9)));
        assert_eq!(marks.get(&("orders".to_owned(), 2)), Some(&None));
    }

    fn stranded(from: i64, end: i64, records: u64) -> StrandedPartition {
        StrandedPartition {
            topic: "orders".to_owned(),
            partition: 0,
            replicated_to: from,
            from,
            end,
            records,
            first_offset: Some(from),
            last_offset: Some(end - 1),
            first_timestamp_ms: None,
            last_timestamp_ms: None,
        }
    }

    #[test]
    fn skipping_never_moves_a_group_backwards_and_counts_what_it_passes() {
        let p = stranded(6, 10, 4);
        let row = skip_row(&p, Some(3));
        assert_eq!(
            (row.now, row.action, row.stranded_skipped, row.also_passed),
            (Some(10), SkipAction::Commit, 4, 3)
        );
        let row = skip_row(&p, Some(8));
        assert_eq!(
            (row.now, row.action, row.stranded_skipped, row.also_passed),
            (Some(10), SkipAction::Commit, 2, 0)
        );
        let row = skip_row(&p, Some(12));
        assert_eq!(
            (row.now, row.action, row.stranded_skipped),
            (Some(12), SkipAction::Unchanged, 0)
        );
        let row = skip_row(&p, None);
        assert_eq!((row.now, row.action), (None, SkipAction::NoCommit));
    }
}
