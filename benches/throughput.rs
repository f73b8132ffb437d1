//! `cargo bench`: figures for the hot paths kdr runs during an incident, printed, not asserted.
//! Under `cargo test` (no `--bench` argument) it runs each with tiny inputs, as a smoke test.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use kdr::mm2::checkpoints::RawRecord;
use kdr::mm2::{Checkpoint, CheckpointIndex, OffsetSync, OffsetSyncStore, ReplicationPolicy};

fn measure(name: &str, items: u64, f: impl FnOnce()) {
    let started = Instant::now();
    f();
    let took = started.elapsed();
    let per_sec = items as f64 / took.as_secs_f64().max(1e-9);
    println!(
        "{name:<48} {items:>9} in {:>9.2?}  {:>12.0}/s",
        took, per_sec
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: u64 = if bench { 200_000 } else { 1_000 };

    // A checkpoints topic as translate_offsets reads it: 50 groups × 40 partitions, rewritten.
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            let c = Checkpoint {
                group: format!("group-{}", i % 50),
                topic: "primary.orders".into(),
                partition: (i % 40) as i32,
                upstream_offset: i as i64,
                downstream_offset: i as i64 - 1,
                metadata: String::new(),
            };
            (
                c.encode_key().expect("key"),
                c.encode_value().expect("value"),
            )
        })
        .collect();
    measure("decode checkpoint records", n, || {
        for (k, v) in &records {
            black_box(Checkpoint::decode(Some(k), Some(v)).expect("decode"));
        }
    });
    measure("index a checkpoints topic (last wins)", n, || {
        let index = CheckpointIndex::from_records(records.iter().enumerate().map(|(i, (k, v))| {
            RawRecord {
                offset: i as i64,
                key: Some(k),
                value: Some(v),
                timestamp_ms: 0,
            }
        }));
        black_box(index.groups().len());
    });

    // MM2's offset-sync store, fed one sync per 100 records on 8 partitions, then queried.
    measure("OffsetSyncStore: apply syncs", n, || {
        let mut store = OffsetSyncStore::new(false);
        for i in 0..n as i64 {
            store.sync(&OffsetSync {
                topic: "orders".into(),
                partition: (i % 8) as i32,
                upstream_offset: i * 100,
                downstream_offset: i * 100 + 7,
            });
        }
        store.finish_initial_read();
        black_box(store.translate_downstream("orders", 3, 12_345));
    });
    let mut store = OffsetSyncStore::new(false);
    for i in 0..10_000i64 {
        store.sync(&OffsetSync {
            topic: "orders".into(),
            partition: 0,
            upstream_offset: i * 100,
            downstream_offset: i * 100,
        });
    }
    store.finish_initial_read();
    measure("OffsetSyncStore: translate", n, || {
        for i in 0..n as i64 {
            black_box(store.translate_downstream("orders", 0, (i * 37) % 1_000_000));
        }
    });

    let policy = ReplicationPolicy::default_policy();
    measure("replication policy: remote and original names", n, || {
        for i in 0..n {
            let remote = policy.format_remote_topic("primary", &format!("topic-{}", i % 100));
            black_box(policy.original_topic(&remote));
        }
    });

    // Loading and checking the starter plan, as every command does first.
    let plan = include_str!("../runbooks/starter.yaml");
    let loads = if bench { 2_000 } else { 10 };
    measure("load and check the starter plan", loads, || {
        for _ in 0..loads {
            black_box(
                kdr::plan::load_bytes(
                    Path::new("starter.yaml"),
                    plan.as_bytes(),
                    Path::new("."),
                    &kdr::plan::SystemSubstitutions,
                )
                .expect("plan"),
            );
        }
    });
}
