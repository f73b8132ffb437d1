//! MirrorMaker 2 knowledge: replication-policy naming, the internal record codec, offset translation.
//!
//! A failover moves consumers from the source cluster to the target at offsets that only
//! MM2 knows, stored in MM2's own topics in MM2's own byte formats. kdr cannot ask MM2
//! during an incident (it may be down with the source cluster), so it has to read those
//! topics itself and reach the same conclusions MM2 would. This module is that knowledge,
//! pure and I/O-free so it can be held byte for byte to vectors produced by Kafka's own
//! classes (`shared/mm2/`):
//!
//! * [`policy`]: which topic names MM2 uses (remote topics, checkpoints, offset syncs,
//!   heartbeats) under the Default and Identity policies.
//! * [`codec`]: the checkpoint, offset-sync and heartbeat record layouts.
//! * [`translation`]: MM2's offset-sync index and its "+1" translation, to predict and
//!   explain checkpoints.
//! * [`emission`]: when MM2 writes offset syncs, which bounds how far translations lag.
//! * [`checkpoints`]: what a one-shot read of a checkpoints or heartbeats topic tells
//!   kdr, with every skipped record accounted for.
//!
//! Where Kafka's behaviour is unsafe for a DR tool, kdr diverges on purpose and says so in
//! the item's docs: unknown record versions are refused, and tombstones are skipped and
//! counted instead of aborting the read.

pub mod checkpoints;
pub mod codec;
pub mod emission;
pub mod policy;
pub mod translation;

pub use checkpoints::{
    CheckpointIndex, HeartbeatView, RawRecord, SkipCounts, SkipReason, SkippedRecord,
};
pub use codec::{
    Checkpoint, CheckpointKey, DecodeError, EncodeError, Heartbeat, OffsetSync, RecordKind,
    RecordPart,
};
pub use emission::{Emit, OffsetLagMax, OffsetSyncEmitter, PartitionSyncState, SyncTriggers};
pub use policy::{ClusterRole, OffsetSyncsLocation, ReplicationPolicy};
pub use translation::{OffsetSyncStore, Translation};
