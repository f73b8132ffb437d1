//! The look-up commands (`kdr lag`, `kdr offsets translate`, `kdr status`) against the embedded
//! world: two in-process clusters with MM2-compatible replication and an accounted workload in
//! this test process, kdr run as a child against them. Every JSON output is read back into the
//! structs below, which refuse unknown fields: they are the documented contract.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kdr::kafka::{Cluster, ClusterRole, ClusterSpec, TopicPartition};
use kdr::mm2::ReplicationPolicy;
use kdr::rehearsal::{EmbeddedWorld, Pause, Replicator, Role, TopicSpec, Workload, WorldSpec};
use serde::Deserialize;

use crate::harness::{Run, Scratch, wait, wait_until};

// ---- The JSON contract -------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LagOut {
    v: u32,
    direction: String,
    source: String,
    target: String,
    source_reachable: bool,
    source_error: Option<String>,
    total_lag: Option<i64>,
    partitions: Vec<LagRowOut>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LagRowOut {
    source_topic: String,
    target_topic: String,
    partition: i32,
    source_end: Option<i64>,
    replicated_to: Option<i64>,
    lag: Option<i64>,
    method: String,
    target_end: i64,
    newest_record_age_ms: Option<i64>,
}

const LAG_KEYS: &[&str] = &[
    "v",
    "direction",
    "source",
    "target",
    "source_reachable",
    "source_error",
    "total_lag",
    "partitions",
];
const LAG_ROW_KEYS: &[&str] = &[
    "source_topic",
    "target_topic",
    "partition",
    "source_end",
    "replicated_to",
    "lag",
    "method",
    "target_end",
    "newest_record_age_ms",
];

/// Nullable fields are absent-tolerant in serde; the contract says they are always there.
fn assert_keys(value: &serde_json::Value, keys: &[&str]) {
    let mut have: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    have.sort_unstable();
    let mut want = keys.to_vec();
    want.sort_unstable();
    assert_eq!(have, want, "{value}");
}

fn parse<T: serde::de::DeserializeOwned>(run: &Run) -> (T, serde_json::Value) {
    let value: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("json: {e}\n{run:?}"));
    let typed = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("the documented shape: {e}\n{run:?}"));
    (typed, value)
}

fn lag_json(run: &Run) -> LagOut {
    let (out, value): (LagOut, _) = parse(run);
    assert_keys(&value, LAG_KEYS);
    for p in value["partitions"].as_array().expect("partitions") {
        assert_keys(p, LAG_ROW_KEYS);
    }
    out
}

// ---- The world ---------------------------------------------------------------------------

struct World {
    world: EmbeddedWorld,
    replicator: Option<Replicator>,
    workload: Option<Workload>,
    scratch: Scratch,
    spec: WorldSpec,
}

fn spec(policy: ReplicationPolicy) -> WorldSpec {
    WorldSpec {
        topics: vec![TopicSpec::new("orders", 3), TopicSpec::new("payments", 2)],
        groups: vec!["order-processor".to_owned(), "billing".to_owned()],
        policy,
        ..WorldSpec::default()
    }
}

const TOPICS: [(&str, i32); 2] = [("orders", 3), ("payments", 2)];

impl World {
    /// Two clusters and nothing running between them.
    fn idle(spec: WorldSpec) -> World {
        let scratch = Scratch::new();
        let world = EmbeddedWorld::start(spec.clone()).expect("world");
        let w = World {
            world,
            replicator: None,
            workload: None,
            scratch,
            spec,
        };
        w.plan();
        w
    }

