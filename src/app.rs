//! What each command does, between the parsed command line and the exit code.
//!
//! This is the binary's edge: every error that ends a command comes back here as a [`Failure`]
//! and is printed and mapped to its exit code in one place ([`run`]); every line of data goes to
//! stdout through one writer ([`Stdout`]); and the runs, the drill and the look-ups share one way
//! of making their async runtime ([`Async`]).

use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use tokio::sync::watch;

use crate::cli::{
    Cli, Command, FlowDirection, LagArgs, LogCommand, OffsetsCommand, Output, PlanCommand, RunArgs,
    StatusArgs, TranslateArgs,
};
use crate::engine::{self, RunRequest, gate::Gate};
use crate::exit::{self, EdgeError, ExitStatus};
use crate::journal::{self, Outcome};
use crate::plan::{self, Direction, Plan};
use crate::report::{Progress, metrics, tables};

/// The plan `kdr init` prints.
pub const STARTER_PLAN: &str = include_str!("../runbooks/starter.yaml");

/// The version of every `--output json` shape: the look-ups', `plan show`'s, the runs' and the
/// drill's. One number, so a reader checks one field whichever command it reads.
pub const JSON_VERSION: u32 = crate::lookup::SCHEMA_VERSION;

/// How long a run or a drill waits, once it has its answer, for work it gave up on (a client
/// thread of the embedded world, a prompt nobody answered) before the process ends anyway.
const LINGER: Duration = Duration::from_secs(2);

/// How long a second Ctrl-C that killed a hook waits for the run to log it before exiting.
const AFTER_KILL: Duration = Duration::from_secs(2);

/// An error that ended a command, whatever its type: it knows its message and exit code.
struct Failure(Box<dyn ExitStatus>);

impl<E: ExitStatus + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(Box::new(e))
    }
}

pub fn run(cli: Cli) -> u8 {
    init_tracing(cli.verbose);
    let mut out = Stdout::default();
    let code = match command(cli, &mut out) {
        Ok(code) => code,
        Err(Failure(e)) => {
            eprintln!("{}", e.message());
            e.exit_code()
        }
    };
    out.finish(code)
}

fn command(cli: Cli, out: &mut Stdout) -> Result<u8, Failure> {
    let color = cli.color.enabled();
    match cli.command {
        Command::Init => {
            out.print(STARTER_PLAN);
            Ok(exit::OK)
        }
        Command::Plan(PlanCommand::Check {
            plan,
            allow_missing_env,
        }) => plan_check(&plan, allow_missing_env, out),
        Command::Plan(PlanCommand::Show { plan, output }) => {
            let p = plan::load(&plan)?;
            match output {
                Output::Table => out.print(&tables::plan_tables(&p)),
                Output::Json => out.json(&plan_json(&p)),
            }
            Ok(exit::OK)
        }
        Command::Plan(PlanCommand::Schema) => {
            out.json(&schemars::schema_for!(plan::file::PlanFile));
            Ok(exit::OK)
        }
        Command::Log(LogCommand::Show { log, output }) if log.is_dir() => {
            let entries = journal::list(&log)?;
            match output {
                Output::Table => out.print(&tables::logs_table(&entries)),
                Output::Json => out.json(&entries),
            }
            Ok(exit::OK)
        }
        Command::Log(LogCommand::Show { log, output }) => {
            let contents = journal::read(&log)?;
            match output {
                Output::Table => out.print(&tables::log_table(&contents.events)),
                Output::Json => out.json(&contents.events),
            }
            if contents.torn_tail {
                eprintln!(
                    "warning: the log's last line was cut short (a crash while writing); it is not shown"
                );
            }
            Ok(exit::OK)
        }
        Command::Failover(args) => run_direction(Direction::Failover, args, color, out),
        Command::Failback(args) => run_direction(Direction::Failback, args, color, out),
        Command::Rehearse(args) => rehearse(args, color, out),
        Command::Drill(args) => drill(args, color, out),
        Command::Lag(args) => lag(args, out),
        Command::Offsets(OffsetsCommand::Translate(args)) => offsets_translate(args, out),
        Command::Status(args) => status(args, out),
        Command::Report(args) => report(&args, out),
        Command::Completions { shell } => {
            out.print(&crate::manual::completions(shell));
            Ok(exit::OK)
        }
        Command::Man => {
            out.print(&crate::manual::man_page());
            Ok(exit::OK)
        }
    }
}

