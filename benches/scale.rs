//! `make bench-scale`: offset translation at the size of issue 10, printed, not asserted.
//!
//! Two Nisshi brokers on free loopback ports (the real-broker suite's harness), `orders` with
//! 100 partitions on the primary and `primary.orders` on DR, 100 records on every partition of
//! both, and a checkpoints topic of 1 000 000 records: 5 000 groups x 100 partitions, each
//! checkpointed twice, newest last, written with kdr's MM2 codec. Then, one line per figure:
//! a bare librdkafka read of the checkpoints topic to its end (the baseline), `kdr offsets
//! translate --group 're:.*'` end to end (the built binary), its ratio to the baseline and peak
//! RSS, and the same with `--apply`; then, with DR's groups deleted, `kdr failover` of a plan
//! whose one step is translate_offsets for every group (the step committing them all again).
//!
//! `KDR_BENCH_GROUPS` / `KDR_BENCH_PARTITIONS` change the size, `KDR_BENCH_BIN` runs another
//! kdr binary (a build of an older commit, for before/after figures), `KDR_BENCH_STDERR=1`
//! shows each run's progress lines (where the time goes), `KDR_BENCH_CONCURRENCY=N` passes
//! `--concurrency N`, `KDR_BENCH_HOLD=1` keeps the brokers up after the figures (printing the plan's
//! directory) until a file named `release` appears in it, for profiling by hand. Under `cargo test` (no
//! `--bench` argument) it runs at a smoke size of 20 groups x 10 partitions.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/brokers/harness.rs"]
#[expect(
    dead_code,
    unused_imports,
    reason = "the suite's harness; the benchmark uses a few of its parts"
)]
mod harness;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kdr::kafka::{ClusterRole, TopicCreation};
use kdr::mm2::Checkpoint;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use harness::{Pair, block_on};

const CHECKPOINTS: &str = "primary.checkpoints.internal";
const RECORDS_PER_PARTITION: i64 = 100;

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let groups = size("KDR_BENCH_GROUPS", if bench { 5_000 } else { 20 });
    let partitions = size("KDR_BENCH_PARTITIONS", if bench { 100 } else { 10 }) as i32;
    let binary = std::env::var_os("KDR_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kdr")));
    let started = Instant::now();
    let pair = Pair::start();
    let dir = tempfile::tempdir().expect("tempdir");
    create(&pair, partitions);
    fill(&pair.primary.bootstrap(), "orders", partitions);
    fill(&pair.dr.bootstrap(), "primary.orders", partitions);
    let records = write_checkpoints(&pair.dr.bootstrap(), groups, partitions);
    write_plan(dir.path(), &pair);
    println!(
        "estate: {groups} groups x {partitions} partitions, {records} checkpoint records, set up in {:.1?}",
        started.elapsed()
    );

    let baseline = bare_read(&pair.dr.bootstrap(), records);
    println!(
        "{:<44} {:>8.2?}",
        "bare librdkafka read of the checkpoints", baseline
    );
    let concurrency = std::env::var("KDR_BENCH_CONCURRENCY").ok();
    let extra: Vec<&str> = match &concurrency {
        Some(n) => vec!["--concurrency", n],
        None => Vec::new(),
    };
    let with = |more: &[&'static str]| [extra.as_slice(), more].concat();
    let brokers = [pair.primary.bootstrap(), pair.dr.bootstrap()];
    let measure = |more: &[&'static str]| {
        let before = brokers_cpu(&brokers);
        let run = kdr(&binary, dir.path(), &with(more));
        (run, brokers_cpu(&brokers).saturating_sub(before))
    };
    let (translate, brokers_took) = measure(&[]);
    report(
        "kdr offsets translate --group 're:.*'",
        &translate,
        baseline,
        brokers_took,
    );
    let (apply, brokers_took) = measure(&["--apply"]);
    report(
        "kdr offsets translate --group 're:.*' --apply",
        &apply,
        baseline,
        brokers_took,
    );
    let (again, brokers_took) = measure(&[]);
    report(
        "kdr offsets translate, after --apply",
        &again,
        baseline,
        brokers_took,
    );
    // The translate_offsets step committing every group, as --apply did: DR forgets the
    // groups first, so the step has them all to commit again.
    delete_groups(&pair.dr.bootstrap(), groups);
    write_step_plan(dir.path(), &pair);
    let before = brokers_cpu(&brokers);
    let log = dir.path().join("step.jsonl");
    let step = run_kdr(
        &binary,
        dir.path(),
        &[
            "failover",
            "--plan",
            "step.yaml",
            "--yes",
            "--operator",
            "bench",
            "--reason",
            "bench",
            "--log",
            "step.jsonl",
        ],
    );
    report(
        "translate_offsets step (kdr failover)",
        &step,
        baseline,
        brokers_cpu(&brokers).saturating_sub(before),
    );
    println!(
        "  incident log {} MB",
        std::fs::metadata(&log).map_or(0, |m| m.len()) / 1_000_000
    );
    println!(
        "targets: translate <= 1.5 x baseline + 1 s = {:.2?}; RSS < 200 MB; apply and the step <= 10 s",
        baseline.mul_f64(1.5) + Duration::from_secs(1)
    );
    if std::env::var_os("KDR_BENCH_HOLD").is_some() {
        hold(dir.path());
    }
}