    /// A world with replication and a workload running, warmed up: every group has committed
    /// and been checkpointed.
    fn start(spec: WorldSpec) -> World {
        let mut w = World::idle(spec);
        std::fs::write(
            w.scratch.file("bootstrap"),
            format!("{}\n", w.world.bootstrap_servers(Role::Primary)),
        )
        .expect("bootstrap");
        let replicator =
            Replicator::start(w.world.replicator_config(Role::Primary)).expect("replicator");
        let mut config = w.world.workload_config(
            w.scratch.file("bootstrap"),
            w.scratch.file("producers.paused"),
        );
        config.rate_per_sec = 300;
        let workload = Workload::start(config).expect("workload");
        let groups = w.spec.groups.clone();
        wait_until(Duration::from_secs(30), "the world to warm up", || {
            let s = workload.stats();
            let r = replicator.stats();
            s.acknowledged >= 100
                && groups
                    .iter()
                    .all(|g| s.groups.get(g).is_some_and(|s| s.commits > 0))
                && groups
                    .iter()
                    .all(|g| r.last_checkpoints.keys().any(|(cg, _, _)| cg == g))
        });
        w.replicator = Some(replicator);
        w.workload = Some(workload);
        w
    }

    fn replicator(&self) -> &Replicator {
        self.replicator.as_ref().expect("replicator")
    }

    fn workload(&self) -> &Workload {
        self.workload.as_ref().expect("workload")
    }

    fn pause_producers(&self) {
        std::fs::write(self.scratch.file("producers.paused"), "").expect("pause");
        wait_until(Duration::from_secs(10), "producers to pause", || {
            self.workload().stats().producers_paused()
        });
    }

    fn plan(&self) -> PathBuf {
        let policy = match &self.spec.policy {
            ReplicationPolicy::Default { separator, .. } => {
                format!("policy: default, separator: \"{separator}\"")
            }
            ReplicationPolicy::Identity { .. } => "policy: identity".to_owned(),
        };
        let text = format!(
            "version: 1\nname: drill\nclusters:\n  primary: {{ bootstrap_servers: \"{}\" }}\n  dr: {{ bootstrap_servers: \"{}\" }}\nreplication: {{ {policy}, topics: [orders, payments], groups: [order-processor, billing] }}\nfailover:\n  - translate_offsets: {{}}\nfailback:\n  - exec: {{ run: \"true\" }}\n",
            self.world.bootstrap_servers(Role::Primary),
            self.world.bootstrap_servers(Role::Dr),
        );
        self.scratch.write("drill.yaml", &text)
    }

    /// Runs kdr against the plan, timing it.
    fn kdr(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let child = self.scratch.command(args).spawn().expect("spawn");
        let run = wait(child, Duration::from_secs(60));
        eprintln!(
            "timing: kdr {} took {} ms (exit {})",
            args.join(" "),
            started.elapsed().as_millis(),
            run.code
        );
        run
    }

    fn cluster(&self, role: Role) -> Cluster {
        let kafka_role = match role {
            Role::Primary => ClusterRole::Primary,
            Role::Dr => ClusterRole::Dr,
        };
        Cluster::new(
            ClusterSpec::new(kafka_role, self.world.bootstrap_servers(role)),
            Duration::from_secs(5),
        )
        .expect("cluster")
    }

    fn end_offsets(&self, role: Role, topics: &[(&str, i32)]) -> BTreeMap<(String, i32), i64> {
        let tps: Vec<TopicPartition> = topics
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(*t, p)))
            .collect();
        block_on(self.cluster(role).watermarks(&tps))
            .expect("watermarks")
            .into_iter()
            .map(|w| ((w.topic, w.partition), w.high))
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(w) = self.workload.take() {
            w.stop();
        }
        if let Some(r) = self.replicator.take() {
            r.stop();
        }
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

// ---- lag -----------------------------------------------------------------------------------

