//! The plan: a YAML runbook read into checked domain types.
//!
//! Two stages, as in nextest and just: the file shape (`file`, plain serde) and the checked
//! [`Plan`], with a pass between that reports every problem at once with its file, line:column
//! and key path. Loading does no I/O beyond reading the plan and the secrets it names.

pub mod error;
pub mod file;
pub mod node;
mod subst;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use sha2::{Digest, Sha256};

pub use error::{PlanError, Problem};
use file::{DurationText, Located};
use node::{DeError, Node, from_node, join_index, join_key};
pub use subst::{Lookup, SystemLookup};

/// Plans larger than this are refused before parsing: a runbook is a page, not a data set.
pub const MAX_PLAN_BYTES: usize = 1024 * 1024;

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
}

#[derive(Debug, Clone)]
pub struct CheckReverseReplication {
    pub max_heartbeat_age: Duration,
    pub max_checkpoint_age: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Declare {
    pub confirm: Confirm,
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
        }
    }

    pub fn needs_clusters(&self) -> bool {
        !matches!(self, StepKind::Exec(_) | StepKind::Pause(_))
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
        }
    }
}

/// Load and check a plan file, reporting every problem found.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let bytes = std::fs::read(path).map_err(|source| PlanError::Read {
        file: path.to_owned(),
        source,
    })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    load_bytes(path, &bytes, base_dir, &SystemLookup)
}

/// Check plan text that is already in memory (`path` is only used in messages).
pub fn load_bytes(
    path: &Path,
    bytes: &[u8],
    base_dir: &Path,
    lookup: &dyn Lookup,
) -> Result<Plan, PlanError> {
    let invalid = |text: String, problems: Vec<Problem>| PlanError::Invalid {
        file: path.to_owned(),
        text,
        problems,
    };
    if bytes.len() > MAX_PLAN_BYTES {
        return Err(invalid(
            String::new(),
            vec![Problem::new(
                0,
                0,
                "",
                format!(
                    "the file is {} bytes; a plan may be at most {MAX_PLAN_BYTES} bytes",
                    bytes.len()
                ),
            )],
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            let column = String::from_utf8_lossy(&good[line_start..]).chars().count() as u64 + 1;
            return Err(invalid(
                String::from_utf8_lossy(bytes).into_owned(),
                vec![Problem::new(
                    line,
                    column,
                    "",
                    "the file is not UTF-8 text (invalid byte here)",
                )],
            ));
        }
    };
    let mut root = match parse_yaml(&text) {
        Ok(root) => root,
        Err(problem) => return Err(invalid(text, vec![problem])),
    };
    let mut problems = Vec::new();
    let secrets = subst::resolve(&mut root, base_dir, lookup, &mut problems);
    let plan = check(path, &text, &root, &mut problems).map(|plan| Plan {
        secrets: Secrets::new(secrets),
        ..plan
    });
    problems.sort_by_key(|p| (p.line, p.column));
    problems.dedup();
    match plan {
        Some(plan) if problems.is_empty() => Ok(plan),
        _ => {
            if problems.is_empty() {
                problems.push(Problem::new(0, 0, "", "the plan is incomplete"));
            }
            Err(invalid(text, problems))
        }
    }
}

fn parse_yaml(text: &str) -> Result<Node, Problem> {
    if text.trim().is_empty() {
        return Err(Problem::new(
            1,
            1,
            "",
            "the file is empty: expected a plan (run `kdr init` for a starter)",
        ));
    }
    // A plan is a page: YAML aliases may repeat a few blocks, never expand a "billion laughs".
    let mut options = serde_saphyr::Options::default();
    options.alias_limits.max_total_replayed_events = 10_000;
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = e.to_string();
        // The library's message may repeat the position or a snippet; keep the first line.
        let first = message.lines().next().unwrap_or("invalid YAML");
        // Our own header says where; drop the library's `error: line 6 column 45: `.
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let first = match first.split_once(": ") {
            Some((head, rest)) if head.starts_with("line ") && head.contains(" column ") => rest,
            _ => first,
        }
        .to_owned();
        Problem::new(line, column, "", format!("invalid YAML: {first}"))
    })
}

fn problem_from(e: DeError) -> Problem {
    Problem::new(e.line, e.column, e.path, e.message)
}

fn at<T>(located: &Located<T>, path: &str, message: impl Into<String>) -> Problem {
    Problem::new(located.line, located.column, path, message)
}

