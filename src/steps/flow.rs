//! The replication flow a run works on: source and target clusters, MM2's naming between them,
//! and the measurements the Kafka steps share (replicated topics, lag, checkpoints, heartbeats).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::kafka::{
    self, Cluster, ClusterSpec, KafkaError, Reachability, ReadOptions, TopicPartition,
};
use crate::mm2::{CheckpointIndex, HeartbeatView, OffsetSync, ReplicationPolicy};
use crate::plan::{ClusterPlan, Direction, OffsetSyncsLocation, Plan, Role, matches_any};

/// Each librdkafka call is bounded by this, and by the step's deadline around it.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Clients for both clusters of a plan, made once per run.
#[derive(Clone, Debug)]
pub struct Clusters {
    pub primary: Cluster,
    pub dr: Cluster,
}

impl Clusters {
    pub fn from_plan(plan: &Plan) -> Result<Clusters, KafkaError> {
        Ok(Clusters {
            primary: Cluster::new(spec(&plan.primary), OPERATION_TIMEOUT)?,
            dr: Cluster::new(spec(&plan.dr), OPERATION_TIMEOUT)?,
        })
    }

    pub fn get(&self, role: Role) -> &Cluster {
        match role {
            Role::Primary => &self.primary,
            Role::Dr => &self.dr,
        }
    }
}

pub fn kafka_role(role: Role) -> kafka::ClusterRole {
    match role {
        Role::Primary => kafka::ClusterRole::Primary,
        Role::Dr => kafka::ClusterRole::Dr,
    }
}

fn spec(cluster: &ClusterPlan) -> ClusterSpec {
    let mut spec = ClusterSpec::new(kafka_role(cluster.role), cluster.bootstrap_servers.clone());
    for setting in &cluster.client {
        let property = if setting.secret {
            kafka::ClientProperty::secret(setting.key.clone(), setting.value.clone())
        } else {
            kafka::ClientProperty::new(setting.key.clone(), setting.value.clone())
        };
        spec = spec.with_property(property);
    }
    spec
}

/// One direction of MirrorMaker 2 replication: `source -> target`.
#[derive(Clone, Debug)]
pub struct Flow {
    pub direction: Direction,
    pub source: Cluster,
    pub target: Cluster,
    pub source_plan: ClusterPlan,
    pub target_plan: ClusterPlan,
    pub policy: ReplicationPolicy,
    pub offset_syncs_location: OffsetSyncsLocation,
    pub topics: Vec<crate::plan::Selector>,
}

/// A replicated partition: its name on the source and on the target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ReplicatedPartition {
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
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
    /// `offset_sync` when measured through MM2's offset syncs, `count` when by record counts.
    pub method: &'static str,
    pub target_end: i64,
}

impl Flow {
    pub fn new(plan: &Plan, clusters: &Clusters, direction: Direction) -> Flow {
        let (source_plan, target_plan) = plan.source_target(direction);
        Flow {
            direction,
            source: clusters.get(source_plan.role).clone(),
            target: clusters.get(target_plan.role).clone(),
            source_plan: source_plan.clone(),
            target_plan: target_plan.clone(),
            policy: plan.replication.mm2_policy(&source_plan.mm2_alias),
            offset_syncs_location: plan.replication.offset_syncs_location,
            topics: plan.replication.topics.clone(),
        }
    }

    pub fn source_alias(&self) -> &str {
        &self.source_plan.mm2_alias
    }

    pub fn target_alias(&self) -> &str {
        &self.target_plan.mm2_alias
    }

    pub fn remote_topic(&self, source_topic: &str) -> String {
        self.policy
            .format_remote_topic(self.source_alias(), source_topic)
    }

    pub fn checkpoints_topic(&self) -> String {
        self.policy.checkpoints_topic(self.source_alias())
    }

