//! The engine alone: plans of `exec` steps need no cluster; the authority check runs against
//! librdkafka's mock cluster on loopback, in this process.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rdkafka::mocking::MockCluster;

use super::*;
use crate::authority::{AuthorityRecord, RECORD_VERSION};
use crate::journal::Event;
use crate::plan::{SystemSubstitutions, load_bytes};

/// A plan whose failover is `failover` (YAML list items), its log and lock in `dir`.
fn plan_in(dir: &Path, servers: (&str, &str), failover: &str) -> Plan {
    let text = format!(
        "version: 1\nname: p\nclusters:\n  primary: {{ bootstrap_servers: \"{}\" }}\n  dr: {{ bootstrap_servers: \"{}\" }}\nreplication: {{ topics: [t] }}\nfailover:\n{failover}failback:\n  - exec: {{ run: \"true\" }}\n",
        servers.0, servers.1
    );
    let mut plan = load_bytes(
        Path::new("p.yaml"),
        text.as_bytes(),
        dir,
        &SystemSubstitutions,
    )
    .expect("plan");
    plan.incident_log_dir = dir.to_owned();
    plan
}

fn plan(dir: &Path, failover: &str) -> Plan {
    plan_in(dir, ("a:1", "b:1"), failover)
}

fn unattended() -> RunRequest {
    RunRequest {
        direction: Direction::Failover,
        dry_run: false,
        yes: true,
        operator: Some("alice".to_owned()),
        reason: Some("drill".to_owned()),
        resume: None,
        log: None,
        interrupted_step: None,
        force: false,
        hook_env: Vec::new(),
        failover_log: None,
    }
}

/// Every event a subscriber saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Event>>>);

impl Seen {
    fn sinks(&self) -> Vec<Box<dyn EventSink>> {
        let seen = Arc::clone(&self.0);
        vec![Box::new(move |event: &Event| {
            seen.lock().expect("lock").push(event.clone());
        })]
    }

    fn events(&self) -> Vec<Event> {
        self.0.lock().expect("lock").clone()
    }
}

/// Run `request` unattended, with a Ctrl-C that never comes unless `cancelled`.
async fn run_with(
    plan: &Plan,
    request: &RunRequest,
    cancelled: bool,
) -> (Result<RunReport, EngineError>, Seen) {
    let seen = Seen::default();
    let (cancel_tx, cancel_rx) = watch::channel(cancelled);
    let result = run(plan, request, Gate::Unattended, seen.sinks(), cancel_rx).await;
    drop(cancel_tx);
    (result, seen)
}

fn statuses(report: &RunReport) -> Vec<(usize, StepStatus)> {
    report.steps.iter().map(|s| (s.step, s.status)).collect()
}

#[test]
fn preflight_refuses_yes_without_who_and_why_and_force_without_reason() {
    let mut no_operator = unattended();
    no_operator.operator = None;
    assert!(matches!(
        preflight(&no_operator, Gate::Unattended),
        Err(EngineError::Usage(m)) if m.starts_with("--yes answers the human gates")
    ));
    let mut forced = unattended();
    forced.yes = false;
    forced.reason = None;
    forced.force = true;
    assert!(matches!(
        preflight(&forced, Gate::Unattended),
        Err(EngineError::Usage(m)) if m.starts_with("--force needs --reason")
    ));
    let gate = preflight(&unattended(), Gate::Unattended).expect("a complete request");
    assert!(gate.unattended());
}

#[tokio::test]
async fn exec_steps_run_in_order_and_every_logged_event_reaches_the_sinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(
        dir.path(),
        "  - exec: { run: \"echo one\" }\n  - exec: { run: \"true\" }\n",
    );
    let (result, seen) = run_with(&plan, &unattended(), false).await;
    let report = result.expect("run");
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.message, "2 steps done");
    assert_eq!(
        statuses(&report),
        vec![(1, StepStatus::Ok), (2, StepStatus::Ok)]
    );
    let logged = journal::read(&report.log).expect("log").events;
    assert_eq!(
        seen.events(),
        logged,
        "the sink sees exactly what is logged"
    );
    let names: Vec<&str> = logged.iter().map(|e| e.body.name()).collect();
    assert_eq!(
        names,
        // Each hook: its start (with its pid), then its output.
        [
            "run_started",
            "step_started",
            "observation",
            "observation",
            "step_finished",
            "step_started",
            "observation",
            "observation",
            "step_finished",
            "run_finished"
        ]
    );
    assert!(
        !lock::lock_path(dir.path(), "p").exists(),
        "the lock is released at the end"
    );
}

