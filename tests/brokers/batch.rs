//! The batched Kafka paths against a real broker: their answers are the per-item functions'
//! answers (compared at a small size), and 20 000 partitions' watermarks come back in well
//! under a second (the figure is printed; a benchmark, not a timed assertion).

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use kdr::kafka::{ClusterRole, GroupCommit, GroupPartitions, KafkaError, TopicPartition};

use crate::harness::{Nisshi, Storage, block_on, create_topics};
use crate::mm2::produce;

/// The bound the look-ups use for one operation (`kdr lag`'s default), under which the
/// per-item watermarks of 20 000 partitions used to time out.
const LOOKUP_BOUND: Duration = Duration::from_secs(5);

fn every_partition(topics: &[String], partitions: i32) -> Vec<TopicPartition> {
    topics
        .iter()
        .flat_map(|topic| (0..partitions).map(move |p| TopicPartition::new(topic.clone(), p)))
        .collect()
}

#[test]
fn batched_offsets_match_the_per_item_answers_and_name_what_is_missing() {
    let broker = Nisshi::start("primary", Storage::Memory);
    let cluster = broker.cluster(ClusterRole::Primary);
    let topics = vec!["orders".to_owned(), "payments".to_owned()];
    create_topics(&cluster, &topics, 3);
    produce(&broker.bootstrap(), "orders", 1, 4);
    produce(&broker.bootstrap(), "payments", 2, 2);
    let present = every_partition(&topics, 3);
    let mut asked = present.clone();
    asked.insert(1, TopicPartition::new("gone", 0));
    asked.push(TopicPartition::new("orders", 7));

    block_on(async {
        let per_item = cluster.watermarks(&present).await.expect("watermarks");
        let ends = cluster.end_offsets(&present).await.expect("end offsets");
        let batched = cluster.batch_watermarks(&asked).await.expect("batch");
        let batched_ends = cluster.batch_end_offsets(&asked).await.expect("batch ends");
        assert_eq!(batched.len(), asked.len());
        assert_eq!(batched_ends.len(), asked.len());

        let found: Vec<_> = batched
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .cloned()
            .collect();
        assert_eq!(found, per_item);
        let found_ends: Vec<_> = asked
            .iter()
            .zip(&batched_ends)
            .filter_map(|(tp, r)| r.as_ref().ok().map(|end| (tp.clone(), *end)))
            .collect();
        assert_eq!(found_ends, ends);
        assert_eq!((per_item[1].low, per_item[1].high), (0, 4));

        for results in [
            batched.iter().map(|r| r.as_ref().err()).collect::<Vec<_>>(),
            batched_ends.iter().map(|r| r.as_ref().err()).collect(),
        ] {
            assert!(
                matches!(results[1], Some(KafkaError::TopicNotFound { topic, .. }) if topic == "gone"),
                "{:?}",
                results[1]
            );
            assert!(
                matches!(
                    results.last().copied().flatten(),
                    Some(KafkaError::PartitionNotFound { topic, partition: 7, partition_count: 3, .. })
                        if topic == "orders"
                ),
                "{:?}",
                results.last()
            );
        }
    });
}

