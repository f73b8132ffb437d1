//! What a cluster is to kdr, and how that becomes librdkafka configuration.
//!
//! Secrets travel in these types (SASL passwords, TLS key passphrases), so nothing here
//! derives `Serialize` and every human-facing rendering masks them: a spec may be logged,
//! printed in a plan summary or captured in an error, and none of those may carry a secret.

use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use serde::{Deserialize, Serialize};

/// What a masked secret looks like wherever a spec or a message is rendered.
pub const REDACTED: &str = "***";

/// Fragments of property names whose values are secret whatever the plan says. A plan may
/// pass a password inline by mistake; it must still never be echoed.
const SECRET_KEY_FRAGMENTS: &[&str] =
    &["password", "secret", "sasl.jaas.config", "ssl.key", "token"];

/// Properties kdr sets itself, per operation. Letting a plan override them would silently
/// change what an operation does (a reader that auto-commits, a probe that joins a group),
/// and `debug` makes librdkafka dump its configuration into the log.
const RESERVED_KEYS: &[(&str, &str)] = &[
    (
        "bootstrap.servers",
        "set it as the cluster's bootstrap_servers",
    ),
    (
        "metadata.broker.list",
        "set it as the cluster's bootstrap_servers",
    ),
    ("group.id", "kdr sets it per operation"),
    ("enable.auto.commit", "kdr only commits offsets explicitly"),
    (
        "enable.auto.offset.store",
        "kdr only commits offsets explicitly",
    ),
    ("enable.partition.eof", "kdr sets it per operation"),
    (
        "debug",
        "librdkafka debug output can echo client configuration",
    ),
];

/// How long a new connection may take (TCP, TLS and SASL) before librdkafka gives up on
/// it. librdkafka's 30 s default would hide a dead data centre behind a long silence.
const CONNECTION_SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Which side of the DR pair a cluster is. Every error and log line names it, because an
/// operator mid-incident must never wonder which cluster refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterRole {
    /// The cluster that owns writes in normal operation.
    Primary,
    /// The disaster-recovery cluster that MirrorMaker 2 replicates into.
    Dr,
}

impl fmt::Display for ClusterRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterRole::Primary => "primary",
            ClusterRole::Dr => "dr",
        })
    }
}

/// One librdkafka client property from the plan (`security.protocol`, `sasl.password`, …).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientProperty {
    /// The librdkafka property name.
    pub key: String,
    /// The value, already resolved from the environment or a file by the plan layer.
    pub value: String,
    /// Set by the plan layer when the value came from the environment or a file.
    pub secret: bool,
}

impl ClientProperty {
    /// A property whose value may be shown.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        ClientProperty {
            key: key.into(),
            value: value.into(),
            secret: false,
        }
    }

    /// A property whose value must never be shown.
    pub fn secret(key: impl Into<String>, value: impl Into<String>) -> Self {
        ClientProperty {
            key: key.into(),
            value: value.into(),
            secret: true,
        }
    }

    /// Whether the value must be masked: marked secret by the plan, or named like a secret.
    pub fn is_secret(&self) -> bool {
        self.secret || key_looks_secret(&self.key)
    }

    /// The value as it may be shown: itself, or [`REDACTED`].
    pub fn display_value(&self) -> &str {
        if self.is_secret() {
            REDACTED
        } else {
            &self.value
        }
    }
}

/// Whether a property name alone marks its value as secret.
pub fn key_looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_FRAGMENTS
        .iter()
        .any(|fragment| key.contains(fragment))
}

impl fmt::Debug for ClientProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientProperty")
            .field("key", &self.key)
            .field("value", &self.display_value())
            .field("secret", &self.is_secret())
            .finish()
    }
}

impl fmt::Display for ClientProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.display_value())
    }
}

/// A cluster as the plan describes it: where it is and how to talk to it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Which side of the DR pair this is.
    pub role: ClusterRole,
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Client properties in plan order; a later duplicate wins, as in librdkafka.
    pub properties: Vec<ClientProperty>,
}

impl ClusterSpec {
    /// A spec with no client properties.
    pub fn new(role: ClusterRole, bootstrap_servers: impl Into<String>) -> Self {
        ClusterSpec {
            role,
            bootstrap_servers: bootstrap_servers.into(),
            properties: Vec::new(),
        }
    }

    /// Adds a property (builder style).
    pub fn with_property(mut self, property: ClientProperty) -> Self {
        self.properties.push(property);
        self
    }