#[tokio::test]
async fn a_failed_step_stops_the_run_and_resume_continues_at_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flag = dir.path().join("fixed");
    let plan = plan(
        dir.path(),
        &format!(
            "  - exec: {{ run: \"test -f {}\", idempotent: true }}\n  - exec: {{ run: \"true\" }}\n",
            flag.display()
        ),
    );
    let (first, _) = run_with(&plan, &unattended(), false).await;
    let first = first.expect("run");
    assert_eq!(first.outcome, Outcome::Failed);
    assert_eq!(statuses(&first), vec![(1, StepStatus::Failed)]);
    assert!(
        first.message.starts_with("step 1 (exec) failed: the command exited with status 1; fix the cause, then continue with `kdr failover --plan p.yaml --resume "),
        "{}",
        first.message
    );

    std::fs::write(&flag, "").expect("fix the cause");
    let mut again = unattended();
    again.resume = Some(first.log.clone());
    let (second, seen) = run_with(&plan, &again, false).await;
    let second = second.expect("resumed run");
    assert_eq!(second.outcome, Outcome::Succeeded);
    assert_eq!(second.run_id, first.run_id);
    assert_eq!(
        statuses(&second),
        vec![(1, StepStatus::Ok), (2, StepStatus::Ok)]
    );
    assert!(seen.events().iter().any(|e| matches!(
        &e.body,
        EventBody::Decision { what, .. } if what == "resume at step 1"
    )));
}

/// A log whose run was cut off inside step 1 (started, never finished).
fn cut_off_log(plan: &Plan, path: &Path) {
    let mut journal = Journal::create(path, "r1").expect("log");
    journal
        .append(EventBody::RunStarted {
            plan: plan.name.clone(),
            fingerprint: plan.fingerprint.clone(),
            plan_file: "p.yaml".into(),
            direction: Direction::Failover,
            operator: "bob".into(),
            reason: "outage".into(),
            dry_run: false,
            resumed: false,
            kdr_version: "0".into(),
            host: "h".into(),
            pid: 1,
        })
        .expect("append");
    journal
        .append(EventBody::StepStarted {
            step: 1,
            kind: "exec".into(),
            summary: String::new(),
        })
        .expect("append");
}

#[tokio::test]
async fn a_cut_off_step_that_is_not_idempotent_runs_again_only_when_the_operator_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ran = dir.path().join("ran");
    let plan = plan(
        dir.path(),
        &format!(
            "  - exec: {{ run: \"touch {}\" }}\n  - exec: {{ run: \"true\" }}\n",
            ran.display()
        ),
    );
    let log = dir.path().join("cut.jsonl");
    cut_off_log(&plan, &log);
    let mut request = unattended();
    request.resume = Some(log.clone());
    assert!(matches!(
        read_resume(&plan, &request, &Gate::Unattended),
        Err(EngineError::Usage(m)) if m.contains("pass --interrupted-step rerun or --interrupted-step skip")
    ));

    request.interrupted_step = Some(InterruptedChoice::Skip);
    let (result, _) = run_with(&plan, &request, false).await;
    let report = result.expect("run");
    assert_eq!(report.outcome, Outcome::Succeeded);
    // The summary is the whole run's: the skipped step is in it too.
    assert_eq!(
        statuses(&report),
        vec![(1, StepStatus::Skipped), (2, StepStatus::Ok)]
    );
    assert!(!ran.exists(), "the skipped step did not run");
    let skipped = journal::read(&log)
        .expect("log")
        .events
        .into_iter()
        .find_map(|e| match e.body {
            EventBody::StepFinished {
                step: 1, status, ..
            } => Some(status),
            _ => None,
        });
    assert_eq!(skipped, Some(StepStatus::Skipped));
}

