//! MM2's offset translation: the `OffsetSyncStore` of Kafka trunk (SPEC §4.2), rebuilt
//! so kdr can predict, check and explain the checkpoints MM2 writes.
//!
//! Only the newest rules are modelled (3.7.1 / 3.8.0 and later): 64 slots per source
//! partition, the read-to-end gate, the KAFKA-15202 repair walk, and the "+1" lookup.
//! The slot contents are part of the contract, not an implementation detail: they decide
//! which group positions translate and how far behind the translation lands, so the
//! tests compare all 64 slots with the ones Kafka's own class produced.

use std::collections::{BTreeMap, HashMap};

use super::codec::OffsetSync;

/// Slots kept per source topic-partition: one per bit of a 64-bit offset, so that the
/// retained syncs can cover the whole offset range with exponentially growing gaps.
pub const SYNCS_PER_PARTITION: usize = 64;

/// One retained sync.
///
/// `id` stands in for Java's object identity: the repair walk compares `OffsetSync`
/// references with `==`, so two syncs with equal offsets that arrived separately are
/// still different entries. Each call to [`OffsetSyncStore::sync`] gets a fresh id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    id: u64,
    upstream: i64,
    downstream: i64,
}

/// The outcome of translating a group's upstream offset, with the reason when there is
/// no usable answer.
///
/// MM2 flattens this into an `OptionalLong` (see
/// [`OffsetSyncStore::translate_downstream`]); kdr keeps the reason so an operator can be
/// told *why* a group has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// The offset-syncs topic has not been read to its end yet. MM2 declines to translate
    /// then, because a sync it has not seen yet could make the answer smaller.
    InitialReadIncomplete,
    /// No sync has been seen for this partition.
    NoSync,
    /// The group is behind every retained sync; MM2 emits no checkpoint (Java's `-1`).
    BehindOldestSync,
    /// The downstream offset MM2 would checkpoint.
    Translated(i64),
}

impl Translation {
    /// The same answer as Java's `OptionalLong`: `None` for empty, `Some(-1)` for "cannot
    /// translate accurately", otherwise the downstream offset.
    #[must_use]
    pub fn as_java(self) -> Option<i64> {
        match self {
            Self::InitialReadIncomplete | Self::NoSync => None,
            Self::BehindOldestSync => Some(-1),
            Self::Translated(offset) => Some(offset),
        }
    }
}

/// An in-memory replica of MM2's `OffsetSyncStore`.
///
/// Feed it the offset-syncs topic (partition 0) in log order with [`sync`](Self::sync),
/// call [`finish_initial_read`](Self::finish_initial_read) once the end offset captured
/// at start has been reached, then ask for translations.
#[derive(Debug, Clone)]
pub struct OffsetSyncStore {
    initialization_must_read_to_end: bool,
    read_to_end: bool,
    next_id: u64,
    partitions: HashMap<String, BTreeMap<i32, [Slot; SYNCS_PER_PARTITION]>>,
}

impl OffsetSyncStore {
    /// A store that has not read anything yet.
    ///
    /// `initialization_must_read_to_end` mirrors MM2's choice at task start: `true` when
    /// the checkpoints topic could not be loaded (then every sync read before the end
    /// replaces the whole index, so translations cannot go backwards relative to
    /// checkpoints written by an earlier task generation), `false` when it was loaded (then
    /// the historical syncs are indexed normally and older group positions translate).
    #[must_use]
    pub fn new(initialization_must_read_to_end: bool) -> Self {
        Self {
            initialization_must_read_to_end,
            read_to_end: false,
            next_id: 0,
            partitions: HashMap::new(),
        }
    }

    /// Marks the initial read-to-end as complete; translations are answered from now on.
    pub fn finish_initial_read(&mut self) {
        self.read_to_end = true;
    }

    /// Whether [`finish_initial_read`](Self::finish_initial_read) has been called.
    #[must_use]
    pub fn is_initial_read_complete(&self) -> bool {
        self.read_to_end
    }

    /// Applies one record of the offset-syncs topic.
    pub fn sync(&mut self, sync: &OffsetSync) {
        self.sync_offsets(
            &sync.topic,
            sync.partition,
            sync.upstream_offset,
            sync.downstream_offset,
        );
    }