fn plan_check(
    path: &std::path::Path,
    allow_missing_env: bool,
    out: &mut Stdout,
) -> Result<u8, Failure> {
    let unset_env = if allow_missing_env {
        plan::UnsetEnv::Placeholder
    } else {
        plan::UnsetEnv::Error
    };
    let lint = plan::lint(path, unset_env)?;
    eprint!("{}", lint.render_warnings());
    let unchecked = match lint.warnings.len() {
        0 => String::new(),
        1 => "; 1 value not checked (an unset environment variable)".to_owned(),
        n => format!("; {n} values not checked (unset environment variables)"),
    };
    out.print(&format!(
        "{}: plan `{}` is valid: {} failover steps, {} failback steps{unchecked}\n",
        path.display(),
        lint.name,
        lint.failover_steps,
        lint.failback_steps
    ));
    Ok(exit::OK)
}

/// Data for stdout, and only data. A reader that went away (`kdr … | head`, `| true`) is not a
/// failure of the run: the rest of the output is dropped quietly and the run's exit code stands.
/// Any other write error (a full disk) is reported once and makes a successful command fail.
#[derive(Default)]
struct Stdout {
    reader_gone: bool,
    error: Option<std::io::Error>,
}

impl Stdout {
    fn print(&mut self, text: &str) {
        if self.reader_gone || self.error.is_some() {
            return;
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => self.reader_gone = true,
            Err(e) => self.error = Some(e),
        }
    }

    /// Pretty JSON and a newline. Serialising kdr's own report types cannot fail (string keys,
    /// no custom serialisers), so a failure here is a defect and says so.
    fn json<T: serde::Serialize>(&mut self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(text) => self.print(&format!("{text}\n")),
            Err(e) => {
                self.error = Some(std::io::Error::other(format!(
                    "failed to serialise the output (a defect): {e}"
                )))
            }
        }
    }

    /// The command's exit code, after what stdout's writes say.
    fn finish(self, code: u8) -> u8 {
        match self.error {
            Some(e) => {
                eprintln!("error: failed to write to stdout: {e}");
                if code == exit::OK { exit::FAILED } else { code }
            }
            None => code,
        }
    }
}

/// A JSON report with the version of its shape first, as the look-ups carry it.
#[derive(serde::Serialize)]
struct Versioned<'a, T> {
    v: u32,
    #[serde(flatten)]
    report: &'a T,
}

fn versioned<T>(report: &T) -> Versioned<'_, T> {
    Versioned {
        v: JSON_VERSION,
        report,
    }
}

/// The one async runtime a command runs on.
struct Async(tokio::runtime::Runtime);

impl Async {
    fn start() -> Result<Self, EdgeError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map(Async)
            .map_err(EdgeError::Runtime)
    }

    /// A run or a drill: Ctrl-C (or SIGTERM) asks it to stop cleanly, a second one exits now.
    /// Work it gave up on gets [`LINGER`] to end.
    fn run_cancellable<F: Future>(
        self,
        work: impl FnOnce(watch::Receiver<bool>) -> F,
    ) -> F::Output {
        let output = self.0.block_on(async {
            let (cancel_tx, cancel_rx) = watch::channel(false);
            spawn_signal_handler(cancel_tx);
            work(cancel_rx).await
        });
        self.0.shutdown_timeout(LINGER);
        output
    }

    /// A look-up: read-only, so Ctrl-C keeps its default of ending the process at once. The
    /// runtime is dropped without waiting for librdkafka calls that were given up on: they end
    /// within their own bound, and a look-up that has its answer should not wait for them.
    fn lookup<T>(self, work: impl FnOnce(&tokio::runtime::Runtime) -> T) -> T {
        let output = work(&self.0);
        self.0.shutdown_background();
        output
    }
}

