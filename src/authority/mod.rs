//! Write authority: which cluster owns writes for a plan, visibly, on the clusters themselves.
//!
//! Each cluster kdr can reach holds a record in the compacted topic `__kdr_authority` (a `__`
//! name, so MirrorMaker 2's default `topics.exclude` never replicates it), keyed by plan name:
//! owner, epoch, and the run, operator and time that set it. A failover's declaration moves
//! authority to DR with the epoch plus one; the end of a failback moves it back. When both
//! clusters' records claim writes for themselves, that is split brain, and every command says so.
//!
//! # One run wins each epoch
//!
//! Two operators on two machines (two log directories, so two run locks) may start the same
//! failover at once. Before a run moves authority from epoch N to N+1 it appends a
//! [`ClaimRecord`] for N+1, naming the N it supersedes, to `__kdr_authority` on the cluster
//! that takes authority (DR for a failover, the primary for a failback: the other side may be
//! dead), with `acks=all` and an idempotent producer, then reads the partition back. The
//! **first claim for N+1 in log order wins**; every run reads the same log, so every run reaches
//! the same verdict without transactions (Nisshi refuses them) or any other coordination. A run
//! that finds a claim for N+1 already there does not write one: it has won already (a resumed
//! run finds its own) or it has lost, and the loser changes nothing else on any cluster. (The
//! idempotent producer keeps a retried send from writing a claim twice; a duplicate could not
//! change the verdict anyway, as it lands after the original.)
//!
//! Compaction keeps only the *last* record of each key, so the key decides whether the verdict
//! survives it:
//! - Keyed like the current-state record (the plan name), a claim would replace that record and
//!   the next claim would replace the claim: the contest would be unreadable after compaction.
//! - Keyed `<plan>/claim/<epoch>`, the second claim for an epoch would make compaction drop the
//!   first, and the loser would read as the winner.
//! - So every claim gets a key no other record ever uses, `<plan>/claim/<epoch>/<run id>/<nonce>`
//!   (the nonce is fresh at every write, so even a run writing twice makes two keys). Compaction
//!   only removes a record when a later record has the same key, and no record does: every
//!   claim stays, at the offset it was written at (compaction never renumbers), and "first in
//!   log order" reads the same before and after the cleaner runs. kdr never writes tombstones
//!   for claim keys. (A `cleanup.policy` of `compact,delete` with a retention would delete old
//!   claims by age; kdr creates the topic `compact` only, and an operator must keep it so.)
//!
//! The claim is taken at the declaration (the human gate, normally a plan's first step), or at
//! the end of a failback that has no declaration. Put `declare` first: a loser then stops
//! before any step has touched a cluster.

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

    /// Neither cluster could be read: nobody can say who owns writes.
    pub fn unknown(&self) -> bool {
        matches!(
            (&self.primary, &self.dr),
            (
                ClusterView::Unreadable { .. },
                ClusterView::Unreadable { .. }
            )
        )
    }

    pub fn summary(&self) -> String {
        if let (ClusterView::Unreadable { reason: p }, ClusterView::Unreadable { reason: d }) =
            (&self.primary, &self.dr)
        {
            return format!(
                "write authority unknown: no cluster could be read (primary: {p}; dr: {d})"
            );
        }
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
    append(cluster, record.plan.as_bytes(), record, false).await
}

/// Append to `__kdr_authority`; `idempotent` for claims (see [`Cluster::produce_one_idempotent`]).
async fn append(
    cluster: &Cluster,
    key: &[u8],
    record: &impl Serialize,
    idempotent: bool,
) -> Result<i64, KafkaError> {
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
    if idempotent {
        cluster.produce_one_idempotent(TOPIC, key, &value).await
    } else {
        cluster.produce_one(TOPIC, key, &value).await
    }
}

