//! Reads of MirrorMaker 2's internal topics for one flow: offset syncs, checkpoints and
//! heartbeats, each read once to its end and decoded by `mm2/`.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::kafka::{self, KafkaError, ReadOptions, RecordView};
use crate::mm2::{CheckpointIndex, HeartbeatView, OffsetSync};
use crate::plan::{OffsetSyncsLocation, Role};

use super::Flow;

/// Every offset sync per source (topic, partition), in log order.
pub type OffsetSyncs = BTreeMap<(String, i32), Vec<OffsetSync>>;

impl Flow {
    /// Every offset sync per source partition, in log order, read once from the offset-syncs
    /// topic. `None` when the topic cannot be read (on a dead source, say).
    pub async fn offset_syncs(&self, within: Duration) -> Option<OffsetSyncs> {
        let (topic, cluster, _) = self.offset_syncs_holder();
        let read = cluster
            .read_to_end(&topic, 0, read_options(within, false))
            .await
            .ok()?;
        let mut syncs = OffsetSyncs::new();
        for r in &read.records {
            if let Ok(sync) = OffsetSync::decode(r.key.as_deref(), r.value.as_deref()) {
                syncs
                    .entry((sync.topic.clone(), sync.partition))
                    .or_default()
                    .push(sync);
            }
        }
        Some(syncs)
    }

    /// The offset-syncs topic of this flow, and the cluster that holds it (with its role):
    /// the source when `offset_syncs_location: source`, the target when `target`.
    pub fn offset_syncs_holder(&self) -> (String, &kafka::Cluster, Role) {
        let (topic, holder) = self.policy.offset_syncs_topic_for_flow(
            self.source_alias(),
            self.target_alias(),
            match self.offset_syncs_location {
                OffsetSyncsLocation::Source => crate::mm2::OffsetSyncsLocation::Source,
                OffsetSyncsLocation::Target => crate::mm2::OffsetSyncsLocation::Target,
            },
        );
        match holder {
            crate::mm2::ClusterRole::Source => (topic, &self.source, self.source_plan.role),
            crate::mm2::ClusterRole::Target => (topic, &self.target, self.target_plan.role),
        }
    }

    /// Read the checkpoints topic on the target once.
    pub async fn checkpoints(&self, within: Duration) -> Result<CheckpointIndex, KafkaError> {
        self.checkpoints_counted(within, Arc::default()).await
    }

    /// Read the checkpoints topic on the target once, indexing each record as it arrives (the
    /// records themselves are not kept) and counting them in `read` as it goes, for progress.
    pub async fn checkpoints_counted(
        &self,
        within: Duration,
        read: Arc<AtomicU64>,
    ) -> Result<CheckpointIndex, KafkaError> {
        let step = move |index: &mut CheckpointIndex, r: RecordView<'_>| {
            index.push(crate::mm2::checkpoints::RawRecord {
                offset: r.offset,
                key: r.key,
                value: r.value,
                timestamp_ms: r.timestamp_ms.unwrap_or(0),
            });
            read.fetch_add(1, Ordering::Relaxed);
        };
        let topic = self.checkpoints_topic();
        let options = read_options(within, false);
        let (index, _) = self
            .target
            .scan_to_end(&topic, 0, options, CheckpointIndex::default(), step)
            .await?;
        Ok(index)
    }

    /// The newest heartbeat from source to target, seen on the target: both MM2's own
    /// `heartbeats` there and the replicated `<source>.heartbeats`.
    pub async fn newest_heartbeat_ms(&self, within: Duration) -> Option<i64> {
        let mut newest = None;
        for topic in [
            self.policy.heartbeats_topic().to_owned(),
            self.remote_topic(self.policy.heartbeats_topic()),
        ] {
            let Ok(read) = self
                .target
                .read_to_end(&topic, 0, read_options(within, true))
                .await
            else {
                continue;
            };
            let view = HeartbeatView::from_records(mm2_records(&read.records));
            if let Some(ts) = view.latest(self.source_alias(), self.target_alias()) {
                newest = newest.max(Some(ts));
            }
        }
        newest
    }

    /// The newest heartbeat that MM2's source connector copied to the target
    /// (`<source>.heartbeats`, a copy of the source's `heartbeats` topic). Unlike the
    /// `heartbeats` topic, which a flow's herder fills even when that flow is disabled, this
    /// proves records are actually being replicated.
    pub async fn newest_replicated_heartbeat_ms(&self, within: Duration) -> Option<i64> {
        let topic = self.remote_topic(self.policy.heartbeats_topic());
        let read = self
            .target
            .read_to_end(&topic, 0, read_options(within, true))
            .await
            .ok()?;
        let view = HeartbeatView::from_records(mm2_records(&read.records));
        // Whatever herder wrote them on the source, their arrival here is the connector's work.
        view.pairs().into_iter().map(|(_, _, ts)| ts).max()
    }
}

pub(super) fn read_options(within: Duration, allow_partial: bool) -> ReadOptions {
    ReadOptions {
        timeout: Some(within),
        allow_partial,
    }
}

/// Records as the Kafka layer read them, in the form the MM2 decoders take.
fn mm2_records(
    records: &[kafka::RawRecord],
) -> impl Iterator<Item = crate::mm2::checkpoints::RawRecord<'_>> {
    records.iter().map(|r| crate::mm2::checkpoints::RawRecord {
        offset: r.offset,
        key: r.key.as_deref(),
        value: r.value.as_deref(),
        timestamp_ms: r.timestamp_ms.unwrap_or(0),
    })
}
