//! kdr over TLS and SASL/SCRAM: both Nisshi brokers take only TLS connections (`--cert/--key`)
//! and require a SCRAM login (`--authentication`); the plan names the CA and takes the user and
//! password from `${env:…}`.
//!
//! A right password runs a failover, `kdr status` and `kdr lag`. A wrong password, or a CA that
//! did not sign the brokers' certificate, fails within seconds with an authentication error,
//! far below kdr's per-operation bound, instead of timing out. And nothing any of those runs
//! writes (stdout, stderr with every tracing target at trace level, the incident logs, any other
//! file under the run's directory) holds the user name or either password.
//!
//! The CA and the brokers' certificate are made by each test at run time with `rcgen`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kdr::kafka::{ClientProperty, Cluster, ClusterRole, ClusterSpec, KafkaError, TopicCreation};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::harness::{
    Nisshi, OPERATION_TIMEOUT, Run, Scram, Secured, block_on, events, kdr_with_env, logs,
};

const USER_VAR: &str = "KDR_TEST_SASL_USERNAME";
const PASSWORD_VAR: &str = "KDR_TEST_SASL_PASSWORD";
/// Distinctive values, so finding one in the output can only be a leak. The user name comes
/// from the environment too, which makes it a secret to kdr.
const USER: &str = "svc-kdr-7c1e9a40";
const PASSWORD: &str = "Pw-5f2b8d0e-correct-horse";
const WRONG_PASSWORD: &str = "Pw-91ad44c3-wrong-battery";

/// Records on the primary's `orders`, none replicated: the lag `kdr lag` must report.
const RECORDS: i64 = 4;

/// kdr's bound on each Kafka operation of a step (`replication::OPERATION_TIMEOUT`). A refused
/// login must end a run before even one such operation could have timed out.
const KDR_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// What "fails fast" means here: the whole kdr run, process start to exit, well below one
/// operation's bound (a timed-out probe of each cluster would take twice that bound).
const FAST: Duration = Duration::from_secs(4);

/// A throwaway CA and the brokers' certificate for 127.0.0.1 and localhost, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl Pki {
    fn generate() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("kdr-pki-")
            .tempdir()
            .expect("tempdir");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_params = ca_params("kdr test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");

        let pki = Pki {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            dir,
        };
        std::fs::write(&pki.ca, ca_cert.pem()).expect("write ca.pem");
        std::fs::write(&pki.cert, cert.pem()).expect("write server.pem");
        // PKCS#8 PEM, which Nisshi's --key takes.
        std::fs::write(&pki.key, key.serialize_pem()).expect("write server.key");
        pki
    }

    /// A CA of its own that signed nothing the brokers present.
    fn stranger_ca(&self) -> PathBuf {
        let key = KeyPair::generate().expect("key");
        let cert = ca_params("some other CA")
            .self_signed(&key)
            .expect("certificate");
        let path = self.dir.path().join("stranger-ca.pem");
        std::fs::write(&path, cert.pem()).expect("write stranger-ca.pem");
        path
    }

    fn secured(&self, mechanism: Scram) -> Secured {
        Secured {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
            mechanism,
            user: USER.to_owned(),
            password: PASSWORD.to_owned(),
        }
    }
}

/// Both clusters secured, SCRAM-SHA-512 on the primary and SCRAM-SHA-256 on DR, with `orders`
/// (holding [`RECORDS`] records) on the primary and its remote topic on DR. Everything set up
/// over `SASL_SSL` with kdr's own Kafka layer.
struct SecuredPair {
    // Declared first: the brokers stop before their certificate files go.
    primary: Nisshi,
    dr: Nisshi,
    pki: Pki,
}

