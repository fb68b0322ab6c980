//! The positioned YAML tree. This is the one file that talks to a YAML parser
//! (`saphyr-parser`, event based): it turns the text into [`Yaml`] nodes that keep the
//! byte span of every key and value, so that errors found long after parsing (an
//! unknown node in `needs`, an undefined template variable) still point at their line
//! and column.
//!
//! Hostile input ends here in a diagnostic, never in a hang or a crash: the file size,
//! the nesting depth and alias expansion are bounded, duplicate keys are rejected
//! (a later key would otherwise silently replace an earlier node), and only one
//! document is allowed.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use crate::diagnostic::{Diagnostic, DiagnosticCode};
use crate::source::{Source, Span};

/// Files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
/// Deeper nesting than this is refused (real pipelines nest a handful of levels).
pub const MAX_DEPTH: usize = 64;
/// How many nodes alias expansion may add on top of the document's own nodes.
pub const MAX_ALIAS_NODES: usize = 100_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Yaml {
    pub span: Span,
    pub value: YamlValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum YamlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Yaml>),
    Map(Vec<(Key, Yaml)>),
}

/// A mapping key, always a string (YAML keys that are numbers or booleans are taken
/// by their text).
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub text: String,
    pub span: Span,
}

impl Yaml {
    pub fn null(span: Span) -> Self {
        Yaml { span, value: YamlValue::Null }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            YamlValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Yaml)]> {
        match &self.value {
            YamlValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Yaml> {
        self.as_map()?.iter().find(|(k, _)| k.text == key).map(|(_, v)| v)
    }

    /// A short name of the value's type, for messages (`expected a mapping, found a string`).
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            YamlValue::Null => "null",
            YamlValue::Bool(_) => "a boolean",
            YamlValue::Int(_) => "an integer",
            YamlValue::Float(_) => "a number",
            YamlValue::String(_) => "a string",
            YamlValue::Seq(_) => "a list",
            YamlValue::Map(_) => "a mapping",
        }
    }

    /// Visits every node of the tree, depth first, with the path of keys and indices
    /// that leads to it.
    pub fn walk<'a>(&'a self, path: &mut Vec<String>, f: &mut impl FnMut(&[String], &'a Yaml)) {
        f(path, self);
        match &self.value {
            YamlValue::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    item.walk(path, f);
                    path.pop();
                }
            }
            YamlValue::Map(entries) => {
                for (k, v) in entries {
                    path.push(k.text.clone());
                    v.walk(path, f);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// Converts to JSON (for rendering templates and for the JSON outputs).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            YamlValue::Null => Value::Null,
            YamlValue::Bool(b) => Value::Bool(*b),
            YamlValue::Int(i) => Value::from(*i),
            YamlValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            YamlValue::String(s) => Value::String(s.clone()),
            YamlValue::Seq(items) => Value::Array(items.iter().map(Yaml::to_json).collect()),
            YamlValue::Map(entries) => {
                Value::Object(entries.iter().map(|(k, v)| (k.text.clone(), v.to_json())).collect())
            }
        }
    }

    fn count_nodes(&self) -> usize {
        1 + match &self.value {
            YamlValue::Seq(items) => items.iter().map(Yaml::count_nodes).sum(),
            YamlValue::Map(entries) => entries.iter().map(|(_, v)| 1 + v.count_nodes()).sum(),
            _ => 0,
        }
    }
}

/// Parses one YAML document into a positioned tree. An empty document is `null`.
pub fn parse(source: &Arc<Source>) -> Result<Yaml, Diagnostic> {
    let text = &source.text;
    if text.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::error(
            DiagnosticCode::FileTooLarge,
            source,
            Span::new(0, 0),
            format!("file is {} bytes, more than the limit of {MAX_FILE_BYTES} bytes", text.len()),
        )
        .with_help("split the pipeline into sub-pipelines"));
    }
    if let Some(pos) = text.find('\0') {
        return Err(Diagnostic::error(
            DiagnosticCode::YamlSyntax,
            source,
            Span::new(pos, pos + 1),
            "file contains a NUL byte; it is not a text file",
        ));
    }
    Builder::new(source).run()
}

enum Frame {
    Seq {
        span: Span,
        anchor: usize,
        items: Vec<Yaml>,
    },
    Map {
        span: Span,
        anchor: usize,
        entries: Vec<(Key, Yaml)>,
        pending_key: Option<Key>,
        /// Key -> entry index, built once a mapping is large enough that scanning for
        /// duplicates would make big files quadratic.
        index: Option<HashMap<String, usize>>,
    },
}

struct Builder<'s> {
    source: &'s Arc<Source>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Yaml, usize)>,
    alias_nodes: usize,
    documents: usize,
    root: Option<Yaml>,
}

impl<'s> Builder<'s> {
    fn new(source: &'s Arc<Source>) -> Self {
        Builder { source, stack: Vec::new(), anchors: HashMap::new(), alias_nodes: 0, documents: 0, root: None }
    }

