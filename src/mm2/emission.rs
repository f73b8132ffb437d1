//! When MM2 writes an offset sync (SPEC §3): `MirrorSourceTask` and `OffsetSyncWriter`
//! since 3.7.0, with the "+1"-aware staleness rule of KAFKA-14797.
//!
//! Syncs are sparse on purpose, and their spacing bounds how far a translated checkpoint
//! can lag the real position (the "+1" rule in [`super::translation`]). kdr models the
//! emission rules to explain and bound that lag: with `offset.lag.max = 100` a failed-over
//! group re-reads at most about 100 records per partition, plus whatever was produced
//! since the last periodic flush.
//!
//! What is modelled: the per-partition decision (four immediate conditions), the
//! "delayed" map promoted on every task commit (KAFKA-15906), the pending queue with one
//! entry per partition in first-queued order (Java's `LinkedHashMap`), and the 10
//! in-flight permits where syncs that find no permit stay pending (KAFKA-14610). What is
//! not modelled: the producer itself, `emit.offset-syncs.enabled` (a disabled writer
//! simply emits nothing), and the pre-3.4.1 extrapolating rule.

use std::collections::HashMap;

use super::codec::OffsetSync;

/// How many offset syncs MM2 lets the producer have outstanding at once.
pub const MAX_OUTSTANDING_OFFSET_SYNCS: usize = 10;

/// `offset.lag.max`: how far (in downstream offsets) a translation may fall behind before
/// MM2 writes a sync immediately instead of waiting for the next commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OffsetLagMax(i64);

impl OffsetLagMax {
    /// MM2's default, 100.
    pub const DEFAULT: Self = Self(100);

    /// Wraps a configured value. MM2 does not validate it: 0 or less makes every record
    /// "too stale", i.e. one sync per replicated record.
    #[must_use]
    pub const fn new(value: i64) -> Self {
        Self(value)
    }

    /// The configured value.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl Default for OffsetLagMax {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which of the four immediate-sync conditions held for one replicated record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncTriggers {
    /// No sync yet for this partition in the task's lifetime.
    pub first_sync: bool,
    /// `downstream - (last_sync_downstream + 1) >= offset.lag.max`: the "+1" translation
    /// of the last sync would now lag by at least the limit.
    pub lag_reached: bool,
    /// `upstream - previous_upstream != 1`: a gap (compaction, transaction markers,
    /// restart, seek), across which translation cannot be trusted.
    pub upstream_gap: bool,
    /// `downstream < previous_downstream`: the target partition was truncated or
    /// recreated.
    pub downstream_rewind: bool,
}

impl SyncTriggers {
    /// Whether any condition asks for an immediate sync.
    #[must_use]
    pub fn any(self) -> bool {
        self.first_sync || self.lag_reached || self.upstream_gap || self.downstream_rewind
    }
}

/// Java's `PartitionState`: what MM2 remembers about one source partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSyncState {
    /// Upstream offset of the previous replicated record, -1 before the first.
    pub previous_upstream: i64,
    /// Downstream offset of the previous replicated record, -1 before the first.
    pub previous_downstream: i64,
    /// Downstream offset of the last immediate sync, -1 before the first.
    pub last_sync_downstream: i64,
}

impl Default for PartitionSyncState {
    fn default() -> Self {
        Self {
            previous_upstream: -1,
            previous_downstream: -1,
            last_sync_downstream: -1,
        }
    }
}

impl PartitionSyncState {
    /// Records one acknowledged record and says which immediate conditions held.
    ///
    /// Java's `shouldSyncOffsets` flag is reset right after an immediate sync is queued,
    /// so in a sequential model the answer is simply whether any condition held.
    /// Differences use wrapping arithmetic, as Java's `long` does.
    pub fn update(
        &mut self,
        upstream: i64,
        downstream: i64,
        max_lag: OffsetLagMax,
    ) -> SyncTriggers {
        let triggers = SyncTriggers {
            first_sync: self.last_sync_downstream == -1,
            lag_reached: downstream.wrapping_sub(self.last_sync_downstream.wrapping_add(1))
                >= max_lag.get(),
            upstream_gap: upstream.wrapping_sub(self.previous_upstream) != 1,
            downstream_rewind: downstream < self.previous_downstream,
        };
        if triggers.any() {
            self.last_sync_downstream = downstream;
        }
        self.previous_upstream = upstream;
        self.previous_downstream = downstream;
        triggers
    }
}

/// What MM2 does with the sync of one replicated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emit {
    /// Queued as pending: sent as soon as an in-flight permit is free.
    Immediate(OffsetSync),
    /// Kept in the delayed map, replacing the partition's earlier delayed sync; sent at
    /// the next task commit unless a later sync supersedes it.
    Delayed,
}

/// One source task's offset-sync writer.
#[derive(Debug, Clone, Default)]
pub struct OffsetSyncEmitter {
    max_offset_lag: OffsetLagMax,
    partitions: HashMap<(String, i32), PartitionSyncState>,
    pending: Vec<OffsetSync>,
    delayed: Vec<OffsetSync>,
    in_flight: usize,
}

