//! Input declarations (checked when a pipeline is compiled) and input values (checked
//! before a run or a plan starts).

use crate::names::is_identifier;
use std::sync::Arc;

use indexmap::IndexMap;
use regex::Regex;
use serde_json::Value;

use crate::diagnostic::{Diagnostic, DiagnosticCode};
use crate::plan::InputSpec;
use crate::raw::{InputType, RawInput};
use crate::source::{Source, Span};
use crate::suggest;
use crate::yaml::Yaml;

pub fn declare(
    source: &Arc<Source>,
    name: &str,
    key_span: Span,
    raw: &RawInput,
    out: &mut Vec<Diagnostic>,
) -> InputSpec {
    let ty = raw.ty.value;
    if !is_identifier(name) {
        out.push(
            Diagnostic::error(
                DiagnosticCode::InvalidName,
                source,
                key_span,
                format!("input name `{name}` is not snake_case"),
            )
            .with_help("templates read inputs as `inputs.<name>`: use lowercase letters, digits and `_`"),
        );
    }
    let check_value = |node: &Yaml, what: &str, out: &mut Vec<Diagnostic>| {
        let value = node.to_json();
        if !matches_type(ty, &value) {
            out.push(Diagnostic::error(
                DiagnosticCode::WrongType,
                source,
                node.span,
                format!("{what} of input `{name}` must be {}, found {}", article(ty), node.kind_name()),
            ));
        }
        value
    };
    let default = raw.default.as_ref().map(|d| check_value(d, "the default", out));
    let allowed = raw.allowed.as_ref().and_then(|list| match &list.value {
        crate::yaml::YamlValue::Seq(items) => {
            Some(items.iter().map(|i| check_value(i, "an `enum` value", out)).collect::<Vec<_>>())
        }
        _ => {
            out.push(Diagnostic::error(
                DiagnosticCode::WrongType,
                source,
                list.span,
                "`enum` must be a list of allowed values",
            ));
            None
        }
    });
    let pattern = raw.pattern.as_ref().and_then(|p| {
        if ty != InputType::String {
            out.push(Diagnostic::error(
                DiagnosticCode::InvalidValue,
                source,
                p.span,
                "`pattern` applies only to string inputs",
            ));
        }
        match Regex::new(&p.value) {
            Ok(re) => Some(re),
            Err(e) => {
                out.push(Diagnostic::error(
                    DiagnosticCode::InvalidPattern,
                    source,
                    p.span,
                    format!("invalid regular expression: {e}"),
                ));
                None
            }
        }
    });
    if let (Some(default), Some(allowed)) = (&default, &allowed)
        && !allowed.contains(default)
    {
        let span = raw.default.as_ref().map_or(key_span, |d| d.span);
        out.push(Diagnostic::error(
            DiagnosticCode::InvalidValue,
            source,
            span,
            format!("the default of input `{name}` is not in its `enum`"),
        ));
    }
    if raw.required && default.is_some() {
        out.push(Diagnostic::warning(
            DiagnosticCode::RequiredWithDefault,
            source,
            key_span,
            format!("input `{name}` is required but has a default; the default is never used"),
        ));
    }
    let path = raw.path.as_ref().is_some_and(|p| p.value);
    if let Some(p) = raw.path.as_ref().filter(|p| p.value && ty != InputType::String) {
        out.push(Diagnostic::error(
            DiagnosticCode::InvalidValue,
            source,
            p.span,
            "`path` applies only to string inputs",
        ));
    }
    InputSpec {
        name: name.to_string(),
        path,
        operator: raw.operator,
        ty,
        required: raw.required,
        default,
        allowed,
        pattern,
        description: raw.description.clone(),
    }
}

fn article(ty: InputType) -> &'static str {
    match ty {
        InputType::String => "a string",
        InputType::Integer => "an integer",
        InputType::Number => "a number",
        InputType::Boolean => "a boolean",
        InputType::Object => "a mapping",
        InputType::Array => "a list",
    }
}

