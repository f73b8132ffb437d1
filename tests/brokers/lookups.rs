//! `kdr lag` and `kdr status` against two Nisshi brokers, where the look-ups must degrade per
//! topic and per problem, never per command: a topic missing on DR (issue 13 #3), a primary
//! that is down while DR has problems of its own (issue 13 #2), and checkpoints that translate
//! far below where the group stood (issue 14 #5).

use std::path::Path;
use std::time::{Duration, Instant};

use kdr::kafka::{ClusterRole, Reachability, ReadOptions, TopicPartition};
use kdr::lookup::newest::newest_timestamps;
use kdr::mm2::Checkpoint;
use kdr::plan::Direction;
use kdr::replication::{Clusters, Flow};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::harness::{Nisshi, Pair, Run, Storage, block_on, create_topics, events, kdr, logs};
use crate::mm2::produce;

const GROUP: &str = "order-processor";

/// `drill.yaml` replicating `orders` and `payments`, for the group [`GROUP`].
fn write_plan(dir: &Path, primary: &str, dr: &str) {
    write_plan_for(dir, primary, dr, "orders, payments");
}

/// `drill.yaml` replicating `topics` (a YAML list's items), for the group [`GROUP`].
fn write_plan_for(dir: &Path, primary: &str, dr: &str, topics: &str) {
    let step =
        "  - wait_replication: { max_lag_records: 0, timeout: 5s, on_timeout: accept_rpo }\n";
    let text = format!(
        "version: 1\nname: drill\nclusters:\n  primary: {{ bootstrap_servers: \"{primary}\" }}\n  dr: {{ bootstrap_servers: \"{dr}\" }}\nreplication: {{ topics: [{topics}], groups: [{GROUP}] }}\nfailover:\n{step}failback:\n{step}"
    );
    std::fs::write(dir.join("drill.yaml"), text).expect("plan");
}

fn create(broker: &Nisshi, role: ClusterRole, topics: &[&str], partitions: i32) {
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    create_topics(&broker.cluster(role), &topics, partitions);
}

/// A scratch directory holding `drill.yaml` for the pair.
fn plan_dir(primary: &str, dr: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_plan(dir.path(), primary, dr);
    dir
}

/// `kdr <command> --plan drill.yaml --output json`: its exit code and JSON.
fn kdr_json(dir: &Path, command: &str) -> (i32, Value, Run) {
    let run = kdr(dir, &[command, "--plan", "drill.yaml", "--output", "json"]);
    (run.code, json(&run), run)
}

/// The group's checkpoint on partition 0 of `primary.orders`, from source offset 100.
fn checkpoint(downstream_offset: i64) -> Checkpoint {
    Checkpoint {
        group: GROUP.to_owned(),
        topic: "primary.orders".to_owned(),
        partition: 0,
        upstream_offset: 100,
        downstream_offset,
        metadata: String::new(),
    }
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("json: {e}\n{run:?}"))
}

