//! The Kafka layer: rdkafka clients built from the plan, every call bounded by a timeout.
//!
//! A DR runbook talks to clusters at their worst. The primary may refuse connections,
//! accept them and never answer, or answer only some requests; the operator still needs
//! the next step to start on time. So every question asked of a cluster here comes back
//! within its bound, as an answer or as a [`KafkaError`] a step can act on:
//!
//! - Every blocking librdkafka call runs on a blocking thread with librdkafka's own
//!   timeout set, and the async side stops waiting at that bound too ([`Cluster`]).
//!   librdkafka's request timeout follows the bound, so a client that was given up on
//!   does not keep the process from exiting either.
//! - A dead cluster is an observation, not an error: [`Cluster::probe`] answers
//!   [`Reachability::Unreachable`] for a refused, unresolvable or silent cluster.
//! - What librdkafka only reports as events (refused connections, failed TLS/SASL
//!   handshakes, every broker down) ends a waiting operation early with
//!   [`KafkaError::Unreachable`] or [`KafkaError::Authentication`], not a bare timeout.
//! - One rule bounds every operation (`bound.rs`): the operation timeout, or the caller's
//!   deadline if sooner, for the blocking side, plus a short grace for the async side.
//! - Estates of thousands of groups and tens of thousands of partitions go through the
//!   batched paths (`batch_*` on [`Cluster`]): offsets in ListOffsets calls of 128
//!   partitions, four in flight, in time linear in the partitions; one group listing for
//!   group states; bounded concurrency for per-group
//!   offset fetches and commits, and an error per item instead of per call.
//! - One fresh client per operation, so a cluster is seen as it is now, not through a
//!   long-lived client's reconnect backoff.
//! - kdr never joins a consumer group. It reads offsets, reads partitions by assigning
//!   them itself, and commits from outside the group, which a broker refuses while the
//!   group has members ([`KafkaError::GroupActive`]).
//! - Secrets from the plan never leave: [`ClusterSpec`]'s `Debug` and `Display` mask them,
//!   and librdkafka's log lines and error strings pass through the cluster's [`Redactor`]
//!   before reaching `tracing` or a [`KafkaError`]. The `debug` property is refused
//!   because librdkafka's debug output can echo configuration.
//!
//! # What librdkafka's mock cluster cannot do
//!
//! The in-process mock cluster (`rdkafka::mocking::MockCluster`, used by the tests and by
//! `kdr rehearse`) serves metadata, produce, fetch, ListOffsets and offset commit/fetch,
//! but not everything a real cluster does. Each gap is reported, never hung on:
//!
//! - Group listing (ListGroups/DescribeGroups): [`Cluster::group_state`] and
//!   [`Cluster::ensure_group_empty`] return [`KafkaError::Unsupported`] at once. The
//!   broker's refusal of a commit to a group with members ([`KafkaError::GroupActive`]) is
//!   then the only guard, and it works on the mock, which keeps a group's members for its
//!   whole life once the group was joined.
//! - Topic admin (CreateTopics and the other controller requests): the mock names a
//!   controller that is not one of its brokers, so requests would wait for ever.
//!   [`Cluster::create_topic`] sees that in the metadata and returns
//!   [`KafkaError::Unsupported`] without sending; a request that is sent anyway times out
//!   within its bound. Create topics on the mock with `MockCluster::create_topic`.
//! - ListOffsets by timestamp: answered with the end offset. kdr only asks for the
//!   earliest and latest offsets, which the mock answers correctly.
//! - TLS and SASL: a SASL client gets [`KafkaError::Authentication`].
//!
//! # This build of librdkafka
//!
//! The bundled librdkafka is built with OpenSSL (TLS, SASL/SCRAM) and zstd, as production DR
//! plans need `SASL_SSL`. A property librdkafka does not know or accept is refused by
//! [`Cluster::new`] as [`KafkaError::Config`] naming the property, before any network use.

mod admin;
mod assignment;
mod batch;
mod bound;
mod cluster;
mod commit;
mod config;
mod context;
mod error;
mod group_offsets;
mod produce;
mod ranges;
mod scope;
mod session;
mod types;

pub use batch::DEFAULT_CONCURRENCY;
pub use cluster::Cluster;
pub use config::{ClientProperty, ClusterRole, ClusterSpec, REDACTED, Redactor, key_looks_secret};
pub use error::{KafkaError, Operation};
pub use ranges::OffsetRange;
pub use types::{
    BrokerInfo, ClusterInfo, GroupCommit, GroupDescription, GroupPartitions, MemberInfo,
    PartitionRead, PartitionScan, RawRecord, Reachability, ReadOptions, RecordView, TopicCreation,
    TopicInfo, TopicPartition, Watermarks,
};

#[cfg(test)]
mod tests;
