//! What the registry knows about an action without running it.

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::runtime::{ActionCtx, ActionError, ActionFuture};

/// The outputs an action declares; templates of later nodes may read only these.
#[derive(Clone, Copy, Debug)]
pub enum Outputs {
    /// Exactly these names.
    Fixed(&'static [&'static str]),
    /// Whatever the action reports at run time (`shell` writes `key=value` lines).
    Any,
}

pub struct ActionSpec {
    /// `noun.verb`, as written after `uses:`.
    pub name: &'static str,
    pub summary: &'static str,
    pub outputs: Outputs,
    /// A `with:` block (YAML) that passes the action's own check; tested.
    pub example: &'static str,
    /// The JSON Schema of the parameters (generated from the parameter struct).
    pub(crate) schema_fn: fn() -> Value,
    /// The pure check of parameters once their values are known (no templates left).
    pub(crate) check_fn: fn(&Value) -> Result<(), String>,
    pub(crate) schema_cache: &'static OnceLock<Value>,
    /// Starts the work, given rendered and checked parameters.
    pub(crate) run_fn: fn(ActionCtx, &Value) -> ActionFuture,
    /// The paths the action writes, from its rendered parameters (`phased watch`
    /// ignores changes there, so a deploy never triggers itself).
    pub(crate) writes_fn: fn(&Value) -> Vec<std::path::PathBuf>,
    /// Whether it acts outside the run (a process, a file, a request): such a step
    /// starts only once the success of what it follows is committed, so that a crash in
    /// between never runs that again. False for `noop`, whose chains commit in groups.
    pub(crate) effects: bool,
}

impl ActionSpec {
    pub fn schema(&self) -> &'static Value {
        self.schema_cache.get_or_init(self.schema_fn)
    }

    /// Checks fully rendered parameters: types, then the action's own rules.
    pub fn check(&self, params: &Value) -> Result<(), String> {
        (self.check_fn)(params)
    }

    /// Converts rendered values to the types the parameters declare, where nothing is
    /// lost: a number or a boolean where only a string is declared becomes its text
    /// (`env: {PORT: "{{ inputs.port }}"}` with an integer input gives `"8080"`).
    pub fn convert(&self, params: Value) -> Value {
        convert(self.schema(), params)
    }

    /// The paths the action will write, given its rendered parameters.
    pub fn writes(&self, params: &Value) -> Vec<std::path::PathBuf> {
        (self.writes_fn)(params)
    }

    /// Runs the action with rendered parameters (checked again here).
    pub fn run(&self, ctx: ActionCtx, params: &Value) -> ActionFuture {
        (self.run_fn)(ctx, params)
    }
}

fn convert(schema: &Value, value: Value) -> Value {
    match value {
        Value::Number(_) | Value::Bool(_) if declares_only_text(schema) => Value::String(value.to_string()),
        Value::Object(entries) => {
            let properties = schema.get("properties");
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            entries
                .into_iter()
                .map(|(key, value)| {
                    let declared = properties.and_then(|p| p.get(&key)).or(additional);
                    let value = match declared {
                        Some(declared) => convert(declared, value),
                        None => value,
                    };
                    (key, value)
                })
                .collect()
        }
        Value::Array(items) => match schema.get("items") {
            Some(declared) => items.into_iter().map(|item| convert(declared, item)).collect(),
            None => Value::Array(items),
        },
        other => other,
    }
}

/// Whether a schema accepts strings (and maybe null) but no number or boolean.
fn declares_only_text(schema: &Value) -> bool {
    let accepts = |ty: &str| match &schema["type"] {
        Value::String(t) => t == ty,
        Value::Array(types) => types.iter().any(|t| t == ty),
        _ => false,
    };
    accepts("string") && !accepts("number") && !accepts("integer") && !accepts("boolean")
}

/// The inlined JSON Schema of a parameter struct.
pub(crate) fn schema_of<T: JsonSchema>() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// Deserializes rendered parameters into `T` and runs its check.
/// A wrong type names its parameter: ``env.PORT`: invalid type: ...``.
pub(crate) fn parse_params<T: DeserializeOwned>(params: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(params).map_err(|e| match e.path().to_string().as_str() {
        "." | "" => e.inner().to_string(),
        path => format!("`{path}`: {}", e.inner()),
    })
}

/// Parses parameters and starts `run`, or fails at once with the parse error.
pub(crate) fn start<T: DeserializeOwned>(
    ctx: ActionCtx,
    params: &Value,
    run: fn(ActionCtx, T) -> ActionFuture,
) -> ActionFuture {
    match parse_params::<T>(params) {
        Ok(p) => run(ctx, p),
        Err(e) => Box::pin(async move { Err(ActionError::new(format!("invalid parameters: {e}"))) }),
    }
}

/// Declares an action's `SPEC` static from its parameter type and its `run` function
/// (and, for actions that write files, a `writes` function of its parameters).
macro_rules! action_spec {
    ($params:ty, name: $name:expr, summary: $summary:expr, outputs: $outputs:expr, example: $example:expr, run: $run:expr $(,)?) => {
        $crate::action::spec::action_spec!(@make $params, $name, $summary, $outputs, $example, $run, |_| Vec::new(), true);
    };
    ($params:ty, name: $name:expr, summary: $summary:expr, outputs: $outputs:expr, example: $example:expr, run: $run:expr, effects: false $(,)?) => {
        $crate::action::spec::action_spec!(@make $params, $name, $summary, $outputs, $example, $run, |_| Vec::new(), false);
    };
    ($params:ty, name: $name:expr, summary: $summary:expr, outputs: $outputs:expr, example: $example:expr, run: $run:expr, writes: $writes:expr $(,)?) => {
        $crate::action::spec::action_spec!(@make $params, $name, $summary, $outputs, $example, $run, $writes, true);
    };
    (@make $params:ty, $name:expr, $summary:expr, $outputs:expr, $example:expr, $run:expr, $writes:expr, $effects:expr) => {
        pub(crate) static SPEC: $crate::action::ActionSpec = {
            static SCHEMA: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
            $crate::action::ActionSpec {
                name: $name,
                summary: $summary,
                outputs: $outputs,
                example: $example,
                schema_fn: $crate::action::spec::schema_of::<$params>,
                check_fn: |v| $crate::action::spec::parse_params::<$params>(v).and_then(|p| p.check()),
                schema_cache: &SCHEMA,
                run_fn: |ctx, params| $crate::action::spec::start::<$params>(ctx, params, $run),
                writes_fn: |params| {
                    $crate::action::spec::parse_params::<$params>(params).map(|p| ($writes)(&p)).unwrap_or_default()
                },
                effects: $effects,
            }
        };
    };
}
pub(crate) use action_spec;

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn numbers_and_booleans_become_text_where_only_text_is_declared() {
        let shell = crate::action::find("shell").unwrap();
        let converted = shell.convert(json!({"run": "true", "env": {"PORT": 8080, "DEBUG": true}, "writes": [1]}));
        assert_eq!(converted, json!({"run": "true", "env": {"PORT": "8080", "DEBUG": "true"}, "writes": ["1"]}));
        assert!(shell.check(&converted).is_ok());
        let wrong = shell.check(&json!({"run": "true", "env": {"PORT": [1]}})).unwrap_err();
        assert!(wrong.starts_with("`env.PORT`: invalid type: sequence, expected a string"), "{wrong}");
        let sleep = crate::action::find("sleep").unwrap();
        assert_eq!(sleep.convert(json!({"duration": "1s"})), json!({"duration": "1s"}), "strings stay strings");
    }
}
