//! A serde `Deserializer` over the positioned YAML tree ([`crate::yaml::Yaml`]).
//!
//! Deserializing from the tree instead of from a `Value` keeps positions: every error
//! carries the span of the value (or key) it is about. Unknown keys are reported all
//! at once, each with a did-you-mean taken from the struct's own field list, and then
//! skipped, so that one typo does not hide the next problem. Two wrapper types are
//! understood by name: [`Spanned`] (a value with its span) and [`Yaml`] itself (the
//! raw positioned subtree, for `with:` and metadata blocks that templates fill in).

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use crate::diagnostic::DiagnosticCode;
use crate::source::Span;
use crate::suggest;
use crate::yaml::{Key, Yaml, YamlValue};

/// A deserialization problem with its position.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DeError {
    pub code: DiagnosticCode,
    pub message: String,
    pub span: Option<Span>,
    pub help: Option<String>,
}

impl DeError {
    fn at(mut self, span: Span) -> Self {
        self.span.get_or_insert(span);
        self
    }

    /// `expected a number, found ...` becomes `expected a number for `weight`, found ...`.
    fn for_key(mut self, key: &str) -> Self {
        if let Some(at) = self.message.find(", found ") {
            self.message.insert_str(at, &format!(" for `{key}`"));
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { code: DiagnosticCode::InvalidValue, message: msg.to_string(), span: None, help: None }
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        DeError {
            code: DiagnosticCode::WrongType,
            message: format!("expected {}, found {}", yaml_words(&exp.to_string()), unexpected(&unexp)),
            span: None,
            help: None,
        }
    }

    fn invalid_value(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        DeError {
            code: DiagnosticCode::InvalidValue,
            message: format!("expected {exp}, found {unexp}"),
            span: None,
            help: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            code: DiagnosticCode::InvalidValue,
            message: format!("unknown value `{}`", suggest::shorten(variant, 80)),
            span: None,
            help: suggest::hint(variant, expected.iter().copied()),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            code: DiagnosticCode::UnknownKey,
            message: format!("unknown key `{}`", suggest::shorten(field, 80)),
            span: None,
            help: suggest::hint(field, expected.iter().copied()),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            code: DiagnosticCode::MissingField,
            message: format!("missing required key `{field}`"),
            span: None,
            help: None,
        }
    }
}

/// serde describes types in Rust words; pipeline authors write YAML.
fn yaml_words(expected: &str) -> String {
    match expected {
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        "f32" | "f64" => "a number".into(),
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "a boolean" | "a string" => expected.into(),
        other if other.starts_with("struct ") => "a mapping".into(),
        other => other.into(),
    }
}

fn unexpected(unexp: &de::Unexpected) -> String {
    match unexp {
        de::Unexpected::Str(s) => format!("the string `{}`", suggest::shorten(s, 80)),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Map => "a mapping".into(),
        de::Unexpected::Unit => "nothing (null)".into(),
        other => other.to_string(),
    }
}

/// Deserializes `T` from a positioned node. Returns the value when it could be built
/// (unknown keys are skipped) together with every problem found.
pub(crate) fn from_yaml<T: DeserializeOwned>(node: &Yaml) -> (Option<T>, Vec<DeError>) {
    let sink = RefCell::new(Vec::new());
    let result = T::deserialize(YamlDe { node, sink: &sink, key: None });
    let mut errors = sink.into_inner();
    let value = match result {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e.at(node.span));
            None
        }
    };
    (value, errors)
}

const SPANNED: &str = "$__phased_private_Spanned";
const SPANNED_FIELDS: &[&str] = &["$__start", "$__end", "$__value"];
const RAW_YAML: &str = "$__phased_private_Yaml";

thread_local! {
    /// Hands a subtree from the deserializer to `Yaml::deserialize` (both in this file):
    /// serde offers no way to pass a borrowed non-serde value through a visitor.
    static RAW_SLOT: RefCell<Option<Yaml>> = const { RefCell::new(None) };
}

#[derive(Clone, Copy)]
struct YamlDe<'a> {
    node: &'a Yaml,
    sink: &'a RefCell<Vec<DeError>>,
    /// The key this value belongs to: a wrong type names it, and missing keys of a
    /// struct are reported at it.
    key: Option<&'a Key>,
}

impl YamlDe<'_> {
    /// A wrong type found at this very value (not deeper inside it) names its key:
    /// `expected a number for `weight`, found the string `heavy``.
    fn wrong_type_names_key(&self, e: DeError) -> DeError {
        match self.key {
            Some(key) if e.code == DiagnosticCode::WrongType && e.span.is_none() => e.for_key(&key.text),
            _ => e,
        }
    }
}

