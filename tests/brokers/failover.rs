//! `kdr failover`, the built binary, against the two Nisshi brokers with the replicator running.

use std::path::Path;
use std::time::Duration;

use kdr::kafka::TopicPartition;

use crate::cluster::Member;
use crate::harness::{block_on, events, kdr, logs, wait_until};
use crate::mm2::{COMMITS, GROUP, Mm2, REMOTE_TOPIC, checkpoint, write_plan};

const YES: &[&str] = &["--yes", "--operator", "alice", "--reason", "drill"];

/// Writes `drill.yaml` into `dir` for the pair with the given failover steps.
fn plan(mm2: &Mm2, dir: &Path, failover: &str) {
    write_plan(
        dir,
        &mm2.pair.primary.bootstrap(),
        &mm2.pair.dr.bootstrap(),
        failover,
        "  - exec: { run: \"true\" }\n",
    );
}

/// `kdr failover --plan drill.yaml --yes --operator alice --reason drill`, plus `extra`.
pub fn failover_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    ["failover", "--plan", "drill.yaml"]
        .iter()
        .chain(YES)
        .chain(extra)
        .copied()
        .collect()
}

pub fn failover(dir: &Path) -> crate::harness::Run {
    kdr(dir, &failover_args(&[]))
}

pub fn remote_partitions() -> Vec<TopicPartition> {
    COMMITS
        .iter()
        .map(|&(p, _)| TopicPartition::new(REMOTE_TOPIC, p))
        .collect()
}

#[test]
fn failover_declares_waits_for_replication_and_commits_translated_offsets_on_dr() {
    let mm2 = Mm2::start();
    let dir = tempfile::tempdir().expect("tempdir");
    plan(
        &mm2,
        dir.path(),
        "  - declare: {}\n  - wait_replication: { timeout: 20s, poll_interval: 100ms, on_timeout: abort }\n  - translate_offsets: { groups: all }\n",
    );
    let run = failover(dir.path());
    assert_eq!(run.code, 0, "{run:?}");

    // The offsets committed on DR are the checkpoints' translations: nothing else wrote them.
    let committed = mm2.committed_on_dr();
    assert_eq!(committed, mm2.translated(), "{run:?}");
    assert_eq!(committed[0].1, Some(10));
    assert_eq!(committed[2].1, Some(10));

    let log = logs(dir.path()).pop().expect("an incident log");
    let finished: Vec<String> = events(&log)
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| format!("{} {}", e["step"], e["status"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(finished, ["1 ok", "2 ok", "3 ok"], "{run:?}");
}

#[test]
fn translate_offsets_refuses_a_group_with_a_live_member_on_dr_and_names_it() {
    let mm2 = Mm2::start();
    let dr = mm2.dr();
    let member = Member::join(
        &mm2.pair.dr.bootstrap(),
        GROUP,
        REMOTE_TOPIC,
        "still-running-on-dr",
    );
    wait_until(
        Duration::from_secs(20),
        "the consumer on DR to join the group",
        || block_on(dr.group_state(GROUP)).is_ok_and(|d| d.state == "Stable" && d.has_members()),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    plan(&mm2, dir.path(), "  - translate_offsets: { groups: all }\n");
    let run = failover(dir.path());
    assert_eq!(run.code, 1, "{run:?}");
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(
        output.contains(&format!(
            "groups with live members on dr were refused: {GROUP}"
        )),
        "{run:?}"
    );
    let log = logs(dir.path()).pop().expect("an incident log");
    let members = events(&log)
        .into_iter()
        .find(|e| e["name"] == "group_members")
        .expect("a group_members observation");
    let detail = members["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("still-running-on-dr"),
        "the refusal does not name the member: {members}"
    );
    // Nothing was committed for the live group.
    let committed = block_on(dr.committed_offsets(GROUP, &remote_partitions())).expect("committed");
    assert!(committed.iter().all(|(_, o)| o.is_none()), "{committed:?}");
    drop(member);
}

#[test]
fn translate_offsets_clamps_a_translation_below_the_log_start_after_delete_records() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::{Offset, TopicPartitionList};

    let mm2 = Mm2::start();
    // Partition 1's commit (4) translates to 1: the only offset sync at or before it is at 0.
    let stats = mm2.stats();
    let translated = checkpoint(&stats, 1).expect("checkpoint").downstream_offset;
    assert!(translated < 6, "translated to {translated}");
    // Retention (here DeleteRecords) has removed DR's records before offset 6.
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", mm2.pair.dr.bootstrap())
        .set("log_level", "0")
        .create()
        .expect("admin");
    let mut before = TopicPartitionList::new();
    before
        .add_partition_offset(REMOTE_TOPIC, 1, Offset::Offset(6))
        .expect("offset");
    let deleted = block_on(admin.delete_records(
        &before,
        &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("delete records");
    let low = deleted
        .find_partition(REMOTE_TOPIC, 1)
        .expect("partition")
        .offset();
    assert_eq!(low, Offset::Offset(6), "the new log start");

    let dir = tempfile::tempdir().expect("tempdir");
    plan(&mm2, dir.path(), "  - translate_offsets: { groups: all }\n");
    let run = failover(dir.path());
    assert_eq!(run.code, 0, "{run:?}");
    let committed =
        block_on(mm2.dr().committed_offsets(GROUP, &remote_partitions())).expect("committed");
    assert_eq!(committed[1].1, Some(6), "{committed:?}");
    let log = logs(dir.path()).pop().expect("an incident log");
    let plan_text = events(&log)
        .into_iter()
        .find(|e| e["name"] == "group" && e["detail"].as_str().unwrap_or("").contains("committed"))
        .map(|e| e["data"].to_string())
        .unwrap_or_default();
    assert!(
        plan_text.contains(&format!("clamp: {translated} is below the log start 6")),
        "the clamp is not in the log: {plan_text}"
    );
}

#[test]
fn validate_passes_a_quiet_group_with_consumers_attached_and_names_an_abandoned_one() {
    let mm2 = Mm2::start();
    let dr = mm2.dr();
    // The group is caught up on DR: committed at the end of every partition, nothing to read.
    let ends: Vec<(TopicPartition, i64)> =
        remote_partitions().into_iter().map(|tp| (tp, 10)).collect();
    block_on(dr.commit_offsets(GROUP, &ends)).expect("commit on dr");
    let dir = tempfile::tempdir().expect("tempdir");
    plan(&mm2, dir.path(), "  - validate: { within: 1s }\n");

    // No consumer attached: nothing proves the group works there.
    let run = failover(dir.path());
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "groups not progressing on dr: {GROUP} (caught up, but no consumer attached: empty)"
        )),
        "{run:?}"
    );

    // A consumer attached with nothing new to read: the group is quiet, not broken.
    let member = Member::join(&mm2.pair.dr.bootstrap(), GROUP, REMOTE_TOPIC, "quiet-app");
    wait_until(Duration::from_secs(20), "the consumer to join", || {
        block_on(dr.group_state(GROUP)).is_ok_and(|d| d.state == "Stable" && d.has_members())
    });
    let run = failover(dir.path());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("caught up (lag 0) with 1 live member"),
        "{run:?}"
    );
    drop(member);
}
