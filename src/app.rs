//! What each command does, between the parsed command line and the exit code.

use std::io::Write;

use tokio::sync::watch;

use crate::cli::{
    Cli, Command, FlowDirection, LagArgs, LogCommand, OffsetsCommand, Output, PlanCommand, RunArgs,
    StatusArgs, TranslateArgs,
};
use crate::engine::{self, EngineError, RunRequest, gate::Gate};
use crate::exit;
use crate::journal::{self, Outcome};
use crate::plan::{self, Direction, Plan};
use crate::report::{Progress, tables};

/// The plan `kdr init` prints.
pub const STARTER_PLAN: &str = include_str!("../runbooks/starter.yaml");

pub fn run(cli: Cli) -> u8 {
    init_tracing(cli.verbose);
    let color = cli.color.enabled();
    match cli.command {
        Command::Init => {
            print!("{STARTER_PLAN}");
            exit::OK
        }
        Command::Plan(PlanCommand::Check {
            plan,
            allow_missing_env,
        }) => plan_check(&plan, allow_missing_env),
        Command::Plan(PlanCommand::Show { plan, output }) => match plan::load(&plan) {
            Ok(p) => {
                match output {
                    Output::Table => print!("{}", tables::plan_tables(&p)),
                    Output::Json => print_json(&plan_json(&p)),
                }
                exit::OK
            }
            Err(e) => plan_error(&e),
        },
        Command::Plan(PlanCommand::Schema) => {
            let schema = schemars::schema_for!(plan::file::PlanFile);
            print_json(&schema);
            exit::OK
        }
        Command::Log(LogCommand::Show { log, output }) => match journal::read(&log) {
            Ok(contents) => {
                match output {
                    Output::Table => print!("{}", tables::log_table(&contents.events)),
                    Output::Json => print_json(&contents.events),
                }
                if contents.torn_tail {
                    eprintln!(
                        "warning: the log's last line was cut short (a crash while writing); it is not shown"
                    );
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::USAGE
            }
        },
        Command::Failover(args) => run_direction(Direction::Failover, args, color),
        Command::Failback(args) => run_direction(Direction::Failback, args, color),
        Command::Rehearse(args) => rehearse(args, color),
        Command::Lag(args) => lag(args),
        Command::Offsets(OffsetsCommand::Translate(args)) => offsets_translate(args),
        Command::Status(args) => status(args),
        Command::Report(args) => report(&args),
        Command::Completions { shell } => crate::manual::completions(shell),
        Command::Man => crate::manual::man_page(),
    }
}

fn rehearse(args: crate::cli::RehearseArgs, color: bool) -> u8 {
    use crate::rehearsal::drill;
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    let options = drill::DrillOptions {
        plan: args.plan,
        scenario: args.scenario,
        log: args.log,
        color,
    };
    let result = runtime.block_on(async {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        spawn_signal_handler(cancel_tx);
        drill::run(options, cancel_rx).await
    });
    // Client threads of the embedded world may linger a moment; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(report) => {
            match args.output {
                Output::Table => print!("{}", drill::summary(&report)),
                Output::Json => print_json(&report),
            }
            match report.run.outcome {
                Outcome::Succeeded if report.passed() => exit::OK,
                Outcome::Succeeded => exit::FAILED,
                other => outcome_code(other),
            }
        }
        Err(drill::DrillError::Plan(e)) => plan_error(&e),
        Err(drill::DrillError::Engine(e)) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILED
        }
    }
}

fn plan_check(path: &std::path::Path, allow_missing_env: bool) -> u8 {
    let unset_env = if allow_missing_env {
        plan::UnsetEnv::Placeholder
    } else {
        plan::UnsetEnv::Error
    };
    match plan::lint(path, unset_env) {
        Ok(lint) => {
            eprint!("{}", lint.render_warnings());
            let unchecked = match lint.warnings.len() {
                0 => String::new(),
                1 => "; 1 value not checked (an unset environment variable)".to_owned(),
                n => format!("; {n} values not checked (unset environment variables)"),
            };
            println!(
                "{}: plan `{}` is valid: {} failover steps, {} failback steps{unchecked}",
                path.display(),
                lint.name,
                lint.failover_steps,
                lint.failback_steps
            );
            exit::OK
        }
        Err(e) => plan_error(&e),
    }
}

fn plan_error(e: &plan::PlanError) -> u8 {
    match e {
        plan::PlanError::Invalid { .. } => eprintln!("{e}"),
        plan::PlanError::Read { .. } => eprintln!("error: {e}"),
    }
    exit::USAGE
}

fn print_json<T: serde::Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
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
                eprintln!("\ninterrupt: exiting now");
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
}