#[test]
fn lag_equals_what_the_replicator_has_not_copied_yet() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.replicator().pause(Pause::Copying);
    wait_until(Duration::from_secs(10), "copying to pause", || {
        w.replicator().stats().copy_paused
    });
    let before = w.workload().stats().acknowledged;
    wait_until(Duration::from_secs(20), "records to pile up", || {
        w.workload().stats().acknowledged >= before + 60
    });
    w.pause_producers();

    let run = w.kdr(&["lag", "--plan", "drill.yaml", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let out = lag_json(&run);
    let positions = w.replicator().stats().positions();
    let ends = w.end_offsets(Role::Primary, &TOPICS);
    let mut want = Vec::new();
    for (topic, n) in TOPICS {
        for p in 0..n {
            let end = ends[&(topic.to_owned(), p)];
            let copied_to = positions.get(&(topic.to_owned(), p)).copied().unwrap_or(0);
            want.push((
                topic.to_owned(),
                format!("primary.{topic}"),
                p,
                Some(end),
                Some(copied_to),
                Some(end - copied_to),
                "offset_sync".to_owned(),
            ));
        }
    }
    let got: Vec<_> = out
        .partitions
        .iter()
        .map(|r| {
            (
                r.source_topic.clone(),
                r.target_topic.clone(),
                r.partition,
                r.source_end,
                r.replicated_to,
                r.lag,
                r.method.clone(),
            )
        })
        .collect();
    assert_eq!(got, want);
    let total: i64 = want.iter().filter_map(|r| r.5).sum();
    assert!(total >= 60, "the lag is real: {total}");
    assert_eq!(out.total_lag, Some(total));
    assert!(
        out.source_reachable && out.source_error.is_none(),
        "{out:?}"
    );
    assert_eq!(
        (
            out.v,
            out.direction.as_str(),
            out.source.as_str(),
            out.target.as_str()
        ),
        (1, "failover", "primary", "dr")
    );
    for r in &out.partitions {
        // Every target partition holds records from the warm-up: their age is known.
        assert!(r.target_end > 0, "{r:?}");
        assert!(r.newest_record_age_ms.is_some_and(|a| a >= 0), "{r:?}");
    }

    // The table shows the same numbers.
    let run = w.kdr(&["lag", "--plan", "drill.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "primary → dr: {} records behind over 5 partitions",
            kdr::lookup::count(total)
        )),
        "{run:?}"
    );

    // The other way round, nothing flows: DR's own topics are empty and so is the lag.
    let run = w.kdr(&[
        "lag",
        "--plan",
        "drill.yaml",
        "--direction",
        "failback",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let back = lag_json(&run);
    assert_eq!(
        (back.source.as_str(), back.target.as_str()),
        ("dr", "primary")
    );
    assert_eq!(back.total_lag, Some(0));
    assert!(
        back.partitions
            .iter()
            .all(|r| r.target_topic.starts_with("dr.") && r.newest_record_age_ms.is_none()),
        "{back:?}"
    );
}

#[test]
fn lag_with_the_source_down_says_so_and_shows_what_the_target_holds() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.pause_producers();
    w.world.cluster_down(Role::Primary).expect("primary down");
    let run = w.kdr(&["lag", "--plan", "drill.yaml", "--output", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let out = lag_json(&run);
    assert!(!out.source_reachable);
    assert!(
        out.source_error
            .as_deref()
            .is_some_and(|e| e.starts_with("primary unreachable")),
        "{out:?}"
    );
    assert!(run.stderr.contains("primary unreachable"), "{run:?}");
    assert_eq!(out.total_lag, None);
    assert_eq!(out.partitions.len(), 5, "{out:?}");
    for r in &out.partitions {
        assert_eq!((r.source_end, r.lag), (None, None), "{r:?}");
        assert_eq!(r.replicated_to, Some(r.target_end), "{r:?}");
        assert!(r.newest_record_age_ms.is_some(), "{r:?}");
    }
    let run = w.kdr(&["lag", "--plan", "drill.yaml"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("lag unknown: primary unreachable"),
        "{run:?}"
    );
}

#[test]
fn a_lookup_never_outlives_its_timeout() {
    // A cluster that accepts connections and never answers: kdr must give up on its own.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let silent = listener.local_addr().expect("addr").to_string();
    let s = Scratch::new();
    s.write(
        "silent.yaml",
        &format!(
            "version: 1\nname: silent\nclusters:\n  primary: {{ bootstrap_servers: \"{silent}\" }}\n  dr: {{ bootstrap_servers: \"{silent}\" }}\nreplication: {{ topics: [orders], groups: [billing] }}\nfailover:\n  - translate_offsets: {{}}\nfailback:\n  - exec: {{ run: \"true\" }}\n"
        ),
    );
    let started = Instant::now();
    let run = s.kdr(&["lag", "--plan", "silent.yaml", "--timeout", "3s"]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    drop(listener);
}
