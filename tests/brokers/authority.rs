//! Two operators on two machines start the same failover (or failback) at once: two kdr
//! processes with separate log directories, so separate run locks. The claim on the target
//! cluster lets exactly one of them move write authority; the other changes nothing.

use std::path::PathBuf;
use std::time::Instant;

use kdr::authority::{AuthorityRecord, TOPIC};
use kdr::kafka::{Cluster, ClusterRole, ReadOptions};
use kdr::plan::{Direction, Role};

use crate::harness::{Pair, Run, Running, block_on, events};
use crate::mm2::{create_layout, write_plan};

const ROUNDS: usize = 50;
const OPERATORS: [&str; 2] = ["alice", "bob"];
/// A declaration, then a hook that leaves a mark: a loser must never get that far.
const STEPS: &str = "  - declare: {}\n  - exec: { run: \"touch ran\" }\n";

/// One operator's machine: a directory with the plan, its incident logs and the hook's mark.
struct Machine {
    dir: tempfile::TempDir,
    operator: &'static str,
}

impl Machine {
    fn new(pair: &Pair, operator: &'static str) -> Machine {
        let dir = tempfile::tempdir().expect("tempdir");
        let (primary, dr) = (pair.primary.bootstrap(), pair.dr.bootstrap());
        write_plan(dir.path(), &primary, &dr, STEPS, STEPS);
        Machine { dir, operator }
    }

    fn mark(&self) -> PathBuf {
        self.dir.path().join("ran")
    }

    fn log(&self, direction: &str, round: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("incidents/round-{round:02}-{direction}.jsonl"))
    }

    fn start(&self, direction: &str, round: usize) -> Running {
        let _ = std::fs::remove_file(self.mark());
        let log = self.log(direction, round).display().to_string();
        let args = [
            direction,
            "--plan",
            "drill.yaml",
            "--yes",
            "--operator",
            self.operator,
            "--reason",
            "race",
            "--log",
            &log,
        ];
        Running::start(self.dir.path(), &args)
    }

    fn run_id(&self, direction: &str, round: usize) -> String {
        let log = events(&self.log(direction, round));
        log.first()
            .and_then(|e| e["run_id"].as_str())
            .expect("a run id")
            .to_owned()
    }
}

/// (epoch, run id) of every write-authority state record of the plan on this cluster, in log
/// order.
fn state_writers(cluster: &Cluster) -> Vec<(u64, String)> {
    let options = ReadOptions {
        timeout: None,
        allow_partial: false,
    };
    let read = block_on(cluster.read_to_end(TOPIC, 0, options)).expect("read authority");
    read.records
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"drill".as_slice()))
        .filter_map(|r| r.value.as_deref())
        .map(|v| serde_json::from_slice::<AuthorityRecord>(v).expect("a state record"))
        .map(|r| (r.epoch, r.run_id))
        .collect()
}

/// Two brokers with the replicated topics, a client for each, and the two operators' machines.
fn setup() -> (Pair, [Cluster; 2], [Machine; 2]) {
    let pair = Pair::start();
    create_layout(&pair);
    let clusters = [
        pair.primary.cluster(ClusterRole::Primary),
        pair.dr.cluster(ClusterRole::Dr),
    ];
    let machines = OPERATORS.map(|operator| Machine::new(&pair, operator));
    (pair, clusters, machines)
}

