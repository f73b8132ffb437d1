//! How far a flow has replicated each partition: the source's end offset against what is
//! known to be on the target.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Serialize, Serializer};

use crate::kafka::{KafkaError, TopicPartition, Watermarks};

use super::{Flow, OffsetSyncs, ReplicatedPartition};

/// How `replicated_to` was worked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LagMethod {
    /// Through MM2's offset syncs, which pair a source offset with its target offset.
    OffsetSync,
    /// By record counts: the source's log start plus what the target holds.
    Count,
    /// The target has no such partition (its topic is missing there): nothing the source
    /// holds is on the target, every record is at risk.
    TargetMissing,
}

impl fmt::Display for LagMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LagMethod::OffsetSync => "offset_sync",
            LagMethod::Count => "count",
            LagMethod::TargetMissing => "target_missing",
        })
    }
}

impl Serialize for LagMethod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// How far one partition has been replicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
    /// The source's log end offset (None when the source could not be read).
    pub source_end: Option<i64>,
    /// The source offset up to which records are known to be on the target.
    pub replicated_to: Option<i64>,
    /// `source_end - replicated_to`, never negative; None when unknown.
    pub lag: Option<i64>,
    pub method: LagMethod,
    pub target_end: i64,
}

impl PartitionLag {
    /// Whether the target lacks this partition altogether.
    pub fn missing_on_target(&self) -> bool {
        self.method == LagMethod::TargetMissing
    }
}

/// Sum of known lags.
pub fn total_lag(lags: &[PartitionLag]) -> i64 {
    lags.iter().filter_map(|l| l.lag).sum()
}

/// The source topics whose partitions the target lacks, sorted, each once.
pub fn topics_missing_on_target(lags: &[PartitionLag]) -> Vec<String> {
    let missing: BTreeSet<&str> = lags
        .iter()
        .filter(|l| l.missing_on_target())
        .map(|l| l.source_topic.as_str())
        .collect();
    missing.into_iter().map(str::to_owned).collect()
}

/// A partition's log start and end offsets, or `None` where the cluster does not have it.
type Marks = Option<(i64, i64)>;

impl Flow {
    /// Per-partition lag. `source_ends` overrides the source's end offsets (the last ones seen,
    /// when the source has gone away); otherwise they are read now.
    ///
    /// Both sides' offsets and the offset syncs are read at once, each side in one batched
    /// call (`Cluster::batch_watermarks`). A partition the target does not have is measured
    /// as [`LagMethod::TargetMissing`] (all its records at risk) and one the source no longer
    /// has as unknown lag: one missing topic never hides the others' lag. Any other failure
    /// of a read fails the measurement.
    pub async fn measure_lag(
        &self,
        partitions: &[ReplicatedPartition],
        source_ends: Option<&BTreeMap<(String, i32), i64>>,
    ) -> Result<Vec<PartitionLag>, KafkaError> {
        let target_tps: Vec<TopicPartition> = partitions
            .iter()
            .map(|p| TopicPartition::new(p.target_topic.clone(), p.partition))
            .collect();
        let read_source = async {
            if source_ends.is_some() {
                return Ok(None);
            }
            let source_tps: Vec<TopicPartition> = partitions
                .iter()
                .map(|p| TopicPartition::new(p.source_topic.clone(), p.partition))
                .collect();
            self.source.batch_watermarks(&source_tps).await.map(Some)
        };
        let read_syncs = async {
            match source_ends {
                Some(_) => None,
                None => self.offset_syncs(self.source.operation_timeout()).await,
            }
        };
        let (target, source, syncs) = tokio::join!(
            self.target.batch_watermarks(&target_tps),
            read_source,
            read_syncs
        );
        let target = present_marks(target?)?;
        let source: Vec<Marks> = match (source?, source_ends) {
            (Some(read), _) => present_marks(read)?,
            (None, Some(ends)) => partitions
                .iter()
                .map(|p| {
                    ends.get(&(p.source_topic.clone(), p.partition))
                        .map(|end| (-1, *end))
                })
                .collect(),
            (None, None) => vec![None; partitions.len()],
        };
        Ok(lags_of(partitions, target, source, syncs.as_ref()))
    }