impl OffsetSyncEmitter {
    /// A writer with no history, as at task start.
    #[must_use]
    pub fn new(max_offset_lag: OffsetLagMax) -> Self {
        Self {
            max_offset_lag,
            ..Self::default()
        }
    }

    /// Java's `maybeQueueOffsetSyncs`, run when the target acknowledges a replicated
    /// record. The returned decision has already been applied to the queues; call
    /// [`fire_pending`](Self::fire_pending) to send, as `commitRecord` does.
    pub fn on_replicated(
        &mut self,
        topic: &str,
        partition: i32,
        upstream: i64,
        downstream: i64,
    ) -> Emit {
        let state = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_default();
        let sync = OffsetSync {
            topic: topic.to_owned(),
            partition,
            upstream_offset: upstream,
            downstream_offset: downstream,
        };
        if state
            .update(upstream, downstream, self.max_offset_lag)
            .any()
        {
            self.delayed
                .retain(|d| (d.topic.as_str(), d.partition) != (topic, partition));
            put_keeping_position(&mut self.pending, sync.clone());
            Emit::Immediate(sync)
        } else {
            put_keeping_position(&mut self.delayed, sync);
            Emit::Delayed
        }
    }

    /// Java's `promoteDelayedOffsetSyncs`, run on every task commit: moves all delayed
    /// syncs to the pending queue and returns them. Follow with
    /// [`fire_pending`](Self::fire_pending), as `commit()` does.
    pub fn take_delayed(&mut self) -> Vec<OffsetSync> {
        let promoted = std::mem::take(&mut self.delayed);
        for sync in &promoted {
            put_keeping_position(&mut self.pending, sync.clone());
        }
        promoted
    }

    /// Java's `firePendingOffsetSyncs`: sends pending syncs in queue order while permits
    /// are free and returns what was sent. Syncs without a permit stay pending; before
    /// 3.5.0 they were dropped instead.
    pub fn fire_pending(&mut self) -> Vec<OffsetSync> {
        let free = MAX_OUTSTANDING_OFFSET_SYNCS.saturating_sub(self.in_flight);
        let count = free.min(self.pending.len());
        let sent: Vec<OffsetSync> = self.pending.drain(..count).collect();
        self.in_flight += sent.len();
        sent
    }