#[test]
fn batched_group_reads_and_commits_match_the_per_group_functions() {
    let broker = Nisshi::start("dr", Storage::Memory);
    let cluster = broker.cluster(ClusterRole::Dr);
    let topics = vec!["orders".to_owned()];
    create_topics(&cluster, &topics, 4);
    let partitions = every_partition(&topics, 4);
    let groups: Vec<String> = (0..12).map(|i| format!("group-{i:02}")).collect();
    let commits: Vec<GroupCommit> = groups
        .iter()
        .enumerate()
        .map(|(i, group)| GroupCommit {
            group: group.clone(),
            offsets: partitions
                .iter()
                .take(1 + i % 4)
                .map(|tp| {
                    (
                        tp.clone(),
                        i64::try_from(i).expect("small") * 10 + i64::from(tp.partition),
                    )
                })
                .collect(),
        })
        .collect();
    let asks: Vec<GroupPartitions> = groups
        .iter()
        .map(|group| GroupPartitions {
            group: group.clone(),
            partitions: partitions.clone(),
        })
        .collect();
    let three = NonZeroUsize::new(3).expect("non-zero");

    block_on(async {
        let committed = cluster.batch_commit_offsets(&commits, three).await;
        assert_eq!(committed.len(), commits.len());
        for (commit, result) in commits.iter().zip(&committed) {
            assert!(result.is_ok(), "{}: {result:?}", commit.group);
        }
        let batched = cluster.batch_committed_offsets(&asks, three).await;
        assert_eq!(batched.len(), asks.len());
        for (ask, batched) in asks.iter().zip(batched) {
            let one = cluster
                .committed_offsets(&ask.group, &ask.partitions)
                .await
                .expect("per group");
            assert_eq!(batched.expect("batched"), one, "{}", ask.group);
        }

        let mut asked = groups.clone();
        asked.push("never-seen".to_owned());
        let states = cluster.batch_group_states(&asked).await.expect("states");
        assert_eq!(states.len(), asked.len());
        for (group, batched) in asked.iter().zip(states) {
            let one = cluster.group_state(group).await.expect("per group");
            assert_eq!(batched, one, "{group}");
        }
    });
}

#[test]
fn a_negative_offset_fails_its_own_group_only() {
    let broker = Nisshi::start("dr", Storage::Memory);
    let cluster = broker.cluster(ClusterRole::Dr);
    create_topics(&cluster, &["orders".to_owned()], 1);
    let tp = TopicPartition::new("orders", 0);
    let commits = [
        GroupCommit {
            group: "bad".to_owned(),
            offsets: vec![(tp.clone(), -1)],
        },
        GroupCommit {
            group: "good".to_owned(),
            offsets: vec![(tp.clone(), 0)],
        },
    ];
    let results = block_on(cluster.batch_commit_offsets(&commits, NonZeroUsize::MIN));
    assert!(
        matches!(&results[0], Err(KafkaError::Client { detail, .. }) if detail.contains("negative")),
        "{results:?}"
    );
    assert!(results[1].is_ok(), "{results:?}");
}

/// The scale figure of issue 10: watermarks of 20 topics x 1 000 partitions on one broker, the
/// per-item function against the batched one, both under the look-ups' 5 s bound.
#[test]
fn watermarks_of_twenty_thousand_partitions_come_back_well_under_a_second() {
    let broker = Nisshi::start("dr", Storage::Memory);
    let cluster = broker.cluster(ClusterRole::Dr);
    let topics: Vec<String> = (0..20).map(|i| format!("scale-{i:02}")).collect();
    let started = Instant::now();
    create_topics(&cluster, &topics, 1000);
    eprintln!("created 20 x 1000 partitions in {:?}", started.elapsed());
    produce(&broker.bootstrap(), "scale-07", 999, 3);
    let asked = every_partition(&topics, 1000);
    let bounded = cluster.with_operation_timeout(LOOKUP_BOUND).expect("bound");

    let started = Instant::now();
    let batched = block_on(bounded.batch_watermarks(&asked)).expect("batched watermarks");
    let batch_took = started.elapsed();
    assert_eq!(batched.len(), 20_000);
    let marks: Vec<_> = batched
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("every partition has watermarks");
    assert_eq!(marks[7 * 1000 + 999].high, 3, "{:?}", marks[7 * 1000 + 999]);
    assert_eq!(marks.iter().map(|m| m.high).sum::<i64>(), 3);

    let started = Instant::now();
    let per_item = block_on(bounded.watermarks(&asked));
    let per_item_took = started.elapsed();
    assert_eq!(per_item.expect("per-item watermarks"), marks);
    eprintln!(
        "watermarks of 20 000 partitions on one Nisshi broker: batch_watermarks {batch_took:?}, \
         watermarks {per_item_took:?}"
    );
}
