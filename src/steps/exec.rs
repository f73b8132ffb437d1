//! `exec`: run an operator's hook with `sh -c`, bounded, its output captured into the log.
//!
//! The hook runs in its own process group so a timeout can stop everything it started
//! (SIGTERM, then SIGKILL after the grace). Because it is not in kdr's group, a Ctrl-C at the
//! terminal does not reach it by itself: kdr forwards SIGINT to the group, then waits for the
//! hook to end cleanly within the grace. A second Ctrl-C does not wait: the signal handler
//! kills every running hook's group at once ([`kill_running_hooks`]), and the step records it.
//! Each hook's pid is logged when it starts, so a resume can tell whether a hook of an earlier
//! process (one killed with SIGKILL, which takes no hook with it) is still running.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::{StepCtx, StepDone, StepError, StepResult};
use crate::journal::HOOK_STARTED;
use crate::plan::{Command as PlanCommand, Exec};

/// Each stream keeps this much for the incident log; the rest is counted, not kept.
pub const CAPTURE_LIMIT: usize = 64 * 1024;

/// The process groups of the hooks running in this process, and whether a second Ctrl-C killed
/// each. A signal is process-wide, so this is too.
static RUNNING: Mutex<Vec<(i32, bool)>> = Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<(i32, bool)>> {
    RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kill (SIGKILL) the process group of every hook running in this process: the second Ctrl-C
/// exits at once and leaves nothing behind. Returns the groups killed.
pub fn kill_running_hooks() -> Vec<i32> {
    let mut hooks = running();
    for (pgid, killed) in hooks.iter_mut() {
        // SAFETY: signalling a process group this process created; a stale id yields ESRCH.
        unsafe {
            libc::kill(-*pgid, libc::SIGKILL);
        }
        *killed = true;
    }
    hooks.iter().map(|(pgid, _)| *pgid).collect()
}

/// A hook's process group in [`RUNNING`] while the hook runs.
struct Registered(i32);

impl Registered {
    fn new(pgid: i32) -> Self {
        running().push((pgid, false));
        Registered(pgid)
    }

    fn killed(&self) -> bool {
        running()
            .iter()
            .any(|(pgid, killed)| *pgid == self.0 && *killed)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        running().retain(|(pgid, _)| *pgid != self.0);
    }
}

/// Whether any process of the process group `pgid` is alive (the group of a hook an earlier
/// kdr started). Linux never reuses a pid while a group of that id has a member. A zombie (dead,
/// not yet reaped) is not alive; without `/proc` to tell, a group that answers is.
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group exists and may be signalled.
    let rc = unsafe { libc::kill(-pgid, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return false;
    }
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return true;
    };
    processes.filter_map(Result::ok).any(|p| {
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid pgrp ...: the command may hold spaces and parentheses.
        let fields: Vec<&str> = stat
            .rfind(')')
            .map(|i| stat[i + 1..].split_whitespace().collect())
            .unwrap_or_default();
        fields.get(2) == Some(&pgid.to_string().as_str()) && fields.first() != Some(&"Z")
    })
}

pub async fn run(ctx: &mut StepCtx<'_>, exec: &Exec) -> StepResult {
    if ctx.dry_run {
        return Ok(StepDone::DryRun(format!("would run `{}`", exec.run.shown)));
    }
    let timeout = ctx.step.timeout();
    let outcome = run_hook(ctx, &exec.run, timeout, exec.kill_grace).await?;
    outcome.into_result(timeout)
}

/// How a hook ended.
pub enum HookEnd {
    Exited(std::process::ExitStatus),
    TimedOut,
    Interrupted,
}

pub struct HookOutcome {
    pub end: HookEnd,
}

