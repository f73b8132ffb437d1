//! MirrorMaker 2 topic naming, reproduced from `DefaultReplicationPolicy` and
//! `IdentityReplicationPolicy` (Kafka trunk, SPEC §1 and §1.1).
//!
//! kdr must compute the same names MM2 computes: a failover that looks for
//! `primary.orders` while MM2 wrote `primary_orders` silently finds nothing. So every
//! quirk of the Java code is kept on purpose, including the ones that look like bugs
//! (`.hidden` has source `""`, `myheartbeats` is treated as a heartbeat topic by the
//! Identity policy, `primary.checkpoints.internal` has original topic `internal`).

/// The topic every MM2 heartbeat connector writes to. No policy in Kafka overrides it,
/// so a custom separator never changes it.
pub const HEARTBEATS_TOPIC: &str = "heartbeats";

/// The separator MM2 uses when `replication.policy.separator` is not set.
pub const DEFAULT_SEPARATOR: &str = ".";

/// How MM2 turns cluster aliases and topic names into each other.
///
/// The two variants are the two policies shipped with Kafka. A custom policy class
/// cannot be described here; kdr must refuse to guess for those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationPolicy {
    /// `DefaultReplicationPolicy`: remote topics are `<source><separator><topic>`.
    Default {
        /// `replication.policy.separator` (default `.`).
        separator: String,
        /// `replication.policy.internal.topic.separator.enabled` (default `true`): whether
        /// the internal topics (checkpoints, offset-syncs) use `separator` too. When false
        /// they keep the pre-3.1 `.` names, which is how mixed-version fleets stay
        /// compatible (KIP-949).
        internal_separator: bool,
    },
    /// `IdentityReplicationPolicy`: topics keep their names on the target, except
    /// heartbeat topics, which are still prefixed so that cycles of heartbeats stay
    /// visible.
    Identity {
        /// `replication.policy.separator`; only used for heartbeat topics and internal
        /// topic names.
        separator: String,
        /// See [`ReplicationPolicy::Default::internal_separator`].
        internal_separator: bool,
        /// `source.cluster.alias`: what `topic_source` answers for every non-heartbeat
        /// topic, because the name itself carries no source.
        source_cluster_alias: Option<String>,
    },
}

/// Where `offset-syncs.topic.location` puts the offset-syncs topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSyncsLocation {
    /// The default: the topic lives on the source cluster and is named after the target.
    Source,
    /// The topic lives on the target cluster and is named after the source.
    Target,
}

/// One side of a replication flow `source -> target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterRole {
    /// The cluster records are replicated from.
    Source,
    /// The cluster records are replicated to.
    Target,
}

impl ReplicationPolicy {
    /// MM2's out-of-the-box policy: `DefaultReplicationPolicy` with separator `.` and
    /// internal separator enabled.
    #[must_use]
    pub fn default_policy() -> Self {
        Self::Default {
            separator: DEFAULT_SEPARATOR.to_owned(),
            internal_separator: true,
        }
    }

    /// `IdentityReplicationPolicy` with the default separator settings.
    #[must_use]
    pub fn identity(source_cluster_alias: Option<String>) -> Self {
        Self::Identity {
            separator: DEFAULT_SEPARATOR.to_owned(),
            internal_separator: true,
            source_cluster_alias,
        }
    }

    /// The configured `replication.policy.separator`.
    #[must_use]
    pub fn separator(&self) -> &str {
        match self {
            Self::Default { separator, .. } | Self::Identity { separator, .. } => separator,
        }
    }

    /// The separator used inside internal topic names: the configured separator, unless
    /// the internal-separator flag is off, in which case MM2 falls back to `.`.
    #[must_use]
    pub fn internal_topic_separator(&self) -> &str {
        match self {
            Self::Default {
                separator,
                internal_separator,
            }
            | Self::Identity {
                separator,
                internal_separator,
                ..
            } => {
                if *internal_separator {
                    separator
                } else {
                    DEFAULT_SEPARATOR
                }
            }
        }
    }

    /// The name `topic` from cluster `source_alias` gets on the target cluster.
    #[must_use]
    pub fn format_remote_topic(&self, source_alias: &str, topic: &str) -> String {
        match self {
            Self::Identity { .. } if !looks_like_heartbeat(topic) => topic.to_owned(),
            _ => format!("{source_alias}{}{topic}", self.separator()),
        }
    }