#[tokio::test]
async fn ctrl_c_before_a_step_interrupts_the_run_before_it_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(dir.path(), "  - exec: { run: \"true\" }\n");
    let (result, seen) = run_with(&plan, &unattended(), true).await;
    let report = result.expect("run");
    assert_eq!(report.outcome, Outcome::Interrupted);
    assert_eq!(report.message, "interrupted before step 1");
    assert!(report.steps.is_empty());
    assert!(
        !seen
            .events()
            .iter()
            .any(|e| matches!(e.body, EventBody::StepStarted { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_over_its_timeout_fails_with_the_timeout_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An hour of virtual time: the paused clock jumps to the deadline.
    let plan = plan(
        dir.path(),
        "  - exec: { run: \"sleep 30\", timeout: 1h, kill_grace: 1s }\n  - exec: { run: \"true\" }\n",
    );
    let (result, _) = run_with(&plan, &unattended(), false).await;
    let report = result.expect("run");
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(statuses(&report), vec![(1, StepStatus::Failed)]);
    // The hook's own deadline or the engine's net under it, whichever the jumping clock
    // reaches first while the killed hook is reaped: both name the step's timeout.
    let message = &report.steps[0].message;
    assert!(
        message.starts_with("the command did not finish within 1h")
            || message == "the step did not finish within its timeout of 1h",
        "{message}"
    );
}

#[tokio::test]
async fn a_dry_run_takes_no_lock_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ran = dir.path().join("ran");
    let plan = plan(
        dir.path(),
        &format!("  - exec: {{ run: \"touch {}\" }}\n", ran.display()),
    );
    let _held = take_lock(&plan, Direction::Failover, "other", "bob").expect("lock");
    assert!(matches!(
        run_with(&plan, &unattended(), false).await.0,
        Err(EngineError::Lock(_))
    ));
    let mut dry = unattended();
    dry.dry_run = true;
    let report = run_with(&plan, &dry, false).await.0.expect("dry run");
    assert_eq!(report.outcome, Outcome::DryRun);
    assert_eq!(
        report.message,
        "dry run: 1 step would run; nothing was changed"
    );
    assert!(!ran.exists());
}

/// Open a run of `plan` with clients for its clusters, as `run` does after its preflight.
async fn open_with_clusters<'a>(plan: &'a Plan, request: &'a RunRequest) -> Run<'a> {
    let clusters = Clusters::from_plan(plan).expect("clients");
    let (_, cancel) = watch::channel(false);
    Run::open(
        plan,
        request,
        Gate::Unattended,
        Vec::new(),
        Some(clusters),
        None,
        cancel,
    )
    .await
    .expect("open")
}

#[tokio::test]
async fn a_failover_is_refused_where_dr_already_owns_writes_unless_forced() {
    let primary = MockCluster::new(1).expect("mock primary");
    let dr = MockCluster::new(1).expect("mock dr");
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = (primary.bootstrap_servers(), dr.bootstrap_servers());
    let plan = plan_in(
        dir.path(),
        (&servers.0, &servers.1),
        "  - exec: { run: \"true\" }\n",
    );
    let clusters = Clusters::from_plan(&plan).expect("clients");
    let record = AuthorityRecord {
        v: RECORD_VERSION,
        plan: plan.name.clone(),
        owner: Role::Dr,
        epoch: 1,
        run_id: "earlier".into(),
        operator: "bob".into(),
        direction: Direction::Failover,
        at: journal::now_rfc3339(),
    };
    authority::write(&clusters.dr, &record)
        .await
        .expect("record on dr");

    let request = unattended();
    let mut run = open_with_clusters(&plan, &request).await;
    let refusal = run.check_authority().await.expect("checked");
    let expected = format!(
        "refused: already failed over (dr owns writes at epoch 1); fail back with kdr failback --plan {} (to run anyway: --force --reason TEXT)",
        plan.path.display()
    );
    assert_eq!(refusal.as_deref(), Some(expected.as_str()));
    drop(run);

    let mut forced = unattended();
    forced.force = true;
    let mut run = open_with_clusters(&plan, &forced).await;
    assert_eq!(run.check_authority().await.expect("checked"), None);
    assert_eq!(
        run.state.authority.as_ref().map(AuthorityState::owner),
        Some((Role::Dr, 1))
    );
}
