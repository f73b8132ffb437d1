//! The writes only the old primary saw (issue 11, part 3): a failover accepts the loss of the
//! records DR never received; the failback finds them on the primary from the failover's log,
//! and exports, skips or leaves them as the plan says, or stops before repointing when it
//! does not say. Each test checks the broker itself: the home group's committed offsets read
//! by a consumer of the test's own, the exported file against what the primary holds.

use std::path::Path;
use std::time::Duration;

use kdr::kafka::{ClusterRole, TopicPartition};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::harness::{Pair, block_on, create_topics, events, kdr, logs};
use crate::mm2::{GROUP, TOPIC, produce, write_plan};

const PARTITIONS: i32 = 3;
/// Records per partition on the primary, and how many of them DR received.
const ON_PRIMARY: i64 = 10;
const ON_DR: i64 = 6;
/// The home group's commits on the primary before the disaster: behind what DR had, inside
/// the stranded range, and past it.
const HOME_COMMITS: [(i32, i64); 3] = [(0, 3), (1, 8), (2, 10)];
const YES: [&str; 5] = ["--yes", "--operator", "alice", "--reason", "drill"];

/// A failover that accepted the loss of 4 records on each of 3 partitions: the primary holds
/// 10 records per partition of `orders`, DR's replica `primary.orders` the first 6 (written
/// here as MirrorMaker 2 would have), and the home group has committed on the primary.
/// Returns the pair and the test's directory, with `drill.yaml` and the failover done.
fn after_a_lossy_failover(failback: &str) -> (Pair, tempfile::TempDir) {
    let pair = Pair::start();
    let primary = pair.primary.cluster(ClusterRole::Primary);
    let dr = pair.dr.cluster(ClusterRole::Dr);
    create_topics(&primary, &[TOPIC.to_owned()], PARTITIONS);
    create_topics(
        &dr,
        &[format!("primary.{TOPIC}"), TOPIC.to_owned()],
        PARTITIONS,
    );
    for p in 0..PARTITIONS {
        produce(&pair.primary.bootstrap(), TOPIC, p, ON_PRIMARY);
        produce(&pair.dr.bootstrap(), &format!("primary.{TOPIC}"), p, ON_DR);
    }
    let commits: Vec<(TopicPartition, i64)> = HOME_COMMITS
        .iter()
        .map(|&(p, o)| (TopicPartition::new(TOPIC, p), o))
        .collect();
    block_on(primary.commit_offsets(GROUP, &commits)).expect("home commits");

    let dir = tempfile::tempdir().expect("tempdir");
    write_plan(
        dir.path(),
        &pair.primary.bootstrap(),
        &pair.dr.bootstrap(),
        "  - declare: {}\n  - wait_replication: { timeout: 2s, poll_interval: 100ms, on_timeout: accept_rpo }\n",
        failback,
    );
    let run = kdr(dir.path(), &args("failover"));
    assert_eq!(run.code, 0, "{run:?}");
    (pair, dir)
}

fn args(direction: &str) -> Vec<&str> {
    let mut args = vec![direction, "--plan", "drill.yaml"];
    args.extend(YES);
    args
}

/// The failback's steps: the declaration with `declare`'s options, then a repoint whose file
/// shows whether the run got that far.
fn failback_steps(declare: &str) -> String {
    format!("  - declare: {{ {declare} }}\n  - repoint: {{ write_file: {{ path: repointed }} }}\n")
}

/// The home group's committed offsets on the primary, read by a consumer of the test's own.
fn home_commits(pair: &Pair) -> Vec<(i32, Option<i64>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", pair.primary.bootstrap())
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("log_level", "0")
        .create()
        .expect("consumer");
    let mut asked = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        asked.add_partition(TOPIC, p);
    }
    let committed = consumer
        .committed_offsets(asked, Duration::from_secs(10))
        .expect("committed offsets");
    (0..PARTITIONS)
        .map(|p| {
            let offset = match committed.find_partition(TOPIC, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            (p, offset)
        })
        .collect()
}

fn failback_log(dir: &Path) -> Vec<serde_json::Value> {
    let log = logs(dir)
        .into_iter()
        .find(|l| l.to_string_lossy().contains("-failback-"))
        .expect("a failback log");
    events(&log)
}

fn observation<'a>(events: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["event"] == "observation" && e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} observation in {events:#?}"))
}

