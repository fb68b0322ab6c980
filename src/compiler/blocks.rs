//! Templates compiled once. Every template string of a block becomes a compiled
//! [`Template`] in its pipeline's [`Templates`] (its syntax checked by the one parse),
//! and the variables it reads are checked against what is in scope where it stands.

use std::sync::Arc;

use super::scope::{Scope, Site};
use crate::diagnostic::{Diagnostic, DiagnosticCode};
use crate::source::{Source, Span};
use crate::template::{self, Block, Call, CallKind, Template, TemplateError, Templates};
use crate::yaml::{Yaml, YamlValue};

/// What compiling templates needs: the file (for positions), the pipeline's template
/// store, what is in scope, and where problems go.
pub(super) struct Blocks<'a, 'b> {
    pub(super) source: &'a Arc<Source>,
    pub(super) templates: &'a mut Templates,
    pub(super) scope: &'a mut Scope<'b>,
    pub(super) out: &'a mut Vec<Diagnostic>,
}

impl Blocks<'_, '_> {
    /// A block (`with`, `metadata`, `outputs.x`, ...), its templates compiled.
    pub(super) fn block(&mut self, yaml: &Yaml, site: Site) -> Block {
        match &yaml.value {
            YamlValue::String(text) if template::is_template(text) => match self.templates.compile(text, yaml.span) {
                Ok(compiled) => {
                    self.check(&compiled, site);
                    Block::Template(compiled)
                }
                Err(e) => {
                    self.out.push(template_error(self.source, text, yaml.span, e));
                    Block::Literal(serde_json::Value::Null)
                }
            },
            YamlValue::Seq(items) => Block::Seq(items.iter().map(|item| self.block(item, site)).collect()),
            YamlValue::Map(entries) => {
                Block::Map(entries.iter().map(|(key, value)| (key.text.clone(), self.block(value, site))).collect())
            }
            _ => Block::Literal(yaml.to_json()),
        }
    }

    /// A string that may hold a template (`concurrency.key`).
    pub(super) fn text(&mut self, text: &str, span: Span, site: Site) -> Block {
        if !template::is_template(text) {
            return Block::Literal(serde_json::Value::String(text.to_string()));
        }
        match self.templates.compile(text, span) {
            Ok(compiled) => {
                self.check(&compiled, site);
                Block::Template(compiled)
            }
            Err(e) => {
                self.out.push(template_error(self.source, text, span, e));
                Block::Literal(serde_json::Value::Null)
            }
        }
    }

    /// An expression (`if:`); written bare or inside `{{ }}`.
    pub(super) fn expression(&mut self, text: &str, span: Span, site: Site) -> Option<Template> {
        let trimmed = text.trim();
        let expr = trimmed.strip_prefix("{{").and_then(|e| e.strip_suffix("}}")).unwrap_or(trimmed);
        match self.templates.compile_expression(expr, text, span) {
            Ok(compiled) => {
                self.check(&compiled, site);
                Some(compiled)
            }
            Err(e) => {
                self.out.push(template_error(self.source, expr, span, e));
                None
            }
        }
    }

    /// Checks the variables a template reads against the scope of `site`, and the
    /// filters, tests and functions it names against the environment.
    pub(super) fn check(&mut self, template: &Template, site: Site) {
        self.out.extend(unknown_calls(self.source, template));
        for var in &template.variables {
            let called = |c: &Call| c.kind == CallKind::Function && c.name == *var;
            if template.calls.iter().any(called) && !var.contains('.') {
                // `nwo()`: said as an unknown function (above), not also as a variable.
                continue;
            }
            if let Err(problem) = self.scope.check(var, site) {
                let at = self.source.find_in(template.span, var).unwrap_or(template.span);
                self.out.push(
                    Diagnostic::error(problem.code, self.source, at, problem.message).with_help_opt(problem.help),
                );
            }
        }
    }
}

pub(super) fn template_error(source: &Arc<Source>, text: &str, span: Span, e: TemplateError) -> Diagnostic {
    let at = e.range.and_then(|r| text.get(r)).and_then(|needle| source.find_in(span, needle)).unwrap_or(span);
    Diagnostic::error(DiagnosticCode::TemplateSyntax, source, at, format!("invalid template: {}", e.message))
        .with_help("templates are minijinja: `{{ expression }}`, `{% if ... %}...{% endif %}`")
}

/// A diagnostic for each filter, test or function a template names that does not
/// exist: `plan` and `run` would fail where it stands.
pub(crate) fn unknown_calls(source: &Arc<Source>, template: &Template) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for call in template.calls.iter().filter(|c| !c.is_known()) {
        // A function is what the template does not define itself: a macro, a `set`
        // name or `loop` are called the same way, and are not variables it reads.
        if call.kind == CallKind::Function && !template.variables.contains(&call.name) {
            continue;
        }
        let noun = call.kind.noun();
        let at = locate(source, template.span, call).unwrap_or(template.span);
        out.push(
            Diagnostic::error(unknown_code(call.kind), source, at, format!("unknown {noun} `{}`", call.name))
                .with_help(call.help()),
        );
    }
    out
}

fn unknown_code(kind: CallKind) -> DiagnosticCode {
    match kind {
        CallKind::Filter => DiagnosticCode::UnknownFilter,
        CallKind::Test => DiagnosticCode::UnknownTest,
        CallKind::Function => DiagnosticCode::UnknownFunction,
    }
}

/// Where `call` stands inside `within`: the name as a whole word, after `|` for a
/// filter, after `is` (or `is not`) for a test, before `(` for a function.
fn locate(source: &Source, within: Span, call: &Call) -> Option<Span> {
    let end = within.end.min(source.text.len());
    let start = within.start.min(end);
    let text = source.text.get(start..end)?;
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut first = None;
    for (i, _) in text.match_indices(call.name.as_str()) {
        let before = text[..i].trim_end();
        let after = text[i + call.name.len()..].trim_start();
        if text[..i].ends_with(word) || text[i + call.name.len()..].starts_with(word) {
            continue;
        }
        let span = Span::new(start + i, start + i + call.name.len());
        first.get_or_insert(span);
        let fits = match call.kind {
            CallKind::Filter => before.ends_with('|') || before.ends_with("filter"),
            CallKind::Test => before.ends_with(" is") || before.ends_with(" not"),
            CallKind::Function => after.starts_with('('),
        };
        if fits {
            return Some(span);
        }
    }
    first
}
