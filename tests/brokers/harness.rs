//! Nisshi brokers as child processes of the test, on free loopback ports, stopped when the test
//! ends (also when it panics); and the kdr binary run against them with a bounded wait.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kdr::kafka::{ClientProperty, Cluster, ClusterRole, ClusterSpec, KafkaError, Reachability};

pub use crate::common::{Run, end_orphaned_hooks, events, wait_until};

/// The Nisshi release the suite is written against; `scripts/test-brokers` installs it.
pub const NISSHI_VERSION: &str = "0.8.1";

/// How long a broker may take from spawn to answering a metadata request.
pub const START_BOUND: Duration = Duration::from_secs(20);

/// How long any single kdr invocation may take before the test calls it hung.
pub const RUN_BOUND: Duration = Duration::from_secs(90);

/// The bound on each `Cluster` operation the tests make.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a broker keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `memory://`: gone when the process stops. The default.
    Memory,
    /// `sqlite://` in the broker's scratch directory: survives [`Nisshi::restart`].
    Sqlite,
}

/// A SCRAM mechanism Nisshi stores credentials for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scram {
    Sha256,
    Sha512,
}

impl Scram {
    /// librdkafka's `sasl.mechanisms` value.
    pub fn mechanism(self) -> &'static str {
        match self {
            Scram::Sha256 => "SCRAM-SHA-256",
            Scram::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// `nisshi user create --mechanism` value.
    fn nisshi_name(self) -> &'static str {
        match self {
            Scram::Sha256 => "scram256",
            Scram::Sha512 => "scram512",
        }
    }
}

/// What makes a broker secured: TLS on its listener (Nisshi's `--cert`/`--key`) and SASL/SCRAM
/// required (`--authentication`), with one user whose credentials the harness itself uses.
#[derive(Clone)]
pub struct Secured {
    /// PEM certificate chain for `--cert`.
    pub cert: PathBuf,
    /// PEM private key for `--key`.
    pub key: PathBuf,
    /// PEM of the CA that signed `cert`: the clients' `ssl.ca.location`.
    pub ca: PathBuf,
    pub mechanism: Scram,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Secured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secured")
            .field("cert", &self.cert)
            .field("ca", &self.ca)
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Secured {
    /// The librdkafka properties of a client that connects as the user (`SASL_SSL`).
    pub fn client_properties(&self) -> Vec<ClientProperty> {
        vec![
            ClientProperty::new("security.protocol", "SASL_SSL"),
            ClientProperty::new("ssl.ca.location", self.ca.display().to_string()),
            ClientProperty::new("sasl.mechanisms", self.mechanism.mechanism()),
            ClientProperty::new("sasl.username", self.user.clone()),
            ClientProperty::secret("sasl.password", self.password.clone()),
        ]
    }
}

/// One Nisshi broker process (a one-broker cluster). Dropping it kills and reaps the process.
pub struct Nisshi {
    name: String,
    storage: Storage,
    secured: Option<Secured>,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    started_in: Duration,
}

impl std::fmt::Debug for Nisshi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nisshi")
            .field("name", &self.name)
            .field("bootstrap", &self.bootstrap())
            .field("storage", &self.storage)
            .field("secured", &self.secured)
            .finish_non_exhaustive()
    }
}

/// The `nisshi` on PATH, checked once per test process: a missing or wrong broker fails every
/// broker test with the same instruction, never a skip.
pub fn nisshi_binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BINARY.get_or_init(|| {
        let path = std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("nisshi"))
                    .find(|candidate| candidate.is_file())
            })
            .ok_or_else(|| {
                "nisshi is not on PATH: run scripts/test-brokers (or `make test-brokers`) to install \
                 the pinned Nisshi broker the real-broker tests need"
                    .to_owned()
            })?;
        let output = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("failed to run {} --version: {e}", path.display()))?;
        let version = String::from_utf8_lossy(&output.stdout);
        if !version.split_whitespace().any(|word| word == NISSHI_VERSION) {
            return Err(format!(
                "{} reports {:?}, not Nisshi {NISSHI_VERSION}: run scripts/test-brokers",
                path.display(),
                version.trim()
            ));
        }
        Ok(path)
    });
    match found {
        Ok(path) => path,
        Err(why) => panic!("{why}"),
    }
}

