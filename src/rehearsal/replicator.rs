//! An MM2-compatible replicator for one flow `S -> T`.
//!
//! MirrorMaker 2 cannot run here (no JVM, no Maven), yet kdr's failover logic must be
//! exercised against exactly what MM2 leaves behind: remote topics with the same records
//! in the same partitions, offset syncs emitted by MM2's rules, checkpoints translated by
//! MM2's offset-sync store, heartbeats in the directions MM2's herders write them. This
//! replicator produces those, byte for byte, using the pure [`crate::mm2`] model for every
//! rule, so kdr is tested against MM2's behaviour and not against our idea of it.
//!
//! Three threads, one per MM2 connector:
//! * copy (`MirrorSourceConnector`): source partitions to the same partitions of the
//!   remote topics, then offset syncs from the delivery reports' downstream offsets;
//! * checkpoints (`MirrorCheckpointConnector`): reads the offset syncs back from Kafka,
//!   reads each group's committed offsets on S, writes translated checkpoints to T;
//! * heartbeats (`MirrorHeartbeatConnector` of both herders).
//!
//! Every loop is bounded: every librdkafka call has a timeout, and a dead cluster means
//! retries with backoff until [`Replicator::stop`], never a panic or a spin. Only
//! bootstrap strings are taken, so the replicator runs between any two Kafka-protocol
//! clusters, embedded or not.

mod checkpoint;
mod copy;
mod heartbeat;

#[cfg(test)]
pub(crate) use checkpoint::checkpoint_is_more_recent;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::mm2::{Checkpoint, OffsetLagMax, OffsetSyncsLocation, ReplicationPolicy};

/// A cluster as a flow sees it: its MM2 alias and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The MM2 cluster alias (`primary`, `dr`).
    pub alias: String,
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
}

impl Endpoint {
    /// An endpoint from its alias and bootstrap string.
    #[must_use]
    pub fn new(alias: impl Into<String>, bootstrap_servers: impl Into<String>) -> Self {
        Self {
            alias: alias.into(),
            bootstrap_servers: bootstrap_servers.into(),
        }
    }
}

/// Where copying starts in partitions the flow has never copied.
///
/// MM2 keeps its source positions in Connect's offsets topic; this replicator keeps them
/// in memory, so a flow that is stopped and started again resumes with
/// [`StartFrom::Offsets`] taken from [`ReplicatorStats::positions`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The beginning of every partition (a new MM2 flow).
    #[default]
    Earliest,
    /// The end of every partition when it is first seen.
    Latest,
    /// These next-offsets per source `(topic, partition)`; the beginning for the others.
    Offsets(BTreeMap<(String, i32), i64>),
}

/// What [`Replicator::pause`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Only record copying (and with it the copy of `heartbeats` to `S.heartbeats`):
    /// a stalled source connector, while the heartbeat and checkpoint connectors run
    /// on. Replication lag grows while heartbeats stay fresh.
    Copying,
    /// Everything: MM2 is down. Lag grows and heartbeats and checkpoints age too.
    Everything,
}

/// How one flow behaves. Build with [`ReplicatorConfig::new`] and adjust the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatorConfig {
    /// The source cluster S.
    pub source: Endpoint,
    /// The target cluster T.
    pub target: Endpoint,
    /// Naming of remote and internal topics.
    pub policy: ReplicationPolicy,
    /// `offset-syncs.topic.location`.
    pub offset_syncs_location: OffsetSyncsLocation,
    /// Source topics to replicate (exact names). `heartbeats` is added on its own.
    pub topics: Vec<String>,
    /// Consumer groups to checkpoint.
    pub groups: Vec<String>,
    /// `offset.lag.max`.
    pub offset_lag_max: OffsetLagMax,
    /// How often delayed offset syncs are flushed (MM2's task commit,
    /// `offset.flush.interval.ms`, 60 s in Connect; short here so drills finish fast).
    pub offset_flush_interval: Duration,
    /// `emit.heartbeats.interval.seconds`.
    pub heartbeat_interval: Duration,
    /// `emit.checkpoints.interval.seconds`.
    pub checkpoint_interval: Duration,
    /// Emit `Heartbeat(S, T)` into T's `heartbeats` (the `S->T` herder).
    pub emit_heartbeats: bool,
    /// Emit `Heartbeat(T, S)` into S's `heartbeats`, as the `T->S` herder does even when
    /// that flow is disabled. Turn off when the reverse flow runs its own replicator.
    pub emit_reverse_heartbeats: bool,
    /// Copy S's `heartbeats` to T as `S.heartbeats`.
    pub replicate_heartbeats: bool,
    /// Where copying starts in partitions never copied before.
    pub start_from: StartFrom,
    /// The most records copied per produce round trip.
    pub max_batch: usize,
    /// How long the target may take to acknowledge a record before it is sent again.
    pub delivery_timeout: Duration,
}

