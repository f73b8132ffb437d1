//! `make bench-lookups`: the look-ups at the scale of issue 10, printed, not asserted.
//!
//! Two Nisshi brokers on free loopback ports (the real-broker suite's harness), 20 topics x
//! 1 000 partitions on each side (`orders-NN` on primary, `primary.orders-NN` on DR), records
//! in every topic and fewer on DR, so every partition has something to report. Then, one line
//! per figure:
//! - the baseline: the end offsets of every partition from a bare librdkafka consumer
//!   (`offsets_for_times` at "latest": one ListOffsets per leader), against kdr's batched path;
//! - `kdr lag` and `kdr status` end to end (the built binary), every partition reported, and
//!   how many partitions `kdr lag` found the newest record of (the others are empty);
//! - one poll of `wait_replication` (`Flow::measure_lag` over every replicated partition,
//!   what each poll does), five times: it must poll 20 000 partitions at least once a second;
//! - `kdr plan check`.
//!
//! Under `cargo test` (no `--bench` argument) it runs the same with 2 topics x 10 partitions,
//! as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/brokers/harness.rs"]
#[expect(
    dead_code,
    unused_imports,
    reason = "the real-broker harness serves many tests; a bench uses a part of it"
)]
mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use kdr::kafka::{Cluster, ClusterRole, TopicPartition};
use kdr::plan::Direction;
use kdr::replication::{Clusters, Flow};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use harness::{Nisshi, Storage, block_on};

/// The most partitions Nisshi takes in one CreateTopics request is 10 000: one topic per request.
struct Shape {
    topics: usize,
    partitions: i32,
    /// Records written to each topic on the primary (spread over its partitions by key).
    records: usize,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let shape = if bench {
        Shape {
            topics: 20,
            partitions: 1000,
            records: 2000,
        }
    } else {
        Shape {
            topics: 2,
            partitions: 10,
            records: 20,
        }
    };
    let primary = Nisshi::start("primary", Storage::Memory);
    let dr = Nisshi::start("dr", Storage::Memory);
    let sources: Vec<String> = (0..shape.topics)
        .map(|i| format!("orders-{i:02}"))
        .collect();
    let remotes: Vec<String> = sources.iter().map(|t| format!("primary.{t}")).collect();
    let started = Instant::now();
    create(
        &primary.cluster(ClusterRole::Primary),
        &sources,
        shape.partitions,
    );
    create(&dr.cluster(ClusterRole::Dr), &remotes, shape.partitions);
    produce(&primary.bootstrap(), &sources, shape.records);
    // DR holds half: every topic lags.
    produce(&dr.bootstrap(), &remotes, shape.records / 2);
    let partitions = shape.topics * usize::try_from(shape.partitions).expect("positive");
    println!(
        "setup: {} topics x {} partitions per side, {} records per primary topic, in {:.2?}",
        shape.topics,
        shape.partitions,
        shape.records,
        started.elapsed()
    );