fn rehearse(args: crate::cli::RehearseArgs, color: bool, out: &mut Stdout) -> Result<u8, Failure> {
    use crate::rehearsal::drill;
    let options = drill::DrillOptions {
        plan: args.plan,
        scenario: args.scenario,
        log: args.log,
        log_dir: args.log_dir,
        color,
    };
    let report = Async::start()?.run_cancellable(|cancel| drill::run(options, cancel))?;
    match args.output {
        Output::Table => out.print(&drill::summary(&report)),
        Output::Json => out.json(&versioned(&report)),
    }
    let mut logs = vec![report.run.log.as_path()];
    logs.extend(report.failback.as_ref().map(|f| f.log.as_path()));
    let verdict = metrics::DrillFigures {
        plan: report.run.plan.clone(),
        scenario: clap::ValueEnum::to_possible_value(&report.scenario)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default(),
        passed: report.passed(),
    };
    drill_evidence(&args.evidence, report.run.outcome, &logs, &verdict, out)
}

/// `kdr drill`: the game day on the plan's clusters, once the operator has confirmed them.
fn drill(args: crate::cli::DrillArgs, color: bool, out: &mut Stdout) -> Result<u8, Failure> {
    use crate::rehearsal::drill::clusters;
    let plan = clusters::load_plan(&args.plan)?;
    if !args.yes && !TerminalPrompt.attended() {
        // Nobody to ask: refused before any cluster is contacted.
        confirm_drill(&plan, args.failback, &mut TerminalPrompt)?;
    }
    let runtime = Async::start()?;
    // A drill the engine would refuse for where write authority is says so before anything is
    // asked or started.
    let refused = runtime
        .0
        .block_on(engine::authority_refusal(&plan, Direction::Failover))?;
    if let Some(refusal) = refused {
        eprintln!("{refusal}");
        return Ok(exit::FAILED);
    }
    if !args.yes {
        confirm_drill(&plan, args.failback, &mut TerminalPrompt)?;
    }
    let options = clusters::ClusterDrillOptions {
        failback: args.failback,
        log_dir: args.log_dir,
        stable_for: args.stable_for,
        operator: login_name().unwrap_or_else(|| "kdr-drill".to_owned()),
        color,
    };
    let report = runtime.run_cancellable(|cancel| clusters::run(plan, options, cancel))?;
    match args.output {
        Output::Table => out.print(&clusters::summary(&report)),
        Output::Json => out.json(&versioned(&report)),
    }
    let verdict = metrics::DrillFigures {
        plan: report.plan.clone(),
        scenario: "clusters".to_owned(),
        passed: report.passed(),
    };
    drill_evidence(
        &args.evidence,
        report.run.outcome,
        &report.logs(),
        &verdict,
        out,
    )
}

/// A drill's exit code, after its report and metrics file are written as asked: 0 when the
/// failover succeeded and every check held.
fn drill_evidence(
    evidence: &crate::cli::DrillEvidenceArgs,
    outcome: Outcome,
    logs: &[&std::path::Path],
    verdict: &metrics::DrillFigures,
    out: &mut Stdout,
) -> Result<u8, Failure> {
    if let Some(format) = evidence.report {
        let logs: Vec<std::path::PathBuf> = logs.iter().map(|l| l.to_path_buf()).collect();
        incident_report(&logs, format, evidence.report_file.as_deref(), out)?;
    }
    let code = match outcome {
        Outcome::Succeeded if verdict.passed => exit::OK,
        Outcome::Succeeded => exit::FAILED,
        other => exit::of_outcome(other),
    };
    Ok(with_metrics(
        code,
        evidence.metrics_file.as_deref(),
        logs,
        Some(verdict),
    ))
}