/// Deserialize a section from its node, recording a problem instead of failing.
fn section<'a, T: serde::Deserialize<'a>>(
    node: &'a Node,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match from_node::<T>(node, path) {
        Ok(value) => Some(value),
        Err(e) => {
            problems.push(problem_from(e));
            None
        }
    }
}

/// Secret-looking client properties must not be written into the plan in clear.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    [
        "password",
        "secret",
        "sasl.jaas.config",
        "token",
        "ssl.key.pem",
        "credentials",
    ]
    .iter()
    .any(|s| key.contains(s))
}

fn check(path: &Path, text: &str, root: &Node, problems: &mut Vec<Problem>) -> Option<Plan> {
    let Some(entries) = root.as_map() else {
        problems.push(Problem::new(
            root.line,
            root.column,
            "",
            format!(
                "expected the plan to be a map of keys (version, name, clusters, …), found {}",
                root.describe()
            ),
        ));
        return None;
    };
    let mut version = None;
    let mut name = None;
    let mut description = None;
    let mut clusters = None;
    let mut replication = None;
    let mut incident_dir = None;
    let mut failover = None;
    let mut failback = None;
    for (key, value) in entries {
        let Some(k) = key.key_text() else {
            problems.push(Problem::new(
                key.line,
                key.column,
                "",
                format!("expected a text key, found {}", key.describe()),
            ));
            continue;
        };
        let p = join_key("", k);
        match k {
            "version" => version = section::<Located<u32>>(value, &p, problems),
            "name" => name = section::<Located<String>>(value, &p, problems),
            "description" => description = section::<Option<String>>(value, &p, problems).flatten(),
            "clusters" => clusters = check_clusters(value, problems),
            "replication" => replication = section::<file::ReplicationFile>(value, &p, problems),
            "incident_log" => {
                incident_dir = section::<file::IncidentLogFile>(value, &p, problems).map(|f| f.dir)
            }
            "failover" => failover = Some(check_steps(value, "failover", problems)),
            "failback" => failback = Some(check_steps(value, "failback", problems)),
            other => {
                let mut problem = Problem::new(
                    key.line,
                    key.column,
                    other,
                    format!("unknown key `{other}`"),
                );
                if let Some(close) = node::closest(other, file::TOP_LEVEL_KEYS) {
                    problem
                        .message
                        .push_str(&format!("; did you mean `{close}`?"));
                }
                problems.push(problem.with_hint(format!(
                    "a plan's top-level keys are: {}",
                    file::TOP_LEVEL_KEYS.join(", ")
                )));
            }
        }
    }
    let present = |k: &str| entries.iter().any(|(key, _)| key.key_text() == Some(k));
    for required in [
        "version",
        "name",
        "clusters",
        "replication",
        "failover",
        "failback",
    ] {
        if !present(required) {
            problems.push(Problem::new(
                root.line,
                root.column,
                "",
                format!("missing required key `{required}`"),
            ));
        }
    }

    if let Some(v) = &version
        && v.value != 1
    {
        problems.push(at(
            v,
            "version",
            format!(
                "unsupported plan version {}: this kdr reads version 1",
                v.value
            ),
        ));
    }
    if let Some(n) = &name {
        check_name(n, "name", "plan name", problems);
    }
    let replication = replication.and_then(|r| check_replication(r, problems));
    let incident_log_dir = match incident_dir {
        Some(d) if d.value.trim().is_empty() => {
            problems.push(at(
                &d,
                "incident_log.dir",
                "expected a directory, found an empty string",
            ));
            None
        }
        Some(d) => Some(PathBuf::from(d.value)),
        None => Some(PathBuf::from("incidents")),
    };
    let fingerprint = {
        let digest = Sha256::digest(text.as_bytes());
        format!(
            "sha256:{}",
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    };
    let (clusters, replication, failover, failback) =
        (clusters?, replication?, failover?, failback?);
    let (primary, dr) = clusters;
    Some(Plan {
        path: path.to_owned(),
        name: name?.value,
        description,
        fingerprint,
        primary,
        dr,
        replication,
        incident_log_dir: incident_log_dir?,
        failover,
        failback,
        secrets: Secrets::default(),
    })
    .filter(|_| version.is_some())
}

fn check_name(n: &Located<String>, path: &str, what: &str, problems: &mut Vec<Problem>) {
    let v = &n.value;
    if v.is_empty() {
        problems.push(at(
            n,
            path,
            format!("expected a {what}, found an empty string"),
        ));
    } else if v.len() > 100
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || v.starts_with('.')
    {
        problems.push(at(
            n,
            path,
            format!("invalid {what} `{v}`: use letters, digits, `-`, `_` and `.` (at most 100, not starting with `.`)"),
        ));
    }
}

fn check_clusters(node: &Node, problems: &mut Vec<Problem>) -> Option<(ClusterPlan, ClusterPlan)> {
    let Some(entries) = node.as_map() else {
        problems.push(Problem::new(
            node.line,
            node.column,
            "clusters",
            format!(
                "expected a map with `primary` and `dr`, found {}",
                node.describe()
            ),
        ));
        return None;
    };
    let mut primary = None;
    let mut dr = None;
    for (key, value) in entries {
        let k = key.key_text().unwrap_or("?");
        let p = join_key("clusters", k);
        match k {
            "primary" => {
                primary = section::<file::ClusterFile>(value, &p, problems)
                    .and_then(|c| check_cluster(c, Role::Primary, &p, problems))
            }
            "dr" => {
                dr = section::<file::ClusterFile>(value, &p, problems)
                    .and_then(|c| check_cluster(c, Role::Dr, &p, problems))
            }
            other => {
                let mut message = format!("unknown cluster `{other}`");
                if let Some(close) = node::closest(other, file::CLUSTER_KEYS) {
                    message.push_str(&format!("; did you mean `{close}`?"));
                }
                problems.push(
                    Problem::new(key.line, key.column, p, message)
                        .with_hint("a plan has exactly two clusters: `primary` and `dr`"),
                );
            }
        }
    }
    if let (Some(p), Some(d)) = (&primary, &dr)
        && p.mm2_alias == d.mm2_alias
    {
        let (line, column) = entries
            .iter()
            .filter(|(k, _)| k.key_text() == Some("dr"))
            .flat_map(|(_, v)| v.as_map().unwrap_or_default())
            .find(|(k, _)| k.key_text() == Some("mm2_alias"))
            .map_or((node.line, node.column), |(_, v)| (v.line, v.column));
        problems.push(Problem::new(
            line,
            column,
            "clusters.dr.mm2_alias",
            format!(
                "both clusters have the MirrorMaker 2 alias `{}`: aliases must differ",
                d.mm2_alias
            ),
        ));
    }
    for (required, found) in [("primary", primary.is_some()), ("dr", dr.is_some())] {
        if !found && !entries.iter().any(|(k, _)| k.key_text() == Some(required)) {
            problems.push(Problem::new(
                node.line,
                node.column,
                "clusters",
                format!("missing required key `{required}`"),
            ));
        }
    }
    Some((primary?, dr?))
}

fn check_cluster(
    c: file::ClusterFile,
    role: Role,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<ClusterPlan> {
    let before = problems.len();
    let bs_path = join_key(path, "bootstrap_servers");
    let servers: Vec<&str> = c
        .bootstrap_servers
        .value
        .split(',')
        .map(str::trim)
        .collect();
    if c.bootstrap_servers.value.trim().is_empty() {
        problems.push(at(
            &c.bootstrap_servers,
            &bs_path,
            "expected `host:port[,host:port…]`, found an empty string",
        ));
    } else {
        for server in &servers {
            let ok = server.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                let shown = if c.bootstrap_servers.is_secret() {
                    "(from a substitution)".to_owned()
                } else {
                    format!("`{server}`")
                };
                problems.push(at(
                    &c.bootstrap_servers,
                    &bs_path,
                    format!("expected `host:port`, found {shown}"),
                ));
            }
        }
    }
    let alias = match &c.mm2_alias {
        Some(a) => {
            check_name(
                a,
                &join_key(path, "mm2_alias"),
                "MirrorMaker 2 alias",
                problems,
            );
            a.value.clone()
        }
        None => role.as_str().to_owned(),
    };
    let mut client = Vec::new();
    for (key, value) in c.client.unwrap_or_default() {
        let p = join_key(&join_key(path, "client"), &key);
        match key.as_str() {
            "bootstrap.servers" | "metadata.broker.list" => {
                problems.push(
                    at(
                        &value,
                        &p,
                        format!("`{key}` is set by the cluster's `bootstrap_servers`"),
                    )
                    .with_hint(format!("move it to {bs_path}")),
                );
                continue;
            }
            "group.id" | "enable.auto.commit" => {
                problems.push(at(
                    &value,
                    &p,
                    format!(
                        "`{key}` is chosen by kdr for each operation and cannot be set in the plan"
                    ),
                ));
                continue;
            }
            _ => {}
        }
        let secret = value.is_secret() || is_secret_key(&key);
        if is_secret_key(&key) && !value.is_secret() {
            problems.push(
                at(&value, &p, format!("`{key}` is a secret and is written in the plan in clear"))
                    .with_hint(format!("use `{key}: \"${{env:NAME}}\"` or `\"${{file:PATH}}\"`; the plan text is logged and shared")),
            );
        }
        client.push(ClientSetting {
            shown: value.raw.clone().unwrap_or_else(|| {
                if secret {
                    "***".to_owned()
                } else {
                    value.value.clone()
                }
            }),
            key,
            value: value.value,
            secret,
        });
    }
    (problems.len() == before).then(|| ClusterPlan {
        role,
        bootstrap_servers: servers.join(","),
        mm2_alias: alias,
        client,
    })
}

fn check_selectors(
    items: &[Located<String>],
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Selector> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = join_index(path, i);
        let v = item.value.trim();
        if v.is_empty() {
            problems.push(at(
                item,
                &p,
                "expected a name or `re:<regex>`, found an empty string",
            ));
        } else if let Some(pattern) = v.strip_prefix("re:") {
            match Regex::new(&format!("^(?:{pattern})$")) {
                Ok(regex) => out.push(Selector::Pattern {
                    source: pattern.to_owned(),
                    regex,
                }),
                Err(e) => {
                    let detail = e.to_string();
                    let last = detail
                        .lines()
                        .last()
                        .unwrap_or("invalid")
                        .trim()
                        .trim_start_matches("error: ");
                    problems.push(at(item, &p, format!("invalid regex `{pattern}`: {last}")));
                }
            }
        } else {
            out.push(Selector::Name(v.to_owned()));
        }
    }
    out
}

