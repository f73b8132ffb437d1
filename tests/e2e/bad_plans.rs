//! A corpus of malformed plans: every one is refused with exit 2 and a message that points
//! somewhere, none panics, none takes long.

use std::time::{Duration, Instant};

use crate::harness::Scratch;

const GOOD: &str = r#"version: 1
name: corpus
clusters:
  primary: { bootstrap_servers: "127.0.0.1:9092", client: { security.protocol: PLAINTEXT } }
  dr: { bootstrap_servers: "127.0.0.1:9093" }
replication:
  policy: default
  topics: [orders, "re:payments\\..*"]
  groups: [billing]
failover:
  - declare: { confirm: plan-name }
  - quiesce_producers: { run: "true", idle_for: 5s, timeout: 1m }
  - wait_replication: { max_lag_records: 0, timeout: 60s, on_timeout: accept_rpo }
  - repoint: { run: "true" }
  - translate_offsets: { groups: all }
  - validate: { within: 5m }
failback:
  - check_reverse_replication: {}
  - exec: { run: "true", timeout: 10s }
  - pause: { message: "go" }
"#;

/// Plans that must each be refused, with what they break.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut sub = |name: &str, from: &str, to: &str| {
        assert!(
            GOOD.contains(from),
            "{name}: `{from}` not in the reference plan"
        );
        out.push((name.to_owned(), GOOD.replacen(from, to, 1).into_bytes()));
    };
    // Wrong types.
    sub("version as text", "version: 1", "version: one");
    sub("version as list", "version: 1", "version: [1]");
    sub("name as map", "name: corpus", "name: { a: 1 }");
    sub("clusters as list", "clusters:\n", "clusters: []\nx:\n");
    sub(
        "bootstrap as list",
        "bootstrap_servers: \"127.0.0.1:9093\"",
        "bootstrap_servers: [a, b]",
    );
    sub(
        "client as list",
        "client: { security.protocol: PLAINTEXT }",
        "client: [x]",
    );
    sub(
        "topics as text",
        "topics: [orders, \"re:payments\\\\..*\"]",
        "topics: orders",
    );
    sub("groups as map", "groups: [billing]", "groups: { a: b }");
    sub(
        "max_lag as text",
        "max_lag_records: 0",
        "max_lag_records: none",
    );
    sub(
        "max_lag negative",
        "max_lag_records: 0",
        "max_lag_records: -5",
    );
    sub("idle_for as list", "idle_for: 5s", "idle_for: [5s]");
    sub("confirm unknown", "confirm: plan-name", "confirm: maybe");
    sub("policy unknown", "policy: default", "policy: mirror");
    sub(
        "on_timeout unknown",
        "on_timeout: accept_rpo",
        "on_timeout: shrug",
    );
    sub("failover as map", "failover:\n", "failover: {}\nunused:\n");
    sub(
        "step as text",
        "  - validate: { within: 5m }",
        "  - validate",
    );
    sub(
        "step with two kinds",
        "  - validate: { within: 5m }",
        "  - { validate: { within: 5m }, exec: { run: x } }",
    );
    sub("step as number", "  - validate: { within: 5m }", "  - 42");
    sub("pause message as list", "message: \"go\"", "message: [go]");
    sub(
        "allow_rewind as text",
        "groups: all }",
        "groups: all, allow_rewind: sometimes }",
    );
    // Unknown keys, at every level.
    sub(
        "unknown top-level key",
        "version: 1",
        "version: 1\nverison: 1",
    );
    sub(
        "unknown cluster",
        "  dr: {",
        "  drr: { bootstrap_servers: \"a:1\" }\n  dr: {",
    );
    sub(
        "unknown cluster key",
        "bootstrap_servers: \"127.0.0.1:9093\"",
        "bootstrap_servers: \"127.0.0.1:9093\", alias: x",
    );
    sub(
        "unknown replication key",
        "policy: default",
        "policy: default\n  polcy: default",
    );
    sub(
        "unknown step option",
        "idle_for: 5s,",
        "idle_for: 5s, idel_for: 5s,",
    );
    sub("unknown step kind", "  - repoint:", "  - repiont:");
    sub("timeout typo", "within: 5m", "within: 5m, timout: 1m");
    // Bad durations.
    sub("duration without unit", "idle_for: 5s", "idle_for: 5");
    sub(
        "duration unknown unit",
        "idle_for: 5s",
        "idle_for: 5 parsecs",
    );
    sub("duration zero", "within: 5m", "within: 0s");
    sub("duration negative", "timeout: 60s", "timeout: -60s");
    sub("duration garbage", "timeout: 10s", "timeout: soon");
    sub(
        "idle_for longer than timeout",
        "idle_for: 5s, timeout: 1m",
        "idle_for: 5m, timeout: 1m",
    );
    // Bad regexes and names.
    sub("regex unclosed group", "re:payments\\\\..*", "re:payments(");
    sub("regex bad class", "re:payments\\\\..*", "re:[z-a]");
    sub("regex bad repetition", "re:payments\\\\..*", "re:*x");
    sub("empty topic", "topics: [orders,", "topics: [\"\",");
    sub(
        "no topics",
        "topics: [orders, \"re:payments\\\\..*\"]",
        "topics: []",
    );
    sub("plan name with slash", "name: corpus", "name: a/b");
    sub("empty plan name", "name: corpus", "name: \"\"");
    sub("bad bootstrap", "127.0.0.1:9093", "dr-host-without-port");
    sub("bad port", "127.0.0.1:9093", "127.0.0.1:99999");
    sub(
        "duplicate aliases",
        "dr: { bootstrap_servers: \"127.0.0.1:9093\" }",
        "dr: { bootstrap_servers: \"127.0.0.1:9093\", mm2_alias: primary }",
    );
    sub(
        "client sets bootstrap",
        "security.protocol: PLAINTEXT",
        "bootstrap.servers: \"x:1\"",
    );
    sub(
        "client secret in clear",
        "security.protocol: PLAINTEXT",
        "sasl.password: hunter2",
    );
    sub(
        "missing env var",
        "security.protocol: PLAINTEXT",
        "sasl.password: \"${env:KDR_CORPUS_NOT_SET}\"",
    );
    sub(
        "unknown substitution",
        "run: \"true\" }",
        "run: \"${vault:x}\" }",
    );
    sub(
        "empty command",
        "run: \"true\", timeout: 10s",
        "run: \"\", timeout: 10s",
    );
    sub(
        "repoint without action",
        "repoint: { run: \"true\" }",
        "repoint: {}",
    );
    sub("wait without on_timeout", ", on_timeout: accept_rpo", "");
    sub("wait without timeout", "timeout: 60s, ", "");
    sub(
        "empty failback",
        "failback:\n  - check_reverse_replication: {}\n  - exec: { run: \"true\", timeout: 10s }\n  - pause: { message: \"go\" }\n",
        "failback: []\n",
    );
    sub(
        "missing failback",
        "failback:\n  - check_reverse_replication: {}\n  - exec: { run: \"true\", timeout: 10s }\n  - pause: { message: \"go\" }\n",
        "",
    );
    sub(
        "two declares",
        "  - declare: { confirm: plan-name }\n",
        "  - declare: {}\n  - declare: {}\n",
    );
    sub("version 2", "version: 1", "version: 2");
    // Broken YAML.
    sub(
        "unclosed flow map",
        "  - validate: { within: 5m }",
        "  - validate: { within: 5m",
    );
    sub("tab indentation", "  dr: {", "\tdr: {");
    sub("duplicate key", "version: 1", "version: 1\nversion: 1");
    sub(
        "bad indentation",
        "  policy: default",
        "    policy: default\n  x",
    );
    out.push(("empty file".into(), Vec::new()));
    out.push(("only a comment".into(), b"# nothing here\n".to_vec()));
    out.push(("a list, not a map".into(), b"- version: 1\n".to_vec()));
    out.push((
        "truncated mid-document".into(),
        GOOD.as_bytes()[..GOOD.len() / 2].to_vec(),
    ));
    out.push((
        "truncated mid-string".into(),
        GOOD.as_bytes()[..GOOD.find("127.0.0.1:9093").unwrap_or(0) + 4].to_vec(),
    ));
    // Not UTF-8.
    let mut latin1 = GOOD.as_bytes().to_vec();
    latin1.splice(20..20, [0xe9, 0xff]);
    out.push(("not utf-8".into(), latin1));
    out.push((
        "utf-16".into(),
        GOOD.encode_utf16().flat_map(u16::to_le_bytes).collect(),
    ));
    // A billion laughs: aliases that expand exponentially.
    let mut bomb = String::from("version: 1\nname: bomb\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    out.push(("alias bomb".into(), bomb.into_bytes()));
    // Huge: over the 1 MiB a plan may be.
    out.push((
        "huge file".into(),
        format!("{GOOD}# {}\n", "x".repeat(1_100_000)).into_bytes(),
    ));
    // Deep nesting.
    out.push((
        "deep nesting".into(),
        format!("{GOOD}x: {}{}\n", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
    ));
    out
}

#[test]
fn every_malformed_plan_gets_exit_2_and_a_located_message_quickly() {
    let s = Scratch::new();
    s.write("good.yaml", GOOD);
    let good = s.kdr(&["plan", "check", "good.yaml"]);
    assert_eq!(good.code, 0, "the reference plan must be valid: {good:?}");

    let corpus = corpus();
    assert!(
        corpus.len() >= 50,
        "only {} plans in the corpus",
        corpus.len()
    );
    let location = regex::Regex::new(r"^error: bad-\d+\.yaml(:\d+:\d+)?: ").expect("regex");
    let mut failures = Vec::new();
    for (i, (name, bytes)) in corpus.iter().enumerate() {
        let file = format!("bad-{i}.yaml");
        std::fs::write(s.file(&file), bytes).expect("write");
        let started = Instant::now();
        let run = s.kdr(&["plan", "check", &file]);
        let took = started.elapsed();
        let first = run.stderr.lines().next().unwrap_or("");
        if run.code != 2 {
            failures.push(format!("{name}: exit {} instead of 2\n{run:?}", run.code));
        } else if !location.is_match(first) {
            failures.push(format!("{name}: no location in `{first}`"));
        } else if run.stderr.contains("panicked") {
            failures.push(format!("{name}: panicked\n{run:?}"));
        } else if took > Duration::from_secs(2) {
            // A bound, not a benchmark: the process, start-up included, in a debug build.
            failures.push(format!("{name}: took {took:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed plans were mishandled:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
}
