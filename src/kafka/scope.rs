//! Turning librdkafka's failures into [`KafkaError`]s that name the operation and cluster.
//!
//! A [`Scope`] is what one operation knows about itself (which cluster, what it was doing,
//! its bound, the redactor for that cluster's secrets); every error this layer returns is
//! made through one, so each message names its operation and holds no secret.

use std::fmt;
use std::time::Duration;

use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};

use super::config::{ClusterRole, Redactor};
use super::error::{KafkaError, Operation};
use super::types::TopicPartition;

/// Error codes after which the same request may succeed if asked again.
pub(crate) fn retriable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::Resolve
            // Also what librdkafka answers when it could not find partition leaders in
            // time; a real "every broker is down" arrives as a client event.
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::TimedOutQueue
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::PreferredLeaderNotAvailable
            | C::CoordinatorNotAvailable
            | C::CoordinatorLoadInProgress
            | C::NotCoordinator
            | C::WaitingForCoordinator
            | C::UnstableOffsetCommit
            | C::UnknownBroker
            | C::InProgress
            | C::Retry
            | C::KafkaStorageError
    )
}

/// Commit rejections that mean the group has (or just had) live members.
pub(crate) fn group_is_active(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::UnknownMemberId
            | C::IllegalGeneration
            | C::RebalanceInProgress
            | C::FencedInstanceId
            | C::StaleMemberEpoch
    )
}

/// The librdkafka or broker error code inside an rdkafka error, admin results included
/// (rdkafka's own accessor leaves those out).
pub(crate) fn error_code(error: &RdKafkaError) -> Option<RDKafkaErrorCode> {
    match error {
        RdKafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    }
}

/// Turns an rdkafka error that has no broker error code into words, without the property
/// value rdkafka's own message would include.
pub(crate) fn describe_client_error(error: &RdKafkaError) -> String {
    match error {
        RdKafkaError::ClientConfig(_, description, key, _value) => {
            format!("client property `{key}`: {description}")
        }
        RdKafkaError::ClientCreation(reason) => format!("cannot create a client: {reason}"),
        other => other.to_string(),
    }
}

/// Everything needed to turn a librdkafka failure into a [`KafkaError`] for one operation.
#[derive(Clone)]
pub(crate) struct Scope {
    pub(crate) cluster: ClusterRole,
    pub(crate) operation: Operation,
    pub(crate) bound: Duration,
    pub(crate) redactor: Redactor,
}

impl Scope {
    pub(crate) fn timeout(&self, note: Option<String>) -> KafkaError {
        KafkaError::Timeout {
            cluster: self.cluster,
            operation: self.operation.clone(),
            after: self.bound,
            note: note.map(|note| self.redactor.scrub(&note)),
        }
    }

    pub(crate) fn client(&self, detail: impl fmt::Display) -> KafkaError {
        KafkaError::Client {
            cluster: self.cluster,
            operation: self.operation.clone(),
            detail: self.redactor.scrub(&detail.to_string()),
        }
    }

    pub(crate) fn config_error(&self, error: &RdKafkaError) -> KafkaError {
        KafkaError::Config {
            cluster: self.cluster,
            operation: Operation::Configure,
            detail: self.redactor.scrub(&describe_client_error(error)),
        }
    }

    /// The final error for a broker or librdkafka error code. `last` is the most specific
    /// transport error heard meanwhile, for an unreachable cluster.
    pub(crate) fn error_for_code(
        &self,
        code: RDKafkaErrorCode,
        last: Option<String>,
    ) -> KafkaError {
        use RDKafkaErrorCode as C;
        let cluster = self.cluster;
        let operation = self.operation.clone();
        let detail = self.redactor.scrub(&code.to_string());
        match code {
            C::Authentication | C::SaslAuthenticationFailed | C::SSL => {
                KafkaError::Authentication {
                    cluster,
                    operation,
                    detail,
                }
            }
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed => KafkaError::NotAuthorized {
                cluster,
                operation,
                detail,
            },
            C::UnsupportedFeature | C::UnsupportedVersion | C::NotImplemented => {
                KafkaError::Unsupported {
                    cluster,
                    operation,
                    detail,
                }
            }
            C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve => KafkaError::Unreachable {
                cluster,
                operation,
                detail: last
                    .map(|last| self.redactor.scrub(&last))
                    .unwrap_or(detail),
            },
            C::OperationTimedOut | C::RequestTimedOut | C::TimedOutQueue => {
                self.timeout(last.map(|last| format!("last error: {last}")))
            }
            _ => KafkaError::Client {
                cluster,
                operation,
                detail,
            },
        }
    }

    pub(crate) fn fail(&self, error: &RdKafkaError, last: Option<String>) -> KafkaError {
        match error_code(error) {
            Some(code) => self.error_for_code(code, last),
            None => self.client(describe_client_error(error)),
        }
    }

    pub(crate) fn topic_not_found(&self, topic: &str) -> KafkaError {
        KafkaError::TopicNotFound {
            cluster: self.cluster,
            operation: self.operation.clone(),
            topic: topic.to_owned(),
        }
    }
}

/// `error` with the partition it concerns named where its message would not say it.
pub(crate) fn about_partition(error: KafkaError, tp: &TopicPartition) -> KafkaError {
    match error {
        KafkaError::Client {
            cluster,
            operation,
            detail,
        } => KafkaError::Client {
            cluster,
            operation,
            detail: format!("partition {tp}: {detail}"),
        },
        other => other,
    }
}
