//! The drill's stage: the files the workload follows, the workload itself, and the phases that
//! drive them around kdr's runs (warm-up, stalled replication, traffic on DR, wind-down).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{DrillError, canary};
use crate::plan::Plan;
use crate::rehearsal::{
    EmbeddedWorld, Ledger, Pause, Replicator, ReplicatorStats, Role, StartFrom, Workload,
};

/// Records per second the workload writes.
const RATE: u32 = 400;
/// Records written, in the disaster scenario, after replication stalls and before the primary
/// goes down: the data in flight.
const IN_FLIGHT: u64 = 120;

/// Poll `cond` every 20 ms until it holds or `bound` passes; false on timeout.
pub(super) async fn wait_for(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether MM2 has checkpointed every partition `group` committed on the flow's source.
fn checkpointed(
    stats: &ReplicatorStats,
    replicator: &Replicator,
    group: &str,
    committed: &crate::rehearsal::GroupStats,
) -> bool {
    let config = replicator.config();
    committed.committed.iter().all(|(topic, partition)| {
        let key = (
            group.to_owned(),
            config.checkpoint_topic_name(topic),
            *partition,
        );
        stats.last_checkpoints.contains_key(&key)
    })
}

/// The workload running on the embedded world, and the file that pauses its producers (what a
/// `quiesce_producers` hook touches).
pub(super) struct Stage<'a> {
    world: &'a EmbeddedWorld,
    groups: &'a [String],
    pause_file: PathBuf,
    workload: Workload,
    /// The canary: its own topic and group, through the same files as the workload.
    canary: Workload,
}

impl<'a> Stage<'a> {
    /// Points producers and consumers at the primary (through files in `dir`, as a config
    /// service would), and starts the primary -> DR flow and the workload.
    pub(super) fn start(
        plan: &Plan,
        world: &'a EmbeddedWorld,
        dir: &Path,
        groups: &'a [String],
    ) -> Result<(Self, Replicator), DrillError> {
        let bootstrap_file = dir.join("producers.bootstrap");
        let consumers_file = dir.join("consumers.bootstrap");
        let pause_file = dir.join("producers.paused");
        for file in [&bootstrap_file, &consumers_file] {
            std::fs::write(file, format!("{}\n", plan.primary.bootstrap_servers))
                .map_err(DrillError::world)?;
        }
        let replicator =
            Replicator::start(world.replicator_config(Role::Primary)).map_err(DrillError::world)?;
        let mut config = world.workload_config(&bootstrap_file, &pause_file);
        config.consumer_indirection_file = Some(consumers_file);
        let canary_config = canary::workload(&config, canary::FIRST_SEQ);
        config.rate_per_sec = RATE;
        config.topics.retain(|t| t != canary::TOPIC);
        config.groups.retain(|g| g != canary::GROUP);
        let workload = Workload::start(config).map_err(DrillError::world)?;
        let canary = Workload::start(canary_config).map_err(DrillError::world)?;
        let stage = Stage {
            world,
            groups,
            pause_file,
            workload,
            canary,
        };
        Ok((stage, replicator))
    }

    /// Traffic flows, every group has committed, and MM2 has checkpointed every partition each
    /// group committed: a partition without a checkpoint would have no translated offset on DR,
    /// and its group would read it again from the beginning there.
    pub(super) async fn warm_up(&self, replicator: &Replicator) -> Result<(), DrillError> {
        let warm = wait_for(Duration::from_secs(30), || {
            let w = self.workload.stats();
            let c = self.canary.stats();
            let r = replicator.stats();
            w.acknowledged >= 200
                && self.groups.iter().all(|g| {
                    w.groups
                        .get(g)
                        .or_else(|| c.groups.get(g))
                        .is_some_and(|s| s.commits > 0 && checkpointed(&r, replicator, g, s))
                })
        })
        .await;
        if warm {
            return Ok(());
        }
        Err(DrillError::World(format!(
            "the embedded world did not warm up within 30s: workload: {}; replicator: {}",
            self.workload
                .stats()
                .last_error
                .as_deref()
                .unwrap_or("no error"),
            replicator
                .stats()
                .last_error
                .as_deref()
                .unwrap_or("no error")
        )))
    }

