//! Plan errors that point somewhere: file, line:column, key path, what was expected.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub column: u64,
    /// Key path such as `failover[2].timeout`; empty for the document itself.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(
        line: u64,
        column: u64,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            line,
            column,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The key path as shown to the operator. Paths are YAML paths and count from 0; inside a
    /// step they also name the step as runs number it, from 1 (`[5/7]`):
    /// `failover[4].timeout (step 5)`.
    pub fn shown_path(&self) -> String {
        match step_number(&self.path) {
            Some(n) => format!("{} (step {n})", self.path),
            None => self.path.clone(),
        }
    }
}

/// The 1-based step number of a path inside `failover[i]` or `failback[i]`.
fn step_number(path: &str) -> Option<usize> {
    let rest = path
        .strip_prefix("failover[")
        .or_else(|| path.strip_prefix("failback["))?;
    let (index, _) = rest.split_once(']')?;
    index.parse::<usize>().ok()?.checked_add(1)
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("failed to read plan {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, in file order, with the text needed to show each one in context.
    #[error("{}", render(file, text, problems))]
    Invalid {
        file: PathBuf,
        text: String,
        problems: Vec<Problem>,
    },
}

impl PlanError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            PlanError::Invalid { problems, .. } => problems,
            PlanError::Read { .. } => &[],
        }
    }
}

/// `error: plan.yaml:12:16: failover[2].timeout: …` then the line with a caret under the spot, as
/// `just` shows its errors: the operator sees the mistake without opening an editor.
fn render(file: &std::path::Path, text: &str, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&render_one(file, text, p, "error"));
    }
    let n = problems.len();
    out.push_str(&format!(
        "\n{} invalid: {n} problem{}",
        file.display(),
        if n == 1 { "" } else { "s" }
    ));
    out
}

/// Warnings in the same form as errors, one after the other, each ending in a newline.
pub(super) fn render_warnings(file: &std::path::Path, text: &str, warnings: &[Problem]) -> String {
    warnings
        .iter()
        .map(|w| render_one(file, text, w, "warning") + "\n")
        .collect()
}

fn render_one(file: &std::path::Path, text: &str, p: &Problem, severity: &str) -> String {
    let mut out = String::new();
    let at = if p.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", p.shown_path())
    };
    if p.line > 0 {
        out.push_str(&format!(
            "{severity}: {}:{}:{}: {at}{}",
            file.display(),
            p.line,
            p.column,
            p.message
        ));
        if let Some(source_line) = text.lines().nth((p.line - 1) as usize) {
            let gutter = p.line.to_string().len();
            let shown: String = mask_secret_line(source_line).chars().take(160).collect();
            let caret_at = (p.column.saturating_sub(1) as usize).min(shown.chars().count());
            out.push_str(&format!(
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {}^",
                "",
                p.line,
                shown,
                "",
                " ".repeat(caret_at),
            ));
        }
    } else {
        out.push_str(&format!(
            "{severity}: {}: {at}{}",
            file.display(),
            p.message
        ));
    }
    if let Some(hint) = &p.hint {
        out.push_str(&format!("\n  = hint: {hint}"));
    }
    out
}

/// Never echo what looks like a literal secret back to the terminal, even inside an error.
fn mask_secret_line(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let Some(colon) = line.find(':') else {
        return line.to_owned();
    };
    if crate::plan::is_secret_key(&lower[..colon]) {
        format!("{}: ***", &line[..colon])
    } else {
        line.to_owned()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.shown_path())?;
        }
        f.write_str(&self.message)
    }
}
