//! Templates: minijinja with strict undefined, no loader (a template can read only the
//! values it is given) and a fuel limit (a runaway loop ends in an error). This file
//! compiles templates for validation (syntax, the variables they read) and renders
//! them at run time; a string that is exactly one `{{ expression }}` keeps the
//! expression's type.

use std::ops::Range;
use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::yaml::{Yaml, YamlValue};

/// Names that are functions or built-ins, not variables a pipeline must provide.
pub(crate) const GLOBALS: &[&str] = &[
    "now",
    "secret_values",
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "self",
    "super",
    "caller",
    "varargs",
    "kwargs",
];

/// Instructions a single render may execute before it is stopped.
const FUEL: u64 = 2_000_000;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env.add_function("now", now);
    env.add_function("secret_values", secret_values);
    env
});

/// The variable a run's context gives `now()`: the time of the step being taken, so
/// that the engine's core stays free of a clock. Without it (`phased plan`), the time
/// of day.
pub(crate) const NOW_VARIABLE: &str = "__now";

fn now(state: &minijinja::State) -> Value {
    match state.lookup(NOW_VARIABLE) {
        Some(value) if !value.is_undefined() => value,
        _ => Value::from(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()),
    }
}

/// `secret_values({"DB_URL": "db_url"})`: the same keys, each value replaced by the
/// secret it names (from `secrets`, so masked in records). For inputs that name secrets
/// without holding them, such as a container's secret environment.
fn secret_values(state: &minijinja::State, names: Value) -> Result<Value, minijinja::Error> {
    use minijinja::{Error, ErrorKind};
    let secrets = state.lookup("secrets").unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    for key in names.try_iter()? {
        let name = names.get_item(&key)?;
        let Some(name_text) = name.as_str() else {
            return Err(Error::new(ErrorKind::InvalidOperation, format!("`{key}` must name a secret, got `{name}`")));
        };
        let value = secrets.get_item(&name)?;
        if value.is_undefined() {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                format!(
                    "secret `{name_text}` (for `{key}`) is not set: export PHASED_SECRET_{}",
                    name_text.to_uppercase()
                ),
            ));
        }
        out.insert(key.to_string(), value);
    }
    Ok(Value::from(out))
}

/// Whether a string holds template syntax.
pub(crate) fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// A template that does not compile, with the byte range inside the template text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TemplateError {
    pub message: String,
    pub range: Option<Range<usize>>,
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        let message = match e.detail() {
            Some(detail) => format!("{}: {detail}", kind_text(&e)),
            None => kind_text(&e),
        };
        TemplateError { message, range: e.range() }
    }
}

fn kind_text(e: &minijinja::Error) -> String {
    let kind = e.kind().to_string();
    kind.trim_end_matches('.').to_string()
}

/// The variables a template reads, as dotted paths (`inputs.source.type`), in the
/// order they first appear in the text.
pub(crate) fn template_variables(text: &str) -> Result<Vec<String>, TemplateError> {
    let template = ENV.template_from_str(text)?;
    Ok(ordered(text, template.undeclared_variables(true)))
}

/// The variables an expression (`if:`) reads.
pub(crate) fn expression_variables(expr: &str) -> Result<Vec<String>, TemplateError> {
    let expression = ENV.compile_expression(expr)?;
    Ok(ordered(expr, expression.undeclared_variables(true)))
}

fn ordered(text: &str, vars: std::collections::HashSet<String>) -> Vec<String> {
    let mut vars: Vec<String> = vars.into_iter().filter(|v| !GLOBALS.contains(&root_of(v))).collect();
    vars.sort_by_key(|v| (text.find(v.as_str()).unwrap_or(usize::MAX), v.clone()));
    vars
}

/// The first segment of a dotted path.
pub(crate) fn root_of(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// If `text` is exactly one `{{ expression }}`, the expression.
fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

/// Renders a string: a single expression keeps its type, anything else is a string.
pub(crate) fn render_str(text: &str, ctx: &Value) -> Result<serde_json::Value, minijinja::Error> {
    if !is_template(text) {
        return Ok(serde_json::Value::String(text.to_string()));
    }
    let value = match single_expression(text) {
        Some(expr) => {
            let value = ENV.compile_expression(expr)?.eval(ctx.clone())?;
            if value.is_undefined() {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::UndefinedError,
                    format!("`{expr}` is undefined"),
                ));
            }
            value
        }
        None => Value::from(ENV.render_str(text, ctx.clone())?),
    };
    serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string()))
}