/// `kdr drill` fails over real clusters: at a terminal the operator reads which, and types the
/// plan's name to go ahead; with nobody to ask, only --yes starts it.
fn confirm_drill(plan: &Plan, failback: bool, prompt: &mut dyn Prompt) -> Result<(), EdgeError> {
    use crate::rehearsal::drill::clusters::clusters_named;
    let clusters = clusters_named(plan);
    if !prompt.attended() {
        return Err(EdgeError::Usage(format!(
            "refusing to drill without a confirmation: kdr drill disturbs {clusters}; pass --yes, or run it at a terminal and type the plan's name"
        )));
    }
    let moves = if failback {
        "fail over, then back,"
    } else {
        "fail over"
    };
    let question = format!(
        "kdr drill will {moves} plan `{}` on these clusters, with a canary publishing across the switch:\n  primary: {}\n  dr:      {}\nType the plan's name to go ahead: ",
        plan.name, plan.primary.bootstrap_servers, plan.dr.bootstrap_servers
    );
    match prompt.ask(&question) {
        Some(answer) if answer.trim() == plan.name => Ok(()),
        _ => Err(EdgeError::Aborted(format!(
            "aborted: the answer was not the plan's name `{}`; nothing was done to {clusters}",
            plan.name
        ))),
    }
}

/// Write the metrics file, when asked for, from the runs' incident logs. A file that could not
/// be written is reported and fails a command that had succeeded.
fn with_metrics(
    code: u8,
    path: Option<&std::path::Path>,
    logs: &[&std::path::Path],
    drill: Option<&metrics::DrillFigures>,
) -> u8 {
    let Some(path) = path else { return code };
    match metrics::write_for_logs(path, logs, drill) {
        Ok(()) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if code == exit::OK { exit::FAILED } else { code }
        }
    }
}

fn plan_json(p: &Plan) -> serde_json::Value {
    let steps = |d: Direction| {
        p.steps(d)
            .iter()
            .map(|s| {
                serde_json::json!({
                    "step": s.index,
                    "kind": s.kind.name(),
                    "summary": crate::steps::summary(p, d, s),
                    "timeout_ms": s.timeout().as_millis() as u64,
                    "timeout_is_default": s.timeout_given.is_none(),
                })
            })
            .collect::<Vec<_>>()
    };
    serde_json::json!({
        "v": JSON_VERSION,
        "name": p.name,
        "fingerprint": p.fingerprint,
        "primary": { "bootstrap_servers": p.primary.bootstrap_servers, "mm2_alias": p.primary.mm2_alias },
        "dr": { "bootstrap_servers": p.dr.bootstrap_servers, "mm2_alias": p.dr.mm2_alias },
        "failover": steps(Direction::Failover),
        "failback": steps(Direction::Failback),
    })
}

