//! A value from a pipeline file with its templates compiled once, keeping where each
//! one stands in the file: what the engine and `phased plan` render, with no YAML left.
//! A string that is exactly one `{{ expression }}` keeps the expression's type; other
//! strings with template syntax render to text.

use std::collections::HashMap;
use std::sync::Arc;

use minijinja::{Environment, Expression, Value};

use super::TemplateError;
use super::calls::{self, Call};
use super::env::{ENV, GLOBALS, configured};
use crate::source::Span;

/// A compiled value: the shape of what was written, with templates where they were.
#[derive(Debug, Clone)]
pub(crate) enum Block {
    /// No template inside: the value as written.
    Literal(serde_json::Value),
    Template(Template),
    Seq(Vec<Block>),
    Map(Vec<(String, Block)>),
}

/// One compiled template or expression, with its text, its place in the file and the
/// variables it reads (dotted paths, in the order they first appear).
#[derive(Clone)]
pub(crate) struct Template {
    pub(crate) text: String,
    pub(crate) span: Span,
    pub(crate) variables: Vec<String>,
    /// The filters, tests and functions it names, each once.
    pub(crate) calls: Vec<Call>,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// `{{ expression }}` alone, or an `if:` expression: keeps its type.
    Expression(Arc<Expression<'static, 'static>>),
    /// Text with template syntax, stored in its pipeline's [`Templates`] by this name.
    Text(Arc<str>),
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Template({:?} at {:?})", self.text, self.span)
    }
}

/// Where a pipeline's text templates are compiled and kept.
#[derive(Clone)]
pub(crate) struct Templates {
    env: Environment<'static>,
    /// What each distinct text compiled to: the same text (`{{ inputs.service }}` in
    /// ten places) is compiled once per pipeline.
    compiled: HashMap<String, Compiled>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates { env: configured(), compiled: HashMap::new() }
    }
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

/// What a distinct text compiled to: its template, the variables it reads, what it calls.
type Compiled = (Kind, Vec<String>, Vec<Call>);

/// A failed render: where in the block (`env.PORT`, `args[2]`), the template's text,
/// and minijinja's error.
#[derive(Debug)]
pub(crate) struct RenderError {
    pub(crate) path: String,
    pub(crate) text: String,
    /// Where the template stands in its file.
    pub(crate) span: Span,
    pub(crate) error: minijinja::Error,
}

impl Templates {
    /// Compiles a string with template syntax found at `span`.
    pub(crate) fn compile(&mut self, text: &str, span: Span) -> Result<Template, TemplateError> {
        if let Some((kind, variables, calls)) = self.compiled.get(text) {
            let (variables, calls, kind) = (variables.clone(), calls.clone(), kind.clone());
            return Ok(Template { text: text.to_string(), span, variables, calls, kind });
        }
        let compiled = self.compile_new(text, span)?;
        let entry = (compiled.kind.clone(), compiled.variables.clone(), compiled.calls.clone());
        self.compiled.insert(text.to_string(), entry);
        Ok(compiled)
    }

    fn compile_new(&mut self, text: &str, span: Span) -> Result<Template, TemplateError> {
        match single_expression(text) {
            Some(expr) => self.compile_expression(expr, text, span).map_err(|mut e| {
                // The range is within `expr`: make it a range within `text`.
                let offset = expr.as_ptr() as usize - text.as_ptr() as usize;
                e.range = e.range.map(|r| r.start + offset..r.end + offset);
                e
            }),
            None => {
                let name = format!("{}:{}", span.start, span.end);
                self.env.add_template_owned(name.clone(), text.to_string())?;
                let template = self.env.get_template(&name)?;
                let variables = ordered(text, template.undeclared_variables(true));
                let calls = calls::in_template(&template);
                let kind = Kind::Text(name.into());
                Ok(Template { text: text.to_string(), span, variables, calls, kind })
            }
        }
    }

