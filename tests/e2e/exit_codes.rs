//! The binary's edge: each way a command ends has its exit code, whichever command it is, and a
//! reader that closed stdout early does not change it.

use kdr::mm2::ReplicationPolicy;

use crate::harness::{RUN_BOUND, Run, Scratch, wait};
use crate::world::{World, spec};

/// Runs kdr with its stdout a pipe whose reader is already gone, as in `kdr … | true`.
fn with_stdout_closed(s: &Scratch, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let child = s.command(args).stdout(writer).spawn().expect("spawn kdr");
    wait(child, RUN_BOUND)
}

const YES: &[&str] = &["--yes", "--operator", "alice", "--reason", "drill"];

/// A scratch directory with two plans of one exec step each: `<ok>.yaml` whose failover
/// succeeds and `broken.yaml` whose failover fails.
fn ok_and_broken_plans(ok: &str) -> Scratch {
    let s = Scratch::new();
    for (name, hook) in [(ok, "true"), ("broken", "false")] {
        s.exec_plan(
            name,
            &format!("  - exec: {{ run: \"{hook}\" }}\n"),
            "  - exec: { run: \"true\" }\n",
        );
    }
    s
}

#[test]
fn a_closed_stdout_keeps_the_runs_exit_code_and_says_nothing() {
    let s = ok_and_broken_plans("pipe");
    let failover = |plan: &'static str, output: &'static str| {
        [&["failover", "--plan", plan, "--output", output][..], YES].concat()
    };
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["init"], 0),
        (vec!["plan", "show", "pipe.yaml"], 0),
        (vec!["plan", "show", "pipe.yaml", "--output", "json"], 0),
        (vec!["plan", "schema"], 0),
        (failover("pipe.yaml", "table"), 0),
        (failover("pipe.yaml", "json"), 0),
        (failover("broken.yaml", "table"), 1),
    ];
    for (args, code) in cases {
        let open = s.kdr(&args);
        assert_eq!(open.code, code, "{args:?} with stdout open: {open:?}");
        assert_same_ending_with_stdout_closed(&s, &args, &open);
    }
}

/// The run with stdout closed ends as `open` did (which printed data), and says nothing of it.
fn assert_same_ending_with_stdout_closed(s: &Scratch, args: &[&str], open: &Run) {
    assert!(!open.stdout.is_empty(), "{args:?} prints data: {open:?}");
    let closed = with_stdout_closed(s, args);
    assert_eq!(
        closed.code, open.code,
        "{args:?} with stdout closed: {closed:?}"
    );
    for noise in ["Broken pipe", "panicked", "failed printing"] {
        assert!(!closed.stderr.contains(noise), "{args:?}: {closed:?}");
    }
}

#[test]
fn a_look_up_with_a_closed_stdout_keeps_its_exit_code() {
    let w = World::idle(spec(ReplicationPolicy::default_policy()));
    for args in [
        &["lag", "--plan", "drill.yaml"][..],
        &["status", "--plan", "drill.yaml", "--output", "json"],
    ] {
        let open = w.kdr(args);
        assert_same_ending_with_stdout_closed(&w.scratch, args, &open);
    }
}

#[test]
fn a_plan_the_drill_cannot_rehearse_is_a_plan_problem_exit_2() {
    let s = Scratch::new();
    s.write(
        "patterns.yaml",
        "version: 1\nname: patterns\nclusters:\n  primary: { bootstrap_servers: \"127.0.0.1:1\" }\n  dr: { bootstrap_servers: \"127.0.0.1:2\" }\nreplication: { topics: [\"re:orders.*\"] }\nfailover:\n  - declare: {}\nfailback:\n  - exec: { run: \"true\" }\n",
    );
    let run = s.kdr(&["rehearse", "--plan", "patterns.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: failed to rehearse plan patterns: the embedded world needs topic names to create, not the pattern `re:orders.*`\n"
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn a_drill_whose_incident_log_cannot_be_written_failed_exit_1_not_usage() {
    let s = Scratch::new();
    s.write("not-a-dir", "");
    let run = s.kdr(&["rehearse", "--log", "not-a-dir/drill.jsonl"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("error: failed to open incident log"),
        "{run:?}"
    );
}

#[test]
fn each_ending_of_a_run_has_its_code() {
    let s = ok_and_broken_plans("ok");
    s.write("invalid.yaml", "version: 1\nname: invalid\n");
    let failover = |plan: &'static str| [&["failover", "--plan", plan][..], YES].concat();
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (failover("ok.yaml"), 0),
        (failover("broken.yaml"), 1),
        (failover("invalid.yaml"), 2),
        (failover("missing.yaml"), 2),
        (vec!["failover", "--plan", "ok.yaml", "--yes"], 2),
        (vec!["rehearse", "--plan", "invalid.yaml"], 2),
        (vec!["log", "show", "missing.jsonl"], 2),
    ];
    for (args, code) in cases {
        let run = s.kdr(&args);
        assert_eq!(run.code, code, "{args:?}: {run:?}");
    }
}

#[test]
fn json_of_plan_show_runs_and_look_ups_carries_its_version() {
    let s = Scratch::new();
    s.exec_plan(
        "json",
        "  - exec: { run: \"true\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    for args in [
        &["plan", "show", "json.yaml", "--output", "json"][..],
        &[
            &["failover", "--plan", "json.yaml", "--output", "json"][..],
            YES,
        ]
        .concat(),
        &[
            &["failback", "--plan", "json.yaml", "--output", "json"][..],
            YES,
        ]
        .concat(),
    ] {
        let run = s.kdr(args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        assert_eq!(value["v"], 1, "{args:?}: {value}");
    }
}