fn init_tracing(verbose: u8) {
    // librdkafka's own complaints (a dead primary's refused connections, every few hundred
    // milliseconds) are what kdr reports as state; they are shown with -v.
    let default = match verbose {
        0 => "warn,rdkafka=off,librdkafka=off",
        1 => "kdr=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KDR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // The webhook client logs the URLs it calls, and a notify step's URL may be a secret: its
    // diagnostics stay off whatever the filter says.
    let filter = ["ureq=off", "ureq_proto=off"]
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, tracing_subscriber::EnvFilter::add_directive);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// First Ctrl-C (or SIGTERM): ask the run to stop after the current step. Second: exit now.
fn spawn_signal_handler(cancel: watch::Sender<bool>) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut count = 0;
        loop {
            let term_recv = async {
                match term.as_mut() {
                    Some(t) => t.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return },
                _ = term_recv => {}
            }
            count += 1;
            if count == 1 {
                eprintln!(
                    "\ninterrupt: stopping after the current step ends cleanly; press Ctrl-C again to exit at once"
                );
                let _ = cancel.send(true);
            } else {
                let killed = crate::steps::kill_running_hooks();
                if !killed.is_empty() {
                    let groups: Vec<String> = killed.iter().map(i32::to_string).collect();
                    eprintln!(
                        "\ninterrupt: killed the hook's process group {} (SIGKILL); exiting",
                        groups.join(", ")
                    );
                    // The step records the kill and the run its end, in a moment; the process
                    // ends when they are written, or after this bound whatever happens.
                    tokio::time::sleep(AFTER_KILL).await;
                }
                eprintln!("\ninterrupt: exiting now");
                if killed.is_empty()
                    && let Some(next) = crate::engine::interrupted_next_command()
                {
                    // The run had no time to say it: the process ends here.
                    eprintln!("next: {next}");
                }
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
}

fn run_direction(
    direction: Direction,
    args: RunArgs,
    color: bool,
    out: &mut Stdout,
) -> Result<u8, Failure> {
    let plan = plan::load(&args.plan)?;
    let mut request = RunRequest {
        direction,
        dry_run: args.dry_run,
        yes: args.yes,
        operator: args.operator.clone(),
        reason: args.reason.clone(),
        resume: args.resume.clone(),
        log: args.log.clone(),
        interrupted_step: args.interrupted_step,
        force: args.force,
        hook_env: Vec::new(),
        failover_log: None,
    };
    let runtime = Async::start()?;
    // Before asking anything: a run that would be refused for where write authority is says
    // so now, not after the operator typed a reason (bad usage is still said first).
    if request.resume.is_none() && !request.force {
        engine::check_usage(&request)?;
        let refused = runtime
            .0
            .block_on(engine::authority_refusal(&plan, direction))?;
        if let Some(refusal) = refused {
            eprintln!("{refusal}");
            return Ok(exit::FAILED);
        }
    }
    let who = who_and_why(&args, &mut TerminalPrompt)?;
    request.operator = who.operator;
    request.reason = who.reason;
    let report = runtime.run_cancellable(|cancel| {
        let progress = Progress::new(color, plan.steps(direction).len());
        engine::run(
            &plan,
            &request,
            Gate::Terminal,
            vec![Box::new(progress)],
            cancel,
        )
    })?;
    match args.output {
        Output::Table => out.print(&tables::run_table(&report)),
        Output::Json => out.json(&versioned(&report)),
    }
    let code = exit::of_outcome(report.outcome);
    Ok(with_metrics(
        code,
        args.metrics_file.as_deref(),
        &[&report.log],
        None,
    ))
}

/// Who runs this and why, as far as they are settled before the run starts.
#[derive(Debug, PartialEq, Eq)]
struct Who {
    operator: Option<String>,
    reason: Option<String>,
}

/// How many blank answers an operator may give before the run is refused.
const ASKS: usize = 3;

/// Where the operator answers: the terminal (stdin, prompts on stderr), or a script in tests.
trait Prompt {
    /// Whether somebody is there to ask.
    fn attended(&self) -> bool;
    /// The answer; None at end of input.
    fn ask(&mut self, prompt: &str) -> Option<String>;
}

struct TerminalPrompt;

impl Prompt for TerminalPrompt {
    fn attended(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    fn ask(&mut self, prompt: &str) -> Option<String> {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }
}

/// The audit trail's who and why. Given on the command line, they must say something. At a
/// terminal, a missing operator is asked for (the login name is the default) and so is a missing
/// reason, which may not be left blank. Under `--yes` nobody is asked: `--operator` and `--reason`
/// are required (the engine says so). A dry run records the login name. A resumed run keeps the
/// who and why of its log unless they are given again.
fn who_and_why(args: &RunArgs, prompt: &mut dyn Prompt) -> Result<Who, EdgeError> {
    for (flag, value) in [("--operator", &args.operator), ("--reason", &args.reason)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(EdgeError::Usage(format!(
                "{flag} is empty: the incident log records who ran this and why"
            )));
        }
    }
    let mut who = Who {
        operator: args.operator.clone(),
        reason: args.reason.clone(),
    };
    if args.resume.is_some() || args.yes {
        return Ok(who);
    }
    if args.dry_run {
        who.operator = who.operator.or_else(login_name);
        return Ok(who);
    }
    if !prompt.attended() {
        // The engine refuses a run with nobody to answer its gates, and says why.
        return Ok(who);
    }
    if who.operator.is_none() {
        let default = login_name();
        let question = match &default {
            Some(name) => format!("Operator (recorded in the incident log) [{name}]: "),
            None => "Operator (recorded in the incident log): ".to_owned(),
        };
        who.operator = Some(ask_until_given(
            prompt,
            &question,
            default.as_deref(),
            "operator",
        )?);
    }
    if who.reason.is_none() {
        let question = "Reason for this run (recorded in the incident log): ";
        who.reason = Some(ask_until_given(prompt, question, None, "reason")?);
    }
    Ok(who)
}

/// Asks until the answer is not blank (a blank answer takes `default` when there is one), at
/// most [`ASKS`] times.
fn ask_until_given(
    prompt: &mut dyn Prompt,
    question: &str,
    default: Option<&str>,
    what: &str,
) -> Result<String, EdgeError> {
    for _ in 0..ASKS {
        match prompt.ask(question).map(|a| a.trim().to_owned()) {
            None => break,
            Some(answer) if !answer.is_empty() => return Ok(answer),
            Some(_) => match default {
                Some(d) => return Ok(d.to_owned()),
                None => eprintln!("the incident log needs a {what}: it may not be blank"),
            },
        }
    }
    Err(EdgeError::Usage(format!(
        "no {what} given: the incident log records who ran this and why (or pass --{what})"
    )))
}

/// The name the operator logged in with: the terminal session's login (right under `sudo`),
/// else the account of the real user id, else `$USER`.
fn login_name() -> Option<String> {
    fn owned(name: &std::ffi::CStr) -> Option<String> {
        Some(name.to_string_lossy().trim().to_owned()).filter(|n| !n.is_empty())
    }
    // SAFETY: getlogin returns null or a NUL-terminated string in a static buffer, read here
    // at once; no other thread of kdr calls it.
    let login = unsafe {
        let p = libc::getlogin();
        (!p.is_null())
            .then(|| owned(std::ffi::CStr::from_ptr(p)))
            .flatten()
    };
    if login.is_some() {
        return login;
    }
    let mut strings = [0 as libc::c_char; 4096];
    // SAFETY: passwd is plain old data; getpwuid_r writes into it and into `strings`, within
    // the lengths given, and sets `found` to it (or to null when there is no entry).
    let account = unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pw,
            strings.as_mut_ptr(),
            strings.len(),
            &mut found,
        );
        if rc == 0 && !found.is_null() && !pw.pw_name.is_null() {
            owned(std::ffi::CStr::from_ptr(pw.pw_name))
        } else {
            None
        }
    };
    account.or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
}