/// Keeps the brokers up until `<dir>/release` exists (at most two hours), for profiling runs by
/// hand against the same estate.
fn hold(dir: &Path) {
    println!(
        "holding: the plan is {}; touch {} to stop",
        dir.join("scale.yaml").display(),
        dir.join("release").display()
    );
    let started = Instant::now();
    while !dir.join("release").exists() && started.elapsed() < Duration::from_secs(7200) {
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn create(pair: &Pair, partitions: i32) {
    let primary = pair.primary.cluster(ClusterRole::Primary);
    let dr = pair.dr.cluster(ClusterRole::Dr);
    block_on(async {
        for (cluster, topic, count) in [
            (&primary, "orders", partitions),
            (&dr, "primary.orders", partitions),
            (&dr, CHECKPOINTS, 1),
        ] {
            let created = cluster
                .create_topic(topic, count, 1, &[])
                .await
                .unwrap_or_else(|e| panic!("create {topic}: {e}"));
            assert_eq!(created, TopicCreation::Created, "{topic}");
        }
    });
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "120000")
        .set("log_level", "0")
        .create()
        .expect("producer")
}

/// Sends every record, then waits for every delivery.
fn send_all(bootstrap: &str, topic: &str, records: impl Iterator<Item = (i32, Vec<u8>, Vec<u8>)>) {
    let producer = producer(bootstrap);
    block_on(async {
        let mut pending = Vec::new();
        for (partition, key, value) in records {
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&value);
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => panic!("queue a record for {topic}: {e}"),
            }
        }
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => panic!("produce to {topic}: {e}"),
                Err(_) => panic!("produce to {topic}: cancelled"),
            }
        }
    });
}

fn fill(bootstrap: &str, topic: &str, partitions: i32) {
    let records = (0..partitions).flat_map(|p| {
        (0..RECORDS_PER_PARTITION).map(move |i| (p, format!("k{i}").into_bytes(), vec![b'v'; 16]))
    });
    send_all(bootstrap, topic, records);
}

/// Every group/partition checkpointed twice, the newest last: first half-way, then at the end
/// (where the group is on the source too, so the newest translates to a commit).
fn write_checkpoints(bootstrap: &str, groups: usize, partitions: i32) -> u64 {
    let records = [RECORDS_PER_PARTITION / 2, RECORDS_PER_PARTITION]
        .into_iter()
        .flat_map(move |downstream| {
            (0..groups).flat_map(move |g| {
                (0..partitions).map(move |p| {
                    let c = Checkpoint {
                        group: format!("group-{g:05}"),
                        topic: "primary.orders".to_owned(),
                        partition: p,
                        upstream_offset: downstream,
                        downstream_offset: downstream,
                        metadata: String::new(),
                    };
                    (
                        0,
                        c.encode_key().expect("key"),
                        c.encode_value().expect("value"),
                    )
                })
            })
        });
    send_all(bootstrap, CHECKPOINTS, records);
    2 * groups as u64 * partitions as u64
}

fn write_plan(dir: &Path, pair: &Pair) {
    let text = format!(
        "version: 1\nname: scale\nclusters:\n  primary: {{ bootstrap_servers: \"{}\" }}\n  dr: {{ bootstrap_servers: \"{}\" }}\nreplication: {{ topics: [orders], groups: [] }}\nfailover:\n  - exec: {{ run: \"true\" }}\nfailback:\n  - exec: {{ run: \"true\" }}\n",
        pair.primary.bootstrap(),
        pair.dr.bootstrap()
    );
    std::fs::write(dir.join("scale.yaml"), text).expect("plan");
}

/// The plan whose failover is one translate_offsets step for every group.
fn write_step_plan(dir: &Path, pair: &Pair) {
    let text = format!(
        "version: 1\nname: scale-step\nclusters:\n  primary: {{ bootstrap_servers: \"{}\" }}\n  dr: {{ bootstrap_servers: \"{}\" }}\nreplication: {{ topics: [orders], groups: [] }}\nfailover:\n  - translate_offsets: {{ groups: [\"re:.*\"], timeout: 20m }}\nfailback:\n  - exec: {{ run: \"true\" }}\n",
        pair.primary.bootstrap(),
        pair.dr.bootstrap()
    );
    std::fs::write(dir.join("step.yaml"), text).expect("step plan");
}