    /// The disaster's prelude: replication stalls while the primary keeps taking writes that
    /// will never reach DR, then producers stop (as the primary's clients do when it goes).
    pub(super) async fn stall_replication(
        &self,
        replicator: &Replicator,
    ) -> Result<(), DrillError> {
        replicator.pause(Pause::Copying);
        let before = self.workload.stats().acknowledged;
        // Fewer records in flight is still a disaster: the checks compare what kdr accepted with
        // what is really missing, whatever the number.
        wait_for(Duration::from_secs(20), || {
            self.workload.stats().acknowledged >= before + IN_FLIGHT
        })
        .await;
        std::fs::write(&self.pause_file, "").map_err(DrillError::world)?;
        producers_paused(&[&self.workload, &self.canary]).await;
        Ok(())
    }

    /// After the failover: the DR -> primary flow starts and DR takes traffic until MM2 has
    /// copied some of it home and checkpointed every group.
    pub(super) async fn traffic_on_dr(
        &self,
        forward: &ReplicatorStats,
    ) -> Result<Replicator, DrillError> {
        let mut config = self.world.replicator_config(Role::Dr);
        if let crate::mm2::ReplicationPolicy::Identity { .. } = config.policy {
            // Under the identity policy DR's `orders` also holds the primary's history: start
            // the flow back where the failover left it, or the history is copied home again.
            let start: BTreeMap<(String, i32), i64> = forward
                .partitions
                .iter()
                .filter_map(|(k, p)| p.last_downstream_offset.map(|o| (k.clone(), o + 1)))
                .collect();
            config.start_from = StartFrom::Offsets(start);
        }
        let flow_back = Replicator::start(config).map_err(DrillError::world)?;
        let traffic = self.workload.stats().acknowledged;
        // Long enough on DR for the canary to show whether publishing stabilized.
        let canary_for = canary::STABLE_FOR + Duration::from_millis(500);
        let canary_since = Instant::now();
        let ready = wait_for(Duration::from_secs(30), || {
            let r = flow_back.stats();
            canary_since.elapsed() >= canary_for
                && self.workload.stats().acknowledged >= traffic + 200
                && r.records_copied > 0
                && r.checkpoints_written >= self.groups.len() as u64
        })
        .await;
        if ready {
            return Ok(flow_back);
        }
        Err(DrillError::World(format!(
            "the dr -> primary flow did not start within 30s: {}",
            flow_back
                .stats()
                .last_error
                .as_deref()
                .unwrap_or("no error")
        )))
    }

    /// Producers stop, consumers finish what was written (until nothing new arrives for 600 ms,
    /// at most 10 s), and the workloads hand over their ledgers: everything (the canary's
    /// records among the workload's, in time order), and the canary's alone.
    pub(super) async fn wind_down(self) -> Result<(Ledger, Ledger), DrillError> {
        settle(&self.pause_file, &[&self.workload, &self.canary]).await?;
        let canary = self.canary.stop();
        let mut all = self.workload.stop();
        all.produced.extend(canary.produced.iter().cloned());
        all.produced.sort_by_key(|r| r.acked_at_us);
        all.consumed.extend(canary.consumed.iter().cloned());
        all.consumed.sort_by_key(|r| r.read_at_us);
        all.attachments.extend(canary.attachments.iter().cloned());
        all.failed.extend(canary.failed.iter().cloned());
        Ok((all, canary))
    }
}

/// Producers stop (`pause_file` appears), then consumers finish what was written: until nothing
/// new arrives for 600 ms, at most 10 s.
pub(super) async fn settle(pause_file: &Path, workloads: &[&Workload]) -> Result<(), DrillError> {
    std::fs::write(pause_file, "").map_err(DrillError::world)?;
    producers_paused(workloads).await;
    let consumed = || workloads.iter().map(|w| w.stats().consumed).sum::<u64>();
    let mut last = consumed();
    let mut still_since = Instant::now();
    wait_for(Duration::from_secs(10), || {
        let now = consumed();
        if now != last {
            last = now;
            still_since = Instant::now();
        }
        still_since.elapsed() > Duration::from_millis(600)
    })
    .await;
    Ok(())
}

/// Waits (at most 10 s) until every producer has seen the pause file and has nothing in flight.
async fn producers_paused(workloads: &[&Workload]) {
    wait_for(Duration::from_secs(10), || {
        workloads.iter().all(|w| w.stats().producers_paused())
    })
    .await;
}
