//! Batched questions, for estates of thousands of groups and tens of thousands of
//! partitions: offsets of any number of partitions from one session (ListOffsets calls of
//! 128 partitions, one request per leader each, four in flight),
//! many groups' states from one listing, and many groups' committed offsets and commits
//! with a bounded number in flight on one client per batch.
//!
//! Each answers exactly what the per-item function answers for the same item (the broker
//! tests compare them), and one item's failure stays in its own slot: a topic that does not
//! exist, a group with live members, a refused commit. Only a failure of the whole cluster
//! (unreachable, refused credentials, bad configuration) ends a batch, since asking the
//! remaining items would only wait out the same failure once per item.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::Offset;
use tokio::task::JoinSet;

use super::cluster::Cluster;
use super::error::{KafkaError, Operation};
use super::types::{GroupCommit, GroupDescription, GroupPartitions, TopicPartition, Watermarks};

/// How many groups' offset requests are in flight at once unless the caller says otherwise
/// (`--concurrency N`).
///
/// All of a batch's calls share one client (`group_offsets.rs`), so a call in flight is one
/// OffsetFetch or OffsetCommit request on the connection to its group's coordinator, not a
/// client of its own. Eight in flight hide most of the round trips (a thousand groups take
/// 125 rounds instead of a thousand) while a broker sees a handful of small requests at a
/// time from kdr, well inside what one broker serves alongside its real clients.
pub const DEFAULT_CONCURRENCY: NonZeroUsize = NonZeroUsize::new(8).expect("8 is not zero");

impl Cluster {
    /// Log start and end offsets of any number of partitions, in the order asked: one
    /// metadata request, then ListOffsets for the earliest and for the latest offsets, in
    /// calls of 128 partitions batched per leader, in time proportional to the partitions.
    ///
    /// A partition the cluster does not have is [`KafkaError::TopicNotFound`] or
    /// [`KafkaError::PartitionNotFound`] in its own slot; only a failure of the whole
    /// request (unreachable, timeout) fails the call.
    pub async fn batch_watermarks(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Result<Watermarks, KafkaError>>, KafkaError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let asked = partitions.to_vec();
        self.run(
            Operation::FetchWatermarks,
            self.operation_timeout(),
            self.meta_config(),
            move |session| {
                let (low, high) = session.list_offsets_both(&asked)?;
                Ok(asked
                    .into_iter()
                    .zip(low.into_iter().zip(high))
                    .map(|(tp, (low, high))| {
                        Ok(Watermarks {
                            topic: tp.topic,
                            partition: tp.partition,
                            low: low?,
                            high: high?,
                        })
                    })
                    .collect())
            },
        )
        .await
    }

