//! The embedded world the end-to-end tests run kdr against: two in-process clusters with
//! MM2-compatible replication and an accounted workload, living in the test process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kdr::kafka::{Cluster, ClusterRole, ClusterSpec, TopicPartition};
use kdr::mm2::ReplicationPolicy;
use kdr::rehearsal::{EmbeddedWorld, Replicator, Role, TopicSpec, Workload, WorldSpec};

use crate::harness::{Run, Scratch, wait, wait_until};

pub(crate) struct World {
    pub(crate) world: EmbeddedWorld,
    pub(crate) replicator: Option<Replicator>,
    pub(crate) workload: Option<Workload>,
    pub(crate) scratch: Scratch,
    pub(crate) spec: WorldSpec,
}

pub(crate) fn spec(policy: ReplicationPolicy) -> WorldSpec {
    WorldSpec {
        topics: vec![TopicSpec::new("orders", 3), TopicSpec::new("payments", 2)],
        groups: vec!["order-processor".to_owned(), "billing".to_owned()],
        policy,
        ..WorldSpec::default()
    }
}

pub(crate) const TOPICS: [(&str, i32); 2] = [("orders", 3), ("payments", 2)];

impl World {
    /// Two clusters and nothing running between them.
    pub(crate) fn idle(spec: WorldSpec) -> World {
        let scratch = Scratch::new();
        let world = EmbeddedWorld::start(spec.clone()).expect("world");
        let w = World {
            world,
            replicator: None,
            workload: None,
            scratch,
            spec,
        };
        w.plan("  - translate_offsets: {}\n", "");
        w
    }

    /// A world with replication and a workload running, warmed up: every group has committed
    /// and been checkpointed.
    pub(crate) fn start(spec: WorldSpec) -> World {
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

    pub(crate) fn replicator(&self) -> &Replicator {
        self.replicator.as_ref().expect("replicator")
    }

    pub(crate) fn workload(&self) -> &Workload {
        self.workload.as_ref().expect("workload")
    }

    pub(crate) fn pause_producers(&self) {
        std::fs::write(self.scratch.file("producers.paused"), "").expect("pause");
        wait_until(Duration::from_secs(10), "producers to pause", || {
            self.workload().stats().producers_paused()
        });
    }

    /// Producers and consumers stop for good; consumers commit what they processed.
    pub(crate) fn stop_workload(&mut self) {
        if let Some(w) = self.workload.take() {
            w.stop();
        }
    }

    /// A plan against this world: `failover` is its step list, `replication_extra` more keys
    /// for `replication`; the failback is a no-op hook.
    pub(crate) fn plan(&self, failover: &str, replication_extra: &str) -> PathBuf {
        self.plan_both(failover, "  - exec: { run: \"true\" }\n", replication_extra)
    }

    pub(crate) fn plan_both(
        &self,
        failover: &str,
        failback: &str,
        replication_extra: &str,
    ) -> PathBuf {
        let policy = match &self.spec.policy {
            ReplicationPolicy::Default { separator, .. } => {
                format!("policy: default, separator: \"{separator}\"")
            }
            ReplicationPolicy::Identity { .. } => "policy: identity".to_owned(),
        };
        let text = format!(
            "version: 1\nname: drill\nclusters:\n  primary: {{ bootstrap_servers: \"{}\" }}\n  dr: {{ bootstrap_servers: \"{}\" }}\nreplication: {{ {policy}, topics: [orders, payments], groups: [order-processor, billing]{replication_extra} }}\nfailover:\n{failover}failback:\n{failback}",
            self.world.bootstrap_servers(Role::Primary),
            self.world.bootstrap_servers(Role::Dr),
        );
        self.scratch.write("drill.yaml", &text)
    }

    /// The newest incident log.
    pub(crate) fn log(&self) -> PathBuf {
        self.scratch.logs().pop().expect("a log")
    }

    /// Runs kdr against the plan, timing it.
    pub(crate) fn kdr(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let child = self
            .scratch
            .command(args)
            .env("KDR_REHEARSAL_DIR", self.scratch.path())
            .spawn()
            .expect("spawn");
        let run = wait(child, Duration::from_secs(90));
        eprintln!(
            "timing: kdr {} took {} ms (exit {})",
            args.join(" "),
            started.elapsed().as_millis(),
            run.code
        );
        run
    }

    pub(crate) fn cluster(&self, role: Role) -> Cluster {
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

    /// A group's committed offsets on one cluster, per (topic, partition), as the test reads
    /// them: the source of truth the command's numbers are compared with.
    pub(crate) fn committed(
        &self,
        role: Role,
        group: &str,
        topics: &[String],
    ) -> BTreeMap<(String, i32), i64> {
        let cluster = self.cluster(role);
        let tps: Vec<TopicPartition> = topics
            .iter()
            .flat_map(|t| {
                let n = TOPICS
                    .iter()
                    .find(|(name, _)| t.ends_with(name))
                    .map_or(0, |(_, n)| *n);
                (0..n).map(move |p| TopicPartition::new(t.clone(), p))
            })
            .collect();
        block_on(cluster.committed_offsets(group, &tps))
            .expect("committed offsets")
            .into_iter()
            .filter_map(|(tp, o)| o.map(|o| ((tp.topic, tp.partition), o)))
            .collect()
    }

    pub(crate) fn end_offsets(
        &self,
        role: Role,
        topics: &[(&str, i32)],
    ) -> BTreeMap<(String, i32), i64> {
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
        // Consumers attached to a cluster that is down may never finish closing: bring both
        // back before stopping anything.
        for role in Role::BOTH {
            let _ = self.world.cluster_up(role);
        }
        if let Some(w) = self.workload.take() {
            w.stop();
        }
        if let Some(r) = self.replicator.take() {
            r.stop();
        }
    }
}

pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}
