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
//! BROKERS.md): they assign partitions by hand, start from the group's committed offsets
//! on the cluster they attach to, and commit as they go. On a cluster that is not the
//! topics' home they read both the cluster's own topics (new writes after a failover)
//! and the remote topics (history replicated before it), as the runbook's §4.1 says.

mod ledger;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

pub use ledger::{
    Attachment, ConsumedRecord, GroupReport, Ledger, LedgerReport, ProducedRecord, StartPoint,
};

use super::client::{self, CALL_TIMEOUT, assign_only_consumer, sleep_unless};
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
        let shared = Arc::new(Shared {
            stats: Mutex::new(WorkloadStats {
                producer_clusters: vec![None; producers as usize],
                producer_paused: vec![false; producers as usize],
                ..WorkloadStats::default()
            }),
            config,
            stop: AtomicBool::new(false),
            seq: AtomicU64::new(0),
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

/// Producer context: acknowledged records go straight into the ledger.
struct LedgerContext {
    shared: Arc<Shared>,
    cluster: String,
    producer: u32,
}

impl ClientContext for LedgerContext {}

impl ProducerContext for LedgerContext {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Box<u64>) {
        match result {
            Ok(message) => {
                lock(&self.shared.ledger).produced.push(ProducedRecord {
                    cluster: self.cluster.clone(),
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    seq: *seq,
                    producer: self.producer,
                });
                lock(&self.shared.stats).acknowledged += 1;
            }
            Err((error, _)) => {
                let mut stats = lock(&self.shared.stats);
                stats.produce_failed += 1;
                stats.errors += 1;
                stats.last_error = Some(format!("produce: {error}"));
            }
        }
    }
}

struct ProducerLoop {
    id: u32,
    shared: Arc<Shared>,
    current: Option<(String, BaseProducer<LedgerContext>)>,
    paused: bool,
}

impl ProducerLoop {
    fn new(id: u32, shared: Arc<Shared>) -> Self {
        Self {
            id,
            shared,
            current: None,
            paused: false,
        }
    }

    fn run(mut self) {
        let config = self.shared.config.clone();
        let rate = f64::from(config.rate_per_sec) / f64::from(config.producers.max(1));
        // At most this many records at once, so a stall is not followed by a burst.
        let max_burst = (rate / 10.0).max(1.0);
        let mut window = Instant::now();
        let mut sent_in_window = 0.0_f64;
        let mut next_check = Instant::now();
        while !self.shared.stopping() {
            if Instant::now() >= next_check {
                self.follow_indirection();
                self.paused = config.pause_file.exists();
                next_check = Instant::now() + config.check_interval;
            }
            let Some((_, producer)) = &self.current else {
                self.set_paused_stat(false);
                sleep_unless(config.check_interval, || self.shared.stopping());
                window = Instant::now();
                sent_in_window = 0.0;
                continue;
            };
            producer.poll(Duration::ZERO);
            if self.paused || rate <= 0.0 {
                let drained = producer.in_flight_count() == 0;
                self.set_paused_stat(self.paused && drained);
                sleep_unless(config.check_interval.min(Duration::from_millis(5)), || {
                    self.shared.stopping()
                });
                window = Instant::now();
                sent_in_window = 0.0;
                continue;
            }
            self.set_paused_stat(false);
            let due = (window.elapsed().as_secs_f64() * rate - sent_in_window).min(max_burst);
            let mut sent = 0.0;
            while sent + 1.0 <= due {
                self.send_one(producer);
                sent += 1.0;
            }
            sent_in_window += sent;
            if sent_in_window > rate * 10.0 {
                // Keep the float arithmetic exact over long runs.
                window = Instant::now();
                sent_in_window = 0.0;
            }
            let gap = Duration::from_secs_f64((1.0 / rate).min(1.0));
            sleep_unless(gap.min(config.check_interval), || self.shared.stopping());
        }
        if let Some((_, producer)) = self.current.take()
            && producer.flush(Duration::from_secs(2)).is_err()
        {
            self.shared
                .error("flush at stop", "records still in flight");
        }
    }

    fn set_paused_stat(&self, paused: bool) {
        if let Some(flag) = lock(&self.shared.stats)
            .producer_paused
            .get_mut(self.id as usize)
        {
            *flag = paused;
        }
    }

    /// Moves to the cluster named in the indirection file, if it changed: flushes the old
    /// producer (bounded; records it cannot deliver are not acknowledged, so not in the
    /// ledger) and connects a new one.
    fn follow_indirection(&mut self) {
        let wanted = self.shared.active_cluster();
        if self.current.as_ref().map(|(b, _)| b) == wanted.as_ref() {
            return;
        }
        if let Some((_, old)) = self.current.take() {
            let _ = old.flush(Duration::from_secs(1));
        }
        let Some(bootstrap) = wanted else {
            lock(&self.shared.stats).producer_clusters[self.id as usize] = None;
            return;
        };
        let label = self.shared.config.label(&bootstrap);
        let context = LedgerContext {
            shared: Arc::clone(&self.shared),
            cluster: label.clone(),
            producer: self.id,
        };
        let created = client::base_config(&bootstrap, &format!("kdr-workload-{}", self.id))
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set(
                "message.timeout.ms",
                self.shared
                    .config
                    .delivery_timeout
                    .as_millis()
                    .max(1)
                    .to_string(),
            )
            .create_with_context(context);
        match created {
            Ok(producer) => {
                lock(&self.shared.stats).producer_clusters[self.id as usize] = Some(label);
                self.current = Some((bootstrap, producer));
            }
            Err(error) => self.shared.error("create a producer", error),
        }
    }

    fn send_one(&self, producer: &BaseProducer<LedgerContext>) {
        let config = &self.shared.config;
        if config.topics.is_empty() {
            return;
        }
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let topic_index = usize::try_from(seq % config.topics.len() as u64).unwrap_or(0);
        let topic = &config.topics[topic_index];
        let key = format!("key-{}", seq % u64::from(config.keys.max(1)));
        let value = format!("seq={seq} producer={}", self.id);
        let seq_text = seq.to_string();
        let producer_text = self.id.to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: SEQ_HEADER,
                value: Some(seq_text.as_bytes()),
            })
            .insert(Header {
                key: PRODUCER_HEADER,
                value: Some(producer_text.as_bytes()),
            });
        let record = BaseRecord::with_opaque_to(topic, Box::new(seq))
            .key(&key)
            .payload(&value)
            .headers(headers);
        if let Err((error, _)) = producer.send(record) {
            let mut stats = lock(&self.shared.stats);
            stats.produce_failed += 1;
            stats.errors += 1;
            stats.last_error = Some(format!("produce: {error}"));
        }
    }
}