/// The stranded records the failback reported: per partition (partition, count, first and
/// last offset), and that each has its first and last timestamps.
fn reported(events: &[serde_json::Value]) -> Vec<(i64, u64, i64, i64)> {
    let found = &observation(events, "stranded_records")["data"];
    assert_eq!(found["total_records"], 12, "{found}");
    found["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            assert!(p["first_timestamp_ms"].is_i64(), "{p}");
            assert!(p["last_timestamp_ms"].is_i64(), "{p}");
            assert_eq!(p["topic"], TOPIC);
            (
                p["partition"].as_i64().expect("partition"),
                p["records"].as_u64().expect("records"),
                p["first_offset"].as_i64().expect("first"),
                p["last_offset"].as_i64().expect("last"),
            )
        })
        .collect()
}

const EXPECTED: [(i64, u64, i64, i64); 3] = [(0, 4, 6, 9), (1, 4, 6, 9), (2, 4, 6, 9)];

#[test]
fn a_failback_with_stranded_records_and_no_choice_stops_before_repointing() {
    let (pair, dir) = after_a_lossy_failover(&failback_steps(""));
    let run = kdr(dir.path(), &args("failback"));
    assert_eq!(run.code, 1, "{run:?}");
    let output = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "12 records on primary never reached dr",
        "add `stranded: export`, `stranded: skip` or `stranded: consume` to `failback[0].declare` (step 1) in drill.yaml line",
        "nothing was repointed",
        // Resuming would stop again (or, the plan edited, be refused): a new run is the way.
        "step 1 (declare) refused: ",
    ] {
        assert!(output.contains(expected), "missing {expected:?}: {run:?}");
    }
    assert!(!dir.path().join("repointed").exists(), "repointed anyway");
    let events = failback_log(dir.path());
    assert_eq!(reported(&events), EXPECTED);
    // Nothing was decided for the operator, nothing moved, no write authority claimed.
    assert!(
        !events.iter().any(|e| e["event"] == "decision"),
        "{events:#?}"
    );
    assert_eq!(
        home_commits(&pair),
        HOME_COMMITS.map(|(p, o)| (p, Some(o))).to_vec()
    );
}

#[test]
fn stranded_skip_moves_the_home_group_past_them_and_never_backwards() {
    let (pair, dir) = after_a_lossy_failover(&failback_steps("stranded: skip"));
    let run = kdr(dir.path(), &args("failback"));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(dir.path().join("repointed").exists());
    // 0 and 1 moved to the end of the stranded records; 2 was past them already.
    assert_eq!(
        home_commits(&pair),
        vec![(0, Some(10)), (1, Some(10)), (2, Some(10))]
    );
    let events = failback_log(dir.path());
    assert_eq!(reported(&events), EXPECTED);
    let moved = events
        .iter()
        .find(|e| e["event"] == "decision" && e["data"]["group"] == GROUP)
        .expect("the group's move is logged");
    let rows: Vec<(String, i64, i64)> = moved["data"]["partitions"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default().to_owned(),
                r["was"].as_i64().unwrap_or(-1),
                r["stranded_skipped"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("commit".to_owned(), 3, 4),
            ("commit".to_owned(), 8, 2),
            ("unchanged".to_owned(), 10, 0)
        ]
    );
}

