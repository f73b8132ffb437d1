//! Why a Kafka operation failed, in terms a runbook step can act on.
//!
//! Steps decide differently on "the primary is gone" (accept the RPO and fail over),
//! "this cluster cannot do that" (fall back or skip), and "a consumer group is still
//! running" (refuse to move its offsets), so those are variants and not strings. Messages
//! are fragments that read after "failed to …" and always name the operation and the
//! cluster. Any text that came from librdkafka has been through the cluster's
//! [`Redactor`](super::Redactor) before it lands here, so no message holds a secret.

use std::fmt;
use std::time::Duration;

use super::config::ClusterRole;

/// What kdr was doing when it failed; renders as a verb phrase ("commit offsets of group
/// billing") so messages read as "failed to commit offsets of group billing on …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Building a client from the spec.
    Configure,
    /// Metadata round trip.
    Probe,
    /// Listing topics from metadata.
    ListTopics,
    /// Low and high watermarks of partitions.
    FetchWatermarks,
    /// High watermarks (log end offsets) of partitions.
    FetchEndOffsets,
    /// Reading one partition from its start to its end.
    ReadPartition {
        /// Topic read.
        topic: String,
        /// Partition read.
        partition: i32,
    },
    /// Reading offset ranges of many partitions with one client.
    ReadRanges {
        /// How many ranges.
        partitions: usize,
    },
    /// OffsetFetch for a group.
    FetchCommittedOffsets {
        /// The group.
        group: String,
    },
    /// OffsetCommit for a group.
    CommitOffsets {
        /// The group.
        group: String,
    },
    /// DescribeGroups.
    DescribeGroup {
        /// The group.
        group: String,
    },
    /// ListGroups and DescribeGroups for many groups at once.
    DescribeGroups,
    /// CreateTopics.
    CreateTopic {
        /// The topic.
        topic: String,
    },
    /// Producing one record and waiting for its acknowledgement.
    Produce {
        /// The topic.
        topic: String,
    },
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Configure => f.write_str("configure a client"),
            Operation::Probe => f.write_str("probe"),
            Operation::ListTopics => f.write_str("list topics"),
            Operation::FetchWatermarks => f.write_str("fetch watermarks"),
            Operation::FetchEndOffsets => f.write_str("fetch end offsets"),
            Operation::ReadPartition { topic, partition } => {
                write!(f, "read partition {partition} of topic {topic}")
            }
            Operation::ReadRanges { partitions } => {
                write!(f, "read records of {partitions} partition(s)")
            }
            Operation::FetchCommittedOffsets { group } => {
                write!(f, "fetch committed offsets of group {group}")
            }
            Operation::CommitOffsets { group } => write!(f, "commit offsets of group {group}"),
            Operation::DescribeGroup { group } => write!(f, "describe group {group}"),
            Operation::DescribeGroups => f.write_str("describe groups"),
            Operation::CreateTopic { topic } => write!(f, "create topic {topic}"),
            Operation::Produce { topic } => write!(f, "write to topic {topic}"),
        }
    }
}

/// Renders a duration the way plans write them (`500ms`, `30s`).
struct Human(Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// " (…)" around a note, when there is one.
struct Note<'a>(&'a Option<String>);

impl fmt::Display for Note<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(note) => write!(f, " ({note})"),
            None => Ok(()),
        }
    }
}

