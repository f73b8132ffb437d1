//! Command-line definitions (clap derive) and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::InterruptedChoice;
use crate::report::ColorChoice;

#[derive(Debug, Parser)]
#[command(
    name = "kdr",
    version,
    about = "Runbook executor for Kafka disaster recovery: failover, failback and rehearsals of MirrorMaker 2 pairs",
    long_about = "kdr runs a DR plan's steps in strict order against the primary and DR clusters, stops at human gates, and appends every decision and timestamp to an incident log (JSON Lines).",
    after_help = crate::exit::HELP,
)]
pub struct Cli {
    /// When to colour the output: auto is off when stderr is not a terminal, under NO_COLOR or TERM=dumb.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,

    /// More diagnostics on stderr (-v: debug, -vv: trace). Also KDR_LOG=<filter>.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a commented starter plan that passes `kdr plan check`.
    Init,
    /// Check, show or describe plan files.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Run the plan's failover steps (primary → dr).
    #[command(after_help = crate::exit::HELP)]
    Failover(RunArgs),
    /// Run the plan's failback steps (dr → primary).
    #[command(after_help = crate::exit::HELP)]
    Failback(RunArgs),
    /// Read incident logs.
    #[command(subcommand)]
    Log(LogCommand),
    /// Replication lag per topic and partition, in records and in time: the RPO if the source
    /// died now. Exit 1 when the source cannot be read (the target's side is still shown).
    #[command(after_help = crate::exit::HELP)]
    Lag(LagArgs),
    /// Consumer-group offsets across the pair.
    #[command(subcommand)]
    Offsets(OffsetsCommand),
    /// Both clusters' reachability, replication health both ways, and whether a failover is
    /// ready now. Exit 0 when healthy, 1 otherwise.
    #[command(after_help = crate::exit::HELP)]
    Status(StatusArgs),
    /// A game day on two embedded clusters: start them, replicate the way MirrorMaker 2 does,
    /// run a workload, fail over, run traffic on DR, fail back, and check the numbers (RTO, data
    /// lost, records re-read). No Kafka needed.
    #[command(after_help = crate::exit::HELP)]
    Rehearse(RehearseArgs),
    /// A game day on the clusters the plan names: check the plan replicates the canary's topic
    /// and group (`kdr-canary`), start the canary, fail over (and with --failback, back), stop
    /// the canary and check what its clients saw against kdr's figures. It disturbs those
    /// clusters: at a terminal it asks for the plan's name first; elsewhere it needs --yes.
    #[command(after_help = crate::exit::HELP)]
    Drill(DrillArgs),
    /// A report from incident logs alone (a failover and its failback together when both are
    /// given): timeline, RTO and its phases, RPO per partition, offset translation, re-reads.
    /// Exit 2 when a log is missing, unreadable or corrupt, or the output file cannot be written.
    #[command(after_help = crate::exit::HELP)]
    Report(ReportArgs),
    /// Print a shell completion script for kdr (e.g. `kdr completions bash > /etc/bash_completion.d/kdr`).
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print kdr's man page (roff) on stdout (e.g. `kdr man > kdr.1`).
    Man,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Incident logs, in order (a failover's, then its failback's).
    #[arg(required = true, value_name = "LOG")]
    pub logs: Vec<PathBuf>,
    /// md for the incident channel, html for a self-contained page with a timeline picture,
    /// json for tools (versioned by its `v` field).
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
    /// Write the report here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Md,
    Html,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// A plan to rehearse (its steps, topics and groups) instead of the bundled
    /// runbooks/rehearsal.yaml. Its clusters are never contacted: the drill runs on embedded ones.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// `controlled`: the primary is alive and nothing is lost. `disaster`: replication stalls and
    /// the primary goes down right after the declaration, so the loss is accepted and checked.
    #[arg(long, value_enum, default_value_t = crate::rehearsal::drill::Scenario::Controlled)]
    pub scenario: crate::rehearsal::drill::Scenario,
    /// Write the failover's incident log here (the failback's goes to the default place).
    #[arg(long, value_name = "PATH", conflicts_with = "log_dir")]
    pub log: Option<PathBuf>,
    /// Write every incident log of the drill (failover and failback) under this directory.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Print the drill's report as JSON on stdout.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub evidence: DrillEvidenceArgs,
}

/// What a drill leaves behind besides its summary and logs (`kdr rehearse` and `kdr drill`).
#[derive(Debug, Args)]
pub struct DrillEvidenceArgs {
    /// Write the run's figures here in Prometheus text format (for node_exporter's textfile
    /// collector), replacing the file whole: outcome, durations, step statuses, RTO, RPO.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Also write the incident report of the drill's logs (as `kdr report` would) in this
    /// format: to --report-file, or to stdout after the summary.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub report: Option<ReportFormat>,
    /// Where --report writes.
    #[arg(long, value_name = "FILE", requires = "report")]
    pub report_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The plan file. Its clusters are the ones failed over; its replication must cover the
    /// canary's topic and group, and its hooks move the canary through the files in
    /// $KDR_REHEARSAL_DIR as runbooks/rehearsal.yaml's do.
    #[arg(long)]
    pub plan: PathBuf,
    /// Also run the plan's failback, once the canary has settled on DR.
    #[arg(long)]
    pub failback: bool,
    /// Do not ask: these are the clusters to disturb. Without it kdr asks at a terminal for the
    /// plan's name, and refuses (exit 2) when there is no terminal to ask at.
    #[arg(long)]
    pub yes: bool,
    /// Write every incident log of the drill (failover and failback) under this directory.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// How long the canary's publishing must stay clean (no errors, p99 within 2x its baseline)
    /// to count as stabilized after a switch (humantime: 10s, 1m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub stable_for: std::time::Duration,
    /// Print the drill's report as JSON on stdout.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub evidence: DrillEvidenceArgs,
}

