//! kdr's own figures, read back from a run's incident log through its typed events: the lag it
//! measured at the declaration, the loss it accepted, and the re-reads it announced. The drill
//! holds them against what the workload really saw.
//!
//! A log that cannot be read, or an event that does not hold what kdr writes there, is an
//! error: kdr's figure is then unknown, and an unknown accepted loss is never "0 accepted".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::journal::{self, Event, EventBody, JournalError};
use crate::replication::{ReverseObservation, ReversePartition};
use crate::report::incident::ReportError;

/// Why kdr's figures could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Unreadable(#[from] JournalError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{}: event {seq} ({what}) does not hold what kdr writes there: {source}", log.display())]
    Payload {
        log: PathBuf,
        seq: u64,
        what: &'static str,
        source: serde_json::Error,
    },
}

/// The declaration's `rpo_baseline` observation.
#[derive(Deserialize)]
struct RpoBaseline {
    total_lag_records: Option<i64>,
}

/// wait_replication's decision at its bound (accept the RPO, or abort).
#[derive(Deserialize)]
struct LossDecision {
    per_partition: Vec<PartitionLag>,
}

#[derive(Deserialize)]
struct PartitionLag {
    source_topic: String,
    partition: i32,
    lag: Option<i64>,
}

/// translate_offsets' `reprocessing` observation for one group.
#[derive(Deserialize)]
struct Reprocessing {
    group: String,
    may_reread: Option<i64>,
}

/// What one run's log says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Evidence {
    /// The replication lag the declaration measured, in records (None: not measured).
    pub lag_at_declaration: Option<i64>,
    /// Records kdr accepted as lost, per source (topic, partition).
    pub accepted_loss: BTreeMap<(String, i32), i64>,
    /// Per group, the last thing translate_offsets said it may read again (None: unknown).
    pub may_reread: BTreeMap<String, Option<i64>>,
    /// Per group, the failback's reverse mapping as it ended (`reverse_translation`).
    pub reverse: BTreeMap<String, Vec<ReversePartition>>,
}

impl Evidence {
    pub(super) fn read(log: &Path) -> Result<Self, EvidenceError> {
        Self::from_events(log, &journal::read(log)?.events)
    }

    /// `log` only names the file in errors.
    pub(super) fn from_events(log: &Path, events: &[Event]) -> Result<Self, EvidenceError> {
        let mut evidence = Evidence::default();
        for event in events {
            let seq = event.seq;
            match &event.body {
                EventBody::Observation { name, data, .. } if name == "rpo_baseline" => {
                    let baseline: RpoBaseline = payload(log, seq, "rpo_baseline", data)?;
                    evidence.lag_at_declaration = baseline.total_lag_records;
                }
                EventBody::Observation { name, data, .. } if name == "reprocessing" => {
                    let said: Reprocessing = payload(log, seq, "reprocessing", data)?;
                    evidence.may_reread.insert(said.group, said.may_reread);
                }
                EventBody::Observation { name, data, .. } if name == "reverse_translation" => {
                    let mapped: ReverseObservation =
                        payload(log, seq, "reverse_translation", data)?;
                    evidence.reverse.insert(mapped.group, mapped.partitions);
                }
                EventBody::Decision { kind, data, .. }
                    if kind.as_deref() == Some("wait_replication") =>
                {
                    let decision: LossDecision =
                        payload(log, seq, "wait_replication decision", data)?;
                    for p in decision.per_partition {
                        if let Some(lag) = p.lag {
                            evidence
                                .accepted_loss
                                .insert((p.source_topic, p.partition), lag);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(evidence)
    }

    /// What kdr accepted as lost on `topic`'s partitions.
    pub(super) fn accepted_loss_on(&self, topic: &str) -> BTreeMap<(String, i32), i64> {
        self.accepted_loss
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// What kdr said `group` may read again; None when it did not say or did not know.
    pub(super) fn may_reread(&self, group: &str) -> Option<i64> {
        self.may_reread.get(group).copied().flatten()
    }
}

fn payload<T: DeserializeOwned>(
    log: &Path,
    seq: u64,
    what: &'static str,
    data: &serde_json::Value,
) -> Result<T, EvidenceError> {
    T::deserialize(data).map_err(|source| EvidenceError::Payload {
        log: log.to_owned(),
        seq,
        what,
        source,
    })
}
