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
    let checkpoints =
        position(&|r| r.contains("primary.checkpoints.internal")).expect("wait for checkpoints");
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
