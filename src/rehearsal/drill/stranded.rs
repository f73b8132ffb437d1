//! The stranded records of a drill: what the failback's declaration found on the old primary
//! past what DR received, where they went (exported, skipped, left to the consumers), and what
//! the primary really held beyond DR, counted record by record from its own topics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::DrillError;
use super::evidence::EvidenceError;
use crate::journal::{self, EventBody};
use crate::plan::Plan;
use crate::rehearsal::workload::SEQ_HEADER;
use crate::rehearsal::{EmbeddedWorld, Ledger, read_partition};

/// One partition: kdr's count next to what the primary really held beyond DR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrandedRow {
    pub topic: String,
    pub partition: i32,
    pub found_by_kdr: u64,
    pub really_on_primary: u64,
}

/// Every stranded record of the drill, accounted for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StrandedFigures {
    /// What the failback's declaration reported; None when its log says nothing about them.
    pub found_by_kdr: Option<u64>,
    /// Records on the primary's own topics that never reached DR and were not written after
    /// the failback: what the primary really held beyond DR.
    pub really_on_primary: u64,
    pub per_partition: Vec<StrandedRow>,
    /// The plan's choice as the failback's log records it (`export`, `skip`, `consume`).
    pub choice: Option<String>,
    /// The export file and how many records it holds, when the choice was export.
    pub exported_to: Option<String>,
    pub exported: Option<u64>,
    /// The groups the failback moved past them.
    pub groups_moved: Vec<String>,
}

impl StrandedFigures {
    /// kdr's count equals what the primary really held beyond DR, partition by partition.
    pub fn matches(&self) -> bool {
        self.found_by_kdr == Some(self.really_on_primary)
            && self
                .per_partition
                .iter()
                .all(|r| r.found_by_kdr == r.really_on_primary)
    }

    /// Where they went, in words.
    pub fn destination(&self) -> String {
        match self.choice.as_deref() {
            Some("export") => format!(
                "exported to {} ({} records), then skipped by {}",
                self.exported_to.as_deref().unwrap_or("?"),
                super::summary::figure(self.exported),
                groups(&self.groups_moved)
            ),
            Some("skip") => format!("skipped by {}", groups(&self.groups_moved)),
            Some("consume") => "left to the consumers at home (stranded: consume)".to_owned(),
            Some(other) => other.to_owned(),
            None if self.found_by_kdr == Some(0) => "none to place".to_owned(),
            None => "nowhere: the failback decided nothing".to_owned(),
        }
    }
}

fn groups(moved: &[String]) -> String {
    if moved.is_empty() {
        "no group (none was behind them)".to_owned()
    } else {
        format!("group(s) {}", moved.join(", "))
    }
}

/// kdr's figures from the failback's log, and the truth from the primary and the ledger.
pub(super) async fn account(
    plan: &Plan,
    world: &EmbeddedWorld,
    ledger: &Ledger,
    on_dr: &BTreeSet<u64>,
    failback_log: &Path,
) -> Result<StrandedFigures, DrillError> {
    let mut figures = from_log(failback_log)?;
    let really = really_on_primary(plan, world, ledger, on_dr).await?;
    let mut keys: BTreeSet<(String, i32)> = really.keys().cloned().collect();
    keys.extend(
        figures
            .per_partition
            .iter()
            .map(|r| (r.topic.clone(), r.partition)),
    );
    let kdr: BTreeMap<(String, i32), u64> = figures
        .per_partition
        .iter()
        .map(|r| ((r.topic.clone(), r.partition), r.found_by_kdr))
        .collect();
    figures.per_partition = keys
        .into_iter()
        .map(|key| StrandedRow {
            found_by_kdr: kdr.get(&key).copied().unwrap_or(0),
            really_on_primary: really.get(&key).copied().unwrap_or(0),
            topic: key.0,
            partition: key.1,
        })
        .collect();
    figures.really_on_primary = really.values().sum();
    Ok(figures)
}

/// What the failback's log says about the stranded records.
fn from_log(log: &Path) -> Result<StrandedFigures, DrillError> {
    let contents = journal::read(log).map_err(EvidenceError::from)?;
    let mut figures = StrandedFigures::default();
    for event in &contents.events {
        match &event.body {
            EventBody::Observation { name, data, .. } if name == "stranded_records" => {
                figures.found_by_kdr = data["total_records"].as_u64();
                figures.per_partition = data["partitions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        Some(StrandedRow {
                            topic: p["topic"].as_str()?.to_owned(),
                            partition: i32::try_from(p["partition"].as_i64()?).ok()?,
                            found_by_kdr: p["records"].as_u64()?,
                            really_on_primary: 0,
                        })
                    })
                    .collect();
            }
            EventBody::Observation { name, data, .. } if name == "stranded_exported" => {
                figures.exported_to = data["file"].as_str().map(str::to_owned);
                figures.exported = data["records"].as_u64();
            }
            EventBody::Decision { kind, data, .. } if kind.as_deref() == Some("declare") => {
                if let Some(choice) = data["choice"].as_str() {
                    figures.choice = Some(choice.to_owned());
                } else if let (Some(group), Some(_)) =
                    (data["group"].as_str(), data["partitions"].as_array())
                {
                    figures.groups_moved.push(group.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(figures)
}

/// Per partition of the primary's own topics, the records it holds that never reached DR and
/// that were not written to it after the failback (those came after the stranded ones).
async fn really_on_primary(
    plan: &Plan,
    world: &EmbeddedWorld,
    ledger: &Ledger,
    on_dr: &BTreeSet<u64>,
) -> Result<BTreeMap<(String, i32), u64>, DrillError> {
    let first_on_dr = ledger
        .produced
        .iter()
        .position(|r| r.cluster == plan.dr.mm2_alias)
        .unwrap_or(ledger.produced.len());
    let after_failback: BTreeSet<u64> = ledger.produced[first_on_dr..]
        .iter()
        .filter(|r| r.cluster == plan.primary.mm2_alias)
        .map(|r| r.seq)
        .collect();
    let on_dr = on_dr.clone();
    let bootstrap = plan.primary.bootstrap_servers.clone();
    let topics: Vec<(String, i32)> = world
        .spec()
        .topics
        .iter()
        .map(|t| (t.name.clone(), t.partitions))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut out = BTreeMap::new();
        for (topic, partitions) in topics {
            for partition in 0..partitions {
                let records =
                    read_partition(&bootstrap, &topic, partition, Duration::from_secs(10))
                        .map_err(|e| {
                            DrillError::World(format!(
                                "cannot read {topic}-{partition} on the primary: {e}"
                            ))
                        })?;
                let stranded = records
                    .iter()
                    .filter_map(|r| {
                        std::str::from_utf8(r.header(SEQ_HEADER)?)
                            .ok()?
                            .parse::<u64>()
                            .ok()
                    })
                    .filter(|seq| !on_dr.contains(seq) && !after_failback.contains(seq))
                    .count() as u64;
                if stranded > 0 {
                    out.insert((topic.clone(), partition), stranded);
                }
            }
        }
        Ok(out)
    })
    .await
    .map_err(DrillError::world)?
}
