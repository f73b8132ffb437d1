//! The docker compose stack for CI (docker-compose.yml, runbooks/mm2/*.properties,
//! runbooks/docker-compose.yaml, docs/github-actions-example.yml), checked statically: no Docker
//! engine is needed. What these tests cannot show is that the containers start and replicate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{KDR, RUN_BOUND, wait};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(rel: &str) -> Value {
    let path = repo().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {rel}: {e}"));
    serde_saphyr::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

/// A Java .properties file as MirrorMaker 2 reads it: `key = value` or `key: value`, `#`/`!`
/// comments, backslash escapes (no line continuations are used in these files).
fn properties(rel: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "{rel}: no line continuations: {line}"
        );
        let cut = line
            .find(['=', ':'])
            .unwrap_or_else(|| panic!("{rel}: not key=value: {line}"));
        let unescape = |s: &str| {
            let mut r = String::new();
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    r.extend(chars.next());
                } else {
                    r.push(c);
                }
            }
            r
        };
        let key = unescape(line[..cut].trim());
        let value = unescape(line[cut + 1..].trim());
        assert!(
            out.insert(key.clone(), value).is_none(),
            "{rel}: {key} set twice"
        );
    }
    out
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn services() -> serde_json::Map<String, Value> {
    yaml("docker-compose.yml")["services"]
        .as_object()
        .expect("services map")
        .clone()
}