/// A run's bid for an epoch, appended on the cluster that takes authority. See the module
/// docs for why the first one in log order wins and why compaction cannot change that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRecord {
    pub v: u32,
    pub plan: String,
    /// The epoch this claim bids for.
    pub epoch: u64,
    /// The epoch it replaces: the highest the run read when it started.
    pub supersedes: u64,
    /// The cluster that would own writes.
    pub owner: Role,
    pub direction: Direction,
    pub run_id: String,
    pub operator: String,
    pub host: String,
    /// RFC 3339 UTC.
    pub at: String,
}

impl ClaimRecord {
    /// Who made the claim, for a person: `alice on laptop-7, run R, claimed at T`.
    pub fn who(&self) -> String {
        format!(
            "{} on {}, run {}, claimed at {}",
            self.operator, self.host, self.run_id, self.at
        )
    }
}

/// The key prefix of every claim of a plan; a claim's key is this, the epoch, the run id and
/// a nonce, so no two records ever share one.
fn claim_prefix(plan: &str) -> String {
    format!("{plan}/claim/")
}

fn claim_key(claim: &ClaimRecord) -> String {
    use std::hash::{BuildHasher, RandomState};
    let nonce = RandomState::new().hash_one((&claim.run_id, std::process::id(), &claim.at));
    format!(
        "{}{}/{}/{nonce:016x}",
        claim_prefix(&claim.plan),
        claim.epoch,
        claim.run_id
    )
}

/// One claim as read, with where it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlacedClaim {
    pub offset: i64,
    pub claim: ClaimRecord,
}

/// Every claim of this plan on one cluster, in log order.
pub async fn read_claims(cluster: &Cluster, plan: &str) -> Result<Vec<PlacedClaim>, KafkaError> {
    let options = ReadOptions {
        timeout: None,
        allow_partial: false,
    };
    let read = match cluster.read_to_end(TOPIC, 0, options).await {
        Ok(read) => read,
        Err(KafkaError::TopicNotFound { .. } | KafkaError::PartitionNotFound { .. }) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let prefix = claim_prefix(plan);
    let mut claims = Vec::new();
    for r in &read.records {
        if !r
            .key
            .as_deref()
            .is_some_and(|k| k.starts_with(prefix.as_bytes()))
        {
            continue;
        }
        let claim = r
            .value
            .as_deref()
            .map(serde_json::from_slice::<ClaimRecord>)
            .and_then(Result::ok)
            .filter(|c| c.plan == plan);
        match claim {
            Some(claim) => claims.push(PlacedClaim {
                offset: r.offset,
                claim,
            }),
            // A record under a claim key that is no claim: kdr cannot tell who came first.
            None => {
                return Err(KafkaError::Client {
                    cluster: cluster.role(),
                    operation: crate::kafka::Operation::ReadPartition {
                        topic: TOPIC.to_owned(),
                        partition: 0,
                    },
                    detail: format!(
                        "record at offset {} has a claim key but is not a claim of plan {plan}",
                        r.offset
                    ),
                });
            }
        }
    }
    Ok(claims)
}

/// The winner of `epoch`: its first claim in log order.
pub fn first_claim(claims: &[PlacedClaim], epoch: u64) -> Option<&PlacedClaim> {
    claims
        .iter()
        .filter(|c| c.claim.epoch == epoch)
        .min_by_key(|c| c.offset)
}

/// Who made the newest move, for a run refused because of it: the run's claim when the owner
/// still holds it (it names the host), else what the state record says.
pub async fn moved_by(state: &AuthorityState, primary: &Cluster, dr: &Cluster) -> Option<String> {
    let record = state.latest()?;
    let owner = match record.owner {
        Role::Primary => primary,
        Role::Dr => dr,
    };
    let claims = read_claims(owner, &record.plan).await.unwrap_or_default();
    let claim = claims
        .iter()
        .find(|c| c.claim.epoch == record.epoch && c.claim.run_id == record.run_id);
    Some(claim.map_or_else(
        || {
            format!(
                "{} (host unknown), run {}, moved at {}",
                record.operator, record.run_id, record.at
            )
        },
        |c| c.claim.who(),
    ))
}

/// Who takes write authority, and for which run.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub plan: &'a str,
    pub owner: Role,
    pub direction: Direction,
    pub operator: &'a str,
    /// `--force`: a run that loses the claim for the next epoch bids for the one after the
    /// highest claimed (the winner of the lost one may have died before moving authority).
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// The new owner did not take the record: authority did not move.
    #[error("could not record {owner} as the write authority on {owner}: {source}")]
    NotRecorded { owner: Role, source: KafkaError },
    /// The claim could not be written or read back: nobody can say who won.
    #[error("could not claim write authority on {owner}: {source}")]
    NotClaimed { owner: Role, source: KafkaError },
    /// Another run claimed the epoch first.
    #[error(
        "write authority for epoch {} was claimed first by another run: {}",
        .winner.epoch,
        .winner.who()
    )]
    Lost { winner: Box<ClaimRecord> },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The name of the observation a run that lost a claim logs, with the winner as its data;