fn flow_direction(d: FlowDirection) -> Direction {
    match d {
        FlowDirection::Failover => Direction::Failover,
        FlowDirection::Failback => Direction::Failback,
    }
}

/// Runs a look-up (`bounded` calls `lookup::run_bounded` on the runtime it is given), prints
/// its report as a table or JSON and returns its exit code.
fn lookup<R: serde::Serialize>(
    output: Output,
    out: &mut Stdout,
    bounded: impl FnOnce(&tokio::runtime::Runtime) -> Result<R, crate::lookup::LookupError>,
    render: fn(&R) -> String,
    code: fn(&R) -> u8,
) -> Result<u8, Failure> {
    let report = Async::start()?.lookup(bounded)?;
    match output {
        Output::Table => out.print(&render(&report)),
        Output::Json => out.json(&report),
    }
    Ok(code(&report))
}

fn lag(args: LagArgs, out: &mut Stdout) -> Result<u8, Failure> {
    use crate::lookup::{lag, run_bounded};
    let plan = plan::load(&args.plan)?;
    let direction = flow_direction(args.direction);
    let bounded = |runtime: &_| {
        run_bounded(runtime, &plan, *args.timeout, |clusters, deadline| {
            let plan = &plan;
            async move { lag::run(plan, &clusters, direction, deadline).await }
        })
    };
    lookup(
        args.output,
        out,
        bounded,
        lag::render,
        lag::LagReport::exit_code,
    )
}

