//! The consumer threads: one per group, attached to whichever cluster the consumers'
//! indirection names, starting from the group's committed offsets there, every record read
//! recorded in the ledger.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{
    Attachment, ConsumedRecord, GroupStats, SEQ_HEADER, Shared, StartPoint, lock, parse_u64,
};
use crate::rehearsal::client::{self, CALL_TIMEOUT, assign_only_consumer, sleep_unless};

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

pub(super) struct GroupLoop {
    group: String,
    shared: Arc<Shared>,
    current: Option<Attached>,
    sessions: u32,
}

impl GroupLoop {
    pub(super) fn new(group: String, shared: Arc<Shared>) -> Self {
        Self {
            group,
            shared,
            current: None,
            sessions: 0,
        }
    }

    pub(super) fn run(mut self) {
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
            s.committed.clear();
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
                        read_at_us: super::now_us(),
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
                let mut stats = lock(&self.shared.stats);
                let group = stats.groups.entry(self.group.clone()).or_default();
                group.commits += 1;
                group.committed.extend(attached.uncommitted.keys().cloned());
                drop(stats);
                attached.committed.append(&mut attached.uncommitted);
                attached.uncommitted_records = 0;
                attached.first_uncommitted = None;
            }
            Err(error) => self.shared.error("commit", error),
        }
    }
}