/// Published ports of a service as (host ip, host port, container port), short syntax.
fn published(service: &Value) -> Vec<(String, u16, u16)> {
    service["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let s = p.as_str().expect("ports in short string syntax");
                    let parts: Vec<&str> = s.split(':').collect();
                    assert_eq!(parts.len(), 3, "port {s} must be IP:HOST:CONTAINER");
                    (
                        parts[0].to_owned(),
                        parts[1].parse().expect("host port"),
                        parts[2].parse().expect("container port"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn env(service: &Value, key: &str) -> String {
    match &service["environment"][key] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("environment {key}: {other}"),
    }
}

fn plan() -> Value {
    yaml("runbooks/docker-compose.yaml")
}

fn plan_topics() -> Vec<String> {
    plan()["replication"]["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t.as_str().expect("topic name").to_owned())
        .collect()
}

fn alias(role: &str) -> String {
    plan()["clusters"][role]["mm2_alias"]
        .as_str()
        .unwrap_or(role)
        .to_owned()
}

#[test]
fn compose_names_primary_dr_and_mirror_maker_on_the_official_image() {
    let services = services();
    for name in ["primary", "dr", "mirror-maker"] {
        let s = services
            .get(name)
            .unwrap_or_else(|| panic!("no service {name}"));
        let image = s["image"].as_str().expect("image");
        let (repo, tag) = image.split_once(':').expect("a pinned tag");
        assert_eq!(repo, "apache/kafka", "{name}");
        assert!(
            tag.split('.').count() == 3 && tag.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{name}: pin an exact version, not {tag}"
        );
    }
    for name in ["primary", "dr"] {
        let s = &services[name];
        assert!(s["healthcheck"]["test"].is_array(), "{name}: healthcheck");
        assert_eq!(env(s, "KAFKA_PROCESS_ROLES"), "broker,controller");
        assert!(!env(s, "CLUSTER_ID").is_empty());
        assert_eq!(env(s, "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"), "1");
        assert_eq!(
            env(s, "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"),
            "1"
        );
        // Only variables the image documents: KAFKA_<property> and CLUSTER_ID.
        for key in s["environment"]
            .as_object()
            .expect("environment map")
            .keys()
        {
            assert!(
                key == "CLUSTER_ID" || key.starts_with("KAFKA_"),
                "{name}: {key}"
            );
        }
        // The internal listener is the service name, for MM2 and `docker compose exec`.
        assert!(
            env(s, "KAFKA_ADVERTISED_LISTENERS").contains(&format!("INTERNAL://{name}:9092")),
            "{name}"
        );
    }
    assert_ne!(
        env(&services["primary"], "CLUSTER_ID"),
        env(&services["dr"], "CLUSTER_ID")
    );
    let mm = &services["mirror-maker"];
    let command: Vec<&str> = mm["command"]
        .as_array()
        .expect("command list")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        command,
        [
            "/opt/kafka/bin/connect-mirror-maker.sh",
            "/etc/kafka/mm2.properties"
        ]
    );
    let volumes: Vec<&str> = mm["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        volumes,
        ["./runbooks/mm2/${MM2_CONFIG:-mm2.properties}:/etc/kafka/mm2.properties:ro"]
    );
    for dep in ["primary", "dr"] {
        assert_eq!(mm["depends_on"][dep]["condition"], "service_healthy");
    }
}

#[test]
fn every_published_port_binds_loopback_only() {
    let services = services();
    let mut any = 0;
    for (name, s) in &services {
        for (ip, host, _) in published(s) {
            assert_eq!(ip, "127.0.0.1", "{name} publishes {host} beyond loopback");
            any += 1;
        }
        if let Some(expose) = s.get("network_mode") {
            panic!("{name}: network_mode {expose} would bypass the port bindings");
        }
    }
    assert_eq!(
        any, 2,
        "exactly the two brokers' client ports are published"
    );
}

#[test]
fn the_plans_bootstrap_servers_are_published_and_advertised_by_the_matching_service() {
    let plan = plan();
    let services = services();
    for role in ["primary", "dr"] {
        let servers = plan["clusters"][role]["bootstrap_servers"]
            .as_str()
            .expect("bootstrap_servers");
        let s = &services[role];
        let advertised = env(s, "KAFKA_ADVERTISED_LISTENERS");
        for server in servers.split(',') {
            let (host, port) = server.rsplit_once(':').expect("host:port");
            assert_eq!(host, "127.0.0.1", "{role}: the plan talks to loopback");
            let port: u16 = port.parse().expect("port");
            let hit = published(s)
                .into_iter()
                .find(|(_, h, _)| *h == port)
                .unwrap_or_else(|| panic!("{role} does not publish {port}"));
            // The container port is the listener advertised with the host's address, so the
            // broker's metadata sends kdr back to the same published port.
            assert!(
                advertised.contains(&format!("://127.0.0.1:{}", hit.2)) && hit.1 == hit.2,
                "{role}: {advertised} must advertise 127.0.0.1:{port}"
            );
            assert!(
                env(s, "KAFKA_LISTENERS").contains(&format!(":{}", hit.2)),
                "{role}: nothing listens on {}",
                hit.2
            );
        }
    }
}

#[test]
fn mm2_forward_config_matches_the_plan() {
    let p = properties("runbooks/mm2/mm2.properties");
    let (primary, dr) = (alias("primary"), alias("dr"));
    assert_eq!(list(&p["clusters"]), [primary.clone(), dr.clone()]);
    let services = services();
    assert_eq!(
        p[&format!("{primary}.bootstrap.servers")],
        "primary:9092",
        "MM2 reaches the primary on its internal listener"
    );
    assert_eq!(p[&format!("{dr}.bootstrap.servers")], "dr:9092");
    assert!(services.contains_key("primary") && services.contains_key("dr"));

    let forward = format!("{primary}->{dr}");
    let reverse = format!("{dr}->{primary}");
    assert_eq!(p[&format!("{forward}.enabled")], "true");
    assert_eq!(
        p[&format!("{reverse}.enabled")],
        "false",
        "the reverse flow is present but off"
    );
    for key in [
        "emit.checkpoints.enabled",
        "emit.heartbeats.enabled",
        "emit.offset-syncs.enabled",
    ] {
        let v = p
            .get(&format!("{forward}.{key}"))
            .or_else(|| p.get(key))
            .unwrap_or_else(|| panic!("{key} not set"));
        assert_eq!(v, "true", "{key}");
    }
    assert_eq!(p["sync.group.offsets.enabled"], "false", "kdr translates");
    assert_eq!(list(&p["topics"]), plan_topics());
    assert_eq!(p["groups"], ".*");
    for key in [
        "emit.checkpoints.interval.seconds",
        "refresh.groups.interval.seconds",
        "refresh.topics.interval.seconds",
    ] {
        assert_eq!(p[key], "5", "{key}");
    }
    for key in [
        "replication.factor",
        "checkpoints.topic.replication.factor",
        "heartbeats.topic.replication.factor",
        "offset-syncs.topic.replication.factor",
        "offset.storage.replication.factor",
        "config.storage.replication.factor",
        "status.storage.replication.factor",
    ] {
        assert_eq!(p[key], "1", "{key}: single-node clusters");
    }
}

#[test]
fn mm2_failback_config_turns_the_reverse_flow_on_and_the_forward_flow_off() {
    let p = properties("runbooks/mm2/mm2-failback.properties");
    let (primary, dr) = (alias("primary"), alias("dr"));
    assert_eq!(list(&p["clusters"]), [primary.clone(), dr.clone()]);
    let forward = format!("{primary}->{dr}");
    let reverse = format!("{dr}->{primary}");
    assert_eq!(p[&format!("{reverse}.enabled")], "true");
    assert_eq!(p[&format!("{forward}.enabled")], "false");
    // check_reverse_replication needs heartbeats and checkpoints of the reverse flow.
    for key in ["emit.checkpoints.enabled", "emit.heartbeats.enabled"] {
        let v = p
            .get(&format!("{reverse}.{key}"))
            .or_else(|| p.get(key))
            .unwrap_or_else(|| panic!("{key} not set"));
        assert_eq!(v, "true", "{key}");
    }
    assert_eq!(list(&p["topics"]), plan_topics());
    // The reverse flow never carries the forward flow's replicas back.
    let exclude = list(&p[&format!("{reverse}.topics.exclude")]);
    assert!(exclude.iter().any(|e| e == r"primary\..*"), "{exclude:?}");
    // Setting topics.exclude replaces MM2's default exclusions: keep them.
    for default in [r".*[\-\.]internal", r".*\.replica", "__.*"] {
        assert!(exclude.iter().any(|e| e == default), "{default}");
    }
    // Everything but the flows' switches is the same in both files.
    let forward_file = properties("runbooks/mm2/mm2.properties");
    for (key, value) in &forward_file {
        if key.ends_with(".enabled") && key.contains("->") {
            continue;
        }
        if key == &format!("{reverse}.emit.checkpoints.enabled") {
            continue;
        }
        assert_eq!(p.get(key), Some(value), "{key} differs between the files");
    }
}

#[test]
fn the_plans_replication_policy_matches_mm2() {
    let plan = plan();
    let policy = plan["replication"]["policy"].as_str().unwrap_or("default");
    let separator = plan["replication"]["separator"].as_str().unwrap_or(".");
    let internal = plan["replication"]["internal_separator"]
        .as_bool()
        .unwrap_or(true);
    let location = plan["replication"]["offset_syncs_location"]
        .as_str()
        .unwrap_or("source");
    for file in [
        "runbooks/mm2/mm2.properties",
        "runbooks/mm2/mm2-failback.properties",
    ] {
        let p = properties(file);
        let class = p.get("replication.policy.class").map_or(
            "org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
            |s| s,
        );
        let expected = match policy {
            "default" => "org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
            "identity" => "org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
            other => panic!("policy {other}"),
        };
        assert_eq!(class, expected, "{file}");
        assert_eq!(
            p.get("replication.policy.separator")
                .map_or(".", |s| s.as_str()),
            separator,
            "{file}"
        );
        assert_eq!(
            p.get("replication.policy.internal.topic.separator.enabled")
                .map_or("true", |s| s.as_str()),
            internal.to_string(),
            "{file}"
        );
        assert_eq!(
            p.get("offset-syncs.topic.location")
                .map_or("source", |s| s.as_str()),
            location,
            "{file}"
        );
    }
}

#[test]
fn the_compose_plan_passes_plan_check() {
    let child = std::process::Command::new(KDR)
        .args(["plan", "check", "runbooks/docker-compose.yaml"])
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kdr");
    let run = wait(child, RUN_BOUND);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("compose-drill"), "{run:?}");
}

#[test]
fn the_compose_plan_fails_back_only_after_checking_the_reverse_flow() {
    let plan = plan();
    let kinds = |dir: &str| -> Vec<String> {
        plan[dir]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                s.as_object()
                    .and_then(|o| o.keys().next().cloned())
                    .expect("one kind per step")
            })
            .collect()
    };
    let failback = kinds("failback");
    assert_eq!(failback[..2], ["declare", "check_reverse_replication"]);
    let failover = kinds("failover");
    assert_eq!(failover[0], "declare");
    // Offsets are translated before the consumers' repoint, which comes before validate.
    for steps in [&failover, &failback] {
        let t = steps.iter().position(|k| k == "translate_offsets").unwrap();
        let v = steps.iter().position(|k| k == "validate").unwrap();
        assert!(t < v && steps[t + 1] == "repoint", "{steps:?}");
    }
    // Hooks talk to the compose stack by service name, nothing else.
    let text = std::fs::read_to_string(repo().join("runbooks/docker-compose.yaml")).unwrap();
    for line in text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("docker compose exec"))
    {
        assert!(
            line.contains(" dr ") || line.contains(" primary "),
            "{line}"
        );
    }
}