fn run_direction(direction: Direction, args: RunArgs, color: bool) -> u8 {
    let plan = match plan::load(&args.plan) {
        Ok(p) => p,
        Err(e) => return plan_error(&e),
    };
    let request = RunRequest {
        direction,
        dry_run: args.dry_run,
        yes: args.yes,
        operator: args.operator,
        reason: args.reason,
        resume: args.resume,
        log: args.log,
        interrupted_step: args.interrupted_step,
        force: args.force,
        hook_env: Vec::new(),
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    let result = runtime.block_on(async {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        spawn_signal_handler(cancel_tx);
        let progress = Progress::new(color, plan.steps(direction).len());
        engine::run(&plan, &request, Gate::Terminal, progress, cancel_rx).await
    });
    match result {
        Ok(report) => {
            match args.output {
                Output::Table => print!("{}", tables::run_table(&report)),
                Output::Json => print_json(&report),
            }
            outcome_code(report.outcome)
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                EngineError::Usage(_) | EngineError::Resume { .. } | EngineError::Config(_) => {
                    exit::USAGE
                }
                EngineError::Lock(_) | EngineError::Journal(_) => exit::FAILED,
            }
        }
    }
}

pub fn outcome_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Succeeded | Outcome::DryRun => exit::OK,
        Outcome::Failed => exit::FAILED,
        Outcome::Aborted => exit::ABORTED,
        Outcome::Interrupted => exit::INTERRUPTED,
    }
}

fn flow_direction(d: FlowDirection) -> Direction {
    match d {
        FlowDirection::Failover => Direction::Failover,
        FlowDirection::Failback => Direction::Failback,
    }
}

/// Prints a look-up's report as a table or JSON and returns its exit code.
fn lookup_outcome<R: serde::Serialize>(
    result: Result<R, crate::lookup::LookupError>,
    output: Output,
    render: impl Fn(&R) -> String,
    code: impl Fn(&R) -> u8,
) -> u8 {
    match result {
        Ok(report) => {
            match output {
                Output::Table => print!("{}", render(&report)),
                Output::Json => print_json(&report),
            }
            code(&report)
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                crate::lookup::LookupError::Config(_) => exit::USAGE,
                _ => exit::FAILED,
            }
        }
    }
}

fn lag(args: LagArgs) -> u8 {
    use crate::lookup::lag;
    let plan = match plan::load(&args.plan) {
        Ok(p) => p,
        Err(e) => return plan_error(&e),
    };
    let direction = flow_direction(args.direction);
    let result = crate::lookup::run_bounded(&plan, args.timeout, |clusters, deadline| {
        let plan = &plan;
        async move { lag::run(plan, &clusters, direction, deadline).await }
    });
    lookup_outcome(result, args.output, lag::render, lag::LagReport::exit_code)
}

fn offsets_translate(args: TranslateArgs) -> u8 {
    use crate::lookup::translate;
    let plan = match plan::load(&args.plan) {
        Ok(p) => p,
        Err(e) => return plan_error(&e),
    };
    let selectors = match translate::selectors(&args.groups) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let request = translate::TranslateRequest {
        direction: flow_direction(args.direction),
        apply: args.apply,
    };
    let result = crate::lookup::run_bounded(&plan, args.timeout, |clusters, deadline| {
        let (plan, request, selectors) = (&plan, &request, &selectors);
        async move { translate::run(plan, &clusters, request, selectors, deadline).await }
    });
    lookup_outcome(
        result,
        args.output,
        translate::render,
        translate::TranslateReport::exit_code,
    )
}

fn status(args: StatusArgs) -> u8 {
    use crate::lookup::status;
    let plan = match plan::load(&args.plan) {
        Ok(p) => p,
        Err(e) => return plan_error(&e),
    };
    let thresholds = status::Thresholds {
        max_lag_records: args.max_lag_records,
        max_heartbeat_age: args.max_heartbeat_age,
    };
    let result = crate::lookup::run_bounded(&plan, args.timeout, |clusters, deadline| {
        let plan = &plan;
        async move { status::run(plan, &clusters, thresholds, deadline).await }
    });
    lookup_outcome(
        result,
        args.output,
        status::render,
        status::StatusReport::exit_code,
    )
}

fn report(args: &crate::cli::ReportArgs) -> u8 {
    use crate::cli::ReportFormat;
    use crate::report::{html, incident, json, markdown};
    let report = match incident::load(&args.logs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let text = match args.format {
        ReportFormat::Md => markdown::render(&report),
        ReportFormat::Html => html::render(&report),
        ReportFormat::Json => json::render(&report),
    };
    let written = match &args.output_file {
        Some(path) => std::fs::write(path, &text).map_err(|source| incident::ReportError::Write {
            path: path.clone(),
            source,
        }),
        None => {
            print!("{text}");
            Ok(())
        }
    };
    match written {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}
