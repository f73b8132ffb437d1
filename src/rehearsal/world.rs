//! Two librdkafka mock clusters, "primary" and "dr", with every topic a two-way MM2
//! deployment would have, ready before the first record is written.
//!
//! `MockCluster` is not `Send`, so both clusters live on one dedicated thread for the
//! world's lifetime; everything else talks to that thread through a channel. Clients
//! only ever see bootstrap strings, exactly as they would with real brokers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;

use super::replicator::{Endpoint, ReplicatorConfig};
use super::workload::WorkloadConfig;
use crate::mm2::{ClusterRole, OffsetSyncsLocation, ReplicationPolicy};

/// How long a control operation may take before the caller is told the world thread is
/// gone. Mock operations answer in microseconds; this only guards against a dead thread.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// One of the two clusters of a DR pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The cluster that is active in normal operation.
    Primary,
    /// The standby cluster MM2 replicates into.
    Dr,
}

impl Role {
    /// The other cluster.
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Self::Primary => Self::Dr,
            Self::Dr => Self::Primary,
        }
    }

    /// Both roles, primary first.
    pub const BOTH: [Self; 2] = [Self::Primary, Self::Dr];
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Primary => "primary",
            Self::Dr => "dr",
        })
    }
}

/// A topic the workload writes to, with its partition count (the same on both clusters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The original topic name, as producers see it.
    pub name: String,
    /// Partitions, on every cluster that holds the topic or a replica of it.
    pub partitions: i32,
}

impl TopicSpec {
    /// A topic with `partitions` partitions.
    #[must_use]
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
        }
    }
}

/// What the world looks like: topics, groups and the MM2 settings both flows share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldSpec {
    /// The replicated topics.
    pub topics: Vec<TopicSpec>,
    /// The consumer groups that are checkpointed and run by the workload.
    pub groups: Vec<String>,
    /// MM2 alias of the primary cluster.
    pub primary_alias: String,
    /// MM2 alias of the DR cluster.
    pub dr_alias: String,
    /// `replication.policy.*` of both flows.
    pub policy: ReplicationPolicy,
    /// `offset-syncs.topic.location` of both flows.
    pub offset_syncs_location: OffsetSyncsLocation,
    /// Brokers per mock cluster.
    pub brokers_per_cluster: i32,
}

impl Default for WorldSpec {
    /// `orders` ×4 and `payments.eu` ×3, two groups, aliases `primary`/`dr`, MM2's
    /// default policy and offset-syncs on the source, three brokers per cluster.
    fn default() -> Self {
        Self {
            topics: vec![
                TopicSpec::new("orders", 4),
                TopicSpec::new("payments.eu", 3),
            ],
            groups: vec!["order-processor".to_owned(), "billing".to_owned()],
            primary_alias: "primary".to_owned(),
            dr_alias: "dr".to_owned(),
            policy: ReplicationPolicy::default_policy(),
            offset_syncs_location: OffsetSyncsLocation::Source,
            brokers_per_cluster: 3,
        }
    }
}

/// One topic the world creates, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicPlacement {
    /// The cluster that holds the topic.
    pub cluster: Role,
    /// The topic name.
    pub name: String,
    /// Its partition count.
    pub partitions: i32,
}

impl WorldSpec {
    /// The MM2 alias of `role`.
    #[must_use]
    pub fn alias(&self, role: Role) -> &str {
        match role {
            Role::Primary => &self.primary_alias,
            Role::Dr => &self.dr_alias,
        }
    }

