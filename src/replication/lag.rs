//! How far a flow has replicated each partition: the source's end offset against what is
//! known to be on the target.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use crate::kafka::{KafkaError, TopicPartition};

use super::{Flow, ReplicatedPartition};

/// How `replicated_to` was worked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LagMethod {
    /// Through MM2's offset syncs, which pair a source offset with its target offset.
    OffsetSync,
    /// By record counts: the source's log start plus what the target holds.
    Count,
}

impl fmt::Display for LagMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LagMethod::OffsetSync => "offset_sync",
            LagMethod::Count => "count",
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

/// Sum of known lags.
pub fn total_lag(lags: &[PartitionLag]) -> i64 {
    lags.iter().filter_map(|l| l.lag).sum()
}

type Marks = BTreeMap<(String, i32), (i64, i64)>;

impl Flow {
    /// Per-partition lag. `source_ends` overrides the source's end offsets (the last ones seen,
    /// when the source has gone away); otherwise they are read now.
    pub async fn measure_lag(
        &self,
        partitions: &[ReplicatedPartition],
        source_ends: Option<&BTreeMap<(String, i32), i64>>,
    ) -> Result<Vec<PartitionLag>, KafkaError> {
        let target_tps: Vec<TopicPartition> = partitions
            .iter()
            .map(|p| TopicPartition::new(p.target_topic.clone(), p.partition))
            .collect();
        let target_of: Marks = self
            .target
            .watermarks(&target_tps)
            .await?
            .into_iter()
            .map(|w| ((w.topic, w.partition), (w.low, w.high)))
            .collect();
        let source_marks: Marks = match source_ends {
            Some(ends) => ends.iter().map(|(k, v)| (k.clone(), (-1, *v))).collect(),
            None => {
                let source_tps: Vec<TopicPartition> = partitions
                    .iter()
                    .map(|p| TopicPartition::new(p.source_topic.clone(), p.partition))
                    .collect();
                self.source
                    .watermarks(&source_tps)
                    .await?
                    .into_iter()
                    .map(|w| ((w.topic, w.partition), (w.low, w.high)))
                    .collect()
            }
        };
        let syncs = if source_ends.is_none() {
            self.offset_syncs(self.source.operation_timeout()).await
        } else {
            None
        };
        Ok(partitions
            .iter()
            .map(|p| {
                let (t_low, t_end) = target_of
                    .get(&(p.target_topic.clone(), p.partition))
                    .copied()
                    .unwrap_or((0, 0));
                let source = source_marks
                    .get(&(p.source_topic.clone(), p.partition))
                    .copied();
                // The newest sync: it pairs the furthest record known to be on the target.
                let sync = syncs
                    .as_ref()
                    .and_then(|s| s.get(&(p.source_topic.clone(), p.partition)))
                    .and_then(|s| s.last());
                let (replicated_to, method) = match (sync, source) {
                    // A sync pairs the offsets of one record; everything the target holds after
                    // that record came, in order, from after it on the source.
                    (Some(sync), _) if t_end > sync.downstream_offset => (
                        sync.upstream_offset + (t_end - sync.downstream_offset),
                        LagMethod::OffsetSync,
                    ),
                    (Some(sync), _) => (sync.upstream_offset + 1, LagMethod::OffsetSync),
                    (None, Some((s_low, _))) if s_low >= 0 => {
                        (s_low + (t_end - t_low), LagMethod::Count)
                    }
                    (None, _) => (t_end, LagMethod::Count),
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
            .collect())
    }
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
    }
}
