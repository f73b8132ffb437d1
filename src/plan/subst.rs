//! `${env:NAME}` and `${file:PATH}` in string values, resolved when the plan is loaded.
//!
//! A value that came from a substitution is a secret: the node keeps the text as written
//! (`raw`) so everything that shows or logs the plan can show that instead.

use std::path::Path;

use super::error::Problem;
use super::node::{Node, NodeKind, join_index, join_key};

/// Where `${env:…}` and `${file:…}` substitutions find their values; tests and the fuzzer pass
/// their own. (Not to be confused with the `lookup` module: the look-up commands.)
pub trait SubstitutionSource {
    fn env(&self, name: &str) -> Option<String>;
    fn file(&self, path: &Path) -> std::io::Result<String>;
}

/// The process environment and the file system.
pub struct SystemSubstitutions;

impl SubstitutionSource for SystemSubstitutions {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// What an unset `${env:NAME}` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsetEnv {
    /// A problem: the plan is invalid (every command that runs or reads a plan).
    Error,
    /// A warning, and the value becomes a placeholder whose own checks are skipped, so CI can
    /// lint a plan without its secrets (`kdr plan check --allow-missing-env` only: a plan loaded
    /// this way is never handed to anything that connects).
    Placeholder,
}

/// What resolving a plan's substitutions produced besides the substituted tree.
#[derive(Debug, Default)]
pub struct Substituted {
    /// Every value a substitution produced, so output can be scrubbed of them.
    pub secrets: Vec<String>,
    /// One warning per value with an unset variable (only under [`UnsetEnv::Placeholder`]).
    pub warnings: Vec<Problem>,
    /// Where those values are (line, column): problems found there are about a placeholder.
    pub placeholders: Vec<(u64, u64)>,
}

/// Resolve every substitution in the tree, collecting one problem per failed substitution.
pub fn resolve(
    root: &mut Node,
    base_dir: &Path,
    source: &dyn SubstitutionSource,
    unset_env: UnsetEnv,
    problems: &mut Vec<Problem>,
) -> Substituted {
    let mut resolver = Resolver {
        base_dir,
        source,
        unset_env,
        problems,
        out: Substituted::default(),
    };
    resolver.walk(root, "");
    resolver.out
}

struct Resolver<'a> {
    base_dir: &'a Path,
    source: &'a dyn SubstitutionSource,
    unset_env: UnsetEnv,
    problems: &'a mut Vec<Problem>,
    out: Substituted,
}

impl Resolver<'_> {
    fn walk(&mut self, node: &mut Node, path: &str) {
        let (line, column) = (node.line, node.column);
        match &mut node.kind {
            NodeKind::Str { value, raw } => {
                if !value.contains("${") {
                    return;
                }
                let mut unset = Vec::new();
                let missing = match self.unset_env {
                    UnsetEnv::Error => None,
                    UnsetEnv::Placeholder => Some(&mut unset),
                };
                let result = substitute(
                    value,
                    self.base_dir,
                    self.source,
                    &mut self.out.secrets,
                    missing,
                );
                for name in &unset {
                    self.out.warnings.push(Problem::new(
                        line,
                        column,
                        path,
                        format!(
                            "{}: this value is not checked (--allow-missing-env)",
                            unset_message(name)
                        ),
                    ));
                }
                if !unset.is_empty() {
                    self.out.placeholders.push((line, column));
                }
                match result {
                    Ok(Resolved::Secret(resolved)) => {
                        *raw = Some(std::mem::replace(value, resolved));
                    }
                    Ok(Resolved::Literal(text)) => *value = text,
                    Ok(Resolved::Unchanged) => {}
                    Err(message) => {
                        // Treat the unresolved reference as a secret too, so nothing downstream
                        // also complains that a secret is written in clear.
                        *raw = Some(value.clone());
                        self.problems
                            .push(Problem::new(line, column, path, message));
                    }
                }
            }
            NodeKind::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.walk(item, &join_index(path, i));
                }
            }
            NodeKind::Map(entries) => {
                for (key, value) in entries.iter_mut() {
                    let key_path = join_key(path, key.key_text().unwrap_or("?"));
                    self.walk(value, &key_path);
                }
            }
            _ => {}
        }
    }
}

fn unset_message(name: &str) -> String {
    format!("environment variable `{name}` is not set (referenced as `${{env:{name}}}`)")
}

/// Substitute every reference in `text`. With `unset` given, an unset variable is recorded
/// there and replaced by its reference as written (a placeholder, never a value).
fn substitute(
    text: &str,
    base_dir: &Path,
    source: &dyn SubstitutionSource,
    secrets: &mut Vec<String>,
    mut unset: Option<&mut Vec<String>>,
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
            match (source.env(name), unset.as_deref_mut()) {
                (Some(value), _) => value,
                (None, Some(unset)) => {
                    unset.push(name.to_owned());
                    out.push_str(&format!("${{env:{name}}}"));
                    substituted = true;
                    rest = &after[end + 1..];
                    continue;
                }
                (None, None) => return Err(unset_message(name)),
            }
        } else if let Some(file) = reference.strip_prefix("file:") {
            let path = base_dir.join(file);
            let content = source.file(&path).map_err(|e| {
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
    impl SubstitutionSource for Fake {
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

    fn substitute_(
        text: &str,
        base: &Path,
        source: &dyn SubstitutionSource,
    ) -> Result<Resolved, String> {
        substitute(text, base, source, &mut Vec::new(), None)
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

    #[test]
    fn an_unset_variable_can_become_a_recorded_placeholder() {
        let base = Path::new("/plans");
        let mut secrets = Vec::new();
        let mut unset = Vec::new();
        let got = substitute(
            "u=${env:USER};p=${env:NOPE}",
            base,
            &fake(),
            &mut secrets,
            Some(&mut unset),
        );
        assert_eq!(got, Ok(Resolved::Secret("u=kdr;p=${env:NOPE}".to_owned())));
        assert_eq!(unset, ["NOPE"]);
        assert_eq!(secrets, ["kdr"], "a placeholder is not a secret value");
        // Everything else that is wrong stays an error.
        assert!(substitute("${vault:x}", base, &fake(), &mut secrets, Some(&mut unset)).is_err());
    }
}
