//! The Kafka layer: rdkafka clients built from the plan, every call bounded by a timeout.

mod config;
mod error;
mod types;

pub use config::{ClientProperty, ClusterRole, ClusterSpec, REDACTED, Redactor, key_looks_secret};
pub use error::{KafkaError, Operation};
pub use types::{
    BrokerInfo, ClusterInfo, GroupDescription, MemberInfo, PartitionRead, RawRecord, Reachability,
    ReadOptions, TopicCreation, TopicInfo, TopicPartition, Watermarks,
};
