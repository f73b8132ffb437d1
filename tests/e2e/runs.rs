//! Runs of plans made only of `exec` and `pause` steps: the engine without a cluster.

use std::time::Duration;

use crate::harness::{
    Scratch, end_orphaned_hooks, events, orphaned_hooks, redact, shape, wait, wait_until,
};

const YES: &[&str] = &["--yes", "--operator", "alice", "--reason", "game day"];

fn args<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

/// `--resume` of the crash test's log under `--yes`, with `extra` arguments.
fn resume_crash(s: &Scratch, log: &str, extra: &[&str]) -> crate::harness::Run {
    let base = [
        "failover",
        "--plan",
        "crash.yaml",
        "--resume",
        log,
        "--yes",
        "--operator",
        "a",
        "--reason",
        "r",
    ];
    s.kdr(&args(&base, extra))
}

/// Starts a failover of `plan` under `--yes` and waits until its hook touched `started`.
fn start_until_started(s: &Scratch, plan: &str) -> std::process::Child {
    let child = s
        .command(&args(&["failover", "--plan", plan], YES))
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(20), "the hook to start", || {
        s.file("started").exists()
    });
    child
}

#[test]
fn steps_run_in_order_and_the_log_records_each() {
    let s = Scratch::new();
    s.exec_plan(
        "order",
        "  - exec: { run: \"echo one >> trail\" }\n  - pause: { message: \"look\" }\n  - exec: { run: \"echo two >> trail; echo $KDR_DIRECTION $KDR_STEP $KDR_SOURCE $KDR_TARGET >> trail\" }\n",
        "  - exec: { run: \"echo back >> trail\" }\n",
    );
    let run = s.kdr(&args(&["failover", "--plan", "order.yaml"], YES));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(s.read("trail"), "one\ntwo\nfailover 3 primary dr\n");
    let logs = s.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        shape(&logs[0]),
        [
            "run_started",
            "step_started 1",
            "step_finished 1 ok",
            "step_started 2",
            "step_finished 2 ok",
            "step_started 3",
            "step_finished 3 ok",
            "run_finished succeeded"
        ]
    );
    let ev = events(&logs[0]);
    assert_eq!(ev[0]["operator"], "alice");
    assert_eq!(ev[0]["reason"], "game day");
    assert_eq!(ev[0]["direction"], "failover");
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e["v"], 1);
        assert_eq!(e["seq"], (i + 1) as u64);
        assert_eq!(e["run_id"], ev[0]["run_id"]);
    }
    // The hook's output is in the log.
    let output = ev
        .iter()
        .find(|e| e["name"] == "output")
        .expect("output observation");
    assert_eq!(output["data"]["exit_code"], 0);
    // And the operator saw it all, in this shape.
    let stderr = redact(&run.stderr, s.path());
    let expected = "\
kdr failover of plan order, run <run>, operator alice
    incident log: incidents/order-failover-<run>.jsonl
> [1/3] exec: run `echo one >> trail`
+ [1/3] exec ok in <dur>: exit status 0
> [2/3] pause: wait for the operator: look
      decision alice: continue past the pause (--yes given; the pause said: look)
+ [2/3] pause ok in <dur>: continued (--yes)
> [3/3] exec: run `echo two >> trail; echo $KDR_DIRECTION $KDR_STEP $KDR_SOURCE $KDR_TARGET >> trail`
+ [3/3] exec ok in <dur>: exit status 0
run succeeded after <dur>: 3 steps done
";
    assert_eq!(stderr, expected);
}