/// A port that was free on 127.0.0.1 a moment ago. The broker binds it right after; if another
/// process took it meanwhile, [`Nisshi::start`] tries again with a new one.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Creates each topic with `partitions` partitions and replication factor 1, one request per
/// topic (Nisshi takes at most 10 000 partitions per CreateTopics request).
pub fn create_topics(cluster: &Cluster, topics: &[String], partitions: i32) {
    block_on(async {
        for topic in topics {
            let created = cluster
                .create_topic(topic, partitions, 1, &[])
                .await
                .unwrap_or_else(|e| panic!("create {topic}: {e}"));
            assert_eq!(created, kdr::kafka::TopicCreation::Created, "{topic}");
        }
    });
}

/// A current-thread runtime for the async `Cluster` API in synchronous tests.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

impl Nisshi {
    /// Starts a broker with cluster id `name` on a free loopback port and waits (at most
    /// [`START_BOUND`]) until it answers a metadata request.
    pub fn start(name: &str, storage: Storage) -> Nisshi {
        let mut broker = Nisshi {
            name: name.to_owned(),
            storage,
            secured: None,
            port: 0,
            dir: tempfile::Builder::new()
                .prefix(&format!("nisshi-{name}-"))
                .tempdir()
                .expect("tempdir"),
            child: None,
            started_in: Duration::ZERO,
        };
        // A port taken between our probe and the broker's bind makes the broker exit at once:
        // try another.
        let mut last_failure = String::new();
        for _ in 0..3 {
            broker.port = free_port();
            match broker.spawn_and_wait() {
                Ok(()) => return broker,
                Err(why) => {
                    broker.kill();
                    last_failure = why;
                }
            }
        }
        panic!("failed to start Nisshi broker {name}: {last_failure}");
    }

    /// Starts a broker that takes only TLS connections and requires SASL/SCRAM, with
    /// `secured.user` able to log in, and waits (at most [`START_BOUND`]) until that user's
    /// metadata request is answered.
    ///
    /// Nisshi keeps SCRAM users only in SQL storage and accepts no request but the SASL ones
    /// before a client has logged in, so there is no unauthenticated way to create the first
    /// user on a broker started with `--authentication`. The broker is therefore first started
    /// plain, on `sqlite://` storage, the user is created with Nisshi's own `nisshi user
    /// create` (an AlterUserScramCredentials request), and the broker is restarted on the same
    /// port and storage with `--cert --key --authentication`.
    pub fn start_secured(name: &str, secured: Secured) -> Nisshi {
        let mut broker = Nisshi::start(name, Storage::Sqlite);
        let url = format!("tcp://127.0.0.1:{}", broker.port);
        let created = Running::spawn(
            "nisshi user create",
            Command::new(nisshi_binary())
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("NO_COLOR", "1")
                .args(["user", "create", "--broker", &url])
                .args(["--mechanism", secured.mechanism.nisshi_name()])
                .arg(&secured.user)
                .arg(&secured.password),
        )
        .finish();
        assert_eq!(
            created.code,
            0,
            "nisshi user create {} failed: {created:?}\nbroker output:\n{}",
            secured.user,
            broker.output()
        );
        broker.secured = Some(secured);
        broker.restart();
        broker
    }

    /// `127.0.0.1:port`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How long the last start took, spawn to first metadata answer.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// A kdr `Cluster` for this broker in the given role (logged in as the broker's user when
    /// it is secured).
    pub fn cluster(&self, role: ClusterRole) -> Cluster {
        self.cluster_with_timeout(role, OPERATION_TIMEOUT)
    }

    fn cluster_with_timeout(&self, role: ClusterRole, timeout: Duration) -> Cluster {
        let mut spec = ClusterSpec::new(role, self.bootstrap());
        if let Some(secured) = &self.secured {
            for property in secured.client_properties() {
                spec = spec.with_property(property);
            }
        }
        Cluster::new(spec, timeout).expect("cluster spec")
    }

