//! The check of `failover` and `failback`: each step deserialized from its own node, then each
//! kind's options checked by a function of its own.

use std::path::PathBuf;
use std::time::Duration;

use super::{Problems, at, command, duration, groups, opt_duration, section};
use crate::plan::error::Problem;
use crate::plan::file::Located;
use crate::plan::file::{self, StepFile};
use crate::plan::node::{Node, join_index, join_key};
use crate::plan::types::*;

/// A kind's options once checked (`None` when they had a problem), and its `timeout` as
/// written (`Some(None)` when absent, `None` when it had a problem).
type Checked = (Option<StepKind>, Option<Option<Duration>>);

pub(in crate::plan) fn check_steps(
    node: &Node,
    direction: &str,
    problems: &mut Problems,
) -> Vec<Step> {
    let Some(items) = node.as_seq() else {
        problems.push(Problem::new(
            node.line,
            node.column,
            direction,
            format!("expected a list of steps, found {}", node.describe()),
        ));
        return Vec::new();
    };
    if items.is_empty() {
        problems.push(
            Problem::new(
                node.line,
                node.column,
                direction,
                format!("expected at least one step in `{direction}`"),
            )
            .with_hint(format!("kinds: {}", file::STEP_KINDS.join(", "))),
        );
    }
    let mut steps = Vec::new();
    let mut declares = 0;
    for (i, item) in items.iter().enumerate() {
        let p = join_index(direction, i);
        let Some(raw) = section::<StepFile>(item, &p, problems) else {
            continue;
        };
        if let Some(step) = check_step(raw, &p, i + 1, item.line, direction, problems) {
            if matches!(step.kind, StepKind::Declare(_)) {
                declares += 1;
                if declares > 1 {
                    problems.push(Problem::new(
                        item.line,
                        item.column,
                        &p,
                        format!("`{direction}` declares twice: a run has one declaration"),
                    ));
                }
            }
            steps.push(step);
        }
    }
    steps
}

fn check_step(
    raw: StepFile,
    path: &str,
    index: usize,
    line: u64,
    direction: &str,
    problems: &mut Problems,
) -> Option<Step> {
    let before = problems.len();
    let kind_path = |k: &str| join_key(path, k);
    let (kind, timeout) = match raw {
        StepFile::Declare(d) => declare(d, &kind_path("declare"), direction, problems),
        StepFile::QuiesceProducers(q) => quiesce(q, &kind_path("quiesce_producers"), problems),
        StepFile::WaitReplication(w) => wait(w, &kind_path("wait_replication"), problems),
        StepFile::Repoint(r) => repoint(r, &kind_path("repoint"), line, problems),
        StepFile::TranslateOffsets(o) => translate(o, &kind_path("translate_offsets"), problems),
        StepFile::Validate(v) => validate(v, &kind_path("validate"), problems),
        StepFile::Exec(e) => exec(e, &kind_path("exec"), problems),
        StepFile::CheckReverseReplication(c) => {
            check_reverse(c, &kind_path("check_reverse_replication"), problems)
        }
        StepFile::Pause(pause) => self::pause(pause, &kind_path("pause"), problems),
        StepFile::Notify(n) => notify(n, &kind_path("notify"), problems),
    };
    let (kind, timeout) = (kind?, timeout?);
    (problems.len() == before).then_some(Step {
        index,
        kind,
        timeout_given: timeout,
        line,
    })
}

fn declare(d: file::DeclareFile, p: &str, direction: &str, problems: &mut Problems) -> Checked {
    let t = opt_duration(&d.timeout, p, "timeout", problems);
    let confirm = match d.confirm {
        Some(file::ConfirmFile::Yes) => Confirm::Yes,
        Some(file::ConfirmFile::PlanName) | None => Confirm::PlanName,
    };
    let stranded = d.stranded.as_ref().map(|s| match s.value {
        file::StrandedFile::Export => Stranded::Export,
        file::StrandedFile::Skip => Stranded::Skip,
        file::StrandedFile::Consume => Stranded::Consume,
    });
    if let Some(s) = &d.stranded
        && direction != "failback"
    {
        problems.push(
            at(
                s,
                &join_key(p, "stranded"),
                format!(
                    "`stranded` belongs to the failback's declare: the records only the old \
                     primary saw are found when coming home, not in `{direction}`"
                ),
            )
            .with_hint("move it to the `declare` step of `failback`"),
        );
    }
    (Some(StepKind::Declare(Declare { confirm, stranded })), t)
}

