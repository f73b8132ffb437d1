//! `kdr drill`'s refusals, before any cluster is contacted: a plan that does not replicate the
//! canary, and no confirmation with nobody at a terminal to give it.

use crate::harness::Scratch;

const BUNDLED: &str = include_str!("../../runbooks/rehearsal.yaml");

/// The bundled plan replicating the canary's topic and group too (its clusters are never
/// reached: the refusals come first).
fn canary_plan(s: &Scratch) -> String {
    let text = BUNDLED
        .replace(
            "topics: [orders, payments]",
            "topics: [orders, payments, kdr-canary]",
        )
        .replace(
            "groups: [order-processor, billing]",
            "groups: [order-processor, billing, kdr-canary]",
        );
    assert_ne!(
        text, BUNDLED,
        "the bundled plan's shape changed: fix the edit"
    );
    s.write("staging.yaml", &text);
    "staging.yaml".to_owned()
}

#[test]
fn drill_refuses_a_plan_that_does_not_replicate_the_canary_and_says_what_to_add() {
    let s = Scratch::new();
    s.write("staging.yaml", BUNDLED);
    let run = s.kdr(&["drill", "--plan", "staging.yaml", "--yes"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr.trim_end(),
        "error: failed to drill with staging.yaml: its replication does not cover the canary; add `kdr-canary` to replication.topics and `kdr-canary` to replication.groups (and have MirrorMaker 2 replicate them too)",
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");

    // Half covered: only what is missing is named.
    let topic_only = BUNDLED.replace(
        "topics: [orders, payments]",
        "topics: [orders, payments, \"re:kdr-.*\"]",
    );
    s.write("staging.yaml", &topic_only);
    let run = s.kdr(&["drill", "--plan", "staging.yaml", "--yes"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("; add `kdr-canary` to replication.groups (and have"),
        "{run:?}"
    );
}

#[test]
fn drill_without_yes_and_without_a_terminal_refuses_naming_the_clusters() {
    let s = Scratch::new();
    let plan = canary_plan(&s);
    let run = s.kdr(&["drill", "--plan", &plan, "--failback"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr.trim_end(),
        "error: refusing to drill without a confirmation: kdr drill disturbs primary (127.0.0.1:9092) and dr (127.0.0.1:9093); pass --yes, or run it at a terminal and type the plan's name",
        "{run:?}"
    );
    // Nothing was started: no incident log, no claim, no canary.
    assert!(s.logs().is_empty(), "{:?}", s.logs());
}