    /// Every problem with the spec that kdr can see without a network, all at once.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self
            .bootstrap_servers
            .split(',')
            .all(|server| server.trim().is_empty())
        {
            problems.push("bootstrap_servers is empty".to_owned());
        }
        for property in &self.properties {
            if let Some((key, why)) = RESERVED_KEYS.iter().find(|(key, _)| *key == property.key) {
                problems.push(format!(
                    "client property `{key}` cannot be set in the plan: {why}"
                ));
            }
        }
        problems
    }

    /// The masker for everything derived from this spec.
    pub fn redactor(&self) -> Redactor {
        Redactor::new(
            self.properties
                .iter()
                .filter(|p| p.is_secret())
                .map(|p| p.value.clone())
                .collect(),
        )
    }

    /// Configuration every client shares: kdr's defaults (connection, timeouts, then
    /// `role_defaults`), then the plan's properties, which override any default.
    ///
    /// `operation_timeout` also bounds librdkafka's own request timeout, so a request kdr
    /// has given up on does not keep a client (and process exit) waiting for a minute.
    fn build(&self, operation_timeout: Duration, role_defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        // Info, not Debug: debug contexts can dump configuration. The subscriber filters.
        config.set_log_level(RDKafkaLogLevel::Info);
        config
            .set("client.id", format!("kdr-{}", self.role))
            .set(
                "socket.connection.setup.timeout.ms",
                millis(CONNECTION_SETUP_TIMEOUT),
            )
            .set(
                "socket.timeout.ms",
                millis(request_timeout(operation_timeout)),
            )
            .set(
                "api.version.request.timeout.ms",
                millis(api_version_timeout(operation_timeout)),
            );
        for (key, value) in role_defaults {
            config.set(*key, *value);
        }
        for property in &self.properties {
            config.set(property.key.clone(), property.value.clone());
        }
        config.set("bootstrap.servers", self.bootstrap_servers.clone());
        config
    }

    /// Configuration for a consumer that never moves a group's offsets on its own and
    /// never creates topics by asking for them. With `group`, it can fetch and commit that
    /// group's offsets (kdr never makes it join the group).
    pub fn consumer_config(
        &self,
        group: Option<&str>,
        operation_timeout: Duration,
    ) -> ClientConfig {
        let mut config = self.build(
            operation_timeout,
            &[
                ("allow.auto.create.topics", "false"),
                ("auto.offset.reset", "earliest"),
            ],
        );
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // kdr's readers drain what librdkafka fetched as fast as it arrives. With
            // librdkafka's defaults a full prefetch queue holds the next fetch back for a whole
            // second (`fetch.queue.backoff.ms` 1000): a million-record checkpoints topic on
            // Nisshi read in 3.7 s that way and in 1.0 s with 5 ms. A prefetch of 20 000
            // records or 16 MB (not 100 000 or 64 MB) keeps the reader's memory bounded
            // without slowing it (`make bench-scale`).
            .set("fetch.queue.backoff.ms", "5")
            .set("queued.min.messages", "20000")
            .set("queued.max.messages.kbytes", "16384");
        match group {
            // kdr never joins, so the session timeout only bounds how long librdkafka keeps
            // a commit waiting for the coordinator, and a client's close waits for that.
            Some(group) => config.set("group.id", group).set(
                "session.timeout.ms",
                millis(request_timeout(operation_timeout)),
            ),
            None => config.remove("group.id"),
        };
        config
    }

    /// Configuration for an admin client.
    pub fn admin_config(&self, operation_timeout: Duration) -> ClientConfig {
        self.build(operation_timeout, &[])
    }

    /// Configuration for a producer with the same connection and security settings, for
    /// the modules that write (rehearsal canaries, the replicator).
    ///
    /// The returned `ClientConfig` holds secret values, and rdkafka's `Debug` masks only
    /// the keys it knows: do not log it.
    pub fn producer_config(&self, operation_timeout: Duration) -> ClientConfig {
        self.build(operation_timeout, &[])
    }
}

/// librdkafka's per-request timeout for an operation bound: the bound itself, within what
/// librdkafka accepts and what a slow broker needs.
fn request_timeout(operation_timeout: Duration) -> Duration {
    operation_timeout.clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// How long a connection may sit in its first exchange (ApiVersion) before librdkafka gives up
/// on it: half the operation bound, so a broker that accepts connections and never answers is
/// named as such within the bound instead of the operation ending on a bare timeout first.
fn api_version_timeout(operation_timeout: Duration) -> Duration {
    (request_timeout(operation_timeout) / 2).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

impl fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("role", &self.role)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &self.properties)
            .finish()
    }
}

impl fmt::Display for ClusterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cluster at {}", self.role, self.bootstrap_servers)?;
        if !self.properties.is_empty() {
            f.write_str(" with ")?;
            for (index, property) in self.properties.iter().enumerate() {
                if index > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{property}")?;
            }
        }
        Ok(())
    }
}