fn workflow_runs() -> Vec<String> {
    let wf = yaml("docs/github-actions-example.yml");
    let mut runs = Vec::new();
    for (_, job) in wf["jobs"].as_object().expect("jobs") {
        for step in job["steps"].as_array().expect("steps") {
            if let Some(r) = step["run"].as_str() {
                runs.push(r.to_owned());
            }
        }
    }
    runs
}

#[test]
fn the_workflow_parses_and_drills_failover_then_failback() {
    let wf = yaml("docs/github-actions-example.yml");
    let job = wf["jobs"]
        .as_object()
        .expect("jobs")
        .values()
        .next()
        .unwrap();
    let uses: Vec<&str> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["uses"].as_str())
        .collect();
    assert!(uses.contains(&"actions/checkout@v4"), "{uses:?}");
    assert!(uses.contains(&"actions/upload-artifact@v4"), "{uses:?}");
    let upload = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["uses"] == "actions/upload-artifact@v4")
        .unwrap();
    assert_eq!(upload["with"]["path"], "incidents/");
    assert_eq!(upload["if"], "always()");

    let runs = workflow_runs();
    let position = |what: &dyn Fn(&str) -> bool| runs.iter().position(|r| what(r));
    let plan = "--plan runbooks/docker-compose.yaml";
    let up = position(&|r| r.contains("docker compose up -d --wait")).expect("compose up");
    let topics = position(&|r| r.contains("kafka-topics.sh") && r.contains("--create"))
        .expect("topics created");
    let produce = position(&|r| r.contains("kafka-console-producer.sh")).expect("produce");
    let consume = position(&|r| {
        r.contains("kafka-console-consumer.sh")
            && r.contains("--group order-processor")
            && r.contains("--max-messages")
    })
    .expect("a consumer group commits");
    let checkpoints = position(&|r| r.contains("wait-checkpoints\" primary dr order-processor"))
        .expect("wait for checkpoints on dr");
    let dry = position(&|r| r.contains(&format!("kdr failover {plan} --dry-run")))
        .expect("failover dry run");
    let real = position(&|r| {
        r.contains(&format!("kdr failover {plan}"))
            && !r.contains("--dry-run")
            && r.contains("--yes")
            && r.contains("--operator ci")
            && r.contains("--reason")
    })
    .expect("real failover");
    let switch = position(&|r| {
        r.contains("MM2_CONFIG=mm2-failback.properties docker compose up -d mirror-maker")
    })
    .expect("MM2 switched to the failback config");
    let reverse_checkpoints =
        position(&|r| r.contains("wait-checkpoints\" dr primary order-processor"))
            .expect("wait for checkpoints on the primary");
    let back = position(&|r| {
        r.contains(&format!("kdr failback {plan}"))
            && !r.contains("--dry-run")
            && r.contains("--yes")
    })
    .expect("real failback");
    let order = [
        up,
        topics,
        produce,
        consume,
        checkpoints,
        dry,
        real,
        switch,
        reverse_checkpoints,
        back,
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    // The failback config the workflow names exists.
    assert!(Path::new(&repo().join("runbooks/mm2/mm2-failback.properties")).exists());
}