/// [`lost_in`] finds it again in the log.
pub const LOST: &str = "authority_lost";

/// The claim that beat the run logged in `events`, if it lost one.
pub fn lost_in(events: &[journal::Event]) -> Option<ClaimRecord> {
    events.iter().rev().find_map(|e| match &e.body {
        journal::EventBody::Observation { name, data, .. } if name == LOST => {
            serde_json::from_value(data.clone()).ok()
        }
        _ => None,
    })
}

/// The epoch after `current`'s, claimed on the cluster `claim.owner`: the winner gets the epoch
/// to move authority to; a loser gets [`MoveError::Lost`] naming the winner. Both log the
/// contest: the claims seen and the verdict.
pub async fn contest(
    recorder: &mut Recorder,
    primary: &Cluster,
    dr: &Cluster,
    current: Option<&AuthorityState>,
    claim: Claim<'_>,
) -> Result<u64, MoveError> {
    let target = match claim.owner {
        Role::Primary => primary,
        Role::Dr => dr,
    };
    let owner = claim.owner;
    let not_claimed = |source| MoveError::NotClaimed { owner, source };
    let run_id = recorder.journal().run_id().to_owned();
    let mut supersedes = current.map_or(0, |a| a.owner().1);
    let mut claims = read_claims(target, claim.plan).await.map_err(not_claimed)?;
    loop {
        let epoch = supersedes + 1;
        if first_claim(&claims, epoch).is_none() {
            let record = ClaimRecord {
                v: RECORD_VERSION,
                plan: claim.plan.to_owned(),
                epoch,
                supersedes,
                owner,
                direction: claim.direction,
                run_id: run_id.clone(),
                operator: claim.operator.to_owned(),
                host: crate::journal::lock::hostname(),
                at: journal::now_rfc3339(),
            };
            append(target, claim_key(&record).as_bytes(), &record, true)
                .await
                .map_err(not_claimed)?;
            claims = read_claims(target, claim.plan).await.map_err(not_claimed)?;
        }
        let Some(first) = first_claim(&claims, epoch) else {
            return Err(not_claimed(KafkaError::Client {
                cluster: target.role(),
                operation: crate::kafka::Operation::ReadPartition {
                    topic: TOPIC.to_owned(),
                    partition: 0,
                },
                detail: format!("the claim for epoch {epoch} was written but not read back"),
            }));
        };
        let winner = first.claim.clone();
        let bids: Vec<&PlacedClaim> = claims.iter().filter(|c| c.claim.epoch == epoch).collect();
        recorder.observe(
            "authority_claims",
            format!(
                "{} claim(s) for epoch {epoch} on {owner}; the first, at offset {}, is {}",
                bids.len(),
                first.offset,
                winner.who()
            ),
            &bids,
        )?;
        if winner.run_id == run_id {
            recorder.decide(
                "kdr",
                format!("take write authority for epoch {epoch}"),
                format!("this run's claim is the first for epoch {epoch} on {owner}"),
                &winner,
            )?;
            return Ok(epoch);
        }
        if claim.force {
            let highest = claims.iter().map(|c| c.claim.epoch).max().unwrap_or(epoch);
            recorder.decide(
                claim.operator,
                format!("claim past run {}'s claim for epoch {epoch}", winner.run_id),
                format!(
                    "--force: bid for epoch {} although {} won epoch {epoch}",
                    highest + 1,
                    winner.who()
                ),
                &winner,
            )?;
            supersedes = highest;
            continue;
        }
        recorder.decide(
            "kdr",
            format!("give way to run {} for epoch {epoch}", winner.run_id),
            format!(
                "its claim is the first for epoch {epoch} on {owner}: {}",
                winner.who()
            ),
            &winner,
        )?;
        recorder.observe(
            LOST,
            format!("write authority for epoch {epoch} went to {}", winner.who()),
            &winner,
        )?;
        return Err(MoveError::Lost {
            winner: Box::new(winner),
        });
    }
}

