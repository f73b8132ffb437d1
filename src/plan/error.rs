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
        out.push_str(&render_one(file, text, p));
    }
    let n = problems.len();
    out.push_str(&format!(
        "\n{} invalid: {n} problem{}",
        file.display(),
        if n == 1 { "" } else { "s" }
    ));
    out
}

fn render_one(file: &std::path::Path, text: &str, p: &Problem) -> String {
    let mut out = String::new();
    let at = if p.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", p.path)
    };
    if p.line > 0 {
        out.push_str(&format!(
            "error: {}:{}:{}: {at}{}",
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
        out.push_str(&format!("error: {}: {at}{}", file.display(), p.message));
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
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}
