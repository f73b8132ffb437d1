//! The Kafka layer against real Kafka-protocol brokers: librdkafka's mock cluster on
//! loopback, in this process. `MockCluster` is not `Send`, so each test keeps it on its own
//! thread (current-thread runtime); the operations under test run on blocking threads and
//! talk to it over TCP like to any broker.
//!
//! Elapsed-time assertions are bounds ("returned before the deadline plus slack"), never
//! performance expectations. Timings are printed (`--nocapture`) for the record.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::config::test_support::{INLINE_SECRET, SECRET, assert_no_secret, spec_with_secrets};
use super::*;

/// Operation timeout for tests that expect an answer.
const BOUND: Duration = Duration::from_secs(5);
/// What a loaded 2-core machine may add to a bound before a test calls it a hang.
const SLACK: Duration = Duration::from_secs(1);

fn cluster_at(bootstrap: &str, timeout: Duration) -> Cluster {
    Cluster::new(ClusterSpec::new(ClusterRole::Primary, bootstrap), timeout).expect("a valid spec")
}

fn assert_within(started: Instant, bound: Duration, what: &str) {
    let elapsed = started.elapsed();
    assert!(
        elapsed < bound + SLACK,
        "{what} took {elapsed:?}, bound {bound:?}"
    );
}

/// A record to produce and to expect back.
#[derive(Clone)]
struct Sample {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp_ms: i64,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Produces `samples` to one partition and waits until every one is acknowledged.
async fn produce(bootstrap: &str, topic: &str, partition: i32, samples: &[Sample]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut deliveries = Vec::with_capacity(samples.len());
    for sample in samples {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .timestamp(sample.timestamp_ms);
        if let Some(key) = &sample.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &sample.value {
            record = record.payload(value.as_slice());
        }
        if !sample.headers.is_empty() {
            let mut headers = OwnedHeaders::new();
            for (key, value) in &sample.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            record = record.headers(headers);
        }
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(error, _)| error)
                .expect("enqueue"),
        );
    }
    for delivery in deliveries {
        let delivered = tokio::time::timeout(BOUND, delivery).await;
        delivered
            .expect("delivered in time")
            .expect("not cancelled")
            .expect("acknowledged");
    }
}

fn plain_samples(count: usize) -> Vec<Sample> {
    (0..count)
        .map(|i| Sample {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            timestamp_ms: 1_700_000_000_000 + i as i64,
            headers: Vec::new(),
        })
        .collect()
}

/// Accepts TCP connections and never answers them, like a broker whose process hangs.
struct SilentBroker {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentBroker {
    fn start() -> SilentBroker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for connection in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(connection) = connection {
                    held.push(connection);
                }
            }
        });
        SilentBroker {
            address,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept so the thread sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn refused_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    address.to_string()
}

#[test]
fn cluster_and_its_futures_can_cross_threads() {
    fn send_sync_clone<T: Send + Sync + Clone>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let cluster = cluster_at("127.0.0.1:9", BOUND);
    send_sync_clone(&cluster);
    send(&cluster.probe());
    send(&cluster.watermarks(&[]));
    send(&cluster.read_to_end("t", 0, ReadOptions::default()));
    send(&cluster.commit_offsets("g", &[]));
    send(&cluster.create_topic("t", 1, 1, &[]));
}

