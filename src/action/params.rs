//! Checks a node's `with:` block against its action's parameter schema, before
//! anything runs. Every problem is reported at the key or value it is about. A value
//! that is a template (`"{{ ... }}"`) is accepted wherever it stands: its type is
//! known only at run time, when the rendered parameters are checked again.

use serde_json::Value;

use super::ActionSpec;
use crate::diagnostic::DiagnosticCode;
use crate::duration::Duration;
use crate::source::Span;
use crate::suggest;
use crate::template;
use crate::yaml::{Yaml, YamlValue};

#[derive(Clone, Debug, PartialEq)]
pub struct ParamProblem {
    pub code: DiagnosticCode,
    pub span: Span,
    pub message: String,
    pub help: Option<String>,
}

/// Checks `with` (at `owner`, the span of the `with` key or the node, for missing
/// parameters) against the action's schema, then runs the action's own check when
/// every value is literal.
pub fn check_with(action: &ActionSpec, with: &Yaml, owner: Span) -> Vec<ParamProblem> {
    let mut problems = Vec::new();
    let null_as_empty = Yaml { span: with.span, value: YamlValue::Map(Vec::new()) };
    let with = if with.value == YamlValue::Null { &null_as_empty } else { with };
    check(action.schema(), with, owner, "", &mut problems);
    if problems.is_empty()
        && !has_template(with)
        && let Err(message) = action.check(&with.to_json())
    {
        problems.push(ParamProblem { code: DiagnosticCode::InvalidParameter, span: owner, message, help: None });
    }
    problems
}

fn has_template(node: &Yaml) -> bool {
    let mut found = false;
    node.walk(&mut Vec::new(), &mut |_, n| {
        if n.as_str().is_some_and(template::is_template) {
            found = true;
        }
    });
    found
}

fn json_type(node: &Yaml) -> &'static str {
    match node.value {
        YamlValue::Null => "null",
        YamlValue::Bool(_) => "boolean",
        YamlValue::Int(_) => "integer",
        YamlValue::Float(_) => "number",
        YamlValue::String(_) => "string",
        YamlValue::Seq(_) => "array",
        YamlValue::Map(_) => "object",
    }
}

fn type_matches(allowed: &Value, actual: &str) -> bool {
    let one = |t: &Value| t == actual || (t == "number" && actual == "integer");
    match allowed {
        Value::String(_) => one(allowed),
        Value::Array(types) => types.iter().any(one),
        _ => true,
    }
}

fn describe_type(allowed: &Value) -> String {
    let article = |t: &str| match t {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "integer" => "an integer".to_string(),
        "null" => "null".to_string(),
        other => format!("a {other}"),
    };
    match allowed {
        Value::String(t) => article(t),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(article)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "a value".into(),
    }
}

fn check(schema: &Value, node: &Yaml, owner: Span, path: &str, out: &mut Vec<ParamProblem>) {
    if node.as_str().is_some_and(template::is_template) {
        return;
    }
    let field = |path: &str| if path.is_empty() { String::new() } else { format!("`{path}`: ") };
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let mut best: Option<Vec<ParamProblem>> = None;
            for branch in branches {
                let mut attempt = Vec::new();
                check(branch, node, owner, path, &mut attempt);
                if attempt.is_empty() {
                    return;
                }
                let typed = branch.get("type").is_some_and(|t| type_matches(t, json_type(node)));
                if typed || best.is_none() {
                    best = Some(attempt);
                }
            }
            out.extend(best.unwrap_or_default());
            return;
        }
    }
    if let Some(allowed) = schema.get("type")
        && !type_matches(allowed, json_type(node))
    {
        out.push(ParamProblem {
            code: DiagnosticCode::WrongType,
            span: node.span,
            message: format!("{}expected {}, found {}", field(path), describe_type(allowed), node.kind_name()),
            help: None,
        });
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let value = node.to_json();
        if !options.contains(&value) {
            let names: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
            out.push(ParamProblem {
                code: DiagnosticCode::InvalidValue,
                span: node.span,
                message: format!("{}`{}` is not allowed", field(path), value),
                help: suggest::hint(node.as_str().unwrap_or(""), names.iter().copied()),
            });
        }
    }
    if (schema.get("format").and_then(Value::as_str) == Some("duration") || is_duration_schema(schema))
        && let Some(text) = node.as_str()
        && let Err(e) = Duration::parse(text)
    {
        out.push(ParamProblem {
            code: DiagnosticCode::InvalidValue,
            span: node.span,
            message: format!("{}{e}", field(path)),
            help: Some("write a number and a unit, as in `500ms`, `2s`, `5m` or `1h`".into()),
        });
    }
    match &node.value {
        YamlValue::Int(i) => check_range(schema, *i as f64, node, path, out),
        YamlValue::Float(f) => check_range(schema, *f, node, path, out),
        YamlValue::Seq(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, item.span, &format!("{path}[{i}]"), out);
                }
            }
        }
        YamlValue::Map(entries) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
            let extra = schema.get("additionalProperties").filter(|v| v.is_object());
            for (key, value) in entries {
                let child_path = if path.is_empty() { key.text.clone() } else { format!("{path}.{}", key.text) };
                match properties.and_then(|p| p.get(&key.text)) {
                    Some(prop) => check(prop, value, key.span, &child_path, out),
                    None if closed => out.push(ParamProblem {
                        code: DiagnosticCode::UnknownParameter,
                        span: key.span,
                        message: format!("unknown parameter `{child_path}`"),
                        help: suggest::hint(
                            &key.text,
                            properties.into_iter().flat_map(|p| p.keys().map(String::as_str)),
                        ),
                    }),
                    None => {
                        if let Some(extra) = extra {
                            check(extra, value, key.span, &child_path, out);
                        }
                    }
                }
            }
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !entries.iter().any(|(k, _)| k.text == name) {
                        let full = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
                        out.push(ParamProblem {
                            code: DiagnosticCode::MissingParameter,
                            span: owner,
                            message: format!("missing required parameter `{full}`"),
                            help: properties
                                .and_then(|p| p.get(name))
                                .and_then(|p| p.get("description"))
                                .and_then(Value::as_str)
                                .map(|d| format!("`{name}`: {d}")),
                        });
                    }
                }
            }
        }
        _ => {}
    }
}

fn is_duration_schema(schema: &Value) -> bool {
    schema.get("pattern").and_then(Value::as_str).is_some_and(|p| p.contains("(ms|s|m|h)"))
}

fn check_range(schema: &Value, value: f64, node: &Yaml, path: &str, out: &mut Vec<ParamProblem>) {
    let min = schema.get("minimum").and_then(Value::as_f64);
    let max = schema.get("maximum").and_then(Value::as_f64);
    let below = min.is_some_and(|m| value < m);
    let above = max.is_some_and(|m| value > m);
    if below || above {
        let bounds = match (min, max) {
            (Some(a), Some(b)) => format!("between {a} and {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => unreachable!("out of range needs a bound"),
        };
        out.push(ParamProblem {
            code: DiagnosticCode::InvalidValue,
            span: node.span,
            message: format!("`{path}` must be {bounds}, found {value}"),
            help: None,
        });
    }
}
