//! The incident report laid out as headings, facts and tables: what the Markdown and the HTML
//! renderers both draw, so the two say the same things in the same order.

use super::format_ms;
use super::incident::{IncidentReport, RunSection, human_ts};

pub struct RunDoc<'a> {
    pub run: &'a RunSection,
    pub heading: String,
    /// Label and value, in order.
    pub facts: Vec<(&'static str, String)>,
    /// The RTO's one-line statement, when the run has one.
    pub rto: Option<String>,
    pub tables: Vec<Table>,
}

pub struct Table {
    pub title: String,
    /// A sentence under the title saying what the figures are.
    pub note: Option<String>,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

pub fn title(report: &IncidentReport) -> String {
    let mut plans: Vec<&str> = report.runs.iter().map(|r| r.plan.as_str()).collect();
    plans.dedup();
    format!("Incident report: {}", plans.join(", "))
}

/// One line per run, before the runs' own sections: what a reader of the channel wants first.
pub fn summary(report: &IncidentReport) -> Table {
    Table {
        title: "Summary".to_owned(),
        note: None,
        headers: vec![
            "run",
            "outcome",
            "started (UTC)",
            "RTO",
            "estimated loss (records)",
            "may read again (records)",
        ],
        rows: report
            .runs
            .iter()
            .map(|r| {
                let loss: Option<i64> = r.rpo.iter().map(|p| p.estimated_loss).sum();
                let rereads: Option<i64> = r.reprocessing.iter().map(|g| g.may_reread).sum();
                vec![
                    format!("{} of {}", r.direction, r.plan),
                    r.outcome
                        .map_or("did not finish", |o| o.as_str())
                        .to_owned(),
                    human_ts(&r.started_at),
                    r.rto.as_ref().map_or("—".to_owned(), |t| {
                        let mut rto = format_ms(t.total_ms);
                        if !t.validated {
                            rto.push_str(" (not validated)");
                        }
                        rto
                    }),
                    known_sum(!r.rpo.is_empty(), loss),
                    known_sum(!r.reprocessing.is_empty(), rereads),
                ]
            })
            .collect(),
    }
}

/// A total: "—" when there is nothing to add up, "unknown" when a part is unknown.
fn known_sum(any: bool, sum: Option<i64>) -> String {
    match (any, sum) {
        (false, _) => "—".to_owned(),
        (true, None) => "unknown".to_owned(),
        (true, Some(n)) => n.to_string(),
    }
}

pub fn runs(report: &IncidentReport) -> Vec<RunDoc<'_>> {
    report.runs.iter().map(run_doc).collect()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| v.to_string())
}

fn run_doc(run: &RunSection) -> RunDoc<'_> {
    let outcome = run.outcome.map_or("did not finish", |o| o.as_str());
    let mut facts = vec![
        ("Run", format!("{} (log {})", run.run_id, run.log)),
        ("Operator", run.operator.clone()),
        ("Reason", run.reason.clone()),
        ("Started", format!("{} UTC", human_ts(&run.started_at))),
        (
            "Finished",
            run.finished_at
                .as_deref()
                .map_or("—".to_owned(), |t| format!("{} UTC", human_ts(t))),
        ),
        (
            "Outcome",
            match (&run.message, run.duration_ms) {
                (Some(m), Some(d)) => format!("{outcome} after {}: {m}", format_ms(d)),
                _ => outcome.to_owned(),
            },
        ),
    ];
    if run.dry_run {
        facts.push(("Dry run", "yes: nothing was changed".to_owned()));
    }
    if run.torn_tail {
        facts.push((
            "Log",
            "its last line was cut short by a crash and is not shown".to_owned(),
        ));
    }
    let rto = run.rto.as_ref().map(|r| {
        format!(
            "RTO {}: {} at {} UTC → {} at {} UTC",
            format_ms(r.total_ms),
            r.from_what,
            human_ts(&r.from),
            r.to_what,
            human_ts(&r.to)
        )
    });
    let mut tables = Vec::new();
    if let Some(t) = rto_table(run) {
        tables.push(t);
    }
    tables.push(rpo_table(run));
    tables.extend(translation_tables(run));
    tables.push(reread_table(run));
    if !run.canary.is_empty() {
        tables.push(canary_table(run));
    }
    tables.push(steps_table(run));
    tables.push(timeline_table(run));
    if !run.warnings.is_empty() {
        tables.push(Table {
            title: "Warnings".to_owned(),
            note: None,
            headers: vec!["warning"],
            rows: run.warnings.iter().map(|w| vec![w.clone()]).collect(),
        });
    }
    RunDoc {
        run,
        heading: format!(
            "{} of plan {}: {outcome}",
            capitalised(run.direction.as_str()),
            run.plan
        ),
        facts,
        rto,
        tables,
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn rto_table(run: &RunSection) -> Option<Table> {
    let rto = run.rto.as_ref()?;
    let mut rows: Vec<Vec<String>> = rto
        .phases
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.step_kind.clone(),
                if p.steps.is_empty() {
                    "—".to_owned()
                } else {
                    p.steps
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                format_ms(p.duration_ms),
            ]
        })
        .collect();
    rows.push(vec![
        "other steps".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
        format_ms(rto.other_steps_ms),
    ]);
    rows.push(vec![
        "between steps".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
        format_ms(rto.between_steps_ms),
    ]);
    rows.push(vec![
        "RTO".to_owned(),
        String::new(),
        String::new(),
        format_ms(rto.total_ms),
    ]);
    Some(Table {
        title: "RTO and its phases".to_owned(),
        note: Some(format!(
            "RTO spans {}. Each phase is the time its steps ran.",
            rto.label
        )),
        headers: vec!["phase", "step kind", "steps", "duration"],
        rows,
    })
}