pub fn matches_type(ty: InputType, value: &Value) -> bool {
    match ty {
        InputType::String => value.is_string(),
        InputType::Integer => value.is_i64() || value.is_u64(),
        InputType::Number => value.is_number(),
        InputType::Boolean => value.is_boolean(),
        InputType::Object => value.is_object(),
        InputType::Array => value.is_array(),
    }
}

/// A problem with the input values given to a run.
#[derive(Debug, Clone, PartialEq)]
pub struct InputProblem {
    pub input: String,
    pub message: String,
    pub help: Option<String>,
}

/// Checks given values against the declarations and fills in defaults.
pub fn resolve(
    specs: &IndexMap<String, InputSpec>,
    given: &serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, Vec<InputProblem>> {
    let mut problems = Vec::new();
    let mut resolved = serde_json::Map::new();
    for (name, value) in given {
        if !specs.contains_key(name) {
            problems.push(InputProblem {
                input: name.clone(),
                message: format!("unknown input `{name}`"),
                help: suggest::hint(name, specs.keys().map(String::as_str)),
            });
        }
        let _ = value;
    }
    for (name, spec) in specs {
        let value = match given.get(name) {
            Some(v) => coerce(spec.ty, v),
            None => match (&spec.default, spec.required) {
                (Some(d), _) => d.clone(),
                (None, true) => {
                    problems.push(InputProblem {
                        input: name.clone(),
                        message: format!("missing required input `{name}`"),
                        help: Some(format!(
                            "give it with `-i {name}=...` or in `--inputs FILE`{}",
                            spec.description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
                        )),
                    });
                    continue;
                }
                (None, false) => Value::Null,
            },
        };
        if !value.is_null() {
            if !matches_type(spec.ty, &value) {
                problems.push(InputProblem {
                    input: name.clone(),
                    message: format!("input `{name}` must be {}, got `{value}`", article(spec.ty)),
                    help: None,
                });
                continue;
            }
            if let Some(allowed) = &spec.allowed
                && !allowed.contains(&value)
            {
                let options: Vec<String> = allowed.iter().map(Value::to_string).collect();
                problems.push(InputProblem {
                    input: name.clone(),
                    message: format!("input `{name}` is `{value}`, which is not allowed"),
                    help: Some(format!("allowed: {}", options.join(", "))),
                });
                continue;
            }
            if let (Some(re), Some(text)) = (&spec.pattern, value.as_str())
                && !re.is_match(text)
            {
                problems.push(InputProblem {
                    input: name.clone(),
                    message: format!("input `{name}` is `{text}`, which does not match `{}`", re.as_str()),
                    help: None,
                });
                continue;
            }
        }
        resolved.insert(name.clone(), value);
    }
    if problems.is_empty() { Ok(resolved) } else { Err(problems) }
}

/// Inputs given as JSON (the API), each value as its JSON text: a number given for a
/// string input is the text it was written as (`1.10` gives `"1.10"`, not `"1.1"`, as
/// `-i` and `--inputs FILE` do); any other value is what the JSON says.
pub fn from_json(
    specs: &IndexMap<String, InputSpec>,
    given: &IndexMap<String, Box<serde_json::value::RawValue>>,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut out = serde_json::Map::new();
    for (name, raw) in given {
        let value: Value = serde_json::from_str(raw.get()).map_err(|e| format!("input `{name}`: {e}"))?;
        let value = match (&value, specs.get(name)) {
            (Value::Number(_), Some(spec)) if spec.ty == InputType::String => {
                Value::String(raw.get().trim().to_string())
            }
            _ => value,
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Values from a template (a sub-pipeline's `with:`, a webhook's inputs) arrive typed;
/// a string input takes a number's or a boolean's text.
fn coerce(ty: InputType, value: &Value) -> Value {
    match (ty, value) {
        (InputType::String, Value::Number(n)) => Value::String(n.to_string()),
        (InputType::String, Value::Bool(b)) => Value::String(b.to_string()),
        _ => value.clone(),
    }
}
