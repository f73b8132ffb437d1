//! The `notify` step against a webhook this test serves on 127.0.0.1: delivered, refused
//! (HTTP 500), never answered, and the secret URL kept out of everything kdr writes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{RUN_BOUND, Run, Scratch, events, wait};

/// How the test's webhook answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    ServerError,
    /// Reads the request and never says anything.
    Never,
}

/// A webhook on 127.0.0.1 that keeps the body of every POST it gets.
struct Webhook {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Webhook {
    fn start(answer: Answer) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bodies);
        // Detached: it blocks in accept until the test process ends. Silent connections are
        // kept open in `held` so the client sees no answer rather than a closed socket.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Some(body) = read_request(&mut stream) else {
                    continue;
                };
                seen.lock().expect("lock").push(body);
                let reply = match answer {
                    Answer::Ok => {
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    }
                    Answer::ServerError => {
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom"
                    }
                    Answer::Never => {
                        held.push(stream);
                        continue;
                    }
                };
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Webhook { port, bodies }
    }

    /// A URL whose path holds a token, as Slack's do.
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/services/T0/B0/s3cr3t-t0ken", self.port)
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .map(|b| serde_json::from_str(b).expect("the message is JSON"))
            .collect()
    }
}

/// The body of one HTTP/1.1 request with a Content-Length.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()
}

/// A failover of exec, notify, exec; the notify step's options as given.
fn plan(s: &Scratch, notify: &str) {
    s.exec_plan(
        "notify",
        &format!("  - exec: {{ run: \"true\" }}\n  - notify: {{ {notify} }}\n  - exec: {{ run: \"true\" }}\n"),
        "  - exec: { run: \"true\" }\n",
    );
}

/// `kdr failover` with the webhook's URL in `KDR_WEBHOOK`, and the HTTP client's own
/// diagnostics asked for, so a URL it logs would show.
fn failover(s: &Scratch, hook: &Webhook, extra: &[&str]) -> Run {
    let mut args = vec![
        "failover",
        "--plan",
        "notify.yaml",
        "--yes",
        "--operator",
        "ana",
        "--reason",
        "notify test",
        "--log",
        "run.jsonl",
    ];
    args.extend_from_slice(extra);
    let child = s
        .command(&args)
        .env("KDR_WEBHOOK", hook.url())
        .env("KDR_LOG", "ureq=trace,ureq_proto=trace,rustls=trace")
        .spawn()
        .expect("spawn kdr");
    wait(child, RUN_BOUND)
}

/// The secret URL is nowhere kdr writes: stdout, stderr, the incident log.
fn assert_no_secret(s: &Scratch, hook: &Webhook, run: &Run) {
    let log = s.read("run.jsonl");
    for (place, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("log", &log),
    ] {
        assert!(!text.contains("s3cr3t"), "{place} holds the URL: {text}");
        assert!(!text.contains(&hook.url()), "{place} holds the URL: {text}");
    }
}