    fn span(&self, span: saphyr_parser::Span) -> Span {
        let start = self.source.offset_of(span.start.line(), span.start.col());
        let end = self.source.offset_of(span.end.line(), span.end.col());
        Span::new(start, end)
    }

    fn error(&self, code: DiagnosticCode, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(code, self.source, span, message)
    }

    fn scan_error(&self, e: &ScanError) -> Diagnostic {
        let m = e.marker();
        let at = self.source.offset_of(m.line(), m.col());
        // The parser's own nesting limit (flow nesting reaches it before ours) is the
        // same problem as ours: too deep, not a syntax error.
        if e.info().contains("recursion limit") {
            return self
                .error(
                    DiagnosticCode::YamlTooComplex,
                    Span::new(at, at),
                    format!("nesting deeper than {MAX_DEPTH} levels"),
                )
                .with_help("a pipeline needs only a few levels of nesting");
        }
        self.error(DiagnosticCode::YamlSyntax, Span::new(at, at), format!("invalid YAML: {}", e.info()))
    }

    fn run(mut self) -> Result<Yaml, Diagnostic> {
        let text = self.source.text.as_str();
        for event in Parser::new_from_str(text) {
            let (event, span) = event.map_err(|e| self.scan_error(&e))?;
            let span = self.span(span);
            match event {
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart(_) => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(self
                            .error(DiagnosticCode::YamlSyntax, span, "more than one YAML document in the file")
                            .with_help("a pipeline file holds exactly one document; remove the second `---`"));
                    }
                }
                Event::Alias(id) => {
                    let Some((node, count)) = self.anchors.get(&id) else {
                        return Err(self.error(DiagnosticCode::YamlSyntax, span, "alias to an unknown anchor"));
                    };
                    self.alias_nodes += count;
                    if self.alias_nodes > MAX_ALIAS_NODES {
                        return Err(self
                            .error(
                                DiagnosticCode::YamlTooComplex,
                                span,
                                format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                            )
                            .with_help("this looks like an alias bomb; write the values out instead"));
                    }
                    let mut node = node.clone();
                    node.span = span;
                    self.push_value(node)?;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                    let value = if style == ScalarStyle::Plain && !is_str_tag {
                        resolve_plain(&text)
                    } else {
                        YamlValue::String(text.into_owned())
                    };
                    let node = Yaml { span, value };
                    self.remember(anchor, &node);
                    self.push_value(node)?;
                }
                Event::SequenceStart(anchor, _) => {
                    self.enter(span)?;
                    self.stack.push(Frame::Seq { span, anchor, items: Vec::new() });
                }
                Event::MappingStart(anchor, _) => {
                    self.enter(span)?;
                    self.stack.push(Frame::Map { span, anchor, entries: Vec::new(), pending_key: None, index: None });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let frame = self.stack.pop().expect("the parser balances start and end events");
                    let (node, anchor) = match frame {
                        Frame::Seq { span: s, anchor, items } => {
                            (Yaml { span: Span::new(s.start, span.end), value: YamlValue::Seq(items) }, anchor)
                        }
                        Frame::Map { span: s, anchor, entries, .. } => {
                            (Yaml { span: Span::new(s.start, span.end), value: YamlValue::Map(entries) }, anchor)
                        }
                    };
                    self.remember(anchor, &node);
                    self.push_value(node)?;
                }
            }
        }
        Ok(self.root.unwrap_or_else(|| Yaml::null(Span::new(0, 0))))
    }

    fn enter(&self, span: Span) -> Result<(), Diagnostic> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self
                .error(DiagnosticCode::YamlTooComplex, span, format!("nesting deeper than {MAX_DEPTH} levels"))
                .with_help("a pipeline needs only a few levels of nesting"));
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Yaml) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), node.count_nodes()));
        }
    }

    fn push_value(&mut self, node: Yaml) -> Result<(), Diagnostic> {
        let Some(top) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match top {
            Frame::Seq { items, .. } => items.push(node),
            Frame::Map { entries, pending_key, index, .. } => match pending_key.take() {
                None => {
                    let text = match &node.value {
                        YamlValue::String(s) => s.clone(),
                        YamlValue::Null => String::new(),
                        YamlValue::Seq(_) | YamlValue::Map(_) => {
                            return Err(self.error(
                                DiagnosticCode::YamlSyntax,
                                node.span,
                                "a mapping key must be a plain value, not a list or mapping",
                            ));
                        }
                        _ => self.source.text[node.span.start..node.span.end].trim().to_string(),
                    };
                    let existing = match index {
                        Some(index) => index.get(&text).map(|&i| &entries[i]),
                        None => entries.iter().find(|(k, _)| k.text == text),
                    };
                    if let Some((first, _)) = existing {
                        let (line, col) = self.source.line_col(first.span.start);
                        return Err(self
                            .error(DiagnosticCode::DuplicateKey, node.span, format!("duplicate key `{text}`"))
                            .with_label("defined again here")
                            .with_help(format!(
                                "`{text}` is first defined at line {line}, column {col}; a later key would replace it silently, so rename or remove one"
                            )));
                    }
                    *pending_key = Some(Key { text, span: node.span });
                }
                Some(key) => {
                    if let Some(index) = index {
                        index.insert(key.text.clone(), entries.len());
                    } else if entries.len() >= 16 {
                        let mut built: HashMap<String, usize> =
                            entries.iter().enumerate().map(|(i, (k, _))| (k.text.clone(), i)).collect();
                        built.insert(key.text.clone(), entries.len());
                        *index = Some(built);
                    }
                    entries.push((key, node));
                }
            },
        }
        Ok(())
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> YamlValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return YamlValue::Null,
        "true" | "True" | "TRUE" => return YamlValue::Bool(true),
        "false" | "False" | "FALSE" => return YamlValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return YamlValue::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return YamlValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return YamlValue::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return YamlValue::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return YamlValue::Int(i);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return YamlValue::Int(i);
    }
    if looks_like_float(digits)
        && let Ok(f) = text.parse::<f64>()
    {
        return YamlValue::Float(f);
    }
    YamlValue::String(text.to_string())
}