/// Evaluates an `if:` expression to a boolean (truthiness as in Jinja).
pub(crate) fn eval_condition(expr: &str, ctx: &Value) -> Result<bool, minijinja::Error> {
    Ok(ENV.compile_expression(expr)?.eval(ctx.clone())?.is_true())
}

/// A rendering error with the position and text of the string that failed.
#[derive(Debug)]
pub(crate) struct RenderError {
    /// Where in the block: `env.PORT`, `args[2]`.
    pub path: String,
    pub text: String,
    pub error: minijinja::Error,
}

/// A run-time template error as one line: its kind and detail, and where secrets come
/// from when a secret is missing.
pub(crate) fn describe_error(e: &minijinja::Error) -> String {
    let mut text = e.kind().to_string();
    if let Some(detail) = e.detail() {
        text = format!("{text}: {detail}");
    }
    if text.contains("secrets") {
        text.push_str(" (secrets come from PHASED_SECRET_<NAME> environment variables)");
    }
    text
}

/// Renders every template string inside a YAML value, keeping its structure.
pub(crate) fn render_yaml(node: &Yaml, ctx: &Value) -> Result<serde_json::Value, RenderError> {
    render_at(node, ctx, &mut String::new())
}

fn render_at(node: &Yaml, ctx: &Value, path: &mut String) -> Result<serde_json::Value, RenderError> {
    Ok(match &node.value {
        YamlValue::String(s) => {
            render_str(s, ctx).map_err(|error| RenderError { path: path.clone(), text: s.clone(), error })?
        }
        YamlValue::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(render_at(item, ctx, path)?);
                path.truncate(len);
            }
            serde_json::Value::Array(out)
        }
        YamlValue::Map(entries) => {
            let mut out = serde_json::Map::with_capacity(entries.len());
            for (key, value) in entries {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key.text);
                out.insert(key.text.clone(), render_at(value, ctx, path)?);
                path.truncate(len);
            }
            serde_json::Value::Object(out)
        }
        _ => node.to_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_maps_names_to_secrets_and_names_a_missing_one() {
        let ctx = minijinja::context! {
            inputs => minijinja::context! { secret_env => minijinja::context! { DB_URL => "db" } },
            secrets => minijinja::context! { db => "postgres://u:p@h/db" },
        };
        let value = render_str("{{ secret_values(inputs.secret_env) }}", &ctx).unwrap();
        assert_eq!(value, serde_json::json!({"DB_URL": "postgres://u:p@h/db"}));
        let ctx = minijinja::context! {
            inputs => minijinja::context! { secret_env => minijinja::context! { DB_URL => "nope" } },
            secrets => minijinja::context! {},
        };
        let err = render_str("{{ secret_values(inputs.secret_env) }}", &ctx).unwrap_err();
        assert!(err.to_string().contains("PHASED_SECRET_NOPE"), "{err}");
    }

    #[test]
    fn finds_nested_variables_in_text_order() {
        let vars = template_variables("{{ nodes.a.outputs.path }}/{{ inputs.name }}-{{ now() }}").unwrap();
        assert_eq!(vars, vec!["nodes.a.outputs.path".to_string(), "inputs.name".to_string()]);
        assert_eq!(expression_variables("inputs.source.type != 'embedded'").unwrap(), vec!["inputs.source.type"]);
    }

    #[test]
    fn syntax_errors_have_a_range() {
        let err = template_variables("ok {{ inputs.x + }} later").unwrap_err();
        assert!(err.message.contains("syntax error"), "{}", err.message);
        assert!(err.range.is_some());
    }

    #[test]
    fn a_single_expression_keeps_its_type() {
        let ctx = Value::from(minijinja::value::Serde(serde_json::json!({"inputs": {"port": 8080, "name": "web"}})));
        assert_eq!(render_str("{{ inputs.port }}", &ctx).unwrap(), serde_json::json!(8080));
        assert_eq!(render_str("port {{ inputs.port }}", &ctx).unwrap(), serde_json::json!("port 8080"));
        assert_eq!(render_str("{{ inputs }}", &ctx).unwrap(), serde_json::json!({"port": 8080, "name": "web"}));
        assert!(render_str("{{ inputs.missing }}", &ctx).is_err(), "strict undefined");
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let ctx = Value::from(());
        let err = render_str("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", &ctx)
            .unwrap_err();
        assert!(err.to_string().contains("fuel") || err.to_string().contains("range"), "{err}");
    }
}
