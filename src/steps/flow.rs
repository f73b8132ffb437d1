//! The replication flow a run works on: source and target clusters, MM2's naming between them,
//! and the measurements the Kafka steps share (replicated topics, lag, checkpoints, heartbeats).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::kafka::{
    self, Cluster, ClusterSpec, KafkaError, Reachability, ReadOptions, TopicPartition,
};
use crate::mm2::{CheckpointIndex, HeartbeatView, OffsetSync, ReplicationPolicy};
use crate::plan::{ClusterPlan, Direction, OffsetSyncsLocation, Plan, Role, Selector, matches_any};

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

    /// Every offset sync per source partition, in log order, read once from the offset-syncs
    /// topic. `None` when the topic cannot be read (on a dead source, say).
    pub async fn offset_syncs(
        &self,
        within: Duration,
    ) -> Option<BTreeMap<(String, i32), Vec<OffsetSync>>> {
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
        let mut syncs: BTreeMap<(String, i32), Vec<OffsetSync>> = BTreeMap::new();
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
            self.offset_syncs(self.source.operation_timeout()).await
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
            // The newest sync: it pairs the furthest record known to be on the target.
            let sync = syncs
                .as_ref()
                .and_then(|s| s.get(&(p.source_topic.clone(), p.partition)))
                .and_then(|s| s.last());
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
        Ok(CheckpointIndex::from_records(mm2_records(&read.records)))
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
        let view = HeartbeatView::from_records(mm2_records(&read.records));
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

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sum of known lags.
pub fn total_lag(lags: &[PartitionLag]) -> i64 {
    lags.iter().filter_map(|l| l.lag).sum()
}

/// One partition of one group's offset translation: the shape the translate_offsets step logs
/// (and the core of what `kdr offsets translate` prints).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionTranslation {
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
    pub source_offset: i64,
    pub target_offset: i64,
    pub current_offset: Option<i64>,
    pub checkpoint_age_ms: i64,
    pub action: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupTranslation {
    pub group: String,
    pub state: String,
    pub partitions: Vec<PartitionTranslation>,
}

impl PartitionTranslation {
    /// Whether applying the translation writes this partition's offset.
    pub fn commits(&self) -> bool {
        self.action == "commit" || self.action.starts_with("clamp")
    }
}

impl GroupTranslation {
    /// The offsets applying the translation commits on the target.
    pub fn commits(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter(|p| p.commits())
            .map(|p| {
                (
                    TopicPartition::new(p.target_topic.clone(), p.partition),
                    p.target_offset,
                )
            })
            .collect()
    }
}

/// The groups to translate: names as given, `re:` patterns matched against the groups that have
/// checkpoints. Sorted, without duplicates.
pub fn resolve_groups(selectors: &[Selector], index: &CheckpointIndex) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in selectors {
        match s {
            Selector::Name(n) => out.push(n.clone()),
            Selector::Pattern { .. } => {
                out.extend(
                    index
                        .groups()
                        .into_iter()
                        .filter(|g| s.matches(g))
                        .map(str::to_owned),
                );
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

impl Flow {
    /// The source topic a checkpoint's (target-named) topic came from.
    pub fn source_topic_of(&self, target_topic: &str) -> String {
        match &self.policy {
            ReplicationPolicy::Identity { .. } => target_topic.to_owned(),
            ReplicationPolicy::Default { .. } => {
                if self.policy.topic_source(target_topic).as_deref() == Some(self.source_alias()) {
                    self.policy
                        .upstream_topic(target_topic)
                        .unwrap_or_else(|| target_topic.to_owned())
                } else {
                    // MM2 renamed a topic that came from the target back to its original name.
                    self.policy
                        .format_remote_topic(self.target_alias(), target_topic)
                }
            }
        }
    }

    /// The group's state on the target as translations report it: `active` when it has live
    /// members (their description is returned too), else the broker's state in lower case, or
    /// `unknown (…)` when the target does not say. Never fails: an unknown state does not
    /// stop a translation, the broker's refusal of a commit to a live group is the last guard.
    pub async fn target_group_state(
        &self,
        group: &str,
        deadline: tokio::time::Instant,
    ) -> (String, Option<kafka::GroupDescription>) {
        match tokio::time::timeout_at(deadline, self.target.group_state(group)).await {
            Ok(Ok(desc)) if desc.has_members() => ("active".to_owned(), Some(desc)),
            Ok(Ok(desc)) => (desc.state.to_lowercase(), None),
            Ok(Err(KafkaError::Unsupported { .. })) => (
                "unknown (membership not reported by this cluster)".to_owned(),
                None,
            ),
            Ok(Err(e)) => (format!("unknown ({e})"), None),
            Err(_) => ("unknown (no answer in time)".to_owned(), None),
        }
    }
}

/// The target partitions a group has checkpoints for.
pub fn checkpointed_partitions(index: &CheckpointIndex, group: &str) -> Vec<TopicPartition> {
    index
        .for_group(group)
        .iter()
        .map(|(c, _)| TopicPartition::new(c.topic.clone(), c.partition))
        .collect()
}

/// What the target holds for a group's checkpointed partitions.
#[derive(Debug, Clone, Default)]
pub struct TargetPositions {
    /// The group's committed offsets there, `None` where it has none.
    pub current: Vec<(TopicPartition, Option<i64>)>,
    /// The partitions' log start and end offsets.
    pub marks: Vec<kafka::Watermarks>,
}

/// What to do for every checkpointed partition of a group, given what the target holds.
/// Translations below the log start or past the log end are clamped; a translation behind the
/// group's current offset is skipped unless `allow_rewind`. Pure: the reads are the caller's.
pub fn plan_translation(
    flow: &Flow,
    group: &str,
    index: &CheckpointIndex,
    target: &TargetPositions,
    allow_rewind: bool,
    now_ms: i64,
) -> Vec<PartitionTranslation> {
    let mut partitions = Vec::new();
    for (checkpoint, ts) in index.for_group(group) {
        let tp = (checkpoint.topic.as_str(), checkpoint.partition);
        let current_offset = target
            .current
            .iter()
            .find(|(t, _)| (t.topic.as_str(), t.partition) == tp)
            .and_then(|(_, o)| *o);
        let mark = target
            .marks
            .iter()
            .find(|w| (w.topic.as_str(), w.partition) == tp);
        let translated = checkpoint.downstream_offset;
        let (target_offset, action) = match mark {
            None => (
                translated,
                "skip: no such partition on the target".to_owned(),
            ),
            Some(w) if translated < w.low => (
                w.low,
                format!("clamp: {translated} is below the log start {}", w.low),
            ),
            Some(w) if translated > w.high => (
                w.high,
                format!("clamp: {translated} is past the log end {}", w.high),
            ),
            Some(_) => (translated, String::new()),
        };
        let action = if !action.is_empty() && action.starts_with("skip") {
            action
        } else if current_offset.is_some_and(|c| target_offset < c) && !allow_rewind {
            "skip: would rewind".to_owned()
        } else if current_offset == Some(target_offset) {
            "unchanged".to_owned()
        } else if action.is_empty() {
            "commit".to_owned()
        } else {
            action
        };
        partitions.push(PartitionTranslation {
            source_topic: flow.source_topic_of(&checkpoint.topic),
            target_topic: checkpoint.topic.clone(),
            partition: checkpoint.partition,
            source_offset: checkpoint.upstream_offset,
            target_offset,
            current_offset,
            checkpoint_age_ms: now_ms - ts,
            action,
        });
    }
    partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Watermarks;
    use crate::mm2::Checkpoint;

    fn plan(policy: &str) -> Plan {
        let text = format!(
            "version: 1\nname: t\nclusters:\n  primary: {{ bootstrap_servers: \"127.0.0.1:1\" }}\n  dr: {{ bootstrap_servers: \"127.0.0.1:2\" }}\nreplication: {{ {policy}, topics: [orders], groups: [g, \"re:app-.*\"] }}\nfailover:\n  - translate_offsets: {{}}\nfailback:\n  - translate_offsets: {{}}\n"
        );
        crate::plan::load_bytes(
            std::path::Path::new("t.yaml"),
            text.as_bytes(),
            std::path::Path::new("."),
            &crate::plan::SystemSubstitutions,
        )
        .expect("plan")
    }

    fn flow(policy: &str, direction: Direction) -> Flow {
        let plan = plan(policy);
        let clusters = Clusters::from_plan(&plan).expect("clusters");
        Flow::new(&plan, &clusters, direction)
    }

    /// Checkpoints of group `g` (and `app-1`) as MM2 writes them, stamped 1000.
    fn index(checkpoints: &[(&str, &str, i32, i64, i64)]) -> CheckpointIndex {
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = checkpoints
            .iter()
            .map(|(group, topic, partition, upstream, downstream)| {
                let c = Checkpoint {
                    group: (*group).to_owned(),
                    topic: (*topic).to_owned(),
                    partition: *partition,
                    upstream_offset: *upstream,
                    downstream_offset: *downstream,
                    metadata: String::new(),
                };
                (
                    c.encode_key().expect("key"),
                    c.encode_value().expect("value"),
                )
            })
            .collect();
        CheckpointIndex::from_records(encoded.iter().enumerate().map(|(i, (k, v))| {
            crate::mm2::checkpoints::RawRecord {
                offset: i as i64,
                key: Some(k),
                value: Some(v),
                timestamp_ms: 1000,
            }
        }))
    }

    fn marks(low: i64, high: i64, partitions: i32) -> Vec<Watermarks> {
        (0..partitions)
            .map(|p| Watermarks {
                topic: "primary.orders".to_owned(),
                partition: p,
                low,
                high,
            })
            .collect()
    }

    fn actions(partitions: &[PartitionTranslation]) -> Vec<(i64, &str)> {
        partitions
            .iter()
            .map(|p| (p.target_offset, p.action.as_str()))
            .collect()
    }

    #[test]
    fn translation_commits_clamps_and_never_rewinds_unless_allowed() {
        let flow = flow("policy: default", Direction::Failover);
        let index = index(&[
            ("g", "primary.orders", 0, 100, 90),
            ("g", "primary.orders", 1, 100, 5),
            ("g", "primary.orders", 2, 100, 500),
            ("g", "primary.orders", 3, 100, 40),
            ("g", "primary.orders", 4, 100, 60),
            ("g", "primary.orders", 5, 100, 70),
        ]);
        let tp = |p| TopicPartition::new("primary.orders", p);
        let target = TargetPositions {
            current: vec![(tp(3), Some(50)), (tp(4), Some(60)), (tp(0), None)],
            marks: marks(10, 200, 5),
        };
        let planned = plan_translation(&flow, "g", &index, &target, false, 1500);
        assert_eq!(
            actions(&planned),
            [
                (90, "commit"),
                (10, "clamp: 5 is below the log start 10"),
                (200, "clamp: 500 is past the log end 200"),
                (40, "skip: would rewind"),
                (60, "unchanged"),
                (70, "skip: no such partition on the target"),
            ]
        );
        assert!(planned.iter().all(|p| p.source_topic == "orders"));
        assert!(planned.iter().all(|p| p.checkpoint_age_ms == 500));
        assert_eq!(planned[3].current_offset, Some(50));
        let group = GroupTranslation {
            group: "g".to_owned(),
            state: "empty".to_owned(),
            partitions: planned,
        };
        assert_eq!(
            group.commits(),
            [(tp(0), 90), (tp(1), 10), (tp(2), 200)],
            "only commits and clamps are written"
        );

        let rewinding = plan_translation(&flow, "g", &index, &target, true, 1500);
        assert_eq!(rewinding[3].action, "commit");
    }

    #[test]
    fn source_topics_follow_the_policy_both_ways() {
        let failover = flow("policy: default", Direction::Failover);
        assert_eq!(failover.source_topic_of("primary.orders"), "orders");
        // A checkpoint for a topic that came from the target names its original.
        assert_eq!(failover.source_topic_of("orders"), "dr.orders");
        let failback = flow("policy: default", Direction::Failback);
        assert_eq!(failback.source_topic_of("dr.orders"), "orders");
        let custom = flow("policy: default, separator: \"_\"", Direction::Failover);
        assert_eq!(custom.source_topic_of("primary_orders"), "orders");
        let identity = flow("policy: identity", Direction::Failover);
        assert_eq!(identity.source_topic_of("orders"), "orders");
    }

    #[test]
    fn groups_are_named_or_matched_against_the_checkpointed_ones() {
        let plan = plan("policy: default");
        let index = index(&[
            ("app-1", "primary.orders", 0, 1, 1),
            ("app-2", "primary.orders", 0, 1, 1),
            ("other", "primary.orders", 0, 1, 1),
        ]);
        assert_eq!(
            resolve_groups(&plan.replication.groups, &index),
            ["app-1", "app-2", "g"]
        );
    }
}