    /// The original topic names.
    #[must_use]
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.iter().map(|t| t.name.clone()).collect()
    }

    /// Every topic of a two-way MM2 deployment between the two clusters: the original
    /// topics on both (DR's own copies take the writes after a failover), and for each
    /// flow `S -> T` the remote topics and `S.heartbeats` on T, the checkpoints topic on
    /// T, and the offset-syncs topic where `offset_syncs_location` puts it; `heartbeats`
    /// on both. Under the Identity policy a remote topic has the original's name, so it
    /// is listed once. Internal topics have one partition, as MM2 creates them.
    ///
    /// A harness for separate broker processes creates this same list with its admin
    /// client; the mock cannot (CreateTopics hangs there).
    #[must_use]
    pub fn layout(&self) -> Vec<TopicPlacement> {
        let mut topics: BTreeMap<(Role, String), i32> = BTreeMap::new();
        for role in Role::BOTH {
            for topic in &self.topics {
                topics.insert((role, topic.name.clone()), topic.partitions);
            }
            topics.insert((role, self.policy.heartbeats_topic().to_owned()), 1);
        }
        for source in Role::BOTH {
            let target = source.other();
            let (s, t) = (self.alias(source), self.alias(target));
            for topic in &self.topics {
                let remote = self.policy.format_remote_topic(s, &topic.name);
                topics.insert((target, remote), topic.partitions);
            }
            let heartbeats = self
                .policy
                .format_remote_topic(s, self.policy.heartbeats_topic());
            topics.insert((target, heartbeats), 1);
            topics.insert((target, self.policy.checkpoints_topic(s)), 1);
            let (syncs, holder) =
                self.policy
                    .offset_syncs_topic_for_flow(s, t, self.offset_syncs_location);
            let holder = match holder {
                ClusterRole::Source => source,
                ClusterRole::Target => target,
            };
            topics.insert((holder, syncs), 1);
        }
        topics
            .into_iter()
            .map(|((cluster, name), partitions)| TopicPlacement {
                cluster,
                name,
                partitions,
            })
            .collect()
    }
}

/// Why the world could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// librdkafka refused to create a mock cluster or a topic.
    #[error("failed to {what}: {source}")]
    Mock {
        /// What was being done.
        what: String,
        /// librdkafka's answer.
        source: rdkafka::error::KafkaError,
    },
    /// The thread that owns the clusters is gone or did not answer.
    #[error("failed to reach the embedded clusters' thread: {0}")]
    ThreadGone(&'static str),
}

enum Control {
    CreateTopic {
        cluster: Role,
        name: String,
        partitions: i32,
    },
    Down(Role),
    Up(Role),
    Shutdown,
}

type Reply = Result<(), WorldError>;

/// The two embedded clusters. Dropping the world stops the clusters' thread; clients
/// still connected then see their brokers disappear.
pub struct EmbeddedWorld {
    spec: WorldSpec,
    bootstrap: [String; 2],
    control: mpsc::Sender<(Control, mpsc::Sender<Reply>)>,
    thread: Option<JoinHandle<()>>,
    started_in: Duration,
}

impl fmt::Debug for EmbeddedWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedWorld")
            .field("primary", &self.bootstrap[0])
            .field("dr", &self.bootstrap[1])
            .finish_non_exhaustive()
    }
}

impl EmbeddedWorld {
    /// Starts both clusters and creates every topic of [`WorldSpec::layout`].
    ///
    /// # Errors
    /// A mock cluster or a topic could not be created.
    pub fn start(spec: WorldSpec) -> Result<Self, WorldError> {
        let started = Instant::now();
        let (control, requests) = mpsc::channel::<(Control, mpsc::Sender<Reply>)>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<[String; 2], WorldError>>();
        let brokers = spec.brokers_per_cluster.max(1);
        let thread = std::thread::Builder::new()
            .name("kdr-world".to_owned())
            .spawn(move || own_clusters(brokers, &ready_tx, &requests))
            .map_err(|_| WorldError::ThreadGone("spawn failed"))?;
        let bootstrap = ready_rx
            .recv_timeout(CONTROL_TIMEOUT)
            .map_err(|_| WorldError::ThreadGone("no answer at start"))??;
        let mut world = Self {
            spec,
            bootstrap,
            control,
            thread: Some(thread),
            started_in: Duration::ZERO,
        };
        for placement in world.spec.layout() {
            world.create_topic(placement.cluster, &placement.name, placement.partitions)?;
        }
        world.started_in = started.elapsed();
        Ok(world)
    }

    /// What the world was started with.
    #[must_use]
    pub fn spec(&self) -> &WorldSpec {
        &self.spec
    }

    /// How long [`start`](Self::start) took, topics included.
    #[must_use]
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The bootstrap string of one cluster (`127.0.0.1:port,...`).
    #[must_use]
    pub fn bootstrap_servers(&self, role: Role) -> &str {
        match role {
            Role::Primary => &self.bootstrap[0],
            Role::Dr => &self.bootstrap[1],
        }
    }

    /// Creates a topic on one cluster (the mock's own call: CreateTopics hangs there).
    ///
    /// # Errors
    /// The mock refused, or its thread is gone.
    pub fn create_topic(
        &self,
        cluster: Role,
        name: &str,
        partitions: i32,
    ) -> Result<(), WorldError> {
        self.call(Control::CreateTopic {
            cluster,
            name: name.to_owned(),
            partitions,
        })
    }

