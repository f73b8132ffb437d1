//! `kdr report` on the logs of a real rehearsal (embedded clusters), rendered as Markdown, JSON
//! and HTML (the HTML in headless Chromium); `kdr completions` and `kdr man`.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::CommandFactory;
use serde::Deserialize;

use crate::harness::{Run, Scratch};

/// One disaster rehearsal's logs (failover, failback), shared by the tests of this file.
struct Rehearsal {
    scratch: Scratch,
    logs: Vec<PathBuf>,
}

fn rehearsal() -> &'static Rehearsal {
    static ONCE: OnceLock<Rehearsal> = OnceLock::new();
    ONCE.get_or_init(|| {
        let scratch = Scratch::new();
        let failover = scratch.file("failover.jsonl");
        let failover_arg = failover.display().to_string();
        let run = scratch.kdr(&["rehearse", "--scenario", "disaster", "--log", &failover_arg]);
        assert_eq!(run.code, 0, "{run:?}");
        let mut logs = vec![failover];
        logs.extend(scratch.logs());
        assert_eq!(logs.len(), 2, "a failover and a failback log: {logs:?}");
        Rehearsal { scratch, logs }
    })
}

fn report(args: &[&str]) -> Run {
    let r = rehearsal();
    let mut all: Vec<String> = vec!["report".to_owned()];
    all.extend(r.logs.iter().map(|p| p.display().to_string()));
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    r.scratch.kdr(&all)
}

/// The step kinds a log's steps ran, in order.
fn step_kinds(log: &Path) -> Vec<String> {
    crate::harness::events(log)
        .iter()
        .filter(|e| e["event"] == "step_started")
        .map(|e| e["kind"].as_str().expect("kind").to_owned())
        .collect()
}

#[test]
fn report_markdown_covers_failover_and_failback_of_a_rehearsal() {
    let run = report(&["--format", "md"]);
    assert_eq!(run.code, 0, "{run:?}");
    let md = &run.stdout;
    assert!(md.starts_with("# Incident report: rehearsal\n"), "{md}");
    assert!(
        md.contains("\n## Failover of plan rehearsal: succeeded\n"),
        "{md}"
    );
    assert!(
        md.contains("\n## Failback of plan rehearsal: succeeded\n"),
        "{md}"
    );
    assert!(
        md.contains("declare gate opened (step 1 started) at 20"),
        "{md}"
    );
    assert!(
        md.contains("→ failover validated (step 7 validate finished ok) at 20"),
        "{md}"
    );
    assert!(
        md.contains("→ failback validated (step 8 validate finished ok) at 20"),
        "{md}"
    );
    for title in [
        "### RPO per partition",
        "### Offset translation: group billing",
        "### Offset translation: group order-processor",
        "### Re-read ledger",
        "### Timeline",
    ] {
        assert_eq!(
            md.matches(title).count(),
            2,
            "{title} once per run in\n{md}"
        );
    }
    // The disaster scenario accepts a loss: the estimate is in the RPO table.
    let estimated: i64 = md
        .lines()
        .skip_while(|l| !l.starts_with("### RPO per partition"))
        .take_while(|l| !l.starts_with("### Offset translation"))
        .filter(|l| l.starts_with("| orders |") || l.starts_with("| payments |"))
        .filter_map(|l| l.split('|').nth(4)?.trim().parse::<i64>().ok())
        .sum();
    assert!(estimated > 0, "{md}");
}