/// Which replication flow a look-up reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlowDirection {
    /// primary → dr
    Failover,
    /// dr → primary
    Failback,
}

#[derive(Debug, Args)]
pub struct LagArgs {
    /// The plan file.
    #[arg(long)]
    pub plan: PathBuf,
    /// The flow to measure: failover is primary → dr, failback dr → primary.
    #[arg(long, value_enum, default_value_t = FlowDirection::Failover)]
    pub direction: FlowDirection,
    /// A table, or JSON in the shape the README documents.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Give up after this long in all (humantime: 30s, 1m).
    #[arg(long, default_value_t = crate::lookup::DEFAULT_TIMEOUT.into())]
    pub timeout: humantime::Duration,
}

#[derive(Debug, Subcommand)]
pub enum OffsetsCommand {
    /// Where each group would start on the target, from MM2's checkpoints, and what --apply
    /// would do per partition. Nothing is written without --apply. Exit 1 when a group has no
    /// checkpoint, or --apply could not commit everything it set out to.
    #[command(after_help = crate::exit::HELP)]
    Translate(TranslateArgs),
}

#[derive(Debug, Args)]
pub struct TranslateArgs {
    /// The plan file.
    #[arg(long)]
    pub plan: PathBuf,
    /// The flow to translate for: failover commits on dr, failback on primary.
    #[arg(long, value_enum, default_value_t = FlowDirection::Failover)]
    pub direction: FlowDirection,
    /// Only this group (a name or re:<regex>); repeat for more. Default: the plan's
    /// replication.groups.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Commit the translated offsets on the target, as the translate_offsets step does:
    /// groups with live members are refused, and no partition is moved backwards.
    #[arg(long)]
    pub apply: bool,
    /// How many groups' committed offsets are read, or commits sent, at once.
    #[arg(long, value_name = "N", default_value_t = crate::kafka::DEFAULT_CONCURRENCY)]
    pub concurrency: std::num::NonZeroUsize,
    /// A table, or JSON in the shape the README documents.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Give up after this long in all (humantime: 30s, 1m).
    #[arg(long, default_value_t = crate::lookup::DEFAULT_TIMEOUT.into())]
    pub timeout: humantime::Duration,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The plan file.
    #[arg(long)]
    pub plan: PathBuf,
    /// Healthy while primary → dr is at most this many records behind in all.
    #[arg(long, value_name = "RECORDS", default_value_t = 1000)]
    pub max_lag_records: u64,
    /// Healthy while the newest heartbeat from primary on dr is at most this old.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1m")]
    pub max_heartbeat_age: std::time::Duration,
    /// A table, or JSON in the shape the README documents.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Give up after this long in all (humantime: 30s, 1m).
    #[arg(long, default_value_t = crate::lookup::DEFAULT_TIMEOUT.into())]
    pub timeout: humantime::Duration,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Validate a plan: every problem as file:line:col with its key path. Exit 0 when valid, 2 when not.
    Check {
        /// The plan file.
        plan: PathBuf,
        /// Check a plan whose ${env:…} variables are not set (CI without the secrets): each
        /// unset one is a warning, and the value it is part of is not checked.
        #[arg(long)]
        allow_missing_env: bool,
    },
    /// Show the ordered steps, one table per direction.
    Show {
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print the JSON Schema of plan files, for editors.
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Show a run's incident log as a table (time, step, event, status, detail); given a
    /// directory, list the runs whose logs are in it.
    Show {
        log: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan file.
    #[arg(long)]
    pub plan: PathBuf,
    /// Change nothing: print what each step would do and record it in the log.
    #[arg(long)]
    pub dry_run: bool,
    /// Answer the human gates for the operator. Nobody is asked anything, so --operator and
    /// --reason are both required: an unattended run names who is answerable for it.
    #[arg(long)]
    pub yes: bool,
    /// Who is running this (recorded in the incident log). When not given, asked for at the
    /// terminal with your login name as the default (a dry run records the login name, --resume
    /// the log's operator); required with --yes.
    #[arg(long)]
    pub operator: Option<String>,
    /// Why (recorded in the incident log; may not be blank). When not given, asked for at the
    /// terminal; required with --yes and --force.
    #[arg(long)]
    pub reason: Option<String>,
    /// Continue the run recorded in this incident log after its last finished step.
    #[arg(long, value_name = "LOG")]
    pub resume: Option<PathBuf>,
    /// Write the incident log here instead of <incident_log.dir>/<plan>-<direction>-<run id>.jsonl.
    #[arg(long, value_name = "PATH", conflicts_with = "resume")]
    pub log: Option<PathBuf>,
    /// With --resume: what to do with a non-idempotent step that was interrupted mid-way.
    #[arg(long, value_enum, requires = "resume")]
    pub interrupted_step: Option<InterruptedChoice>,
    /// Run although write authority is not where this direction expects it (a failover while
    /// DR already owns writes, a failback while the primary does), or past another run's claim
    /// of the next authority epoch (its machine died before it moved authority). Needs --reason.
    #[arg(long)]
    pub force: bool,
    /// Print the run's summary as JSON on stdout instead of a table.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Write the run's figures here in Prometheus text format (for node_exporter's textfile
    /// collector), replacing the file whole: outcome, durations, step statuses, RTO, RPO.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}