    /// Whether a source topic is one MM2 replicates in this flow: it matches the plan and is
    /// neither internal nor itself a replica of the target (MM2 never copies those back).
    pub fn replicates(&self, topic: &str) -> bool {
        matches_any(&self.topics, topic)
            && !self.policy.is_internal_topic(topic)
            && !self.policy.is_heartbeats_topic(topic)
            && !matches!(&self.policy, ReplicationPolicy::Default { .. } if self.policy.topic_source(topic).as_deref() == Some(self.target_alias()))
    }

    /// The replicated partitions, listed on the source.
    pub async fn partitions_from_source(&self) -> Result<Vec<ReplicatedPartition>, KafkaError> {
        let topics = self.source.topics(|t| self.replicates(t)).await?;
        Ok(self.expand(topics))
    }

    /// The replicated partitions as the target knows them (remote topics present there), for
    /// when the source cannot be asked.
    pub async fn partitions_from_target(&self) -> Result<Vec<ReplicatedPartition>, KafkaError> {
        let topics = self.target.topics(|_| true).await?;
        let mut out = Vec::new();
        for t in topics {
            let source_topic = match &self.policy {
                ReplicationPolicy::Default { .. } => {
                    if self.policy.topic_source(&t.name).as_deref() != Some(self.source_alias()) {
                        continue;
                    }
                    match self.policy.upstream_topic(&t.name) {
                        Some(u) => u,
                        None => continue,
                    }
                }
                ReplicationPolicy::Identity { .. } => t.name.clone(),
            };
            if !self.replicates(&source_topic) {
                continue;
            }
            for p in &t.partitions {
                out.push(ReplicatedPartition {
                    source_topic: source_topic.clone(),
                    target_topic: t.name.clone(),
                    partition: *p,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    fn expand(&self, topics: Vec<kafka::TopicInfo>) -> Vec<ReplicatedPartition> {
        let mut out = Vec::new();
        for t in topics {
            let target_topic = self.remote_topic(&t.name);
            for p in t.partitions {
                out.push(ReplicatedPartition {
                    source_topic: t.name.clone(),
                    target_topic: target_topic.clone(),
                    partition: p,
                });
            }
        }
        out.sort();
        out
    }

    /// The newest offset sync per source partition, read once from the offset-syncs topic.
    /// `None` when the topic cannot be read (on a dead source, say).
    pub async fn latest_offset_syncs(
        &self,
        within: Duration,
    ) -> Option<BTreeMap<(String, i32), OffsetSync>> {
        let (topic, holder) = self.policy.offset_syncs_topic_for_flow(
            self.source_alias(),
            self.target_alias(),
            match self.offset_syncs_location {
                OffsetSyncsLocation::Source => crate::mm2::OffsetSyncsLocation::Source,
                OffsetSyncsLocation::Target => crate::mm2::OffsetSyncsLocation::Target,
            },
        );
        let cluster = match holder {
            crate::mm2::ClusterRole::Source => &self.source,
            crate::mm2::ClusterRole::Target => &self.target,
        };
        let read = cluster
            .read_to_end(
                &topic,
                0,
                ReadOptions {
                    timeout: Some(within),
                    allow_partial: false,
                },
            )
            .await
            .ok()?;
        let mut latest = BTreeMap::new();
        for r in &read.records {
            if let Ok(sync) = OffsetSync::decode(r.key.as_deref(), r.value.as_deref()) {
                latest.insert((sync.topic.clone(), sync.partition), sync);
            }
        }
        Some(latest)
    }

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
        let target_marks = self.target.watermarks(&target_tps).await?;
        let target_of: BTreeMap<(String, i32), (i64, i64)> = target_marks
            .iter()
            .map(|w| ((w.topic.clone(), w.partition), (w.low, w.high)))
            .collect();
        let source_marks: BTreeMap<(String, i32), (i64, i64)> = match source_ends {
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
            self.latest_offset_syncs(self.source.operation_timeout())
                .await
        } else {
            None
        };
        let mut out = Vec::new();
        for p in partitions {
            let (t_low, t_end) = target_of
                .get(&(p.target_topic.clone(), p.partition))
                .copied()
                .unwrap_or((0, 0));
            let source = source_marks
                .get(&(p.source_topic.clone(), p.partition))
                .copied();
            let sync = syncs
                .as_ref()
                .and_then(|s| s.get(&(p.source_topic.clone(), p.partition)));
            let (replicated_to, method) = match (sync, source) {
                // A sync pairs the offsets of one record; everything the target holds after that
                // record came, in order, from after it on the source.
                (Some(sync), _) if t_end > sync.downstream_offset => (
                    Some(sync.upstream_offset + (t_end - sync.downstream_offset)),
                    "offset_sync",
                ),
                (Some(sync), _) => (Some(sync.upstream_offset + 1), "offset_sync"),
                (None, Some((s_low, _))) if s_low >= 0 => (Some(s_low + (t_end - t_low)), "count"),
                (None, _) => (Some(t_end), "count"),
            };
            let source_end = source.map(|(_, end)| end);
            let lag = source_end
                .zip(replicated_to)
                .map(|(end, to)| (end - to).max(0));
            out.push(PartitionLag {
                source_topic: p.source_topic.clone(),
                target_topic: p.target_topic.clone(),
                partition: p.partition,
                source_end,
                replicated_to,
                lag,
                method,
                target_end: t_end,
            });
        }
        Ok(out)
    }

    /// Read the checkpoints topic on the target once.
    pub async fn checkpoints(&self, within: Duration) -> Result<CheckpointIndex, KafkaError> {
        let read = self
            .target
            .read_to_end(
                &self.checkpoints_topic(),
                0,
                ReadOptions {
                    timeout: Some(within),
                    allow_partial: false,
                },
            )
            .await?;
        Ok(CheckpointIndex::from_records(read.records.iter().map(
            |r| crate::mm2::checkpoints::RawRecord {
                offset: r.offset,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                timestamp_ms: r.timestamp_ms.unwrap_or(0),
            },
        )))
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
                .read_to_end(
                    &topic,
                    0,
                    ReadOptions {
                        timeout: Some(within),
                        allow_partial: true,
                    },
                )
                .await
            else {
                continue;
            };
            let view = HeartbeatView::from_records(read.records.iter().map(|r| {
                crate::mm2::checkpoints::RawRecord {
                    offset: r.offset,
                    key: r.key.as_deref(),
                    value: r.value.as_deref(),
                    timestamp_ms: r.timestamp_ms.unwrap_or(0),
                }
            }));
            if let Some(ts) = view.latest(self.source_alias(), self.target_alias()) {
                newest = newest.max(Some(ts));
            }
        }
        newest
    }

    /// The newest heartbeat that MM2's source connector copied to the target
    /// (`<source>.heartbeats`, a copy of the source's `heartbeats` topic). Unlike the `heartbeats` topic, which a flow's herder fills even
    /// when that flow is disabled, this proves records are actually being replicated.
    pub async fn newest_replicated_heartbeat_ms(&self, within: Duration) -> Option<i64> {
        let topic = self.remote_topic(self.policy.heartbeats_topic());
        let read = self
            .target
            .read_to_end(
                &topic,
                0,
                ReadOptions {
                    timeout: Some(within),
                    allow_partial: true,
                },
            )
            .await
            .ok()?;
        let view = HeartbeatView::from_records(read.records.iter().map(|r| {
            crate::mm2::checkpoints::RawRecord {
                offset: r.offset,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                timestamp_ms: r.timestamp_ms.unwrap_or(0),
            }
        }));
        // Whatever herder wrote them on the source, their arrival here is the connector's work.
        view.pairs().into_iter().map(|(_, _, ts)| ts).max()
    }

    pub async fn source_reachable(&self) -> Reachability {
        match self.source.probe().await {
            Ok(r) => r,
            Err(e) => Reachability::Unreachable {
                reason: e.to_string(),
            },
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sum of known lags.
pub fn total_lag(lags: &[PartitionLag]) -> i64 {
    lags.iter().filter_map(|l| l.lag).sum()
}