    /// How this broker is secured, if it is.
    pub fn secured(&self) -> Option<&Secured> {
        self.secured.as_ref()
    }

    /// The broker's own output so far (stdout and stderr), for failure messages.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// Kills the broker and starts it again on the same port with the same storage.
    pub fn restart(&mut self) {
        assert_eq!(
            self.storage,
            Storage::Sqlite,
            "restarting a memory:// broker would lose its data: start it with Storage::Sqlite"
        );
        self.kill();
        self.start_again();
    }

    /// Starts a killed sqlite broker again on the same port with the same storage.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        assert_eq!(
            self.storage,
            Storage::Sqlite,
            "a memory:// broker lost its data"
        );
        if let Err(why) = self.spawn_and_wait() {
            self.kill();
            panic!("failed to restart Nisshi broker {}: {why}", self.name);
        }
    }

    /// Sends `signal` to the broker: SIGSTOP makes it a broker whose kernel still accepts
    /// connections and whose process answers nothing; SIGCONT brings it back.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.pid()).expect("pid");
        // SAFETY: kill(2) on our own unreaped child's pid: it cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    fn storage_url(&self) -> String {
        match self.storage {
            Storage::Memory => format!("memory://{}/", self.name),
            // Nisshi resolves a sqlite:// URL against its working directory, even one that
            // looks absolute (`sqlite:///tmp/x.db` opens `./tmp/x.db`); the broker runs in
            // its scratch directory.
            Storage::Sqlite => "sqlite://broker.db".to_owned(),
        }
    }

    /// `--cert FILE --key FILE --authentication` for a secured broker, nothing otherwise.
    fn security_args(&self) -> Vec<std::ffi::OsString> {
        let Some(secured) = &self.secured else {
            return Vec::new();
        };
        vec![
            "--cert".into(),
            secured.cert.clone().into(),
            "--key".into(),
            secured.key.clone().into(),
            "--authentication".into(),
        ]
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .map_err(|e| format!("open broker.log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("clone log: {e}"))?;
        // Every setting on the command line and nothing from the environment: Nisshi reads
        // LISTENER_URL, STORAGE_ENGINE, SCHEMA_REGISTRY, OTEL_* ... as defaults, and its own
        // default listener is every interface.
        let mut command = Command::new(nisshi_binary());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .args(["broker", "--cluster-id", &self.name])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage_url()])
            .args(["--group-initial-rebalance-delay", "0s"])
            .args(self.security_args())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // If the test process dies without running destructors (SIGKILL, abort), the kernel
        // kills the broker too. The signal follows the spawning thread, which is the test's own
        // thread and outlives the broker: `Nisshi` is dropped on it.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("failed to spawn {}: {e}", nisshi_binary().display()))?;
        self.child = Some(child);
        let cluster = self.cluster_with_timeout(ClusterRole::Primary, Duration::from_secs(2));
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "nisshi exited with {status} before answering; its output:\n{}",
                    self.output()
                ));
            }
            match block_on(cluster.probe()) {
                Ok(Reachability::Reachable(_)) => {
                    self.started_in = started.elapsed();
                    return Ok(());
                }
                // The broker is up and refuses the harness's own TLS or SASL settings: waiting
                // longer will not change that.
                Err(refused @ KafkaError::Authentication { .. }) => {
                    return Err(format!(
                        "{} refused the harness's credentials: {refused}; its output:\n{}",
                        self.bootstrap(),
                        self.output()
                    ));
                }
                _ => {}
            }
            if started.elapsed() > START_BOUND {
                return Err(format!(
                    "no metadata answer from {} within {START_BOUND:?}; its output:\n{}",
                    self.bootstrap(),
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's process id, for a plan's hook to kill it (`kill -9 PID`) at an exact point.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running broker").id()
    }

    /// Kills the broker now (SIGKILL) and reaps it: a data centre going dark.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nisshi {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The two clusters of a DR pair, each one Nisshi process.
#[derive(Debug)]
pub struct Pair {
    pub primary: Nisshi,
    pub dr: Nisshi,
}

impl Pair {
    /// Both brokers with memory storage, cluster ids `primary` and `dr`.
    pub fn start() -> Pair {
        Pair::start_with(Storage::Memory)
    }

    pub fn start_with(storage: Storage) -> Pair {
        Pair {
            primary: Nisshi::start("primary", storage),
            dr: Nisshi::start("dr", storage),
        }
    }
}

/// Runs the built kdr in `dir` with `args`, killing it (and failing the test) after
/// [`RUN_BOUND`].
pub fn kdr(dir: &Path, args: &[&str]) -> Run {
    Running::start(dir, args).finish()
}

/// [`kdr`] with these environment variables set as well (`KDR_LOG` included: it is otherwise
/// removed).
pub fn kdr_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    Running::start_with_env(dir, args, env).finish()
}

/// A kdr process the test has not waited for yet: to signal it (SIGKILL, SIGSTOP) at a point
/// its incident log shows, or to race it against another. Killed and reaped when dropped.
pub struct Running {
    what: &'static str,
    child: Option<Child>,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
    started: Instant,
}

impl Running {
    /// Spawns the built kdr in `dir` with `args`, its output drained on two threads so a chatty
    /// child never blocks on a full pipe.
    pub fn start(dir: &Path, args: &[&str]) -> Running {
        Running::start_with_env(dir, args, &[])
    }

    /// [`Running::start`] with these environment variables set as well (`KDR_LOG` included).
    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        Running::spawn(
            "kdr",
            crate::common::kdr_command(dir, args).envs(env.iter().copied()),
        )
    }

    /// Spawns `command` (any program: `what` names it) the same way.
    fn spawn(what: &'static str, command: &mut Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        Running {
            what,
            child: Some(child),
            out: Some(std::thread::spawn(move || {
                let mut s = String::new();
                let _ = out.read_to_string(&mut s);
                s
            })),
            err: Some(std::thread::spawn(move || {
                let mut s = String::new();
                let _ = err.read_to_string(&mut s);
                s
            })),
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().expect("running").id()).expect("pid")
    }

    /// Sends `signal` (SIGKILL, SIGSTOP, SIGCONT, SIGINT) to the kdr process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own unreaped child's pid: it cannot have been reused.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Whether the process has exited (it stays unreaped until [`Running::finish`]).
    pub fn exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("running");
        // SAFETY: waitid with WNOWAIT only looks; the child stays waitable for `finish`.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        rc == 0 && unsafe { info.si_pid() } != 0
    }

    /// Waits for the process to exit, at most [`RUN_BOUND`] after it started.
    pub fn finish(mut self) -> Run {
        let mut child = self.child.take().expect("running");
        let status: ExitStatus = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if self.started.elapsed() > RUN_BOUND {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not finish within {RUN_BOUND:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let drained = |t: Option<std::thread::JoinHandle<String>>| {
            t.and_then(|t| t.join().ok()).unwrap_or_default()
        };
        Run::new(status, drained(self.out.take()), drained(self.err.take()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls the newest incident log under `dir` until an event satisfies `pred`, at most `bound`;
/// returns that event.
pub fn wait_for_event(
    dir: &Path,
    bound: Duration,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(log) = logs(dir).pop() {
            // A line being written may be torn: read only whole lines.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let found = text
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| pred(e));
            if let Some(event) = found {
                return event;
            }
        }
        assert!(
            start.elapsed() < bound,
            "timed out after {bound:?} waiting for {what} in the incident log"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A "broker" that accepts connections on a loopback port and never answers a byte: a hung
/// process, a black-holing load balancer. Stops accepting (and drops every connection) when
/// dropped.
pub struct Silent {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    pub fn start() -> Silent {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Silent {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The incident logs under `dir/incidents`, sorted by name (names start with a UTC timestamp).
pub fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.join("incidents"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    logs
}