    /// Compiles an expression (`if:`, or the inside of `{{ }}`); `text` is as written.
    pub(crate) fn compile_expression(&self, expr: &str, text: &str, span: Span) -> Result<Template, TemplateError> {
        let expression = ENV.compile_expression_owned(expr.to_string())?;
        let variables = ordered(expr, expression.undeclared_variables(true));
        let calls = calls::in_expression(expr);
        let kind = Kind::Expression(Arc::new(expression));
        Ok(Template { text: text.to_string(), span, variables, calls, kind })
    }
}

impl Template {
    /// The value of the template: an expression keeps its type, text is a string.
    /// `templates` are those of the pipeline it was compiled in.
    pub(crate) fn eval(&self, templates: &Templates, ctx: &Value) -> Result<serde_json::Value, minijinja::Error> {
        let value = match &self.kind {
            Kind::Expression(expression) => {
                let value = expression.eval(ctx.clone())?;
                if value.is_undefined() {
                    let message = format!("`{}` is undefined", self.text.trim());
                    return Err(minijinja::Error::new(minijinja::ErrorKind::UndefinedError, message));
                }
                value
            }
            Kind::Text(name) => Value::from(templates.env.get_template(name)?.render(ctx.clone())?),
        };
        serde_json::to_value(&value)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string()))
    }

    /// Truthiness, as Jinja has it (`if:` conditions).
    pub(crate) fn is_true(&self, templates: &Templates, ctx: &Value) -> Result<bool, minijinja::Error> {
        match &self.kind {
            Kind::Expression(expression) => Ok(expression.eval(ctx.clone())?.is_true()),
            Kind::Text(_) => Ok(!self.eval(templates, ctx)?.as_str().unwrap_or_default().is_empty()),
        }
    }
}

impl Block {
    /// The block as written, each template as `{"$template": text}`: equal for equal
    /// definitions, wherever they stand in their file.
    pub(crate) fn written(&self) -> serde_json::Value {
        match self {
            Block::Literal(value) => value.clone(),
            Block::Template(template) => serde_json::json!({ "$template": template.text }),
            Block::Seq(items) => items.iter().map(Block::written).collect(),
            Block::Map(entries) => entries.iter().map(|(k, v)| (k.clone(), v.written())).collect(),
        }
    }

    /// Every template inside, in order.
    pub(crate) fn templates<'b>(&'b self, out: &mut Vec<&'b Template>) {
        match self {
            Block::Literal(_) => {}
            Block::Template(template) => out.push(template),
            Block::Seq(items) => items.iter().for_each(|b| b.templates(out)),
            Block::Map(entries) => entries.iter().for_each(|(_, b)| b.templates(out)),
        }
    }

    /// Renders every template inside, keeping the structure.
    pub(crate) fn render(&self, templates: &Templates, ctx: &Value) -> Result<serde_json::Value, RenderError> {
        self.render_at(templates, ctx, &mut String::new())
    }

    fn render_at(
        &self,
        templates: &Templates,
        ctx: &Value,
        path: &mut String,
    ) -> Result<serde_json::Value, RenderError> {
        Ok(match self {
            Block::Literal(value) => value.clone(),
            Block::Template(template) => template.eval(templates, ctx).map_err(|error| RenderError {
                path: path.clone(),
                text: template.text.clone(),
                span: template.span,
                error,
            })?,
            Block::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    out.push(item.render_at(templates, ctx, path)?);
                    path.truncate(len);
                }
                serde_json::Value::Array(out)
            }
            Block::Map(entries) => {
                let mut out = serde_json::Map::with_capacity(entries.len());
                for (key, value) in entries {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    out.insert(key.clone(), value.render_at(templates, ctx, path)?);
                    path.truncate(len);
                }
                serde_json::Value::Object(out)
            }
        })
    }
}

/// If `text` is exactly one `{{ expression }}`, the expression.
fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

fn ordered(text: &str, vars: std::collections::HashSet<String>) -> Vec<String> {
    let mut vars: Vec<String> = vars.into_iter().filter(|v| !GLOBALS.contains(&super::root_of(v))).collect();
    vars.sort_by_key(|v| (text.find(v.as_str()).unwrap_or(usize::MAX), v.clone()));
    vars
}