#[test]
fn stranded_export_writes_every_record_to_a_file_then_skips_them() {
    let (pair, dir) = after_a_lossy_failover(&failback_steps("stranded: export"));
    let run = kdr(dir.path(), &args("failback"));
    assert_eq!(run.code, 0, "{run:?}");
    let events = failback_log(dir.path());
    assert_eq!(reported(&events), EXPECTED);
    let exported = &observation(&events, "stranded_exported")["data"];
    let file = dir.path().join(exported["file"].as_str().expect("file"));
    let text = std::fs::read_to_string(&file).expect("the export");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(exported["records"], 12);
    // Every record the primary holds past what DR had, exactly as the primary holds it.
    let mut seen: Vec<(i64, i64, String, String)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["v"], 1);
            assert_eq!(l["topic"], TOPIC);
            assert!(l["timestamp_ms"].is_i64(), "{l}");
            assert_eq!(l["headers"], serde_json::json!([]));
            (
                l["partition"].as_i64().expect("partition"),
                l["offset"].as_i64().expect("offset"),
                l["key"].as_str().expect("key").to_owned(),
                l["value"].as_str().expect("value").to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = Vec::new();
    for p in 0..i64::from(PARTITIONS) {
        for o in ON_DR..ON_PRIMARY {
            expected.push((
                p,
                o,
                kdr::steps::stranded::base64(format!("k{p}-{o}").as_bytes()),
                kdr::steps::stranded::base64(format!("v{p}-{o}").as_bytes()),
            ));
        }
    }
    assert_eq!(seen, expected);
    // No partial file is left beside it.
    let folder: Vec<_> = std::fs::read_dir(file.parent().expect("folder"))
        .expect("read folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(folder.len(), 1, "{folder:?}");
    assert_eq!(
        home_commits(&pair),
        vec![(0, Some(10)), (1, Some(10)), (2, Some(10))]
    );
    assert!(dir.path().join("repointed").exists());
}

#[test]
fn stranded_consume_leaves_them_to_the_consumers_as_the_operators_decision() {
    let (pair, dir) = after_a_lossy_failover(&failback_steps("stranded: consume"));
    let run = kdr(dir.path(), &args("failback"));
    assert_eq!(run.code, 0, "{run:?}");
    let events = failback_log(dir.path());
    assert_eq!(reported(&events), EXPECTED);
    let decision = events
        .iter()
        .find(|e| e["event"] == "decision" && e["data"]["choice"] == "consume")
        .expect("the decision is logged");
    assert_eq!(decision["who"], "alice");
    assert_eq!(
        home_commits(&pair),
        HOME_COMMITS.map(|(p, o)| (p, Some(o))).to_vec()
    );
    assert!(dir.path().join("repointed").exists());
}

#[test]
fn an_export_that_fails_claims_nothing_skips_nothing_and_a_resume_finishes_it() {
    let (pair, dir) = after_a_lossy_failover(&failback_steps("stranded: export"));
    // The export's folder cannot be made: a file stands where it goes.
    std::fs::write(dir.path().join("incidents").join("stranded"), "in the way").expect("block");
    let run = kdr(dir.path(), &args("failback"));
    assert_eq!(run.code, 1, "{run:?}");
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(
        output.contains("failed to export the stranded records")
            && output.contains("nothing was skipped and no export is claimed"),
        "{run:?}"
    );
    let events = failback_log(dir.path());
    assert!(
        !events.iter().any(|e| e["name"] == "stranded_exported"),
        "an export is claimed: {events:#?}"
    );
    assert!(!dir.path().join("repointed").exists());
    assert_eq!(
        home_commits(&pair),
        HOME_COMMITS.map(|(p, o)| (p, Some(o))).to_vec()
    );

    // The way cleared, the same run resumed exports every record and moves the group.
    std::fs::remove_file(dir.path().join("incidents").join("stranded")).expect("unblock");
    let log = logs(dir.path())
        .into_iter()
        .find(|l| l.to_string_lossy().contains("-failback-"))
        .expect("the failback's log");
    let log = log.to_str().expect("utf-8 path");
    let mut resume = args("failback");
    resume.extend(["--resume", log]);
    let run = kdr(dir.path(), &resume);
    assert_eq!(run.code, 0, "{run:?}");
    let events = failback_log(dir.path());
    let exported = &observation(&events, "stranded_exported")["data"];
    assert_eq!(exported["records"], 12);
    assert_eq!(
        home_commits(&pair),
        vec![(0, Some(10)), (1, Some(10)), (2, Some(10))]
    );
    assert!(dir.path().join("repointed").exists());
}

#[test]
fn records_that_reached_dr_after_the_failover_accepted_its_loss_are_not_stranded() {
    let (pair, dir) = after_a_lossy_failover(&failback_steps("stranded: consume"));
    // Replication went on after the loss was accepted: 3 more of partition 1's records reached
    // DR's replica (as MirrorMaker 2 would have copied them).
    produce(&pair.dr.bootstrap(), &format!("primary.{TOPIC}"), 1, 3);
    let run = kdr(dir.path(), &args("failback"));
    assert_eq!(run.code, 0, "{run:?}");
    let events = failback_log(dir.path());
    let found = &observation(&events, "stranded_records")["data"];
    assert_eq!(found["total_records"], 9, "{found}");
    assert_eq!(
        found["reached_dr_later"],
        serde_json::json!([{ "topic": TOPIC, "partition": 1, "logged": ON_DR, "now": ON_DR + 3 }]),
        "{found}"
    );
    let one = found["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .find(|p| p["partition"] == 1)
        .expect("partition 1");
    assert_eq!(
        (one["records"].as_u64(), one["first_offset"].as_i64()),
        (Some(1), Some(9)),
        "{one}"
    );
}
