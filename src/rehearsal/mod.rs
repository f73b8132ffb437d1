//! The embedded two-cluster world `kdr rehearse` and the end-to-end tests run against.
//!
//! A runbook that has never been rehearsed fails at 3 AM on something trivial; a
//! rehearsal that needs a Kafka installation is never run. So kdr carries its own world:
//!
//! * [`world`]: two librdkafka mock clusters, "primary" and "dr", in the process, with
//!   every topic a two-way MirrorMaker 2 deployment has, and a switch to take a whole
//!   cluster down (the data centre is gone) and bring it back.
//! * [`replicator`]: an MM2-compatible flow `S -> T` that copies records and writes
//!   MM2's offset syncs, checkpoints and heartbeats in MM2's exact formats, by MM2's rules
//!   (the pure [`crate::mm2`] model). kdr reads these during a failover exactly as it
//!   would read MM2's. The replicator takes bootstrap strings only, so it also runs
//!   between separate broker processes.
//! * [`workload`]: producers and consumer groups that follow an indirection file (the
//!   active cluster) and a pause file (quiesced producers), the way the runbook expects
//!   applications to, with a ledger of every acknowledged and consumed record so that
//!   losses, re-reads and jumps to the beginning are computed, not guessed.

pub mod client;
pub mod drill;
pub mod replicator;
pub mod workload;
pub mod world;

#[cfg(test)]
mod tests;

pub use client::{ReadRecord, commit_offsets, read_partition};
pub use replicator::{
    Endpoint, PartitionStats, Pause, Replicator, ReplicatorConfig, ReplicatorError,
    ReplicatorStats, StartFrom,
};
pub use workload::{
    Attachment, ConsumedRecord, GroupReport, GroupStats, Ledger, LedgerReport, ProducedRecord,
    StartPoint, Workload, WorkloadConfig, WorkloadError, WorkloadStats, seqs_on,
};
pub use world::{EmbeddedWorld, Role, TopicPlacement, TopicSpec, WorldError, WorldSpec};