fn looks_like_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok =
        digits_ok(int) && frac.is_none_or(digits_ok) && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits_ok(e)
    });
    mantissa_ok && exponent_ok && (frac.is_some() || exponent.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Yaml, Diagnostic> {
        parse(&Source::new("t.yaml", text))
    }

    #[test]
    fn scalars_resolve_by_the_core_schema() {
        let y = parse_str("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: hello\ng: 1e3\nh: 1.2.3\n").unwrap();
        assert_eq!(y.get("a").unwrap().value, YamlValue::Int(1));
        assert_eq!(y.get("b").unwrap().value, YamlValue::Float(1.5));
        assert_eq!(y.get("c").unwrap().value, YamlValue::Bool(true));
        assert_eq!(y.get("d").unwrap().value, YamlValue::Null);
        assert_eq!(y.get("e").unwrap().value, YamlValue::String("1".into()));
        assert_eq!(y.get("f").unwrap().value, YamlValue::String("hello".into()));
        assert_eq!(y.get("g").unwrap().value, YamlValue::Float(1000.0));
        assert_eq!(y.get("h").unwrap().value, YamlValue::String("1.2.3".into()));
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let src = Source::new("t.yaml", "nodes:\n  build:\n    needs: [fetch]\n");
        let y = parse(&src).unwrap();
        let needs = y.get("nodes").unwrap().get("build").unwrap().get("needs").unwrap();
        let YamlValue::Seq(items) = &needs.value else { panic!("not a list") };
        assert_eq!(src.line_col(items[0].span.start), (3, 13));
        assert_eq!(&src.text[items[0].span.start..items[0].span.end], "fetch");
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_positions() {
        let err = parse_str("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.code, DiagnosticCode::DuplicateKey);
        assert_eq!(err.line_col(), (3, 1));
        assert!(err.help.unwrap().contains("line 1, column 1"));
    }

    #[test]
    fn duplicates_are_found_in_large_mappings_too() {
        let mut text: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        text.push_str("k42: again\n");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.code, DiagnosticCode::DuplicateKey);
        assert_eq!(err.line_col(), (101, 1));
        assert!(err.help.unwrap().contains("line 43"));
    }

    #[test]
    fn alias_bombs_stop_at_the_budget() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.code, DiagnosticCode::YamlTooComplex);
    }

    #[test]
    fn deep_nesting_is_refused() {
        // Block nesting reaches our own limit; flow nesting hits the parser's, first.
        let mut block = String::new();
        for depth in 0..100 {
            block.push_str(&format!("{}k{depth}:\n", "  ".repeat(depth)));
        }
        let err = parse_str(&block).unwrap_err();
        assert_eq!(err.code, DiagnosticCode::YamlTooComplex);
        assert!(err.message.contains("nesting deeper than 64"), "{}", err.message);
        let err = parse_str(&"[".repeat(10_000)).unwrap_err();
        assert_eq!(err.code, DiagnosticCode::YamlTooComplex, "{err}");
        let err = parse_str(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))).unwrap_err();
        assert_eq!(err.code, DiagnosticCode::YamlTooComplex, "a well-formed but 10,000-deep flow sequence: {err}");
    }

    #[test]
    fn a_huge_file_is_refused_before_parsing() {
        let text = "a".repeat(MAX_FILE_BYTES + 1);
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.code, DiagnosticCode::FileTooLarge);
        assert!(err.message.contains("more than the limit"), "{}", err.message);
    }

    #[test]
    fn empty_and_garbage_inputs_end_in_errors_or_null() {
        assert_eq!(parse_str("").unwrap().value, YamlValue::Null);
        assert_eq!(parse_str("a: [1, 2").unwrap_err().code, DiagnosticCode::YamlSyntax);
        assert_eq!(parse_str("a: 1\0").unwrap_err().code, DiagnosticCode::YamlSyntax);
        assert_eq!(parse_str("a: 1\n---\nb: 2\n").unwrap_err().code, DiagnosticCode::YamlSyntax);
    }
}
