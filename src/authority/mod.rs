//! Write authority: which cluster owns writes for a plan, visibly, on the clusters themselves.
//!
//! Each cluster kdr can reach holds a record in the compacted topic `__kdr_authority` (a `__`
//! name, so MirrorMaker 2's default `topics.exclude` never replicates it), keyed by plan name:
//! owner, epoch, and the run, operator and time that set it. A failover's declaration moves
//! authority to DR with the epoch plus one; the end of a failback moves it back. When both
//! clusters' records claim writes for themselves, that is split brain, and every command says so.

use serde::{Deserialize, Serialize};

use crate::journal::{self, JournalError, Recorder};
use crate::kafka::{Cluster, KafkaError, ReadOptions};
use crate::plan::{Direction, Role};

pub const TOPIC: &str = "__kdr_authority";
pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityRecord {
    pub v: u32,
    pub plan: String,
    /// The cluster that owns writes.
    pub owner: Role,
    /// Grows by one at every move; the highest epoch seen is the truth.
    pub epoch: u64,
    pub run_id: String,
    pub operator: String,
    pub direction: Direction,
    /// RFC 3339 UTC.
    pub at: String,
}

/// What one cluster says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClusterView {
    Recorded {
        record: AuthorityRecord,
    },
    /// No record for this plan: kdr never moved authority here.
    NeverRecorded,
    Unreadable {
        reason: String,
    },
}