fn check_replication(r: file::ReplicationFile, problems: &mut Vec<Problem>) -> Option<Replication> {
    let before = problems.len();
    let separator = match &r.separator {
        Some(s) if s.value.is_empty() => {
            problems.push(at(
                s,
                "replication.separator",
                "expected a separator such as `.`, found an empty string",
            ));
            String::new()
        }
        Some(s) => s.value.clone(),
        None => ".".to_owned(),
    };
    if r.topics.is_empty() {
        problems.push(Problem::new(
            0,
            0,
            "replication.topics",
            "expected at least one topic name or `re:` pattern",
        ));
    }
    let topics = check_selectors(&r.topics, "replication.topics", problems);
    let groups = check_selectors(
        r.groups.as_deref().unwrap_or_default(),
        "replication.groups",
        problems,
    );
    (problems.len() == before).then(|| Replication {
        policy: match r.policy {
            Some(file::PolicyFile::Identity) => PolicyKind::Identity,
            _ => PolicyKind::Default,
        },
        separator,
        internal_separator: r.internal_separator.unwrap_or(true),
        offset_syncs_location: match r.offset_syncs_location {
            Some(file::OffsetSyncsLocationFile::Target) => OffsetSyncsLocation::Target,
            _ => OffsetSyncsLocation::Source,
        },
        topics,
        groups,
    })
}

