//! Inputs are data, never shell code. A `shell` step's `run:` (a script for `sh -c`)
//! and `command:` (a program and its arguments) may not render what a caller chose:
//! `inputs.*`, a fan-out's `item`, or, in a triggers file, `push.*` and `pr.*`. A value
//! reaches a step through `env:` (`"$VERSION"` in the script is one word, whatever it
//! holds), or through the explicit `| shell_quote` filter, which quotes it for POSIX sh.
//! A secret may not stand in `run:` or `command:` at all, quoted or not: the command
//! line of a process is visible to every local user (`ps`), its environment is not.
//!
//! This is the script-injection class GitHub documents for `${{ }}` in `run:`.

use std::sync::Arc;

use crate::diagnostic::{Diagnostic, DiagnosticCode};
use crate::source::Source;
use crate::template::{self, Block, Template};

/// The roots of values a caller chose (an API token, a webhook, `-i`).
const CALLER_ROOTS: &[&str] = &["inputs", "item", "push", "pr"];

/// What is in scope where the step stands: a variable that is not (an undeclared
/// input, `item` outside `foreach`) is reported as undefined already, not again here.
pub(super) struct InScope<'a> {
    pub(super) inputs: &'a [String],
    pub(super) item: bool,
}

impl InScope<'_> {
    fn caller_value(&self, var: &str) -> bool {
        let mut parts = var.split('.');
        match (parts.next(), parts.next()) {
            (Some("inputs"), None) => true,
            (Some("inputs"), Some(name)) => self.inputs.iter().any(|i| i == name),
            (Some("item"), _) => self.item,
            (Some("push" | "pr"), _) => true,
            _ => false,
        }
    }
}

/// Checks the `with:` of a `shell` step (or of its `undo`).
pub(super) fn check_shell(source: &Arc<Source>, with: &Block, scope: &InScope<'_>, out: &mut Vec<Diagnostic>) {
    match with {
        // The whole block from one template: whatever it reads reaches the step.
        Block::Template(t) => check_template(source, t, "with", scope, out),
        Block::Map(entries) => {
            for (key, block) in entries {
                if key != "run" && key != "command" {
                    continue;
                }
                let mut templates = Vec::new();
                block.templates(&mut templates);
                for t in templates {
                    check_template(source, t, key, scope, out);
                }
            }
        }
        _ => {}
    }
}

fn check_template(source: &Arc<Source>, t: &Template, key: &str, scope: &InScope<'_>, out: &mut Vec<Diagnostic>) {
    for segment in segments(&t.text) {
        let problem = match segment {
            Segment::Output(expr) => {
                let Some(vars) = template::expression_variables(expr) else { continue };
                if let Some(secret) = vars.iter().find(|v| template::root_of(v) == "secrets") {
                    Some((secret.clone(), true))
                } else {
                    let quoted = ends_with_shell_quote(expr);
                    vars.iter().find(|v| scope.caller_value(v) && !quoted).map(|v| (v.clone(), false))
                }
            }
            Segment::Statement(statement) => {
                // `{% if inputs.debug %}` only chooses a branch; a loop or an assignment
                // carries the value into the text, where it can no longer be told apart.
                let keyword = statement.split_whitespace().next().unwrap_or("");
                if matches!(keyword, "if" | "elif") {
                    continue;
                }
                roots_in(statement).map(|root| (root.to_string(), root == "secrets"))
            }
        };
        let Some((var, secret)) = problem else { continue };
        let at = source.find_in(t.span, &var).unwrap_or(t.span);
        let name = env_name(&var);
        let diagnostic = if secret {
            Diagnostic::error(
                DiagnosticCode::SecretInCommand,
                source,
                at,
                format!("`{var}` is rendered into `{key}`, where every local user can read it (`ps`)"),
            )
            .with_help(format!(
                "pass it through the environment: `env: {{{name}: \"{{{{ {var} }}}}\"}}`, and read `\"${name}\"` in the script"
            ))
        } else if key == "command" {
            Diagnostic::error(
                DiagnosticCode::ShellInjection,
                source,
                at,
                format!("`{var}` is rendered into `command`, where a caller's value can become an option or a program"),
            )
            .with_help(format!(
                "pass it through the environment and run a script: `env: {{{name}: \"{{{{ {var} }}}}\"}}` with \
                 `run: <program> -- \"${name}\"`"
            ))
        } else {
            Diagnostic::error(
                DiagnosticCode::ShellInjection,
                source,
                at,
                format!("`{var}` is rendered into `{key}`, where a caller's value becomes shell code"),
            )
            .with_help(format!(
                "pass it through the environment: `env: {{{name}: \"{{{{ {var} }}}}\"}}`, and write `\"${name}\"` in the \
                 script; or quote it explicitly: `{{{{ {var} | shell_quote }}}}`"
            ))
        };
        out.push(diagnostic);
    }
}