    /// The replicated partitions, listed on the source, and their lag, as
    /// [`Flow::partitions_from_source`] then [`Flow::measure_lag`] give them, with one metadata
    /// request per cluster instead of four: each side lists its topics and reads their
    /// watermarks in one session (`Cluster::topics_with_watermarks`), both sides and the
    /// offset syncs at once. The target lists the topics named as replicas of the source's
    /// replicated topics; a source partition without one is [`LagMethod::TargetMissing`].
    pub async fn list_and_measure_lag(
        &self,
    ) -> Result<(Vec<ReplicatedPartition>, Vec<PartitionLag>), KafkaError> {
        let source_side = {
            let flow = self.clone();
            self.source
                .topics_with_watermarks(move |t| flow.replicates(t))
        };
        let target_side = {
            let flow = self.clone();
            self.target.topics_with_watermarks(move |t| {
                let source = flow.source_topic_of(t);
                flow.replicates(&source) && flow.remote_topic(&source) == t
            })
        };
        let (source, target, syncs) = tokio::join!(
            source_side,
            target_side,
            self.offset_syncs(self.source.operation_timeout())
        );
        let (topics, source_marks) = source?;
        let (_, target_marks) = target?;
        let partitions = self.expand(topics);
        let (on_target, on_source) = (by_partition(&target_marks), by_partition(&source_marks));
        let (target, source): (Vec<Marks>, Vec<Marks>) = partitions
            .iter()
            .map(|p| {
                let on = |marks: &HashMap<(&str, i32), (i64, i64)>, topic: &str| {
                    marks.get(&(topic, p.partition)).copied()
                };
                (
                    on(&on_target, &p.target_topic),
                    on(&on_source, &p.source_topic),
                )
            })
            .unzip();
        let lags = lags_of(&partitions, target, source, syncs.as_ref());
        Ok((partitions, lags))
    }
}

/// Watermarks by topic and partition.
fn by_partition(marks: &[Watermarks]) -> HashMap<(&str, i32), (i64, i64)> {
    marks
        .iter()
        .map(|w| ((w.topic.as_str(), w.partition), (w.low, w.high)))
        .collect()
}

/// Each partition's lag from its watermarks on both sides (`None` where that side does not
/// have it) and the offset syncs, if read.
fn lags_of(
    partitions: &[ReplicatedPartition],
    target: Vec<Marks>,
    source: Vec<Marks>,
    syncs: Option<&OffsetSyncs>,
) -> Vec<PartitionLag> {
    partitions
        .iter()
        .zip(target.into_iter().zip(source))
        .map(|(p, (target, source))| {
            // The newest sync: it pairs the furthest record known to be on the target.
            let sync = syncs
                .and_then(|s| s.get(&(p.source_topic.clone(), p.partition)))
                .and_then(|s| s.last());
            let (replicated_to, method, t_end) = match (target, sync, source) {
                // Nothing is on the target; what the source no longer holds is gone anyway.
                (None, _, source) => (
                    source.map_or(0, |(s_low, _)| s_low.max(0)),
                    LagMethod::TargetMissing,
                    0,
                ),
                // A sync pairs the offsets of one record; everything the target holds after
                // that record came, in order, from after it on the source.
                (Some((_, t_end)), Some(sync), _) if t_end > sync.downstream_offset => (
                    sync.upstream_offset + (t_end - sync.downstream_offset),
                    LagMethod::OffsetSync,
                    t_end,
                ),
                (Some((_, t_end)), Some(sync), _) => {
                    (sync.upstream_offset + 1, LagMethod::OffsetSync, t_end)
                }
                (Some((t_low, t_end)), None, Some((s_low, _))) if s_low >= 0 => {
                    (s_low + (t_end - t_low), LagMethod::Count, t_end)
                }
                (Some((_, t_end)), None, _) => (t_end, LagMethod::Count, t_end),
            };
            let source_end = source.map(|(_, end)| end);
            PartitionLag {
                source_topic: p.source_topic.clone(),
                target_topic: p.target_topic.clone(),
                partition: p.partition,
                source_end,
                replicated_to: Some(replicated_to),
                lag: source_end.map(|end| (end - replicated_to).max(0)),
                method,
                target_end: t_end,
            }
        })
        .collect()
}

/// Each partition's watermarks, `None` where the cluster does not have it; any other
/// per-partition failure is the first error.
fn present_marks(read: Vec<Result<Watermarks, KafkaError>>) -> Result<Vec<Marks>, KafkaError> {
    Ok(present(read)?
        .into_iter()
        .map(|w| w.map(|w| (w.low, w.high)))
        .collect())
}

/// A batched read's per-partition answers with a partition the cluster does not have (its
/// topic deleted, or never created there) as `None`: one missing topic degrades that topic
/// only. Any other per-partition failure is the first error.
pub fn present<T>(read: Vec<Result<T, KafkaError>>) -> Result<Vec<Option<T>>, KafkaError> {
    read.into_iter()
        .map(|answer| match answer {
            Ok(value) => Ok(Some(value)),
            Err(KafkaError::TopicNotFound { .. } | KafkaError::PartitionNotFound { .. }) => {
                Ok(None)
            }
            Err(other) => Err(other),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_methods_serialise_as_the_json_contract_says() {
        assert_eq!(
            serde_json::to_value(LagMethod::OffsetSync).expect("json"),
            "offset_sync"
        );
        assert_eq!(
            serde_json::to_value(LagMethod::Count).expect("json"),
            "count"
        );
        assert_eq!(LagMethod::OffsetSync.to_string(), "offset_sync");
        assert_eq!(
            serde_json::to_value(LagMethod::TargetMissing).expect("json"),
            "target_missing"
        );
    }
}
