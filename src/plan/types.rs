//! The checked plan: the domain types every other module reads. Built only by the check pass in
//! [`super::check`], from the file shapes in [`super::file`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

/// Which way a run goes. Failback is the same engine with source and target swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Failover,
    Failback,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Failover => "failover",
            Direction::Failback => "failback",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Dr,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Dr => "dr",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checked plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub path: PathBuf,
    pub name: String,
    pub description: Option<String>,
    /// `sha256:<hex>` of the file's bytes as written (before secrets are substituted, so rotating
    /// a password does not make `--resume` refuse the log).
    pub fingerprint: String,
    pub primary: ClusterPlan,
    pub dr: ClusterPlan,
    pub replication: Replication,
    pub incident_log_dir: PathBuf,
    pub failover: Vec<Step>,
    pub failback: Vec<Step>,
    /// Every value that came from `${env:…}` or `${file:…}`: redacted from anything kdr writes.
    pub secrets: Secrets,
}

/// Secret values, kept so output can be scrubbed of them; never shown by `Debug`.
#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn new(mut values: Vec<String>) -> Self {
        // Longest first, so a secret that contains another is replaced whole. Very short values
        // would scrub ordinary text ("1", "on") and are not worth the noise.
        values.retain(|v| v.chars().count() >= 4);
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Secrets(values)
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Plan {
    pub fn steps(&self, direction: Direction) -> &[Step] {
        match direction {
            Direction::Failover => &self.failover,
            Direction::Failback => &self.failback,
        }
    }

    pub fn cluster(&self, role: Role) -> &ClusterPlan {
        match role {
            Role::Primary => &self.primary,
            Role::Dr => &self.dr,
        }
    }

    /// Source and target of a direction: failover moves primary → dr, failback dr → primary.
    pub fn source_target(&self, direction: Direction) -> (&ClusterPlan, &ClusterPlan) {
        match direction {
            Direction::Failover => (&self.primary, &self.dr),
            Direction::Failback => (&self.dr, &self.primary),
        }
    }

    /// Whether any step of the direction talks to Kafka (plans of only `exec`/`pause` never do).
    pub fn needs_clusters(&self, direction: Direction) -> bool {
        self.steps(direction)
            .iter()
            .any(|s| s.kind.needs_clusters())
    }
}

#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub role: Role,
    pub bootstrap_servers: String,
    pub mm2_alias: String,
    pub client: Vec<ClientSetting>,
}

/// A librdkafka property. `shown` is what may be displayed or logged: the text as written in the
/// plan, which for a secret is its `${env:…}` reference, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSetting {
    pub key: String,
    pub value: String,
    pub secret: bool,
    pub shown: String,
}

impl fmt::Debug for ClientSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.shown)
    }
}

#[derive(Debug, Clone)]
pub struct Replication {
    pub policy: PolicyKind,
    pub separator: String,
    pub internal_separator: bool,
    pub offset_syncs_location: OffsetSyncsLocation,
    pub topics: Vec<Selector>,
    pub groups: Vec<Selector>,
}

impl Replication {
    /// MM2's replication policy for a flow whose source has `source_alias` (Identity needs it
    /// to answer `topic_source`).
    pub fn mm2_policy(&self, source_alias: &str) -> crate::mm2::ReplicationPolicy {
        match self.policy {
            PolicyKind::Default => crate::mm2::ReplicationPolicy::Default {
                separator: self.separator.clone(),
                internal_separator: self.internal_separator,
            },
            PolicyKind::Identity => crate::mm2::ReplicationPolicy::Identity {
                separator: self.separator.clone(),
                internal_separator: self.internal_separator,
                source_cluster_alias: Some(source_alias.to_owned()),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Default,
    Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSyncsLocation {
    Source,
    Target,
}

/// A topic or group name, or a `re:` pattern that must match the whole name (as MM2's filters do).
#[derive(Debug, Clone)]
pub enum Selector {
    Name(String),
    Pattern { source: String, regex: Regex },
}

impl Selector {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Selector::Name(n) => n == name,
            Selector::Pattern { regex, .. } => regex.is_match(name),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Name(n) => f.write_str(n),
            Selector::Pattern { source, .. } => write!(f, "re:{source}"),
        }
    }
}

pub fn matches_any(selectors: &[Selector], name: &str) -> bool {
    selectors.iter().any(|s| s.matches(name))
}

/// A command for `sh -c`. `shown` is the text as written (secrets as their references).
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub run: String,
    pub shown: String,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based position in its direction.
    pub index: usize,
    pub kind: StepKind,
    /// The timeout as written, if any; see [`Step::timeout`] for the one in force.
    pub timeout_given: Option<Duration>,
    pub line: u64,
}

impl Step {
    /// The bound on the step's own work. Human gates do not count against it: an operator
    /// reading a prompt is not a hung broker.
    pub fn timeout(&self) -> Duration {
        self.timeout_given
            .unwrap_or_else(|| self.kind.default_timeout())
    }

