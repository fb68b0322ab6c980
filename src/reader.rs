//! Reads a pipeline file into a [`RawPipeline`]: parse the positioned YAML, then
//! deserialize each top-level key, each input and each node on its own, so that one
//! broken node does not hide the problems of the others.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;

use crate::de::{self, DeError, Spanned};
use crate::diagnostic::{Diagnostic, DiagnosticCode};
use crate::raw::{KeySpans, RawDefaults, RawPipeline};
use crate::source::{Source, Span};
use crate::suggest;
use crate::yaml::{self, Yaml, YamlValue};

/// The top-level keys of a pipeline file.
pub(crate) const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "phases",
    "inputs",
    "defaults",
    "concurrency",
    "rollback",
    "notify",
    "nodes",
    "outputs",
    "on_success",
    "on_failure",
];

/// What reading found: the raw pipeline (when its required parts could be read) and
/// the ids of nodes and inputs that exist but could not be read (so that later checks
/// do not also call them unknown).
pub(crate) struct ReadResult {
    pub raw: Option<RawPipeline>,
    pub diagnostics: Vec<Diagnostic>,
}

pub(crate) fn read(source: &Arc<Source>) -> ReadResult {
    let mut diagnostics = Vec::new();
    let root = match yaml::parse(source) {
        Ok(root) => root,
        Err(d) => return ReadResult { raw: None, diagnostics: vec![d] },
    };
    let raw = assemble(source, &root, &mut diagnostics);
    ReadResult { raw, diagnostics }
}

fn convert(source: &Arc<Source>, fallback: Span, e: DeError) -> Diagnostic {
    Diagnostic::error(e.code, source, e.span.unwrap_or(fallback), e.message).with_help_opt(e.help)
}

fn decode<T: DeserializeOwned>(source: &Arc<Source>, node: &Yaml, out: &mut Vec<Diagnostic>) -> Option<T> {
    let (value, errors) = de::from_yaml::<T>(node);
    let failed = value.is_none();
    out.extend(errors.into_iter().map(|e| convert(source, node.span, e)));
    if failed { None } else { value }
}

fn expect_map<'a>(
    source: &Arc<Source>,
    node: &'a Yaml,
    what: &str,
    out: &mut Vec<Diagnostic>,
) -> &'a [(yaml::Key, Yaml)] {
    match &node.value {
        YamlValue::Map(entries) => entries,
        YamlValue::Null => &[],
        _ => {
            out.push(Diagnostic::error(
                DiagnosticCode::WrongType,
                source,
                node.span,
                format!("`{what}` must be a mapping, found {}", node.kind_name()),
            ));
            &[]
        }
    }
}

fn assemble(source: &Arc<Source>, root: &Yaml, out: &mut Vec<Diagnostic>) -> Option<RawPipeline> {
    let entries = match &root.value {
        YamlValue::Map(entries) => entries,
        YamlValue::Null => {
            out.push(
                Diagnostic::error(DiagnosticCode::EmptyFile, source, Span::new(0, 0), "the pipeline file is empty")
                    .with_help("a pipeline needs at least `version: 1`, a `name` and `nodes`"),
            );
            return None;
        }
        _ => {
            out.push(
                Diagnostic::error(
                    DiagnosticCode::WrongType,
                    source,
                    root.span,
                    format!("a pipeline file must be a mapping, found {}", root.kind_name()),
                )
                .with_help("a pipeline needs at least `version: 1`, a `name` and `nodes`"),
            );
            return None;
        }
    };

    let mut version = None;
    let mut name = None;
    let mut description = None;
    let mut phases = Some(Vec::new());
    let mut inputs = IndexMap::new();
    let mut defaults = Some(RawDefaults::default());
    let mut concurrency = None;
    let mut rollback = None;
    let mut notify = Some(Vec::new());
    let mut nodes = None;
    let mut outputs = IndexMap::new();
    let mut on_success = None;
    let mut on_failure = None;
    let mut key_spans = KeySpans::default();

    for (key, value) in entries {
        match key.text.as_str() {
            "version" => version = decode::<Spanned<u32>>(source, value, out),
            "name" => name = decode::<Spanned<String>>(source, value, out),
            "description" => description = decode::<Option<String>>(source, value, out).flatten(),
            "phases" => phases = decode(source, value, out),
            "defaults" => defaults = decode(source, value, out),
            "concurrency" => concurrency = decode(source, value, out),
            "rollback" => rollback = decode::<Spanned<String>>(source, value, out),
            "notify" => notify = decode(source, value, out),
            "on_success" => on_success = decode(source, value, out),
            "on_failure" => on_failure = decode(source, value, out),
            "inputs" => {
                for (input_key, input) in expect_map(source, value, "inputs", out) {
                    key_spans.inputs.insert(input_key.text.clone(), input_key.span);
                    if let Some(parsed) = decode(source, input, out) {
                        inputs.insert(input_key.text.clone(), parsed);
                    }
                }
            }
            "nodes" => {
                key_spans.nodes_key = Some(key.span);
                let mut read = IndexMap::new();
                for (node_key, node) in expect_map(source, value, "nodes", out) {
                    key_spans.nodes.insert(node_key.text.clone(), node_key.span);
                    if let Some(parsed) = decode(source, node, out) {
                        read.insert(node_key.text.clone(), parsed);
                    }
                }
                nodes = Some(read);
            }
            "outputs" => {
                for (output_key, output) in expect_map(source, value, "outputs", out) {
                    key_spans.outputs.insert(output_key.text.clone(), output_key.span);
                    outputs.insert(output_key.text.clone(), output.clone());
                }
            }
            other => out.push(
                Diagnostic::error(DiagnosticCode::UnknownKey, source, key.span, format!("unknown key `{other}`"))
                    .with_help_opt(suggest::hint(other, TOP_KEYS.iter().copied())),
            ),
        }
    }

    let start = Span::new(0, 0);
    for (present, key) in [(version.is_some(), "version"), (name.is_some(), "name"), (nodes.is_some(), "nodes")] {
        let seen = entries.iter().any(|(k, _)| k.text == key);
        if !present && !seen {
            out.push(Diagnostic::error(
                DiagnosticCode::MissingField,
                source,
                start,
                format!("missing required key `{key}`"),
            ));
        }
    }

    Some(RawPipeline {
        // Reported above when missing or unreadable; placeholders let the other checks run.
        version: version.unwrap_or(Spanned::new(start, 1)),
        name: name.unwrap_or(Spanned::new(start, String::new())),
        description,
        phases: phases.unwrap_or_default(),
        inputs,
        rollback,
        notify: notify.unwrap_or_default(),
        defaults: defaults.unwrap_or_default(),
        concurrency,
        nodes: nodes.unwrap_or_default(),
        outputs,
        on_success,
        on_failure,
        key_spans,
    })
}
