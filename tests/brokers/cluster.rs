//! kdr's Kafka layer against a real broker: what librdkafka's mock cannot do (topic admin, group
//! membership and states) next to the basics (produce, read, commit, read back).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kdr::kafka::{
    ClusterRole, KafkaError, Reachability, ReadOptions, TopicCreation, TopicPartition,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::harness::{Nisshi, Pair, Storage, block_on, wait_until};

#[test]
fn both_brokers_start_on_loopback_and_answer_metadata_with_their_cluster_ids() {
    let pair = Pair::start();
    for (broker, role, id) in [
        (&pair.primary, ClusterRole::Primary, "primary"),
        (&pair.dr, ClusterRole::Dr, "dr"),
    ] {
        assert!(broker.bootstrap().starts_with("127.0.0.1:"), "{broker:?}");
        let Reachability::Reachable(info) = block_on(broker.cluster(role).probe()).expect("probe")
        else {
            panic!("{broker:?} does not answer: {}", broker.output());
        };
        assert_eq!(info.cluster_id.as_deref(), Some(id));
        assert_eq!(info.brokers.len(), 1, "{info:?}");
        assert_eq!(info.controller_is_listed(), Some(true), "{info:?}");
        assert_eq!(
            format!("{}:{}", info.brokers[0].host, info.brokers[0].port),
            broker.bootstrap(),
            "advertised listener"
        );
    }
    assert_ne!(pair.primary.bootstrap(), pair.dr.bootstrap());
    eprintln!(
        "start-up: primary {:?}, dr {:?}",
        pair.primary.started_in(),
        pair.dr.started_in()
    );
}

#[test]
fn cluster_creates_lists_produces_reads_and_commits_and_reads_offsets_back() {
    let broker = Nisshi::start("primary", Storage::Memory);
    let cluster = broker.cluster(ClusterRole::Primary);
    block_on(async {
        assert_eq!(
            cluster
                .create_topic("orders", 3, 1, &[])
                .await
                .expect("create"),
            TopicCreation::Created
        );
        assert_eq!(
            cluster
                .create_topic("orders", 3, 1, &[])
                .await
                .expect("create again"),
            TopicCreation::AlreadyExists
        );
        let topics = cluster
            .topics(|name| name == "orders")
            .await
            .expect("topics");
        assert_eq!(topics.len(), 1, "{topics:?}");
        assert_eq!(topics[0].partitions, [0, 1, 2]);

        for i in 0..3 {
            let offset = cluster
                .produce_one(
                    "orders",
                    format!("k{i}").as_bytes(),
                    format!("v{i}").as_bytes(),
                )
                .await
                .expect("produce");
            assert_eq!(offset, i);
        }
        let read = cluster
            .read_to_end("orders", 0, ReadOptions::default())
            .await
            .expect("read");
        assert!(read.complete);
        assert_eq!((read.low, read.high), (0, 3));
        let values: Vec<&[u8]> = read
            .records
            .iter()
            .map(|r| r.value.as_deref().expect("value"))
            .collect();
        assert_eq!(values, [b"v0".as_slice(), b"v1", b"v2"]);
        assert_eq!(read.records[2].key.as_deref(), Some(b"k2".as_slice()));

        let tp = |p| TopicPartition::new("orders", p);
        let marks = cluster
            .watermarks(&[tp(0), tp(1)])
            .await
            .expect("watermarks");
        assert_eq!((marks[0].low, marks[0].high), (0, 3));
        assert_eq!((marks[1].low, marks[1].high), (0, 0));

        assert_eq!(
            cluster
                .committed_offsets("billing", &[tp(0)])
                .await
                .expect("none yet"),
            [(tp(0), None)]
        );
        cluster
            .commit_offsets("billing", &[(tp(0), 2), (tp(1), 0)])
            .await
            .expect("commit");
        assert_eq!(
            cluster
                .committed_offsets("billing", &[tp(0), tp(1), tp(2)])
                .await
                .expect("committed"),
            [(tp(0), Some(2)), (tp(1), Some(0)), (tp(2), None)]
        );
        // A group with offsets and no members is Empty; one never seen is not Stable either.
        let billing = cluster.group_state("billing").await.expect("state");
        assert_eq!(billing.state, "Empty", "{billing:?}");
        assert!(!billing.has_members());
        cluster.ensure_group_empty("billing").await.expect("empty");
    });
}

