//! The batched Kafka paths against a real broker: their answers are the per-item functions'
//! answers (compared at a small size), and 20 000 partitions' watermarks come back in well
//! under a second (the figure is printed; a benchmark, not a timed assertion).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use kdr::kafka::{ClusterRole, GroupCommit, GroupPartitions, KafkaError, TopicPartition};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, TopicPartitionList};

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

/// Groups committed by `batch_commit_offsets` (one client, AlterConsumerGroupOffsets) resume
/// exactly there: a plain librdkafka consumer of each group, which kdr never was, reads first
/// the record at the committed offset.
#[test]
fn a_consumer_resumes_exactly_where_the_batched_commit_put_its_group() {
    let broker = Nisshi::start("dr", Storage::Memory);
    let cluster = broker.cluster(ClusterRole::Dr);
    create_topics(&cluster, &["orders".to_owned()], 2);
    produce(&broker.bootstrap(), "orders", 0, 10);
    produce(&broker.bootstrap(), "orders", 1, 10);
    let commits: Vec<GroupCommit> = (0..5_i64)
        .map(|g| GroupCommit {
            group: format!("resumer-{g}"),
            offsets: vec![
                (TopicPartition::new("orders", 0), 2 + g),
                (TopicPartition::new("orders", 1), 7 - g),
            ],
        })
        .collect();
    let answers =
        block_on(cluster.batch_commit_offsets(&commits, NonZeroUsize::MIN.saturating_add(2)));
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");

    for commit in &commits {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", &commit.group)
            .set("enable.auto.commit", "false")
            // Were the commit lost, the consumer would start at 0, never at the commit.
            .set("auto.offset.reset", "earliest")
            .set("log_level", "0")
            .create()
            .expect("consumer");
        let mut first: HashMap<i32, i64> = HashMap::new();
        for (tp, _) in &commit.offsets {
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition(&tp.topic, tp.partition);
            // The committed offset, as any consumer of the group resumes from it.
            consumer.assign(&assignment).expect("assign");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                assert!(
                    Instant::now() < deadline,
                    "{}: no record from {tp}",
                    commit.group
                );
                if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                    let message = message.expect("record");
                    first.insert(message.partition(), message.offset());
                    break;
                }
            }
        }
        let want: HashMap<i32, i64> = commit
            .offsets
            .iter()
            .map(|(tp, offset)| (tp.partition, *offset))
            .collect();
        assert_eq!(first, want, "{}", commit.group);
    }
}

/// The batched fetch answers a topic or partition the cluster lacks, and a group that never
/// committed, as the per-group function does.
#[test]
fn batched_fetches_of_missing_topics_and_unknown_groups_match_the_per_group_function() {
    let broker = Nisshi::start("dr", Storage::Memory);
    let cluster = broker.cluster(ClusterRole::Dr);
    create_topics(&cluster, &["orders".to_owned()], 2);
    block_on(cluster.commit_offsets("known", &[(TopicPartition::new("orders", 1), 4)]))
        .expect("commit");
    let asks: Vec<GroupPartitions> = [
        ("known", vec![("orders", 0), ("orders", 1)]),
        ("known", vec![("gone", 0)]),
        ("known", vec![("orders", 9)]),
        ("stranger", vec![("orders", 0), ("orders", 0)]),
    ]
    .into_iter()
    .map(|(group, partitions)| GroupPartitions {
        group: group.to_owned(),
        partitions: partitions
            .into_iter()
            .map(|(t, p)| TopicPartition::new(t, p))
            .collect(),
    })
    .collect();
    block_on(async {
        let batched = cluster
            .batch_committed_offsets(&asks, NonZeroUsize::MIN)
            .await;
        for (ask, batched) in asks.iter().zip(batched) {
            let one = cluster.committed_offsets(&ask.group, &ask.partitions).await;
            assert_eq!(batched, one, "{ask:?}");
        }
    });
}

/// Issue 10: groups the cluster's listing does not name are answered without a request, and
/// that answer is the broker's own. It holds because a broker lists every group it holds
/// offsets for, however they were committed: by a consumer that never joined, and by the
/// admin API kdr commits with.
#[test]
fn a_group_the_listing_does_not_name_answers_as_the_broker_would_without_a_request() {
    let broker = Nisshi::start("dr", Storage::Memory);
    let cluster = broker.cluster(ClusterRole::Dr);
    create_topics(&cluster, &["orders".to_owned()], 2);
    let orders = |p| TopicPartition::new("orders", p);
    block_on(async {
        cluster
            .commit_offsets("assigned", &[(orders(1), 4)])
            .await
            .expect("commit");
        let admin = [GroupCommit {
            group: "administered".to_owned(),
            offsets: vec![(orders(0), 7)],
        }];
        for answer in cluster
            .batch_commit_offsets(&admin, NonZeroUsize::MIN)
            .await
        {
            answer.expect("admin commit");
        }
    });
    let names = block_on(cluster.group_names()).expect("listing");
    for group in ["assigned", "administered"] {
        assert!(names.iter().any(|n| n == group), "{group} in {names:?}");
    }
    let asks: Vec<GroupPartitions> = ["assigned", "administered", "stranger"]
        .into_iter()
        .map(|group| GroupPartitions {
            group: group.to_owned(),
            partitions: vec![orders(0), orders(1)],
        })
        .collect();
    block_on(async {
        let listed = cluster
            .batch_committed_offsets_listed(
                &asks,
                |group| !names.iter().any(|n| n == group),
                NonZeroUsize::MIN,
            )
            .await;
        for (ask, listed) in asks.iter().zip(listed) {
            let one = cluster.committed_offsets(&ask.group, &ask.partitions).await;
            assert_eq!(listed, one, "{ask:?}");
        }
    });
}