fn offsets_translate(args: TranslateArgs, out: &mut Stdout) -> Result<u8, Failure> {
    use crate::lookup::{run_bounded, translate};
    let plan = plan::load(&args.plan)?;
    let selectors =
        translate::selectors(&args.groups).map_err(|e| EdgeError::Usage(e.to_string()))?;
    let request = translate::TranslateRequest {
        direction: flow_direction(args.direction),
        apply: args.apply,
        batching: crate::replication::Batching {
            concurrency: args.concurrency,
        },
    };
    // The report is written as it is made (thousands of groups): no whole report is held.
    let print = |text: &str| out.print(text);
    let mut writer: Box<dyn translate::ReportWriter + '_> = match args.output {
        Output::Table => Box::new(translate::TableWriter::new(print)),
        Output::Json => Box::new(translate::JsonWriter::new(print)),
    };
    let bounded = |runtime: &_| {
        run_bounded(runtime, &plan, *args.timeout, |clusters, deadline| {
            let (plan, request, selectors) = (&plan, &request, &selectors);
            let writer = &mut *writer;
            async move { translate::run(plan, &clusters, request, selectors, deadline, writer).await }
        })
    };
    let translated = Async::start()?.lookup(bounded)?;
    Ok(translated.exit_code())
}

fn status(args: StatusArgs, out: &mut Stdout) -> Result<u8, Failure> {
    use crate::lookup::{run_bounded, status};
    let plan = plan::load(&args.plan)?;
    let thresholds = status::Thresholds {
        max_lag_records: args.max_lag_records,
        max_heartbeat_age: args.max_heartbeat_age,
    };
    let bounded = |runtime: &_| {
        run_bounded(runtime, &plan, *args.timeout, |clusters, deadline| {
            let plan = &plan;
            async move { status::run(plan, &clusters, thresholds, deadline).await }
        })
    };
    let code = status::StatusReport::exit_code;
    lookup(args.output, out, bounded, status::render, code)
}

fn report(args: &crate::cli::ReportArgs, out: &mut Stdout) -> Result<u8, Failure> {
    incident_report(&args.logs, args.format, args.output_file.as_deref(), out)?;
    Ok(exit::OK)
}

