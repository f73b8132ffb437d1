//! The plan file as written: serde shapes only, checked into domain types by `check`.
//!
//! Every struct denies unknown keys (a silently ignored `timout:` is an outage), and no shape uses
//! `untagged` or `flatten`, which would blur error messages. Values that need a location for a
//! later check (durations, regexes, commands) are [`Located`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;

pub use super::node::Located;

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// Text in humantime form: `30s`, `2m`, `1h 30m`.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct DurationText(pub Located<String>);

impl JsonSchema for DurationText {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration such as `30s`, `2m` or `1h 30m`.",
            "pattern": "^\\s*[0-9]+\\s*[a-zµ]+(\\s*[0-9]+\\s*[a-zµ]+)*\\s*$",
        })
    }
}

/// The whole file. `load` reads it section by section so one mistake does not hide another;
/// this type also gives `kdr plan schema` its JSON Schema.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Format version of this file; must be 1.
    pub version: Located<u32>,
    /// The plan's name: used in the incident-log file name, the lock and the declare gate.
    pub name: Located<String>,
    /// Free text shown by `kdr plan show`.
    #[serde(default)]
    pub description: Option<String>,
    pub clusters: ClustersFile,
    pub replication: ReplicationFile,
    #[serde(default)]
    pub incident_log: Option<IncidentLogFile>,
    /// Steps run, in order, by `kdr failover`.
    pub failover: Vec<StepFile>,
    /// Steps run, in order, by `kdr failback`.
    pub failback: Vec<StepFile>,
}

/// Section names at the top level, in the order `plan show` and errors use.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "clusters",
    "replication",
    "incident_log",
    "failover",
    "failback",
];

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClustersFile {
    pub primary: ClusterFile,
    pub dr: ClusterFile,
}

