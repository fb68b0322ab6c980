//! Every diagnostic code with what it means: the table of docs/pipeline-format.md
//! (section "Diagnostic codes", an anchor per code), kept equal to it by a test. A
//! SARIF rule's description and help come from here, not from one of its diagnostics.

use super::Severity;

/// One diagnostic code.
#[derive(Debug)]
pub struct Code {
    /// The stable identifier (`unknown-node`): the anchor of its row in the docs.
    pub code: &'static str,
    /// How it is reported unless `--deny-warnings` (some warnings are errors in one case).
    pub severity: Severity,
    /// What it means, as the docs say it (Markdown: identifiers in backticks).
    pub meaning: &'static str,
}

/// Every code `validate` reports, in the order of the docs' table.
pub const CODES: &[Code] = &[
    Code {
        code: "yaml-syntax",
        severity: Severity::Error,
        meaning: "the file is not valid YAML (or holds more than one document, or a NUL byte)",
    },
    Code {
        code: "yaml-too-complex",
        severity: Severity::Error,
        meaning: "nesting deeper than 64 levels, or aliases that expand past 100,000 nodes (an alias bomb)",
    },
    Code { code: "file-too-large", severity: Severity::Error, meaning: "larger than 64 MiB" },
    Code { code: "not-utf8", severity: Severity::Error, meaning: "the file is not UTF-8 text" },
    Code { code: "empty-file", severity: Severity::Error, meaning: "nothing in the file" },
    Code {
        code: "duplicate-key",
        severity: Severity::Error,
        meaning: "a key appears twice in one mapping (a later node would silently replace an earlier one)",
    },
    Code {
        code: "unknown-key",
        severity: Severity::Error,
        meaning: "a key the format does not have (with did-you-mean)",
    },
    Code { code: "wrong-type", severity: Severity::Error, meaning: "a value of the wrong type" },
    Code {
        code: "missing-field",
        severity: Severity::Error,
        meaning: "a required key is missing (`version`, `name`, `nodes`, a node's `phase`)",
    },
    Code {
        code: "invalid-value",
        severity: Severity::Error,
        meaning: "a value out of range or not allowed (a duration, `attempts: 0`, an enum)",
    },
    Code { code: "unsupported-version", severity: Severity::Error, meaning: "`version` is not 1" },
    Code {
        code: "invalid-name",
        severity: Severity::Error,
        meaning: "a node or input id that is not snake_case, a phase that is not UPPER_SNAKE_CASE, an empty name",
    },
    Code { code: "no-nodes", severity: Severity::Error, meaning: "`nodes` is empty" },
    Code { code: "unknown-phase", severity: Severity::Error, meaning: "a phase that is neither built in nor declared" },
    Code {
        code: "reserved-phase",
        severity: Severity::Error,
        meaning: "a node reports `QUEUED`, `ACTIVE` or `FAILED`",
    },
    Code { code: "duplicate-phase", severity: Severity::Error, meaning: "an extra phase that already exists" },
    Code { code: "missing-action", severity: Severity::Error, meaning: "a node with neither `uses` nor `pipeline`" },
    Code { code: "conflicting-keys", severity: Severity::Error, meaning: "a node with both `uses` and `pipeline`" },
    Code { code: "unknown-action", severity: Severity::Error, meaning: "`uses` names no built-in action" },
    Code {
        code: "unknown-parameter",
        severity: Severity::Error,
        meaning: "a `with` key the action (or sub-pipeline) does not take",
    },
    Code {
        code: "missing-parameter",
        severity: Severity::Error,
        meaning: "a required parameter or sub-pipeline input is not given",
    },
    Code {
        code: "invalid-parameter",
        severity: Severity::Error,
        meaning: "the action's own check fails (e.g. `shell` with both `run` and `command`)",
    },
    Code { code: "unknown-node", severity: Severity::Error, meaning: "`needs` names no node" },
    Code { code: "cycle", severity: Severity::Error, meaning: "`needs` forms a cycle, printed as `a -> b -> a`" },
    Code { code: "negative-weight", severity: Severity::Error, meaning: "a weight below 0" },
    Code {
        code: "invalid-pattern",
        severity: Severity::Error,
        meaning: "an input `pattern` that is not a regular expression",
    },
    Code {
        code: "template-syntax",
        severity: Severity::Error,
        meaning: "a template or `if` expression that does not parse",
    },
    Code {
        code: "unknown-filter",
        severity: Severity::Error,
        meaning: "a template applies a filter that does not exist (`{{ v | upperr }}`): it parses, but `plan` and `run` would fail there; the help names the closest filter",
    },
    Code {
        code: "unknown-test",
        severity: Severity::Error,
        meaning: "a template uses a test that does not exist (`if: inputs.tag is definned`)",
    },
    Code {
        code: "unknown-function",
        severity: Severity::Error,
        meaning: "a template calls a function that does not exist (`{{ nwo() }}`)",
    },
    Code {
        code: "shell-injection",
        severity: Severity::Error,
        meaning: "`run:` or `command:` of a `shell` step renders a caller's value (`inputs.*`, `item`, `push.*`) without `| shell_quote`: pass it through `env:`",
    },
    Code {
        code: "secret-in-command",
        severity: Severity::Error,
        meaning: "`run:` or `command:` of a `shell` step renders a secret, visible in `ps`: pass it through `env:`",
    },
    Code {
        code: "undefined-variable",
        severity: Severity::Error,
        meaning: "a template reads something not in scope there: an undeclared input, a node that is not an ancestor, an output not declared",
    },
    Code { code: "missing-pipeline", severity: Severity::Error, meaning: "a sub-pipeline that does not exist" },
    Code {
        code: "invalid-sub-pipeline",
        severity: Severity::Error,
        meaning: "a sub-pipeline that has errors of its own",
    },
    Code { code: "pipeline-cycle", severity: Severity::Error, meaning: "sub-pipelines that include each other" },
    Code {
        code: "rollback-input",
        severity: Severity::Error,
        meaning: "the pipeline named by `rollback` requires an input this pipeline does not have (it gets `release` and the inputs of the same names)",
    },
    Code {
        code: "empty-notify",
        severity: Severity::Error,
        meaning: "a `notify` entry whose `on` is empty: it would never be sent",
    },
    Code {
        code: "notify-url",
        severity: Severity::Error,
        meaning: "a `notify` webhook URL written with a scheme other than `http` or `https` (`file://`, `gopher://`), or not an absolute URL",
    },
    Code {
        code: "select-outputs-disagree",
        severity: Severity::Error,
        meaning: "error: an output read from a `select` node that not every alternative declares; warning: alternatives declare different outputs",
    },
    Code {
        code: "invalid-trigger",
        severity: Severity::Error,
        meaning: "a triggers file (`phased serve --triggers`): an unknown key or provider, a deployment type that does not exist, an empty secret, repository or branch, a repository that is not `owner/name` or a branch that is not a git branch name, a `max_age` that is not a duration, an input template reading more than `push.commit`, `push.branch`, `push.ref`, `push.repository`, `push.clone_url`",
    },
    Code {
        code: "duplicate-pipeline-name",
        severity: Severity::Error,
        meaning: "two files in one folder declare the same `name`",
    },
    Code {
        code: "phase-order",
        severity: Severity::Warning,
        meaning: "a node's phase comes before the phase of one of its ancestors",
    },
    Code { code: "unused-input", severity: Severity::Warning, meaning: "an input no template reads" },
    Code { code: "zero-weight", severity: Severity::Warning, meaning: "the nodes' weights add up to 0" },
    Code {
        code: "required-with-default",
        severity: Severity::Warning,
        meaning: "a required input with a default that can never be used",
    },
];

/// What `code` means, if it is one.
pub fn describe(code: &str) -> Option<&'static Code> {
    CODES.iter().find(|c| c.code == code)
}

/// Where `code` is explained: its anchor in docs/pipeline-format.md, in the repository
/// Cargo.toml names (`repository`), else in the source tree this binary was built from
/// (`cargo install --path .` keeps it).
pub fn help_uri(code: &str) -> String {
    let page = "docs/pipeline-format.md";
    match option_env!("CARGO_PKG_REPOSITORY").filter(|r| !r.is_empty()) {
        Some(repository) => format!("{}/blob/main/{page}#{code}", repository.trim_end_matches('/')),
        None => {
            let mut dir = String::new();
            for byte in env!("CARGO_MANIFEST_DIR").bytes() {
                match byte {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                        dir.push(byte as char)
                    }
                    _ => dir.push_str(&format!("%{byte:02X}")),
                }
            }
            format!("file://{dir}/{page}#{code}")
        }
    }
}