#[test]
fn the_ci_files_name_no_registry_or_url() {
    for file in [
        "docker-compose.yml",
        "docs/github-actions-example.yml",
        "runbooks/docker-compose.yaml",
        "runbooks/mm2/mm2.properties",
        "runbooks/mm2/mm2-failback.properties",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        assert!(
            !text.contains("://") || file == "docker-compose.yml",
            "{file} names a URL"
        );
        if file == "docker-compose.yml" {
            for line in text.lines().filter(|l| l.contains("://")) {
                assert!(line.contains("LISTENERS"), "{file}: {line}");
            }
        }
    }
}

// ---- What Apache Kafka 3.9 does with these files (issue 14). Each rule below restates, with its
// source, the Kafka code that decides; the tests then hold the files to it.

/// The prefixes `MirrorMakerConfig.workerConfig` copies from the top level of a dedicated-mode
/// configuration into every herder's worker config (`stringsWithPrefix`, so `task` also matches
/// `tasks.max`). Every other worker setting must carry the target cluster's alias.
const WORKER_TOP_LEVEL_PREFIXES: [&str; 9] = [
    "offset.storage",
    "config.storage",
    "status.storage",
    "key.converter",
    "value.converter",
    "header.converter",
    "task",
    "worker",
    "replication.policy",
];