    /// Takes every broker of one cluster down: the data centre is gone. Existing
    /// connections are closed and new ones refused until [`cluster_up`](Self::cluster_up).
    ///
    /// # Errors
    /// The mock refused, or its thread is gone.
    pub fn cluster_down(&self, cluster: Role) -> Result<(), WorldError> {
        self.call(Control::Down(cluster))
    }

    /// Brings every broker of one cluster back, with its data.
    ///
    /// # Errors
    /// The mock refused, or its thread is gone.
    pub fn cluster_up(&self, cluster: Role) -> Result<(), WorldError> {
        self.call(Control::Up(cluster))
    }

    /// The endpoint (alias and bootstrap) of one cluster.
    #[must_use]
    pub fn endpoint(&self, role: Role) -> Endpoint {
        Endpoint::new(self.spec.alias(role), self.bootstrap_servers(role))
    }

    /// A replicator configuration for the flow `source -> source.other()` with the
    /// world's topics, groups and MM2 settings, and the replicator's defaults otherwise.
    #[must_use]
    pub fn replicator_config(&self, source: Role) -> ReplicatorConfig {
        let mut config =
            ReplicatorConfig::new(self.endpoint(source), self.endpoint(source.other()));
        config.policy = self.spec.policy.clone();
        config.offset_syncs_location = self.spec.offset_syncs_location;
        config.topics = self.spec.topic_names();
        config.groups = self.spec.groups.clone();
        config
    }

    /// A workload configuration over the world's topics and groups, steered by the
    /// given indirection and pause files.
    #[must_use]
    pub fn workload_config(
        &self,
        indirection_file: impl Into<std::path::PathBuf>,
        pause_file: impl Into<std::path::PathBuf>,
    ) -> WorkloadConfig {
        WorkloadConfig::new(
            self.spec.topic_names(),
            self.spec.groups.clone(),
            vec![self.endpoint(Role::Primary), self.endpoint(Role::Dr)],
            self.spec.policy.clone(),
            indirection_file.into(),
            pause_file.into(),
        )
    }

    fn call(&self, control: Control) -> Reply {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.control
            .send((control, reply_tx))
            .map_err(|_| WorldError::ThreadGone("control channel closed"))?;
        reply_rx
            .recv_timeout(CONTROL_TIMEOUT)
            .map_err(|_| WorldError::ThreadGone("no answer"))?
    }
}

impl Drop for EmbeddedWorld {
    fn drop(&mut self) {
        let (reply_tx, _reply_rx) = mpsc::channel();
        let _ = self.control.send((Control::Shutdown, reply_tx));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The clusters' thread: creates both clusters, reports their addresses, then serves
/// control requests until shutdown or until the world is dropped.
fn own_clusters(
    brokers: i32,
    ready: &mpsc::Sender<Result<[String; 2], WorldError>>,
    requests: &mpsc::Receiver<(Control, mpsc::Sender<Reply>)>,
) {
    let new_cluster = |role: Role| {
        MockCluster::new(brokers).map_err(|source| WorldError::Mock {
            what: format!("start the {role} mock cluster"),
            source,
        })
    };
    let clusters = match (new_cluster(Role::Primary), new_cluster(Role::Dr)) {
        (Ok(primary), Ok(dr)) => [primary, dr],
        (Err(error), _) | (_, Err(error)) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let cluster = |role: Role| match role {
        Role::Primary => &clusters[0],
        Role::Dr => &clusters[1],
    };
    let bootstrap = [
        clusters[0].bootstrap_servers(),
        clusters[1].bootstrap_servers(),
    ];
    if ready.send(Ok(bootstrap)).is_err() {
        return;
    }
    let replication_factor = brokers.min(3);
    // A closed channel means the world was dropped without a shutdown message: stop too.
    while let Ok((control, reply)) = requests.recv() {
        let result = match control {
            Control::Shutdown => break,
            Control::CreateTopic {
                cluster: role,
                name,
                partitions,
            } => cluster(role)
                .create_topic(&name, partitions, replication_factor)
                .map_err(|source| WorldError::Mock {
                    what: format!("create topic {name} on {role}"),
                    source,
                }),
            Control::Down(role) => {
                cluster(role)
                    .broker_down(-1)
                    .map_err(|source| WorldError::Mock {
                        what: format!("take the {role} brokers down"),
                        source,
                    })
            }
            Control::Up(role) => cluster(role)
                .broker_up(-1)
                .map_err(|source| WorldError::Mock {
                    what: format!("bring the {role} brokers up"),
                    source,
                }),
        };
        let _ = reply.send(result);
    }
}