    /// The producer acknowledged (or failed) one sent sync: its permit is free again.
    pub fn sync_completed(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Syncs waiting for a permit, in send order.
    #[must_use]
    pub fn pending(&self) -> &[OffsetSync] {
        &self.pending
    }

    /// Syncs waiting for the next commit.
    #[must_use]
    pub fn delayed(&self) -> &[OffsetSync] {
        &self.delayed
    }

    /// Syncs sent and not yet acknowledged.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The remembered state of one source partition, if it has replicated anything.
    #[must_use]
    pub fn partition_state(&self, topic: &str, partition: i32) -> Option<PartitionSyncState> {
        self.partitions.get(&(topic.to_owned(), partition)).copied()
    }
}

/// `LinkedHashMap.put`: replaces the partition's entry in place, or appends.
fn put_keeping_position(queue: &mut Vec<OffsetSync>, sync: OffsetSync) {
    match queue
        .iter_mut()
        .find(|q| q.topic == sync.topic && q.partition == sync.partition)
    {
        Some(slot) => *slot = sync,
        None => queue.push(sync),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn immediate_upstreams(
        emitter: &mut OffsetSyncEmitter,
        records: impl IntoIterator<Item = (i64, i64)>,
    ) -> Vec<i64> {
        records
            .into_iter()
            .filter_map(
                |(up, down)| match emitter.on_replicated("orders", 0, up, down) {
                    Emit::Immediate(sync) => Some(sync.upstream_offset),
                    Emit::Delayed => None,
                },
            )
            .collect()
    }

    #[test]
    fn contiguous_offsets_sync_every_101_records_with_default_lag() {
        let mut emitter = OffsetSyncEmitter::new(OffsetLagMax::default());
        let syncs = immediate_upstreams(&mut emitter, (1000..1500).map(|o| (o, o)));
        assert_eq!(syncs, [1000, 1101, 1202, 1303, 1404]);
        // A constant shift between clusters changes nothing.
        let mut shifted = OffsetSyncEmitter::new(OffsetLagMax::default());
        let syncs = immediate_upstreams(&mut shifted, (1000..1500).map(|o| (o, o - 700)));
        assert_eq!(syncs, [1000, 1101, 1202, 1303, 1404]);
    }

    #[test]
    fn each_condition_triggers_on_its_own() {
        let lag = OffsetLagMax::new(100);
        let mut state = PartitionSyncState::default();
        assert_eq!(
            state.update(10, 20, lag),
            SyncTriggers {
                first_sync: true,
                lag_reached: false,
                upstream_gap: true,
                downstream_rewind: false,
            }
        );
        // Contiguous, within the lag: nothing.
        assert_eq!(state.update(11, 21, lag), SyncTriggers::default());
        // Upstream gap only.
        assert_eq!(
            state.update(13, 22, lag),
            SyncTriggers {
                upstream_gap: true,
                ..SyncTriggers::default()
            }
        );
        assert_eq!(state.last_sync_downstream, 22);
        // Downstream rewind only (target truncated).
        assert_eq!(
            state.update(14, 5, lag),
            SyncTriggers {
                downstream_rewind: true,
                ..SyncTriggers::default()
            }
        );
        // Lag reached only: last sync down 5, so down 106 gives 106 - 6 = 100.
        assert_eq!(state.update(15, 105, lag), SyncTriggers::default());
        assert_eq!(
            state.update(16, 106, lag),
            SyncTriggers {
                lag_reached: true,
                ..SyncTriggers::default()
            }
        );
        assert_eq!(
            state,
            PartitionSyncState {
                previous_upstream: 16,
                previous_downstream: 106,
                last_sync_downstream: 106,
            }
        );
    }

    #[test]
    fn first_sync_triggers_alone_when_first_record_follows_offset_minus_one() {
        let mut state = PartitionSyncState::default();
        // upstream 0 after the initial -1 is contiguous, so only "first sync" holds.
        assert_eq!(
            state.update(0, 0, OffsetLagMax::DEFAULT),
            SyncTriggers {
                first_sync: true,
                ..SyncTriggers::default()
            }
        );
    }

    #[test]
    fn delayed_syncs_keep_the_latest_per_partition_until_commit() {
        let mut emitter = OffsetSyncEmitter::new(OffsetLagMax::DEFAULT);
        assert!(matches!(
            emitter.on_replicated("a", 0, 0, 0),
            Emit::Immediate(_)
        ));
        assert_eq!(emitter.fire_pending().len(), 1);
        emitter.sync_completed();
        for offset in 1..=5 {
            assert_eq!(emitter.on_replicated("a", 0, offset, offset), Emit::Delayed);
        }
        assert_eq!(emitter.delayed().len(), 1);
        let promoted = emitter.take_delayed();
        assert_eq!(promoted.len(), 1);
        assert_eq!(promoted[0].upstream_offset, 5);
        assert!(emitter.delayed().is_empty());
        let sent = emitter.fire_pending();
        assert_eq!(sent, promoted);
        // An immediate sync supersedes the partition's delayed one.
        assert_eq!(emitter.on_replicated("a", 0, 6, 6), Emit::Delayed);
        assert!(matches!(
            emitter.on_replicated("a", 0, 9, 9),
            Emit::Immediate(_)
        ));
        assert!(emitter.delayed().is_empty());
    }

    #[test]
    fn at_most_ten_in_flight_and_the_rest_stay_pending() {
        let mut emitter = OffsetSyncEmitter::new(OffsetLagMax::DEFAULT);
        for partition in 0..12 {
            assert!(matches!(
                emitter.on_replicated("t", partition, 0, 0),
                Emit::Immediate(_)
            ));
        }
        let sent = emitter.fire_pending();
        assert_eq!(sent.len(), 10);
        assert_eq!(
            sent.iter().map(|s| s.partition).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(emitter.pending().len(), 2);
        assert!(emitter.fire_pending().is_empty());
        emitter.sync_completed();
        let sent = emitter.fire_pending();
        assert_eq!(sent.iter().map(|s| s.partition).collect::<Vec<_>>(), [10]);
        assert_eq!(emitter.in_flight(), 10);
        assert_eq!(emitter.pending().len(), 1);
    }

    #[test]
    fn extreme_offsets_do_not_overflow() {
        // The differences wrap as Java's `long` does; each call's triggers and state are those
        // Java computes for the same numbers.
        let mut state = PartitionSyncState::default();
        let t = state.update(i64::MIN, i64::MAX, OffsetLagMax::new(i64::MIN));
        assert_eq!(
            t,
            SyncTriggers {
                first_sync: true,
                lag_reached: true,
                upstream_gap: true,
                downstream_rewind: false,
            }
        );
        assert_eq!(
            state,
            PartitionSyncState {
                previous_upstream: i64::MIN,
                previous_downstream: i64::MAX,
                last_sync_downstream: i64::MAX,
            }
        );
        // MIN - (MAX + 1) wraps to 0: not a lag; MAX - MIN wraps to -1: a gap.
        let t = state.update(i64::MAX, i64::MIN, OffsetLagMax::new(i64::MAX));
        assert_eq!(
            t,
            SyncTriggers {
                first_sync: false,
                lag_reached: false,
                upstream_gap: true,
                downstream_rewind: true,
            }
        );
        assert_eq!(
            state,
            PartitionSyncState {
                previous_upstream: i64::MAX,
                previous_downstream: i64::MIN,
                last_sync_downstream: i64::MIN,
            }
        );
        // MIN - MAX wraps to 1 (no gap) and MAX - (MIN + 1) to -2 (no lag): nothing triggers,
        // so the last sync stays where it was.
        let t = state.update(i64::MIN, i64::MAX, OffsetLagMax::DEFAULT);
        assert_eq!(t, SyncTriggers::default());
        assert!(!t.any());
        assert_eq!(
            state,
            PartitionSyncState {
                previous_upstream: i64::MIN,
                previous_downstream: i64::MAX,
                last_sync_downstream: i64::MIN,
            }
        );
    }
}
