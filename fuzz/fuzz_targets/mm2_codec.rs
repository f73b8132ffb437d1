//! Arbitrary bytes as a run of MM2 internal records, through every decoder of
//! `kdr::mm2::codec`, the checkpoint index, the heartbeat view and the offset-sync store.
//!
//! Input framing (simple, so seeds can be written by hand), repeated until the bytes run out:
//!
//! ```text
//! flags: u8          bit 0: the key is present, bit 1: the value is present
//! key_len: u16 BE    then key_len key bytes (fewer if the input ends)
//! value_len: u16 BE  then value_len value bytes (fewer if the input ends)
//! ```
//!
//! An absent key or value is a null one (a tombstone). Record `i` has offset `i`.
//!
//! Invariants checked:
//! * nothing panics, and every `DecodeError` formats;
//! * a decoded record re-encodes (unless a lossily decoded string grew past the `INT16`
//!   limit) to bytes that decode to the same record; the re-encoding is a prefix of the
//!   input bytes (trailing bytes are ignored) unless a string held invalid UTF-8, which
//!   decodes to U+FFFD;
//! * null parts are refused as tombstones, in the order the decoders document; a
//!   `Truncated` error needs more bytes than are available;
//! * `CheckpointIndex` keeps the last checkpoint per key and drops it on a tombstone whose
//!   key decodes; `HeartbeatView` keeps the largest timestamp per alias pair; both count
//!   every record read and every one skipped;
//! * `OffsetSyncStore` always has the latest sync in slot 0 (its invariant A) and answers
//!   translations without panicking.

#![no_main]

use std::collections::BTreeMap;

use kdr::mm2::codec::MAX_STRING_LEN;
use kdr::mm2::{
    Checkpoint, CheckpointIndex, CheckpointKey, DecodeError, EncodeError, Heartbeat, HeartbeatView,
    OffsetSync, OffsetSyncStore, RawRecord, RecordPart, Translation,
};
use libfuzzer_sys::fuzz_target;

struct Record<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn take_len(data: &mut &[u8]) -> usize {
    let bytes = take(data, 2);
    match bytes {
        [hi, lo] => usize::from(u16::from_be_bytes([*hi, *lo])),
        [lo] => usize::from(*lo),
        _ => 0,
    }
}

fn records(mut data: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    while let Some((&flags, rest)) = data.split_first() {
        data = rest;
        let key_len = take_len(&mut data);
        let key = take(&mut data, key_len);
        let value_len = take_len(&mut data);
        let value = take(&mut data, value_len);
        out.push(Record {
            key: (flags & 1 != 0).then_some(key),
            value: (flags & 2 != 0).then_some(value),
        });
    }
    out
}

fn lossy(strings: &[&str]) -> bool {
    strings.iter().any(|s| s.contains('\u{FFFD}'))
}

fn too_long(strings: &[&str]) -> bool {
    strings.iter().any(|s| s.len() > MAX_STRING_LEN)
}

fn check_error(error: &DecodeError) {
    let _ = error.to_string();
    if let DecodeError::Truncated {
        needed, available, ..
    } = error
    {
        assert!(needed > available, "{error}");
    }
}

/// Re-encoding: `Ok` must decode back, `Err` is only allowed for an over-long string.
fn encoded(result: Result<Vec<u8>, EncodeError>, strings: &[&str]) -> Option<Vec<u8>> {
    match result {
        Ok(bytes) => Some(bytes),
        Err(e @ EncodeError::StringTooLong { .. }) => {
            assert!(too_long(strings), "{e} for strings of allowed length");
            None
        }
    }
}

fn prefix_unless_lossy(input: &[u8], encoded: &[u8], strings: &[&str], what: &str) {
    assert!(
        input.starts_with(encoded) || lossy(strings),
        "{what}: re-encoding {encoded:02x?} is not a prefix of {input:02x?}"
    );
}