impl ClusterView {
    pub fn record(&self) -> Option<&AuthorityRecord> {
        match self {
            ClusterView::Recorded { record } => Some(record),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorityState {
    pub primary: ClusterView,
    pub dr: ClusterView,
}

impl AuthorityState {
    /// Who owns writes: the record with the highest epoch; with no record anywhere, the primary
    /// at epoch 0 (a pair that never failed over).
    pub fn owner(&self) -> (Role, u64) {
        [self.primary.record(), self.dr.record()]
            .into_iter()
            .flatten()
            .max_by_key(|r| r.epoch)
            .map_or((Role::Primary, 0), |r| (r.owner, r.epoch))
    }

    pub fn latest(&self) -> Option<&AuthorityRecord> {
        [self.primary.record(), self.dr.record()]
            .into_iter()
            .flatten()
            .max_by_key(|r| r.epoch)
    }

    /// Both clusters claim writes for themselves: the primary's record names the primary while
    /// DR's names DR. After a failover with the primary dead, this is what the primary says when
    /// it comes back, and its producers must be fenced.
    pub fn split_brain(&self) -> Option<String> {
        let (p, d) = (self.primary.record()?, self.dr.record()?);
        (p.owner == Role::Primary && d.owner == Role::Dr).then(|| {
            format!(
                "SPLIT BRAIN: primary claims write authority (epoch {}, {}) and dr claims it too (epoch {}, {}); epoch {} is the newer: keep producers off the other cluster",
                p.epoch,
                p.at,
                d.epoch,
                d.at,
                p.epoch.max(d.epoch)
            )
        })
    }

    pub fn summary(&self) -> String {
        let (owner, epoch) = self.owner();
        match self.latest() {
            Some(r) => format!(
                "{owner} owns writes (epoch {epoch}, set by {} in run {} at {})",
                r.operator, r.run_id, r.at
            ),
            None => "primary owns writes (no authority recorded yet)".to_owned(),
        }
    }
}

/// Read this plan's record on one cluster (last record for the plan wins, in log order).
pub async fn read(cluster: &Cluster, plan: &str) -> ClusterView {
    match cluster
        .read_to_end(
            TOPIC,
            0,
            ReadOptions {
                timeout: None,
                allow_partial: false,
            },
        )
        .await
    {
        Ok(read) => {
            let mut latest = None;
            for r in &read.records {
                if r.key.as_deref() != Some(plan.as_bytes()) {
                    continue;
                }
                match r
                    .value
                    .as_deref()
                    .map(serde_json::from_slice::<AuthorityRecord>)
                {
                    Some(Ok(record)) => latest = Some(record),
                    // A tombstone clears the plan's record.
                    None => latest = None,
                    Some(Err(e)) => {
                        return ClusterView::Unreadable {
                            reason: format!(
                                "record at offset {} of {TOPIC} is not an authority record: {e}",
                                r.offset
                            ),
                        };
                    }
                }
            }
            latest.map_or(ClusterView::NeverRecorded, |record| ClusterView::Recorded {
                record,
            })
        }
        Err(KafkaError::TopicNotFound { .. } | KafkaError::PartitionNotFound { .. }) => {
            ClusterView::NeverRecorded
        }
        Err(e) => ClusterView::Unreadable {
            reason: e.to_string(),
        },
    }
}

pub async fn read_both(primary: &Cluster, dr: &Cluster, plan: &str) -> AuthorityState {
    let (primary, dr) = tokio::join!(read(primary, plan), read(dr, plan));
    AuthorityState { primary, dr }
}

/// Write a record to one cluster, creating the compacted topic where the cluster allows it
/// (elsewhere the broker's auto-creation, or an operator, must have made it).
pub async fn write(cluster: &Cluster, record: &AuthorityRecord) -> Result<i64, KafkaError> {
    let configs = [("cleanup.policy".to_owned(), "compact".to_owned())];
    match cluster.create_topic(TOPIC, 1, -1, &configs).await {
        Ok(_) | Err(KafkaError::Unsupported { .. } | KafkaError::Timeout { .. }) => {}
        Err(e) => return Err(e),
    }
    let value = serde_json::to_vec(record).map_err(|e| KafkaError::Client {
        cluster: cluster.role(),
        operation: crate::kafka::Operation::Produce {
            topic: TOPIC.to_owned(),
        },
        detail: e.to_string(),
    })?;
    cluster
        .produce_one(TOPIC, record.plan.as_bytes(), &value)
        .await
}

/// Who takes write authority, and for which run.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub plan: &'a str,
    pub owner: Role,
    pub direction: Direction,
    pub operator: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// The new owner did not take the record: authority did not move.
    #[error("could not record {owner} as the write authority on {owner}: {source}")]
    NotRecorded { owner: Role, source: KafkaError },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Record `claim.owner` as the write authority on both clusters, with the epoch after the one
/// in `current`. The new owner must take the record; the other side is best effort (it may be
/// down), and what happened there is logged. Returns the new epoch.
pub async fn move_authority(
    recorder: &mut Recorder,
    primary: &Cluster,
    dr: &Cluster,
    current: Option<&AuthorityState>,
    claim: Claim<'_>,
) -> Result<u64, MoveError> {
    let epoch = current.map_or(0, |a| a.owner().1);
    let owner = claim.owner;
    let record = AuthorityRecord {
        v: RECORD_VERSION,
        plan: claim.plan.to_owned(),
        owner,
        epoch: epoch + 1,
        run_id: recorder.journal().run_id().to_owned(),
        operator: claim.operator.to_owned(),
        direction: claim.direction,
        at: journal::now_rfc3339(),
    };
    let (owner_cluster, other_cluster, other) = match owner {
        Role::Primary => (primary, dr, Role::Dr),
        Role::Dr => (dr, primary, Role::Primary),
    };
    if let Err(source) = write(owner_cluster, &record).await {
        let err = MoveError::NotRecorded { owner, source };
        recorder.observe("authority_write", err.to_string(), serde_json::Value::Null)?;
        return Err(err);
    }
    let detail = match write(other_cluster, &record).await {
        Ok(_) => format!("{other} records that {owner} owns writes"),
        Err(e) => format!(
            "{other} could not be told ({e}); until it is, it may still claim writes: split brain will be reported"
        ),
    };
    recorder.decide(
        claim.operator,
        format!("move write authority to {owner} (epoch {})", record.epoch),
        detail,
        &record,
    )?;
    Ok(record.epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(owner: Role, epoch: u64) -> AuthorityRecord {
        AuthorityRecord {
            v: 1,
            plan: "p".into(),
            owner,
            epoch,
            run_id: format!("r{epoch}"),
            operator: "alice".into(),
            direction: Direction::Failover,
            at: "2026-11-21T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn the_highest_epoch_owns_writes_and_nothing_recorded_means_primary() {
        let none = AuthorityState {
            primary: ClusterView::NeverRecorded,
            dr: ClusterView::NeverRecorded,
        };
        assert_eq!(none.owner(), (Role::Primary, 0));
        let moved = AuthorityState {
            primary: ClusterView::Recorded {
                record: record(Role::Dr, 1),
            },
            dr: ClusterView::Recorded {
                record: record(Role::Dr, 1),
            },
        };
        assert_eq!(moved.owner(), (Role::Dr, 1));
        assert_eq!(moved.split_brain(), None);
    }

    #[test]
    fn both_clusters_claiming_themselves_is_split_brain() {
        let state = AuthorityState {
            primary: ClusterView::Recorded {
                record: record(Role::Primary, 0),
            },
            dr: ClusterView::Recorded {
                record: record(Role::Dr, 1),
            },
        };
        assert_eq!(state.owner(), (Role::Dr, 1));
        assert!(state.split_brain().is_some_and(|m| {
            m.starts_with("SPLIT BRAIN: primary claims write authority (epoch 0")
        }));
        let unreadable = AuthorityState {
            primary: ClusterView::Unreadable {
                reason: "down".into(),
            },
            dr: ClusterView::Recorded {
                record: record(Role::Dr, 1),
            },
        };
        assert_eq!(unreadable.split_brain(), None);
    }

    #[tokio::test]
    async fn a_move_records_the_next_epoch_on_both_clusters_and_logs_the_decision() {
        use rdkafka::mocking::MockCluster;

        use crate::kafka::{ClusterRole, ClusterSpec};

        let (primary_mock, dr_mock) = (
            MockCluster::new(1).expect("mock primary"),
            MockCluster::new(1).expect("mock dr"),
        );
        let bound = std::time::Duration::from_secs(5);
        let primary = Cluster::new(
            ClusterSpec::new(ClusterRole::Primary, primary_mock.bootstrap_servers()),
            bound,
        )
        .expect("primary client");
        let dr = Cluster::new(
            ClusterSpec::new(ClusterRole::Dr, dr_mock.bootstrap_servers()),
            bound,
        )
        .expect("dr client");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("run.jsonl");
        let mut recorder = Recorder::new(
            journal::Journal::create(&log, "r2").expect("log"),
            Vec::new(),
            crate::plan::Secrets::new(Vec::new()),
        );
        let before = AuthorityState {
            primary: ClusterView::NeverRecorded,
            dr: ClusterView::Recorded {
                record: record(Role::Dr, 1),
            },
        };
        let claim = Claim {
            plan: "p",
            owner: Role::Primary,
            direction: Direction::Failback,
            operator: "alice",
        };
        let epoch = move_authority(&mut recorder, &primary, &dr, Some(&before), claim)
            .await
            .expect("moved");
        assert_eq!(epoch, 2);
        let after = read_both(&primary, &dr, "p").await;
        assert_eq!(after.owner(), (Role::Primary, 2));
        assert_eq!(
            after.primary, after.dr,
            "both clusters hold the same record"
        );
        assert_eq!(after.latest().map(|r| r.run_id.as_str()), Some("r2"));
        let events = journal::read(&log).expect("read").events;
        assert!(matches!(
            &events[..],
            [journal::Event { body: journal::EventBody::Decision { what, .. }, .. }]
                if what == "move write authority to primary (epoch 2)"
        ));
    }
}
