//! One cluster, and every question kdr asks it, each with a hard bound.
//!
//! librdkafka's calls block, some for as long as they are told and some (admin requests a
//! broker never answers) until a request timeout. A DR runbook cannot afford either on its
//! async runtime, so every call here runs on a blocking thread with librdkafka's own
//! timeout set, and the async side also stops waiting at that bound (plus a small grace).
//! The answer travels back on a channel before the client is torn down, so destroying a
//! client never delays the answer.
//!
//! Each operation builds its own client and drops it afterwards. A cluster that just died
//! or came back is then seen as it is now, not through a long-lived client's reconnect
//! backoff, and no background client keeps logging refused connections to a dead primary
//! for the rest of the run. A client costs about a millisecond on loopback (measured in
//! the tests); against a remote cluster it costs a TLS/SASL handshake per operation, which
//! is cheap next to a runbook step.

use std::cell::OnceCell;
use std::ffi::CStr;
use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::metadata::Metadata;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::assignment::decode_consumer_assignment;
use super::commit::{CommitOutcome, PendingCommit};
use super::config::{ClusterRole, ClusterSpec, Redactor};
use super::context::KdrContext;
use super::error::{KafkaError, Operation};
use super::types::{
    BrokerInfo, ClusterInfo, GroupDescription, MemberInfo, PartitionRead, RawRecord, Reachability,
    ReadOptions, TopicCreation, TopicInfo, TopicPartition, Watermarks,
};

/// How much longer than an operation's bound the async side waits for the blocking thread
/// to hand over its answer, so librdkafka's own, more precise error wins the race.
const OUTER_GRACE: Duration = Duration::from_millis(250);

/// The first librdkafka wait in a retried call. Waits double from here, so a slow cluster
/// still gets a long enough single wait, while a refused connection or a failed handshake
/// (reported as events, between waits) is noticed within this much time.
const FIRST_SLICE: Duration = Duration::from_millis(200);

/// How long one consumer poll may block while reading or waiting for a commit.
const POLL_STEP: Duration = Duration::from_millis(50);

/// Longest wait handed to librdkafka in one call; it takes milliseconds as an `i32`.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Error codes after which the same request may succeed if asked again.
fn retriable(code: RDKafkaErrorCode) -> bool {
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
fn group_is_active(code: RDKafkaErrorCode) -> bool {
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

/// A wait librdkafka accepts: at least 1 ms (0 means "do not wait"), at most a day.
fn wait(duration: Duration) -> Duration {
    duration.clamp(Duration::from_millis(1), LONGEST_WAIT)
}

/// The thing kdr asks questions of. Cheap to clone; every clone shares the spec.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    spec: ClusterSpec,
    operation_timeout: Duration,
    redactor: Redactor,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("spec", &self.inner.spec)
            .field("operation_timeout", &self.inner.operation_timeout)
            .finish()
    }
}

impl Cluster {
    /// A cluster whose operations are each bounded by `operation_timeout`.
    ///
    /// Checks what can be checked without a network: reserved or unknown properties and
    /// invalid values (librdkafka validates each property when a configuration is built),
    /// and reports every problem at once.
    pub fn new(spec: ClusterSpec, operation_timeout: Duration) -> Result<Cluster, KafkaError> {
        let redactor = spec.redactor();
        let mut problems = spec.problems();
        if operation_timeout.is_zero() {
            problems.push("the operation timeout must be more than zero".to_owned());
        } else if operation_timeout > LONGEST_WAIT {
            problems.push("the operation timeout must be at most 24h".to_owned());
        }
        if problems.is_empty() {
            let configs = [
                spec.consumer_config(Some("kdr-config-check"), operation_timeout),
                spec.admin_config(operation_timeout),
            ];
            for config in configs {
                if let Err(error) = config.create_native_config() {
                    problems.push(describe_client_error(&error));
                    break;
                }
            }
        }
        if !problems.is_empty() {
            return Err(KafkaError::Config {
                cluster: spec.role,
                operation: Operation::Configure,
                detail: redactor.scrub(&problems.join("; ")),
            });
        }
        Ok(Cluster {
            inner: Arc::new(Inner {
                spec,
                operation_timeout,
                redactor,
            }),
        })
    }