fn check_checkpoint_key(key: Option<&[u8]>) -> Option<CheckpointKey> {
    match CheckpointKey::decode(key) {
        Ok(k) => {
            let strings = [k.group.as_str(), k.topic.as_str()];
            if let Some(bytes) = encoded(k.encode(), &strings) {
                assert_eq!(CheckpointKey::decode(Some(&bytes)).as_ref(), Ok(&k));
                prefix_unless_lossy(key.unwrap(), &bytes, &strings, "checkpoint key");
            }
            Some(k)
        }
        Err(e) => {
            check_error(&e);
            if key.is_none() {
                assert!(matches!(
                    e,
                    DecodeError::Tombstone {
                        part: RecordPart::Key,
                        ..
                    }
                ));
            }
            None
        }
    }
}

fn check_checkpoint(r: &Record<'_>, key: Option<&CheckpointKey>) -> Option<Checkpoint> {
    match Checkpoint::decode(r.key, r.value) {
        Ok(c) => {
            assert_eq!(key, Some(&c.key()), "the key decoders disagree");
            let key_strings = [c.group.as_str(), c.topic.as_str()];
            let value_strings = [c.metadata.as_str()];
            let k = encoded(c.encode_key(), &key_strings);
            let v = encoded(c.encode_value(), &value_strings);
            if let Some(k) = &k {
                prefix_unless_lossy(r.key.unwrap(), k, &key_strings, "checkpoint key");
            }
            if let Some(v) = &v {
                prefix_unless_lossy(r.value.unwrap(), v, &value_strings, "checkpoint value");
            }
            if let (Some(k), Some(v)) = (k, v) {
                assert_eq!(Checkpoint::decode(Some(&k), Some(&v)).as_ref(), Ok(&c));
            }
            Some(c)
        }
        Err(e) => {
            check_error(&e);
            // Value first, like Java's deserializeRecord.
            if r.value.is_none() {
                assert!(matches!(
                    e,
                    DecodeError::Tombstone {
                        part: RecordPart::Value,
                        ..
                    }
                ));
            }
            None
        }
    }
}

fn check_offset_sync(r: &Record<'_>) -> Option<OffsetSync> {
    match OffsetSync::decode(r.key, r.value) {
        Ok(s) => {
            let strings = [s.topic.as_str()];
            let v = s.encode_value();
            assert!(r.value.unwrap().starts_with(&v), "offset sync value");
            if let Some(k) = encoded(s.encode_key(), &strings) {
                prefix_unless_lossy(r.key.unwrap(), &k, &strings, "offset sync key");
                assert_eq!(OffsetSync::decode(Some(&k), Some(&v)).as_ref(), Ok(&s));
            }
            Some(s)
        }
        Err(e) => {
            check_error(&e);
            // Key first, like Java's deserializeRecord.
            if r.key.is_none() {
                assert!(matches!(
                    e,
                    DecodeError::Tombstone {
                        part: RecordPart::Key,
                        ..
                    }
                ));
            }
            None
        }
    }
}

fn check_heartbeat(r: &Record<'_>) -> Option<Heartbeat> {
    match Heartbeat::decode(r.key, r.value) {
        Ok(h) => {
            let strings = [h.source_alias.as_str(), h.target_alias.as_str()];
            let v = h.encode_value();
            assert!(r.value.unwrap().starts_with(&v), "heartbeat value");
            if let Some(k) = encoded(h.encode_key(), &strings) {
                prefix_unless_lossy(r.key.unwrap(), &k, &strings, "heartbeat key");
                assert_eq!(Heartbeat::decode(Some(&k), Some(&v)).as_ref(), Ok(&h));
            }
            Some(h)
        }
        Err(e) => {
            check_error(&e);
            // Value first, like Java's deserializeRecord.
            if r.value.is_none() {
                assert!(matches!(
                    e,
                    DecodeError::Tombstone {
                        part: RecordPart::Value,
                        ..
                    }
                ));
            }
            None
        }
    }
}

