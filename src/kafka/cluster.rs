//! One cluster, and every question kdr asks it, each with a hard bound.
//!
//! librdkafka's calls block, some for as long as they are told and some (admin requests a
//! broker never answers) until a request timeout. A DR runbook cannot afford either on its
//! async runtime, so every call here runs on a blocking thread with librdkafka's own
//! timeout set, and the async side also stops waiting at that bound (plus a small grace:
//! the one rule in `bound.rs`).
//! The answer travels back on a channel before the client is torn down, so destroying a
//! client never delays the answer.
//!
//! Each operation builds its own client and drops it afterwards. A cluster that just died
//! or came back is then seen as it is now, not through a long-lived client's reconnect
//! backoff, and no background client keeps logging refused connections to a dead primary
//! for the rest of the run. A client costs about a millisecond on loopback (measured in
//! the tests); against a remote cluster it costs a TLS/SASL handshake per operation, which
//! is cheap next to a runbook step.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use super::bound::{Bound, LONGEST_WAIT, off_thread};
use super::config::{ClusterRole, ClusterSpec, Redactor};
use super::error::{KafkaError, Operation};
use super::scope::{Scope, describe_client_error};
use rdkafka::Message;

use super::session::Session;
use super::types::{
    GroupDescription, PartitionRead, PartitionScan, Reachability, ReadOptions, RecordView,
    TopicInfo, TopicPartition, Watermarks,
};

