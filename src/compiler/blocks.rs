//! Templates compiled once. Every template string of a block becomes a compiled
//! [`Template`] in its pipeline's [`Templates`] (its syntax checked by the one parse),
//! and the variables it reads are checked against what is in scope where it stands.

use std::sync::Arc;

use super::scope::{Scope, Site};
use crate::diagnostic::Diagnostic;
use crate::source::{Source, Span};
use crate::template::{self, Block, Template, TemplateError, Templates};
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

    /// Checks the variables a template reads against the scope of `site`.
    pub(super) fn check(&mut self, template: &Template, site: Site) {
        for var in &template.variables {
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
    Diagnostic::error("template-syntax", source, at, format!("invalid template: {}", e.message))
        .with_help("templates are minijinja: `{{ expression }}`, `{% if ... %}...{% endif %}`")
}