    /// Applies one sync given by its parts.
    pub fn sync_offsets(&mut self, topic: &str, partition: i32, upstream: i64, downstream: i64) {
        let new = Slot {
            id: self.next_id,
            upstream,
            downstream,
        };
        self.next_id = self.next_id.wrapping_add(1);
        let only_load_last = !self.read_to_end && self.initialization_must_read_to_end;
        let partitions = self.partitions.entry(topic.to_owned()).or_default();
        match partitions.get_mut(&partition) {
            None => {
                partitions.insert(partition, [new; SYNCS_PER_PARTITION]);
            }
            Some(slots) => update_slots(slots, new, only_load_last),
        }
    }

    /// Translates a group's committed upstream offset, explaining a missing answer.
    #[must_use]
    pub fn translate(&self, topic: &str, partition: i32, group_offset: i64) -> Translation {
        if !self.read_to_end {
            return Translation::InitialReadIncomplete;
        }
        let Some(slots) = self.slots_ref(topic, partition) else {
            return Translation::NoSync;
        };
        let chosen = lookup(slots, group_offset);
        if chosen.upstream > group_offset {
            return Translation::BehindOldestSync;
        }
        // The "+1" rule. The sync pairs the offsets of one record. A group past it has
        // consumed that record, so its target position is at least `down + 1`; how many
        // of the upstream records in between reached the target (filters, compaction
        // holes, transaction markers) is unknown, and guessing higher could skip data.
        // MM2 therefore pins the answer to `down + 1` and accepts re-reading instead.
        // Java's long arithmetic wraps, so `wrapping_add` keeps results identical.
        let step = i64::from(chosen.upstream != group_offset);
        Translation::Translated(chosen.downstream.wrapping_add(step))
    }

    /// Java's `translateDownstream`: `None` when MM2's `OptionalLong` is empty (initial
    /// read incomplete, or no sync for the partition), `Some(-1)` when the group is behind
    /// every retained sync, otherwise the downstream offset.
    #[must_use]
    pub fn translate_downstream(
        &self,
        topic: &str,
        partition: i32,
        group_offset: i64,
    ) -> Option<i64> {
        self.translate(topic, partition, group_offset).as_java()
    }

    /// The 64 retained `(upstream, downstream)` pairs of a partition, newest first, or
    /// `None` when no sync has been seen for it.
    #[must_use]
    pub fn slots(&self, topic: &str, partition: i32) -> Option<[(i64, i64); SYNCS_PER_PARTITION]> {
        self.slots_ref(topic, partition)
            .map(|slots| slots.map(|slot| (slot.upstream, slot.downstream)))
    }

    fn slots_ref(&self, topic: &str, partition: i32) -> Option<&[Slot; SYNCS_PER_PARTITION]> {
        self.partitions.get(topic)?.get(&partition)
    }
}

/// Java's `updateSyncArray`, on a copy of the old slots kept as `original`.
fn update_slots(slots: &mut [Slot; SYNCS_PER_PARTITION], new: Slot, only_load_last: bool) {
    // An upstream rewind invalidates every older sync; during a gated initial read only
    // the last sync may be used, so that translations cannot go backwards.
    if only_load_last || new.upstream < slots[0].upstream {
        *slots = [new; SYNCS_PER_PARTITION];
        return;
    }
    let original = *slots;
    let mut replacement = new;
    let mut replacement_index = 0;
    // Invariant A: slot 0 is always the latest sync.
    slots[0] = new;
    for current in 1..SYNCS_PER_PARTITION {
        let previous = current - 1;
        // KAFKA-15202: prefer a value from the old array over the new sync, so that more
        // distinct syncs survive when syncs arrive unevenly spaced.
        loop {
            let old = original[replacement_index];
            // Too old to sit here; it may still fit further down.
            let is_recent = invariant_b(slots[previous], old, previous, current);
            // Too close to the previous value: it will never be valid further down.
            let separated_from_previous = invariant_c(slots[previous], old, previous);
            let separated_from_next = slots
                .get(current + 1)
                .is_none_or(|&next| invariant_c(old, next, current));
            let duplicate = original
                .get(replacement_index + 1)
                .is_some_and(|next| next.id == old.id);
            let promote = is_recent && separated_from_previous && separated_from_next;
            if promote {
                replacement = old;
            }
            let skip = duplicate || !separated_from_previous;
            if promote || skip {
                replacement_index += 1;
            }
            // The replacement index never passes `current`, so it stays in bounds.
            if !(replacement_index < current && skip) {
                break;
            }
        }
        if invariant_b(slots[previous], slots[current], previous, current) {
            // B holds here, so it holds for every later slot as well: the tail is kept.
            break;
        }
        slots[current] = replacement;
    }
}