/// A group's consumer attached to one cluster.
struct Attached {
    bootstrap: String,
    label: String,
    session: u32,
    consumer: BaseConsumer,
    /// Every assigned partition and the next offset to read.
    positions: BTreeMap<(String, i32), Offset>,
    /// Partitions read since the last commit, with the offset to commit.
    uncommitted: BTreeMap<(String, i32), i64>,
    uncommitted_records: u64,
    first_uncommitted: Option<Instant>,
    attached_at: Instant,
    next_discovery: Instant,
    /// Everything committed so far in this attachment.
    committed: BTreeMap<(String, i32), i64>,
}

struct GroupLoop {
    group: String,
    shared: Arc<Shared>,
    current: Option<Attached>,
    sessions: u32,
}

impl GroupLoop {
    fn new(group: String, shared: Arc<Shared>) -> Self {
        Self {
            group,
            shared,
            current: None,
            sessions: 0,
        }
    }

    fn run(mut self) {
        let check_interval = self.shared.config.check_interval;
        let mut next_check = Instant::now();
        while !self.shared.stopping() {
            if Instant::now() >= next_check {
                self.follow_indirection();
                next_check = Instant::now() + check_interval;
            }
            if self.current.is_none() {
                sleep_unless(check_interval, || self.shared.stopping());
                continue;
            }
            self.discover();
            self.consume(check_interval.min(Duration::from_millis(20)));
            self.maybe_commit(false);
        }
        self.detach();
    }

    fn stats<R>(&self, update: impl FnOnce(&mut GroupStats) -> R) -> R {
        let mut stats = lock(&self.shared.stats);
        update(stats.groups.entry(self.group.clone()).or_default())
    }

