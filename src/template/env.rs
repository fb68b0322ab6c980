//! The minijinja environment pipelines are rendered in: strict undefined (a typo is an
//! error, not an empty string), no loader (a template reads only the values it is
//! given), a fuel limit (a runaway loop ends in an error), and the functions a
//! pipeline may call (`now()`, `secret_values()`).

use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior, Value};

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
pub(super) const FUEL: u64 = 2_000_000;

/// A configured environment: strict undefined, fuel, recursion limit, no loader,
/// and the functions pipelines may call.
pub(super) fn configured() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env.add_function("now", now);
    env.add_function("secret_values", secret_values);
    env.add_filter("shell_quote", shell_quote);
    env.set_formatter(format_value);
    // `| string` as `{{ }}` prints: `true`, not minijinja's `True`.
    env.add_filter("string", |value: Value| Value::from(text_of(&value)));
    env
}

/// The text of a value where a template prints it, as JSON and YAML write values (not
/// minijinja's Python style): `true`/`false`, `null` for none, a list or a mapping as
/// JSON. Text is itself; a number as minijinja prints it (`8080`, `1.5`); undefined
/// (only an `if` without `else` yields it, strict undefined refuses the rest) is empty.
pub(crate) fn text_of(value: &Value) -> String {
    use minijinja::value::ValueKind;
    match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        ValueKind::Undefined => String::new(),
        ValueKind::None => "null".to_string(),
        ValueKind::Bool => value.is_true().to_string(),
        ValueKind::Map | ValueKind::Seq => serde_json::to_string(value).unwrap_or_else(|_| value.to_string()),
        _ => value.to_string(),
    }
}

/// What `{{ }}` writes: [`text_of`] for the values minijinja would print Python style,
/// minijinja's own formatting for the rest (no auto-escaping is configured).
pub(crate) fn format_value(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    use minijinja::value::ValueKind;
    match value.kind() {
        ValueKind::Bool | ValueKind::None | ValueKind::Map | ValueKind::Seq => {
            out.write_str(&text_of(value)).map_err(minijinja::Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// `{{ inputs.version | shell_quote }}`: the value as one POSIX sh word, in single
/// quotes (a `'` inside becomes `'\''`), so that a script can hold it as data. Text is
/// quoted as it is; other values as `{{ }}` prints them (`true`, `8080`, `null`, JSON
/// for a list or a mapping).
pub(crate) fn shell_quote(value: &Value) -> String {
    format!("'{}'", text_of(value).replace('\'', "'\\''"))
}

/// The shared environment, for single expressions (they need no template store).
pub(super) static ENV: LazyLock<Environment<'static>> = LazyLock::new(configured);

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