fn rpo_table(run: &RunSection) -> Table {
    let observed = run.rpo.iter().any(|p| p.observed_loss.is_some());
    Table {
        title: "RPO per partition".to_owned(),
        note: Some(format!(
            "Records: lag when the run was declared, kdr's estimated loss when wait_replication ended; {}",
            if observed {
                "observed loss from the canary's data gap."
            } else {
                "no observed loss in this log (no canary data gap)."
            }
        )),
        headers: vec![
            "topic",
            "partition",
            "lag at declaration",
            "estimated loss",
            "observed loss",
        ],
        rows: run
            .rpo
            .iter()
            .map(|p| {
                vec![
                    p.topic.clone(),
                    p.partition.to_string(),
                    opt(p.lag_at_declaration),
                    opt(p.estimated_loss),
                    opt(p.observed_loss),
                ]
            })
            .collect(),
    }
}

fn translation_tables(run: &RunSection) -> Vec<Table> {
    run.translations
        .iter()
        .map(|g| Table {
            title: format!("Offset translation: group {} ({})", g.group, g.state),
            note: None,
            headers: vec![
                "source topic",
                "partition",
                "source offset",
                "target topic",
                "target offset",
                "was at",
                "checkpoint age",
                "action",
            ],
            rows: g
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.source_topic.clone(),
                        p.partition.to_string(),
                        p.source_offset.to_string(),
                        p.target_topic.clone(),
                        p.target_offset.to_string(),
                        opt(p.current_offset),
                        format_ms(p.checkpoint_age_ms.max(0) as u64),
                        p.action.clone(),
                    ]
                })
                .collect(),
        })
        .collect()
}

fn reread_table(run: &RunSection) -> Table {
    Table {
        title: "Re-read ledger".to_owned(),
        note: Some(
            "Records each group may read again on the target: the duplicates idempotent consumers absorb."
                .to_owned(),
        ),
        headers: vec!["group", "may read again", "basis"],
        rows: run
            .reprocessing
            .iter()
            .map(|r| {
                vec![
                    r.group.clone(),
                    r.may_reread.map_or("unknown".to_owned(), |n| n.to_string()),
                    r.basis.clone(),
                ]
            })
            .collect(),
    }
}

fn canary_table(run: &RunSection) -> Table {
    Table {
        title: "Canary".to_owned(),
        note: Some("What a canary client saw, as the log records it.".to_owned()),
        headers: vec!["time (UTC)", "figure", "values", "detail"],
        rows: run
            .canary
            .iter()
            .map(|c| {
                vec![
                    human_ts(&c.ts),
                    c.name.clone(),
                    c.figures
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    c.detail.clone(),
                ]
            })
            .collect(),
    }
}

fn steps_table(run: &RunSection) -> Table {
    Table {
        title: "Steps".to_owned(),
        note: None,
        headers: vec![
            "#",
            "kind",
            "started (UTC)",
            "duration",
            "status",
            "message",
        ],
        rows: run
            .steps
            .iter()
            .map(|s| {
                vec![
                    s.step.to_string(),
                    s.kind.clone(),
                    human_ts(&s.started_at),
                    s.duration_ms.map_or("—".to_owned(), format_ms),
                    s.status
                        .map_or("did not finish", |st| st.as_str())
                        .to_owned(),
                    s.message.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    }
}

fn timeline_table(run: &RunSection) -> Table {
    Table {
        title: "Timeline".to_owned(),
        note: Some("Every event of the log: steps, decisions and observations.".to_owned()),
        headers: vec!["time (UTC)", "step", "event", "what"],
        rows: run
            .timeline
            .iter()
            .map(|e| {
                vec![
                    human_ts(&e.ts),
                    opt(e.step),
                    e.event.clone(),
                    e.text.clone(),
                ]
            })
            .collect(),
    }
}