impl ReplicatorConfig {
    /// A flow with MM2's defaults (Default policy, offset syncs on the source,
    /// `offset.lag.max` 100, heartbeats every second) except for the short rehearsal
    /// intervals: checkpoints every second and delayed syncs flushed every second.
    #[must_use]
    pub fn new(source: Endpoint, target: Endpoint) -> Self {
        Self {
            source,
            target,
            policy: ReplicationPolicy::default_policy(),
            offset_syncs_location: OffsetSyncsLocation::Source,
            topics: Vec::new(),
            groups: Vec::new(),
            offset_lag_max: OffsetLagMax::DEFAULT,
            offset_flush_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(1),
            emit_heartbeats: true,
            emit_reverse_heartbeats: true,
            replicate_heartbeats: true,
            start_from: StartFrom::Earliest,
            max_batch: 5_000,
            delivery_timeout: Duration::from_secs(10),
        }
    }

    /// The remote name of a source topic on T.
    #[must_use]
    pub fn remote_topic(&self, topic: &str) -> String {
        self.policy.format_remote_topic(&self.source.alias, topic)
    }

    /// `<S>.checkpoints.internal` (on T).
    #[must_use]
    pub fn checkpoints_topic(&self) -> String {
        self.policy.checkpoints_topic(&self.source.alias)
    }

    /// The offset-syncs topic and the endpoint that holds it.
    #[must_use]
    pub fn offset_syncs(&self) -> (String, &Endpoint) {
        let (topic, holder) = self.policy.offset_syncs_topic_for_flow(
            &self.source.alias,
            &self.target.alias,
            self.offset_syncs_location,
        );
        let endpoint = match holder {
            crate::mm2::ClusterRole::Source => &self.source,
            crate::mm2::ClusterRole::Target => &self.target,
        };
        (topic, endpoint)
    }

    /// The name MM2 gives a checkpoint for source topic `topic` (SPEC §4.1 step 2): a
    /// topic that came from T goes back to its original name, any other is formatted as
    /// remote.
    #[must_use]
    pub fn checkpoint_topic_name(&self, topic: &str) -> String {
        if self.policy.topic_source(topic).as_deref() == Some(self.target.alias.as_str()) {
            self.policy.original_topic(topic)
        } else {
            self.remote_topic(topic)
        }
    }
}

/// What one source partition's copy has done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    /// The remote topic on T.
    pub remote_topic: String,
    /// Records acknowledged by T.
    pub records_copied: u64,
    /// The next source offset to copy, once known.
    pub next_upstream_offset: Option<i64>,
    /// The source offset of the last copied record.
    pub last_upstream_offset: Option<i64>,
    /// T's offset of the last copied record.
    pub last_downstream_offset: Option<i64>,
}

/// A snapshot of what the replicator has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicatorStats {
    /// Per source `(topic, partition)`.
    pub partitions: BTreeMap<(String, i32), PartitionStats>,
    /// Records acknowledged by T, all partitions.
    pub records_copied: u64,
    /// Offset syncs acknowledged by the cluster that holds them.
    pub offset_syncs_written: u64,
    /// Offset syncs the broker did not acknowledge (lost, as in MM2).
    pub offset_syncs_failed: u64,
    /// Syncs not yet written: delayed until the next flush, pending, or in flight.
    pub offset_syncs_outstanding: usize,
    /// Whether the offset-syncs topic has been read to its initial end, so that
    /// checkpoints can be translated.
    pub offset_syncs_loaded: bool,
    /// Checkpoints acknowledged by T.
    pub checkpoints_written: u64,
    /// The last checkpoint written per (group, target topic, partition).
    pub last_checkpoints: BTreeMap<(String, String, i32), Checkpoint>,
    /// Heartbeats acknowledged (both directions).
    pub heartbeats_written: u64,
    /// Whether the copy loop has seen the pause and stopped copying.
    pub copy_paused: bool,
    /// Copy loop iterations: proof of life while a cluster is down.
    pub copy_rounds: u64,
    /// Errors seen (consume, produce, metadata, offset fetch).
    pub errors: u64,
    /// The newest error, for the report.
    pub last_error: Option<String>,
}

impl ReplicatorStats {
    /// The next source offset per partition: what a restarted flow passes as
    /// [`StartFrom::Offsets`].
    #[must_use]
    pub fn positions(&self) -> BTreeMap<(String, i32), i64> {
        self.partitions
            .iter()
            .filter_map(|(key, p)| p.next_upstream_offset.map(|next| (key.clone(), next)))
            .collect()
    }

    /// Records copied from one source partition.
    #[must_use]
    pub fn copied(&self, topic: &str, partition: i32) -> u64 {
        self.partitions
            .get(&(topic.to_owned(), partition))
            .map_or(0, |p| p.records_copied)
    }

