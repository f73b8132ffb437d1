//! The check pass: the file's sections, deserialized one by one from the node tree, turned into
//! the domain types of [`super::types`], with every problem recorded (not only the first).

mod steps;

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use sha2::{Digest, Sha256};

use super::error::Problem;
use super::file::{self, DurationText, Located};
use super::node::{self, DeError, Node, from_node, join_index, join_key};
use super::types::*;

use steps::check_steps;

/// Where the check records what is wrong. A problem about a placeholder (a value whose
/// `${env:…}` is unset under `--allow-missing-env`) says nothing about the value it stands for,
/// so it is dropped; a problem with the plan's shape (a wrong type, a missing key) is kept.
#[derive(Debug, Default)]
pub(super) struct Problems {
    list: Vec<Problem>,
    placeholders: Vec<(u64, u64)>,
}

impl Problems {
    pub(super) fn new(list: Vec<Problem>, placeholders: Vec<(u64, u64)>) -> Self {
        Problems { list, placeholders }
    }

    pub(super) fn push(&mut self, problem: Problem) {
        if !self.placeholders.contains(&(problem.line, problem.column)) {
            self.list.push(problem);
        }
    }

    /// A problem that holds whatever a variable is set to: never dropped.
    fn push_shape(&mut self, problem: Problem) {
        self.list.push(problem);
    }

    fn is_placeholder<T>(&self, located: &Located<T>) -> bool {
        self.placeholders.contains(&(located.line, located.column))
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    pub(super) fn into_vec(self) -> Vec<Problem> {
        self.list
    }
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
    problems: &mut Problems,
) -> Option<T> {
    match from_node::<T>(node, path) {
        Ok(value) => Some(value),
        Err(e) => {
            problems.push_shape(problem_from(e));
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

pub(super) fn check(path: &Path, text: &str, root: &Node, problems: &mut Problems) -> Option<Plan> {
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

fn check_name(n: &Located<String>, path: &str, what: &str, problems: &mut Problems) {
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

fn check_clusters(node: &Node, problems: &mut Problems) -> Option<(ClusterPlan, ClusterPlan)> {
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
    problems: &mut Problems,
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
    problems: &mut Problems,
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

fn check_replication(r: file::ReplicationFile, problems: &mut Problems) -> Option<Replication> {
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

fn duration(d: &DurationText, path: &str, problems: &mut Problems) -> Option<Duration> {
    if problems.is_placeholder(&d.0) {
        // Any duration will do: the plan is only being linted, never run.
        return Some(Duration::from_secs(1));
    }
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
    problems: &mut Problems,
) -> Option<Option<Duration>> {
    match d {
        None => Some(None),
        Some(d) => duration(d, &join_key(path, key), problems).map(Some),
    }
}

fn command(c: &Located<String>, path: &str, problems: &mut Problems) -> Option<Command> {
    if c.value.trim().is_empty() {
        problems.push(at(c, path, "expected a command, found an empty string"));
        return None;
    }
    Some(Command {
        run: c.value.clone(),
        shown: c.raw.clone().unwrap_or_else(|| c.value.clone()),
    })
}

fn groups(g: &Option<file::GroupsFile>, path: &str, problems: &mut Problems) -> Groups {
    match g {
        None | Some(file::GroupsFile::All(_)) => Groups::All,
        Some(file::GroupsFile::List(items)) => Groups::List(check_selectors(items, path, problems)),
    }
}
