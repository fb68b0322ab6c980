//! What a template calls by name: the filters (`| upper`), tests (`is defined`) and
//! functions (`now()`) it uses. minijinja looks these up only when a template renders
//! (`{{ v | upperr }}` parses, then fails `plan` and `run`), so the compiler finds them
//! in the compiled instructions and checks each against the environment the template
//! renders in: `validate` refuses what `plan` would.

use std::sync::LazyLock;

use minijinja::machinery::{self, CodeGenerator, Instruction, Instructions};

use super::env::ENV;
use crate::suggest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallKind {
    Filter,
    Test,
    Function,
}

impl CallKind {
    pub(crate) fn noun(self) -> &'static str {
        match self {
            CallKind::Filter => "filter",
            CallKind::Test => "test",
            CallKind::Function => "function",
        }
    }
}

/// A filter, test or function a template names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) kind: CallKind,
    pub(crate) name: String,
}

impl Call {
    /// Whether the environment has it, as a render would look it up. A function is
    /// known when it is a global (`now`, `range`); a name a template defines itself
    /// (`{% macro %}`, `{% set %}`) is a variable, checked with the others.
    pub(crate) fn is_known(&self) -> bool {
        match self.kind {
            CallKind::Filter => exists(&IS_FILTER, &self.name),
            CallKind::Test => exists(&IS_TEST, &self.name),
            CallKind::Function => ENV.globals().any(|(name, _)| name == self.name),
        }
    }

    /// `did you mean `upper`?`, or what there is.
    pub(crate) fn help(&self) -> String {
        let candidates: &[&str] = match self.kind {
            CallKind::Filter => &FILTERS,
            CallKind::Test => &TESTS,
            CallKind::Function => &FUNCTIONS,
        };
        suggest::hint(&self.name, candidates.iter().copied())
            .unwrap_or_else(|| format!("no {} is available here", self.kind.noun()))
    }
}

/// The calls of a compiled text template, each once, in order.
pub(super) fn in_template(template: &minijinja::Template<'_, '_>) -> Vec<Call> {
    let compiled = machinery::get_compiled_template(template);
    let mut out = Vec::new();
    collect(&compiled.instructions, &mut out);
    for block in compiled.blocks.values() {
        collect(block, &mut out);
    }
    out
}

/// The calls of an expression (`if:`, or the inside of `{{ }}`); none when it does not
/// parse (reported as a syntax error elsewhere).
pub(super) fn in_expression(expr: &str) -> Vec<Call> {
    let Ok(ast) = machinery::parse_expr(expr) else { return Vec::new() };
    let mut generator = CodeGenerator::new("<expression>", expr);
    generator.compile_expr(&ast);
    let (instructions, _) = generator.finish();
    let mut out = Vec::new();
    collect(&instructions, &mut out);
    out
}

fn collect(instructions: &Instructions<'_>, out: &mut Vec<Call>) {
    let mut pc = 0;
    while let Some(instruction) = instructions.get(pc) {
        pc += 1;
        let (kind, name) = match instruction {
            Instruction::ApplyFilter(name, ..) => (CallKind::Filter, *name),
            Instruction::PerformTest(name, ..) => (CallKind::Test, *name),
            Instruction::CallFunction(name, _) => (CallKind::Function, *name),
            _ => continue,
        };
        // As minijinja looks a filter up: `| foo . bar` is `foo.bar`.
        let call = Call { kind, name: name.chars().filter(|c| !c.is_ascii_whitespace()).collect() };
        if !out.contains(&call) {
            out.push(call);
        }
    }
}

/// `name is filter` and `name is test`: the environment's own answer.
static IS_FILTER: LazyLock<minijinja::Expression<'static, 'static>> =
    LazyLock::new(|| ENV.compile_expression("name is filter").expect("a valid expression"));
static IS_TEST: LazyLock<minijinja::Expression<'static, 'static>> =
    LazyLock::new(|| ENV.compile_expression("name is test").expect("a valid expression"));

fn exists(check: &minijinja::Expression<'static, 'static>, name: &str) -> bool {
    check.eval(minijinja::context! { name }).is_ok_and(|v| v.is_true())
}

/// For did-you-mean only (whether a name exists is the environment's answer): the
/// filters and tests of minijinja with the features phased builds it with, and ours.
const FILTER_NAMES: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "shell_quote",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "zip",
];
const TEST_NAMES: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "int",
    "integer",
    "iterable",
    "le",
    "lessthan",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

static FILTERS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| FILTER_NAMES.iter().copied().filter(|n| exists(&IS_FILTER, n)).collect());
static TESTS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| TEST_NAMES.iter().copied().filter(|n| exists(&IS_TEST, n)).collect());
static FUNCTIONS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names: Vec<&'static str> = ENV.globals().map(|(name, _)| name).collect();
    names.sort_unstable();
    names
});

#[cfg(test)]
mod tests {
    use super::*;

    fn names(calls: &[Call]) -> Vec<(CallKind, &str)> {
        calls.iter().map(|c| (c.kind, c.name.as_str())).collect()
    }

    #[test]
    fn finds_filters_tests_and_functions_in_every_branch() {
        let mut env = minijinja::Environment::new();
        env.add_template(
            "t",
            "{% if x is nope %}{{ x | upperr }}{% else %}{% filter trimm %}{{ nwo() }}{% endfilter %}{% endif %}",
        )
        .unwrap();
        let calls = in_template(&env.get_template("t").unwrap());
        assert_eq!(
            names(&calls),
            [
                (CallKind::Test, "nope"),
                (CallKind::Filter, "upperr"),
                (CallKind::Function, "nwo"),
                (CallKind::Filter, "trimm")
            ]
        );
        let calls = in_expression("inputs.v | default('x') | shell_quote if inputs.v is defined else now()");
        assert_eq!(
            names(&calls),
            [
                (CallKind::Test, "defined"),
                (CallKind::Filter, "default"),
                (CallKind::Filter, "shell_quote"),
                (CallKind::Function, "now")
            ]
        );
    }

    #[test]
    fn known_names_are_the_environments_and_a_typo_gets_a_suggestion() {
        let call = |kind, name: &str| Call { kind, name: name.to_string() };
        assert!(call(CallKind::Filter, "upper").is_known());
        assert!(call(CallKind::Filter, "shell_quote").is_known());
        assert!(!call(CallKind::Filter, "upperr").is_known());
        assert!(call(CallKind::Test, "defined").is_known());
        assert!(!call(CallKind::Test, "nope").is_known());
        assert!(call(CallKind::Function, "now").is_known());
        assert!(!call(CallKind::Function, "nwo").is_known());
        assert!(call(CallKind::Filter, "upperr").help().starts_with("did you mean `upper`?"));
        assert!(call(CallKind::Function, "nwo").help().starts_with("did you mean `now`?"));
        // Every name offered exists.
        assert!(FILTERS.len() > 40 && TESTS.len() > 30, "{} {}", FILTERS.len(), TESTS.len());
    }
}