    /// Log end offsets of any number of partitions, in the order asked, as
    /// [`Cluster::batch_watermarks`] asks them; per-partition errors as there.
    pub async fn batch_end_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Result<i64, KafkaError>>, KafkaError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let asked = partitions.to_vec();
        self.run(
            Operation::FetchEndOffsets,
            self.operation_timeout(),
            self.meta_config(),
            move |session| session.list_offsets_each(&asked, Offset::End),
        )
        .await
    }

    /// The state and live members of every asked group, in the order asked, from one
    /// listing: ListGroups to each broker, then one DescribeGroups per broker for all of
    /// its groups. Each description is what [`Cluster::group_state`] gives for that group
    /// (`Dead` for a group the cluster does not know).
    ///
    /// rdkafka 0.39 wraps no DescribeConsumerGroups; librdkafka's group listing sends the
    /// same DescribeGroups request, batched per broker, and decodes it exactly as the
    /// per-group call does. Clusters that refuse group listing (librdkafka's mock) give
    /// [`KafkaError::Unsupported`] at once.
    pub async fn batch_group_states(
        &self,
        groups: &[String],
    ) -> Result<Vec<GroupDescription>, KafkaError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let asked = groups.to_vec();
        self.run(
            Operation::DescribeGroups,
            self.operation_timeout(),
            self.meta_config(),
            move |session| session.describe_groups(&asked),
        )
        .await
    }

    /// The name of every consumer group the cluster knows, sorted, from one listing (the
    /// same requests as [`Cluster::batch_group_states`]).
    pub async fn group_names(&self) -> Result<Vec<String>, KafkaError> {
        self.run(
            Operation::DescribeGroups,
            self.operation_timeout(),
            self.meta_config(),
            |session| session.group_names(),
        )
        .await
    }

    /// Each group's committed offsets, as [`Cluster::committed_offsets`] gives them, in the
    /// order asked, with at most `concurrency` groups in flight on one client
    /// (ListConsumerGroupOffsets, `group_offsets.rs`). A group the cluster answers
    /// [`KafkaError::Unsupported`] for is asked again the per-group way.
    pub async fn batch_committed_offsets(
        &self,
        asks: &[GroupPartitions],
        concurrency: NonZeroUsize,
    ) -> Vec<Result<Vec<(TopicPartition, Option<i64>)>, KafkaError>> {
        let mut answers = self.fetch_group_offsets(asks, concurrency).await;
        let operation = |ask: &GroupPartitions| Operation::FetchCommittedOffsets {
            group: ask.group.clone(),
        };
        again_per_item(&mut answers, asks, concurrency, operation, |ask| {
            let cluster = self.clone();
            async move { cluster.committed_offsets(&ask.group, &ask.partitions).await }
        })
        .await;
        answers
    }

    /// [`Cluster::batch_committed_offsets`] without asking for the groups `unlisted` names:
    /// groups the cluster's own listing (ListGroups, [`Cluster::group_names`] or
    /// [`Cluster::batch_group_states`]) did not name, just before. A cluster lists every
    /// group it holds committed offsets for (`Empty` when it has no members), so such a
    /// group's partitions are each `None`, as OffsetFetch would answer, and a failover onto
    /// a DR cluster that has never seen the estate's groups asks nothing per group. Only a
    /// listing that answered may say a group is unlisted; without one, ask every group.
    pub async fn batch_committed_offsets_listed(
        &self,
        asks: &[GroupPartitions],
        unlisted: impl Fn(&str) -> bool,
        concurrency: NonZeroUsize,
    ) -> Vec<Result<Vec<(TopicPartition, Option<i64>)>, KafkaError>> {
        let skipped: Vec<bool> = asks.iter().map(|ask| unlisted(&ask.group)).collect();
        let asked: Vec<GroupPartitions> = asks
            .iter()
            .zip(&skipped)
            .map(|(ask, &skip)| GroupPartitions {
                group: ask.group.clone(),
                partitions: if skip {
                    Vec::new()
                } else {
                    ask.partitions.clone()
                },
            })
            .collect();
        let mut answers = self.batch_committed_offsets(&asked, concurrency).await;
        for ((answer, ask), skip) in answers.iter_mut().zip(asks).zip(skipped) {
            if skip {
                *answer = Ok(ask.partitions.iter().map(|tp| (tp.clone(), None)).collect());
            }
        }
        answers
    }

    /// Commits each group's offsets as [`Cluster::commit_offsets`] does, with at most
    /// `concurrency` groups in flight on one client (AlterConsumerGroupOffsets,
    /// `group_offsets.rs`); each group's outcome in the order given. A group with live
    /// members is refused on its own ([`KafkaError::GroupActive`]). A group the cluster
    /// answers [`KafkaError::Unsupported`] for is committed again the per-group way.
    pub async fn batch_commit_offsets(
        &self,
        commits: &[GroupCommit],
        concurrency: NonZeroUsize,
    ) -> Vec<Result<(), KafkaError>> {
        let mut answers = self.alter_group_offsets(commits, concurrency).await;
        let operation = |commit: &GroupCommit| Operation::CommitOffsets {
            group: commit.group.clone(),
        };
        again_per_item(&mut answers, commits, concurrency, operation, |commit| {
            let cluster = self.clone();
            async move { cluster.commit_offsets(&commit.group, &commit.offsets).await }
        })
        .await;
        answers
    }
}

/// Asks again, one client per item with at most `concurrency` in flight, every item whose
/// answer says the cluster does not support the batched call (the per-item functions use
/// other requests). After a failure of the whole cluster the rest is not asked.
async fn again_per_item<I, T, Fut>(
    answers: &mut [Result<T, KafkaError>],
    items: &[I],
    concurrency: NonZeroUsize,
    operation: impl Fn(&I) -> Operation,
    ask: impl Fn(I) -> Fut,
) where
    I: Clone,
    T: Send + 'static,
    Fut: Future<Output = Result<T, KafkaError>> + Send + 'static,
{
    let unsupported: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, answer)| matches!(answer, Err(KafkaError::Unsupported { .. })))
        .map(|(index, _)| index)
        .collect();
    if unsupported.is_empty() {
        return;
    }
    let again: Vec<I> = unsupported.iter().map(|&i| items[i].clone()).collect();
    let halt = Arc::new(Halt::default());
    let retried = bounded(again, concurrency, |item| {
        let halt = Arc::clone(&halt);
        // Checked when the item's turn comes (a slot is free), like the work itself.
        let checked = halt.check(|| operation(&item));
        let work = ask(item);
        async move {
            checked?;
            halt.note(work.await)
        }
    })
    .await;
    for (index, answer) in unsupported.into_iter().zip(retried) {
        answers[index] = answer;
    }
}