    /// Which side of the pair this is.
    pub fn role(&self) -> ClusterRole {
        self.inner.spec.role
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &ClusterSpec {
        &self.inner.spec
    }

    /// The bound on each operation.
    pub fn operation_timeout(&self) -> Duration {
        self.inner.operation_timeout
    }

    /// The same cluster with another bound, e.g. a step's remaining time.
    pub fn with_operation_timeout(
        &self,
        operation_timeout: Duration,
    ) -> Result<Cluster, KafkaError> {
        Cluster::new(self.inner.spec.clone(), operation_timeout)
    }

    /// Configuration for a producer with this cluster's connection and security settings.
    /// It holds secret values: do not log it.
    pub fn producer_config(&self) -> ClientConfig {
        self.inner
            .spec
            .producer_config(self.inner.operation_timeout)
    }

    /// Whether the cluster answers a metadata request within the bound.
    ///
    /// Refused, unresolvable and silent clusters are `Ok(Unreachable)`: for a DR tool a
    /// dead cluster is an observation. Failed authentication and bad configuration are
    /// errors, because the cluster may be perfectly alive.
    pub async fn probe(&self) -> Result<Reachability, KafkaError> {
        let started = Instant::now();
        let answer = self
            .run(
                Operation::Probe,
                self.operation_timeout(),
                self.meta_config(),
                |session| session.cluster_info(),
            )
            .await;
        match answer {
            Ok(mut info) => {
                info.round_trip = started.elapsed();
                Ok(Reachability::Reachable(info))
            }
            Err(KafkaError::Unreachable { detail, .. }) => {
                Ok(Reachability::Unreachable { reason: detail })
            }
            Err(KafkaError::Timeout { after, note, .. }) => Ok(Reachability::Unreachable {
                reason: format!(
                    "no answer within {}{}",
                    humantime::format_duration(after),
                    note.map(|note| format!(" ({note})")).unwrap_or_default()
                ),
            }),
            Err(other) => Err(other),
        }
    }

    /// Topics whose name passes `filter`, sorted by name, without internal `__` topics.
    pub async fn topics(
        &self,
        filter: impl Fn(&str) -> bool,
    ) -> Result<Vec<TopicInfo>, KafkaError> {
        let topics = self.all_topics().await?;
        Ok(topics
            .into_iter()
            .filter(|t| !t.name.starts_with("__") && filter(&t.name))
            .collect())
    }

    /// Like [`Cluster::topics`], internal `__` topics included.
    pub async fn topics_with_internal(
        &self,
        filter: impl Fn(&str) -> bool,
    ) -> Result<Vec<TopicInfo>, KafkaError> {
        let topics = self.all_topics().await?;
        Ok(topics.into_iter().filter(|t| filter(&t.name)).collect())
    }

    async fn all_topics(&self) -> Result<Vec<TopicInfo>, KafkaError> {
        self.run(
            Operation::ListTopics,
            self.operation_timeout(),
            self.meta_config(),
            |session| session.all_topics().map(<[TopicInfo]>::to_vec),
        )
        .await
    }

    /// Log start and end offsets of many partitions, in the order asked.
    ///
    /// Two batched ListOffsets rounds (earliest, then latest), one request per leader
    /// each, rather than librdkafka's two requests per partition: far fewer round trips,
    /// and every partition's error is reported instead of being folded into a plausible
    /// but wrong low watermark.
    pub async fn watermarks(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Watermarks>, KafkaError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let asked = partitions.to_vec();
        self.run(
            Operation::FetchWatermarks,
            self.operation_timeout(),
            self.meta_config(),
            move |session| {
                let low = session.list_offsets(&asked, Offset::Beginning)?;
                let high = session.list_offsets(&asked, Offset::End)?;
                Ok(asked
                    .into_iter()
                    .zip(low.into_iter().zip(high))
                    .map(|(tp, (low, high))| Watermarks {
                        topic: tp.topic,
                        partition: tp.partition,
                        low,
                        high,
                    })
                    .collect())
            },
        )
        .await
    }

    /// Log end offsets (ListOffsets latest) of many partitions, one request per leader.
    pub async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, i64)>, KafkaError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let asked = partitions.to_vec();
        self.run(
            Operation::FetchEndOffsets,
            self.operation_timeout(),
            self.meta_config(),
            move |session| {
                let high = session.list_offsets(&asked, Offset::End)?;
                Ok(asked.into_iter().zip(high).collect())
            },
        )
        .await
    }

    /// Every record of one partition from the log start to the log end offset captured
    /// when the read begins (records produced meanwhile are not waited for), for
    /// compacted, single-partition internal topics such as MM2's checkpoints.
    ///
    /// The reader assigns the partition itself and never joins a group or commits. Not
    /// reaching the end by the deadline is a `Timeout` unless `options.allow_partial`.
    pub async fn read_to_end(
        &self,
        topic: &str,
        partition: i32,
        options: ReadOptions,
    ) -> Result<PartitionRead, KafkaError> {
        let bound = options.timeout.unwrap_or(self.operation_timeout());
        let mut config = self
            .inner
            .spec
            .consumer_config(Some(&reader_group(self.role())), bound);
        config.set("enable.partition.eof", "true");
        let operation = Operation::ReadPartition {
            topic: topic.to_owned(),
            partition,
        };
        let tp = TopicPartition::new(topic, partition);
        self.run(operation, bound, config, move |session| {
            session.read_partition(&tp, options.allow_partial)
        })
        .await
    }

    /// The group's committed offsets for these partitions, `None` where it has none. Uses
    /// OffsetFetch only: the group is not joined, so running members are undisturbed.
    pub async fn committed_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, KafkaError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let asked = partitions.to_vec();
        let operation = Operation::FetchCommittedOffsets {
            group: group.to_owned(),
        };
        let config = self
            .inner
            .spec
            .consumer_config(Some(group), self.operation_timeout());
        self.run(
            operation,
            self.operation_timeout(),
            config,
            move |session| session.committed(&asked),
        )
        .await
    }

    /// Commits these offsets for the group and waits for the broker's answer.
    ///
    /// The commit comes from outside the group (no join), which a broker accepts only
    /// while the group has no members; otherwise it is refused and this returns
    /// [`KafkaError::GroupActive`]. That refusal is the last line of defence against moving
    /// a running consumer's offsets, not the check: see [`Cluster::ensure_group_empty`].
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<(), KafkaError> {
        let operation = Operation::CommitOffsets {
            group: group.to_owned(),
        };
        if let Some((tp, offset)) = offsets.iter().find(|(_, offset)| *offset < 0) {
            return Err(KafkaError::Client {
                cluster: self.role(),
                operation,
                detail: format!("offset {offset} for partition {tp} is negative"),
            });
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let offsets = offsets.to_vec();
        let config = self
            .inner
            .spec
            .consumer_config(Some(group), self.operation_timeout());
        let group = group.to_owned();
        self.run(
            operation,
            self.operation_timeout(),
            config,
            move |session| session.commit(&group, &offsets),
        )
        .await
    }

    /// The group's state and live members, from the group coordinator.
    ///
    /// Clusters that refuse group listing (librdkafka's mock cluster) give
    /// [`KafkaError::Unsupported`] at once.
    pub async fn group_state(&self, group: &str) -> Result<GroupDescription, KafkaError> {
        let operation = Operation::DescribeGroup {
            group: group.to_owned(),
        };
        let group = group.to_owned();
        self.run(
            operation,
            self.operation_timeout(),
            self.meta_config(),
            move |session| session.describe_group(&group),
        )
        .await
    }

    /// `Ok` when the group has no live members, [`KafkaError::GroupNotEmpty`] naming them
    /// otherwise; kdr must not move the offsets of a group that is still consuming.
    pub async fn ensure_group_empty(&self, group: &str) -> Result<(), KafkaError> {
        let description = self.group_state(group).await?;
        if description.members.is_empty() {
            return Ok(());
        }
        Err(KafkaError::GroupNotEmpty {
            cluster: self.role(),
            operation: Operation::DescribeGroup {
                group: group.to_owned(),
            },
            group: group.to_owned(),
            members: description
                .members
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
    }

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

    /// Write one record to partition 0 of `topic` and wait for the cluster to acknowledge it
    /// (`acks=all`). Returns its offset. kdr writes only its own small records this
    /// way (write authority); it never produces to users' topics.
    pub async fn produce_one(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<i64, KafkaError> {
        use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
        let operation = Operation::Produce {
            topic: topic.to_owned(),
        };
        let bound = self.operation_timeout();
        let scope = self.scope(operation.clone(), bound);
        let mut config = self.inner.spec.producer_config(bound);
        config
            .set("acks", "all")
            .set("message.timeout.ms", millis_of(bound))
            .set("linger.ms", "0");
        let (topic, key, value) = (topic.to_owned(), key.to_vec(), value.to_vec());
        let role = self.role();
        let work = tokio::task::spawn_blocking(move || -> Result<i64, KafkaError> {
            let (tx, rx) = std::sync::mpsc::channel::<Result<i64, String>>();
            let context = DeliveryContext {
                delivered: std::sync::Mutex::new(tx),
                events: KdrContext::new(role, scope.redactor.clone()),
            };
            let producer: ThreadedProducer<DeliveryContext> =
                config
                    .create_with_context(context)
                    .map_err(|error| scope.config_error(&error))?;
            let record = BaseRecord::to(&topic)
                .partition(0)
                .key(&key)
                .payload(&value);
            if let Err((error, _)) = producer.send(record) {
                return Err(KafkaError::Client {
                    cluster: role,
                    operation: operation.clone(),
                    detail: error.to_string(),
                });
            }
            // The delivery report, unless the TLS or SASL handshake is refused first: librdkafka
            // reports that as an error event and keeps retrying, so the record would only fail
            // when its timeout (the whole bound) runs out.
            let deadline = Instant::now() + bound;
            let answer = loop {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(remaining.min(POLL_STEP)) {
                    Ok(answer) => break Some(answer),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !remaining.is_zero() => {
                        if let Some(detail) =
                            producer.context().events.heard().authentication.clone()
                        {
                            break Some(Err(detail));
                        }
                    }
                    Err(_) => break None,
                }
            };
            let refused = producer.context().events.heard().authentication.clone();
            // Do not let a dead cluster hold the thread on drop.
            let _ = producer.flush(std::time::Duration::from_millis(100));
            match (answer, refused) {
                (Some(Ok(offset)), _) => Ok(offset),
                (_, Some(detail)) => Err(KafkaError::Authentication {
                    cluster: role,
                    operation,
                    detail,
                }),
                (Some(Err(detail)), None) => Err(KafkaError::Client {
                    cluster: role,
                    operation,
                    detail: scope.redactor.scrub(&detail),
                }),
                (None, None) => Err(KafkaError::Timeout {
                    cluster: role,
                    operation,
                    after: bound,
                    note: None,
                }),
            }
        });
        match tokio::time::timeout(bound + std::time::Duration::from_millis(500), work).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(KafkaError::Client {
                cluster: self.role(),
                operation: Operation::Produce {
                    topic: String::new(),
                },
                detail: join.to_string(),
            }),
            Err(_) => Err(KafkaError::Timeout {
                cluster: self.role(),
                operation: Operation::Produce {
                    topic: String::new(),
                },
                after: bound,
                note: None,
            }),
        }
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
        let remaining = deadline.saturating_duration_since(Instant::now());
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
        match tokio::time::timeout(remaining + OUTER_GRACE, work).await {
            Ok(answer) => answer,
            Err(_) => Err(outer.timeout(None)),
        }
    }

    fn meta_config(&self) -> ClientConfig {
        self.inner
            .spec
            .consumer_config(None, self.operation_timeout())
    }

    fn scope(&self, operation: Operation, bound: Duration) -> Scope {
        Scope {
            cluster: self.role(),
            operation,
            bound,
            redactor: self.inner.redactor.clone(),
        }
    }

    /// Runs `work` with a fresh consumer on a blocking thread, waiting at most `bound`
    /// (plus [`OUTER_GRACE`]) for its answer. `work` must bound its own librdkafka calls by
    /// the session's deadline, which [`Session`]'s helpers do.
    async fn run<T, W>(
        &self,
        operation: Operation,
        bound: Duration,
        config: ClientConfig,
        work: W,
    ) -> Result<T, KafkaError>
    where
        T: Send + 'static,
        W: FnOnce(&Session) -> Result<T, KafkaError> + Send + 'static,
    {
        let scope = self.scope(operation, bound);
        let deadline = Instant::now() + bound;
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
        let session_scope = scope.clone();
        // Detached: the answer comes through the channel, and the client's teardown after
        // it must not hold up the caller.
        drop(tokio::task::spawn_blocking(move || {
            let session = match Session::open(&config, session_scope, deadline) {
                Ok(session) => session,
                Err(error) => {
                    let _ = answer_tx.send(Err(error));
                    return;
                }
            };
            let answer = work(&session);
            let _ = answer_tx.send(answer);
            drop(session);
        }));
        match tokio::time::timeout(bound + OUTER_GRACE, answer_rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(scope.client(
                "the client thread ended without an answer (librdkafka returned data kdr could not read)",
            )),
            Err(_) => Err(scope.timeout(Some("the client did not return in time".to_owned()))),
        }
    }
}

/// The group id the partition reader uses. librdkafka needs one to assign partitions; the
/// reader never joins or commits, so no group appears on the broker.
fn reader_group(role: ClusterRole) -> String {
    format!("kdr-reader-{role}")
}

/// The librdkafka or broker error code inside an rdkafka error, admin results included
/// (rdkafka's own accessor leaves those out).
fn error_code(error: &RdKafkaError) -> Option<RDKafkaErrorCode> {
    match error {
        RdKafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    }
}

/// Turns an rdkafka error that has no broker error code into words, without the property
/// value rdkafka's own message would include.
fn describe_client_error(error: &RdKafkaError) -> String {
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
struct Scope {
    cluster: ClusterRole,
    operation: Operation,
    bound: Duration,
    redactor: Redactor,
}

impl Scope {
    fn timeout(&self, note: Option<String>) -> KafkaError {
        KafkaError::Timeout {
            cluster: self.cluster,
            operation: self.operation.clone(),
            after: self.bound,
            note: note.map(|note| self.redactor.scrub(&note)),
        }
    }

    fn client(&self, detail: impl fmt::Display) -> KafkaError {
        KafkaError::Client {
            cluster: self.cluster,
            operation: self.operation.clone(),
            detail: self.redactor.scrub(&detail.to_string()),
        }
    }

    fn config_error(&self, error: &RdKafkaError) -> KafkaError {
        KafkaError::Config {
            cluster: self.cluster,
            operation: Operation::Configure,
            detail: self.redactor.scrub(&describe_client_error(error)),
        }
    }

    /// The final error for a broker or librdkafka error code. `last` is the most specific
    /// transport error heard meanwhile, for an unreachable cluster.
    fn error_for_code(&self, code: RDKafkaErrorCode, last: Option<String>) -> KafkaError {
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

    fn fail(&self, error: &RdKafkaError, last: Option<String>) -> KafkaError {
        match error_code(error) {
            Some(code) => self.error_for_code(code, last),
            None => self.client(describe_client_error(error)),
        }
    }

    fn topic_not_found(&self, topic: &str) -> KafkaError {
        KafkaError::TopicNotFound {
            cluster: self.cluster,
            operation: self.operation.clone(),
            topic: topic.to_owned(),
        }
    }
}

/// One operation's client and deadline, on a blocking thread.
struct Session {
    consumer: BaseConsumer<KdrContext>,
    scope: Scope,
    deadline: Instant,
    /// Every topic, from the session's first full metadata request.
    topics: OnceCell<Vec<TopicInfo>>,
}

impl Session {
    fn open(config: &ClientConfig, scope: Scope, deadline: Instant) -> Result<Session, KafkaError> {
        let context = KdrContext::new(scope.cluster, scope.redactor.clone());
        let consumer = config
            .create_with_context::<_, BaseConsumer<KdrContext>>(context)
            .map_err(|error| scope.config_error(&error))?;
        Ok(Session {
            consumer,
            scope,
            deadline,
            topics: OnceCell::new(),
        })
    }

    fn context(&self) -> &KdrContext {
        self.consumer.client().context()
    }

    fn remaining(&self) -> Option<Duration> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        (!remaining.is_zero()).then_some(remaining)
    }

    /// The most specific error heard: a client error event, else a logged failure, else
    /// the last failed attempt.
    fn last_error(&self, attempt: Option<String>) -> Option<String> {
        let heard = self.context().heard();
        heard
            .last_error
            .clone()
            .or_else(|| heard.last_logged_failure.clone())
            .or(attempt)
    }

    fn timed_out(&self, attempt: Option<String>) -> KafkaError {
        self.scope.timeout(
            self.last_error(attempt)
                .map(|last| format!("last error: {last}")),
        )
    }

    /// Lets librdkafka deliver queued events (errors, logs) to the context. Only for
    /// clients with no assignment: a poll could otherwise return a record.
    fn serve_events(&self) {
        for _ in 0..8 {
            let _ = self.consumer.poll(Duration::from_millis(1));
        }
    }

    /// A failure the client heard about that no retry will fix within this operation.
    fn heard_failure(&self) -> Option<KafkaError> {
        let (authentication, all_down) = {
            let heard = self.context().heard();
            (heard.authentication.clone(), heard.all_brokers_down)
        };
        if let Some(detail) = authentication {
            return Some(KafkaError::Authentication {
                cluster: self.scope.cluster,
                operation: self.scope.operation.clone(),
                detail,
            });
        }
        all_down.then(|| KafkaError::Unreachable {
            cluster: self.scope.cluster,
            operation: self.scope.operation.clone(),
            detail: self
                .last_error(None)
                .unwrap_or_else(|| "all broker connections are down".to_owned()),
        })
    }

    /// Calls `attempt` with growing waits until it succeeds, fails for good, or the
    /// deadline passes. `special` may give a better error for a code than the generic one.
    fn sliced<T>(
        &self,
        mut attempt: impl FnMut(Duration) -> Result<T, RdKafkaError>,
        special: impl Fn(RDKafkaErrorCode) -> Option<KafkaError>,
    ) -> Result<T, KafkaError> {
        let mut slice = FIRST_SLICE;
        let mut last_attempt = None;
        loop {
            let Some(remaining) = self.remaining() else {
                return Err(self.timed_out(last_attempt));
            };
            let error = match attempt(wait(slice.min(remaining))) {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            self.serve_events();
            if let Some(failure) = self.heard_failure() {
                return Err(failure);
            }
            match error_code(&error) {
                Some(code) if retriable(code) => last_attempt = Some(code.to_string()),
                Some(code) => {
                    return Err(special(code)
                        .unwrap_or_else(|| self.scope.fail(&error, self.last_error(None))));
                }
                None => return Err(self.scope.fail(&error, None)),
            }
            slice = slice.saturating_mul(2);
        }
    }

    fn cluster_info(&self) -> Result<ClusterInfo, KafkaError> {
        let metadata = self.sliced(|wait| self.consumer.fetch_metadata(None, wait), |_| None)?;
        let mut brokers: Vec<BrokerInfo> = metadata
            .brokers()
            .iter()
            .map(|broker| BrokerInfo {
                id: broker.id(),
                host: broker.host().to_owned(),
                port: broker.port(),
            })
            .collect();
        brokers.sort_by_key(|broker| broker.id);
        let (cluster_id, controller_id) = cached_identity(self.consumer.client());
        Ok(ClusterInfo {
            brokers,
            answered_by: metadata.orig_broker_id(),
            cluster_id,
            controller_id,
            round_trip: Duration::ZERO,
        })
    }

    /// Every topic, sorted. Asked once per session: the request also fills librdkafka's
    /// metadata cache, so partition leaders are known before any ListOffsets.
    fn all_topics(&self) -> Result<&[TopicInfo], KafkaError> {
        if let Some(topics) = self.topics.get() {
            return Ok(topics);
        }
        let metadata = self.sliced(|wait| self.consumer.fetch_metadata(None, wait), |_| None)?;
        Ok(self.topics.get_or_init(|| topics_of(&metadata)))
    }

    /// `TopicNotFound` or `PartitionNotFound` for the first asked partition the cluster
    /// does not have.
    fn require_partitions(&self, asked: &[TopicPartition]) -> Result<(), KafkaError> {
        let topics = self.all_topics()?;
        match missing_partition(&self.scope, topics, asked) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn unknown_partition(
        &self,
        code: RDKafkaErrorCode,
        asked: &[TopicPartition],
    ) -> Option<KafkaError> {
        use RDKafkaErrorCode as C;
        if !matches!(
            code,
            C::UnknownPartition | C::UnknownTopic | C::UnknownTopicOrPartition
        ) {
            return None;
        }
        // The topic may have gone since this session's metadata: look again.
        let metadata = self
            .consumer
            .fetch_metadata(None, wait(self.remaining()?))
            .ok()?;
        missing_partition(&self.scope, &topics_of(&metadata), asked)
    }

    /// ListOffsets at `at` (earliest or latest) for every asked partition, batched per
    /// leader by librdkafka. A partition-level error fails the attempt, so a transient one
    /// (leader moved) is retried rather than returned as an offset.
    fn list_offsets(&self, asked: &[TopicPartition], at: Offset) -> Result<Vec<i64>, KafkaError> {
        self.require_partitions(asked)?;
        let mut request = TopicPartitionList::with_capacity(asked.len());
        for tp in asked {
            request
                .add_partition_offset(&tp.topic, tp.partition, at)
                .map_err(|error| self.scope.fail(&error, None))?;
        }
        let answer = self.sliced(
            |wait| {
                let answer = self.consumer.offsets_for_times(request.clone(), wait)?;
                for element in answer.elements() {
                    element.error()?;
                }
                Ok(answer)
            },
            |code| self.unknown_partition(code, asked),
        )?;
        asked
            .iter()
            .map(|tp| {
                match answer
                    .find_partition(&tp.topic, tp.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(offset)) => Ok(offset),
                    other => Err(self
                        .scope
                        .client(format!("the cluster gave no offset for {tp} ({other:?})"))),
                }
            })
            .collect()
    }

    fn single_offset(&self, tp: &TopicPartition, at: Offset) -> Result<i64, KafkaError> {
        let offsets = self.list_offsets(std::slice::from_ref(tp), at)?;
        offsets.first().copied().ok_or_else(|| {
            self.scope
                .client(format!("the cluster gave no offset for {tp}"))
        })
    }

    fn read_partition(
        &self,
        tp: &TopicPartition,
        allow_partial: bool,
    ) -> Result<PartitionRead, KafkaError> {
        let low = self.single_offset(tp, Offset::Beginning)?;
        let high = self.single_offset(tp, Offset::End)?;
        if low >= high {
            return Ok(PartitionRead {
                records: Vec::new(),
                low,
                high,
                complete: true,
            });
        }

        let mut assignment = TopicPartitionList::with_capacity(1);
        assignment
            .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(low))
            .and_then(|()| self.consumer.assign(&assignment))
            .map_err(|error| self.scope.fail(&error, None))?;
        let expected = usize::try_from(high - low).unwrap_or(0).min(1 << 16);
        let mut records = Vec::with_capacity(expected);
        let mut next = low;
        let mut last_attempt = None;
        while next < high {
            let Some(remaining) = self.remaining() else {
                break;
            };
            match self.consumer.poll(remaining.min(POLL_STEP)) {
                None => {}
                Some(Ok(message)) => {
                    if message.offset() >= high {
                        next = high;
                    } else {
                        next = message.offset() + 1;
                        records.push(raw_record(&message));
                    }
                }
                // At the end of the readable log: the captured end, or the last stable
                // offset if a transaction is open (what lies past it is not readable yet).
                Some(Err(RdKafkaError::PartitionEOF(_))) => next = high,
                Some(Err(error)) => match error_code(&error) {
                    Some(code) if retriable(code) => last_attempt = Some(code.to_string()),
                    _ => return Err(self.scope.fail(&error, self.last_error(None))),
                },
            }
            if let Some(failure) = self.heard_failure() {
                return Err(failure);
            }
        }
        let complete = next >= high;
        if complete || allow_partial {
            return Ok(PartitionRead {
                records,
                low,
                high,
                complete,
            });
        }
        let mut note = format!(
            "read {} record(s), up to offset {next} of {high}",
            records.len()
        );
        if let Some(last) = self.last_error(last_attempt) {
            note.push_str(&format!("; last error: {last}"));
        }
        Err(self.scope.timeout(Some(note)))
    }

    fn committed(
        &self,
        asked: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, KafkaError> {
        let mut request = TopicPartitionList::with_capacity(asked.len());
        for tp in asked {
            request.add_partition(&tp.topic, tp.partition);
        }
        let answer = self.sliced(
            |wait| {
                let answer = self.consumer.committed_offsets(request.clone(), wait)?;
                for element in answer.elements() {
                    element.error()?;
                }
                Ok(answer)
            },
            |code| self.unknown_partition(code, asked),
        )?;
        Ok(asked
            .iter()
            .map(|tp| {
                let offset = match answer
                    .find_partition(&tp.topic, tp.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(offset)) => Some(offset),
                    _ => None,
                };
                (tp.clone(), offset)
            })
            .collect())
    }

    /// Sends the commit and waits for the broker's answer on a queue of its own, in
    /// short polls, so the deadline and authentication failures are noticed meanwhile.
    fn commit(&self, group: &str, offsets: &[(TopicPartition, i64)]) -> Result<(), KafkaError> {
        let mut request = TopicPartitionList::with_capacity(offsets.len());
        for (tp, offset) in offsets {
            request
                .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
                .map_err(|error| self.scope.fail(&error, None))?;
        }
        let pending = PendingCommit::send(&self.consumer, &request)
            .map_err(|code| self.scope.error_for_code(code, None))?;
        loop {
            let Some(remaining) = self.remaining() else {
                return Err(self.timed_out(None));
            };
            if let Some(outcome) = pending.wait(remaining.min(POLL_STEP)) {
                return self.commit_verdict(group, outcome);
            }
            self.serve_events();
            if let Some(failure) = self.heard_failure() {
                return Err(failure);
            }
        }
    }

    fn commit_verdict(&self, group: &str, outcome: CommitOutcome) -> Result<(), KafkaError> {
        let (code, partition) = match outcome {
            Err(code) => (code, None),
            Ok(partitions) => match partitions
                .into_iter()
                .find_map(|p| p.error.map(|code| (code, p)))
            {
                None => return Ok(()),
                Some((code, p)) => (code, Some(TopicPartition::new(p.topic, p.partition))),
            },
        };
        if group_is_active(code) {
            return Err(KafkaError::GroupActive {
                cluster: self.scope.cluster,
                operation: self.scope.operation.clone(),
                group: group.to_owned(),
                detail: code.to_string(),
            });
        }
        let error = self.scope.error_for_code(code, self.last_error(None));
        match (error, partition) {
            (
                KafkaError::Client {
                    cluster,
                    operation,
                    detail,
                },
                Some(tp),
            ) => Err(KafkaError::Client {
                cluster,
                operation,
                detail: format!("partition {tp}: {detail}"),
            }),
            (error, _) => Err(error),
        }
    }

    fn describe_group(&self, group: &str) -> Result<GroupDescription, KafkaError> {
        let groups = self.sliced(
            |wait| self.consumer.fetch_group_list(Some(group), wait),
            |code| {
                (code == RDKafkaErrorCode::UnsupportedFeature).then(|| KafkaError::Unsupported {
                    cluster: self.scope.cluster,
                    operation: self.scope.operation.clone(),
                    detail: "the brokers refuse group listing (ListGroups/DescribeGroups)"
                        .to_owned(),
                })
            },
        )?;
        let Some(info) = groups.groups().iter().find(|info| info.name() == group) else {
            return Ok(GroupDescription {
                group: group.to_owned(),
                state: "Dead".to_owned(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let consumer_protocol = info.protocol_type() == "consumer";
        let members = info
            .members()
            .iter()
            .map(|member| MemberInfo {
                id: member.id().to_owned(),
                client_id: member.client_id().to_owned(),
                host: member.client_host().to_owned(),
                assignment: consumer_protocol
                    .then(|| member.assignment().and_then(decode_consumer_assignment))
                    .flatten(),
            })
            .collect();
        Ok(GroupDescription {
            group: group.to_owned(),
            state: info.state().to_owned(),
            protocol_type: info.protocol_type().to_owned(),
            protocol: info.protocol().to_owned(),
            members,
        })
    }
}

/// Every topic in the metadata with its partitions, both sorted.
fn topics_of(metadata: &Metadata) -> Vec<TopicInfo> {
    let mut topics: Vec<TopicInfo> = metadata
        .topics()
        .iter()
        .map(|topic| {
            let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
            partitions.sort_unstable();
            TopicInfo {
                name: topic.name().to_owned(),
                partitions,
            }
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    topics
}

/// The error for the first asked partition missing from `topics`, if any.
fn missing_partition(
    scope: &Scope,
    topics: &[TopicInfo],
    asked: &[TopicPartition],
) -> Option<KafkaError> {
    asked.iter().find_map(
        |tp| match topics.iter().find(|topic| topic.name == tp.topic) {
            None => Some(scope.topic_not_found(&tp.topic)),
            Some(topic) if !topic.partitions.contains(&tp.partition) => {
                Some(KafkaError::PartitionNotFound {
                    cluster: scope.cluster,
                    operation: scope.operation.clone(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    partition_count: topic.partitions.len(),
                })
            }
            Some(_) => None,
        },
    )
}

fn raw_record(message: &impl Message) -> RawRecord {
    RawRecord {
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        timestamp_ms: message.timestamp().to_millis(),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Cluster id and controller id from the client's metadata cache, after a metadata
/// request has filled it. rdkafka wraps neither call without leaking or at all.
fn cached_identity<C: ClientContext>(client: &Client<C>) -> (Option<String>, Option<i32>) {
    use rdkafka::bindings;

    let rk = client.native_ptr();
    // SAFETY: `rk` is a live client handle for the whole call (borrowed from `client`).
    // With a 0 ms timeout both functions only read the metadata cache. `rd_kafka_clusterid`
    // returns a copy (or null) that the caller owns and frees with `rd_kafka_mem_free`.
    unsafe {
        let id = bindings::rd_kafka_clusterid(rk, 0);
        let cluster_id = if id.is_null() {
            None
        } else {
            let text = CStr::from_ptr(id).to_string_lossy().into_owned();
            bindings::rd_kafka_mem_free(rk, id.cast());
            Some(text)
        };
        let controller = bindings::rd_kafka_controllerid(rk, 0);
        (cluster_id, (controller >= 0).then_some(controller))
    }
}

/// Owns a client whose destructor blocks (an admin client joins its polling thread) and,
/// when dropped inside a Tokio runtime, destroys it on a blocking thread instead.
struct OffRuntimeDrop<T: Send + 'static>(ManuallyDrop<T>);

impl<T: Send + 'static> OffRuntimeDrop<T> {
    fn new(value: T) -> Self {
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

fn millis_of(d: std::time::Duration) -> String {
    d.as_millis().to_string()
}

/// Hands the one delivery report of [`Cluster::produce_one`] back to the waiting thread, and
/// hears librdkafka's events and log lines as every other client does: masked, and with a
/// refused handshake recorded.
struct DeliveryContext {
    delivered: std::sync::Mutex<std::sync::mpsc::Sender<Result<i64, String>>>,
    events: KdrContext,
}

impl rdkafka::ClientContext for DeliveryContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.events.log(level, fac, log_message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        self.events.error(error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.events.stats_raw(statistics);
    }
}

impl rdkafka::producer::ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        use rdkafka::Message;
        let answer = match result {
            Ok(message) => Ok(message.offset()),
            Err((error, _)) => Err(error.to_string()),
        };
        if let Ok(tx) = self.delivered.lock() {
            let _ = tx.send(answer);
        }
    }
}