fn check_store(store: &OffsetSyncStore, sync: &OffsetSync) {
    let slots = store
        .slots(&sync.topic, sync.partition)
        .expect("a synced partition has slots");
    assert_eq!(
        slots[0],
        (sync.upstream_offset, sync.downstream_offset),
        "slot 0 is not the latest sync"
    );
}

fn translate_around(store: &OffsetSyncStore, sync: &OffsetSync) {
    let up = sync.upstream_offset;
    for offset in [
        i64::MIN,
        up.wrapping_sub(1),
        up,
        up.wrapping_add(1),
        i64::MAX,
    ] {
        let t = store.translate(&sync.topic, sync.partition, offset);
        assert_ne!(t, Translation::NoSync, "a synced partition reports no sync");
        assert_eq!(
            t.as_java(),
            store.translate_downstream(&sync.topic, sync.partition, offset)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let records = records(data);

    let mut index = CheckpointIndex::default();
    let mut expected_checkpoints: BTreeMap<CheckpointKey, Checkpoint> = BTreeMap::new();
    let mut checkpoint_skips = 0u64;
    let mut beats = HeartbeatView::default();
    let mut expected_beats: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut beat_skips = 0u64;
    let mut gated = OffsetSyncStore::new(true);
    let mut ungated = OffsetSyncStore::new(false);
    let mut syncs = Vec::new();

    for (i, r) in records.iter().enumerate() {
        let raw = RawRecord {
            offset: i as i64,
            key: r.key,
            value: r.value,
            timestamp_ms: i as i64 * 1000,
        };

        let key = check_checkpoint_key(r.key);
        match check_checkpoint(r, key.as_ref()) {
            Some(c) => {
                expected_checkpoints.insert(c.key(), c);
            }
            None => {
                checkpoint_skips += 1;
                if r.value.is_none()
                    && let Some(key) = &key
                {
                    expected_checkpoints.remove(key);
                }
            }
        }
        index.push(raw);

        match check_heartbeat(r) {
            Some(h) => {
                let newest = expected_beats
                    .entry((h.source_alias, h.target_alias))
                    .or_insert(h.timestamp_ms);
                *newest = (*newest).max(h.timestamp_ms);
            }
            None => beat_skips += 1,
        }
        beats.push(raw);

        if let Some(sync) = check_offset_sync(r) {
            // The gated store finishes its initial read halfway through the run.
            if i == records.len() / 2 {
                gated.finish_initial_read();
            }
            for store in [&mut gated, &mut ungated] {
                store.sync(&sync);
                check_store(store, &sync);
            }
            syncs.push(sync);
        }
    }

    let n = records.len() as u64;
    assert_eq!(index.records_read(), n);
    assert_eq!(index.skipped().total(), checkpoint_skips);
    assert_eq!(index.skip_examples().len() as u64, checkpoint_skips.min(10));
    assert_eq!(index.len(), expected_checkpoints.len());
    assert_eq!(index.is_empty(), expected_checkpoints.is_empty());
    for (key, c) in &expected_checkpoints {
        let (got, _) = index
            .get(&key.group, &key.topic, key.partition)
            .expect("an indexed checkpoint");
        assert_eq!(got, c);
    }
    for group in index.groups() {
        let listed = index.for_group(group);
        assert!(!listed.is_empty());
        assert!(
            listed
                .windows(2)
                .all(|w| { (&w[0].0.topic, w[0].0.partition) < (&w[1].0.topic, w[1].0.partition) })
        );
    }

    assert_eq!(beats.records_read(), n);
    assert_eq!(beats.skipped().total(), beat_skips);
    let pairs: Vec<_> = expected_beats
        .iter()
        .map(|((s, t), ts)| (s.as_str(), t.as_str(), *ts))
        .collect();
    assert_eq!(beats.pairs(), pairs);

    gated.finish_initial_read();
    ungated.finish_initial_read();
    for sync in &syncs {
        translate_around(&gated, sync);
        translate_around(&ungated, sync);
    }
});