/// A name for the variable that carries `var` to the step, prefixed so that it can
/// never be one the shell or the system reads (`PATH`, `IFS`, `LD_PRELOAD`).
fn env_name(var: &str) -> String {
    let root = template::root_of(var);
    let last = var.rsplit('.').next().unwrap_or(var);
    let prefix = match root {
        "inputs" => "INPUT",
        "secrets" => "SECRET",
        "push" => "PUSH",
        "pr" => "PR",
        _ => "ITEM",
    };
    let name: String =
        last.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    if last == root { prefix.to_string() } else { format!("{prefix}_{name}") }
}

enum Segment<'a> {
    /// The inside of `{{ }}`.
    Output(&'a str),
    /// The inside of `{% %}`.
    Statement(&'a str),
}

/// The `{{ }}` and `{% %}` parts of a template text, their insides trimmed (and
/// without the whitespace-control `-`); comments are skipped.
fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let (close, output) = match after.chars().next() {
            Some('{') => ("}}", true),
            Some('%') => ("%}", false),
            Some('#') => ("#}", false),
            _ => {
                rest = after;
                continue;
            }
        };
        let body = &after[1..];
        let Some(end) = body.find(close) else { break };
        let inner = body[..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        if after.starts_with('{') {
            out.push(Segment::Output(inner));
        } else if !output && after.starts_with('%') {
            out.push(Segment::Statement(inner));
        }
        rest = &body[end + close.len()..];
    }
    out
}

/// Whether the last filter of an expression is `shell_quote`.
fn ends_with_shell_quote(expr: &str) -> bool {
    expr.rsplit_once('|').is_some_and(|(_, last)| last.trim() == "shell_quote")
}

/// The first caller root or `secrets` named in a statement.
fn roots_in(statement: &str) -> Option<&'static str> {
    let words = statement.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    let roots = CALLER_ROOTS.iter().chain(&["secrets"]);
    words.filter(|w| !w.is_empty()).find_map(|w| roots.clone().find(|r| **r == w).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_the_outputs_and_statements() {
        let found: Vec<String> = segments("a {{ inputs.x }} {%- if y -%}b{% endif %} {# c #} {{- z | f -}}")
            .into_iter()
            .map(|s| match s {
                Segment::Output(e) => format!("out:{e}"),
                Segment::Statement(s) => format!("stmt:{s}"),
            })
            .collect();
        assert_eq!(found, ["out:inputs.x", "stmt:if y", "stmt:endif", "out:z | f"]);
    }

    #[test]
    fn only_a_last_shell_quote_filter_quotes() {
        assert!(ends_with_shell_quote("inputs.v | shell_quote"));
        assert!(ends_with_shell_quote("inputs.v | default('x') | shell_quote"));
        assert!(!ends_with_shell_quote("inputs.v | shell_quote | upper"));
        assert!(!ends_with_shell_quote("inputs.v"));
        assert_eq!(roots_in("for h in inputs.hosts"), Some("inputs"));
        assert_eq!(roots_in("set t = secrets.token"), Some("secrets"));
        assert_eq!(roots_in("set n = nodes.a.outputs.x"), None);
        assert_eq!(env_name("inputs.path"), "INPUT_PATH");
        assert_eq!(env_name("item"), "ITEM");
        assert_eq!(env_name("secrets.db_url"), "SECRET_DB_URL");
    }
}