impl SecuredPair {
    fn start() -> SecuredPair {
        let pki = Pki::generate();
        let primary = Nisshi::start_secured("primary", pki.secured(Scram::Sha512));
        let dr = Nisshi::start_secured("dr", pki.secured(Scram::Sha256));
        let source = primary.cluster(ClusterRole::Primary);
        let target = dr.cluster(ClusterRole::Dr);
        block_on(async {
            for (cluster, topic) in [(&source, "orders"), (&target, "primary.orders")] {
                let created = cluster
                    .create_topic(topic, 3, 1, &[])
                    .await
                    .unwrap_or_else(|e| panic!("create {topic}: {e}"));
                assert_eq!(created, TopicCreation::Created, "{topic}");
            }
            for i in 0..RECORDS {
                let offset = source
                    .produce_one("orders", b"k", format!("v{i}").as_bytes())
                    .await
                    .expect("produce to orders over SASL_SSL");
                assert_eq!(offset, i);
            }
        });
        SecuredPair { primary, dr, pki }
    }

    /// Writes `drill.yaml` into `dir`: both clusters over `SASL_SSL` trusting `ca`, the
    /// credentials from the environment, and an exec step that carelessly prints the password.
    fn plan(&self, dir: &Path, ca: &Path) {
        self.plan_with(dir, ca, PASSWORD_VAR);
    }

    /// As [`SecuredPair::plan`], with the primary's password from `primary_password_var`.
    fn plan_with(&self, dir: &Path, ca: &Path, primary_password_var: &str) {
        let client = |broker: &Nisshi, password_var: &str| {
            let mechanism = broker.secured().expect("secured broker").mechanism;
            format!(
                "    bootstrap_servers: \"{}\"\n    client:\n      security.protocol: SASL_SSL\n      ssl.ca.location: \"{}\"\n      sasl.mechanisms: {}\n      sasl.username: \"${{env:{USER_VAR}}}\"\n      sasl.password: \"${{env:{password_var}}}\"\n",
                broker.bootstrap(),
                ca.display(),
                mechanism.mechanism(),
            )
        };
        let text = format!(
            "version: 1\nname: drill\nclusters:\n  primary:\n{}  dr:\n{}replication: {{ topics: [orders] }}\nfailover:\n  - declare: {{}}\n  - exec: {{ run: 'echo \"hook sees password ${PASSWORD_VAR} and user ${USER_VAR}\"' }}\nfailback:\n  - exec: {{ run: \"true\" }}\n",
            client(&self.primary, primary_password_var),
            client(&self.dr, PASSWORD_VAR),
        );
        std::fs::write(dir.join("drill.yaml"), text).expect("plan");
    }
}

/// Runs kdr in `dir` with the credentials in the environment and every tracing target at trace
/// level (debug included), and times the run.
fn kdr_secured(dir: &Path, password: &str, args: &[&str]) -> (Run, Duration) {
    let started = Instant::now();
    let run = kdr_with_env(
        dir,
        args,
        &[
            (USER_VAR, USER),
            (PASSWORD_VAR, password),
            ("KDR_LOG", "trace"),
        ],
    );
    (run, started.elapsed())
}

const FAILOVER: &[&str] = &[
    "failover",
    "--plan",
    "drill.yaml",
    "--yes",
    "--operator",
    "alice",
    "--reason",
    "drill",
    "--output",
    "json",
];

/// Panics if `text` holds the user name or either password, naming where and showing the line.
fn assert_no_secret(what: &str, text: &str) {
    for secret in [USER, PASSWORD, WRONG_PASSWORD] {
        if let Some(line) = text.lines().find(|line| line.contains(secret)) {
            panic!("{what} holds the secret {secret:?}: {line}");
        }
    }
}

/// Every file under `dir` (incident logs, any report), recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The secret grep: the run's stdout and stderr and every file it left under `dir`.
fn assert_run_leaks_nothing(dir: &Path, runs: &[(&str, &Run)]) {
    for (name, run) in runs {
        assert_no_secret(&format!("stdout of {name}"), &run.stdout);
        assert_no_secret(&format!("stderr of {name}"), &run.stderr);
    }
    let files = files_under(dir);
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|x| x == "jsonl")),
        "no incident log under {}: {files:?}",
        dir.display()
    );
    for file in files {
        let bytes = std::fs::read(&file).expect("read file");
        assert_no_secret(
            &file.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
    }
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {run:?}"))
}

