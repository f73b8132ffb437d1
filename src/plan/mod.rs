//! The plan: a YAML runbook read into checked domain types.
//!
//! Two stages, as in nextest and just: the file shape ([`file`], plain serde) and the checked
//! [`Plan`] ([`types`]), with a pass between ([`check`]) that reports every problem at once with
//! its file, line:column and key path. Loading does no I/O beyond reading the plan and the
//! secrets it names.

mod check;
pub mod error;
pub mod file;
pub mod node;
mod subst;
mod types;

use std::path::{Path, PathBuf};

pub use check::is_secret_key;
pub use error::{PlanError, Problem};
use node::Node;
pub use subst::{SubstitutionSource, SystemSubstitutions, UnsetEnv};
pub use types::*;

/// Plans larger than this are refused before parsing: a runbook is a page, not a data set.
pub const MAX_PLAN_BYTES: usize = 1024 * 1024;

/// Load and check a plan file, reporting every problem found.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let bytes = read(path)?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    load_bytes(path, &bytes, base_dir, &SystemSubstitutions)
}

/// Check plan text that is already in memory (`path` is only used in messages).
pub fn load_bytes(
    path: &Path,
    bytes: &[u8],
    base_dir: &Path,
    source: &dyn SubstitutionSource,
) -> Result<Plan, PlanError> {
    load_with(path, bytes, base_dir, source, UnsetEnv::Error).map(|loaded| loaded.plan)
}

/// What `kdr plan check` says about a valid plan. It carries no [`Plan`]: a plan checked with
/// placeholders for unset variables must never reach anything that connects to a cluster.
#[derive(Debug)]
pub struct Lint {
    pub name: String,
    pub failover_steps: usize,
    pub failback_steps: usize,
    /// Values that were not checked because their `${env:…}` is unset, one per value.
    pub warnings: Vec<Problem>,
    file: PathBuf,
    text: String,
}

impl Lint {
    /// Each warning as `warning: file:line:col: path: …` with the line and a caret.
    pub fn render_warnings(&self) -> String {
        error::render_warnings(&self.file, &self.text, &self.warnings)
    }
}

/// Check a plan file for `kdr plan check`; with [`UnsetEnv::Placeholder`] an unset `${env:…}`
/// is a warning and the rest of the plan is still checked.
pub fn lint(path: &Path, unset_env: UnsetEnv) -> Result<Lint, PlanError> {
    let bytes = read(path)?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let loaded = load_with(path, &bytes, base_dir, &SystemSubstitutions, unset_env)?;
    Ok(Lint {
        name: loaded.plan.name,
        failover_steps: loaded.plan.failover.len(),
        failback_steps: loaded.plan.failback.len(),
        warnings: loaded.warnings,
        file: path.to_owned(),
        text: loaded.text,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, PlanError> {
    std::fs::read(path).map_err(|source| PlanError::Read {
        file: path.to_owned(),
        source,
    })
}

struct Loaded {
    plan: Plan,
    warnings: Vec<Problem>,
    text: String,
}

fn load_with(
    path: &Path,
    bytes: &[u8],
    base_dir: &Path,
    source: &dyn SubstitutionSource,
    unset_env: UnsetEnv,
) -> Result<Loaded, PlanError> {
    let invalid = |text: String, problems: Vec<Problem>| PlanError::Invalid {
        file: path.to_owned(),
        text,
        problems,
    };
    let text = decode(bytes).map_err(|(text, problem)| invalid(text, vec![problem]))?;
    let mut root = match parse_yaml(&text) {
        Ok(root) => root,
        Err(problem) => return Err(invalid(text, vec![problem])),
    };
    let mut problems = Vec::new();
    let substituted = subst::resolve(&mut root, base_dir, source, unset_env, &mut problems);
    let mut checked = check::Problems::new(problems, substituted.placeholders);
    let plan = check::check(path, &text, &root, &mut checked).map(|plan| Plan {
        secrets: Secrets::new(substituted.secrets),
        ..plan
    });
    let mut problems = checked.into_vec();
    problems.sort_by_key(|p| (p.line, p.column));
    problems.dedup();
    match plan {
        Some(plan) if problems.is_empty() => Ok(Loaded {
            plan,
            warnings: substituted.warnings,
            text,
        }),
        _ => {
            if problems.is_empty() {
                problems.push(Problem::new(0, 0, "", "the plan is incomplete"));
            }
            Err(invalid(text, problems))
        }
    }
}

/// The plan's bytes as text, or the problem (with the text as far as it can be shown).
fn decode(bytes: &[u8]) -> Result<String, (String, Problem)> {
    if bytes.len() > MAX_PLAN_BYTES {
        return Err((
            String::new(),
            Problem::new(
                0,
                0,
                "",
                format!(
                    "the file is {} bytes; a plan may be at most {MAX_PLAN_BYTES} bytes",
                    bytes.len()
                ),
            ),
        ));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            let column = String::from_utf8_lossy(&good[line_start..]).chars().count() as u64 + 1;
            Err((
                String::from_utf8_lossy(bytes).into_owned(),
                Problem::new(
                    line,
                    column,
                    "",
                    "the file is not UTF-8 text (invalid byte here)",
                ),
            ))
        }
    }
}

fn parse_yaml(text: &str) -> Result<Node, Problem> {
    if text.trim().is_empty() {
        return Err(Problem::new(
            1,
            1,
            "",
            "the file is empty: expected a plan (run `kdr init` for a starter)",
        ));
    }
    // A plan is a page: YAML aliases may repeat a few blocks, never expand a "billion laughs".
    let mut options = serde_saphyr::Options::default();
    options.alias_limits.max_total_replayed_events = 10_000;
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = e.to_string();
        // The library's message may repeat the position or a snippet; keep the first line.
        let first = message.lines().next().unwrap_or("invalid YAML");
        // Our own header says where; drop the library's `error: line 6 column 45: `.
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let first = match first.split_once(": ") {
            Some((head, rest)) if head.starts_with("line ") && head.contains(" column ") => rest,
            _ => first,
        }
        .to_owned();
        Problem::new(line, column, "", format!("invalid YAML: {first}"))
    })
}

#[cfg(test)]
mod tests;