fn quiesce(q: file::QuiesceProducersFile, p: &str, problems: &mut Problems) -> Checked {
    let idle_for = duration(&q.idle_for, &join_key(p, "idle_for"), problems);
    let poll = opt_duration(&q.poll_interval, p, "poll_interval", problems);
    let t = opt_duration(&q.timeout, p, "timeout", problems);
    let run = q
        .run
        .as_ref()
        .and_then(|c| command(c, &join_key(p, "run"), problems));
    if let (Some(idle), Some(Some(timeout)), Some(t)) = (idle_for, t, &q.timeout)
        && idle >= timeout
    {
        problems.push(at(
            &t.0,
            &join_key(p, "timeout"),
            format!(
                "timeout {} must be longer than idle_for {}",
                humantime::format_duration(timeout),
                humantime::format_duration(idle)
            ),
        ));
    }
    let kind = idle_for.zip(poll).map(|(idle_for, poll)| {
        StepKind::QuiesceProducers(QuiesceProducers {
            run,
            idle_for,
            poll_interval: poll.unwrap_or(Duration::from_secs(1)),
        })
    });
    (kind, t)
}

fn wait(w: file::WaitReplicationFile, p: &str, problems: &mut Problems) -> Checked {
    let poll = opt_duration(&w.poll_interval, p, "poll_interval", problems);
    let t = duration(&w.timeout, &join_key(p, "timeout"), problems);
    let kind = poll.map(|poll| {
        StepKind::WaitReplication(WaitReplication {
            max_lag_records: w.max_lag_records.unwrap_or(0),
            on_timeout: match w.on_timeout {
                file::OnTimeoutFile::Abort => OnTimeout::Abort,
                file::OnTimeoutFile::AcceptRpo => OnTimeout::AcceptRpo,
            },
            poll_interval: poll.unwrap_or(Duration::from_secs(1)),
        })
    });
    (kind, t.map(Some))
}

fn repoint(r: file::RepointFile, p: &str, line: u64, problems: &mut Problems) -> Checked {
    let t = opt_duration(&r.timeout, p, "timeout", problems);
    let run = r
        .run
        .as_ref()
        .and_then(|c| command(c, &join_key(p, "run"), problems));
    let write_file = r.write_file.as_ref().map(|w| {
        if w.path.value.trim().is_empty() {
            problems.push(at(
                &w.path,
                &join_key(&join_key(p, "write_file"), "path"),
                "expected a file path, found an empty string",
            ));
        }
        WriteFile {
            path: PathBuf::from(&w.path.value),
            content: w.content.as_ref().map(|c| c.value.clone()),
        }
    });
    if r.run.is_none() && r.write_file.is_none() {
        problems.push(
            Problem::new(
                line,
                0,
                p,
                "expected `run` or `write_file`: a repoint must change something",
            )
            .with_hint("e.g. `repoint: { run: \"./set-bootstrap.sh dr\" }`"),
        );
    }
    let verify = match &r.verify_writes {
        Some(v) => duration(
            &v.within,
            &join_key(&join_key(p, "verify_writes"), "within"),
            problems,
        )
        .map(Some),
        None => Some(None),
    };
    let kind = verify.map(|verify_writes_within| {
        StepKind::Repoint(Repoint {
            run,
            write_file,
            verify_writes_within,
        })
    });
    (kind, t)
}

fn translate(o: file::TranslateOffsetsFile, p: &str, problems: &mut Problems) -> Checked {
    let t = opt_duration(&o.timeout, p, "timeout", problems);
    let groups = groups(&o.groups, &join_key(p, "groups"), problems);
    let kind = StepKind::TranslateOffsets(TranslateOffsets {
        groups,
        allow_rewind: o.allow_rewind.unwrap_or(false),
        on_missing_checkpoint: match o.on_missing_checkpoint {
            Some(file::MissingCheckpointFile::Fail) => MissingCheckpoint::Fail,
            Some(file::MissingCheckpointFile::Skip) | None => MissingCheckpoint::Skip,
        },
    });
    (Some(kind), t)
}