pub const CLUSTER_KEYS: &[&str] = &["primary", "dr"];

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: Located<String>,
    /// The cluster's alias in MirrorMaker 2's configuration (defaults to `primary` / `dr`).
    #[serde(default)]
    pub mm2_alias: Option<Located<String>>,
    /// librdkafka client properties (`security.protocol`, `sasl.username`, …). Put secrets in
    /// `${env:NAME}` or `${file:PATH}`, never in the plan text.
    #[serde(default)]
    pub client: Option<BTreeMap<String, Located<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicationFile {
    /// MirrorMaker 2's replication policy: `default` renames topics (`primary.orders`),
    /// `identity` keeps their names.
    #[serde(default)]
    pub policy: Option<PolicyFile>,
    /// `replication.policy.separator` (default `.`).
    #[serde(default)]
    pub separator: Option<Located<String>>,
    /// `replication.policy.internal.topic.separator.enabled` (default true).
    #[serde(default)]
    pub internal_separator: Option<bool>,
    /// `offset-syncs.topic.location` (default `source`).
    #[serde(default)]
    pub offset_syncs_location: Option<OffsetSyncsLocationFile>,
    /// Replicated topics on the source cluster: names, or `re:<regex>` matching whole names.
    pub topics: Vec<Located<String>>,
    /// Consumer groups whose offsets are translated: names, or `re:<regex>`.
    #[serde(default)]
    pub groups: Option<Vec<Located<String>>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PolicyFile {
    Default,
    Identity,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OffsetSyncsLocationFile {
    Source,
    Target,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentLogFile {
    /// Directory for incident logs and the run lock (default `./incidents`, relative to the
    /// working directory).
    pub dir: Located<String>,
}

/// One step: a one-key map naming its kind, with the kind's options.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepFile {
    /// The human gate: records operator, reason and time, probes the primary and takes the RPO
    /// baseline.
    Declare(DeclareFile),
    /// Stop producers on the source (hook), then prove its end offsets stay still.
    QuiesceProducers(QuiesceProducersFile),
    /// Wait until replication lag is within bound, then abort or accept the RPO.
    WaitReplication(WaitReplicationFile),
    /// Repoint clients at the target (DNS, config service, file).
    Repoint(RepointFile),
    /// Commit translated consumer-group offsets on the target from MM2's checkpoints.
    TranslateOffsets(TranslateOffsetsFile),
    /// Check, within a window, that the target is healthy.
    Validate(ValidateFile),
    /// Run a command hook.
    Exec(ExecFile),
    /// A manual checkpoint: wait for the operator.
    Pause(PauseFile),
    /// Prove the replication flow into the target is healthy (before a failback: dr -> primary):
    /// fresh heartbeats, remote topics present, lag, fresh checkpoints for the plan's groups.
    CheckReverseReplication(CheckReverseReplicationFile),
    /// POST a message to a webhook (Slack-compatible `text`, plus the run's state).
    Notify(NotifyFile),
}

pub const STEP_KINDS: &[&str] = &[
    "declare",
    "quiesce_producers",
    "wait_replication",
    "repoint",
    "translate_offsets",
    "validate",
    "exec",
    "pause",
    "check_reverse_replication",
    "notify",
];

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareFile {
    /// What the operator must type to declare: `plan-name` (default) or `yes`.
    #[serde(default)]
    pub confirm: Option<ConfirmFile>,
    /// Failback only: what to do with the records the old primary took that DR never
    /// received (found from the failover's incident log). No default: with such records and
    /// no choice, the failback stops before repointing.
    #[serde(default)]
    pub stranded: Option<Located<StrandedFile>>,
    #[serde(default)]
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StrandedFile {
    /// Write every stranded record to a JSON Lines file under the incident directory, then
    /// skip them as `skip` does.
    Export,
    /// Commit the home groups past the stranded records (never backwards, never a group with
    /// live members).
    Skip,
    /// Leave them for the consumers at home to read, recorded as the operator's decision.
    Consume,
}

/// `plan-name` or `yes`. YAML reads a bare `yes` (and `true`) as a boolean: both mean `yes`,
/// as the README writes it (`declare: { confirm: yes }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmFile {
    PlanName,
    Yes,
}

impl<'de> Deserialize<'de> for ConfirmFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ConfirmFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`plan-name` or `yes`")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ConfirmFile, E> {
                if v {
                    Ok(ConfirmFile::Yes)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Bool(v), &self))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConfirmFile, E> {
                match v {
                    "plan-name" => Ok(ConfirmFile::PlanName),
                    "yes" => Ok(ConfirmFile::Yes),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for ConfirmFile {
    fn schema_name() -> Cow<'static, str> {
        "Confirm".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "What the operator types to declare: `plan-name` (the plan's name) or `yes` (`true` and YAML's bare `yes` mean `yes`).",
            "oneOf": [
                { "enum": ["plan-name", "yes"] },
                { "const": true }
            ]
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuiesceProducersFile {
    /// Command that stops the producers (run with `sh -c`).
    #[serde(default)]
    pub run: Option<Located<String>>,
    /// How long the source's end offsets must stay still to count as quiet.
    pub idle_for: DurationText,
    /// How often end offsets are read (default 1s).
    #[serde(default)]
    pub poll_interval: Option<DurationText>,
    #[serde(default)]
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitReplicationFile {
    /// Largest lag per partition, in records, that counts as caught up (default 0).
    #[serde(default)]
    pub max_lag_records: Option<u64>,
    /// What to do when lag is still over the bound at the timeout. No default: say it.
    pub on_timeout: OnTimeoutFile,
    /// How often lag is measured (default 1s).
    #[serde(default)]
    pub poll_interval: Option<DurationText>,
    /// How long to wait for replication to catch up.
    pub timeout: DurationText,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeoutFile {
    /// Fail the step; nothing after it runs.
    Abort,
    /// Record the remaining lag per partition as accepted data loss and go on.
    AcceptRpo,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepointFile {
    /// Command that repoints clients (DNS, config service …), run with `sh -c`.
    #[serde(default)]
    pub run: Option<Located<String>>,
    /// A file-based indirection: write the target's bootstrap servers into a file.
    #[serde(default)]
    pub write_file: Option<WriteFileFile>,
    /// Prove that producers now write to the target's original (un-prefixed) topics.
    #[serde(default)]
    pub verify_writes: Option<VerifyWritesFile>,
    #[serde(default)]
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileFile {
    pub path: Located<String>,
    /// Text to write; `{bootstrap_servers}` is replaced by the target's servers
    /// (default: just the servers and a newline).
    #[serde(default)]
    pub content: Option<Located<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyWritesFile {
    /// How long to wait for new records on the target's original topics.
    pub within: DurationText,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranslateOffsetsFile {
    /// `all` (the plan's `replication.groups`, default) or a list of names / `re:` patterns.
    #[serde(default)]
    pub groups: Option<GroupsFile>,
    /// Allow moving a group's committed offset backwards (default false).
    #[serde(default)]
    pub allow_rewind: Option<bool>,
    /// What to do with a group that has no checkpoint: `skip` (default, recorded) or `fail`.
    #[serde(default)]
    pub on_missing_checkpoint: Option<MissingCheckpointFile>,
    #[serde(default)]
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MissingCheckpointFile {
    Skip,
    Fail,
}

/// `all`, or a list of group names and `re:` patterns.
#[derive(Debug, Clone)]
pub enum GroupsFile {
    All(Located<String>),
    List(Vec<Located<String>>),
}

impl<'de> Deserialize<'de> for GroupsFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = GroupsFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`all` or a list of group names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GroupsFile, E> {
                if v == "all" {
                    Ok(GroupsFile::All(Located {
                        value: v.to_owned(),
                        line: 0,
                        column: 0,
                        raw: None,
                    }))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<GroupsFile, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Located<String>>()? {
                    items.push(item);
                }
                Ok(GroupsFile::List(items))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for GroupsFile {
    fn schema_name() -> Cow<'static, str> {
        "Groups".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`all`, or a list of group names and `re:<regex>` patterns.",
            "oneOf": [
                { "const": "all" },
                { "type": "array", "items": { "type": "string" } }
            ]
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateFile {
    /// How long the target has to show it is healthy.
    pub within: DurationText,
    /// Groups that must show progress: `all` (default) or a list.
    #[serde(default)]
    pub groups: Option<GroupsFile>,
    /// Require new records on the target's original topics (default false).
    #[serde(default)]
    pub require_producers: Option<bool>,
    #[serde(default)]
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecFile {
    /// Command, run with `sh -c`.
    pub run: Located<String>,
    /// Safe to run twice: `--resume` may re-run it after an interruption without asking.
    #[serde(default)]
    pub idempotent: Option<bool>,
    /// After the timeout the command gets SIGTERM, then SIGKILL after this grace (default 5s).
    #[serde(default)]
    pub kill_grace: Option<DurationText>,
    #[serde(default)]
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckReverseReplicationFile {
    /// The newest heartbeat from the source seen on the target must be younger (default 30s).
    #[serde(default)]
    pub max_heartbeat_age: Option<DurationText>,
    /// When set, each group's newest checkpoint must be younger than this.
    #[serde(default)]
    pub max_checkpoint_age: Option<DurationText>,
    #[serde(default)]
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseFile {
    /// What the operator must do or check before going on.
    pub message: Located<String>,
    #[serde(default)]
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    /// The webhook, `http://` or `https://`. A URL that holds a token (Slack's do) belongs in
    /// `${env:NAME}`: it is then a secret, never shown or logged.
    pub url: Located<String>,
    /// The message (default: the plan, direction, step and how the run is going).
    #[serde(default)]
    pub text: Option<Located<String>>,
    /// Fail the step, and stop the run, when the message cannot be delivered (default false: the
    /// failure is logged and the run goes on).
    #[serde(default)]
    pub required: Option<bool>,
    /// How long to wait for the webhook to answer (default 5s).
    #[serde(default)]
    pub timeout: Option<DurationText>,
}