    /// The timeout in force, with `(default)` when the plan did not say.
    pub fn timeout_text(&self) -> String {
        match self.timeout_given {
            Some(t) => humantime::format_duration(t).to_string(),
            None => format!(
                "{} (default)",
                humantime::format_duration(self.kind.default_timeout())
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Declare(Declare),
    QuiesceProducers(QuiesceProducers),
    WaitReplication(WaitReplication),
    Repoint(Repoint),
    TranslateOffsets(TranslateOffsets),
    Validate(Validate),
    Exec(Exec),
    Pause(Pause),
    CheckReverseReplication(CheckReverseReplication),
    Notify(Notify),
}

#[derive(Debug, Clone)]
pub struct Notify {
    pub url: WebhookUrl,
    /// The message as written; None for the default one.
    pub text: Option<String>,
    /// A message that cannot be delivered fails the step (else it is logged and the run goes on).
    pub required: bool,
}

/// A checked `http(s)://` URL. `shown` is the text as written, which for a URL from the
/// environment is its `${env:…}` reference: show and log that, never `value`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub value: String,
    pub shown: String,
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

#[derive(Debug, Clone)]
pub struct CheckReverseReplication {
    pub max_heartbeat_age: Duration,
    pub max_checkpoint_age: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Declare {
    pub confirm: Confirm,
    /// A failback's decision about the records only the old primary saw; `None` when the plan
    /// does not say (then a failback that finds such records stops before repointing).
    pub stranded: Option<Stranded>,
}

/// What a failback does with the stranded records: those the old primary took after what DR
/// had received when the failover accepted its loss. No default: the plan says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stranded {
    /// Write every record to a file under the incident directory, then skip them.
    Export,
    /// Move the home groups past them (never backwards, never an active group).
    Skip,
    /// Leave them to the consumers at home, recorded as the operator's decision.
    Consume,
}

impl Stranded {
    pub fn as_str(self) -> &'static str {
        match self {
            Stranded::Export => "export",
            Stranded::Skip => "skip",
            Stranded::Consume => "consume",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    PlanName,
    Yes,
}

#[derive(Debug, Clone)]
pub struct QuiesceProducers {
    pub run: Option<Command>,
    pub idle_for: Duration,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct WaitReplication {
    pub max_lag_records: u64,
    pub on_timeout: OnTimeout,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    Abort,
    AcceptRpo,
}

#[derive(Debug, Clone)]
pub struct Repoint {
    pub run: Option<Command>,
    pub write_file: Option<WriteFile>,
    pub verify_writes_within: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct WriteFile {
    pub path: PathBuf,
    pub content: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Groups {
    /// The plan's `replication.groups`.
    All,
    List(Vec<Selector>),
}

#[derive(Debug, Clone)]
pub struct TranslateOffsets {
    pub groups: Groups,
    pub allow_rewind: bool,
    pub on_missing_checkpoint: MissingCheckpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingCheckpoint {
    Skip,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Validate {
    pub within: Duration,
    pub groups: Groups,
    pub require_producers: bool,
}

#[derive(Debug, Clone)]
pub struct Exec {
    pub run: Command,
    pub idempotent: bool,
    pub kill_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Pause {
    pub message: String,
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Declare(_) => "declare",
            StepKind::QuiesceProducers(_) => "quiesce_producers",
            StepKind::WaitReplication(_) => "wait_replication",
            StepKind::Repoint(_) => "repoint",
            StepKind::TranslateOffsets(_) => "translate_offsets",
            StepKind::Validate(_) => "validate",
            StepKind::Exec(_) => "exec",
            StepKind::Pause(_) => "pause",
            StepKind::CheckReverseReplication(_) => "check_reverse_replication",
            StepKind::Notify(_) => "notify",
        }
    }

    pub fn needs_clusters(&self) -> bool {
        !matches!(
            self,
            StepKind::Exec(_) | StepKind::Pause(_) | StepKind::Notify(_)
        )
    }

    /// A step may be run again after an interruption without asking: it only reads, or it
    /// converges to the same state.
    pub fn idempotent(&self) -> bool {
        match self {
            StepKind::Exec(e) => e.idempotent,
            StepKind::QuiesceProducers(q) => q.run.is_none(),
            StepKind::Repoint(r) => r.run.is_none(),
            _ => true,
        }
    }

    pub fn default_timeout(&self) -> Duration {
        const MINUTE: Duration = Duration::from_secs(60);
        match self {
            StepKind::Declare(_) => 30 * MINUTE,
            StepKind::QuiesceProducers(q) => q.idle_for + 2 * MINUTE,
            StepKind::WaitReplication(_) => 5 * MINUTE,
            StepKind::Repoint(r) => r.verify_writes_within.unwrap_or_default() + 5 * MINUTE,
            StepKind::TranslateOffsets(_) => 2 * MINUTE,
            StepKind::Validate(v) => v.within + MINUTE,
            StepKind::Exec(_) => 10 * MINUTE,
            StepKind::Pause(_) => 24 * 60 * MINUTE,
            StepKind::CheckReverseReplication(_) => MINUTE,
            StepKind::Notify(_) => Duration::from_secs(5),
        }
    }
}