/// Invariant B: `i.up <= j.up + 2^j - 2^i` for distinct syncs (older slots cannot be too
/// old). Java computes the bound in wrapping `long` arithmetic and treats a negative
/// bound as satisfied; `wrapping_*` reproduces that exactly.
fn invariant_b(i_sync: Slot, j_sync: Slot, i: usize, j: usize) -> bool {
    let bound = j_sync.upstream.wrapping_add(pow2(j)).wrapping_sub(pow2(i));
    i_sync.id == j_sync.id || bound < 0 || i_sync.upstream <= bound
}

/// Invariant C: `i.up >= j.up + 2^max(i-2, 0)` for distinct syncs (slots are spread
/// apart roughly exponentially).
fn invariant_c(i_sync: Slot, j_sync: Slot, i: usize) -> bool {
    let bound = j_sync.upstream.wrapping_add(pow2(i.saturating_sub(2)));
    i_sync.id == j_sync.id || (bound >= 0 && i_sync.upstream >= bound)
}

/// Java's `1L << n`, including `1L << 63 == Long.MIN_VALUE`. Java masks the shift
/// distance to its low 6 bits, hence `% 64`, which also makes the cast lossless.
fn pow2(n: usize) -> i64 {
    1i64.wrapping_shl((n % 64) as u32)
}

