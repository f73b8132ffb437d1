//! What the steps and the look-ups share about the pair of clusters a plan names: the clients
//! of the pair, one direction of MirrorMaker 2 replication between them and its naming, the
//! measurement of how far it has got, and the planning of offset translation.
//!
//! It sits above `kafka/` (the clients) and `mm2/` (MM2's naming and formats) and below
//! `steps/`, `engine/` and `lookup/`, which decide what to do with what it reads.

mod bound;
mod clients;
mod flow;
mod internal;
mod lag;
mod reverse;
mod translation;

use std::time::SystemTime;

pub use bound::{Bound, Cut};
pub use clients::{Clusters, OPERATION_TIMEOUT};
pub use flow::{Flow, ReplicatedPartition};
pub use internal::OffsetSyncs;
pub use lag::{LagMethod, PartitionLag, present, topics_missing_on_target, total_lag};
pub use reverse::{
    IDENTITY_SKIP, KnownStates, PositionFrom, Reverse, ReverseGroup, ReverseObservation,
    ReversePartition, ReverseRead, SyncIndex, SyncUsed, map_home, more_groups_on_dr,
    reverse_position,
};
pub use translation::{
    Action, Applied, Batching, Call, Clamp, GroupPlan, GroupState, GroupTranslation,
    PartitionTranslation, Skip, SparseSync, TargetPositions, TranslateError, UnknownState, apply,
    checkpointed_source_committed, lands_far_below, listed_groups, plan_translation,
    read_checkpoints, resolve_groups, source_committed, sparse_syncs, sparse_syncs_warning,
};
pub use translation::{
    GROUPS_PER_BATCH, Offsets, TargetView, checkpointed_partitions, plan_read, read_target,
    source_partition_ends,
};

/// This host's clock in milliseconds since the Unix epoch, as record timestamps are.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