/// A consumer that joins `group` on `bootstrap` (subscribe) and polls until stopped, as an
/// application would.
pub struct Member {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    pub fn join(bootstrap: &str, group: &str, topic: &str, client_id: &str) -> Member {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("log_level", "0")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(50));
            }
            // Leave the group so the broker does not wait for the session to expire.
            consumer.unsubscribe();
            let _ = consumer.poll(Duration::from_millis(100));
        });
        Member {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn group_state_reports_a_live_member_and_a_commit_from_outside_is_refused() {
    let broker = Nisshi::start("dr", Storage::Memory);
    let cluster = broker.cluster(ClusterRole::Dr);
    block_on(cluster.create_topic("orders", 2, 1, &[])).expect("create");
    let member = Member::join(&broker.bootstrap(), "live", "orders", "live-consumer");
    let mut described = None;
    wait_until(Duration::from_secs(20), "the consumer to join", || {
        let desc = block_on(cluster.group_state("live")).expect("state");
        let stable = desc.state == "Stable" && desc.members.len() == 1;
        described = Some(desc);
        stable
    });
    let desc = described.expect("described");
    assert_eq!(desc.protocol_type, "consumer", "{desc:?}");
    // Nisshi 0.8.1 describes a member by its id only: client id, host, assignment and the
    // group's protocol come back empty. The id starts with the client id, which is how an
    // operator recognises the consumer in kdr's refusal.
    assert!(desc.members[0].id.starts_with("live-consumer-"), "{desc:?}");

    match block_on(cluster.ensure_group_empty("live")) {
        Err(KafkaError::GroupNotEmpty { members, .. }) => {
            assert_eq!(members.len(), 1);
            assert!(members[0].contains("live-consumer-"), "{members:?}");
        }
        other => panic!("expected GroupNotEmpty, got {other:?}"),
    }
    match block_on(cluster.commit_offsets("live", &[(TopicPartition::new("orders", 0), 0)])) {
        Err(KafkaError::GroupActive { .. }) => {}
        other => panic!("expected the broker to refuse the commit, got {other:?}"),
    }

    drop(member);
    wait_until(Duration::from_secs(20), "the group to empty", || {
        block_on(cluster.group_state("live")).is_ok_and(|d| d.state == "Empty" && !d.has_members())
    });
    block_on(cluster.commit_offsets("live", &[(TopicPartition::new("orders", 0), 0)]))
        .expect("a commit to the emptied group");
}

#[test]
fn sqlite_broker_keeps_records_and_group_offsets_across_a_restart() {
    let mut broker = Nisshi::start("primary", Storage::Sqlite);
    let tp = TopicPartition::new("orders", 0);
    block_on(async {
        let cluster = broker.cluster(ClusterRole::Primary);
        cluster
            .create_topic("orders", 1, 1, &[])
            .await
            .expect("create");
        for i in 0..3u8 {
            cluster
                .produce_one("orders", &[i], &[i])
                .await
                .expect("produce");
        }
        cluster
            .commit_offsets("g", &[(tp.clone(), 2)])
            .await
            .expect("commit");
    });
    let before = broker.bootstrap();
    broker.restart();
    assert_eq!(broker.bootstrap(), before, "same port after a restart");
    block_on(async {
        let cluster = broker.cluster(ClusterRole::Primary);
        let marks = cluster
            .watermarks(std::slice::from_ref(&tp))
            .await
            .expect("marks");
        assert_eq!((marks[0].low, marks[0].high), (0, 3));
        assert_eq!(
            cluster
                .committed_offsets("g", std::slice::from_ref(&tp))
                .await
                .expect("committed"),
            [(tp.clone(), Some(2))]
        );
    });
}