#[test]
fn a_failed_step_stops_the_run_and_says_how_to_resume() {
    let s = Scratch::new();
    s.exec_plan(
        "stops",
        "  - exec: { run: \"echo one >> trail\" }\n  - exec: { run: \"echo boom >&2; exit 7\" }\n  - exec: { run: \"echo never >> trail\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let run = s.kdr(&args(&["failover", "--plan", "stops.yaml"], YES));
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(s.read("trail"), "one\n");
    let log = &s.logs()[0];
    assert_eq!(
        shape(log),
        [
            "run_started",
            "step_started 1",
            "step_finished 1 ok",
            "step_started 2",
            "step_finished 2 failed",
            "run_finished failed"
        ]
    );
    let stderr = redact(&run.stderr, s.path());
    assert!(
        stderr.contains("x [2/3] exec FAILED in <dur>: the command exited with status 7"),
        "{stderr}"
    );
    assert!(
        stderr.contains("run failed after <dur>: step 2 (exec) failed: the command exited with status 7; fix the cause, then continue with `kdr failover --plan stops.yaml --resume incidents/stops-failover-<run>.jsonl`"),
        "{stderr}"
    );
    // What to run next is the last thing the run prints.
    assert!(
        redact(&run.stdout, s.path()).ends_with(
            "\nnext: kdr failover --plan stops.yaml --resume incidents/stops-failover-<run>.jsonl\n"
        ),
        "{run:?}"
    );
    let output = events(log)
        .into_iter()
        .filter(|e| e["name"] == "output")
        .nth(1)
        .expect("second output");
    assert_eq!(output["data"]["exit_code"], 7);
    assert_eq!(output["data"]["stderr"], "boom\n");
}

#[test]
fn a_step_past_its_timeout_has_its_command_terminated() {
    let s = Scratch::new();
    s.exec_plan(
        "slow",
        "  - exec: { run: \"echo $$ > pid; sleep 30\", timeout: 300ms, kill_grace: 200ms }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let started = std::time::Instant::now();
    let run = s.kdr(&args(&["failover", "--plan", "slow.yaml"], YES));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout did not bound the step"
    );
    assert!(
        run.stderr
            .contains("the command did not finish within 300ms and was terminated"),
        "{run:?}"
    );
    let pid = s.read("pid").trim().to_owned();
    assert!(!pid.is_empty());
    wait_until(
        Duration::from_secs(5),
        "the hook's shell to be gone",
        || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        },
    );
    let output = events(&s.logs()[0])
        .into_iter()
        .find(|e| e["name"] == "output")
        .expect("output");
    assert_eq!(output["data"]["timed_out"], true);
}

