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