#[tokio::test(flavor = "current_thread")]
async fn probe_of_a_mock_cluster_lists_its_brokers() {
    let mock = MockCluster::new(3).expect("mock cluster");
    let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);
    let started = Instant::now();
    let reachability = cluster.probe().await.expect("probe");
    eprintln!("probe of a 3-broker mock cluster: {:?}", started.elapsed());
    let Reachability::Reachable(info) = reachability else {
        panic!("expected reachable, got {reachability:?}");
    };
    assert_eq!(
        info.brokers.iter().map(|b| b.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(info.brokers.iter().all(|b| b.host == "127.0.0.1"));
    assert!(info.cluster_id.is_some());
    // The mock names controller 0, which is none of its brokers: why topic admin hangs.
    assert_eq!(info.controller_is_listed(), Some(false));
}

#[tokio::test(flavor = "current_thread")]
async fn probe_of_a_refused_port_is_unreachable_within_the_bound() {
    let cluster = cluster_at(&refused_address(), Duration::from_secs(2));
    let started = Instant::now();
    let reachability = cluster.probe().await.expect("probe");
    eprintln!(
        "probe of a refused port: {:?} -> {reachability:?}",
        started.elapsed()
    );
    assert_within(started, Duration::from_secs(2), "probe of a refused port");
    match reachability {
        Reachability::Unreachable { reason } => assert!(!reason.is_empty()),
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn probe_of_a_silent_port_is_unreachable_within_the_bound() {
    let silent = SilentBroker::start();
    let bound = Duration::from_secs(1);
    let cluster = cluster_at(&silent.address.to_string(), bound);
    let started = Instant::now();
    let reachability = cluster.probe().await.expect("probe");
    eprintln!(
        "probe of a silent port: {:?} -> {reachability:?}",
        started.elapsed()
    );
    assert_within(started, bound, "probe of a silent port");
    match reachability {
        Reachability::Unreachable { reason } => assert!(!reason.is_empty()),
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn operations_on_a_silent_port_time_out_within_the_bound() {
    let silent = SilentBroker::start();
    let bound = Duration::from_millis(800);
    let cluster = cluster_at(&silent.address.to_string(), bound);
    let started = Instant::now();
    let error = cluster
        .watermarks(&[TopicPartition::new("orders", 0)])
        .await
        .expect_err("no broker");
    assert_within(started, bound, "watermarks from a silent port");
    // Silence looks like a timeout, or like an unreachable cluster once librdkafka gives
    // up on the connection; either way it is prompt and names the operation.
    assert!(
        matches!(
            error,
            KafkaError::Timeout { .. } | KafkaError::Unreachable { .. }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("fetch watermarks on the primary cluster: "),
        "{error}"
    );

    let started = Instant::now();
    let error = cluster
        .read_to_end("orders", 0, ReadOptions::default())
        .await
        .expect_err("no broker");
    assert_within(started, bound, "read from a silent port");
    assert!(
        matches!(
            error,
            KafkaError::Timeout { .. } | KafkaError::Unreachable { .. }
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn topics_are_filtered_sorted_and_internal_ones_hidden() {
    let mock = MockCluster::new(1).expect("mock cluster");
    for (topic, partitions) in [
        ("payments.us", 2),
        ("orders", 3),
        ("payments.eu", 1),
        ("__internal", 1),
    ] {
        mock.create_topic(topic, partitions, 1).expect("topic");
    }
    let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);

    let payments = cluster
        .topics(|name| name.starts_with("payments."))
        .await
        .expect("topics");
    assert_eq!(
        payments,
        vec![
            TopicInfo {
                name: "payments.eu".into(),
                partitions: vec![0]
            },
            TopicInfo {
                name: "payments.us".into(),
                partitions: vec![0, 1]
            },
        ]
    );
    let everything = cluster.topics(|_| true).await.expect("topics");
    let names: Vec<&str> = everything.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["orders", "payments.eu", "payments.us"]);
    let internal = cluster
        .topics_with_internal(|name| name.starts_with("__"))
        .await
        .expect("topics");
    assert_eq!(
        internal,
        vec![TopicInfo {
            name: "__internal".into(),
            partitions: vec![0]
        }]
    );
}

/// 3 topics × 4 partitions, each partition with a different record count.
async fn twelve_partitions(mock: &MockCluster<'_, impl rdkafka::ClientContext>) -> Vec<Watermarks> {
    let bootstrap = mock.bootstrap_servers();
    let mut expected = Vec::new();
    for (t, topic) in ["orders", "payments", "shipments"].into_iter().enumerate() {
        mock.create_topic(topic, 4, 1).expect("topic");
        for partition in 0..4 {
            let count = 3 * t + partition as usize + 1;
            produce(&bootstrap, topic, partition, &plain_samples(count)).await;
            expected.push(Watermarks {
                topic: topic.into(),
                partition,
                low: 0,
                high: count as i64,
            });
        }
    }
    expected
}

fn partitions_of(watermarks: &[Watermarks]) -> Vec<TopicPartition> {
    watermarks
        .iter()
        .map(|w| TopicPartition::new(&w.topic, w.partition))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn watermarks_of_twelve_partitions_are_what_was_produced() {
    let mock = MockCluster::new(3).expect("mock cluster");
    let expected = twelve_partitions(&mock).await;
    let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);
    let mut asked = partitions_of(&expected);
    asked.reverse();

    let started = Instant::now();
    let watermarks = cluster.watermarks(&asked).await.expect("watermarks");
    eprintln!(
        "watermarks of 12 partitions on 3 brokers: {:?}",
        started.elapsed()
    );
    let mut in_asked_order = expected.clone();
    in_asked_order.reverse();
    assert_eq!(watermarks, in_asked_order);

    let ends = cluster.end_offsets(&asked).await.expect("end offsets");
    let expected_ends: Vec<(TopicPartition, i64)> = in_asked_order
        .iter()
        .map(|w| (TopicPartition::new(&w.topic, w.partition), w.high))
        .collect();
    assert_eq!(ends, expected_ends);
}

/// Batched ListOffsets (what `watermarks` does) against librdkafka's per-partition
/// `fetch_watermarks`, sequential and on 4 threads: same answers, and the times to pick.
#[tokio::test(flavor = "current_thread")]
async fn watermark_strategies_agree_and_are_timed() {
    let mock = MockCluster::new(3).expect("mock cluster");
    let bootstrap = mock.bootstrap_servers();
    let mut expected = twelve_partitions(&mock).await;
    for t in 0..8 {
        let topic = format!("wide-{t}");
        mock.create_topic(&topic, 11, 1).expect("topic");
        for partition in 0..11 {
            expected.push(Watermarks {
                topic: topic.clone(),
                partition,
                low: 0,
                high: 0,
            });
        }
    }
    let asked = partitions_of(&expected);
    assert_eq!(asked.len(), 100);
    let cluster = cluster_at(&bootstrap, BOUND);

    let started = Instant::now();
    let batched = cluster.watermarks(&asked).await.expect("watermarks");
    let batched_time = started.elapsed();
    assert_eq!(batched, expected);

    let asked_for_threads = asked.clone();
    let (sequential, sequential_time, concurrent, concurrent_time) =
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .expect("consumer");
            let fetch = |tp: &TopicPartition| {
                let (low, high) = consumer
                    .fetch_watermarks(&tp.topic, tp.partition, BOUND)
                    .expect("watermarks");
                Watermarks {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    low,
                    high,
                }
            };
            let started = Instant::now();
            let sequential: Vec<Watermarks> = asked_for_threads.iter().map(fetch).collect();
            let sequential_time = started.elapsed();
            let started = Instant::now();
            let concurrent: Vec<Watermarks> = std::thread::scope(|scope| {
                let chunks: Vec<_> = asked_for_threads
                    .chunks(asked_for_threads.len().div_ceil(4))
                    .map(|chunk| scope.spawn(move || chunk.iter().map(fetch).collect::<Vec<_>>()))
                    .collect();
                chunks
                    .into_iter()
                    .flat_map(|chunk| chunk.join().expect("thread"))
                    .collect()
            });
            (sequential, sequential_time, concurrent, started.elapsed())
        })
        .await
        .expect("blocking task");
    assert_eq!(sequential, expected);
    assert_eq!(concurrent, expected);
    eprintln!(
        "watermarks of 100 partitions: batched ListOffsets {batched_time:?} (client start-up included), \
         per-partition sequential {sequential_time:?}, per-partition on 4 threads {concurrent_time:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn watermarks_survive_injected_list_offsets_errors() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("orders", 1, 1).expect("topic");
    produce(&mock.bootstrap_servers(), "orders", 0, &plain_samples(7)).await;
    let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);
    for _ in 0..10 {
        mock.request_errors(
            RDKafkaApiKey::ListOffsets,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 2],
        );
        let watermarks = cluster
            .watermarks(&[TopicPartition::new("orders", 0)])
            .await
            .expect("watermarks");
        assert_eq!(
            watermarks,
            vec![Watermarks {
                topic: "orders".into(),
                partition: 0,
                low: 0,
                high: 7
            }]
        );
        mock.clear_request_errors(RDKafkaApiKey::ListOffsets);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn missing_topics_and_partitions_are_named() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("orders", 2, 1).expect("topic");
    let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);

    let error = cluster
        .watermarks(&[
            TopicPartition::new("orders", 0),
            TopicPartition::new("refunds", 0),
        ])
        .await
        .expect_err("missing topic");
    assert!(
        matches!(&error, KafkaError::TopicNotFound { topic, .. } if topic == "refunds"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "fetch watermarks on the primary cluster: topic refunds does not exist"
    );

    let error = cluster
        .end_offsets(&[TopicPartition::new("orders", 5)])
        .await
        .expect_err("missing partition");
    assert!(
        matches!(
            &error,
            KafkaError::PartitionNotFound {
                partition: 5,
                partition_count: 2,
                ..
            }
        ),
        "{error:?}"
    );

    let started = Instant::now();
    let error = cluster
        .read_to_end("refunds", 0, ReadOptions::default())
        .await
        .expect_err("missing topic");
    assert_within(started, BOUND, "read of a missing topic");
    assert!(
        matches!(&error, KafkaError::TopicNotFound { topic, .. } if topic == "refunds"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "read partition 0 of topic refunds on the primary cluster: topic refunds does not exist"
    );
    let error = cluster
        .read_to_end("orders", 2, ReadOptions::default())
        .await
        .expect_err("missing partition");
    assert!(
        matches!(&error, KafkaError::PartitionNotFound { partition: 2, .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn read_to_end_returns_exactly_what_was_produced() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("primary.checkpoints.internal", 1, 1)
        .expect("topic");
    let samples: Vec<Sample> = (0..50)
        .map(|i| Sample {
            key: (i % 10 != 3).then(|| format!("group-{i}").into_bytes()),
            value: (i % 7 != 5).then(|| vec![i as u8; i % 5]),
            timestamp_ms: 1_700_000_000_000 + 1000 * i as i64,
            headers: match i % 3 {
                0 => Vec::new(),
                1 => vec![("trace".into(), Some(format!("t{i}").into_bytes()))],
                _ => vec![("a".into(), Some(b"1".to_vec())), ("nothing".into(), None)],
            },
        })
        .collect();
    produce(
        &mock.bootstrap_servers(),
        "primary.checkpoints.internal",
        0,
        &samples,
    )
    .await;
    let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);

    let started = Instant::now();
    let read = cluster
        .read_to_end("primary.checkpoints.internal", 0, ReadOptions::default())
        .await
        .expect("read");
    eprintln!("read_to_end of 50 records: {:?}", started.elapsed());
    let expected: Vec<RawRecord> = samples
        .iter()
        .enumerate()
        .map(|(offset, sample)| RawRecord {
            offset: offset as i64,
            key: sample.key.clone(),
            value: sample.value.clone(),
            timestamp_ms: Some(sample.timestamp_ms),
            headers: sample.headers.clone(),
        })
        .collect();
    assert_eq!(
        read,
        PartitionRead {
            records: expected,
            low: 0,
            high: 50,
            complete: true
        }
    );
}

#[tokio::test(flavor = "current_thread")]
async fn read_to_end_of_ten_thousand_records_is_timed() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("big", 1, 1).expect("topic");
    produce(&mock.bootstrap_servers(), "big", 0, &plain_samples(10_000)).await;
    let cluster = cluster_at(&mock.bootstrap_servers(), Duration::from_secs(30));
    let started = Instant::now();
    let read = cluster
        .read_to_end("big", 0, ReadOptions::default())
        .await
        .expect("read");
    eprintln!("read_to_end of 10000 records: {:?}", started.elapsed());
    assert!(read.complete);
    assert_eq!(read.records.len(), 10_000);
    assert!(
        read.records
            .iter()
            .enumerate()
            .all(|(i, r)| r.offset == i as i64)
    );
    assert_eq!(read.records[9_999].value.as_deref(), Some(&b"v9999"[..]));
}

#[tokio::test(flavor = "current_thread")]
async fn read_to_end_of_an_empty_topic_is_empty_at_once() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("empty", 1, 1).expect("topic");
    let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);
    let started = Instant::now();
    let read = cluster
        .read_to_end("empty", 0, ReadOptions::default())
        .await
        .expect("read");
    eprintln!("read_to_end of an empty topic: {:?}", started.elapsed());
    assert_eq!(
        read,
        PartitionRead {
            records: Vec::new(),
            low: 0,
            high: 0,
            complete: true
        }
    );
    // Far below the bound: an empty partition is known from its watermarks, not by waiting.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn read_that_cannot_finish_fails_or_returns_partial_as_asked() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("stuck", 1, 1).expect("topic");
    produce(&mock.bootstrap_servers(), "stuck", 0, &plain_samples(5)).await;
    // Every fetch fails with an error librdkafka retries quietly: the read cannot progress,
    // whatever the machine's speed.
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 1000],
    );
    let bound = Duration::from_secs(1);
    let cluster = cluster_at(&mock.bootstrap_servers(), bound);

    let started = Instant::now();
    let error = cluster
        .read_to_end("stuck", 0, ReadOptions::default())
        .await
        .expect_err("stuck read");
    assert_within(started, bound, "stuck read");
    assert!(matches!(error, KafkaError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("up to offset 0 of 5"), "{error}");

    let options = ReadOptions {
        allow_partial: true,
        ..ReadOptions::default()
    };
    let started = Instant::now();
    let read = cluster
        .read_to_end("stuck", 0, options)
        .await
        .expect("partial read");
    assert_within(started, bound, "partial read");
    assert_eq!(
        read,
        PartitionRead {
            records: Vec::new(),
            low: 0,
            high: 5,
            complete: false
        }
    );
}

#[tokio::test(flavor = "current_thread")]
async fn committed_offsets_are_none_until_committed() {
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic("orders", 3, 1).expect("topic");
    let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);
    let partitions: Vec<TopicPartition> =
        (0..3).map(|p| TopicPartition::new("orders", p)).collect();

    let before = cluster
        .committed_offsets("billing", &partitions)
        .await
        .expect("committed");
    assert_eq!(
        before,
        partitions
            .iter()
            .map(|tp| (tp.clone(), None))
            .collect::<Vec<_>>()
    );

    let started = Instant::now();
    cluster
        .commit_offsets(
            "billing",
            &[(partitions[0].clone(), 42), (partitions[2].clone(), 0)],
        )
        .await
        .expect("commit");
    eprintln!("commit of 2 offsets: {:?}", started.elapsed());

    let after = cluster
        .committed_offsets("billing", &partitions)
        .await
        .expect("committed");
    assert_eq!(
        after,
        vec![
            (partitions[0].clone(), Some(42)),
            (partitions[1].clone(), None),
            (partitions[2].clone(), Some(0))
        ]
    );
    let other_group = cluster
        .committed_offsets("audit", &partitions[..1])
        .await
        .expect("committed");
    assert_eq!(other_group, vec![(partitions[0].clone(), None)]);
}

#[tokio::test(flavor = "current_thread")]
async fn commit_refuses_negative_offsets_without_asking() {
    let cluster = cluster_at(&refused_address(), BOUND);
    let error = cluster
        .commit_offsets("billing", &[(TopicPartition::new("orders", 0), -1)])
        .await
        .expect_err("negative");
    assert_eq!(
        error.to_string(),
        "commit offsets of group billing on the primary cluster: offset -1 for partition orders-0 is negative"
    );
}

/// A mock cluster made through a client, so librdkafka's mock C API can set the group
/// rebalance delay to 0 (the default 3 s would slow the test, not change it).
pub(super) fn mock_with_prompt_rebalances() -> BaseConsumer {
    let holder: BaseConsumer = ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()
        .expect("mock cluster holder");
    // SAFETY: the holder is alive, and was configured with a mock cluster, so the handle
    // is valid for this call.
    unsafe {
        let mock = rdkafka::bindings::rd_kafka_handle_mock_cluster(holder.client().native_ptr());
        assert!(!mock.is_null());
        rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(mock, 0);
    }
    holder
}

/// A member of `group`, subscribed to `topic`, once it has its assignment.
pub(super) fn live_member(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("member");
    member.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(15);
    while member.assignment().expect("assignment").count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the member never got an assignment"
        );
        let _ = member.poll(Duration::from_millis(100));
    }
    member
}

#[tokio::test(flavor = "current_thread")]
async fn commit_to_a_group_with_a_live_member_is_refused_as_active() {
    let holder = mock_with_prompt_rebalances();
    let mock = holder.client().mock_cluster().expect("mock cluster");
    mock.create_topic("orders", 2, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();

    let _member = live_member(&bootstrap, "billing", "orders");

    let cluster = cluster_at(&bootstrap, BOUND);
    let error = cluster
        .commit_offsets("billing", &[(TopicPartition::new("orders", 0), 1)])
        .await
        .expect_err("group has a member");
    assert!(
        matches!(&error, KafkaError::GroupActive { group, .. } if group == "billing"),
        "{error:?}"
    );
    assert!(error.to_string().starts_with(
        "commit offsets of group billing on the primary cluster: group billing has active members"
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn commit_rejected_for_a_rebalance_is_refused_as_active() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("orders", 1, 1).expect("topic");
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION],
    );
    let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);
    let error = cluster
        .commit_offsets("billing", &[(TopicPartition::new("orders", 0), 1)])
        .await
        .expect_err("rejected");
    assert!(matches!(error, KafkaError::GroupActive { .. }), "{error:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn group_state_on_the_mock_is_unsupported_at_once() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);
    let started = Instant::now();
    let error = cluster
        .group_state("billing")
        .await
        .expect_err("no group listing on the mock");
    eprintln!("group_state on the mock: {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, KafkaError::Unsupported { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "describe group billing on the primary cluster: not supported by this cluster: \
         the brokers refuse group listing (ListGroups/DescribeGroups)"
    );
    let error = cluster
        .ensure_group_empty("billing")
        .await
        .expect_err("no group listing on the mock");
    assert!(matches!(error, KafkaError::Unsupported { .. }), "{error:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn create_topic_on_the_mock_is_unsupported_without_waiting() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let bound = Duration::from_millis(500);
    let cluster = cluster_at(&mock.bootstrap_servers(), bound);
    let started = Instant::now();
    let error = cluster
        .create_topic("canary", 1, 1, &[])
        .await
        .expect_err("no topic admin on the mock");
    eprintln!(
        "create_topic on the mock: {:?} -> {error}",
        started.elapsed()
    );
    assert_within(started, bound, "create_topic");
    assert!(matches!(error, KafkaError::Unsupported { .. }), "{error:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn create_topic_request_the_mock_never_answers_times_out_within_the_bound() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let bound = Duration::from_millis(500);
    let cluster = cluster_at(&mock.bootstrap_servers(), bound);
    let configs = [("cleanup.policy".to_owned(), "compact".to_owned())];
    let started = Instant::now();
    let error = cluster
        .send_create_topic(Instant::now() + bound, "canary", 1, 1, &configs)
        .await
        .expect_err("the mock never answers CreateTopics");
    eprintln!(
        "CreateTopics sent to the mock: {:?} -> {error}",
        started.elapsed()
    );
    assert_within(started, bound, "CreateTopics");
    assert!(matches!(error, KafkaError::Timeout { .. }), "{error:?}");
}

#[test]
fn a_cluster_shows_no_secret() {
    let cluster = Cluster::new(spec_with_secrets("broker:9092"), BOUND).expect("valid spec");
    let shown = format!("{cluster:?} {}", cluster.spec());
    assert_no_secret(&shown);
    assert!(shown.contains(REDACTED), "{shown}");
}

#[tokio::test(flavor = "current_thread")]
async fn authentication_failure_is_reported_without_the_secret() {
    // The mock speaks no SASL, so the handshake fails as a bad password would.
    let mock = MockCluster::new(1).expect("mock cluster");
    let cluster =
        Cluster::new(spec_with_secrets(&mock.bootstrap_servers()), BOUND).expect("valid spec");
    let started = Instant::now();
    let error = cluster.probe().await.expect_err("authentication fails");
    eprintln!(
        "probe with failing SASL: {:?} -> {error}",
        started.elapsed()
    );
    assert_within(started, BOUND, "probe with failing SASL");
    assert!(
        matches!(
            error,
            KafkaError::Authentication {
                cluster: ClusterRole::Dr,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("probe on the dr cluster: authentication failed: "),
        "{error}"
    );
    assert_no_secret(&error.to_string());
    assert_no_secret(&format!("{error:?}"));

    let error = cluster
        .committed_offsets("billing", &[TopicPartition::new("orders", 0)])
        .await
        .expect_err("auth");
    assert!(
        matches!(error, KafkaError::Authentication { .. }),
        "{error:?}"
    );
    assert_no_secret(&format!("{error} {error:?}"));
}

#[test]
fn bad_configuration_is_reported_without_the_secret() {
    let spec = ClusterSpec::new(ClusterRole::Primary, "broker:9092")
        .with_property(ClientProperty::secret("socket.timeout.ms", SECRET));
    let error = Cluster::new(spec, BOUND).expect_err("not a number");
    assert!(matches!(error, KafkaError::Config { .. }), "{error:?}");
    assert!(error.to_string().starts_with(
        "configure a client for the primary cluster: client property `socket.timeout.ms`"
    ));
    assert_no_secret(&format!("{error} {error:?}"));

    let spec = ClusterSpec::new(ClusterRole::Primary, "broker:9092")
        .with_property(ClientProperty::new("no.such.password", INLINE_SECRET));
    let error = Cluster::new(spec, BOUND).expect_err("unknown property");
    assert_no_secret(&format!("{error} {error:?}"));
}

#[test]
fn reserved_properties_and_empty_bootstrap_are_all_reported() {
    let spec = ClusterSpec::new(ClusterRole::Dr, " , ")
        .with_property(ClientProperty::new("group.id", "mine"))
        .with_property(ClientProperty::new("debug", "all"));
    let error = Cluster::new(spec, BOUND).expect_err("reserved keys");
    assert_eq!(
        error.to_string(),
        "configure a client for the dr cluster: bootstrap_servers is empty; \
         client property `group.id` cannot be set in the plan: kdr sets it per operation; \
         client property `debug` cannot be set in the plan: librdkafka debug output can echo client configuration"
    );
}

/// librdkafka defers a commit whose coordinator is unknown for `session.timeout.ms`
/// (45 s by default), and a consumer's destructor waits for it. The answer came back on
/// time, but the process could not exit: a Tokio runtime waits for its blocking threads.
#[test]
fn runtime_shutdown_after_operations_on_dead_clusters_is_prompt() {
    let silent = SilentBroker::start();
    let bound = Duration::from_millis(500);
    let refused = cluster_at(&refused_address(), bound);
    let quiet = cluster_at(&silent.address.to_string(), bound);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let partition = TopicPartition::new("orders", 0);
        let offsets = [(partition.clone(), 1)];
        let read = quiet.read_to_end("orders", 0, ReadOptions::default()).await;
        assert!(read.is_err());
        let committed = refused.committed_offsets("billing", &[partition]).await;
        assert!(committed.is_err());
        // Last, so their teardown is still running when the runtime shuts down.
        assert!(quiet.commit_offsets("billing", &offsets).await.is_err());
        assert!(refused.commit_offsets("billing", &offsets).await.is_err());
    });
    let started = Instant::now();
    drop(runtime);
    eprintln!(
        "runtime shutdown after operations on dead clusters: {:?}",
        started.elapsed()
    );
    // librdkafka's request timeout is at least 1 s; teardown may take that again.
    assert_within(started, Duration::from_secs(2), "runtime shutdown");
}

/// Regression: a produce whose blocking thread could not even start within its bound (the
/// runtime's blocking pool busy) timed out as "write to topic  on …", naming no topic.
#[test]
fn a_produce_that_outlives_its_bound_names_its_topic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .expect("runtime");
    let bound = Duration::from_millis(300);
    let error = runtime.block_on(async {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let occupied = tokio::task::spawn_blocking(move || held.recv_timeout(BOUND));
        let cluster = cluster_at(&refused_address(), bound);
        let started = Instant::now();
        let error = cluster
            .produce_one("kdr.authority", b"key", b"value")
            .await
            .expect_err("the blocking pool is busy");
        assert_within(started, bound, "a produce that cannot start");
        release.send(()).expect("the occupying task waits");
        occupied.await.expect("join").expect("released");
        error
    });
    assert!(matches!(error, KafkaError::Timeout { .. }), "{error:?}");
    assert_eq!(
        error.operation(),
        &Operation::Produce {
            topic: "kdr.authority".to_owned()
        }
    );
    assert!(
        error.to_string().starts_with(
            "write to topic kdr.authority on the primary cluster: timed out after 300ms"
        ),
        "{error}"
    );
}