    fn follow_indirection(&mut self) {
        let wanted = self.shared.consumers_cluster();
        if self.current.as_ref().map(|a| &a.bootstrap) == wanted.as_ref() {
            return;
        }
        self.detach();
        let Some(bootstrap) = wanted else {
            return;
        };
        let label = self.shared.config.label(&bootstrap);
        let consumer = match assign_only_consumer(
            &bootstrap,
            &format!("kdr-workload-{}", self.group),
            &self.group,
        ) {
            Ok(consumer) => consumer,
            Err(error) => {
                self.shared.error("create a consumer", error);
                return;
            }
        };
        self.sessions += 1;
        let session = self.sessions;
        self.stats(|s| {
            s.cluster = Some(label.clone());
            s.session = session;
            s.assigned = 0;
            s.consumed_in_session = 0;
            s.waiting_for_offsets = false;
        });
        self.current = Some(Attached {
            bootstrap,
            label,
            session,
            consumer,
            positions: BTreeMap::new(),
            uncommitted: BTreeMap::new(),
            uncommitted_records: 0,
            first_uncommitted: None,
            attached_at: Instant::now(),
            next_discovery: Instant::now(),
            committed: BTreeMap::new(),
        });
    }

    /// Commits what was processed, waits (bounded) until the broker shows it, and drops
    /// the consumer. On a dead cluster the wait simply runs out: the records read since
    /// the last commit will be read again elsewhere, which the ledger counts.
    fn detach(&mut self) {
        if self.current.is_none() {
            return;
        }
        self.maybe_commit(true);
        if let Some(attached) = &self.current {
            // No more records: anything polled from here on would go unrecorded.
            let _ = attached.consumer.unassign();
            let mut list = TopicPartitionList::new();
            for ((topic, partition), next) in &attached.committed {
                let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*next));
            }
            if list.count() > 0
                && !client::wait_committed(&attached.consumer, &list, Duration::from_secs(1))
            {
                self.shared.error(
                    &format!("confirm the last commit of {}", self.group),
                    "not visible within 1 s",
                );
            }
        }
        // Closing a consumer whose cluster is down can wait for the coordinator a long time;
        // nothing is left to record, so let it close on its own thread and move on.
        if let Some(attached) = self.current.take() {
            let _ = std::thread::Builder::new()
                .name("kdr-close".to_owned())
                .spawn(move || drop(attached));
        }
        self.stats(|s| {
            s.cluster = None;
            s.assigned = 0;
        });
    }

    /// Looks for partitions of this cluster's topics not assigned yet and assigns them at
    /// the group's committed offsets, or at the beginning. After a move, waits a while
    /// for committed offsets to appear before falling back to the beginning.
    fn discover(&mut self) {
        let Some(attached) = &mut self.current else {
            return;
        };
        if Instant::now() < attached.next_discovery {
            return;
        }
        attached.next_discovery = Instant::now() + Duration::from_secs(1);
        let topics = self.shared.config.topics_on(&attached.label);
        let counts = match client::partition_counts(&attached.consumer, &topics, CALL_TIMEOUT) {
            Ok(counts) => counts,
            Err(error) => {
                self.shared.error("look up partitions", error);
                return;
            }
        };
        let mut new = TopicPartitionList::new();
        for (topic, count) in &counts {
            for partition in 0..*count {
                if !attached.positions.contains_key(&(topic.clone(), partition)) {
                    new.add_partition(topic, partition);
                }
            }
        }
        if new.count() == 0 {
            return;
        }
        let committed = match attached.consumer.committed_offsets(new, CALL_TIMEOUT) {
            Ok(committed) => committed,
            Err(error) => {
                attached.next_discovery = Instant::now() + Duration::from_millis(200);
                self.shared
                    .error(&format!("fetch committed offsets of {}", self.group), error);
                return;
            }
        };
        let starts: Vec<(String, i32, StartPoint)> = committed
            .elements()
            .iter()
            .map(|elem| {
                let start = client::committed_offset(elem)
                    .map_or(StartPoint::Earliest, StartPoint::Committed);
                (elem.topic().to_owned(), elem.partition(), start)
            })
            .collect();
        let moved = attached.session > 1 && attached.positions.is_empty();
        let none_committed = starts.iter().all(|(_, _, s)| *s == StartPoint::Earliest);
        let grace = self.shared.config.reattach_wait_for_offsets;
        if moved && none_committed && attached.attached_at.elapsed() < grace {
            attached.next_discovery = Instant::now() + Duration::from_millis(100);
            let group = self.group.clone();
            let mut stats = lock(&self.shared.stats);
            stats.groups.entry(group).or_default().waiting_for_offsets = true;
            return;
        }
        for (topic, partition, start) in &starts {
            let offset = match start {
                StartPoint::Committed(offset) => Offset::Offset(*offset),
                StartPoint::Earliest => Offset::Beginning,
            };
            attached
                .positions
                .insert((topic.clone(), *partition), offset);
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in &attached.positions {
            if list
                .add_partition_offset(topic, *partition, *offset)
                .is_err()
            {
                continue;
            }
        }
        if let Err(error) = attached.consumer.assign(&list) {
            self.shared.error("assign partitions", error);
            for (topic, partition, _) in &starts {
                attached.positions.remove(&(topic.clone(), *partition));
            }
            return;
        }
        let assigned = attached.positions.len();
        lock(&self.shared.ledger).attachments.push(Attachment {
            group: self.group.clone(),
            cluster: attached.label.clone(),
            session: attached.session,
            partitions: starts,
        });
        self.stats(|s| {
            s.assigned = assigned;
            s.waiting_for_offsets = false;
        });
    }

    /// Reads what is there (waiting up to `wait` for the first record).
    fn consume(&mut self, wait: Duration) {
        let Some(attached) = &mut self.current else {
            return;
        };
        if attached.positions.is_empty() {
            sleep_unless(wait, || self.shared.stopping());
            return;
        }
        let mut records = Vec::new();
        let mut errors = 0;
        let mut wait = wait;
        for _ in 0..1_000 {
            match attached.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    let seq = message
                        .headers()
                        .and_then(|headers| {
                            headers
                                .iter()
                                .find(|h| h.key == SEQ_HEADER)
                                .and_then(|h| h.value)
                        })
                        .and_then(parse_u64);
                    let key = (message.topic().to_owned(), message.partition());
                    let next = message.offset() + 1;
                    attached.positions.insert(key.clone(), Offset::Offset(next));
                    attached.uncommitted.insert(key, next);
                    attached.uncommitted_records += 1;
                    attached.first_uncommitted.get_or_insert_with(Instant::now);
                    records.push(ConsumedRecord {
                        group: self.group.clone(),
                        cluster: attached.label.clone(),
                        topic: message.topic().to_owned(),
                        partition: message.partition(),
                        offset: message.offset(),
                        seq,
                        session: attached.session,
                    });
                }
                // Keep draining: a cluster that was down leaves many error events queued.
                Some(Err(error)) => {
                    self.shared.error("consume", error);
                    errors += 1;
                }
            }
            wait = Duration::ZERO;
        }
        if errors > 0 && records.is_empty() {
            sleep_unless(Duration::from_millis(50), || self.shared.stopping());
        }
        if records.is_empty() {
            return;
        }
        let count = records.len() as u64;
        lock(&self.shared.ledger).consumed.extend(records);
        let mut stats = lock(&self.shared.stats);
        stats.consumed += count;
        stats
            .groups
            .entry(self.group.clone())
            .or_default()
            .consumed_in_session += count;
    }

    /// Commits the processed positions asynchronously when enough records or time have
    /// gone by (or always, with `force`). librdkafka reports nothing back for these;
    /// [`detach`](Self::detach) reads the last one back.
    fn maybe_commit(&mut self, force: bool) {
        let config = &self.shared.config;
        let Some(attached) = &mut self.current else {
            return;
        };
        let Some(first) = attached.first_uncommitted else {
            return;
        };
        let due = force
            || attached.uncommitted_records >= config.commit_every_records
            || first.elapsed() >= config.commit_interval;
        if !due {
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in &attached.uncommitted {
            if list
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .is_err()
            {
                continue;
            }
        }
        match attached.consumer.commit(&list, CommitMode::Async) {
            Ok(()) => {
                attached.committed.append(&mut attached.uncommitted);
                attached.uncommitted_records = 0;
                attached.first_uncommitted = None;
                let group = self.group.clone();
                lock(&self.shared.stats)
                    .groups
                    .entry(group)
                    .or_default()
                    .commits += 1;
            }
            Err(error) => self.shared.error("commit", error),
        }
    }
}