/// The thing kdr asks questions of. Cheap to clone; every clone shares the spec.
#[derive(Clone)]
pub struct Cluster {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) spec: ClusterSpec,
    pub(super) operation_timeout: Duration,
    pub(super) redactor: Redactor,
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

    /// Whether the cluster answers a metadata request within the bound. The request names one
    /// topic, so it costs the same on an estate of twenty partitions and of twenty thousand.
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

    /// The topics whose name passes `filter` (sorted, without internal `__` topics, as
    /// [`Cluster::topics`] lists them) and the watermarks of every one of their partitions,
    /// in listing order, from one session: the one metadata request that lists the topics
    /// also tells kdr which partitions exist and librdkafka where their leaders are. Asking
    /// [`Cluster::topics`] and then [`Cluster::batch_watermarks`] would list every topic
    /// twice, which at 20 000 partitions is the larger part of the cost.
    pub async fn topics_with_watermarks(
        &self,
        filter: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<(Vec<TopicInfo>, Vec<Watermarks>), KafkaError> {
        self.run(
            Operation::FetchWatermarks,
            self.operation_timeout(),
            self.meta_config(),
            move |session| {
                let topics: Vec<TopicInfo> = session
                    .all_topics()?
                    .iter()
                    .filter(|t| !t.name.starts_with("__") && filter(&t.name))
                    .cloned()
                    .collect();
                let asked: Vec<TopicPartition> = topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| TopicPartition::new(&t.name, *p))
                    })
                    .collect();
                if asked.is_empty() {
                    return Ok((topics, Vec::new()));
                }
                let (low, high) = session.list_offsets_both(&asked)?;
                let mut marks = Vec::with_capacity(asked.len());
                for ((tp, low), high) in asked.into_iter().zip(low).zip(high) {
                    let (low, high) = (low?, high?);
                    let (topic, partition) = (tp.topic, tp.partition);
                    marks.push(Watermarks {
                        topic,
                        partition,
                        low,
                        high,
                    });
                }
                Ok((topics, marks))
            },
        )
        .await
    }

    /// Log start and end offsets of many partitions, in the order asked; the first
    /// partition the cluster does not have fails the call. [`Cluster::batch_watermarks`]
    /// answers the same with an error per partition instead.
    pub async fn watermarks(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Watermarks>, KafkaError> {
        self.batch_watermarks(partitions)
            .await?
            .into_iter()
            .collect()
    }

    /// Log end offsets (ListOffsets latest) of many partitions, one request per leader;
    /// the first partition the cluster does not have fails the call.
    pub async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, i64)>, KafkaError> {
        let ends = self.batch_end_offsets(partitions).await?;
        partitions
            .iter()
            .cloned()
            .zip(ends)
            .map(|(tp, end)| Ok((tp, end?)))
            .collect()
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
        let (bound, config, operation, tp) = self.partition_reader(topic, partition, options);
        self.run(operation, bound, config, move |session| {
            session.read_partition(&tp, options.allow_partial)
        })
        .await
    }

    /// Reads one partition as [`Cluster::read_to_end`] does, but folds each record into
    /// `state` with `step` as it arrives instead of keeping it: a reader of a million-record
    /// checkpoints topic holds what it makes of the records, not the records. Returns the
    /// state with what was read.
    pub async fn scan_to_end<T, F>(
        &self,
        topic: &str,
        partition: i32,
        options: ReadOptions,
        mut state: T,
        mut step: F,
    ) -> Result<(T, PartitionScan), KafkaError>
    where
        T: Send + 'static,
        F: FnMut(&mut T, RecordView<'_>) + Send + 'static,
    {
        let (bound, config, operation, tp) = self.partition_reader(topic, partition, options);
        self.run(operation, bound, config, move |session| {
            let scan = session.scan_partition(&tp, options.allow_partial, &mut |message, _| {
                let record = RecordView {
                    offset: message.offset(),
                    key: message.key(),
                    value: message.payload(),
                    timestamp_ms: message.timestamp().to_millis(),
                };
                step(&mut state, record);
            })?;
            Ok((state, scan))
        })
        .await
    }

    /// The bound, client configuration, operation and partition of a read to the end.
    fn partition_reader(
        &self,
        topic: &str,
        partition: i32,
        options: ReadOptions,
    ) -> (Duration, ClientConfig, Operation, TopicPartition) {
        let bound = options.timeout.unwrap_or(self.operation_timeout());
        let mut config = self
            .inner
            .spec
            .consumer_config(Some(&reader_group(self.role())), bound);
        // The read asks the topic's metadata by name: never create it by asking.
        config
            .set("enable.partition.eof", "true")
            .set("allow.auto.create.topics", "false");
        let operation = Operation::ReadPartition {
            topic: topic.to_owned(),
            partition,
        };
        (
            bound,
            config,
            operation,
            TopicPartition::new(topic, partition),
        )
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

    /// A client that only asks questions. Its metadata requests may name a topic (the
    /// probe's, a partition read's), and asking must never create one, whatever the plan's
    /// client settings say about auto-creation.
    pub(super) fn meta_config(&self) -> ClientConfig {
        let mut config = self
            .inner
            .spec
            .consumer_config(None, self.operation_timeout());
        config.set("allow.auto.create.topics", "false");
        config
    }

    pub(super) fn scope(&self, operation: Operation, bound: Duration) -> Scope {
        Scope {
            cluster: self.role(),
            operation,
            bound,
            redactor: self.inner.redactor.clone(),
        }
    }

    /// Runs `work` with a fresh consumer on a blocking thread, waiting at most `bound`
    /// (the rule of [`Bound`]) for its answer. `work` must bound its own librdkafka calls by
    /// the session's deadline, which [`Session`]'s helpers do.
    pub(super) async fn run<T, W>(
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
        let bound = Bound::new(bound, None, Instant::now());
        let session_scope = scope.clone();
        off_thread(&scope, bound, move |answer| {
            let session = match Session::open(&config, session_scope, bound.deadline) {
                Ok(session) => session,
                Err(error) => {
                    let _ = answer.send(Err(error));
                    return;
                }
            };
            let _ = answer.send(work(&session));
            drop(session);
        })
        .await
    }
}

/// The group id the partition reader uses. librdkafka needs one to assign partitions; the
/// reader never joins or commits, so no group appears on the broker.
fn reader_group(role: ClusterRole) -> String {
    format!("kdr-reader-{role}")
}