#[test]
fn a_dry_run_runs_nothing_and_records_what_it_would_do() {
    let s = Scratch::new();
    s.exec_plan(
        "dry",
        "  - exec: { run: \"touch touched\" }\n  - pause: { message: \"look\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    // No terminal and no --yes: a dry run asks nothing, so it may run.
    let run = s.kdr(&["failover", "--plan", "dry.yaml", "--dry-run"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !s.file("touched").exists(),
        "a dry run must not run commands"
    );
    let log = &s.logs()[0];
    assert_eq!(
        shape(log),
        [
            "run_started",
            "step_started 1",
            "step_finished 1 dry_run",
            "step_started 2",
            "step_finished 2 dry_run",
            "run_finished dry_run"
        ]
    );
    let finished: Vec<String> = events(log)
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| e["message"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        finished,
        [
            "would run `touch touched`",
            "would wait for the operator: look"
        ]
    );
    assert_eq!(events(log)[0]["dry_run"], true);
    // In words, never the enum's name.
    let stderr = redact(&run.stderr, s.path());
    assert!(
        stderr.contains("+ [1/2] exec dry run in <dur>: would run `touch touched`"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(
            "run dry run passed after <dur>: dry run: 2 steps would run; nothing was changed\n"
        ),
        "{stderr}"
    );
    assert!(!run.stdout.contains("dry_run"), "{run:?}");
}

/// A dry run's log cannot be resumed: a failed dry run says to run the dry run again.
#[test]
fn a_failed_dry_run_says_to_check_again_not_to_resume() {
    let s = Scratch::new();
    s.exec_plan(
        "dryfail",
        "  - declare: { timeout: 3s }\n  - exec: { run: \"touch touched\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let run = s.kdr(&["failover", "--plan", "dryfail.yaml", "--dry-run"]);
    assert_eq!(run.code, 1, "{run:?}");
    let stderr = redact(&run.stderr, s.path());
    assert!(
        stderr.contains(
            "; fix the cause, then check again with `kdr failover --plan dryfail.yaml --dry-run`"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("--resume"), "{stderr}");
    assert!(
        run.stdout
            .ends_with("\nnext: kdr failover --plan dryfail.yaml --dry-run\n"),
        "{run:?}"
    );
}

#[test]
fn one_step_is_one_step() {
    let s = Scratch::new();
    s.exec_plan(
        "single",
        "  - exec: { run: \"true\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let run = s.kdr(&args(&["failover", "--plan", "single.yaml"], YES));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        redact(&run.stderr, s.path()).ends_with("run succeeded after <dur>: 1 step done\n"),
        "{run:?}"
    );
}

#[test]
fn resume_skips_finished_steps_and_reruns_the_failed_one() {
    let s = Scratch::new();
    s.exec_plan(
        "resume",
        "  - exec: { run: \"echo one >> trail\" }\n  - exec: { run: \"echo try >> trail; test -f fixed\" }\n  - exec: { run: \"echo three >> trail\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let first = s.kdr(&args(&["failover", "--plan", "resume.yaml"], YES));
    assert_eq!(first.code, 1, "{first:?}");
    let log = s.logs()[0].clone();
    s.write("fixed", "");
    let log_arg = log.display().to_string();
    let second = s.kdr(&[
        "failover",
        "--plan",
        "resume.yaml",
        "--resume",
        &log_arg,
        "--yes",
        "--operator",
        "bob",
        "--reason",
        "fixed it",
    ]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(s.read("trail"), "one\ntry\ntry\nthree\n");
    // The summary is the whole run's, not only the resumed invocation's.
    let stderr = redact(&second.stderr, s.path());
    assert!(
        stderr.ends_with(
            "run succeeded after <dur>: 3 steps done, 2 of them after the resume (2 invocations)\n"
        ),
        "{stderr}"
    );
    let stdout = redact(&second.stdout, s.path());
    for row in ["│ 1 ", "│ 2 ", "│ 3 "] {
        assert!(stdout.contains(row), "step row {row} missing:\n{stdout}");
    }
    assert!(
        stdout.contains(
            "failover run of resume: succeeded in <dur>; whole run <dur> over 2 invocations, RTO <dur> (declaration to end)"
        ),
        "{stdout}"
    );
    assert_eq!(s.logs().len(), 1, "a resumed run appends to its own log");
    assert_eq!(
        shape(&log),
        [
            "run_started",
            "step_started 1",
            "step_finished 1 ok",
            "step_started 2",
            "step_finished 2 failed",
            "run_finished failed",
            "run_started",
            "step_started 2",
            "step_finished 2 ok",
            "step_started 3",
            "step_finished 3 ok",
            "run_finished succeeded"
        ]
    );
    let ev = events(&log);
    let run_ids: std::collections::BTreeSet<&str> =
        ev.iter().filter_map(|e| e["run_id"].as_str()).collect();
    assert_eq!(run_ids.len(), 1, "the resumed run keeps its run id");
    assert!(
        ev.windows(2)
            .all(|w| w[1]["seq"].as_u64() == w[0]["seq"].as_u64().map(|n| n + 1)),
        "seq continues across the resume"
    );
    // A finished run cannot be resumed again.
    let third = s.kdr(&[
        "failover",
        "--plan",
        "resume.yaml",
        "--resume",
        &log_arg,
        "--yes",
        "--operator",
        "bob",
        "--reason",
        "again",
    ]);
    assert_eq!(third.code, 2, "{third:?}");
    assert!(
        third
            .stderr
            .contains("the logged run already succeeded: there is nothing to resume"),
        "{third:?}"
    );
}

#[test]
fn resume_refuses_a_plan_that_changed() {
    let s = Scratch::new();
    s.exec_plan(
        "changed",
        "  - exec: { run: \"exit 1\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    assert_eq!(
        s.kdr(&args(&["failover", "--plan", "changed.yaml"], YES))
            .code,
        1
    );
    let log = s.logs()[0].display().to_string();
    s.exec_plan(
        "changed",
        "  - exec: { run: \"exit 0\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let run = s.kdr(&[
        "failover",
        "--plan",
        "changed.yaml",
        "--resume",
        &log,
        "--yes",
        "--operator",
        "a",
        "--reason",
        "r",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("the plan changed since the logged run"),
        "{run:?}"
    );
}

#[test]
fn an_interrupted_non_idempotent_step_needs_the_operators_word() {
    let s = Scratch::new();
    s.exec_plan(
        "crash",
        "  - exec: { run: \"echo charge >> trail; touch started; sleep 30\" }\n  - exec: { run: \"echo after >> trail\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    // Kill kdr (SIGKILL, no chance to clean up) while the hook runs.
    let mut child = start_until_started(&s, "crash.yaml");
    child.kill().expect("kill");
    let _ = child.wait();
    let log = s.logs()[0].display().to_string();
    assert_eq!(shape(&s.logs()[0]), ["run_started", "step_started 1"]);

    // The hook outlived kdr: while it runs, a resume refuses and names its pid.
    let orphans = orphaned_hooks(&s.logs()[0]);
    assert_eq!(orphans.len(), 1, "the hook's pid is logged when it starts");
    let beside = resume_crash(&s, &log, &["--interrupted-step", "rerun"]);
    assert_eq!(beside.code, 2, "{beside:?}");
    assert!(
        beside.stderr.contains(&format!(
            "the hook of step 1 (`echo charge >> trail; touch started; sleep 30`) that the earlier run started is still running as pid {}",
            orphans[0]
        )),
        "{beside:?}"
    );
    assert_eq!(s.read("trail"), "charge\n", "nothing ran beside the orphan");
    end_orphaned_hooks(&s.logs()[0], true);

    // --yes alone does not answer "run it again?".
    let refused = resume_crash(&s, &log, &[]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("step 1 (exec) was interrupted and may have run; it is not idempotent"),
        "{refused:?}"
    );

    let skipped = resume_crash(&s, &log, &["--interrupted-step", "skip"]);
    assert_eq!(skipped.code, 0, "{skipped:?}");
    assert_eq!(
        s.read("trail"),
        "charge\nafter\n",
        "the charge must not run twice"
    );
    let decisions: Vec<String> = events(&s.logs()[0])
        .iter()
        .filter(|e| e["event"] == "decision")
        .map(|e| e["what"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        decisions.contains(&"skip interrupted step 1 (exec)".to_owned()),
        "{decisions:?}"
    );
}

#[test]
fn an_interrupted_idempotent_step_is_rerun() {
    let s = Scratch::new();
    s.exec_plan(
        "idem",
        "  - exec: { run: \"echo run >> trail; test -f again || { touch started; sleep 30; }\", idempotent: true }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let mut child = start_until_started(&s, "idem.yaml");
    child.kill().expect("kill");
    let _ = child.wait();
    s.write("again", "");
    // The operator stops the hook that outlived kdr; a resume would refuse while it runs.
    end_orphaned_hooks(&s.logs()[0], true);
    let log = s.logs()[0].display().to_string();
    let run = s.kdr(&[
        "failover",
        "--plan",
        "idem.yaml",
        "--resume",
        &log,
        "--yes",
        "--operator",
        "a",
        "--reason",
        "r",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(s.read("trail"), "run\nrun\n");
}

#[test]
fn a_second_run_of_the_same_plan_is_refused_while_the_first_holds_the_lock() {
    let s = Scratch::new();
    s.exec_plan(
        "locked",
        "  - exec: { run: \"touch started; while [ ! -f release ]; do sleep 0.05; done\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let first = start_until_started(&s, "locked.yaml");
    let second = s.kdr(&[
        "failback",
        "--plan",
        "locked.yaml",
        "--yes",
        "--operator",
        "bob",
        "--reason",
        "me too",
    ]);
    assert_eq!(second.code, 1, "{second:?}");
    let stderr = redact(&second.stderr, s.path());
    assert!(
        regex::Regex::new(r"^error: plan `locked` is already running: failover run <run> by alice \(pid \d+ on .+\) since <ts>; lock file incidents/\.locked\.lock\n$")
            .expect("regex")
            .is_match(&stderr),
        "{stderr}"
    );
    s.write("release", "");
    let first = wait(first, Duration::from_secs(30));
    assert_eq!(first.code, 0, "{first:?}");
    // Released: the next run may go.
    assert_eq!(
        s.kdr(&args(&["failback", "--plan", "locked.yaml"], YES))
            .code,
        0
    );
}

#[test]
fn a_stale_lock_from_a_dead_process_is_taken_over_and_recorded() {
    let s = Scratch::new();
    s.exec_plan(
        "stale",
        "  - exec: { run: \"touch started; sleep 30\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let mut child = start_until_started(&s, "stale.yaml");
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(
        s.file("incidents/.stale.lock").exists(),
        "SIGKILL leaves the lock behind"
    );
    let run = s.kdr(&args(&["failback", "--plan", "stale.yaml"], YES));
    assert_eq!(run.code, 0, "{run:?}");
    let log = s
        .logs()
        .into_iter()
        .find(|l| l.display().to_string().contains("failback"))
        .expect("failback log");
    assert!(
        events(&log)
            .iter()
            .any(|e| e["what"] == "took over a stale run lock")
    );
}

#[test]
fn yes_without_operator_and_reason_is_refused() {
    let s = Scratch::new();
    s.exec_plan(
        "yes",
        "  - exec: { run: \"touch ran\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let run = s.kdr(&["failover", "--plan", "yes.yaml", "--yes"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: --yes answers the human gates for the operator, so it needs --operator NAME and --reason TEXT to record who and why\n"
    );
    assert!(!s.file("ran").exists());
    assert!(
        s.logs().is_empty(),
        "nothing is logged for a run that never started"
    );
}

#[test]
fn without_a_terminal_and_without_yes_the_run_refuses_to_start() {
    let s = Scratch::new();
    s.exec_plan(
        "notty",
        "  - declare: {}\n  - exec: { run: \"touch ran\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let run = s.kdr(&["failover", "--plan", "notty.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("no terminal to ask at the human gates"),
        "{run:?}"
    );
    assert!(!s.file("ran").exists());
}

#[test]
fn ctrl_c_ends_the_current_step_cleanly_and_exits_130() {
    let s = Scratch::new();
    s.exec_plan(
        "sigint",
        "  - exec: { run: \"trap 'echo got-int >> trail; exit 9' INT; touch started; while true; do sleep 0.05; done\", kill_grace: 5s }\n  - exec: { run: \"echo never >> trail\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let child = start_until_started(&s, "sigint.yaml");
    // SAFETY: sending SIGINT to the kdr child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let run = wait(child, Duration::from_secs(30));
    assert_eq!(run.code, 130, "{run:?}");
    assert_eq!(
        s.read("trail"),
        "got-int\n",
        "the hook got the interrupt, and nothing after it ran"
    );
    assert_eq!(
        shape(&s.logs()[0]),
        [
            "run_started",
            "step_started 1",
            "step_finished 1 failed",
            "run_finished interrupted"
        ]
    );
    assert!(
        !s.file("incidents/.sigint.lock").exists(),
        "the lock is released"
    );
    // The run says how to go on, in the log's words and last on the screen.
    let stderr = redact(&run.stderr, s.path());
    let resume = "kdr failover --plan sigint.yaml --resume incidents/sigint-failover-<run>.jsonl";
    assert!(
        stderr.contains(&format!(
            "run interrupted after <dur>: interrupted during step 1 (exec); continue with `{resume}`"
        )),
        "{stderr}"
    );
    assert!(
        redact(&run.stdout, s.path()).ends_with(&format!("\nnext: {resume}\n")),
        "{run:?}"
    );
}

/// Kills a hook's process group when dropped, so a failing test leaves no loop behind.
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // SAFETY: signalling the process group of a hook this test's kdr started.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}

#[test]
fn a_second_ctrl_c_kills_a_hook_that_ignores_the_first_and_the_log_says_so() {
    let s = Scratch::new();
    s.exec_plan(
        "stubborn",
        "  - exec: { run: \"trap 'echo got-int >> trail' INT TERM; touch started; while true; do sleep 0.05; done\", kill_grace: 60s }\n  - exec: { run: \"echo never >> trail\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let child = start_until_started(&s, "stubborn.yaml");
    let log = s.logs()[0].clone();
    let pid = events(&log)
        .iter()
        .find(|e| e["name"] == "hook_started")
        .and_then(|e| e["data"]["pid"].as_i64())
        .expect("the hook's pid is logged when it starts") as i32;
    let _cleanup = KillGroup(pid);
    let interrupt = || {
        // SAFETY: sending SIGINT to the kdr child we spawned.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
    };
    interrupt();
    wait_until(
        Duration::from_secs(20),
        "the hook to shrug off SIGINT",
        || s.read("trail").contains("got-int"),
    );
    interrupt();
    let run = wait(child, Duration::from_secs(30));
    assert_eq!(run.code, 130, "{run:?}");
    wait_until(
        Duration::from_secs(5),
        "the hook's process group to be gone",
        || !kdr::steps::group_alive(pid),
    );
    assert!(
        run.stderr.contains(&format!(
            "interrupt: killed the hook's process group {pid} (SIGKILL); exiting"
        )),
        "{run:?}"
    );
    assert!(
        events(&log).iter().any(|e| e["event"] == "decision"
            && e["what"] == format!("kill the hook's process group {pid} (SIGKILL)")),
        "the log records the kill"
    );
    assert_eq!(
        shape(&log),
        [
            "run_started",
            "step_started 1",
            "step_finished 1 failed",
            "run_finished interrupted"
        ]
    );
    assert!(!s.read("trail").contains("never"));
    // Nothing is left running, so the run resumes.
    assert!(orphaned_hooks(&log).is_empty());
}

#[test]
fn secrets_from_the_environment_never_reach_output_or_the_log() {
    let s = Scratch::new();
    let secret = "pa55-w0rd-xyzzy";
    s.exec_plan(
        "secret",
        "  - exec: { run: \"echo token=${env:KDR_E2E_TOKEN}; echo ${env:KDR_E2E_TOKEN} >&2; exit 4\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let run = s
        .command(&args(
            &["failover", "--plan", "secret.yaml", "--output", "json"],
            YES,
        ))
        .env("KDR_E2E_TOKEN", secret)
        .spawn()
        .map(|c| wait(c, Duration::from_secs(30)))
        .expect("spawn");
    assert_eq!(run.code, 1, "{run:?}");
    let log_text = std::fs::read_to_string(&s.logs()[0]).expect("log");
    for (what, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("log", &log_text),
    ] {
        assert!(!text.contains(secret), "the secret reached {what}:\n{text}");
    }
    assert!(log_text.contains("token=***"), "{log_text}");
    assert!(
        run.stderr.contains("run `echo token=${env:KDR_E2E_TOKEN};"),
        "commands are shown as written: {run:?}"
    );
}

#[test]
fn log_show_prints_the_run_as_a_table_and_json() {
    let s = Scratch::new();
    s.exec_plan(
        "show",
        "  - exec: { run: \"echo hi\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    assert_eq!(
        s.kdr(&args(&["failover", "--plan", "show.yaml"], YES)).code,
        0
    );
    let log = s.logs()[0].display().to_string();
    let table = s.kdr(&["log", "show", &log]);
    assert_eq!(table.code, 0, "{table:?}");
    let text = redact(&table.stdout, s.path());
    for needle in [
        "run_started",
        "failover of show by alice: game day",
        "step_finished",
        "exit status 0",
        "run_finished",
        "succeeded",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // Times carry the date.
    assert!(
        regex::Regex::new(r"│ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} +┆ +┆ run_started")
            .expect("regex")
            .is_match(&table.stdout),
        "{table:?}"
    );
    // A directory lists the runs in it.
    let listed = s.kdr(&["log", "show", "incidents"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let text = redact(&listed.stdout, s.path());
    for needle in [
        "┆ show ",
        "┆ failover ",
        "┆ alice ",
        "┆ succeeded ",
        "incidents/show-failover-<run>.jsonl",
        "\n1 run\n",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let json = s.kdr(&["log", "show", &log, "--output", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(
        value.as_array().map(Vec::len),
        Some(events(&s.logs()[0]).len())
    );
}

#[test]
fn the_run_summary_is_available_as_json() {
    let s = Scratch::new();
    s.exec_plan(
        "json",
        "  - exec: { run: \"true\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
    let run = s.kdr(&args(
        &["failback", "--plan", "json.yaml", "--output", "json"],
        YES,
    ));
    assert_eq!(run.code, 0, "{run:?}");
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(value["outcome"], "succeeded");
    assert_eq!(value["direction"], "failback");
    assert_eq!(value["steps"][0]["status"], "ok");
}

/// Regression (issue 13 #5): a second Ctrl-C while kdr waits on clusters that never answer (no
/// hook running, so nothing else says it) ends the process at once, and still prints the exact
/// command that goes on from the run's log.
#[test]
fn a_second_ctrl_c_with_no_hook_running_still_says_how_to_resume() {
    // Two "clusters" that accept connections and never answer a byte.
    let mut silent = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        addrs.push(listener.local_addr().expect("addr").to_string());
        silent.push(std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().take(64) {
                match stream {
                    Ok(s) => held.push(s),
                    Err(_) => break,
                }
            }
            std::thread::sleep(Duration::from_secs(60));
        }));
    }
    let s = Scratch::new();
    s.write(
        "silent.yaml",
        &format!(
            "version: 1\nname: silent\nclusters:\n  primary: {{ bootstrap_servers: \"{}\" }}\n  dr: {{ bootstrap_servers: \"{}\" }}\nreplication: {{ topics: [orders] }}\nfailover:\n  - declare: {{ confirm: yes }}\nfailback:\n  - exec: {{ run: \"true\" }}\n",
            addrs[0], addrs[1]
        ),
    );
    let child = s
        .command(&args(&["failover", "--plan", "silent.yaml"], YES))
        .spawn()
        .expect("spawn");
    wait_until(
        Duration::from_secs(30),
        "the run's log to be opened",
        || !s.logs().is_empty(),
    );
    for _ in 0..2 {
        // SAFETY: sending SIGINT to the kdr child we spawned.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = wait(child, Duration::from_secs(30));
    assert_eq!(run.code, 130, "{run:?}");
    // On stderr when the second Ctrl-C ends the process; on stdout, under the run's table, when
    // the run had already stopped at the first (its clusters' answers timed out in between).
    let printed = redact(&format!("{}{}", run.stdout, run.stderr), s.path());
    assert!(
        printed.contains(
            "next: kdr failover --plan silent.yaml --resume incidents/silent-failover-<run>.jsonl"
        ),
        "{printed}"
    );
}
