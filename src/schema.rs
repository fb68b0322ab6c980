//! The JSON Schema of the pipeline format, for editors: generated from the raw types,
//! then made as strict as the format is. It is valid under its draft 2020-12
//! meta-schema with strict validators (no non-standard `format`), enumerates the
//! built-in phases and actions, and gives each action's `with` its parameter schema
//! (`if`/`then` on `uses`), where any value may also be a template. A test keeps
//! `schemas/pipeline.schema.json` equal to it; another runs a real validator (ajv)
//! over every shipped pipeline and the invalid fixtures.

use serde_json::{Map, Value, json};

use crate::raw::RawPipeline;

/// `formats` a strict validator knows (JSON Schema's and OpenAPI's); schemars also
/// writes Rust's integer types (`uint32`), which are dropped (`minimum` says it).
const KNOWN_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "uuid",
    "regex",
];

/// A string that holds a template: where a typed value is expected, a template may
/// stand instead (it is checked once rendered).
fn template() -> Value {
    json!({"type": "string", "pattern": "\\{\\{|\\{%", "description": "A template, checked once rendered."})
}

pub fn pipeline_schema() -> Value {
    let schema =
        schemars::generate::SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<RawPipeline>();
    let mut schema = schema.to_value();
    drop_unknown_formats(&mut schema);
    schema["properties"]["version"] = json!({"description": "The format version; always 1.", "const": 1});
    schema["properties"]["nodes"]["propertyNames"] =
        json!({"pattern": "^[a-z][a-z0-9_]*$", "description": "A node id: snake_case."});

    let defs = schema["$defs"].as_object_mut().expect("schemars writes $defs");
    // QUEUED, ACTIVE and FAILED belong to the run: no node reports them.
    let reserved = [crate::phase::QUEUED, crate::phase::ACTIVE, crate::phase::FAILED];
    let phase_names: Vec<&str> = crate::phase::BUILTIN.iter().copied().filter(|p| !reserved.contains(p)).collect();
    let actions: Vec<&str> = crate::action::names().collect();

    let node = &mut defs["RawNode"];
    node["properties"]["weight"]["minimum"] = json!(0);
    node["properties"]["uses"] = json!({"description": "A built-in action (`phased actions`).", "enum": actions});
    node["properties"]["phase"] = json!({
        "description": "The phase the run reports while this node runs: a built-in one, or one `phases:` adds.",
        "type": "string",
        "pattern": "^[A-Z][A-Z0-9_]*$",
        "not": {"enum": reserved},
    });
    node["anyOf"] = json!([
        {"type": "object", "properties": {"uses": true}, "required": ["uses"]},
        {"type": "object", "properties": {"pipeline": true}, "required": ["pipeline"]},
    ]);
    node["allOf"] = Value::Array(crate::action::ACTIONS.iter().map(|a| with_of(a.name, a.schema())).collect());
    node["not"] =
        json!({"type": "object", "properties": {"uses": true, "pipeline": true}, "required": ["uses", "pipeline"]});
    let undo = &mut defs["RawUndo"];
    undo["properties"]["uses"] = json!({"enum": actions});
    undo["allOf"] = Value::Array(crate::action::ACTIONS.iter().map(|a| with_of(a.name, a.schema())).collect());
    defs["RawRetry"]["properties"]["attempts"]["minimum"] = json!(1);
    defs["RawPhase"]["properties"]["name"]["pattern"] = json!("^[A-Z][A-Z0-9_]*$");

    // A file that adds no phases may use only the built-in ones.
    schema["if"] = json!({"type": "object", "properties": {"phases": true}, "required": ["phases"]});
    schema["else"] = json!({
        "type": "object",
        "properties": {"nodes": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"phase": {"enum": phase_names}}
        }}}
    });
    schema
}

pub fn pipeline_schema_json() -> String {
    serde_json::to_string_pretty(&pipeline_schema()).expect("a schema serializes")
}

/// `if uses is NAME then with is NAME's parameters`.
fn with_of(name: &str, params: &Value) -> Value {
    let mut params = params.clone();
    if let Some(map) = params.as_object_mut() {
        map.remove("$schema");
        map.remove("title");
    }
    drop_unknown_formats(&mut params);
    if let Some(properties) = params.get_mut("properties").and_then(Value::as_object_mut) {
        for value in properties.values_mut() {
            allow_templates(value);
        }
    }
    json!({
        "if": {"type": "object", "properties": {"uses": {"const": name}}, "required": ["uses"]},
        "then": {"type": "object", "properties": {"with": params}},
    })
}

/// Lets a template stand for a value that is more than any string (a number, a list,
/// a pattern, an enum), here and in what it holds.
fn allow_templates(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else { return };
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = map.get_mut(key).filter(|v| v.is_object()) {
            allow_templates(inner);
        }
    }
    if let Some(properties) = map.get_mut("properties").and_then(Value::as_object_mut) {
        properties.values_mut().for_each(allow_templates);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = map.get_mut(key) {
            options.iter_mut().for_each(allow_templates);
        }
    }
    let plain_string = map.get("type") == Some(&json!("string"))
        && !["pattern", "enum", "format", "const"].iter().any(|k| map.contains_key(*k));
    if plain_string || map.is_empty() {
        return;
    }
    // Annotations stay outside, so editors still show them.
    let mut outer = Map::new();
    for key in ["description", "default"] {
        if let Some(value) = map.remove(key) {
            outer.insert(key.to_string(), value);
        }
    }
    let inner = std::mem::take(map);
    outer.insert("anyOf".into(), json!([Value::Object(inner), template()]));
    *map = outer;
}

fn drop_unknown_formats(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str).is_some_and(|f| !KNOWN_FORMATS.contains(&f)) {
                map.remove("format");
            }
            map.values_mut().for_each(drop_unknown_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_unknown_formats),
        _ => {}
    }
}