/// Names the three MirrorMaker 2 connectors define (MirrorConnectorConfig, MirrorSourceConfig,
/// MirrorCheckpointConfig, MirrorHeartbeatConfig in 3.9): `connectorBaseConfig` keeps a top-level
/// key only if it is one of these. Add a name here only after finding it in those classes.
const CONNECTOR_KEYS: [&str; 45] = [
    "enabled",
    "source.cluster.alias",
    "target.cluster.alias",
    "replication.policy.class",
    "replication.policy.separator",
    "replication.policy.internal.topic.separator.enabled",
    "admin.timeout.ms",
    "forwarding.admin.class",
    "offset-syncs.topic.location",
    "emit.offset-syncs.enabled",
    "topic.filter.class",
    "topics",
    "topics.exclude",
    "topics.blacklist",
    "config.properties.exclude",
    "config.properties.blacklist",
    "config.property.filter.class",
    "replication.factor",
    "offset-syncs.topic.replication.factor",
    "consumer.poll.timeout.ms",
    "refresh.topics.enabled",
    "refresh.topics.interval.seconds",
    "sync.topic.configs.enabled",
    "sync.topic.configs.interval.seconds",
    "use.incremental.alter.configs",
    "sync.topic.acls.enabled",
    "sync.topic.acls.interval.seconds",
    "offset.lag.max",
    "add.source.alias.to.metrics",
    "groups",
    "groups.exclude",
    "groups.blacklist",
    "group.filter.class",
    "checkpoints.topic.replication.factor",
    "refresh.groups.enabled",
    "refresh.groups.interval.seconds",
    "emit.checkpoints.enabled",
    "emit.checkpoints.interval.seconds",
    "sync.group.offsets.enabled",
    "sync.group.offsets.interval.seconds",
    "emit.heartbeats.enabled",
    "emit.heartbeats.interval.seconds",
    "heartbeats.topic.replication.factor",
    "tasks.max",
    "name",
];

/// Where a key of a dedicated-mode MirrorMaker 2 file ends up.
#[derive(Debug, PartialEq)]
enum Reaches {
    /// `clusters`, `config.providers`, `dedicated.mode.enable.internal.rest`: MirrorMakerConfig's own.
    MirrorMaker,
    /// Every herder's worker config (a top-level worker prefix).
    Worker,
    /// The connectors of every flow (a connector name at top level).
    Connectors,
    /// `<alias>.x`: clients of that cluster, and the worker of every herder targeting it.
    Cluster(String),
    /// `<source>-><target>.x` with x a connector name: that flow's connectors.
    Flow(String, String),
    /// Nothing reads it: MirrorMakerConfig drops it without a word.
    Dropped,
}

fn reaches(key: &str, aliases: &[String]) -> Reaches {
    if let Some((flow, rest)) = key.split_once("->") {
        let (target, setting) = rest.split_once('.').unwrap_or((rest, ""));
        // connectorBaseConfig strips the flow prefix into the connector config; the worker never
        // sees it, so only connector names mean anything there.
        return if CONNECTOR_KEYS.contains(&setting) {
            Reaches::Flow(flow.to_owned(), target.to_owned())
        } else {
            Reaches::Dropped
        };
    }
    if let Some(alias) = aliases.iter().find(|a| key.starts_with(&format!("{a}."))) {
        return Reaches::Cluster(alias.clone());
    }
    if ["clusters", "dedicated.mode.enable.internal.rest"].contains(&key)
        || key.starts_with("config.providers")
    {
        Reaches::MirrorMaker
    } else if WORKER_TOP_LEVEL_PREFIXES.iter().any(|p| key.starts_with(p)) {
        Reaches::Worker
    } else if CONNECTOR_KEYS.contains(&key) {
        Reaches::Connectors
    } else {
        Reaches::Dropped
    }
}