/// A failed Kafka operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The cluster did not answer within the operation's bound.
    #[error("{operation} on the {cluster} cluster: timed out after {}{}", Human(*after), Note(note))]
    Timeout {
        /// Cluster asked.
        cluster: ClusterRole,
        /// What was asked.
        operation: Operation,
        /// The bound that passed.
        after: Duration,
        /// What is known about why: the last transient error librdkafka reported, or how
        /// far a read got.
        note: Option<String>,
    },
    /// The cluster cannot do this at all: it refuses the request type, or is known never
    /// to answer it (librdkafka's mock cluster has no group listing and no topic admin).
    #[error("{operation} on the {cluster} cluster: not supported by this cluster: {detail}")]
    Unsupported {
        /// Cluster asked.
        cluster: ClusterRole,
        /// What was asked.
        operation: Operation,
        /// What the cluster lacks.
        detail: String,
    },
    /// No broker of the cluster could be reached.
    #[error("{operation} on the {cluster} cluster: cluster unreachable: {detail}")]
    Unreachable {
        /// Cluster asked.
        cluster: ClusterRole,
        /// What was asked.
        operation: Operation,
        /// The transport error.
        detail: String,
    },
    /// The TLS or SASL handshake failed: the cluster is there, kdr's credentials are not
    /// accepted.
    #[error("{operation} on the {cluster} cluster: authentication failed: {detail}")]
    Authentication {
        /// Cluster asked.
        cluster: ClusterRole,
        /// What was asked.
        operation: Operation,
        /// The broker's or librdkafka's reason.
        detail: String,
    },
    /// Authenticated, but ACLs deny the operation.
    #[error("{operation} on the {cluster} cluster: not authorized: {detail}")]
    NotAuthorized {
        /// Cluster asked.
        cluster: ClusterRole,
        /// What was asked.
        operation: Operation,
        /// The broker's reason.
        detail: String,
    },
    /// The topic does not exist on this cluster.
    #[error("{operation} on the {cluster} cluster: topic {topic} does not exist")]
    TopicNotFound {
        /// Cluster asked.
        cluster: ClusterRole,
        /// What was asked.
        operation: Operation,
        /// The missing topic.
        topic: String,
    },
    /// The topic exists but has no such partition.
    #[error(
        "{operation} on the {cluster} cluster: topic {topic} has no partition {partition} (it has {partition_count})"
    )]
    PartitionNotFound {
        /// Cluster asked.
        cluster: ClusterRole,
        /// What was asked.
        operation: Operation,
        /// The topic.
        topic: String,
        /// The missing partition.
        partition: i32,
        /// How many partitions the topic has.
        partition_count: usize,
    },
    /// The group has members, found by describing it; kdr does not move offsets under a
    /// running consumer.
    #[error(
        "{operation} on the {cluster} cluster: group {group} has {} active member(s): {}",
        members.len(),
        members.join(", ")
    )]
    GroupNotEmpty {
        /// Cluster asked.
        cluster: ClusterRole,
        /// What was asked.
        operation: Operation,
        /// The group.
        group: String,
        /// Member ids (with client id and host where known).
        members: Vec<String>,
    },
    /// The broker rejected an offset commit because the group has (or recently had) live
    /// members: `UNKNOWN_MEMBER_ID`, `ILLEGAL_GENERATION` or `REBALANCE_IN_PROGRESS`.
    #[error("{operation} on the {cluster} cluster: group {group} has active members: {detail}")]
    GroupActive {
        /// Cluster asked.
        cluster: ClusterRole,
        /// What was asked.
        operation: Operation,
        /// The group.
        group: String,
        /// The broker's error.
        detail: String,
    },
    /// The cluster's spec cannot make a client.
    #[error("{operation} for the {cluster} cluster: {detail}")]
    Config {
        /// Cluster concerned.
        cluster: ClusterRole,
        /// Always [`Operation::Configure`] today; kept for uniform messages.
        operation: Operation,
        /// Every problem found.
        detail: String,
    },
    /// Any other failure, with librdkafka's reason.
    #[error("{operation} on the {cluster} cluster: {detail}")]
    Client {
        /// Cluster asked.
        cluster: ClusterRole,
        /// What was asked.
        operation: Operation,
        /// What went wrong.
        detail: String,
    },
}

impl KafkaError {
    /// The cluster the failed operation was aimed at.
    pub fn cluster(&self) -> ClusterRole {
        match self {
            KafkaError::Timeout { cluster, .. }
            | KafkaError::Unsupported { cluster, .. }
            | KafkaError::Unreachable { cluster, .. }
            | KafkaError::Authentication { cluster, .. }
            | KafkaError::NotAuthorized { cluster, .. }
            | KafkaError::TopicNotFound { cluster, .. }
            | KafkaError::PartitionNotFound { cluster, .. }
            | KafkaError::GroupNotEmpty { cluster, .. }
            | KafkaError::GroupActive { cluster, .. }
            | KafkaError::Config { cluster, .. }
            | KafkaError::Client { cluster, .. } => *cluster,
        }
    }

    /// The operation that failed.
    pub fn operation(&self) -> &Operation {
        match self {
            KafkaError::Timeout { operation, .. }
            | KafkaError::Unsupported { operation, .. }
            | KafkaError::Unreachable { operation, .. }
            | KafkaError::Authentication { operation, .. }
            | KafkaError::NotAuthorized { operation, .. }
            | KafkaError::TopicNotFound { operation, .. }
            | KafkaError::PartitionNotFound { operation, .. }
            | KafkaError::GroupNotEmpty { operation, .. }
            | KafkaError::GroupActive { operation, .. }
            | KafkaError::Config { operation, .. }
            | KafkaError::Client { operation, .. } => operation,
        }
    }

    /// Whether trying again later may succeed (the cluster was slow or away), as opposed to
    /// a refusal that will repeat until someone changes something.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KafkaError::Timeout { .. } | KafkaError::Unreachable { .. }
        )
    }
}
