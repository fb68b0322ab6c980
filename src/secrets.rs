//! Secrets: `secrets.<name>` in templates comes from the environment variable
//! `PHASED_SECRET_<NAME>`. Actions receive the value; everything that is recorded or
//! printed (the database, events, logs, errors, outputs) goes through a [`Masker`]
//! that replaces every secret value with `***`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

pub const PREFIX: &str = "PHASED_SECRET_";
pub const MASK: &str = "***";

#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({:?})", self.values.keys().collect::<Vec<_>>())
    }
}

impl Secrets {
    /// Every `PHASED_SECRET_<NAME>` of this process, as `secrets.<name>` (lowercase).
    pub fn from_env() -> Self {
        Secrets::from_vars(std::env::vars())
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let values = vars
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|name| (name.to_lowercase(), v)))
            .filter(|(name, _)| !name.is_empty())
            .collect();
        Secrets { values }
    }

    /// The values, for the templates that feed actions.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    pub fn masker(&self) -> Masker {
        let mut values: Vec<String> = self.values.values().filter(|v| !v.is_empty()).cloned().collect();
        let encoded: Vec<String> =
            values.iter().filter(|v| v.len() >= ENCODED_MIN).flat_map(|v| encodings(v)).collect();
        values.extend(encoded);
        // Longest first, so that a secret containing another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Masker { values }
    }

    /// These secrets, less the ones named (as in templates: `hook_web`, any case):
    /// what `phased serve` gives its runs, which never see the server's webhook keys.
    pub fn without<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        for name in names {
            self.values.remove(&name.to_lowercase());
        }
        self
    }
}

/// Secrets at least this long are also masked in their encoded forms (shorter ones
/// would mask ordinary text: the base64 of `abc` is `YWJj`).
const ENCODED_MIN: usize = 8;

/// The forms a step may print a secret in besides its text: base64 (standard and
/// URL-safe, whole, and the part that stays the same wherever the value starts in a
/// longer encoded text), percent-encoding (as in a URL, and as in a form, `+` for a
/// space), and hex (either case).
fn encodings(value: &str) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    for engine in [&STANDARD, &URL_SAFE] {
        out.push(engine.encode(bytes));
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        // Inside a longer text the value starts 0, 1 or 2 bytes into a 3-byte group:
        // the characters made only of its own bytes are the same each time.
        for shift in 0..3usize {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(bytes);
            let text = engine.encode(&shifted);
            let start = if shift == 0 { 0 } else { 4 };
            let end = (shifted.len() / 3) * 4;
            if end > start && end - start >= ENCODED_MIN {
                out.push(text[start..end].to_string());
            }
        }
    }
    let percent = |space_plus: bool| -> String {
        let mut text = String::new();
        for &b in bytes {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => text.push(b as char),
                b' ' if space_plus => text.push('+'),
                _ => text.push_str(&format!("%{b:02X}")),
            }
        }
        text
    };
    for encoded in [percent(false), percent(true)] {
        out.push(encoded.to_lowercase_percent());
        out.push(encoded);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    out.push(hex.to_uppercase());
    out.push(hex);
    out.retain(|e| e != value && e.len() >= ENCODED_MIN);
    out
}

/// `%2F` and `%2f` are the same escape; some encoders write the lower case.
trait LowercasePercent {
    fn to_lowercase_percent(&self) -> String;
}

impl LowercasePercent for String {
    fn to_lowercase_percent(&self) -> String {
        let mut out = String::with_capacity(self.len());
        let mut chars = self.chars();
        while let Some(c) = chars.next() {
            out.push(c);
            if c == '%' {
                out.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
            }
        }
        out
    }
}

/// Replaces secret values with `***`.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    values: Vec<String>,
}

impl Masker {
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.values.iter().any(|v| text.contains(v.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for value in &self.values {
            out = out.replace(value.as_str(), MASK);
        }
        Cow::Owned(out)
    }

    /// The length of the longest secret (0 without secrets).
    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, String::len)
    }

    /// Where `text` may be cut so that no secret spans the cut: at `at` (a character
    /// boundary), or after a secret that starts before it and ends after it.
    pub fn safe_cut(&self, text: &str, at: usize) -> usize {
        let mut cut = at;
        for value in &self.values {
            let from = cut.saturating_sub(value.len() - 1);
            let from = text.floor_char_boundary(from);
            if let Some(i) = text[from..].find(value.as_str()).map(|i| from + i)
                && i < cut
                && i + value.len() > cut
            {
                cut = i + value.len();
            }
        }
        cut
    }

    pub fn mask_json(&self, value: Value) -> Value {
        if self.values.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.mask(&s).into_owned()),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.mask_json(v)).collect()),
            Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, self.mask_json(v))).collect()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_forms_of_a_long_secret_are_masked_too() {
        use base64::Engine;
        let value = "hunter2-Is/Secret+Key";
        let m = Secrets::from_vars([("PHASED_SECRET_K".to_string(), value.to_string())]).masker();
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
        let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
        for shown in [
            b64.clone(),
            url,
            hex.clone(),
            hex.to_uppercase(),
            "hunter2-Is%2FSecret%2BKey".to_string(),
            "hunter2-Is%2fSecret%2bKey".to_string(),
        ] {
            let text = format!("x {shown} y");
            let masked = m.mask(&text);
            assert!(!masked.contains(&shown), "{shown} -> {masked}");
        }
        // Inside a longer base64 text (`user:<secret>` as in a Basic header), at any offset.
        for prefix in ["u:", "us:", "use:"] {
            let text = base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{value}"));
            let masked = m.mask(&text);
            assert!(masked.contains(MASK), "{prefix}: {text} -> {masked}");
        }
        // A short secret is masked as written only: its encodings are ordinary text.
        let short = Secrets::from_vars([("PHASED_SECRET_S".to_string(), "abc".to_string())]).masker();
        assert_eq!(short.mask("YWJj 616263"), "YWJj 616263");
    }

    #[test]
    fn secrets_come_from_prefixed_variables_and_are_masked_everywhere() {
        let secrets = Secrets::from_vars([
            ("PHASED_SECRET_TOKEN".to_string(), "s3cr3t-value".to_string()),
            ("PHASED_SECRET_SHORT".to_string(), "s3cr3t".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ]);
        assert_eq!(secrets.values().keys().collect::<Vec<_>>(), vec!["short", "token"]);
        let m = secrets.masker();
        assert_eq!(m.mask("token=s3cr3t-value and s3cr3t"), "token=*** and ***");
        assert_eq!(
            m.mask_json(serde_json::json!({"a": ["x s3cr3t-value"], "b": 1})),
            serde_json::json!({"a": ["x ***"], "b": 1})
        );
    }
}
