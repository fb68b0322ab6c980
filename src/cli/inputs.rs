//! Inputs from the command line: `-i key=value` (the value read as a YAML scalar;
//! `a.b=c` sets a nested key) and `--inputs FILE.yaml`. A value for a string input
//! keeps its text as written: `-i version=1.10` is `"1.10"`, not the number 1.1.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::plan::InputSpec;
use crate::raw::InputType;
use crate::source::Source;
use crate::yaml;

/// Reads `--inputs FILE` (a YAML mapping), then applies each `-i` on top. `specs` are
/// the pipeline's declarations: which inputs are strings.
pub(super) fn collect(
    file: Option<&Path>,
    pairs: &[String],
    specs: &IndexMap<String, InputSpec>,
) -> Result<Map<String, Value>, String> {
    let is_string = |key: &str| specs.get(key).is_some_and(|s| s.ty == InputType::String);
    let mut inputs = Map::new();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
        let source = Source::new(file.display().to_string(), text);
        let node = yaml::parse(&source).map_err(|d| d.to_string())?;
        match node.to_json() {
            Value::Object(map) => inputs = map,
            Value::Null => {}
            _ => return Err(format!("`{}` must hold a mapping of input names to values", file.display())),
        }
        // An unquoted `version: 1.10` reads as a number: a string input gets its text.
        for (key, value) in node.as_map().unwrap_or_default() {
            let typed =
                matches!(value.value, yaml::YamlValue::Bool(_) | yaml::YamlValue::Int(_) | yaml::YamlValue::Float(_));
            if typed && is_string(&key.text) {
                let written = source.text.get(value.span.start..value.span.end).unwrap_or_default().trim();
                // Only the scalar's own text (not an alias or a tag standing there).
                if scalar(written) == value.to_json() {
                    inputs.insert(key.text.clone(), Value::String(written.to_string()));
                }
            }
        }
    }
    for pair in pairs {
        let (key, raw) = pair.split_once('=').ok_or_else(|| format!("`-i {pair}` is not `key=value`"))?;
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(format!("`-i {pair}`: the key is empty"));
        }
        let value = if is_string(key) { text(raw) } else { scalar(raw) };
        set_path(&mut inputs, key, value).map_err(|e| format!("`-i {pair}`: {e}"))?;
    }
    Ok(inputs)
}

/// A command-line value for a string input: the text as typed (`1.10`, `fix #12`,
/// `null`), or, written in YAML quotes (`-i 'v="a b"'`), what the quotes hold.
fn text(raw: &str) -> Value {
    let quoted =
        raw.len() >= 2 && (raw.starts_with('"') && raw.ends_with('"') || raw.starts_with('\'') && raw.ends_with('\''));
    match scalar(raw) {
        Value::String(unquoted) if quoted => Value::String(unquoted),
        _ => Value::String(raw.to_string()),
    }
}

/// A command-line value as a YAML scalar: `8080` is an integer, `true` a boolean,
/// anything else (or anything that does not parse) is the text itself.
fn scalar(raw: &str) -> Value {
    let source = Source::new("<-i>", raw);
    match yaml::parse(&source) {
        Ok(node) if !matches!(node.value, yaml::YamlValue::Map(_)) => node.to_json(),
        _ => Value::String(raw.to_string()),
    }
}

fn set_path(map: &mut Map<String, Value>, key: &str, value: Value) -> Result<(), String> {
    match key.split_once('.') {
        None => {
            map.insert(key.to_string(), value);
            Ok(())
        }
        Some((head, rest)) => {
            let entry = map.entry(head.to_string()).or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(inner) => set_path(inner, rest, value),
                _ => Err(format!("`{head}` is already set to a value that is not a mapping")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_yaml_scalars_and_dots_nest() {
        let inputs = collect(
            None,
            &[
                "port=8080".into(),
                "source.type=git".into(),
                "source.url=http://x/y.git".into(),
                "debug=true".into(),
                "name=web: app".into(),
            ],
            &IndexMap::new(),
        )
        .unwrap();
        assert_eq!(
            Value::Object(inputs),
            serde_json::json!({
                "port": 8080, "source": {"type": "git", "url": "http://x/y.git"}, "debug": true, "name": "web: app"
            })
        );
        assert!(collect(None, &["novalue".into()], &IndexMap::new()).unwrap_err().contains("not `key=value`"));
    }
}