/// Claim the next epoch on `claim.owner` and, when this run wins it, record `claim.owner` as
/// the write authority on both clusters. Returns the new epoch.
pub async fn claim_and_move(
    recorder: &mut Recorder,
    primary: &Cluster,
    dr: &Cluster,
    current: Option<&AuthorityState>,
    claim: Claim<'_>,
) -> Result<u64, MoveError> {
    let epoch = contest(recorder, primary, dr, current, claim).await?;
    move_authority(recorder, primary, dr, epoch, claim).await?;
    Ok(epoch)
}

/// Record `claim.owner` as the write authority on both clusters at `epoch` (won by
/// [`contest`]). The new owner must take the record; the other side is best effort (it may be
/// down), and what happened there is logged.
pub async fn move_authority(
    recorder: &mut Recorder,
    primary: &Cluster,
    dr: &Cluster,
    epoch: u64,
    claim: Claim<'_>,
) -> Result<(), MoveError> {
    let owner = claim.owner;
    let record = AuthorityRecord {
        v: RECORD_VERSION,
        plan: claim.plan.to_owned(),
        owner,
        epoch,
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
    Ok(())
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

    /// Two mock clusters (librdkafka's in-process cluster) and clients for them.
    struct Pair {
        _mocks:
            [rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>; 2],
        primary: Cluster,
        dr: Cluster,
    }

    fn pair() -> Pair {
        use rdkafka::mocking::MockCluster;

        use crate::kafka::{ClusterRole, ClusterSpec};

        let mocks = [
            MockCluster::new(1).expect("mock primary"),
            MockCluster::new(1).expect("mock dr"),
        ];
        let bound = std::time::Duration::from_secs(5);
        let client = |role, mock: &MockCluster<'_, _>| {
            Cluster::new(ClusterSpec::new(role, mock.bootstrap_servers()), bound).expect("client")
        };
        Pair {
            primary: client(ClusterRole::Primary, &mocks[0]),
            dr: client(ClusterRole::Dr, &mocks[1]),
            _mocks: mocks,
        }
    }

    fn recorder(dir: &std::path::Path, run_id: &str) -> (Recorder, std::path::PathBuf) {
        // A resumed run writes a second log under the same run id.
        let log = (0..)
            .map(|n| dir.join(format!("{run_id}-{n}.jsonl")))
            .find(|p| !p.exists())
            .expect("a free name");
        let recorder = Recorder::new(
            journal::Journal::create(&log, run_id).expect("log"),
            Vec::new(),
            crate::plan::Secrets::new(Vec::new()),
        );
        (recorder, log)
    }

    fn claim(owner: Role, direction: Direction, operator: &str) -> Claim<'_> {
        Claim {
            plan: "p",
            owner,
            direction,
            operator,
            force: false,
        }
    }

    fn what(events: &[journal::Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match &e.body {
                journal::EventBody::Decision { what, .. } => format!("decision: {what}"),
                journal::EventBody::Observation { name, .. } => format!("observation: {name}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_move_claims_then_records_the_next_epoch_on_both_clusters_and_logs_both() {
        let pair = pair();
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut recorder, log) = recorder(dir.path(), "r2");
        let before = AuthorityState {
            primary: ClusterView::NeverRecorded,
            dr: ClusterView::Recorded {
                record: record(Role::Dr, 1),
            },
        };
        let claim = claim(Role::Primary, Direction::Failback, "alice");
        let epoch = claim_and_move(&mut recorder, &pair.primary, &pair.dr, Some(&before), claim)
            .await
            .expect("moved");
        assert_eq!(epoch, 2);
        let after = read_both(&pair.primary, &pair.dr, "p").await;
        assert_eq!(after.owner(), (Role::Primary, 2));
        assert_eq!(
            after.primary, after.dr,
            "both clusters hold the same record"
        );
        assert_eq!(after.latest().map(|r| r.run_id.as_str()), Some("r2"));
        let events = journal::read(&log).expect("read").events;
        assert_eq!(
            what(&events),
            [
                "observation: authority_claims",
                "decision: take write authority for epoch 2",
                "decision: move write authority to primary (epoch 2)"
            ]
        );
        // The claim lives on the cluster taking authority only, and never under the plan's key.
        let claims = read_claims(&pair.primary, "p").await.expect("claims");
        assert_eq!(
            claims
                .iter()
                .map(|c| (c.claim.epoch, c.claim.supersedes, c.claim.run_id.as_str()))
                .collect::<Vec<_>>(),
            [(2, 1, "r2")]
        );
        assert_eq!(read_claims(&pair.dr, "p").await.expect("claims"), []);
    }

    #[tokio::test]
    async fn two_runs_racing_for_an_epoch_have_one_winner_and_the_loser_moves_nothing() {
        let pair = pair();
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut alice, _) = recorder(dir.path(), "ra");
        let (mut bob, bob_log) = recorder(dir.path(), "rb");
        let (a, b) = tokio::join!(
            claim_and_move(
                &mut alice,
                &pair.primary,
                &pair.dr,
                None,
                claim(Role::Dr, Direction::Failover, "alice")
            ),
            claim_and_move(
                &mut bob,
                &pair.primary,
                &pair.dr,
                None,
                claim(Role::Dr, Direction::Failover, "bob")
            ),
        );
        let claims = read_claims(&pair.dr, "p").await.expect("claims");
        let first = first_claim(&claims, 1).expect("a claim for epoch 1");
        let (won, lost) = if first.claim.run_id == "ra" {
            (a, b)
        } else {
            (b, a)
        };
        assert_eq!(won.expect("the first claim wins"), 1);
        let Err(MoveError::Lost { winner }) = lost else {
            panic!("the second claim loses: {lost:?}")
        };
        assert_eq!(*winner, first.claim);
        let state = read_both(&pair.primary, &pair.dr, "p").await;
        assert_eq!(
            state.latest().map(|r| (r.epoch, r.run_id.as_str())),
            Some((1, first.claim.run_id.as_str())),
            "only the winner's record is there"
        );

        // A later run finds the claim and gives way without writing one; a resume of the
        // winner (the same run id) finds its own and keeps it.
        let (mut carol, carol_log) = recorder(dir.path(), "rc");
        let late = contest(
            &mut carol,
            &pair.primary,
            &pair.dr,
            None,
            claim(Role::Dr, Direction::Failover, "carol"),
        )
        .await;
        assert!(matches!(late, Err(MoveError::Lost { .. })), "{late:?}");
        assert_eq!(read_claims(&pair.dr, "p").await.expect("claims"), claims);
        let carol_events = journal::read(&carol_log).expect("read").events;
        assert_eq!(lost_in(&carol_events).as_ref(), Some(&first.claim));
        let (mut again, _) = recorder(dir.path(), &first.claim.run_id);
        let resumed = contest(
            &mut again,
            &pair.primary,
            &pair.dr,
            None,
            claim(Role::Dr, Direction::Failover, &first.claim.operator),
        )
        .await;
        assert_eq!(resumed.expect("the winner keeps its claim"), 1);
        assert_eq!(read_claims(&pair.dr, "p").await.expect("claims"), claims);
        if first.claim.run_id == "ra" {
            assert!(lost_in(&journal::read(&bob_log).expect("read").events).is_some());
        }
    }

    #[tokio::test]
    async fn a_forced_run_bids_past_a_claim_whose_winner_never_moved_authority() {
        let pair = pair();
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut gone, _) = recorder(dir.path(), "gone");
        contest(
            &mut gone,
            &pair.primary,
            &pair.dr,
            None,
            claim(Role::Dr, Direction::Failover, "alice"),
        )
        .await
        .expect("claimed, then the laptop died");
        let (mut forced, _) = recorder(dir.path(), "forced");
        let forced_claim = Claim {
            force: true,
            ..claim(Role::Dr, Direction::Failover, "bob")
        };
        let epoch = claim_and_move(&mut forced, &pair.primary, &pair.dr, None, forced_claim)
            .await
            .expect("forced past");
        assert_eq!(epoch, 2);
        assert_eq!(
            read_both(&pair.primary, &pair.dr, "p").await.owner(),
            (Role::Dr, 2)
        );
    }

    /// Compaction keeps the last record of each key. Claims never share a key, with each other
    /// or with the state record, so the cleaner leaves every claim where it was.
    #[test]
    fn compaction_cannot_change_the_first_claim_for_an_epoch() {
        let placed = |offset, run: &str, epoch| PlacedClaim {
            offset,
            claim: ClaimRecord {
                v: 1,
                plan: "p".into(),
                epoch,
                supersedes: epoch - 1,
                owner: Role::Dr,
                direction: Direction::Failover,
                run_id: run.into(),
                operator: run.into(),
                host: "h".into(),
                at: "2026-11-21T00:00:00.000Z".into(),
            },
        };
        // (offset, key, claim) as appended: state records under the plan's key between claims.
        let log: Vec<(String, Option<PlacedClaim>)> = vec![
            ("p".into(), None),
            (claim_key(&placed(1, "a", 1).claim), Some(placed(1, "a", 1))),
            (claim_key(&placed(2, "b", 1).claim), Some(placed(2, "b", 1))),
            ("p".into(), None),
            // The same run claiming again (a resume) still writes a key of its own.
            (claim_key(&placed(4, "a", 1).claim), Some(placed(4, "a", 1))),
            (claim_key(&placed(5, "c", 2).claim), Some(placed(5, "c", 2))),
            ("p".into(), None),
        ];
        let keys: std::collections::BTreeSet<&String> = log.iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 5, "only the three state records share a key");
        let compacted: Vec<PlacedClaim> = log
            .iter()
            .enumerate()
            .filter(|(i, (key, _))| !log[i + 1..].iter().any(|(later, _)| later == key))
            .filter_map(|(_, (_, c))| c.clone())
            .collect();
        let all: Vec<PlacedClaim> = log.iter().filter_map(|(_, c)| c.clone()).collect();
        assert_eq!(compacted, all, "compaction removes no claim");
        for claims in [&all, &compacted] {
            assert_eq!(
                first_claim(claims, 1).map(|c| c.claim.run_id.as_str()),
                Some("a")
            );
            assert_eq!(
                first_claim(claims, 2).map(|c| c.claim.run_id.as_str()),
                Some("c")
            );
            assert_eq!(first_claim(claims, 3), None);
        }
    }

    #[test]
    fn authority_is_unknown_when_no_cluster_could_be_read() {
        let down = |r: &str| ClusterView::Unreadable { reason: r.into() };
        let state = AuthorityState {
            primary: down("no answer"),
            dr: down("refused"),
        };
        assert!(state.unknown());
        assert_eq!(
            state.summary(),
            "write authority unknown: no cluster could be read (primary: no answer; dr: refused)"
        );
        let half = AuthorityState {
            primary: down("no answer"),
            dr: ClusterView::NeverRecorded,
        };
        assert!(!half.unknown());
        assert_eq!(
            half.summary(),
            "primary owns writes (no authority recorded yet)"
        );
    }
}