    /// The alias of the cluster `topic` was replicated from, or `None` when the name does
    /// not look remote.
    ///
    /// Under Default this is Java's `Pattern.quote(separator)` split: a leading empty part
    /// is kept (so `.hidden` has source `""`), trailing empty parts are dropped (so
    /// `orders.` has no source), and fewer than two parts means "not remote".
    #[must_use]
    pub fn topic_source(&self, topic: &str) -> Option<String> {
        match self {
            Self::Identity {
                source_cluster_alias,
                ..
            } if !looks_like_heartbeat(topic) => source_cluster_alias.clone(),
            _ => default_topic_source(topic, self.separator()).map(str::to_owned),
        }
    }

    /// The name `topic` had one hop upstream, or `None` when it does not look remote.
    ///
    /// Under Identity a non-heartbeat topic is its own upstream, which is why
    /// [`original_topic`](Self::original_topic) stops when nothing changes.
    #[must_use]
    pub fn upstream_topic(&self, topic: &str) -> Option<String> {
        match self {
            Self::Identity { .. } if !looks_like_heartbeat(topic) => Some(topic.to_owned()),
            _ => default_upstream_topic(topic, self.separator()).map(str::to_owned),
        }
    }

    /// The name `topic` had on the cluster where it was first produced: `upstream_topic`
    /// repeated until it returns `None` or the same name.
    #[must_use]
    pub fn original_topic(&self, topic: &str) -> String {
        let mut current = topic.to_owned();
        // Terminates: every step either stops or returns a strictly shorter name (the
        // source part and the separator are removed; see `default_upstream_topic`).
        while let Some(upstream) = self.upstream_topic(&current) {
            if upstream == current {
                break;
            }
            current = upstream;
        }
        current
    }

    /// The heartbeats topic name; the same under every shipped policy.
    #[must_use]
    pub fn heartbeats_topic(&self) -> &'static str {
        HEARTBEATS_TOPIC
    }

    /// The checkpoints topic for flow `alias -> here`. MM2 calls this with the **source**
    /// alias, and the topic lives on the target cluster.
    #[must_use]
    pub fn checkpoints_topic(&self, alias: &str) -> String {
        let isep = self.internal_topic_separator();
        format!("{alias}{isep}checkpoints{isep}internal")
    }

    /// The offset-syncs topic named after `alias`. Which alias MM2 passes depends on
    /// `offset-syncs.topic.location`; see [`offset_syncs_topic_for_flow`](Self::offset_syncs_topic_for_flow).
    #[must_use]
    pub fn offset_syncs_topic(&self, alias: &str) -> String {
        let isep = self.internal_topic_separator();
        format!("mm2-offset-syncs{isep}{alias}{isep}internal")
    }

    /// The offset-syncs topic of flow `source_alias -> target_alias` and the cluster that
    /// holds it.
    ///
    /// The topic is named after the cluster it does *not* live on, so that one cluster can
    /// hold the syncs of several flows without clashes.
    #[must_use]
    pub fn offset_syncs_topic_for_flow(
        &self,
        source_alias: &str,
        target_alias: &str,
        location: OffsetSyncsLocation,
    ) -> (String, ClusterRole) {
        match location {
            OffsetSyncsLocation::Source => {
                (self.offset_syncs_topic(target_alias), ClusterRole::Source)
            }
            OffsetSyncsLocation::Target => {
                (self.offset_syncs_topic(source_alias), ClusterRole::Target)
            }
        }
    }

    /// Whether `topic` is a checkpoints topic under this policy's internal separator.
    #[must_use]
    pub fn is_checkpoints_topic(&self, topic: &str) -> bool {
        let isep = self.internal_topic_separator();
        topic.ends_with(&format!("{isep}checkpoints{isep}internal"))
    }

    /// Whether `topic` ends like an MM2 internal topic (`<isep>internal`).
    #[must_use]
    pub fn is_mm2_internal_topic(&self, topic: &str) -> bool {
        topic.ends_with(&format!("{}internal", self.internal_topic_separator()))
    }

    /// Whether MM2 treats `topic` as internal (never replicated as data): MM2 internal
    /// topics, Kafka's `__`/`.` topics, and Connect's `-internal`/`.internal` topics.
    #[must_use]
    pub fn is_internal_topic(&self, topic: &str) -> bool {
        self.is_mm2_internal_topic(topic)
            || topic.starts_with("__")
            || topic.starts_with('.')
            || topic.ends_with("-internal")
            || topic.ends_with(".internal")
    }

    /// Whether `topic` is a heartbeats topic, local or replicated over any number of hops.
    #[must_use]
    pub fn is_heartbeats_topic(&self, topic: &str) -> bool {
        self.original_topic(topic) == HEARTBEATS_TOPIC
    }
}