impl HookOutcome {
    pub fn into_result(self, timeout: Duration) -> StepResult {
        match self.end {
            HookEnd::Exited(status) if status.success() => {
                Ok(StepDone::Ok("exit status 0".to_owned()))
            }
            HookEnd::Exited(status) => Err(StepError::Failed(describe_status(status))),
            HookEnd::TimedOut => Err(StepError::Failed(format!(
                "the command did not finish within {} and was terminated",
                humantime::format_duration(timeout)
            ))),
            HookEnd::Interrupted => Err(StepError::Interrupted(
                "interrupted; the command was stopped".to_owned(),
            )),
        }
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the command exited with status {code}"),
        (None, Some(sig)) => format!("the command was killed by signal {sig}"),
        _ => "the command ended abnormally".to_owned(),
    }
}

/// Run a hook for any step (`exec`, and the hooks of quiesce and repoint), recording its output
/// and how it ended.
pub async fn run_hook(
    ctx: &mut StepCtx<'_>,
    command: &PlanCommand,
    timeout: Duration,
    grace: Duration,
) -> Result<HookOutcome, StepError> {
    let (source, target) = ctx.plan.source_target(ctx.direction);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&command.run)
        .env("KDR_RUN_ID", ctx.run_id)
        .env("KDR_PLAN", &ctx.plan.name)
        .env("KDR_DIRECTION", ctx.direction.as_str())
        .env("KDR_STEP", ctx.step.index.to_string())
        .env("KDR_OPERATOR", ctx.operator)
        .env(
            "KDR_PRIMARY_BOOTSTRAP_SERVERS",
            &ctx.plan.primary.bootstrap_servers,
        )
        .env("KDR_DR_BOOTSTRAP_SERVERS", &ctx.plan.dr.bootstrap_servers)
        .env("KDR_SOURCE_BOOTSTRAP_SERVERS", &source.bootstrap_servers)
        .env("KDR_TARGET_BOOTSTRAP_SERVERS", &target.bootstrap_servers)
        .env("KDR_SOURCE", source.role.as_str())
        .env("KDR_TARGET", target.role.as_str())
        .envs(ctx.hook_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        StepError::Failed(format!("failed to start `sh -c {}`: {e}", command.shown))
    })?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let registered = pgid.map(Registered::new);
    ctx.recorder.observe(
        HOOK_STARTED,
        format!(
            "`{}` started as pid {}",
            command.shown,
            pgid.map_or("unknown".to_owned(), |p| p.to_string())
        ),
        serde_json::json!({ "command": command.shown, "pid": pgid, "pgid": pgid }),
    )?;

    let (lines_tx, mut lines_rx) = mpsc::unbounded_channel();
    let out_reader = child
        .stdout
        .take()
        .map(|s| tokio::spawn(capture(s, "stdout", lines_tx.clone())));
    let err_reader = child
        .stderr
        .take()
        .map(|s| tokio::spawn(capture(s, "stderr", lines_tx)));

    let deadline = tokio::time::Instant::now() + timeout;
    let mut cancel = ctx.cancel.clone();
    let mut end = None;
    while end.is_none() {
        tokio::select! {
            status = child.wait() => {
                end = Some(match status {
                    Ok(status) => HookEnd::Exited(status),
                    Err(e) => return Err(StepError::Failed(format!("failed to wait for the command: {e}"))),
                });
            }
            Some((stream, line)) = lines_rx.recv() => ctx.recorder.hook_line(stream, &line),
            () = tokio::time::sleep_until(deadline) => {
                stop(&mut child, pgid, libc::SIGTERM, grace).await;
                end = Some(HookEnd::TimedOut);
            }
            // Also when the Ctrl-C came before this loop began (while the start was logged).
            () = super::until_cancelled(&mut cancel) => {
                ctx.recorder.say("      interrupt: asking the command to stop (SIGINT)");
                stop(&mut child, pgid, libc::SIGINT, grace).await;
                end = Some(HookEnd::Interrupted);
            }
        }
    }
    // Collect the captures, then show what is left in the channel. A grandchild that keeps the
    // pipes open (a daemon the hook started) must not hold the step: wait briefly, then move on.
    // Draining only after the readers are done matters: a command that exits at once leaves its
    // last lines in a reader, not yet in the channel, when `wait` returns.
    let stdout = collect(out_reader).await;
    let stderr = collect(err_reader).await;
    while let Ok((stream, line)) = lines_rx.try_recv() {
        ctx.recorder.hook_line(stream, &line);
    }
    let elapsed = started.elapsed();
    let end = end.unwrap_or(HookEnd::Interrupted);
    if let Some(registered) = registered.filter(Registered::killed) {
        ctx.recorder.decide(
            "kdr",
            format!("kill the hook's process group {} (SIGKILL)", registered.0),
            "a second Ctrl-C: exit at once, leaving no hook running",
            serde_json::json!({ "pgid": registered.0 }),
        )?;
    }
    let (exit_code, signal) = match &end {
        HookEnd::Exited(status) => {
            use std::os::unix::process::ExitStatusExt;
            (status.code(), status.signal())
        }
        _ => (None, None),
    };
    ctx.recorder.observe(
        "output",
        format!(
            "`{}` ran for {}",
            command.shown,
            crate::report::format_ms(elapsed.as_millis() as u64)
        ),
        serde_json::json!({
            "command": command.shown,
            "pid": pgid,
            "exit_code": exit_code,
            "signal": signal,
            "timed_out": matches!(end, HookEnd::TimedOut),
            "interrupted": matches!(end, HookEnd::Interrupted),
            "duration_ms": elapsed.as_millis() as u64,
            "stdout": stdout.text,
            "stdout_bytes": stdout.total,
            "stdout_truncated": stdout.total > stdout.text.len(),
            "stderr": stderr.text,
            "stderr_bytes": stderr.total,
            "stderr_truncated": stderr.total > stderr.text.len(),
        }),
    )?;
    Ok(HookOutcome { end })
}