    /// Records copied from the given source topics (not `heartbeats`).
    #[must_use]
    pub fn copied_from(&self, topics: &[String]) -> u64 {
        self.partitions
            .iter()
            .filter(|((topic, _), _)| topics.contains(topic))
            .map(|(_, p)| p.records_copied)
            .sum()
    }
}

/// Why the replicator could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicatorError {
    /// A client could not be created from the configuration.
    #[error("failed to create the {what} client: {source}")]
    Client {
        /// Which client.
        what: &'static str,
        /// librdkafka's answer.
        source: rdkafka::error::KafkaError,
    },
    /// A thread could not be spawned.
    #[error("failed to spawn the {0} thread")]
    Spawn(&'static str),
}

/// State shared by the replicator's threads and its handle.
pub(crate) struct Shared {
    stop: AtomicBool,
    copy_paused: AtomicBool,
    all_paused: AtomicBool,
    stats: Mutex<ReplicatorStats>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn copy_paused(&self) -> bool {
        self.copy_paused.load(Ordering::Relaxed) || self.all_paused.load(Ordering::Relaxed)
    }

    pub(crate) fn all_paused(&self) -> bool {
        self.all_paused.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> MutexGuard<'_, ReplicatorStats> {
        // A panicking thread cannot leave the counters half-updated in a harmful way;
        // keep reporting them.
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn error(&self, context: &str, error: impl fmt::Display) {
        let mut stats = self.stats();
        stats.errors += 1;
        stats.last_error = Some(format!("{context}: {error}"));
        tracing::debug!(context, %error, "replicator error");
    }
}

/// A running flow `S -> T`. Dropping it stops it.
pub struct Replicator {
    config: ReplicatorConfig,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Replicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replicator")
            .field("source", &self.config.source.alias)
            .field("target", &self.config.target.alias)
            .finish_non_exhaustive()
    }
}

impl Replicator {
    /// Starts the copy, checkpoint and heartbeat threads.
    ///
    /// # Errors
    /// A client could not be created (invalid configuration) or a thread not spawned.
    pub fn start(config: ReplicatorConfig) -> Result<Self, ReplicatorError> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            copy_paused: AtomicBool::new(false),
            all_paused: AtomicBool::new(false),
            stats: Mutex::new(ReplicatorStats::default()),
        });
        let mut replicator = Self {
            config: config.clone(),
            shared: Arc::clone(&shared),
            threads: Vec::new(),
        };
        let flow = format!("{}->{}", config.source.alias, config.target.alias);
        let copy = copy::CopyTask::new(config.clone(), Arc::clone(&shared))?;
        replicator.spawn(format!("kdr-copy {flow}"), "copy", move || copy.run())?;
        let checkpoints = checkpoint::CheckpointTask::new(config.clone(), Arc::clone(&shared))?;
        replicator.spawn(format!("kdr-ckpt {flow}"), "checkpoint", move || {
            checkpoints.run();
        })?;
        let heartbeats = heartbeat::HeartbeatTask::new(config, shared)?;
        replicator.spawn(format!("kdr-hb {flow}"), "heartbeat", move || {
            heartbeats.run();
        })?;
        Ok(replicator)
    }

    fn spawn(
        &mut self,
        name: String,
        what: &'static str,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<(), ReplicatorError> {
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(body)
            .map_err(|_| ReplicatorError::Spawn(what))?;
        self.threads.push(handle);
        Ok(())
    }

    /// The configuration the flow runs with.
    #[must_use]
    pub fn config(&self) -> &ReplicatorConfig {
        &self.config
    }

    /// Stops copying (and with [`Pause::Everything`], heartbeats and checkpoints too)
    /// until [`resume`](Self::resume). Watch [`ReplicatorStats::copy_paused`] to know
    /// when the copy loop has noticed.
    pub fn pause(&self, what: Pause) {
        match what {
            Pause::Copying => self.shared.copy_paused.store(true, Ordering::Relaxed),
            Pause::Everything => self.shared.all_paused.store(true, Ordering::Relaxed),
        }
    }

    /// Undoes every pause.
    pub fn resume(&self) {
        self.shared.copy_paused.store(false, Ordering::Relaxed);
        self.shared.all_paused.store(false, Ordering::Relaxed);
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> ReplicatorStats {
        self.shared.stats().clone()
    }

    /// Stops every thread and waits for them. Records not yet acknowledged by T are
    /// not counted as copied; a new flow started from [`ReplicatorStats::positions`]
    /// copies them again.
    pub fn stop(mut self) -> ReplicatorStats {
        self.halt();
        self.stats()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                self.shared.error("replicator thread", "panicked");
            }
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.halt();
    }
}