impl<'de> de::Deserializer<'de> for YamlDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            YamlValue::Null => visitor.visit_unit(),
            YamlValue::Bool(b) => visitor.visit_bool(*b),
            YamlValue::Int(i) => visitor.visit_i64(*i),
            YamlValue::Float(f) => visitor.visit_f64(*f),
            YamlValue::String(s) => visitor.visit_borrowed_str(s),
            YamlValue::Seq(items) => visitor.visit_seq(SeqAccess { items: items.iter(), sink: self.sink }),
            YamlValue::Map(entries) => visitor.visit_map(MapAccess::new(entries, self.sink)),
        };
        result.map_err(|e| self.wrong_type_names_key(e).at(self.node.span))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            YamlValue::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        if name == RAW_YAML {
            RAW_SLOT.with(|slot| *slot.borrow_mut() = Some(self.node.clone()));
            return visitor.visit_unit();
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == SPANNED {
            return visitor.visit_map(SpannedAccess { de: self, field: 0 });
        }
        let entries: &[(Key, Yaml)] = match &self.node.value {
            YamlValue::Map(entries) => entries,
            YamlValue::Null => &[],
            _ => {
                return Err(self
                    .wrong_type_names_key(DeError {
                        code: DiagnosticCode::WrongType,
                        message: format!("expected a mapping, found {}", self.node.kind_name()),
                        span: None,
                        help: Some(format!("allowed keys: {}", suggest::list(fields))),
                    })
                    .at(self.node.span));
            }
        };
        let mut known = Vec::with_capacity(entries.len());
        for entry in entries {
            if fields.contains(&entry.0.text.as_str()) {
                known.push(entry);
            } else {
                let mut error = <DeError as de::Error>::unknown_field(&entry.0.text, fields);
                error.span = Some(entry.0.span);
                let odd = |c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if entry.0.text.contains(odd) {
                    // `{description: a, b}` reads as two entries: the `,` split the value.
                    error.help = Some(
                        "a `,` inside `{...}` separates entries: if this is part of a value, quote the value".into(),
                    );
                }
                self.sink.borrow_mut().push(error);
            }
        }
        let missing_at = self.key.map_or(Span::new(self.node.span.start, self.node.span.start), |k| k.span);
        visitor
            .visit_map(MapAccess { entries: known.into_iter(), value: None, sink: self.sink })
            .map_err(|e| e.at(missing_at))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            YamlValue::String(s) => visitor
                .visit_enum(de::value::BorrowedStrDeserializer::<DeError>::new(s))
                .map_err(|e| e.at(self.node.span)),
            _ => Err(self
                .wrong_type_names_key(DeError {
                    code: DiagnosticCode::WrongType,
                    message: format!("expected a string, found {}", self.node.kind_name()),
                    span: None,
                    help: None,
                })
                .at(self.node.span)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Yaml>,
    sink: &'a RefCell<Vec<DeError>>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some(node) => {
                seed.deserialize(YamlDe { node, sink: self.sink, key: None }).map(Some).map_err(|e| e.at(node.span))
            }
        }
    }
}

struct MapAccess<'a, I> {
    entries: I,
    value: Option<&'a (Key, Yaml)>,
    sink: &'a RefCell<Vec<DeError>>,
}

impl<'a> MapAccess<'a, std::slice::Iter<'a, (Key, Yaml)>> {
    fn new(entries: &'a [(Key, Yaml)], sink: &'a RefCell<Vec<DeError>>) -> Self {
        MapAccess { entries: entries.iter(), value: None, sink }
    }
}

impl<'de, I: Iterator<Item = &'de (Key, Yaml)>> de::MapAccess<'de> for MapAccess<'de, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else { return Ok(None) };
        self.value = Some(entry);
        seed.deserialize(KeyDe { key: &entry.0 }).map(Some).map_err(|e| e.at(entry.0.span))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, DeError> {
        let (key, node) = self.value.take().expect("serde asks for a key before its value");
        seed.deserialize(YamlDe { node, sink: self.sink, key: Some(key) }).map_err(|e| e.at(node.span))
    }
}

/// A mapping key: always a string.
struct KeyDe<'a> {
    key: &'a Key,
}

impl<'de> de::Deserializer<'de> for KeyDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(&self.key.text)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct
        map struct enum identifier ignored_any
    }
}

struct SpannedAccess<'a> {
    de: YamlDe<'a>,
    field: usize,
}

impl<'de> de::MapAccess<'de> for SpannedAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match SPANNED_FIELDS.get(self.field) {
            Some(field) => seed.deserialize((*field).into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, DeError> {
        let field = self.field;
        self.field += 1;
        let span = self.de.node.span;
        match field {
            0 => seed.deserialize((span.start as u64).into_deserializer()),
            1 => seed.deserialize((span.end as u64).into_deserializer()),
            _ => seed.deserialize(self.de),
        }
    }
}

/// A value together with the span it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub span: Span,
    pub value: T,
}

impl<T> Spanned<T> {
    pub fn new(span: Span, value: T) -> Self {
        Spanned { span, value }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for Spanned<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpannedVisitor<T>(PhantomData<T>);

        impl<'de, T: de::Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
            type Value = Spanned<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positioned value")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let (Some((_, start)), Some((_, end))) =
                    (map.next_entry::<de::IgnoredAny, u64>()?, map.next_entry::<de::IgnoredAny, u64>()?)
                else {
                    return Err(de::Error::custom("positioned values need the phased YAML reader"));
                };
                let Some((_, value)) = map.next_entry::<de::IgnoredAny, T>()? else {
                    return Err(de::Error::custom("positioned values need the phased YAML reader"));
                };
                Ok(Spanned { span: Span::new(start as usize, end as usize), value })
            }
        }

        deserializer.deserialize_struct(SPANNED, SPANNED_FIELDS, SpannedVisitor(PhantomData))
    }
}

impl<'de> de::Deserialize<'de> for Yaml {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;

        impl Visitor<'_> for RawVisitor {
            type Value = Yaml;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Yaml, E> {
                RAW_SLOT
                    .with(|slot| slot.borrow_mut().take())
                    .ok_or_else(|| E::custom("raw YAML values need the phased YAML reader"))
            }
        }

        deserializer.deserialize_newtype_struct(RAW_YAML, RawVisitor)
    }
}