// ---- The JSON contract, as a reader sees it ------------------------------------------------

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportOut {
    v: u32,
    runs: Vec<RunOut>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunOut {
    log: String,
    run_id: String,
    plan: String,
    direction: String,
    operator: String,
    reason: String,
    dry_run: bool,
    started_at: String,
    finished_at: Option<String>,
    outcome: Option<String>,
    duration_ms: Option<u64>,
    message: Option<String>,
    torn_tail: bool,
    steps: Vec<StepOut>,
    timeline: Vec<TimelineOut>,
    moments: Vec<MomentOut>,
    rto: Option<RtoOut>,
    rpo: Vec<RpoOut>,
    lag: Vec<SampleOut>,
    translations: Vec<GroupOut>,
    reprocessing: Vec<RereadOut>,
    canary: Vec<serde_json::Value>,
    canary_latency: Vec<SampleOut>,
    warnings: Vec<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepOut {
    step: usize,
    kind: String,
    summary: String,
    started_at: String,
    start_ms: u64,
    finished_at: Option<String>,
    end_ms: Option<u64>,
    status: Option<String>,
    duration_ms: Option<u64>,
    message: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineOut {
    seq: u64,
    ts: String,
    at_ms: u64,
    step: Option<usize>,
    event: String,
    text: String,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct MomentOut {
    name: String,
    ts: String,
    at_ms: u64,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RtoOut {
    label: String,
    from_what: String,
    from: String,
    to_what: String,
    to: String,
    total_ms: u64,
    validated: bool,
    phases: Vec<PhaseOut>,
    other_steps_ms: u64,
    between_steps_ms: u64,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseOut {
    name: String,
    step_kind: String,
    duration_ms: u64,
    steps: Vec<usize>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RpoOut {
    topic: String,
    partition: i32,
    lag_at_declaration: Option<i64>,
    estimated_loss: Option<i64>,
    observed_loss: Option<i64>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleOut {
    ts: String,
    at_ms: u64,
    value: f64,
    source: String,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupOut {
    group: String,
    state: String,
    partitions: Vec<serde_json::Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RereadOut {
    group: String,
    may_reread: Option<i64>,
    basis: String,
}

#[test]
fn report_json_reads_back_into_the_documented_shape() {
    let run = report(&["--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let out: ReportOut = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("the documented shape: {e}\n{run:?}"));
    assert_eq!(out.v, 1);
    let directions: Vec<&str> = out.runs.iter().map(|r| r.direction.as_str()).collect();
    assert_eq!(directions, ["failover", "failback"]);
    for (r, log) in out.runs.iter().zip(&rehearsal().logs) {
        assert_eq!(r.log, log.display().to_string());
        assert_eq!(r.outcome.as_deref(), Some("succeeded"), "{r:?}");
        let kinds: Vec<&str> = r.steps.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, step_kinds(log));
        // The disaster's quiesce is skipped: the primary is down.
        assert!(
            r.steps
                .iter()
                .all(|s| matches!(s.status.as_deref(), Some("ok" | "skipped"))),
            "{r:?}"
        );
        assert_eq!(r.timeline.len(), crate::harness::events(log).len());
        let rto = r.rto.as_ref().expect("rto");
        assert!(rto.validated);
        assert_eq!(rto.label, format!("{} → {}", rto.from_what, rto.to_what));
        let in_steps: u64 = rto.phases.iter().map(|p| p.duration_ms).sum::<u64>()
            + rto.other_steps_ms
            + rto.between_steps_ms;
        assert_eq!(in_steps, rto.total_ms, "{rto:?}");
        assert!(rto.total_ms <= r.duration_ms.expect("duration"));
        let moments: Vec<&str> = r.moments.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(moments.first(), Some(&"declared"));
        assert_eq!(moments.last(), Some(&"validated"));
        assert!(moments.contains(&"repointed"));
        // The plan's two groups and the canary's.
        assert_eq!(r.translations.len(), 3, "{r:?}");
        assert_eq!(r.reprocessing.len(), 3, "{r:?}");
        assert!(!r.rpo.is_empty() && !r.lag.is_empty());
        // The drill's canary figures; publish latency before and during the switch (and after
        // it, when the drill still published then) on the publish-latency line.
        assert!(
            r.canary.iter().any(|c| c["name"] == "canary_data_gap"),
            "{r:?}"
        );
        assert!(
            (2..=3).contains(&r.canary_latency.len()),
            "{:?}",
            r.canary_latency
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
    let accepted: i64 = out.runs[0]
        .rpo
        .iter()
        .filter_map(|p| p.estimated_loss)
        .sum();
    assert!(
        accepted > 0,
        "the disaster's accepted loss: {:?}",
        out.runs[0].rpo
    );
}

// ---- HTML in a real browser ----------------------------------------------------------------

/// How long one headless Chromium run may take before the test calls it hung.
const BROWSER_BOUND: Duration = Duration::from_secs(60);

/// Run headless Chromium on `page` with networking features off, stdout into `stdout_file`,
/// killing its whole process group if it outlives the bound.
fn chromium(page: &Path, extra: &[String], stdout_file: &Path, scratch: &Path) {
    let browser = std::env::var("KDR_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let profile = scratch.join("chromium-profile");
    let mut cmd = Command::new(&browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .env("HOME", scratch)
    .stdin(Stdio::null())
    .stdout(File::create(stdout_file).expect("stdout file"))
    .stderr(File::create(scratch.join("chromium.stderr")).expect("stderr file"))
    .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("failed to start {browser} ({e}): run scripts/test-browser (or set KDR_CHROMIUM)")
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > BROWSER_BOUND {
            // SAFETY: signals the process group this test created for the browser.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("{browser} did not finish within {BROWSER_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(scratch.join("chromium.stderr")).unwrap_or_default();
    assert!(status.success(), "{browser} failed: {status}\n{stderr}");
}

/// How many different colours a PNG's pixels have (stops counting at `enough`).
fn colours(png_path: &Path, enough: usize) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        File::open(png_path).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("frame");
    let bytes = info.color_type.samples() * usize::from(info.bit_depth as u8).div_ceil(8);
    let mut seen = std::collections::BTreeSet::new();
    for px in buf[..info.buffer_size()].chunks_exact(bytes) {
        seen.insert(px.to_vec());
        if seen.len() >= enough {
            break;
        }
    }
    seen.len()
}

#[test]
fn report_html_opens_offline_in_headless_chromium_and_shows_every_step() {
    let r = rehearsal();
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("report.html");
    let page_arg = page.display().to_string();
    let run = report(&["--format", "html", "--output-file", &page_arg]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "", "the report goes to the file");
    let html = std::fs::read_to_string(&page).expect("html");
    let network = regex::Regex::new(r#"(?i)(src|href)\s*=\s*["']?\s*(https?:)?//"#).expect("re");
    assert!(!network.is_match(&html), "a network reference in the page");
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("<svg"));

    let shot = dir.path().join("report.png");
    chromium(
        &page,
        &[format!("--screenshot={}", shot.display())],
        &dir.path().join("screenshot.out"),
        dir.path(),
    );
    let n = colours(&shot, 16);
    assert!(n >= 16, "the screenshot is blank or nearly: {n} colours");
    if let Ok(keep) = std::env::var("KDR_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("keep the screenshot");
    }

    let dom_file = dir.path().join("dom.html");
    chromium(&page, &["--dump-dom".to_owned()], &dom_file, dir.path());
    let dom = std::fs::read_to_string(&dom_file).expect("dom");
    assert!(dom.contains("<svg"), "{dom}");
    for log in &r.logs {
        for (i, kind) in step_kinds(log).iter().enumerate() {
            let label = format!("{} {kind}</text>", i + 1);
            assert!(dom.contains(&label), "{label} in the rendered timeline");
        }
    }
}

#[test]
fn report_of_a_missing_or_corrupt_log_or_an_unwritable_output_exits_2_naming_it() {
    let s = Scratch::new();
    let run = s.kdr(&["report", "nowhere.jsonl"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: failed to read incident log nowhere.jsonl: "),
        "{run:?}"
    );
    assert_eq!(run.stdout, "");

    let good = std::fs::read_to_string(&rehearsal().logs[0]).expect("log");
    let mut lines: Vec<&str> = good.lines().collect();
    lines[2] = "{\"v\":1,\"seq\":3,";
    s.write("corrupt.jsonl", &(lines.join("\n") + "\n"));
    let run = s.kdr(&["report", "corrupt.jsonl", "--format", "html"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: corrupt.jsonl:3: not an incident-log event: "),
        "{run:?}"
    );

    let run = s.kdr(&[
        "report",
        &rehearsal().logs[0].display().to_string(),
        "--output-file",
        "no/such/dir/report.md",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: failed to write the report to no/such/dir/report.md: "),
        "{run:?}"
    );

    s.write("empty.jsonl", "");
    let run = s.kdr(&["report", "empty.jsonl"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr, "error: empty.jsonl: the log is empty\n");
}

// ---- Completions and the man page ----------------------------------------------------------

fn subcommands() -> Vec<String> {
    kdr::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect()
}

#[test]
fn bash_completion_names_every_subcommand() {
    let s = Scratch::new();
    let run = s.kdr(&["completions", "bash"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("complete -F _kdr"), "{}", run.stdout);
    let names = subcommands();
    assert!(names.len() >= 12, "{names:?}");
    for name in names {
        assert!(
            run.stdout.contains(&format!("kdr,{name})")),
            "{name} in the bash completion"
        );
    }
    for shell in ["zsh", "fish"] {
        let run = s.kdr(&["completions", shell]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("report"), "{shell}: {}", run.stdout);
    }
}

#[test]
fn man_page_is_roff_naming_every_subcommand() {
    let s = Scratch::new();
    let run = s.kdr(&["man"]);
    assert_eq!(run.code, 0, "{run:?}");
    let page = &run.stdout;
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains(".TH kdr 1"), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for name in subcommands() {
        assert!(
            page.contains(&format!("kdr\\-{name}(1)")),
            "{name} in\n{page}"
        );
    }
}