/// `(kind, status)` of each step_finished in the log.
fn finished(s: &Scratch) -> Vec<(String, String)> {
    events(&s.file("run.jsonl"))
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_owned(),
                e["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn statuses(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn notify_posts_the_run_state_and_never_shows_the_secret_url() {
    let s = Scratch::new();
    let hook = Webhook::start(Answer::Ok);
    plan(&s, "url: \"${env:KDR_WEBHOOK}\"");
    let run = failover(&s, &hook, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let m = &bodies[0];
    let run_id = events(&s.file("run.jsonl"))[0]["run_id"].clone();
    assert_eq!(m["plan"], "notify");
    assert_eq!(m["direction"], "failover");
    assert_eq!(
        (m["step"].as_u64(), m["steps"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(m["run_id"], run_id);
    assert_eq!(m["operator"], "ana");
    assert_eq!(m["outcome"], "in_progress");
    assert_eq!(m["steps_finished"]["ok"], 1);
    let text = m["text"].as_str().expect("Slack's text");
    assert!(
        text.contains("failover of plan notify at step 2/3"),
        "{text}"
    );
    assert_eq!(
        finished(&s),
        statuses(&[("exec", "ok"), ("notify", "ok"), ("exec", "ok")])
    );
    assert!(
        s.read("run.jsonl").contains("${env:KDR_WEBHOOK}"),
        "the URL is shown by its reference"
    );
    assert_no_secret(&s, &hook, &run);
}

#[test]
fn a_webhook_error_is_logged_and_the_run_goes_on_unless_required() {
    let s = Scratch::new();
    let hook = Webhook::start(Answer::ServerError);
    plan(&s, "url: \"${env:KDR_WEBHOOK}\", text: \"failing over\"");
    let run = failover(&s, &hook, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(hook.bodies()[0]["text"], "failing over");
    assert_eq!(
        finished(&s),
        statuses(&[("exec", "ok"), ("notify", "skipped"), ("exec", "ok")])
    );
    let decision = events(&s.file("run.jsonl"))
        .into_iter()
        .find(|e| e["event"] == "decision" && e["kind"] == "notify")
        .expect("a decision to go on");
    assert_eq!(decision["what"], "go on without the notification");
    assert_eq!(
        decision["why"],
        "failed to post to ${env:KDR_WEBHOOK}: HTTP 500: boom; the step is not required"
    );
    assert_no_secret(&s, &hook, &run);

    let s = Scratch::new();
    plan(&s, "url: \"${env:KDR_WEBHOOK}\", required: true");
    let run = failover(&s, &hook, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        finished(&s),
        statuses(&[("exec", "ok"), ("notify", "failed")])
    );
    assert!(
        run.stderr.contains("HTTP 500: boom; the step is required"),
        "{run:?}"
    );
    assert_no_secret(&s, &hook, &run);
}

#[test]
fn a_webhook_that_never_answers_costs_the_timeout_and_no_more() {
    let s = Scratch::new();
    let hook = Webhook::start(Answer::Never);
    plan(&s, "url: \"${env:KDR_WEBHOOK}\", timeout: 1s");
    let started = Instant::now();
    let run = failover(&s, &hook, &[]);
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(hook.bodies().len(), 1, "the request was sent");
    let notify = events(&s.file("run.jsonl"))
        .into_iter()
        .find(|e| e["event"] == "step_finished" && e["kind"] == "notify")
        .expect("notify finished");
    assert_eq!(notify["message"], "not delivered: no answer within 1s");
    assert_eq!(
        finished(&s),
        statuses(&[("exec", "ok"), ("notify", "skipped"), ("exec", "ok")])
    );
    assert_no_secret(&s, &hook, &run);
}

#[test]
fn a_dry_run_says_what_it_would_post_and_posts_nothing() {
    let s = Scratch::new();
    let hook = Webhook::start(Answer::Ok);
    plan(&s, "url: \"${env:KDR_WEBHOOK}\"");
    let run = failover(&s, &hook, &["--dry-run"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(hook.bodies().is_empty());
    let log = s.read("run.jsonl");
    assert!(
        log.contains("would POST to ${env:KDR_WEBHOOK}: {\\\"text\\\":\\\"kdr dry run: failover of plan notify at step 2/3"),
        "{log}"
    );
    assert_no_secret(&s, &hook, &run);
}

#[test]
fn plan_check_wants_an_http_url_and_never_repeats_a_secret_one() {
    let s = Scratch::new();
    plan(&s, "url: \"ftp://example.com/hook\"");
    let run = s.kdr(&["plan", "check", "notify.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("failover[1].notify.url")
            && run.stderr.contains(
                "expected a URL starting with `http://` or `https://`, found `ftp://example.com/hook`"
            ),
        "{run:?}"
    );

    plan(&s, "url: \"${env:KDR_WEBHOOK}\"");
    let child = s
        .command(&["plan", "check", "notify.yaml"])
        .env("KDR_WEBHOOK", "hooks.example.com/s3cr3t")
        .spawn()
        .expect("spawn");
    let run = wait(child, RUN_BOUND);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("found (from a substitution)"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("s3cr3t"), "{run:?}");

    // Unset, it is one problem (the variable), not two.
    let run = s.kdr(&["plan", "check", "notify.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("invalid: 1 problem"), "{run:?}");
    let schema = s.kdr(&["plan", "schema"]).stdout;
    assert!(schema.contains("\"notify\""), "schema lacks notify");
}