/// Runs `task` for every item with at most `concurrency` running at once, and returns the
/// answers in the items' order.
async fn bounded<I, T, F, Fut>(items: Vec<I>, concurrency: NonZeroUsize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let mut answers: Vec<Option<T>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    let mut waiting = items.into_iter().enumerate();
    let mut running = JoinSet::new();
    loop {
        while running.len() < concurrency.get() {
            let Some((index, item)) = waiting.next() else {
                break;
            };
            let work = task(item);
            running.spawn(async move { (index, work.await) });
        }
        match running.join_next().await {
            Some(Ok((index, answer))) => answers[index] = Some(answer),
            // Tasks are never aborted, so a join error is a panic: pass it on.
            Some(Err(error)) => std::panic::resume_unwind(error.into_panic()),
            None => break,
        }
    }
    answers
        .into_iter()
        .map(|answer| answer.expect("every task answers before the set is empty"))
        .collect()
}

/// The first failure of the whole cluster seen by a batch; the items not yet asked get it
/// without asking.
#[derive(Default)]
struct Halt(Mutex<Option<KafkaError>>);

impl Halt {
    /// `Err` for an item not yet asked once the cluster has failed as a whole.
    fn check(&self, operation: impl FnOnce() -> Operation) -> Result<(), KafkaError> {
        let first = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match first.as_ref() {
            None => Ok(()),
            Some(first) => Err(not_asked(first, operation())),
        }
    }

    /// Passes `answer` through, remembering it if it says the whole cluster failed.
    fn note<T>(&self, answer: Result<T, KafkaError>) -> Result<T, KafkaError> {
        if let Err(
            error @ (KafkaError::Unreachable { .. }
            | KafkaError::Authentication { .. }
            | KafkaError::Config { .. }),
        ) = &answer
        {
            let mut first = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            first.get_or_insert_with(|| error.clone());
        }
        answer
    }
}

/// The error for an item a batch did not ask about because the cluster had failed as a
/// whole: the same failure, for this item's operation.
fn not_asked(first: &KafkaError, operation: Operation) -> KafkaError {
    let cluster = first.cluster();
    match first {
        KafkaError::Unreachable { detail, .. } => KafkaError::Unreachable {
            cluster,
            operation,
            detail: detail.clone(),
        },
        KafkaError::Authentication { detail, .. } => KafkaError::Authentication {
            cluster,
            operation,
            detail: detail.clone(),
        },
        KafkaError::Config { detail, .. } => KafkaError::Config {
            cluster,
            operation,
            detail: detail.clone(),
        },
        other => KafkaError::Client {
            cluster,
            operation,
            detail: format!("not asked after an earlier failure: {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::kafka::ClusterRole;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bounded_keeps_the_order_and_never_exceeds_the_concurrency() {
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let answers = bounded((0..50).collect(), NonZeroUsize::new(3).expect("3"), |i| {
            let (now, peak) = (Arc::clone(&now), Arc::clone(&peak));
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(running, Ordering::SeqCst);
                tokio::task::yield_now().await;
                now.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(answers, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=3).contains(&peak), "{peak}");
    }

    #[test]
    fn after_a_cluster_wide_failure_the_rest_is_not_asked_and_says_why() {
        let halt = Halt::default();
        let group = |name: &str| Operation::CommitOffsets {
            group: name.to_owned(),
        };
        let refused: Result<(), KafkaError> = Err(KafkaError::GroupActive {
            cluster: ClusterRole::Dr,
            operation: group("a"),
            group: "a".to_owned(),
            detail: "live".to_owned(),
        });
        assert!(halt.note(refused).is_err());
        assert_eq!(halt.check(|| group("b")), Ok(()));
        let down: Result<(), KafkaError> = Err(KafkaError::Unreachable {
            cluster: ClusterRole::Dr,
            operation: group("b"),
            detail: "connection refused".to_owned(),
        });
        assert!(halt.note(down).is_err());
        let skipped = halt.check(|| group("c")).expect_err("halted");
        assert_eq!(
            skipped.to_string(),
            "commit offsets of group c on the dr cluster: cluster unreachable: connection refused"
        );
    }
}
