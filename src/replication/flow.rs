//! One direction of MirrorMaker 2 replication and its naming: which topics it copies, what
//! they are called on the target, and which partitions that makes.

use serde::Serialize;

use crate::kafka::{self, Cluster, KafkaError, Reachability};
use crate::mm2::ReplicationPolicy;
use crate::plan::{ClusterPlan, Direction, OffsetSyncsLocation, Plan, Selector, matches_any};

use super::Clusters;

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
    pub topics: Vec<Selector>,
}

/// A replicated partition: its name on the source and on the target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ReplicatedPartition {
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
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

    pub(super) fn expand(&self, topics: Vec<kafka::TopicInfo>) -> Vec<ReplicatedPartition> {
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

    pub async fn source_reachable(&self) -> Reachability {
        match self.source.probe().await {
            Ok(r) => r,
            Err(e) => Reachability::Unreachable {
                reason: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::replication) fn plan(policy: &str) -> Plan {
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

    pub(in crate::replication) fn flow(policy: &str, direction: Direction) -> Flow {
        let plan = plan(policy);
        let clusters = Clusters::from_plan(&plan).expect("clusters");
        Flow::new(&plan, &clusters, direction)
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
}