fn problem_kinds(status: &Value) -> Vec<&str> {
    status["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["kind"].as_str().expect("kind"))
        .collect()
}

#[test]
fn lag_status_and_wait_replication_report_a_topic_missing_on_dr_as_at_risk_and_the_rest_as_usual() {
    let pair = Pair::start();
    create(
        &pair.primary,
        ClusterRole::Primary,
        &["orders", "payments"],
        2,
    );
    create(&pair.dr, ClusterRole::Dr, &["primary.orders"], 2);
    for partition in 0..2 {
        produce(&pair.primary.bootstrap(), "orders", partition, 5);
        produce(
            &pair.primary.bootstrap(),
            "payments",
            partition,
            3 + i64::from(partition),
        );
        produce(&pair.dr.bootstrap(), "primary.orders", partition, 4);
    }
    let dir = plan_dir(&pair.primary.bootstrap(), &pair.dr.bootstrap());

    let (code, out, run) = kdr_json(dir.path(), "lag");
    assert_eq!(code, 0, "{run:?}");
    assert_eq!(out["source_reachable"], true, "{out}");
    let rows: Vec<(String, i64, i64, i64, String, i64)> = out["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|r| {
            (
                r["target_topic"].as_str().expect("topic").to_owned(),
                r["partition"].as_i64().expect("partition"),
                r["source_end"].as_i64().expect("source end"),
                r["lag"].as_i64().expect("lag"),
                r["method"].as_str().expect("method").to_owned(),
                r["target_end"].as_i64().expect("target end"),
            )
        })
        .collect();
    let row = |topic: &str, p, end, lag, method: &str, target_end| {
        (topic.to_owned(), p, end, lag, method.to_owned(), target_end)
    };
    assert_eq!(
        rows,
        [
            row("primary.orders", 0, 5, 1, "count", 4),
            row("primary.orders", 1, 5, 1, "count", 4),
            row("primary.payments", 0, 3, 3, "target_missing", 0),
            row("primary.payments", 1, 4, 4, "target_missing", 0),
        ]
    );
    assert_eq!(out["total_lag"], 9, "{out}");
    assert!(
        run.stderr
            .contains("payments missing on dr: every record of it is at risk"),
        "{run:?}"
    );

    let run = kdr(dir.path(), &["lag", "--plan", "drill.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("primary → dr: 9 records behind over 4 partitions"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("at risk: payments missing on dr (7 records not there)"),
        "{run:?}"
    );

    let (code, status, run) = kdr_json(dir.path(), "status");
    assert_eq!(code, 1, "{run:?}");
    let lag = &status["replication"][0]["lag"];
    assert_eq!(lag["total_records"], 9, "{status}");
    assert_eq!(lag["partitions"], 4, "{status}");
    assert_eq!(lag["missing_on_target"], serde_json::json!(["payments"]));
    assert!(
        problem_kinds(&status).contains(&"missing_on_target"),
        "{status}"
    );

    // wait_replication measures the same, and accepting the RPO records payments as lost.
    let run = crate::failover::failover(dir.path());
    assert_eq!(run.code, 0, "{run:?}");
    let log = logs(dir.path()).pop().expect("an incident log");
    let accepted = events(&log)
        .into_iter()
        .find(|e| e["event"] == "decision")
        .unwrap_or_else(|| panic!("no decision: {run:?}"));
    assert_eq!(accepted["data"]["lost_records"], 9, "{accepted}");
    let lost: Vec<(String, i64, String)> = accepted["data"]["per_partition"]
        .as_array()
        .expect("per partition")
        .iter()
        .map(|l| {
            (
                l["source_topic"].as_str().expect("topic").to_owned(),
                l["lag"].as_i64().expect("lag"),
                l["method"].as_str().expect("method").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        lost,
        [
            ("orders".to_owned(), 1, "count".to_owned()),
            ("orders".to_owned(), 1, "count".to_owned()),
            ("payments".to_owned(), 3, "target_missing".to_owned()),
            ("payments".to_owned(), 4, "target_missing".to_owned()),
        ],
        "{accepted}"
    );
}

#[test]
fn status_with_the_primary_down_still_lists_what_is_wrong_on_dr() {
    let dr = Nisshi::start("dr", Storage::Memory);
    // A port nothing listens on: the primary is down.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").to_string()
    };
    let dir = plan_dir(&dead, &dr.bootstrap());
    let (code, status, run) = kdr_json(dir.path(), "status");
    assert_eq!(code, 1, "{run:?}");
    assert_eq!(status["verdict"]["kind"], "primary_unreachable", "{status}");
    // DR has no heartbeats and no checkpoints topic: each is its own problem.
    assert_eq!(
        problem_kinds(&status),
        [
            "primary_unreachable",
            "no_heartbeats",
            "checkpoints_unreadable"
        ],
        "{status}"
    );
    let run = kdr(dir.path(), &["status", "--plan", "drill.yaml"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("also: no heartbeats from primary on dr: is MirrorMaker 2 running?"),
        "{run:?}"
    );
}

#[test]
fn status_says_offset_syncs_look_sparse_when_a_checkpoint_lands_far_below_the_end() {
    let pair = Pair::start();
    create(&pair.primary, ClusterRole::Primary, &["orders"], 1);
    create(
        &pair.dr,
        ClusterRole::Dr,
        &["primary.orders", "primary.checkpoints.internal"],
        1,
    );
    produce(&pair.primary.bootstrap(), "orders", 0, 100);
    produce(&pair.dr.bootstrap(), "primary.orders", 0, 100);
    // The group had read all 100 records; only the first offset sync went out, so MM2
    // translated its position to 1.
    write_checkpoint(&pair.dr.bootstrap(), &checkpoint(1));
    let dir = plan_dir(&pair.primary.bootstrap(), &pair.dr.bootstrap());
    let (code, status, run) = kdr_json(dir.path(), "status");
    assert_eq!(code, 1, "{run:?}");
    assert_eq!(
        status["replication"][0]["sparse_checkpoints"],
        serde_json::json!([{
            "group": GROUP, "target_topic": "primary.orders", "partition": 0,
            "upstream_offset": 100, "downstream_offset": 1, "target_end": 100
        }]),
        "{status}"
    );
    let sparse = status["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .find(|p| p["kind"] == "sparse_offset_syncs")
        .unwrap_or_else(|| panic!("no sparse_offset_syncs problem: {status}"));
    let message = sparse["message"].as_str().expect("message");
    for needle in [
        "offset syncs look sparse",
        "order-processor on primary.orders/0 at 1 of 100",
        "offset.lag.max",
        "primary.offset.flush.interval.ms",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }

    // A checkpoint at the end is not sparse.
    write_checkpoint(&pair.dr.bootstrap(), &checkpoint(100));
    let (_, status, _) = kdr_json(dir.path(), "status");
    assert_eq!(
        status["replication"][0]["sparse_checkpoints"],
        serde_json::json!([]),
        "{status}"
    );
    assert!(
        !problem_kinds(&status).contains(&"sparse_offset_syncs"),
        "{status}"
    );
}

fn write_checkpoint(bootstrap: &str, checkpoint: &Checkpoint) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "10000")
        .set("log_level", "0")
        .create()
        .expect("producer");
    let key = checkpoint.encode_key().expect("key");
    let value = checkpoint.encode_value().expect("value");
    block_on(async {
        producer
            .send(
                FutureRecord::to("primary.checkpoints.internal")
                    .partition(0)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("checkpoint written");
    });
}

/// The probe asks metadata for one topic, not for every topic: at 10 000 partitions it still
/// answers well inside a one-second bound (a request for every topic took seconds at 20 000
/// and once called a healthy primary unreachable), and asking never creates the topic it names.
#[test]
fn a_probe_of_ten_thousand_partitions_is_as_quick_as_of_one_and_creates_nothing() {
    let broker = Nisshi::start("dr", Storage::Memory);
    let topics: Vec<String> = (0..10).map(|i| format!("big-{i}")).collect();
    let admin = broker
        .cluster(ClusterRole::Dr)
        .with_operation_timeout(Duration::from_secs(60))
        .expect("bound");
    create_topics(&admin, &topics, 1000);
    let quick = broker
        .cluster(ClusterRole::Dr)
        .with_operation_timeout(Duration::from_secs(1))
        .expect("bound");
    for _ in 0..3 {
        let started = Instant::now();
        let probe = block_on(quick.probe()).expect("probe");
        eprintln!("probe at 10 000 partitions: {:?}", started.elapsed());
        let Reachability::Reachable(info) = probe else {
            panic!("a healthy cluster called unreachable: {probe:?}");
        };
        assert_eq!(info.brokers.len(), 1, "{info:?}");
        assert_eq!(info.cluster_id.as_deref(), Some("dr"));
    }
    let started = Instant::now();
    let listed = block_on(admin.topics_with_internal(|_| true)).expect("topics");
    eprintln!("a listing of every topic: {:?}", started.elapsed());
    assert_eq!(
        listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        topics.iter().map(String::as_str).collect::<Vec<_>>(),
        "the probe's topic was not created by asking"
    );
    assert!(listed.iter().all(|t| t.partitions.len() == 1000));
}

/// The newest record of many partitions, read by one consumer assigned to all of them, is
/// what reading each partition on its own to its end finds: the last record's timestamp, or
/// nothing for an empty partition.
#[test]
fn the_newest_records_of_many_partitions_at_once_are_each_partitions_last_record() {
    let broker = Nisshi::start("dr", Storage::Memory);
    let topics = ["primary.orders", "primary.payments"];
    create(&broker, ClusterRole::Dr, &topics, 6);
    for (t, topic) in topics.iter().enumerate() {
        // Partitions 0 and 5 stay empty; the others get a different number of records.
        for partition in 1..5 {
            produce(
                &broker.bootstrap(),
                topic,
                partition,
                i64::from(partition) + t as i64,
            );
        }
    }
    let cluster = broker.cluster(ClusterRole::Dr);
    let every: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|t| (0..6).map(move |p| TopicPartition::new(*t, p)))
        .collect();
    let ends: Vec<(TopicPartition, i64)> = block_on(cluster.watermarks(&every))
        .expect("watermarks")
        .into_iter()
        .map(|w| (TopicPartition::new(w.topic, w.partition), w.high))
        .collect();
    let newest = block_on(newest_timestamps(
        &cluster,
        ends.clone(),
        Duration::from_secs(10),
    ));
    assert_eq!(newest.unread, None);
    assert_eq!(newest.timestamps.len(), every.len());
    for (tp, end) in &ends {
        let read = block_on(cluster.read_to_end(
            &tp.topic,
            tp.partition,
            ReadOptions {
                timeout: Some(Duration::from_secs(10)),
                allow_partial: false,
            },
        ))
        .expect("read one partition");
        let last = read.records.last().and_then(|r| r.timestamp_ms);
        assert_eq!(read.high, *end, "{tp}");
        assert_eq!(newest.timestamps.get(tp), Some(&last), "{tp}");
        assert_eq!(last.is_none(), *end == 0, "{tp}");
    }
}

/// `Flow::list_and_measure_lag` (each side listed and measured in one session, both at once)
/// gives the partitions and lags that listing on the source and then measuring gives: a
/// topic missing on DR, one with fewer partitions there, one replicated fully, one lagging,
/// and a topic the plan does not replicate.
#[test]
fn lag_from_one_listing_per_cluster_is_lag_from_listing_then_measuring() {
    let pair = Pair::start();
    create(
        &pair.primary,
        ClusterRole::Primary,
        &["orders", "refunds"],
        3,
    );
    create(&pair.primary, ClusterRole::Primary, &["payments"], 2);
    create(&pair.primary, ClusterRole::Primary, &["audit"], 1);
    create(&pair.dr, ClusterRole::Dr, &["primary.orders"], 3);
    create(&pair.dr, ClusterRole::Dr, &["primary.payments"], 1);
    for partition in 0..3 {
        produce(&pair.primary.bootstrap(), "orders", partition, 4);
        produce(&pair.primary.bootstrap(), "refunds", partition, 2);
        produce(
            &pair.dr.bootstrap(),
            "primary.orders",
            partition,
            i64::from(partition) + 1,
        );
    }
    produce(&pair.primary.bootstrap(), "payments", 1, 3);
    produce(&pair.dr.bootstrap(), "primary.payments", 0, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    write_plan_for(
        dir.path(),
        &pair.primary.bootstrap(),
        &pair.dr.bootstrap(),
        "orders, payments, refunds",
    );
    let plan = kdr::plan::load(&dir.path().join("drill.yaml")).expect("plan");
    let clusters = Clusters::from_plan(&plan).expect("clusters");
    let flow = Flow::new(&plan, &clusters, Direction::Failover);
    let (partitions, lags) = block_on(flow.list_and_measure_lag()).expect("one listing");
    let listed = block_on(flow.partitions_from_source()).expect("listing");
    let measured = block_on(flow.measure_lag(&listed, None)).expect("measuring");
    assert_eq!(partitions, listed);
    assert_eq!(lags, measured);
    assert_eq!(lags.len(), 8, "{lags:?}");
    assert_eq!(
        lags.iter()
            .filter(|l| l.missing_on_target())
            .map(|l| (l.source_topic.as_str(), l.partition))
            .collect::<Vec<_>>(),
        [
            ("payments", 1),
            ("refunds", 0),
            ("refunds", 1),
            ("refunds", 2)
        ]
    );
}
