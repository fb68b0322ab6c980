//! Templates: minijinja with strict undefined, no loader and a fuel limit
//! ([`env`]); compiled once per pipeline into [`Block`]s that keep their place in the
//! file ([`block`]), then rendered by the engine and `phased plan`.

mod block;
mod calls;
mod env;

use std::ops::Range;

pub(crate) use block::{Block, Template, Templates};
pub(crate) use calls::{Call, CallKind};
pub(crate) use env::{NOW_VARIABLE, format_value};

/// Whether a string holds template syntax.
pub(crate) fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// A template that does not compile, with the byte range inside the template text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TemplateError {
    pub(crate) message: String,
    pub(crate) range: Option<Range<usize>>,
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        let kind = e.kind().to_string();
        let kind = kind.trim_end_matches('.');
        let message = match e.detail() {
            Some(detail) => format!("{kind}: {detail}"),
            None => kind.to_string(),
        };
        TemplateError { message, range: e.range() }
    }
}

/// The variables an expression (the inside of `{{ }}`) reads, as dotted paths;
/// `None` when it does not compile (reported elsewhere).
pub(crate) fn expression_variables(expr: &str) -> Option<Vec<String>> {
    let expression = env::ENV.compile_expression(expr).ok()?;
    let mut vars: Vec<String> =
        expression.undeclared_variables(true).into_iter().filter(|v| !env::GLOBALS.contains(&root_of(v))).collect();
    vars.sort();
    Some(vars)
}

/// The first segment of a dotted path.
pub(crate) fn root_of(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// A run-time template error as one line: its kind and detail, and where secrets come
/// from when a secret is missing.
pub(crate) fn describe_error(e: &minijinja::Error) -> String {
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        return format!(
            "the template does too much work (stopped after {} steps): loops this large belong in a step's script",
            env::FUEL
        );
    }
    let mut text = e.kind().to_string();
    if let Some(detail) = e.detail() {
        text = format!("{text}: {detail}");
    }
    if text.contains("secrets") {
        text.push_str(" (secrets come from PHASED_SECRET_<NAME> environment variables)");
    }
    text
}

#[cfg(test)]
mod tests {
    use minijinja::Value;
    use serde_json::json;

    use super::*;
    use crate::source::Span;

    /// Compiles and renders one string, as the engine does.
    fn render(text: &str, ctx: &Value) -> Result<serde_json::Value, minijinja::Error> {
        let mut templates = Templates::default();
        let template = templates.compile(text, Span::new(0, text.len())).expect("compiles");
        template.eval(&templates, ctx)
    }

    #[test]
    fn secret_values_maps_names_to_secrets_and_names_a_missing_one() {
        let ctx = minijinja::context! {
            inputs => minijinja::context! { secret_env => minijinja::context! { DB_URL => "db" } },
            secrets => minijinja::context! { db => "postgres://u:p@h/db" },
        };
        let value = render("{{ secret_values(inputs.secret_env) }}", &ctx).unwrap();
        assert_eq!(value, json!({"DB_URL": "postgres://u:p@h/db"}));
        let ctx = minijinja::context! {
            inputs => minijinja::context! { secret_env => minijinja::context! { DB_URL => "nope" } },
            secrets => minijinja::context! {},
        };
        let err = render("{{ secret_values(inputs.secret_env) }}", &ctx).unwrap_err();
        assert!(err.to_string().contains("PHASED_SECRET_NOPE"), "{err}");
    }

    #[test]
    fn finds_nested_variables_in_text_order_once_compiled() {
        let mut templates = Templates::default();
        let text = "{{ nodes.a.outputs.path }}/{{ inputs.name }}-{{ now() }}";
        let template = templates.compile(text, Span::new(0, 1)).unwrap();
        assert_eq!(template.variables, ["nodes.a.outputs.path", "inputs.name"]);
        let condition = "inputs.source.type != 'embedded'";
        let expression = templates.compile_expression(condition, condition, Span::new(0, 1)).unwrap();
        assert_eq!(expression.variables, ["inputs.source.type"]);
    }