    let every: Vec<TopicPartition> = remotes
        .iter()
        .flat_map(|t| (0..shape.partitions).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect();
    let took = bare_end_offsets(&dr.bootstrap(), &every);
    figure("bare librdkafka end offsets (dr)", partitions, took, None);
    let baseline = took;
    let cluster = dr.cluster(ClusterRole::Dr);
    let started = Instant::now();
    let marks = block_on(cluster.batch_watermarks(&every)).expect("batch watermarks");
    let took = started.elapsed();
    assert!(marks.iter().all(Result::is_ok), "every partition answers");
    figure(
        "kdr batch_watermarks (dr)",
        partitions,
        took,
        Some(baseline),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    write_plan(dir.path(), &primary.bootstrap(), &dr.bootstrap());
    let (took, out) = kdr(
        dir.path(),
        &["lag", "--plan", "drill.yaml", "--output", "json"],
    );
    let rows = out["partitions"].as_array().map_or(0, Vec::len);
    figure("kdr lag (end to end)", rows, took, Some(baseline));
    let aged = out["partitions"].as_array().map_or(0, |rows| {
        rows.iter()
            .filter(|r| !r["newest_record_age_ms"].is_null())
            .count()
    });
    println!("  newest record found on {aged} of {rows} dr partitions (the rest are empty)");
    let (took, out) = kdr(
        dir.path(),
        &["status", "--plan", "drill.yaml", "--output", "json"],
    );
    let measured = out["replication"][0]["lag"]["partitions"]
        .as_u64()
        .map_or(0, |n| usize::try_from(n).expect("fits"));
    if measured != partitions {
        println!("  status: {}", out["replication"][0]["lag_error"]);
    }
    figure("kdr status (end to end)", measured, took, Some(baseline));
    wait_replication_polls(dir.path());
    let (took, _) = kdr(dir.path(), &["plan", "check", "drill.yaml"]);
    figure("kdr plan check", 0, took, None);
}

/// What one poll of `wait_replication` costs: `Flow::measure_lag` over every replicated
/// partition (both sides' watermarks and the offset syncs), five polls in a row.
fn wait_replication_polls(dir: &Path) {
    let plan = kdr::plan::load(&dir.join("drill.yaml")).expect("plan");
    let clusters = Clusters::from_plan(&plan).expect("clusters");
    let flow = Flow::new(&plan, &clusters, Direction::Failover);
    let partitions = block_on(flow.partitions_from_source()).expect("replicated partitions");
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let lags = block_on(flow.measure_lag(&partitions, None)).expect("one poll");
        let took = started.elapsed();
        assert_eq!(lags.len(), partitions.len(), "every partition measured");
        figure(
            "wait_replication poll (measure_lag)",
            lags.len(),
            took,
            None,
        );
        slowest = slowest.max(took);
    }
    println!(
        "  slowest poll {slowest:.2?}: {:.1} polls per second at worst",
        1.0 / slowest.as_secs_f64()
    );
}

/// One figure: what, how many partitions it reported, how long, and the ratio to the baseline.
fn figure(name: &str, partitions: usize, took: Duration, baseline: Option<Duration>) {
    let ratio = baseline
        .map(|b| format!("  {:>6.1}x baseline", took.as_secs_f64() / b.as_secs_f64()))
        .unwrap_or_default();
    println!("{name:<40} {partitions:>6} partitions in {took:>10.2?}{ratio}");
}

/// [`harness::create_topics`] with room for a broker creating thousands of partitions.
fn create(cluster: &Cluster, topics: &[String], partitions: i32) {
    let cluster = cluster
        .with_operation_timeout(Duration::from_secs(60))
        .expect("bound");
    harness::create_topics(&cluster, topics, partitions);
}

/// `records` keyed records into each topic, spread over its partitions by the default
/// partitioner, all acknowledged before it returns.
fn produce(bootstrap: &str, topics: &[String], records: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("queue.buffering.max.messages", "1000000")
        .set("log_level", "0")
        .create()
        .expect("producer");
    for topic in topics {
        for i in 0..records {
            let key = format!("k{i}");
            producer
                .send(BaseRecord::to(topic).key(&key).payload("v"))
                .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("every record acknowledged");
}

/// The end offsets of every partition as a plain librdkafka client asks them.
fn bare_end_offsets(bootstrap: &str, partitions: &[TopicPartition]) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-baseline")
        .set("log_level", "0")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for tp in partitions {
        list.add_partition_offset(&tp.topic, tp.partition, Offset::End)
            .expect("offset");
    }
    let started = Instant::now();
    let answer = consumer
        .offsets_for_times(list, Duration::from_secs(60))
        .expect("end offsets");
    let took = started.elapsed();
    assert_eq!(answer.count(), partitions.len());
    took
}

fn write_plan(dir: &Path, primary: &str, dr: &str) {
    let text = format!(
        "version: 1\nname: drill\nclusters:\n  primary: {{ bootstrap_servers: \"{primary}\" }}\n  dr: {{ bootstrap_servers: \"{dr}\" }}\nreplication: {{ topics: [\"re:orders-.*\"], groups: [order-processor] }}\nfailover:\n  - wait_replication: {{ max_lag_records: 0, timeout: 10s, on_timeout: accept_rpo }}\nfailback:\n  - wait_replication: {{ max_lag_records: 0, timeout: 10s, on_timeout: accept_rpo }}\n"
    );
    std::fs::write(dir.join("drill.yaml"), text).expect("plan");
}

/// Runs the built kdr and parses its JSON (empty for a command without `--output json`).
fn kdr(dir: &Path, args: &[&str]) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let run = harness::kdr(dir, args);
    let took = started.elapsed();
    if run.code != 0 && run.code != 1 {
        panic!("kdr {args:?} failed: {}", run.stderr);
    }
    // Where the time went: kdr says what runs longer than a second, and for how long.
    for line in run.stderr.lines().filter(|l| l.contains("done in")) {
        println!("    {line}");
    }
    let out = serde_json::from_str(&run.stdout).unwrap_or(serde_json::Value::Null);
    (took, out)
}