#[test]
fn failover_status_and_lag_run_over_sasl_ssl_with_scram_credentials_from_the_environment() {
    let pair = SecuredPair::start();
    let dir = tempfile::tempdir().expect("tempdir");
    pair.plan(dir.path(), &pair.pki.ca);

    let (failover, took) = kdr_secured(dir.path(), PASSWORD, FAILOVER);
    assert_eq!(failover.code, 0, "{failover:?}");
    let summary = json(&failover);
    assert_eq!(summary["outcome"], "succeeded", "{failover:?}");
    let declared = summary["steps"][0]["message"].as_str().unwrap_or_default();
    assert!(
        declared.contains("write authority moved to dr (epoch 1)"),
        "{failover:?}"
    );
    // Trace level really was on: rdkafka's own trace lines made it to stderr.
    assert!(failover.stderr.contains("TRACE"), "{failover:?}");
    // The hook printed the password and the user; kdr masked both before showing the line
    // and before logging the hook's output.
    let masked = "hook sees password *** and user ***";
    assert!(failover.stderr.contains(masked), "{failover:?}");
    let log = logs(dir.path()).pop().expect("an incident log");
    let events = events(&log);
    let output = events
        .iter()
        .find(|e| e["name"] == "output")
        .expect("the hook's output in the incident log");
    assert!(output.to_string().contains(masked), "{output}");
    let finished: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| format!("{} {}", e["step"], e["status"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(finished, ["1 ok", "2 ok"], "{failover:?}");
    eprintln!("failover over SASL_SSL took {took:?}");

    let (status, _) = kdr_secured(
        dir.path(),
        PASSWORD,
        &["status", "--plan", "drill.yaml", "--output", "json"],
    );
    let report = json(&status);
    for cluster in report["clusters"].as_array().expect("clusters") {
        assert_eq!(cluster["reachable"], true, "{status:?}");
        assert_eq!(cluster["error"], serde_json::Value::Null, "{status:?}");
    }
    for role in ["primary", "dr"] {
        let record = &report["authority"][role]["record"];
        assert_eq!(record["owner"], "dr", "{role}: {status:?}");
        assert_eq!(record["epoch"], 1, "{role}: {status:?}");
    }

    let (lag, _) = kdr_secured(
        dir.path(),
        PASSWORD,
        &["lag", "--plan", "drill.yaml", "--output", "json"],
    );
    assert_eq!(lag.code, 0, "{lag:?}");
    let lag_report = json(&lag);
    assert_eq!(lag_report["source_reachable"], true, "{lag:?}");
    assert_eq!(
        lag_report["partitions"].as_array().map(Vec::len),
        Some(3),
        "{lag:?}"
    );
    assert_eq!(lag_report["total_lag"], RECORDS, "{lag:?}");

    assert_run_leaks_nothing(
        dir.path(),
        &[("failover", &failover), ("status", &status), ("lag", &lag)],
    );
}

#[test]
fn a_wrong_password_fails_fast_with_an_authentication_error_and_leaks_nothing() {
    let pair = SecuredPair::start();
    let dir = tempfile::tempdir().expect("tempdir");
    pair.plan(dir.path(), &pair.pki.ca);

    let (failover, took) = kdr_secured(dir.path(), WRONG_PASSWORD, FAILOVER);
    eprintln!("failover with a wrong password failed in {took:?}");
    assert_eq!(failover.code, 1, "{failover:?}");
    let summary = json(&failover);
    assert_eq!(summary["outcome"], "failed", "{failover:?}");
    let message = summary["message"].as_str().unwrap_or_default();
    // KafkaError::Authentication's wording, naming the cluster and what was refused: the
    // primary, asked first, which declare will not call down for refusing kdr.
    assert!(
        message.contains("probe on the primary cluster: authentication failed:")
            && message.contains("SASL authentication error"),
        "{failover:?}"
    );
    assert!(!message.contains("timed out"), "{failover:?}");
    assert!(
        took < FAST,
        "a refused login took {took:?} to fail (bound {FAST:?}; one operation may take \
         {KDR_OPERATION_TIMEOUT:?}): {failover:?}"
    );
    // Nothing was declared: the authority never moved.
    assert!(
        !summary["steps"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("write authority moved"),
        "{failover:?}"
    );

    let (lag, took) = kdr_secured(
        dir.path(),
        WRONG_PASSWORD,
        &["lag", "--plan", "drill.yaml", "--output", "json"],
    );
    eprintln!("lag with a wrong password failed in {took:?}");
    assert_eq!(lag.code, 1, "{lag:?}");
    assert!(
        lag.stderr
            .contains("on the dr cluster: authentication failed:")
            && lag.stderr.contains("SASL authentication error"),
        "{lag:?}"
    );
    assert!(took < FAST, "lag took {took:?} to fail: {lag:?}");

    assert_run_leaks_nothing(dir.path(), &[("failover", &failover), ("lag", &lag)]);
}

#[test]
fn tls_with_a_ca_that_did_not_sign_the_brokers_certificate_fails_fast_as_authentication() {
    let pair = SecuredPair::start();
    let dir = tempfile::tempdir().expect("tempdir");
    pair.plan(dir.path(), &pair.pki.stranger_ca());

    let (lag, took) = kdr_secured(
        dir.path(),
        PASSWORD,
        &["lag", "--plan", "drill.yaml", "--output", "json"],
    );
    eprintln!("lag with an unknown CA failed in {took:?}");
    assert_eq!(lag.code, 1, "{lag:?}");
    assert!(
        lag.stderr
            .contains("on the dr cluster: authentication failed:")
            && lag.stderr.contains("certificate verify failed"),
        "{lag:?}"
    );
    assert!(took < FAST, "lag took {took:?} to fail: {lag:?}");
    assert_no_secret("stdout of lag", &lag.stdout);
    assert_no_secret("stderr of lag", &lag.stderr);
}

#[test]
fn a_write_with_a_wrong_password_fails_fast_with_an_authentication_error() {
    let pki = Pki::generate();
    let broker = Nisshi::start_secured("primary", pki.secured(Scram::Sha512));
    let mut spec = ClusterSpec::new(ClusterRole::Primary, broker.bootstrap());
    for property in pki.secured(Scram::Sha512).client_properties() {
        spec = spec.with_property(if property.key == "sasl.password" {
            ClientProperty::secret("sasl.password", WRONG_PASSWORD)
        } else {
            property
        });
    }
    let cluster = Cluster::new(spec, OPERATION_TIMEOUT).expect("cluster");
    let started = Instant::now();
    let written = block_on(cluster.produce_one("orders", b"k", b"v"));
    let took = started.elapsed();
    eprintln!("a write with a wrong password failed in {took:?}");
    match &written {
        Err(KafkaError::Authentication {
            cluster, detail, ..
        }) => {
            assert_eq!(*cluster, ClusterRole::Primary);
            assert!(detail.contains("SASL authentication error"), "{detail}");
        }
        other => panic!("expected an authentication error, got {other:?} after {took:?}"),
    }
    assert!(took < FAST, "the write took {took:?} to fail");
    assert_no_secret("the error", &written.unwrap_err().to_string());
}

#[test]
fn a_primary_that_refuses_the_credentials_is_not_declared_down() {
    let pair = SecuredPair::start();
    let dir = tempfile::tempdir().expect("tempdir");
    pair.plan_with(dir.path(), &pair.pki.ca, "KDR_TEST_PRIMARY_PASSWORD");
    let started = Instant::now();
    let run = kdr_with_env(
        dir.path(),
        FAILOVER,
        &[
            (USER_VAR, USER),
            (PASSWORD_VAR, PASSWORD),
            ("KDR_TEST_PRIMARY_PASSWORD", WRONG_PASSWORD),
        ],
    );
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{run:?}");
    let summary = json(&run);
    let message = summary["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the primary cluster answered and refused kdr's credentials")
            && message.contains("will not declare it down"),
        "{run:?}"
    );
    assert!(took < FAST, "took {took:?}: {run:?}");
    // Nothing moved: DR was never told it owns writes.
    let dr = block_on(kdr::authority::read(
        &pair.dr.cluster(ClusterRole::Dr),
        "drill",
    ));
    assert!(dr.record().is_none(), "{dr:?}");
    assert_run_leaks_nothing(dir.path(), &[("failover", &run)]);
}
