//! Producers and consumer groups that behave like well-configured applications during
//! a failover, with every record accounted for in a [`Ledger`].
//!
//! They find the active cluster the way the runbook says applications should: through
//! an indirection layer, here a file holding a bootstrap string (what kdr's `repoint`
//! step writes). Producers also obey a pause file (what a `quiesce_producers` hook
//! creates). Both are checked at a bounded cadence, so the time between kdr's action and
//! the applications' reaction is part of what a drill measures.
//!
//! Consumers never join their group (the mock keeps joined members forever, see
//! ../shared/BROKERS.md): they assign partitions by hand, start from the group's committed offsets
//! on the cluster they attach to, and commit as they go. On a cluster that is not the
//! topics' home they read both the cluster's own topics (new writes after a failover)
//! and the remote topics (history replicated before it), as the runbook's §4.1 says.

mod group;
mod ledger;
mod producer;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

use group::GroupLoop;
pub use ledger::{
    Attachment, ConsumedRecord, FailedSend, GroupReport, Ledger, LedgerReport, ProducedRecord,
    StartPoint,
};
use producer::ProducerLoop;

use super::client::{self, assign_only_consumer};
use super::replicator::Endpoint;
use crate::mm2::ReplicationPolicy;

/// The header carrying a record's global sequence number (decimal ASCII).
pub const SEQ_HEADER: &str = "kdr-seq";
/// The header naming the producer that wrote a record (decimal ASCII).
pub const PRODUCER_HEADER: &str = "kdr-producer";

/// How the workload behaves. Build with [`WorkloadConfig::new`] and adjust the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Original topic names producers write to.
    pub topics: Vec<String>,
    /// Consumer groups, one consumer each.
    pub groups: Vec<String>,
    /// The clusters the indirection may point at: labels the ledger and tells which
    /// remote topics exist there.
    pub clusters: Vec<Endpoint>,
    /// How remote topics are named.
    pub policy: ReplicationPolicy,
    /// Holds the active cluster's bootstrap string; missing or empty means "none".
    pub indirection_file: PathBuf,
    /// While this file exists, producers do not produce.
    pub pause_file: PathBuf,
    /// Consumers' own indirection file; `None`: they follow `indirection_file` too.
    pub consumer_indirection_file: Option<PathBuf>,
    /// Records per second, all producers together.
    pub rate_per_sec: u32,
    /// Producer threads.
    pub producers: u32,
    /// Distinct record keys.
    pub keys: u32,
    /// Commit after this many records...
    pub commit_every_records: u64,
    /// ...or this long after the first uncommitted record.
    pub commit_interval: Duration,
    /// How often the indirection and pause files are looked at.
    pub check_interval: Duration,
    /// After moving to another cluster, how long a group waits for committed offsets to
    /// appear there (kdr's `translate_offsets` may run after `repoint`) before it starts
    /// from the beginning, as `auto.offset.reset=earliest` would.
    pub reattach_wait_for_offsets: Duration,
    /// How long a produced record may wait for its acknowledgement.
    pub delivery_timeout: Duration,
    /// The first sequence number: two workloads on one world number their records apart.
    pub first_seq: u64,
}

impl WorkloadConfig {
    /// 200 records/s from one producer over 16 keys; commits every 50 records or 200 ms;
    /// files checked every 20 ms; 5 s grace for translated offsets after a move.
    #[must_use]
    pub fn new(
        topics: Vec<String>,
        groups: Vec<String>,
        clusters: Vec<Endpoint>,
        policy: ReplicationPolicy,
        indirection_file: PathBuf,
        pause_file: PathBuf,
    ) -> Self {
        Self {
            topics,
            groups,
            clusters,
            policy,
            indirection_file,
            pause_file,
            consumer_indirection_file: None,
            rate_per_sec: 200,
            producers: 1,
            keys: 16,
            commit_every_records: 50,
            commit_interval: Duration::from_millis(200),
            check_interval: Duration::from_millis(20),
            reattach_wait_for_offsets: Duration::from_secs(5),
            delivery_timeout: Duration::from_secs(5),
            first_seq: 0,
        }
    }

    /// The ledger label of a bootstrap string: the alias of a known cluster, else the
    /// string itself.
    #[must_use]
    pub fn label(&self, bootstrap_servers: &str) -> String {
        self.clusters
            .iter()
            .find(|c| c.bootstrap_servers == bootstrap_servers)
            .map_or_else(|| bootstrap_servers.to_owned(), |c| c.alias.clone())
    }

    /// The topics a consumer reads on the cluster labelled `label`: the original topics,
    /// and each one's remote copy from every other known cluster (under the Identity
    /// policy these are the same names, listed once).
    #[must_use]
    pub fn topics_on(&self, label: &str) -> Vec<String> {
        let mut topics = self.topics.clone();
        for other in self.clusters.iter().filter(|c| c.alias != label) {
            for topic in &self.topics {
                let remote = self.policy.format_remote_topic(&other.alias, topic);
                if !topics.contains(&remote) {
                    topics.push(remote);
                }
            }
        }
        topics
    }
}

/// A snapshot of what the workload is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadStats {
    /// Records acknowledged.
    pub acknowledged: u64,
    /// Records the producers gave up on (not acknowledged; never in the ledger).
    pub produce_failed: u64,
    /// Records consumed, all groups.
    pub consumed: u64,
    /// Per producer: the cluster it writes to, if any.
    pub producer_clusters: Vec<Option<String>>,
    /// Per producer: whether it sees the pause file and has nothing in flight.
    pub producer_paused: Vec<bool>,
    /// Per group.
    pub groups: BTreeMap<String, GroupStats>,
    /// Errors seen.
    pub errors: u64,
    /// The newest error.
    pub last_error: Option<String>,
}