/// Both machines start `direction` at once; exactly one wins, the loser stops before its hook
/// and names the winner. Returns the winner's run id.
fn race(machines: &[Machine; 2], direction: &str, round: usize) -> String {
    let running = [
        machines[0].start(direction, round),
        machines[1].start(direction, round),
    ];
    let runs: [Run; 2] = running.map(Running::finish);
    let winners: Vec<usize> = (0..2).filter(|&i| runs[i].code == 0).collect();
    let context = format!("round {round} {direction}: {runs:?}");
    assert_eq!(winners.len(), 1, "exactly one winner: {context}");
    let (w, l) = (winners[0], 1 - winners[0]);
    assert_eq!(runs[l].code, 1, "the loser exits 1: {context}");
    let (winner, loser) = (&machines[w], &machines[l]);
    let winner_run = winner.run_id(direction, round);
    assert!(winner.mark().exists(), "the winner ran its hook: {context}");
    assert!(!loser.mark().exists(), "the loser ran its hook: {context}");
    // The loser says who won: operator, host, run id and when.
    let said = &runs[l].stderr;
    assert!(
        said.contains(&format!("{} on ", winner.operator))
            && said.contains(&format!(", run {winner_run}, claimed at ")),
        "the loser does not name the winner: {context}"
    );
    // Both logged the contest, unless the loser started after the winner's move was done.
    let logged = |m: &Machine, names: &[&str]| {
        events(&m.log(direction, round))
            .iter()
            .any(|e| names.iter().any(|n| e["name"] == *n))
    };
    assert!(logged(winner, &["authority_claims"]), "{context}");
    assert!(
        logged(loser, &["authority_lost", "authority_moved_by"]),
        "{context}"
    );
    winner_run
}

/// [`ROUNDS`] races in `direction`, each after authority is put where the direction starts
/// from (directly, as if the other direction had run). Every state record on either
/// cluster must then be a winner's or a reset's, in order: no loser wrote one.
fn rounds(direction: &str, back_to: Role) {
    let (_pair, clusters, machines) = setup();
    let started = Instant::now();
    let mut expected = Vec::new();
    for round in 0..ROUNDS {
        let epoch = 2 * round as u64;
        let reset = AuthorityRecord {
            v: kdr::authority::RECORD_VERSION,
            plan: "drill".to_owned(),
            owner: back_to,
            epoch,
            run_id: format!("reset-{round}"),
            operator: "test".to_owned(),
            direction: Direction::Failover,
            at: "2026-12-02T00:00:00.000Z".to_owned(),
        };
        block_on(async {
            for cluster in &clusters {
                kdr::authority::write(cluster, &reset)
                    .await
                    .expect("reset authority");
            }
        });
        expected.push((epoch, reset.run_id));
        expected.push((epoch + 1, race(&machines, direction, round)));
    }
    eprintln!("{ROUNDS} {direction} races in {:?}", started.elapsed());
    for cluster in &clusters {
        assert_eq!(state_writers(cluster), expected, "{}", cluster.role());
    }
}

#[test]
fn fifty_racing_failovers_from_two_machines_have_exactly_one_winner_each() {
    rounds("failover", Role::Primary);
}

#[test]
fn fifty_racing_failbacks_from_two_machines_have_exactly_one_winner_each() {
    rounds("failback", Role::Dr);
}

/// The claims of a race sit on the cluster that takes authority: DR for a failover, the
/// primary for a failback.
#[test]
fn a_failover_race_claims_on_dr_and_a_failback_race_on_the_primary() {
    let (_pair, clusters, machines) = setup();
    race(&machines, "failover", 0);
    race(&machines, "failback", 0);
    for m in &machines {
        for d in ["failover", "failback"] {
            for e in events(&m.log(d, 0)) {
                eprintln!(
                    "DBG {} {} {} {}",
                    m.operator,
                    d,
                    e["ts"],
                    e.to_string().chars().take(200).collect::<String>()
                );
            }
        }
    }
    let epochs = |cluster: &Cluster| -> Vec<u64> {
        block_on(kdr::authority::read_claims(cluster, "drill"))
            .expect("claims")
            .iter()
            .map(|c| c.claim.epoch)
            .collect()
    };
    for (cluster, epoch) in [(&clusters[1], 1), (&clusters[0], 2)] {
        let seen = epochs(cluster);
        assert!(
            !seen.is_empty() && seen.iter().all(|&e| e == epoch),
            "{}: {seen:?}",
            cluster.role()
        );
    }
}