/// The worker config of the herder `source->target`, as `MirrorMakerConfig.workerConfig` builds
/// it: the target cluster's `<alias>.` keys with the prefix stripped, then the top-level worker
/// prefixes.
fn herder_worker_config(p: &BTreeMap<String, String>, target: &str) -> BTreeMap<String, String> {
    let prefix = format!("{target}.");
    let mut worker: BTreeMap<String, String> = p
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone())))
        .collect();
    for (k, v) in p {
        if reaches(k, &[]) == Reaches::Worker {
            worker.insert(k.clone(), v.clone());
        }
    }
    worker
}

/// The herders `MirrorMakerConfig.clusterPairs` creates: every ordered pair whose flow is enabled
/// or whose heartbeats are on (they are by default), so disabled flows still get one.
fn herders(p: &BTreeMap<String, String>) -> Vec<(String, String, bool)> {
    let aliases = list(&p["clusters"]);
    let on = |key: &str, default: bool| p.get(key).map_or(default, |v| v == "true");
    let mut pairs = Vec::new();
    for source in &aliases {
        for target in aliases.iter().filter(|t| *t != source) {
            let flow = format!("{source}->{target}");
            let enabled = on(&format!("{flow}.enabled"), false);
            let heartbeats = on(
                &format!("{flow}.emit.heartbeats.enabled"),
                on("emit.heartbeats.enabled", true),
            );
            if enabled || heartbeats {
                pairs.push((source.clone(), target.clone(), enabled));
            }
        }
    }
    pairs
}

const MM2_FILES: [&str; 2] = [
    "runbooks/mm2/mm2.properties",
    "runbooks/mm2/mm2-failback.properties",
];

