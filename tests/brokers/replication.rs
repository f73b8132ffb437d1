//! kdr's MM2-compatible replicator between two broker processes: records land in the remote
//! topic's same partitions at the same offsets, and checkpoints, offset syncs and heartbeats are
//! real records on the clusters, readable with kdr's own decoders.

use std::time::Duration;

use kdr::kafka::{ClusterRole, ReadOptions};
use kdr::mm2::{Checkpoint, CheckpointIndex, Heartbeat, OffsetSync};
use kdr::rehearsal::read_partition;

use crate::harness::block_on;
use crate::mm2::{
    COMMITS, GROUP, Mm2, PARTITIONS, RECORDS_PER_PARTITION, REMOTE_TOPIC, TOPIC, checkpoint,
};

const READ: Duration = Duration::from_secs(10);

#[test]
fn replicator_copies_records_and_writes_checkpoints_between_two_brokers() {
    let mm2 = Mm2::start();
    let (primary, dr) = (mm2.pair.primary.bootstrap(), mm2.pair.dr.bootstrap());

    for partition in 0..PARTITIONS {
        let source = read_partition(&primary, TOPIC, partition, READ).expect("read primary");
        let remote = read_partition(&dr, REMOTE_TOPIC, partition, READ).expect("read dr");
        let strip = |records: &[kdr::rehearsal::ReadRecord]| {
            records
                .iter()
                .map(|r| (r.offset, r.key.clone(), r.value.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            usize::try_from(RECORDS_PER_PARTITION).expect("count"),
            source.len()
        );
        assert_eq!(strip(&remote), strip(&source), "partition {partition}");
    }

    // The checkpoints are records on DR, and the newest per partition is what the replicator
    // says it wrote last.
    let dr_cluster = mm2.dr();
    let read =
        block_on(dr_cluster.read_to_end("primary.checkpoints.internal", 0, ReadOptions::default()))
            .expect("read checkpoints");
    let index = CheckpointIndex::from_records(read.records.iter().map(|r| {
        (
            r.offset,
            r.key.as_deref(),
            r.value.as_deref(),
            r.timestamp_ms.unwrap_or(0),
        )
    }));
    assert_eq!(index.skipped().total(), 0);
    let stats = mm2.stats();
    for (partition, upstream) in COMMITS {
        let (on_dr, _) = index
            .get(GROUP, REMOTE_TOPIC, partition)
            .expect("a checkpoint on DR");
        let last = checkpoint(&stats, partition).expect("a checkpoint written");
        assert_eq!(on_dr.upstream_offset, upstream);
        assert!(
            on_dr.downstream_offset <= last.downstream_offset,
            "{on_dr:?} vs {last:?}"
        );
        // MM2 never translates past what the source commit covers.
        assert!((1..=upstream).contains(&last.downstream_offset), "{last:?}");
    }
    // Committed at the end of a fully copied partition: translated exactly.
    let at_end: Vec<&Checkpoint> = [0, 2]
        .iter()
        .map(|&p| checkpoint(&stats, p).expect("checkpoint"))
        .collect();
    assert!(
        at_end
            .iter()
            .all(|c| c.downstream_offset == RECORDS_PER_PARTITION),
        "{at_end:?}"
    );

    // Offset syncs on the primary (offset-syncs.topic.location = source), heartbeats on DR.
    let primary_cluster = mm2.pair.primary.cluster(ClusterRole::Primary);
    let syncs = block_on(primary_cluster.read_to_end(
        "mm2-offset-syncs.dr.internal",
        0,
        ReadOptions::default(),
    ))
    .expect("read offset syncs");
    let syncs: Vec<OffsetSync> = syncs
        .records
        .iter()
        .map(|r| OffsetSync::decode(r.key.as_deref(), r.value.as_deref()).expect("offset sync"))
        .collect();
    for partition in 0..PARTITIONS {
        assert!(
            syncs
                .iter()
                .any(|s| s.topic == TOPIC && s.partition == partition),
            "no offset sync for {TOPIC}/{partition}: {syncs:?}"
        );
    }
    let heartbeats = block_on(dr_cluster.read_to_end("heartbeats", 0, ReadOptions::default()))
        .expect("read heartbeats");
    let heartbeat = heartbeats.records.last().expect("a heartbeat on DR");
    let heartbeat =
        Heartbeat::decode(heartbeat.key.as_deref(), heartbeat.value.as_deref()).expect("heartbeat");
    assert_eq!(
        (
            heartbeat.source_alias.as_str(),
            heartbeat.target_alias.as_str()
        ),
        ("primary", "dr")
    );
}