impl Default for ReplicationPolicy {
    fn default() -> Self {
        Self::default_policy()
    }
}

/// Identity's exception: a plain `endsWith`, so `myheartbeats` matches too, exactly as
/// in Java.
fn looks_like_heartbeat(topic: &str) -> bool {
    topic.ends_with(HEARTBEATS_TOPIC)
}

/// `DefaultReplicationPolicy.topicSource`: the first part of a Java `Pattern.split`
/// with trailing empty parts removed, if at least two parts remain.
fn default_topic_source<'t>(topic: &'t str, separator: &str) -> Option<&'t str> {
    if separator.is_empty() {
        // Java's split on an empty pattern yields one part per character (no leading
        // empty part for a zero-width match). Topic names are ASCII, so characters and
        // Java's UTF-16 units agree.
        let mut chars = topic.char_indices();
        chars.next()?;
        return chars.next().and_then(|(second, _)| topic.get(..second));
    }
    let mut parts: Vec<&str> = topic.split(separator).collect();
    while parts.last().is_some_and(|part| part.is_empty()) {
        parts.pop();
    }
    if parts.len() < 2 {
        None
    } else {
        parts.first().copied()
    }
}

/// `DefaultReplicationPolicy.upstreamTopic`: the topic without its source and the first
/// separator.
fn default_upstream_topic<'t>(topic: &'t str, separator: &str) -> Option<&'t str> {
    let source = default_topic_source(topic, separator)?;
    // The source is a prefix of `topic` followed by the separator (split found it there),
    // so this slice is in bounds and on a character boundary; `get` keeps it panic-free.
    topic.get(source.len() + separator.len()..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const NAMING_VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/mm2/vectors-naming.json"
    );

    fn policy_from_vector(config: &Value) -> ReplicationPolicy {
        let props = &config["configure_props"];
        let separator = props["replication.policy.separator"]
            .as_str()
            .unwrap_or(DEFAULT_SEPARATOR)
            .to_owned();
        let internal_separator = props["replication.policy.internal.topic.separator.enabled"]
            .as_str()
            .is_none_or(|flag| flag == "true");
        match config["policy"].as_str() {
            Some("DefaultReplicationPolicy") => ReplicationPolicy::Default {
                separator,
                internal_separator,
            },
            Some("IdentityReplicationPolicy") => ReplicationPolicy::Identity {
                separator,
                internal_separator,
                source_cluster_alias: props["source.cluster.alias"].as_str().map(str::to_owned),
            },
            other => panic!("unknown policy in vectors: {other:?}"),
        }
    }

    fn opt(value: &Value) -> Option<String> {
        match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => panic!("expected string or null, got {other}"),
        }
    }

    #[test]
    fn every_method_matches_kafka_for_every_vector() {
        let text = std::fs::read_to_string(NAMING_VECTORS).expect("naming vectors readable");
        let configs: Vec<Value> = serde_json::from_str(&text).expect("naming vectors parse");
        assert_eq!(configs.len(), 6);
        let mut checked = 0;
        for config in &configs {
            let policy = policy_from_vector(config);
            let ctx = format!("{} {}", config["policy"], config["configure_props"]);
            assert_eq!(
                policy.heartbeats_topic(),
                config["heartbeatsTopic()"].as_str().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                policy.offset_syncs_topic("dr"),
                config["offsetSyncsTopic(dr)"].as_str().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                policy.checkpoints_topic("primary"),
                config["checkpointsTopic(primary)"].as_str().unwrap(),
                "{ctx}"
            );
            let topics = config["per_topic"].as_array().unwrap();
            assert_eq!(topics.len(), 24, "{ctx}");
            for case in topics {
                let topic = case["topic"].as_str().unwrap();
                let ctx = format!("{ctx} topic {topic:?}");
                assert_eq!(
                    policy.format_remote_topic("primary", topic),
                    case["formatRemoteTopic(primary, topic)"].as_str().unwrap(),
                    "formatRemoteTopic {ctx}"
                );
                assert_eq!(
                    policy.topic_source(topic),
                    opt(&case["topicSource"]),
                    "topicSource {ctx}"
                );
                assert_eq!(
                    policy.upstream_topic(topic),
                    opt(&case["upstreamTopic"]),
                    "upstreamTopic {ctx}"
                );
                assert_eq!(
                    policy.original_topic(topic),
                    case["originalTopic"].as_str().unwrap(),
                    "originalTopic {ctx}"
                );
                assert_eq!(
                    policy.is_heartbeats_topic(topic),
                    case["isHeartbeatsTopic"].as_bool().unwrap(),
                    "isHeartbeatsTopic {ctx}"
                );
                assert_eq!(
                    policy.is_checkpoints_topic(topic),
                    case["isCheckpointsTopic"].as_bool().unwrap(),
                    "isCheckpointsTopic {ctx}"
                );
                assert_eq!(
                    policy.is_mm2_internal_topic(topic),
                    case["isMM2InternalTopic"].as_bool().unwrap(),
                    "isMM2InternalTopic {ctx}"
                );
                assert_eq!(
                    policy.is_internal_topic(topic),
                    case["isInternalTopic"].as_bool().unwrap(),
                    "isInternalTopic {ctx}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 6 * 24);
    }

    #[test]
    fn offset_syncs_topic_is_named_after_the_other_cluster() {
        let policy = ReplicationPolicy::default_policy();
        assert_eq!(
            policy.offset_syncs_topic_for_flow("primary", "dr", OffsetSyncsLocation::Source),
            (
                "mm2-offset-syncs.dr.internal".to_owned(),
                ClusterRole::Source
            )
        );
        assert_eq!(
            policy.offset_syncs_topic_for_flow("primary", "dr", OffsetSyncsLocation::Target),
            (
                "mm2-offset-syncs.primary.internal".to_owned(),
                ClusterRole::Target
            )
        );
        let underscore = ReplicationPolicy::Default {
            separator: "_".to_owned(),
            internal_separator: true,
        };
        assert_eq!(
            underscore.offset_syncs_topic_for_flow("primary", "dr", OffsetSyncsLocation::Source),
            (
                "mm2-offset-syncs_dr_internal".to_owned(),
                ClusterRole::Source
            )
        );
    }

    #[test]
    fn identity_defers_to_default_only_for_heartbeat_like_topics() {
        let policy = ReplicationPolicy::identity(None);
        assert_eq!(policy.format_remote_topic("primary", "orders"), "orders");
        assert_eq!(
            policy.format_remote_topic("primary", "heartbeats"),
            "primary.heartbeats"
        );
        assert_eq!(
            policy.format_remote_topic("primary", "myheartbeats"),
            "primary.myheartbeats"
        );
        assert!(policy.is_heartbeats_topic("dr.primary.heartbeats"));
        assert_eq!(policy.topic_source("orders"), None);
    }

    #[test]
    fn empty_separator_follows_java_split_without_panicking() {
        let policy = ReplicationPolicy::Default {
            separator: String::new(),
            internal_separator: true,
        };
        assert_eq!(policy.topic_source("abc"), Some("a".to_owned()));
        assert_eq!(policy.upstream_topic("abc"), Some("bc".to_owned()));
        assert_eq!(policy.original_topic("abc"), "c");
        assert_eq!(policy.topic_source("a"), None);
        assert_eq!(policy.topic_source(""), None);
        assert_eq!(policy.topic_source("éx"), Some("é".to_owned()));
    }

    #[test]
    fn separator_matches_are_non_overlapping_left_to_right() {
        let policy = ReplicationPolicy::Default {
            separator: "__".to_owned(),
            internal_separator: true,
        };
        // "a___b" splits as ["a", "_b"]: the first "__" wins.
        assert_eq!(policy.topic_source("a___b"), Some("a".to_owned()));
        assert_eq!(policy.upstream_topic("a___b"), Some("_b".to_owned()));
        assert_eq!(policy.topic_source("a____"), None);
    }
}