/// Deletes the bench's groups on a cluster (DeleteGroups), so a run has them to commit again.
fn delete_groups(bootstrap: &str, groups: usize) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .expect("admin client");
    let names: Vec<String> = (0..groups).map(|g| format!("group-{g:05}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(120)));
    for chunk in names.chunks(500) {
        for deleted in block_on(admin.delete_groups(chunk, &options)).expect("delete groups") {
            deleted.unwrap_or_else(|(group, e)| panic!("delete group {group}: {e:?}"));
        }
    }
}

/// A plain librdkafka consumer reading the checkpoints topic from its start to its end.
fn bare_read(bootstrap: &str, records: u64) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kdr-bench-baseline")
        .set("enable.auto.commit", "false")
        .set("log_level", "0")
        .create()
        .expect("consumer");
    let started = Instant::now();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(CHECKPOINTS, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let last = records as i64 - 1;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "baseline read did not finish"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100))
            && message.expect("record").offset() >= last
        {
            break;
        }
    }
    started.elapsed()
}

/// What one kdr run took.
struct Measured {
    took: Duration,
    max_rss_kb: i64,
    /// User and system CPU time of the run.
    cpu: Duration,
    code: i32,
    stderr_tail: String,
    stderr: String,
}

/// Runs `kdr offsets translate --group 're:.*'` with `extra`, measuring its wall time and its
/// peak RSS.
fn kdr(binary: &Path, dir: &Path, extra: &[&str]) -> Measured {
    let mut args = vec![
        "offsets",
        "translate",
        "--plan",
        "scale.yaml",
        "--group",
        "re:.*",
        "--output",
        "json",
        "--timeout",
        "20m",
    ];
    args.extend_from_slice(extra);
    run_kdr(binary, dir, &args)
}

/// Runs kdr with `args` in `dir`, measuring its wall time, its CPU time (from `wait4`) and its
/// peak RSS ([`PeakRss`]).
fn run_kdr(binary: &Path, dir: &Path, args: &[&str]) -> Measured {
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let started = Instant::now();
    let child = Command::new(binary)
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn kdr");
    let pid = child.id() as libc::pid_t;
    let peak = PeakRss::watch(pid);
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not waited for elsewhere; both pointers are live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let took = started.elapsed();
    let max_rss_kb = peak.stop();
    std::mem::forget(child);
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    Measured {
        took,
        max_rss_kb,
        cpu: cpu_time(&usage.ru_utime) + cpu_time(&usage.ru_stime),
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        stderr_tail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        stderr,
    }
}

/// The peak RSS of a running child, from its `VmHWM` in /proc, read every 10 ms until it
/// exits. Not `wait4`'s `ru_maxrss`: the child is spawned by vfork, so that counts this
/// benchmark's own peak (the producer's 300 MB) as the child's. kdr's peak is in the middle
/// of a run, never in its last 10 ms, so the last reading is its peak.
struct PeakRss {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watcher: std::thread::JoinHandle<i64>,
}

impl PeakRss {
    fn watch(pid: libc::pid_t) -> PeakRss {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = std::sync::Arc::clone(&done);
        let watcher = std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let hwm = std::fs::read_to_string(&path).ok().and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
                });
                peak = peak.max(hwm.unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        PeakRss { done, watcher }
    }

    /// The peak seen, in kB; after the child was waited for.
    fn stop(self) -> i64 {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        self.watcher.join().unwrap_or(0)
    }
}

fn cpu_time(t: &libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

/// CPU time used so far by the Nisshi processes listening at `bootstraps` (found by their
/// command lines in /proc), to tell kdr's own cost from the brokers' on a shared machine.
fn brokers_cpu(bootstraps: &[String]) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    let mut total = Duration::ZERO;
    for process in processes.flatten() {
        let path = process.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let ours = cmdline.contains("nisshi")
            && cmdline.contains(" broker ")
            && bootstraps.iter().any(|b| cmdline.contains(b.as_str()));
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the command name (which ends with ')'): utime is the 12th, stime 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        if ours && fields.len() > 12 {
            let used: u64 =
                fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
            total += Duration::from_millis(used * 1000 / ticks.max(1));
        }
    }
    total
}

fn report(what: &str, m: &Measured, baseline: Duration, brokers: Duration) {
    println!(
        "{what:<44} {:>8.2?}  {:>6.1} x baseline  peak RSS {:>4} MB  cpu {:>7.2?}  brokers' cpu {:>7.2?}  exit {}",
        m.took,
        m.took.as_secs_f64() / baseline.as_secs_f64().max(1e-9),
        m.max_rss_kb / 1024,
        m.cpu,
        brokers,
        m.code
    );
    if m.code != 0 {
        println!("  stderr: {}", m.stderr_tail);
    }
    if std::env::var_os("KDR_BENCH_STDERR").is_some() {
        for line in m.stderr.lines() {
            println!("  | {line}");
        }
    }
}