    #[test]
    fn syntax_errors_have_a_range() {
        let err = Templates::default().compile("ok {{ inputs.x + }} later", Span::new(0, 1)).unwrap_err();
        assert!(err.message.contains("syntax error"), "{}", err.message);
        assert!(err.range.is_some());
    }

    #[test]
    fn a_single_expression_keeps_its_type_and_text_becomes_a_string() {
        let ctx = Value::from(minijinja::value::Serde(json!({"inputs": {"port": 8080, "name": "web"}})));
        assert_eq!(render("{{ inputs.port }}", &ctx).unwrap(), json!(8080));
        assert_eq!(render("port {{ inputs.port }}", &ctx).unwrap(), json!("port 8080"));
        assert_eq!(render("{{ inputs }}", &ctx).unwrap(), json!({"port": 8080, "name": "web"}));
        assert!(render("{{ inputs.missing }}", &ctx).is_err(), "strict undefined");
    }

    #[test]
    fn values_print_as_json_writes_them_and_conditions_keep_real_booleans() {
        let ctx = Value::from(minijinja::value::Serde(json!({
            "inputs": {"on": true, "off": false, "tag": null, "list": [true, null, "x"], "n": 8080}
        })));
        let text = "{{ inputs.on }} {{ inputs.off }} {{ inputs.tag }} {{ inputs.list }} {{ inputs.n }}";
        assert_eq!(render(text, &ctx).unwrap(), json!("true false null [true,null,\"x\"] 8080"));
        let filters = "{{ inputs.on | string }} {{ inputs.tag | shell_quote }} {{ inputs.off | tojson }}";
        assert_eq!(render(filters, &ctx).unwrap(), json!("true 'null' false"));
        let branches =
            "{% if inputs.on %}on{% endif %}{% if inputs.off %}off{% endif %}{% if not inputs.tag %}-{% endif %}";
        assert_eq!(render(branches, &ctx).unwrap(), json!("on-"));
        assert_eq!(render("{{ 'x' if inputs.off }}|", &ctx).unwrap(), json!("|"), "undefined prints nothing");
        // A single expression keeps its type: the boolean itself, not its text.
        assert_eq!(render("{{ inputs.off }}", &ctx).unwrap(), json!(false));
        let templates = Templates::default();
        let condition = templates.compile_expression("inputs.off", "inputs.off", Span::new(0, 1)).unwrap();
        assert!(!condition.is_true(&templates, &ctx).unwrap());
    }

    #[test]
    fn a_block_renders_each_template_where_it_stands_and_names_the_one_that_failed() {
        let mut templates = Templates::default();
        let port = templates.compile("{{ inputs.port }}", Span::new(0, 1)).unwrap();
        let missing = templates.compile("x{{ inputs.nope }}", Span::new(2, 3)).unwrap();
        let ok = Block::Map(vec![
            ("env".into(), Block::Map(vec![("PORT".into(), Block::Template(port))])),
            ("args".into(), Block::Seq(vec![Block::Literal(json!("a"))])),
        ]);
        let ctx = Value::from(minijinja::value::Serde(json!({"inputs": {"port": 8080}})));
        assert_eq!(ok.render(&templates, &ctx).unwrap(), json!({"env": {"PORT": 8080}, "args": ["a"]}));
        let broken = Block::Map(vec![("args".into(), Block::Seq(vec![Block::Template(missing)]))]);
        let err = broken.render(&templates, &ctx).unwrap_err();
        assert_eq!((err.path.as_str(), err.text.as_str()), ("args[0]", "x{{ inputs.nope }}"));
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let text = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let err = render(text, &Value::from(())).unwrap_err();
        assert!(err.to_string().contains("fuel") || err.to_string().contains("range"), "{err}");
    }
}