#[test]
fn mm2_dedicated_mode_drops_top_level_worker_settings() {
    let aliases = [alias("primary"), alias("dr")];
    // The rule itself, on the setting issue 14 found ignored.
    assert_eq!(
        reaches("offset.flush.interval.ms", &aliases),
        Reaches::Dropped
    );
    assert_eq!(
        reaches("dr.offset.flush.interval.ms", &aliases),
        Reaches::Cluster("dr".into())
    );
    assert_eq!(
        reaches("primary->dr.offset.flush.interval.ms", &aliases),
        Reaches::Dropped,
        "a flow prefix reaches the connectors, not the worker"
    );
    assert_eq!(
        reaches("offset.storage.replication.factor", &aliases),
        Reaches::Worker
    );
    assert_eq!(
        reaches("emit.checkpoints.interval.seconds", &aliases),
        Reaches::Connectors
    );
    let probe: BTreeMap<String, String> = [
        ("offset.flush.interval.ms", "1"),
        ("dr.offset.flush.interval.ms", "2"),
        ("offset.storage.replication.factor", "3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let worker = herder_worker_config(&probe, "dr");
    assert_eq!(worker["offset.flush.interval.ms"], "2");
    assert_eq!(worker["offset.storage.replication.factor"], "3");
    assert!(!herder_worker_config(&probe, "primary").contains_key("offset.flush.interval.ms"));

    let mut dropped = Vec::new();
    for file in MM2_FILES {
        for key in properties(file).keys() {
            if reaches(key, &aliases) == Reaches::Dropped {
                dropped.push(format!("{file}: {key}"));
            }
        }
    }
    assert!(
        dropped.is_empty(),
        "MirrorMakerConfig (dedicated mode) silently ignores these; a worker setting needs the \
         target cluster's prefix (`dr.` for primary->dr), a connector setting must be one the \
         connectors define:\n{}",
        dropped.join("\n")
    );
}

#[test]
fn every_running_mm2_flow_flushes_offsets_and_syncs_every_offset() {
    for file in MM2_FILES {
        let p = properties(file);
        let running: Vec<_> = herders(&p).into_iter().filter(|h| h.2).collect();
        assert_eq!(running.len(), 1, "{file}: exactly one flow runs");
        for (source, target, _) in running {
            let worker = herder_worker_config(&p, &target);
            // Delayed offset syncs go out at the worker's offset commit (default 60 s).
            assert_eq!(
                worker.get("offset.flush.interval.ms").map(String::as_str),
                Some("5000"),
                "{file}: the {source}->{target} herder's worker"
            );
            // A sync per record, so a checkpoint translates to the group's exact position.
            let lag_max = p
                .get(&format!("{source}->{target}.offset.lag.max"))
                .or_else(|| p.get("offset.lag.max"));
            assert_eq!(lag_max.map(String::as_str), Some("0"), "{file}");
        }
    }
}

/// The apache/kafka image's environment rule (KafkaDockerWrapper.getServerConfigsFromEnv, 3.9):
/// a `KAFKA_` variable not in its exclusion list becomes a server property with `KAFKA_` removed,
/// lowercased, `_` -> `.`, then `...` -> `-` and `..` -> `_`.
fn image_server_property(var: &str) -> Option<String> {
    const NOT_PROPERTIES: [&str; 11] = [
        "KAFKA_VERSION",
        "KAFKA_HEAP_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
        "KAFKA_LOG4J_LOGGERS",
        "KAFKA_TOOLS_LOG4J_LOGLEVEL",
        "KAFKA_JMX_HOSTNAME",
    ];
    if !var.starts_with("KAFKA_") || NOT_PROPERTIES.contains(&var) {
        return None;
    }
    Some(
        var.replace("KAFKA_", "")
            .to_lowercase()
            .replace('_', ".")
            .replace("...", "-")
            .replace("..", "_"),
    )
}

#[test]
fn brokers_never_auto_create_topics_so_the_drill_creates_its_own() {
    assert_eq!(
        image_server_property("KAFKA_CONTROLLER_QUORUM_VOTERS").as_deref(),
        Some("controller.quorum.voters")
    );
    let services = services();
    for name in ["primary", "dr"] {
        let s = &services[name];
        let props: BTreeMap<String, String> = s["environment"]
            .as_object()
            .expect("environment map")
            .keys()
            .filter_map(|var| Some((image_server_property(var)?, env(s, var))))
            .collect();
        // A reader polling `<alias>.checkpoints.internal` before MirrorMaker 2 creates it
        // (compacted) would otherwise create it with delete policy.
        assert_eq!(
            props.get("auto.create.topics.enable").map(String::as_str),
            Some("false"),
            "{name}: {props:?}"
        );
    }
    // What the drill reads and writes by name is the plan's topics, created on both clusters by
    // the workflow, or MirrorMaker 2's checkpoints topics, which it creates itself.
    let runs = workflow_runs();
    let create = runs
        .iter()
        .find(|r| r.contains("kafka-topics.sh") && r.contains("--create"))
        .expect("the workflow creates topics");
    assert!(create.contains("for cluster in primary dr;"), "{create}");
    assert!(
        create.contains(&format!("for topic in {};", plan_topics().join(" "))),
        "{create}"
    );
    let hooks = std::fs::read_to_string(repo().join("runbooks/docker-compose.yaml")).unwrap();
    for text in runs.iter().map(String::as_str).chain([hooks.as_str()]) {
        let mut words = text.split_whitespace();
        while let Some(word) = words.next() {
            if word != "--topic" {
                continue;
            }
            let topic = words.next().expect("a topic after --topic");
            if topic.starts_with("\"$") {
                continue; // a loop variable over the created topics, or the wait's argument
            }
            assert!(
                plan_topics().iter().any(|t| t == topic)
                    || topic.ends_with(".checkpoints.internal"),
                "{topic} is neither created by the workflow nor by MirrorMaker 2"
            );
        }
    }
}

/// The worst case for MirrorMaker 2 to stop (3.9): it stops its herders one after another
/// (`MirrorMaker.stop`), and each waits up to `herderExecutorTimeoutMs` = worker.sync.timeout.ms
/// (3 s) + task.shutdown.graceful.timeout.ms (5 s) + Worker.CONNECTOR_GRACEFUL_SHUTDOWN_TIMEOUT_MS
/// (5 s) + 10 s before its tasks' last offset commit is done.
const HERDER_STOP_BOUND: std::time::Duration = std::time::Duration::from_secs(3 + 5 + 5 + 10);

#[test]
fn mirror_maker_gets_time_to_commit_its_offsets_when_stopped() {
    let services = services();
    let grace = services["mirror-maker"]["stop_grace_period"]
        .as_str()
        .expect("mirror-maker: stop_grace_period (the default 10 s kills MM2 mid-commit)");
    let grace = humantime::parse_duration(grace).expect("a duration");
    let most_herders = MM2_FILES
        .iter()
        .map(|f| herders(&properties(f)).len())
        .max()
        .unwrap();
    let needed = HERDER_STOP_BOUND * u32::try_from(most_herders).unwrap();
    assert!(grace >= needed, "stop_grace_period {grace:?} < {needed:?}");
    // The plan's hooks that stop or recreate mirror-maker outlast its grace period.
    let plan = plan();
    let mut hooks = 0;
    for dir in ["failover", "failback"] {
        for step in plan[dir].as_array().expect("steps") {
            let Some(exec) = step.get("exec") else {
                continue;
            };
            let run = exec["run"].as_str().expect("run");
            if run.contains("mirror-maker") {
                hooks += 1;
                let timeout = humantime::parse_duration(exec["timeout"].as_str().expect("timeout"))
                    .expect("a duration");
                assert!(
                    timeout > grace,
                    "{dir}: `{run}` times out before MM2 may stop"
                );
            }
        }
    }
    assert_eq!(hooks, 2, "the failover stops MM2, the failback restarts it");
}

#[test]
fn the_workflow_waits_for_checkpoints_that_reach_the_end_offsets() {
    let runs = workflow_runs();
    let helper = runs
        .iter()
        .find(|r| r.contains("cat > \"$RUNNER_TEMP/wait-checkpoints\""))
        .expect("the workflow writes its checkpoint wait");
    // The newest checkpoint per partition, decoded by Kafka's own formatter...
    for needle in [
        "--formatter org.apache.kafka.connect.mirror.formatters.CheckpointFormatter",
        "consumerGroupId=$group, topicPartition=$topic-$partition,",
        "tail -n 1",
        "downstreamOffset=",
        // ...held against the end offsets of the source and of its replica on the target...
        "kafka-get-offsets.sh",
        "--time -1",
        "ends \"$source\" \"$topic\"",
        "ends \"$target\" \"$source.$topic\"",
        "[ \"${downstream:-}\" != \"$end\" ]",
        "[ \"${replica_end:-}\" != \"$end\" ]",
        // ...and never creating the checkpoints topic it polls.
        "--consumer-property allow.auto.create.topics=false",
    ] {
        assert!(helper.contains(needle), "the wait lacks {needle}");
    }
    assert!(
        runs.iter().all(|r| !r.contains("grep -q order-processor")),
        "the first checkpoint record proves nothing about translation"
    );
    let topics = plan_topics().join(" ");
    for (source, target) in [("primary", "dr"), ("dr", "primary")] {
        let call =
            format!("\"$RUNNER_TEMP/wait-checkpoints\" {source} {target} order-processor {topics}");
        assert!(runs.iter().any(|r| r.trim() == call), "no step runs {call}");
    }
    // The group must have read everything, or its checkpoints never reach the end offsets.
    let number_after = |marker: &str, what: &dyn Fn(&str) -> bool| -> usize {
        let run = runs.iter().find(|r| what(r)).expect(marker);
        run.split(marker)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{marker}N in {run}"))
    };
    let per_topic = number_after("seq 1 ", &|r| r.contains("kafka-console-producer.sh"));
    let consumed = number_after("--max-messages ", &|r| {
        r.contains("--group order-processor") && r.contains("--max-messages")
    });
    assert_eq!(consumed, per_topic * plan_topics().len());
}

#[test]
fn the_kafka_18021_caveat_is_written_down_for_the_pinned_image() {
    let image = services()["mirror-maker"]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    let tag = image.split_once(':').unwrap().1;
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Real Apache Kafka for CI")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README's compose section")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needle in ["KAFKA-18021", tag, "Timeout while loading consumer groups"] {
        assert!(section.contains(needle), "README compose section: {needle}");
    }
    let failback =
        std::fs::read_to_string(repo().join("runbooks/mm2/mm2-failback.properties")).unwrap();
    assert!(failback.contains("KAFKA-18021"), "mm2-failback.properties");
}
