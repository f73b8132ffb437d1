//! Ctrl-C at the declaration's prompt, with the operator at a real terminal (a pseudo-terminal
//! on kdr's stdin): the run ends 130 and says how to go on.

use std::io::Write;
use std::time::Duration;

use kdr::mm2::ReplicationPolicy;

use crate::harness::{events, redact, wait, wait_until};
use crate::operator::pty;
use crate::world::{World, spec};

#[test]
fn ctrl_c_at_the_declare_prompt_prints_the_resume_command() {
    let w = World::start(spec(ReplicationPolicy::default_policy()));
    w.plan("  - declare: {}\n  - exec: { run: \"touch ran\" }\n", "");
    let (mut master, slave) = pty();
    master
        .write_all(b"alice\nthe primary is gone\n")
        .expect("type");
    let child = w
        .scratch
        .command(&["failover", "--plan", "drill.yaml"])
        .stdin(slave)
        .spawn()
        .expect("spawn kdr");
    // The baseline is taken right before the prompt: from then on, the run is at the gate.
    wait_until(Duration::from_secs(30), "the declaration's prompt", || {
        w.scratch
            .logs()
            .first()
            .is_some_and(|log| events(log).iter().any(|e| e["name"] == "rpo_baseline"))
    });
    // SAFETY: sending SIGINT to the kdr child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let run = wait(child, Duration::from_secs(30));
    drop(master);
    assert_eq!(run.code, 130, "{run:?}");
    assert!(!w.scratch.file("ran").exists());
    let resume = "kdr failover --plan drill.yaml --resume incidents/drill-failover-<run>.jsonl";
    let stderr = redact(&run.stderr, w.scratch.path());
    assert!(
        stderr.contains(&format!(
            "interrupted during step 1 (declare); continue with `{resume}`"
        )),
        "{stderr}"
    );
    assert!(
        redact(&run.stdout, w.scratch.path()).ends_with(&format!("\nnext: {resume}\n")),
        "{run:?}"
    );
}