impl WorkloadStats {
    /// Whether every producer has seen the pause file and has nothing in flight: from
    /// now on nothing more is acknowledged until the file goes away.
    #[must_use]
    pub fn producers_paused(&self) -> bool {
        !self.producer_paused.is_empty() && self.producer_paused.iter().all(|p| *p)
    }
}

/// What one group's consumer is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// The cluster it is attached to.
    pub cluster: Option<String>,
    /// Attachment number.
    pub session: u32,
    /// Partitions assigned.
    pub assigned: usize,
    /// Records consumed in the current attachment.
    pub consumed_in_session: u64,
    /// Whether it is waiting for committed offsets after a move.
    pub waiting_for_offsets: bool,
    /// Commits sent.
    pub commits: u64,
    /// The (topic, partition)s committed in the current attachment: what MM2 checkpoints.
    pub committed: BTreeSet<(String, i32)>,
}

struct Shared {
    config: WorkloadConfig,
    stop: AtomicBool,
    seq: AtomicU64,
    ledger: Mutex<Ledger>,
    stats: Mutex<WorkloadStats>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// A record the producers gave up on, in the ledger with when it was sent.
    fn failed(&self, sent_at_us: u64) {
        lock(&self.ledger).failed.push(ledger::FailedSend {
            sent_at_us,
            failed_at_us: now_us(),
        });
    }

    fn error(&self, context: &str, error: impl fmt::Display) {
        let mut stats = lock(&self.stats);
        stats.errors += 1;
        stats.last_error = Some(format!("{context}: {error}"));
    }

    /// The bootstrap string in the indirection file, if any.
    fn active_cluster(&self) -> Option<String> {
        read_indirection(&self.config.indirection_file)
    }

    /// Where consumers go: their own indirection file when there is one, as when a runbook
    /// moves producers first and consumers only once their offsets are translated.
    fn consumers_cluster(&self) -> Option<String> {
        match &self.config.consumer_indirection_file {
            Some(path) => read_indirection(path),
            None => self.active_cluster(),
        }
    }
}

/// Microseconds since the Unix epoch: the ledger's clock, comparable with the incident log's.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn read_indirection(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Running producers and consumers. Dropping it stops them.
pub struct Workload {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workload")
            .field("topics", &self.shared.config.topics)
            .field("groups", &self.shared.config.groups)
            .finish_non_exhaustive()
    }
}

/// Why the workload could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A thread could not be spawned.
    #[error("failed to spawn a workload thread")]
    Spawn,
}

impl Workload {
    /// Starts the producer threads and one consumer thread per group.
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub fn start(config: WorkloadConfig) -> Result<Self, WorkloadError> {
        let producers = config.producers.max(1);
        let groups = config.groups.clone();
        let first_seq = config.first_seq;
        let shared = Arc::new(Shared {
            stats: Mutex::new(WorkloadStats {
                producer_clusters: vec![None; producers as usize],
                producer_paused: vec![false; producers as usize],
                ..WorkloadStats::default()
            }),
            config,
            stop: AtomicBool::new(false),
            seq: AtomicU64::new(first_seq),
            ledger: Mutex::new(Ledger::default()),
        });
        let mut workload = Self {
            shared: Arc::clone(&shared),
            threads: Vec::new(),
        };
        for id in 0..producers {
            let shared = Arc::clone(&shared);
            workload.spawn(format!("kdr-producer-{id}"), move || {
                ProducerLoop::new(id, shared).run();
            })?;
        }
        for group in groups {
            let shared = Arc::clone(&shared);
            workload.spawn(format!("kdr-group-{group}"), move || {
                GroupLoop::new(group, shared).run();
            })?;
        }
        Ok(workload)
    }

    fn spawn(
        &mut self,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<(), WorkloadError> {
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(body)
            .map_err(|_| WorkloadError::Spawn)?;
        self.threads.push(handle);
        Ok(())
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &WorkloadConfig {
        &self.shared.config
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> WorkloadStats {
        lock(&self.shared.stats).clone()
    }

    /// A snapshot of the ledger.
    #[must_use]
    pub fn ledger(&self) -> Ledger {
        lock(&self.shared.ledger).clone()
    }

    /// Stops every thread (producers flush what is in flight, consumers commit what they
    /// processed, both bounded) and returns the final ledger.
    pub fn stop(mut self) -> Ledger {
        self.halt();
        self.ledger()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                self.shared.error("workload thread", "panicked");
            }
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Sequence numbers of the records in `topics` on a cluster, read from the beginning to
/// the current end: which acknowledged records made it there (replication checks).
///
/// # Errors
/// The cluster did not answer or a partition could not be read within `timeout`.
pub fn seqs_on(
    bootstrap_servers: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<BTreeSet<u64>, KafkaError> {
    let deadline = Instant::now() + timeout;
    let consumer = assign_only_consumer(
        bootstrap_servers,
        "kdr-rehearsal-scan",
        "kdr-rehearsal-scan",
    )?;
    let counts = client::partition_counts(&consumer, topics, timeout)?;
    let mut seqs = BTreeSet::new();
    for (topic, count) in counts {
        for partition in 0..count {
            let left = deadline.saturating_duration_since(Instant::now());
            for record in client::read_partition(bootstrap_servers, &topic, partition, left)? {
                if let Some(seq) = record.header(SEQ_HEADER).and_then(parse_u64) {
                    seqs.insert(seq);
                }
            }
        }
    }
    Ok(seqs)
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}