/// Signal the hook's process group, give it `grace` to exit, then SIGKILL the group.
async fn stop(child: &mut tokio::process::Child, pgid: Option<i32>, signal: i32, grace: Duration) {
    if let Some(pgid) = pgid {
        // SAFETY: signalling a process group we created; a stale id only yields ESRCH.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        if let Some(pgid) = pgid {
            // SAFETY: as above.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = child.kill().await;
    } else if let Some(pgid) = pgid {
        // The hook is gone; anything it left in its group goes with it.
        // SAFETY: as above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

#[derive(Default)]
struct Captured {
    text: String,
    total: usize,
}

async fn capture<R: AsyncRead + Unpin>(
    stream: R,
    name: &'static str,
    lines: mpsc::UnboundedSender<(&'static str, String)>,
) -> Captured {
    let mut reader = BufReader::new(stream);
    let mut captured = Captured::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                captured.total += n;
                let line = String::from_utf8_lossy(&buf);
                if captured.text.len() < CAPTURE_LIMIT {
                    let room = CAPTURE_LIMIT - captured.text.len();
                    let mut cut = line.len().min(room);
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    captured.text.push_str(&line[..cut]);
                }
                let _ = lines.send((name, line.trim_end_matches(['\n', '\r']).to_owned()));
            }
        }
    }
    captured
}

async fn collect(reader: Option<tokio::task::JoinHandle<Captured>>) -> Captured {
    let Some(handle) = reader else {
        return Captured::default();
    };
    let abort = handle.abort_handle();
    match tokio::time::timeout(Duration::from_millis(500), handle).await {
        Ok(Ok(c)) => c,
        _ => {
            abort.abort();
            Captured {
                text: "(output not collected: the pipe stayed open after the command ended)"
                    .to_owned(),
                total: 0,
            }
        }
    }
}

/// One line saying what the step will do (secrets as their references).
pub fn summary(exec: &Exec) -> String {
    format!("run `{}`", exec.run.shown)
}
