//! Who and why: the audit trail of an interactive run, with the operator at a real terminal
//! (a pseudo-terminal on kdr's stdin) and `$USER` unset.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::harness::{RUN_BOUND, Run, Scratch, events, wait};

const OPERATOR_PROMPT: &str = "Operator (recorded in the incident log) [";

/// Runs kdr with a pseudo-terminal as stdin, `$USER` unset, and `typed` already typed at it.
pub(crate) fn at_a_terminal(s: &Scratch, args: &[&str], typed: &str) -> Run {
    let (mut master, slave) = pty();
    master.write_all(typed.as_bytes()).expect("type");
    let child = s
        .command(args)
        .env_remove("USER")
        .stdin(slave)
        .spawn()
        .expect("spawn kdr");
    let run = wait(child, RUN_BOUND);
    // The terminal stays open until kdr has ended: its reads never see a hang-up.
    drop(master);
    run
}

pub(crate) fn pty() -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the two ints; the rest may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}

fn plan(s: &Scratch) {
    s.exec_plan(
        "who",
        "  - exec: { run: \"touch ran\" }\n",
        "  - exec: { run: \"true\" }\n",
    );
}

#[test]
fn without_user_an_interactive_run_records_the_login_name_not_unknown() {
    let s = Scratch::new();
    plan(&s);
    let run = at_a_terminal(&s, &["failover", "--plan", "who.yaml"], "\ndisk died\n");
    assert_eq!(run.code, 0, "{run:?}");
    let offered = run
        .stderr
        .split(OPERATOR_PROMPT)
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("the operator is asked for, with a default: {run:?}"));
    let started = &events(&s.logs()[0])[0];
    assert_eq!(started["operator"], offered, "{started}");
    assert_ne!(started["operator"], "unknown");
    assert_ne!(started["operator"], "");
    assert_eq!(started["reason"], "disk died");
    assert!(s.file("ran").exists());
}

#[test]
fn a_named_operator_is_recorded_as_typed() {
    let s = Scratch::new();
    plan(&s);
    let run = at_a_terminal(
        &s,
        &["failover", "--plan", "who.yaml"],
        "carol\ndisk died\n",
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(events(&s.logs()[0])[0]["operator"], "carol");
}

#[test]
fn an_empty_reason_is_refused_and_nothing_runs() {
    let s = Scratch::new();
    plan(&s);
    let run = at_a_terminal(&s, &["failover", "--plan", "who.yaml"], "\n\n \n\n");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.ends_with(
            "error: no reason given: the incident log records who ran this and why (or pass --reason)\n"
        ),
        "{run:?}"
    );
    assert!(!s.file("ran").exists());
    assert!(
        s.logs().is_empty(),
        "nothing is logged for a run that never started"
    );
}

#[test]
fn a_blank_reason_or_operator_on_the_command_line_is_refused() {
    let s = Scratch::new();
    plan(&s);
    for (flag, args) in [
        ("--reason", ["--operator", "alice", "--reason", " "]),
        ("--operator", ["--operator", "", "--reason", "drill"]),
    ] {
        let run = s.kdr(&[&["failover", "--plan", "who.yaml", "--yes"][..], &args].concat());
        assert_eq!(run.code, 2, "{run:?}");
        assert_eq!(
            run.stderr,
            format!("error: {flag} is empty: the incident log records who ran this and why\n")
        );
    }
    assert!(!s.file("ran").exists());
}

/// `--yes` answers for the operator, so the operator is named: with `USER` set and no
/// `--operator` the run is refused, and `--help` says so rather than promising `$USER`.
#[test]
fn help_and_the_yes_rule_agree_about_the_operator() {
    let s = Scratch::new();
    plan(&s);
    let child = s
        .command(&[
            "failover", "--plan", "who.yaml", "--yes", "--reason", "drill",
        ])
        .env("USER", "alice")
        .spawn()
        .expect("spawn kdr");
    let run = wait(child, RUN_BOUND);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(!s.file("ran").exists());
    let help = s.kdr(&["failover", "--help"]);
    assert_eq!(help.code, 0, "{help:?}");
    let flat = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!flat.contains("$USER"), "{flat}");
    assert!(
        flat.contains("--operator and --reason are both required"),
        "{flat}"
    );
    assert!(
        flat.contains("with your login name as the default"),
        "{flat}"
    );
}