/// Masks a cluster's secret values in any text kdr did not write itself (librdkafka log
/// lines, error strings), because librdkafka may quote a property value back.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// A masker for these secret values (empty values are ignored).
    pub fn new(mut secrets: Vec<String>) -> Self {
        secrets.retain(|secret| !secret.is_empty());
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The text with every secret value replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub(crate) const SECRET: &str = "hunter2-correct-horse";
    pub(crate) const INLINE_SECRET: &str = "inline-battery-staple";

    /// A spec with one secret the plan marked and one it did not mark but is named so.
    pub(crate) fn spec_with_secrets(bootstrap: &str) -> ClusterSpec {
        ClusterSpec::new(ClusterRole::Dr, bootstrap)
            .with_property(ClientProperty::new("security.protocol", "SASL_PLAINTEXT"))
            .with_property(ClientProperty::new("sasl.mechanisms", "PLAIN"))
            // Marked secret by the plan (it came from the environment), though not named so.
            .with_property(ClientProperty::secret("sasl.username", SECRET))
            // Not marked by the plan, but named like a secret.
            .with_property(ClientProperty::new("sasl.password", INLINE_SECRET))
    }

    pub(crate) fn assert_no_secret(text: &str) {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
        assert!(
            !text.contains(INLINE_SECRET),
            "inline secret leaked: {text}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    const BOUND: Duration = Duration::from_secs(5);

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let spec = spec_with_secrets("broker:9092");
        for text in [
            format!("{spec:?}"),
            format!("{spec:#?}"),
            spec.to_string(),
            format!("{:?}", spec.properties),
        ] {
            assert_no_secret(&text);
            assert!(text.contains(REDACTED), "{text}");
        }
        assert_eq!(
            spec.to_string(),
            "dr cluster at broker:9092 with security.protocol=SASL_PLAINTEXT, sasl.mechanisms=PLAIN, \
             sasl.username=***, sasl.password=***"
        );
    }

    #[test]
    fn secret_names_are_recognised_whatever_their_case() {
        for key in [
            "sasl.password",
            "sasl.jaas.config",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "custom.TOKEN",
        ] {
            assert!(key_looks_secret(key), "{key}");
        }
        for key in ["security.protocol", "sasl.username", "bootstrap.servers"] {
            assert!(!key_looks_secret(key), "{key}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let spec = ClusterSpec::new(ClusterRole::Dr, " , ")
            .with_property(ClientProperty::new("group.id", "mine"))
            .with_property(ClientProperty::new("debug", "all"));
        assert_eq!(
            spec.problems(),
            [
                "bootstrap_servers is empty",
                "client property `group.id` cannot be set in the plan: kdr sets it per operation",
                "client property `debug` cannot be set in the plan: librdkafka debug output can echo client configuration",
            ]
        );
        assert!(spec_with_secrets("broker:9092").problems().is_empty());
    }

    #[test]
    fn plan_properties_override_defaults_but_not_what_kdr_relies_on() {
        let spec = ClusterSpec::new(ClusterRole::Primary, "broker:9092")
            .with_property(ClientProperty::new(
                "socket.connection.setup.timeout.ms",
                "12000",
            ))
            .with_property(ClientProperty::new("allow.auto.create.topics", "true"));
        let consumer = spec.consumer_config(Some("billing"), BOUND);
        assert_eq!(
            consumer.get("socket.connection.setup.timeout.ms"),
            Some("12000")
        );
        assert_eq!(consumer.get("allow.auto.create.topics"), Some("true"));
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(consumer.get("group.id"), Some("billing"));
        assert_eq!(consumer.get("session.timeout.ms"), Some("5000"));
        assert_eq!(consumer.get("bootstrap.servers"), Some("broker:9092"));
        assert_eq!(consumer.get("client.id"), Some("kdr-primary"));
        assert_eq!(consumer.get("debug"), None);
        assert_eq!(spec.consumer_config(None, BOUND).get("group.id"), None);
        let producer = spec.producer_config(Duration::from_millis(300));
        assert_eq!(producer.get("enable.auto.commit"), None);
        // librdkafka's request timeout follows the bound, but not below a second.
        assert_eq!(producer.get("socket.timeout.ms"), Some("1000"));
    }

    #[test]
    fn redactor_masks_every_secret_whole() {
        let redactor = Redactor::new(vec!["abc".into(), String::new(), "abcdef".into()]);
        assert_eq!(redactor.scrub("x abcdef y abc z"), "x *** y *** z");
        assert_eq!(redactor.scrub("nothing here"), "nothing here");
        assert_eq!(format!("{redactor:?}"), "Redactor(2 secrets)");
    }
}
