//! Topic admin: the one controller request kdr sends (CreateTopics), and the care an admin
//! client needs (its destructor blocks, so it never runs on the async runtime).

use std::mem::ManuallyDrop;
use std::time::Instant;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;

use super::bound::{Bound, wait};
use super::cluster::Cluster;
use super::context::KdrContext;
use super::error::{KafkaError, Operation};
use super::types::TopicCreation;

impl Cluster {
    /// Creates a topic. An existing topic of that name is `Ok(AlreadyExists)`, so a
    /// re-run step does not fail.
    ///
    /// Topic admin goes to the controller. A cluster whose metadata names a controller
    /// that is not one of its brokers (librdkafka's mock cluster) would never answer, so
    /// that is reported as [`KafkaError::Unsupported`] without sending the request.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(String, String)],
    ) -> Result<TopicCreation, KafkaError> {
        let operation = Operation::CreateTopic {
            topic: name.to_owned(),
        };
        let bound = self.operation_timeout();
        let deadline = Instant::now() + bound;
        let info = self
            .run(operation.clone(), bound, self.meta_config(), |session| {
                session.cluster_info()
            })
            .await?;
        if let (Some(controller), Some(false)) = (info.controller_id, info.controller_is_listed()) {
            let brokers: Vec<String> = info
                .brokers
                .iter()
                .map(|broker| broker.id.to_string())
                .collect();
            return Err(KafkaError::Unsupported {
                cluster: self.role(),
                operation,
                detail: format!(
                    "the cluster names controller {controller}, which is not one of its brokers ({}), \
                     so topic admin requests would never be answered",
                    brokers.join(", ")
                ),
            });
        }
        self.send_create_topic(deadline, name, partitions, replication_factor, configs)
            .await
    }

    /// The CreateTopics request itself, bounded by what is left until `deadline`.
    pub(crate) async fn send_create_topic(
        &self,
        deadline: Instant,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(String, String)],
    ) -> Result<TopicCreation, KafkaError> {
        let operation = Operation::CreateTopic {
            topic: name.to_owned(),
        };
        let scope = self.scope(operation, self.operation_timeout());
        let bound = Bound::new(self.operation_timeout(), Some(deadline), Instant::now());
        let remaining = bound.remaining(Instant::now());
        if remaining.is_zero() {
            return Err(scope.timeout(None));
        }
        let config = self.inner.spec.admin_config(self.operation_timeout());
        let context = KdrContext::new(self.role(), self.inner.redactor.clone());
        let creating = scope.clone();
        let outer = scope.clone();
        let work = async move {
            let admin = tokio::task::spawn_blocking(move || {
                config
                    .create_with_context::<_, AdminClient<KdrContext>>(context)
                    .map_err(|error| creating.config_error(&error))
            })
            .await
            .map_err(|_| scope.client("the admin client could not be started"))??;
            let admin = OffRuntimeDrop::new(admin);
            let mut topic = NewTopic::new(
                name,
                partitions,
                TopicReplication::Fixed(replication_factor),
            );
            for (key, value) in configs {
                topic = topic.set(key, value);
            }
            let options = AdminOptions::new()
                .request_timeout(Some(wait(remaining)))
                .operation_timeout(Some(wait(remaining)));
            let results = admin
                .create_topics([&topic], &options)
                .await
                .map_err(|e| scope.fail(&e, None))?;
            match results.into_iter().next() {
                Some(Ok(_)) => Ok(TopicCreation::Created),
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                    Ok(TopicCreation::AlreadyExists)
                }
                Some(Err((_, code))) => Err(scope.error_for_code(code, None)),
                None => Err(scope.client("the cluster returned no result for the topic")),
            }
        };
        match tokio::time::timeout_at(bound.give_up_at(), work).await {
            Ok(answer) => answer,
            Err(_) => Err(outer.timeout(None)),
        }
    }
}

/// Owns a client whose destructor blocks (an admin client joins its polling thread) and,
/// when dropped inside a Tokio runtime, destroys it on a blocking thread instead.
pub(crate) struct OffRuntimeDrop<T: Send + 'static>(ManuallyDrop<T>);

impl<T: Send + 'static> OffRuntimeDrop<T> {
    pub(crate) fn new(value: T) -> Self {
        OffRuntimeDrop(ManuallyDrop::new(value))
    }
}

impl<T: Send + 'static> std::ops::Deref for OffRuntimeDrop<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Send + 'static> Drop for OffRuntimeDrop<T> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing touches `self.0` after this.
        let value = unsafe { ManuallyDrop::take(&mut self.0) };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(value))),
            Err(_) => drop(value),
        }
    }
}