fn validate(v: file::ValidateFile, p: &str, problems: &mut Problems) -> Checked {
    let t = opt_duration(&v.timeout, p, "timeout", problems);
    let within = duration(&v.within, &join_key(p, "within"), problems);
    let groups = groups(&v.groups, &join_key(p, "groups"), problems);
    let kind = within.map(|within| {
        StepKind::Validate(Validate {
            within,
            groups,
            require_producers: v.require_producers.unwrap_or(false),
        })
    });
    (kind, t)
}

fn exec(e: file::ExecFile, p: &str, problems: &mut Problems) -> Checked {
    let t = opt_duration(&e.timeout, p, "timeout", problems);
    let grace = opt_duration(&e.kill_grace, p, "kill_grace", problems);
    let run = command(&e.run, &join_key(p, "run"), problems);
    let kind = run.zip(grace).map(|(run, grace)| {
        StepKind::Exec(Exec {
            run,
            idempotent: e.idempotent.unwrap_or(false),
            kill_grace: grace.unwrap_or(Duration::from_secs(5)),
        })
    });
    (kind, t)
}

fn check_reverse(
    c: file::CheckReverseReplicationFile,
    p: &str,
    problems: &mut Problems,
) -> Checked {
    let t = opt_duration(&c.timeout, p, "timeout", problems);
    let hb = opt_duration(&c.max_heartbeat_age, p, "max_heartbeat_age", problems);
    let cp = opt_duration(&c.max_checkpoint_age, p, "max_checkpoint_age", problems);
    let kind = hb.zip(cp).map(|(hb, cp)| {
        StepKind::CheckReverseReplication(CheckReverseReplication {
            max_heartbeat_age: hb.unwrap_or(Duration::from_secs(30)),
            max_checkpoint_age: cp,
        })
    });
    (kind, t)
}

fn pause(pause: file::PauseFile, p: &str, problems: &mut Problems) -> Checked {
    let t = opt_duration(&pause.timeout, p, "timeout", problems);
    if pause.message.value.trim().is_empty() {
        problems.push(at(
            &pause.message,
            &join_key(p, "message"),
            "expected a message for the operator, found an empty string",
        ));
    }
    let kind = StepKind::Pause(Pause {
        message: pause.message.raw.clone().unwrap_or(pause.message.value),
    });
    (Some(kind), t)
}

fn notify(n: file::NotifyFile, p: &str, problems: &mut Problems) -> Checked {
    let t = opt_duration(&n.timeout, p, "timeout", problems);
    let url = webhook_url(&n.url, &join_key(p, "url"), problems);
    if let Some(text) = &n.text
        && text.value.trim().is_empty()
    {
        problems.push(at(
            text,
            &join_key(p, "text"),
            "expected the message's text, found an empty string",
        ));
    }
    let kind = url.map(|url| {
        StepKind::Notify(Notify {
            url,
            text: n.text.map(|t| t.value),
            required: n.required.unwrap_or(false),
        })
    });
    (kind, t)
}

/// An `http://` or `https://` URL with a host. A URL from a substitution is never repeated in
/// a problem: it is a secret.
fn webhook_url(url: &Located<String>, path: &str, problems: &mut Problems) -> Option<WebhookUrl> {
    let checked = WebhookUrl {
        value: url.value.trim().to_owned(),
        shown: url.raw.clone().unwrap_or_else(|| url.value.clone()),
    };
    // A placeholder (--allow-missing-env) stands for any value; a substitution that failed
    // (its text left as written) is reported where it failed.
    if problems.is_placeholder(url) || url.raw.as_deref() == Some(url.value.as_str()) {
        return Some(checked);
    }
    let found = if url.is_secret() {
        "(from a substitution)".to_owned()
    } else {
        format!("`{}`", url.value)
    };
    let parsed = checked.value.parse::<ureq::http::Uri>();
    let problem = match &parsed {
        Err(_) => Some(format!("expected an http(s) URL, found {found}")),
        Ok(uri) if !matches!(uri.scheme_str(), Some("http" | "https")) => Some(format!(
            "expected a URL starting with `http://` or `https://`, found {found}"
        )),
        Ok(uri) if uri.host().is_none_or(str::is_empty) => {
            Some(format!("expected a URL with a host, found {found}"))
        }
        Ok(_) => None,
    };
    match problem {
        Some(message) => {
            problems.push(at(url, path, message).with_hint(
                "e.g. `url: \"${env:KDR_WEBHOOK_URL}\"` holding `https://hooks.example.com/…`",
            ));
            None
        }
        None => Some(checked),
    }
}
