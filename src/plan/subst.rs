//! `${env:NAME}` and `${file:PATH}` in string values, resolved when the plan is loaded.
//!
//! A value that came from a substitution is a secret: the node keeps the text as written
//! (`raw`) so everything that shows or logs the plan can show that instead.

use std::path::Path;

use super::error::Problem;
use super::node::{Node, NodeKind, join_index, join_key};

/// Where substitutions look things up; tests pass their own environment.
pub trait Lookup {
    fn env(&self, name: &str) -> Option<String>;
    fn file(&self, path: &Path) -> std::io::Result<String>;
}

/// The process environment and the file system.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Resolve every substitution in the tree, collecting one problem per failed substitution.
/// Returns every value a substitution produced, so output can be scrubbed of them.
pub fn resolve(
    root: &mut Node,
    base_dir: &Path,
    lookup: &dyn Lookup,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut secrets = Vec::new();
    walk(root, "", base_dir, lookup, problems, &mut secrets);
    secrets
}

fn walk(
    node: &mut Node,
    path: &str,
    base_dir: &Path,
    lookup: &dyn Lookup,
    problems: &mut Vec<Problem>,
    secrets: &mut Vec<String>,
) {
    let (line, column) = (node.line, node.column);
    match &mut node.kind {
        NodeKind::Str { value, raw } => {
            if !value.contains("${") {
                return;
            }
            match substitute(value, base_dir, lookup, secrets) {
                Ok(Resolved::Secret(resolved)) => {
                    *raw = Some(std::mem::replace(value, resolved));
                }
                Ok(Resolved::Literal(text)) => *value = text,
                Ok(Resolved::Unchanged) => {}
                Err(message) => {
                    // Treat the unresolved reference as a secret too, so nothing downstream
                    // also complains that a secret is written in clear.
                    *raw = Some(value.clone());
                    problems.push(Problem::new(line, column, path, message));
                }
            }
        }
        NodeKind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(
                    item,
                    &join_index(path, i),
                    base_dir,
                    lookup,
                    problems,
                    secrets,
                );
            }
        }
        NodeKind::Map(entries) => {
            for (key, value) in entries.iter_mut() {
                let key_path = join_key(path, key.key_text().unwrap_or("?"));
                walk(value, &key_path, base_dir, lookup, problems, secrets);
            }
        }
        _ => {}
    }
}

fn substitute(
    text: &str,
    base_dir: &Path,
    lookup: &dyn Lookup,
    secrets: &mut Vec<String>,
) -> Result<Resolved, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut substituted = false;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            // `$${env:X}` is the literal text `${env:X}`.
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            format!("unclosed `${{` in `{text}`: expected `${{env:NAME}}` or `${{file:PATH}}`")
        })?;
        let reference = &after[..end];
        let value = if let Some(name) = reference.strip_prefix("env:") {
            if name.is_empty() {
                return Err("empty variable name in `${env:}`".to_owned());
            }
            lookup.env(name).ok_or_else(|| {
                format!(
                    "environment variable `{name}` is not set (referenced as `${{env:{name}}}`)"
                )
            })?
        } else if let Some(file) = reference.strip_prefix("file:") {
            let path = base_dir.join(file);
            let content = lookup.file(&path).map_err(|e| {
                format!(
                    "cannot read secret file `{}` (referenced as `${{file:{file}}}`): {e}",
                    path.display()
                )
            })?;
            content.strip_suffix('\n').unwrap_or(&content).to_owned()
        } else {
            return Err(format!(
                "unknown substitution `${{{reference}}}`: expected `${{env:NAME}}` or `${{file:PATH}}` (write `$${{` for a literal `${{`)"
            ));
        };
        out.push_str(&value);
        secrets.push(value);
        substituted = true;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(if substituted {
        Resolved::Secret(out)
    } else if out != text {
        Resolved::Literal(out)
    } else {
        Resolved::Unchanged
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Resolved {
    Unchanged,
    /// Only `$${` escapes were undone: not a secret.
    Literal(String),
    /// A value from the environment or a file: a secret.
    Secret(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake(HashMap<&'static str, &'static str>);
    impl Lookup for Fake {
        fn env(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| (*s).to_owned())
        }
        fn file(&self, path: &Path) -> std::io::Result<String> {
            match path.to_str() {
                Some("/plans/pw.txt") => Ok("from-file\n".to_owned()),
                _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
            }
        }
    }

    fn substitute_(text: &str, base: &Path, lookup: &dyn Lookup) -> Result<Resolved, String> {
        substitute(text, base, lookup, &mut Vec::new())
    }

    fn fake() -> Fake {
        Fake(HashMap::from([("PW", "hunter2"), ("USER", "kdr")]))
    }

    #[test]
    fn env_and_file_values_are_resolved_and_marked_secret() {
        let base = Path::new("/plans");
        let secret = |s: &str| Ok(Resolved::Secret(s.to_owned()));
        assert_eq!(substitute_("${env:PW}", base, &fake()), secret("hunter2"));
        assert_eq!(
            substitute_("u=${env:USER};p=${env:PW}", base, &fake()),
            secret("u=kdr;p=hunter2")
        );
        assert_eq!(
            substitute_("${file:pw.txt}", base, &fake()),
            secret("from-file")
        );
        assert_eq!(substitute_("plain", base, &fake()), Ok(Resolved::Unchanged));
        assert_eq!(
            substitute_("cost $${env:X}", base, &fake()),
            Ok(Resolved::Literal("cost ${env:X}".to_owned()))
        );
    }

    #[test]
    fn missing_variables_and_bad_syntax_are_errors_that_name_them() {
        let base = Path::new("/plans");
        assert_eq!(
            substitute_("${env:NOPE}", base, &fake()),
            Err("environment variable `NOPE` is not set (referenced as `${env:NOPE}`)".to_owned())
        );
        assert!(
            substitute_("${vault:x}", base, &fake())
                .unwrap_err()
                .starts_with("unknown substitution `${vault:x}`")
        );
        assert!(
            substitute_("${env:PW", base, &fake())
                .unwrap_err()
                .starts_with("unclosed")
        );
    }
}
