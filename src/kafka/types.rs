//! What the Kafka layer hands back. Plain data, serialisable, so a step can put any of it
//! into the incident log as an observation; none of it can hold a secret.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A broker named in the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Broker id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

/// What a successful metadata round trip says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Brokers in the metadata, by id.
    pub brokers: Vec<BrokerInfo>,
    /// The broker that answered.
    pub answered_by: i32,
    /// The cluster id, when the broker reports one.
    pub cluster_id: Option<String>,
    /// The controller id, when the broker reports one. It may name no listed broker:
    /// librdkafka's mock cluster does that, and then topic admin requests are never
    /// answered.
    pub controller_id: Option<i32>,
    /// How long the round trip took, client start-up included.
    #[serde(with = "humantime_serde_compat")]
    pub round_trip: Duration,
}

impl ClusterInfo {
    /// Whether the controller the cluster names is one of its brokers.
    pub fn controller_is_listed(&self) -> Option<bool> {
        self.controller_id
            .map(|id| self.brokers.iter().any(|broker| broker.id == id))
    }
}

/// Whether a cluster answers at all. A dead primary is a normal input to a DR tool, not an
/// error, so probing reports it as a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Reachability {
    /// A broker answered a metadata request.
    Reachable(ClusterInfo),
    /// No broker answered within the bound.
    Unreachable {
        /// Refused, unresolvable, silent: what kdr saw.
        reason: String,
    },
}

impl Reachability {
    /// True for [`Reachability::Reachable`].
    pub fn is_reachable(&self) -> bool {
        matches!(self, Reachability::Reachable(_))
    }
}

/// A topic and its partition numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Partition numbers, ascending.
    pub partitions: Vec<i32>,
}

/// A partition's log start and log end offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// First offset still in the log (log start offset).
    pub low: i64,
    /// Offset the next record will get (log end offset).
    pub high: i64,
}

impl Watermarks {
    /// How many offsets lie between the watermarks (records, plus any control records or
    /// compaction gaps).
    pub fn span(&self) -> i64 {
        self.high.saturating_sub(self.low).max(0)
    }
}

/// One record as stored, undecoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRecord {
    /// Offset in its partition.
    pub offset: i64,
    /// Key bytes, if any.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Create or log-append time, when the record carries one.
    pub timestamp_ms: Option<i64>,
    /// Headers in order; a header value may be null.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// What [`Cluster::read_to_end`](super::Cluster::read_to_end) read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRead {
    /// The records, in offset order.
    pub records: Vec<RawRecord>,
    /// Log start offset when the read began.
    pub low: i64,
    /// Log end offset captured when the read began; records at or past it are not read.
    pub high: i64,
    /// False only when the caller allowed a partial read and the deadline came first.
    pub complete: bool,
}

/// A record handed over by [`Cluster::scan_to_end`](super::Cluster::scan_to_end), borrowed
/// from the client for the call only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Offset in its partition.
    pub offset: i64,
    /// Key bytes, if any.
    pub key: Option<&'a [u8]>,
    /// Value bytes; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// Create or log-append time, when the record carries one.
    pub timestamp_ms: Option<i64>,
}

/// What [`Cluster::scan_to_end`](super::Cluster::scan_to_end) read, without the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionScan {
    /// How many records were handed over.
    pub records: u64,
    /// Log start offset when the read began.
    pub low: i64,
    /// Log end offset captured when the read began; records at or past it are not read.
    pub high: i64,
    /// False only when the caller allowed a partial read and the deadline came first.
    pub complete: bool,
}

/// How [`Cluster::read_to_end`](super::Cluster::read_to_end) may end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The read's bound; the cluster's operation timeout when `None`. Reading a large
    /// topic may deserve more time than a metadata request.
    pub timeout: Option<Duration>,
    /// Return what was read by the deadline (with `complete: false`) instead of failing.
    pub allow_partial: bool,
}

/// A consumer group as the group coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// Broker-reported state: `Stable`, `PreparingRebalance`, `CompletingRebalance`,
    /// `Empty`, or `Dead` (also for a group the coordinator does not know).
    pub state: String,
    /// `consumer` for Kafka consumers, `connect` for Connect workers, or empty.
    pub protocol_type: String,
    /// The assignor in use (`range`, `cooperative-sticky`, …), or empty.
    pub protocol: String,
    /// Live members.
    pub members: Vec<MemberInfo>,
}

impl GroupDescription {
    /// Whether any consumer is live in the group.
    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }
}

/// One live member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Member id assigned by the coordinator.
    pub id: String,
    /// The member's `client.id`.
    pub client_id: String,
    /// Host the member connected from.
    pub host: String,
    /// Assigned partitions, when the group uses the consumer protocol and the assignment
    /// decodes.
    pub assignment: Option<Vec<TopicPartition>>,
}

impl fmt::Display for MemberInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)?;
        match (self.client_id.trim(), self.host.trim()) {
            ("", "") => Ok(()),
            (client, "") => write!(f, " (client {client})"),
            ("", host) => write!(f, " (on {host})"),
            (client, host) => write!(f, " (client {client} on {host})"),
        }
    }
}

/// A group and the partitions whose committed offsets are asked, for
/// [`Cluster::batch_committed_offsets`](super::Cluster::batch_committed_offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitions {
    /// Group id.
    pub group: String,
    /// The partitions asked.
    pub partitions: Vec<TopicPartition>,
}

/// A group and the offsets to commit for it, for
/// [`Cluster::batch_commit_offsets`](super::Cluster::batch_commit_offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCommit {
    /// Group id.
    pub group: String,
    /// Each partition's new committed offset.
    pub offsets: Vec<(TopicPartition, i64)>,
}

/// What a topic creation did; re-running a step must not fail because it already ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicCreation {
    /// The topic was created.
    Created,
    /// A topic of that name already existed; its settings were not checked.
    AlreadyExists,
}

/// Serialises a `Duration` as a humantime string ("1ms 500us").
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}