/// The incident report of `logs` in `format`, to `file` or stdout (`kdr report`, and
/// `kdr rehearse --report`).
fn incident_report(
    logs: &[std::path::PathBuf],
    format: crate::cli::ReportFormat,
    file: Option<&std::path::Path>,
    out: &mut Stdout,
) -> Result<(), Failure> {
    use crate::cli::ReportFormat;
    use crate::report::{html, incident, json, markdown};
    let report = incident::load(logs)?;
    let text = match format {
        ReportFormat::Md => markdown::render(&report),
        ReportFormat::Html => html::render(&report),
        ReportFormat::Json => json::render(&report),
    };
    match file {
        Some(path) => {
            std::fs::write(path, &text).map_err(|source| incident::ReportError::Write {
                path: path.to_owned(),
                source,
            })?;
        }
        None => out.print(&text),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Answers given in advance; `None` once they run out (end of input).
    struct Script {
        attended: bool,
        answers: std::collections::VecDeque<&'static str>,
        asked: Vec<String>,
    }

    impl Script {
        fn new(answers: &[&'static str]) -> Self {
            Script {
                attended: true,
                answers: answers.iter().copied().collect(),
                asked: Vec::new(),
            }
        }
    }

    impl Prompt for Script {
        fn attended(&self) -> bool {
            self.attended
        }

        fn ask(&mut self, prompt: &str) -> Option<String> {
            self.asked.push(prompt.to_owned());
            self.answers.pop_front().map(str::to_owned)
        }
    }

    fn args(extra: &[&str]) -> RunArgs {
        let cli = Cli::parse_from(["kdr", "failover", "--plan", "p.yaml"].iter().chain(extra));
        match cli.command {
            Command::Failover(args) => args,
            other => panic!("not a failover: {other:?}"),
        }
    }

    #[test]
    fn a_drill_goes_ahead_only_when_the_plans_name_is_typed_after_the_clusters_are_named() {
        let plan = crate::rehearsal::drill::load_plan(None).expect("bundled plan");
        let mut script = Script::new(&["rehearsal\n"]);
        confirm_drill(&plan, true, &mut script).expect("confirmed");
        assert_eq!(script.asked.len(), 1);
        let question = &script.asked[0];
        for named in ["fail over, then back,", "127.0.0.1:9092", "127.0.0.1:9093"] {
            assert!(question.contains(named), "{named} not in {question:?}");
        }
        for answer in [&["yes"][..], &[""], &[]] {
            let mut script = Script::new(answer);
            let err = confirm_drill(&plan, false, &mut script).expect_err("not confirmed");
            assert_eq!(err.exit_code(), exit::ABORTED, "{answer:?}");
            assert!(err.to_string().contains("nothing was done"), "{err}");
        }
        let mut script = Script::new(&["rehearsal"]);
        script.attended = false;
        let err = confirm_drill(&plan, false, &mut script).expect_err("nobody to ask");
        assert_eq!(err.exit_code(), exit::USAGE);
        assert!(script.asked.is_empty());
    }

    #[test]
    fn at_a_terminal_a_blank_operator_takes_the_login_name_and_the_reason_is_asked() {
        let mut script = Script::new(&["", "disk died"]);
        let who = who_and_why(&args(&[]), &mut script).expect("who");
        assert_eq!(who.operator, login_name());
        assert!(who.operator.is_some(), "this host has a login name");
        assert_eq!(who.reason.as_deref(), Some("disk died"));
        assert_eq!(script.asked.len(), 2);
    }

    #[test]
    fn a_blank_reason_is_asked_again_and_then_refused() {
        let mut script = Script::new(&["alice", "", " ", ""]);
        let err = who_and_why(&args(&[]), &mut script).expect_err("refused");
        assert_eq!(err.exit_code(), exit::USAGE);
        assert_eq!(script.asked.len(), 1 + ASKS);
        let mut script = Script::new(&["alice", "", "at last"]);
        let who = who_and_why(&args(&[]), &mut script).expect("who");
        assert_eq!(who.reason.as_deref(), Some("at last"));
    }

    #[test]
    fn the_end_of_input_is_a_refusal_not_a_blank_reason() {
        let mut script = Script::new(&["alice"]);
        let err = who_and_why(&args(&[]), &mut script).expect_err("refused");
        assert_eq!(err.exit_code(), exit::USAGE);
    }

    #[test]
    fn given_flags_are_not_asked_again_and_may_not_be_blank() {
        let mut script = Script::new(&[]);
        let who = who_and_why(
            &args(&["--operator", "bob", "--reason", "drill"]),
            &mut script,
        )
        .expect("who");
        assert_eq!(who.operator.as_deref(), Some("bob"));
        assert!(script.asked.is_empty());
        for blank in [["--operator", " "], ["--reason", ""]] {
            let err = who_and_why(&args(&blank), &mut Script::new(&[])).expect_err("blank");
            assert_eq!(err.exit_code(), exit::USAGE, "{blank:?}");
        }
    }

    #[test]
    fn nobody_is_asked_under_yes_on_resume_in_a_dry_run_or_without_a_terminal() {
        for extra in [&["--yes"][..], &["--resume", "x.jsonl"], &["--dry-run"]] {
            let mut script = Script::new(&["x", "y"]);
            let who = who_and_why(&args(extra), &mut script).expect("who");
            assert!(script.asked.is_empty(), "{extra:?}");
            assert_eq!(who.reason, None, "{extra:?}");
        }
        let who = who_and_why(&args(&["--dry-run"]), &mut Script::new(&[])).expect("who");
        assert_eq!(who.operator, login_name());
        let mut script = Script::new(&["x", "y"]);
        script.attended = false;
        let who = who_and_why(&args(&[]), &mut script).expect("who");
        assert_eq!(
            who,
            Who {
                operator: None,
                reason: None
            }
        );
        assert!(script.asked.is_empty());
    }
}