fn duration(d: &DurationText, path: &str, problems: &mut Vec<Problem>) -> Option<Duration> {
    let text = d.0.value.trim();
    match humantime::parse_duration(text) {
        Ok(v) if v.is_zero() => {
            problems.push(at(
                &d.0,
                path,
                format!("expected a duration greater than zero, found `{text}`"),
            ));
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(
                at(&d.0, path, format!("invalid duration `{text}`: {e}"))
                    .with_hint("write durations like `30s`, `2m` or `1h 30m`"),
            );
            None
        }
    }
}

fn opt_duration(
    d: &Option<DurationText>,
    path: &str,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<Option<Duration>> {
    match d {
        None => Some(None),
        Some(d) => duration(d, &join_key(path, key), problems).map(Some),
    }
}

fn command(c: &Located<String>, path: &str, problems: &mut Vec<Problem>) -> Option<Command> {
    if c.value.trim().is_empty() {
        problems.push(at(c, path, "expected a command, found an empty string"));
        return None;
    }
    Some(Command {
        run: c.value.clone(),
        shown: c.raw.clone().unwrap_or_else(|| c.value.clone()),
    })
}

fn groups(g: &Option<file::GroupsFile>, path: &str, problems: &mut Vec<Problem>) -> Groups {
    match g {
        None | Some(file::GroupsFile::All(_)) => Groups::All,
        Some(file::GroupsFile::List(items)) => Groups::List(check_selectors(items, path, problems)),
    }
}

fn check_steps(node: &Node, direction: &str, problems: &mut Vec<Problem>) -> Vec<Step> {
    let Some(items) = node.as_seq() else {
        problems.push(Problem::new(
            node.line,
            node.column,
            direction,
            format!("expected a list of steps, found {}", node.describe()),
        ));
        return Vec::new();
    };
    if items.is_empty() {
        problems.push(
            Problem::new(
                node.line,
                node.column,
                direction,
                format!("expected at least one step in `{direction}`"),
            )
            .with_hint(format!("kinds: {}", file::STEP_KINDS.join(", "))),
        );
    }
    let mut steps = Vec::new();
    let mut declares = 0;
    for (i, item) in items.iter().enumerate() {
        let p = join_index(direction, i);
        let Some(raw) = section::<file::StepFile>(item, &p, problems) else {
            continue;
        };
        if let Some(step) = check_step(raw, &p, i + 1, item.line, problems) {
            if matches!(step.kind, StepKind::Declare(_)) {
                declares += 1;
                if declares > 1 {
                    problems.push(Problem::new(
                        item.line,
                        item.column,
                        &p,
                        format!("`{direction}` declares twice: a run has one declaration"),
                    ));
                }
            }
            steps.push(step);
        }
    }
    steps
}

fn check_step(
    raw: file::StepFile,
    path: &str,
    index: usize,
    line: u64,
    problems: &mut Vec<Problem>,
) -> Option<Step> {
    use file::StepFile as F;
    let before = problems.len();
    let kind_path = |k: &str| join_key(path, k);
    let (kind, timeout) = match raw {
        F::Declare(d) => {
            let p = kind_path("declare");
            let t = opt_duration(&d.timeout, &p, "timeout", problems);
            (
                Some(StepKind::Declare(Declare {
                    confirm: match d.confirm {
                        Some(file::ConfirmFile::Yes) => Confirm::Yes,
                        _ => Confirm::PlanName,
                    },
                })),
                t,
            )
        }
        F::QuiesceProducers(q) => {
            let p = kind_path("quiesce_producers");
            let idle_for = duration(&q.idle_for, &join_key(&p, "idle_for"), problems);
            let poll = opt_duration(&q.poll_interval, &p, "poll_interval", problems);
            let t = opt_duration(&q.timeout, &p, "timeout", problems);
            let run = q
                .run
                .as_ref()
                .and_then(|c| command(c, &join_key(&p, "run"), problems));
            if let (Some(idle), Some(Some(timeout)), Some(t)) = (idle_for, t, &q.timeout)
                && idle >= timeout
            {
                problems.push(at(
                    &t.0,
                    &join_key(&p, "timeout"),
                    format!(
                        "timeout {} must be longer than idle_for {}",
                        humantime::format_duration(timeout),
                        humantime::format_duration(idle)
                    ),
                ));
            }
            let kind = idle_for.zip(poll).map(|(idle_for, poll)| {
                StepKind::QuiesceProducers(QuiesceProducers {
                    run,
                    idle_for,
                    poll_interval: poll.unwrap_or(Duration::from_secs(1)),
                })
            });
            (kind, t)
        }
        F::WaitReplication(w) => {
            let p = kind_path("wait_replication");
            let poll = opt_duration(&w.poll_interval, &p, "poll_interval", problems);
            let t = duration(&w.timeout, &join_key(&p, "timeout"), problems);
            let kind = poll.map(|poll| {
                StepKind::WaitReplication(WaitReplication {
                    max_lag_records: w.max_lag_records.unwrap_or(0),
                    on_timeout: match w.on_timeout {
                        file::OnTimeoutFile::Abort => OnTimeout::Abort,
                        file::OnTimeoutFile::AcceptRpo => OnTimeout::AcceptRpo,
                    },
                    poll_interval: poll.unwrap_or(Duration::from_secs(1)),
                })
            });
            (kind, t.map(Some))
        }
        F::Repoint(r) => {
            let p = kind_path("repoint");
            let t = opt_duration(&r.timeout, &p, "timeout", problems);
            let run = r
                .run
                .as_ref()
                .and_then(|c| command(c, &join_key(&p, "run"), problems));
            let write_file = r.write_file.as_ref().map(|w| {
                if w.path.value.trim().is_empty() {
                    problems.push(at(
                        &w.path,
                        &join_key(&join_key(&p, "write_file"), "path"),
                        "expected a file path, found an empty string",
                    ));
                }
                WriteFile {
                    path: PathBuf::from(&w.path.value),
                    content: w.content.as_ref().map(|c| c.value.clone()),
                }
            });
            if r.run.is_none() && r.write_file.is_none() {
                problems.push(
                    Problem::new(
                        line,
                        0,
                        &p,
                        "expected `run` or `write_file`: a repoint must change something",
                    )
                    .with_hint("e.g. `repoint: { run: \"./set-bootstrap.sh dr\" }`"),
                );
            }
            let verify = match &r.verify_writes {
                Some(v) => duration(
                    &v.within,
                    &join_key(&join_key(&p, "verify_writes"), "within"),
                    problems,
                )
                .map(Some),
                None => Some(None),
            };
            let kind = verify.map(|verify_writes_within| {
                StepKind::Repoint(Repoint {
                    run,
                    write_file,
                    verify_writes_within,
                })
            });
            (kind, t)
        }
        F::TranslateOffsets(o) => {
            let p = kind_path("translate_offsets");
            let t = opt_duration(&o.timeout, &p, "timeout", problems);
            let groups = groups(&o.groups, &join_key(&p, "groups"), problems);
            (
                Some(StepKind::TranslateOffsets(TranslateOffsets {
                    groups,
                    allow_rewind: o.allow_rewind.unwrap_or(false),
                    on_missing_checkpoint: match o.on_missing_checkpoint {
                        Some(file::MissingCheckpointFile::Fail) => MissingCheckpoint::Fail,
                        _ => MissingCheckpoint::Skip,
                    },
                })),
                t,
            )
        }
        F::Validate(v) => {
            let p = kind_path("validate");
            let t = opt_duration(&v.timeout, &p, "timeout", problems);
            let within = duration(&v.within, &join_key(&p, "within"), problems);
            let groups = groups(&v.groups, &join_key(&p, "groups"), problems);
            (
                within.map(|within| {
                    StepKind::Validate(Validate {
                        within,
                        groups,
                        require_producers: v.require_producers.unwrap_or(false),
                    })
                }),
                t,
            )
        }
        F::Exec(e) => {
            let p = kind_path("exec");
            let t = opt_duration(&e.timeout, &p, "timeout", problems);
            let grace = opt_duration(&e.kill_grace, &p, "kill_grace", problems);
            let run = command(&e.run, &join_key(&p, "run"), problems);
            let kind = run.zip(grace).map(|(run, grace)| {
                StepKind::Exec(Exec {
                    run,
                    idempotent: e.idempotent.unwrap_or(false),
                    kill_grace: grace.unwrap_or(Duration::from_secs(5)),
                })
            });
            (kind, t)
        }
        F::CheckReverseReplication(c) => {
            let p = kind_path("check_reverse_replication");
            let t = opt_duration(&c.timeout, &p, "timeout", problems);
            let hb = opt_duration(&c.max_heartbeat_age, &p, "max_heartbeat_age", problems);
            let cp = opt_duration(&c.max_checkpoint_age, &p, "max_checkpoint_age", problems);
            let kind = hb.zip(cp).map(|(hb, cp)| {
                StepKind::CheckReverseReplication(CheckReverseReplication {
                    max_heartbeat_age: hb.unwrap_or(Duration::from_secs(30)),
                    max_checkpoint_age: cp,
                })
            });
            (kind, t)
        }
        F::Pause(pause) => {
            let p = kind_path("pause");
            let t = opt_duration(&pause.timeout, &p, "timeout", problems);
            if pause.message.value.trim().is_empty() {
                problems.push(at(
                    &pause.message,
                    &join_key(&p, "message"),
                    "expected a message for the operator, found an empty string",
                ));
            }
            (
                Some(StepKind::Pause(Pause {
                    message: pause.message.raw.clone().unwrap_or(pause.message.value),
                })),
                t,
            )
        }
    };
    let (kind, timeout) = (kind?, timeout?);
    (problems.len() == before).then_some(Step {
        index,
        kind,
        timeout_given: timeout,
        line,
    })
}

#[cfg(test)]
mod tests;