/// The newest slot at or below `group_offset`, or the oldest slot when all are above it.
fn lookup(slots: &[Slot; SYNCS_PER_PARTITION], group_offset: i64) -> Slot {
    let oldest = slots[SYNCS_PER_PARTITION - 1];
    slots
        .iter()
        .find(|slot| slot.upstream <= group_offset)
        .copied()
        .unwrap_or(oldest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const TRANSLATION_VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/mm2/vectors-translation.json"
    );

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Scenario {
        name: String,
        note: String,
        topic_partition: String,
        initialization_must_read_to_end: bool,
        startup_syncs: Vec<(i64, i64)>,
        steps: Vec<Step>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
    enum Step {
        TranslateBeforeStart { upstream: i64, result: Option<i64> },
        TranslateDuringInitialRead { upstream: i64, result: Option<i64> },
        StateAfterStart { syncs: Vec<(i64, i64)> },
        Sync { upstream: i64, downstream: i64 },
        Translate { upstream: i64, result: Option<i64> },
        State { syncs: Vec<(i64, i64)> },
    }

    fn scenarios() -> Vec<Scenario> {
        let text =
            std::fs::read_to_string(TRANSLATION_VECTORS).expect("translation vectors readable");
        serde_json::from_str(&text).expect("translation vectors parse")
    }

    #[derive(Debug, Default, PartialEq, Eq)]
    struct Replayed {
        syncs: usize,
        translations: usize,
        snapshots: usize,
    }

    /// Replays one scenario the way the vector generator drove Kafka's class: gated
    /// translations first, then the startup syncs during the initial read, then
    /// `start()` completes and the remaining steps run.
    fn replay(scenario: &Scenario) -> Replayed {
        let (topic, partition) = scenario
            .topic_partition
            .rsplit_once('-')
            .expect("topic-partition");
        let partition: i32 = partition.parse().expect("partition number");
        let ctx = &scenario.name;
        let mut store = OffsetSyncStore::new(scenario.initialization_must_read_to_end);
        let mut done = Replayed::default();
        let mut started = false;
        // Completes the initial read for scenarios whose steps do not do it explicitly.
        let start = |store: &mut OffsetSyncStore, started: &mut bool, done: &mut Replayed| {
            if !*started {
                for &(up, down) in &scenario.startup_syncs {
                    store.sync_offsets(topic, partition, up, down);
                    done.syncs += 1;
                }
                store.finish_initial_read();
                *started = true;
            }
        };
        for (index, step) in scenario.steps.iter().enumerate() {
            let at = format!("{ctx} step {index}: {step:?}");
            match step {
                Step::TranslateBeforeStart { upstream, result } => {
                    assert!(!started, "{at}");
                    assert_eq!(
                        store.translate_downstream(topic, partition, *upstream),
                        *result,
                        "{at}"
                    );
                    assert_eq!(
                        store.translate(topic, partition, *upstream),
                        Translation::InitialReadIncomplete,
                        "{at}"
                    );
                    done.translations += 1;
                }
                Step::TranslateDuringInitialRead { upstream, result } => {
                    assert!(!started, "{at}");
                    for &(up, down) in &scenario.startup_syncs {
                        store.sync_offsets(topic, partition, up, down);
                        done.syncs += 1;
                    }
                    assert_eq!(
                        store.translate_downstream(topic, partition, *upstream),
                        *result,
                        "{at}"
                    );
                    store.finish_initial_read();
                    started = true;
                    done.translations += 1;
                }
                Step::StateAfterStart { syncs } | Step::State { syncs } => {
                    start(&mut store, &mut started, &mut done);
                    let slots = store.slots(topic, partition).expect("slots present");
                    assert_eq!(slots.as_slice(), syncs.as_slice(), "{at}");
                    done.snapshots += 1;
                }
                Step::Sync {
                    upstream,
                    downstream,
                } => {
                    start(&mut store, &mut started, &mut done);
                    store.sync_offsets(topic, partition, *upstream, *downstream);
                    done.syncs += 1;
                }
                Step::Translate { upstream, result } => {
                    start(&mut store, &mut started, &mut done);
                    assert_eq!(
                        store.translate_downstream(topic, partition, *upstream),
                        *result,
                        "{at}"
                    );
                    done.translations += 1;
                }
            }
        }
        done
    }

    #[test]
    fn all_kafka_scenarios_replay_exactly() {
        let scenarios = scenarios();
        let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kafka_test_testOffsetTranslation",
                "no_sync_for_partition",
                "single_sync_plus_one_rule",
                "kafka_test_testPastOffsetTranslation",
                "kafka_test_testPastOffsetTranslationWithoutInitializationReadToEnd",
                "variable_gaps_with_downstream_drift",
                "dense_syncs_every_offset",
                "downstream_reset_then_upstream_rewind",
            ]
        );
        let mut total = Replayed::default();
        for scenario in &scenarios {
            assert!(!scenario.note.is_empty());
            let done = replay(scenario);
            total.syncs += done.syncs;
            total.translations += done.translations;
            total.snapshots += done.snapshots;
        }
        // Every step of every scenario was executed and asserted.
        let steps: usize = scenarios.iter().map(|s| s.steps.len()).sum();
        let startup: usize = scenarios.iter().map(|s| s.startup_syncs.len()).sum();
        assert_eq!(
            total.syncs + total.translations + total.snapshots,
            steps + startup
        );
        assert_eq!(total.snapshots, 7);
    }

    /// Kafka's `OffsetSyncStoreTest.testOffsetTranslation`, written out so the "+1" rule
    /// and the reset on upstream rewind are readable without the vectors.
    #[test]
    fn kafka_offset_translation_expectations() {
        let mut store = OffsetSyncStore::new(true);
        assert_eq!(store.translate_downstream("t", 0, 0), None);
        store.finish_initial_read();
        store.sync_offsets("t", 0, 100, 200);
        assert_eq!(store.translate_downstream("t", 0, 150), Some(201));
        assert_eq!(store.translate_downstream("t", 0, 100), Some(200));
        assert_eq!(store.translate_downstream("t", 0, 99), Some(-1));
        assert_eq!(store.translate("t", 0, 99), Translation::BehindOldestSync);
        store.sync_offsets("t", 0, 150, 251);
        assert_eq!(store.translate_downstream("t", 0, 151), Some(252));
        store.sync_offsets("t", 0, 200, 10);
        assert_eq!(store.translate_downstream("t", 0, 199), Some(252));
        store.sync_offsets("t", 0, 20, 20);
        assert_eq!(store.translate_downstream("t", 0, 200), Some(21));
        assert_eq!(store.translate("t", 1, 200), Translation::NoSync);
        assert_eq!(store.translate("u", 0, 200), Translation::NoSync);
    }

    #[test]
    fn gated_initial_read_keeps_only_the_last_sync() {
        let mut store = OffsetSyncStore::new(true);
        for up in [0, 10, 20, 30] {
            store.sync_offsets("t", 0, up, up + 5);
        }
        assert!(!store.is_initial_read_complete());
        assert_eq!(store.slots("t", 0), Some([(30, 35); SYNCS_PER_PARTITION]));
    }

    #[test]
    fn extreme_offsets_do_not_panic() {
        let mut store = OffsetSyncStore::new(false);
        store.finish_initial_read();
        for (up, down) in [
            (0, i64::MAX),
            (i64::MAX - 1, i64::MAX),
            (i64::MAX, i64::MIN),
            (i64::MIN, 0),
            (-5, -5),
            (i64::MAX, i64::MAX),
        ] {
            store.sync_offsets("t", 0, up, down);
            let _ = store.translate_downstream("t", 0, i64::MAX);
            let _ = store.translate_downstream("t", 0, i64::MIN);
        }
        // (i64::MAX, i64::MAX) is the newest; a group at MAX translates exactly.
        assert_eq!(store.translate_downstream("t", 0, i64::MAX), Some(i64::MAX));
    }
}
