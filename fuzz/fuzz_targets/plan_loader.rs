//! Arbitrary bytes as a plan file, through `kdr::plan::load_bytes`.
//!
//! Substitutions resolve against a fixed in-memory environment and one in-memory secret file,
//! so a run is deterministic and never reads the real environment or the file system.
//!
//! Invariants checked, each one something the plan module promises:
//! * loading never panics, and neither does rendering its error;
//! * `load_bytes` only fails with `PlanError::Invalid`, carrying at least one problem, sorted
//!   by line and column;
//! * the rendered error shows every problem (`error: <file>:<line>:<column>: ` for a located
//!   one, `error: <file>: ` otherwise, then its message) and ends with
//!   `<file> invalid: N problem(s)`;
//! * neither the rendered error nor a problem shows a value that came from a substitution
//!   (a substituted value is a secret; the plan shows its `${env:…}` reference instead),
//!   unless the plan text itself contains that value.

#![no_main]

use std::path::Path;

use kdr::plan::{PlanError, SubstitutionSource, load_bytes};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.yaml";
const BASE_DIR: &str = "/kdr-fuzz-plans";

/// Environment variables the fuzzer can reference with `${env:NAME}`.
const ENV: &[(&str, &str)] = &[
    ("KDR_FUZZ_SECRET", "fuzz-env-secret-7Qx"),
    ("KDR_FUZZ_BOOTSTRAP", "fuzz-broker-1:9092"),
    ("KDR_FUZZ_SHORT", "ab"),
];

/// The one file `${file:secret}` reads (relative to `BASE_DIR`).
const SECRET_FILE: &str = "secret";
const SECRET_FILE_CONTENT: &str = "fuzz-file-secret-9Zk\n";

struct FixedSource;

impl SubstitutionSource for FixedSource {
    fn env(&self, name: &str) -> Option<String> {
        ENV.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    }

    fn file(&self, path: &Path) -> std::io::Result<String> {
        if path == Path::new(BASE_DIR).join(SECRET_FILE) {
            Ok(SECRET_FILE_CONTENT.to_owned())
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }
}

/// Substituted values long enough not to occur in ordinary error text by chance.
fn secrets() -> impl Iterator<Item = &'static str> {
    ENV.iter()
        .map(|(_, v)| *v)
        .chain([SECRET_FILE_CONTENT.trim_end()])
        .filter(|v| v.len() >= 8)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let result = load_bytes(Path::new(FILE), data, Path::new(BASE_DIR), &FixedSource);
    let err = match result {
        Ok(plan) => {
            // Formatting a loaded plan must not panic either.
            let _ = format!("{plan:?}");
            return;
        }
        Err(err) => err,
    };
    let rendered = err.to_string();
    let PlanError::Invalid { problems, .. } = &err else {
        panic!("load_bytes failed with something other than Invalid: {rendered}");
    };
    assert!(!problems.is_empty(), "an Invalid error without problems");
    assert!(
        problems
            .windows(2)
            .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)),
        "problems not in file order: {problems:?}"
    );
    for p in problems {
        let header = if p.line > 0 {
            format!("error: {FILE}:{}:{}: ", p.line, p.column)
        } else {
            format!("error: {FILE}: ")
        };
        assert!(
            rendered.contains(&header),
            "rendered error lacks `{header}`:\n{rendered}"
        );
        assert!(
            rendered.contains(&p.message),
            "rendered error lacks the message `{}`:\n{rendered}",
            p.message
        );
    }
    let n = problems.len();
    let tail = format!(
        "{FILE} invalid: {n} problem{}",
        if n == 1 { "" } else { "s" }
    );
    assert!(
        rendered.ends_with(&tail),
        "rendered error lacks `{tail}`:\n{rendered}"
    );
    for secret in secrets() {
        if contains(data, secret.as_bytes()) {
            continue;
        }
        assert!(
            !rendered.contains(secret),
            "the rendered error shows the substituted value `{secret}`:\n{rendered}"
        );
    }
});
