//! Every diagnostic code with what it means: the table of docs/pipeline-format.md
//! (section "Diagnostic codes", an anchor per code), kept equal to it by a test. A
//! SARIF rule's description and help come from here, not from one of its diagnostics.

use super::Severity;

/// Declares [`DiagnosticCode`], one variant per stable code, with its text.
macro_rules! diagnostic_codes {
    ($($variant:ident = $text:literal,)*) => {
        /// A diagnostic's stable code. Its text (`unknown-node`, [`DiagnosticCode::as_str`])
        /// is what every output shows (the text report, JSON, SARIF's `ruleId`) and the
        /// docs' anchor; the variants are in the order of the docs' table ([`CODES`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum DiagnosticCode {
            $($variant,)*
        }

        impl DiagnosticCode {
            /// Every code, in the order of the docs' table.
            pub const ALL: &[DiagnosticCode] = &[$(DiagnosticCode::$variant,)*];

            /// The stable text of the code (`unknown-node`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DiagnosticCode::$variant => $text,)*
                }
            }
        }
    };
}

diagnostic_codes! {
    YamlSyntax = "yaml-syntax",
    YamlTooComplex = "yaml-too-complex",
    FileTooLarge = "file-too-large",
    NotUtf8 = "not-utf8",
    EmptyFile = "empty-file",
    DuplicateKey = "duplicate-key",
    UnknownKey = "unknown-key",
    WrongType = "wrong-type",
    MissingField = "missing-field",
    InvalidValue = "invalid-value",
    UnsupportedVersion = "unsupported-version",
    InvalidName = "invalid-name",
    NoNodes = "no-nodes",
    UnknownPhase = "unknown-phase",
    ReservedPhase = "reserved-phase",
    DuplicatePhase = "duplicate-phase",
    MissingAction = "missing-action",
    ConflictingKeys = "conflicting-keys",
    UnknownAction = "unknown-action",
    UnknownParameter = "unknown-parameter",
    MissingParameter = "missing-parameter",
    InvalidParameter = "invalid-parameter",
    UnknownNode = "unknown-node",
    Cycle = "cycle",
    NegativeWeight = "negative-weight",
    InvalidPattern = "invalid-pattern",
    TemplateSyntax = "template-syntax",
    UnknownFilter = "unknown-filter",
    UnknownTest = "unknown-test",
    UnknownFunction = "unknown-function",
    ShellInjection = "shell-injection",
    SecretInCommand = "secret-in-command",
    UndefinedVariable = "undefined-variable",
    MissingPipeline = "missing-pipeline",
    InvalidSubPipeline = "invalid-sub-pipeline",
    PipelineCycle = "pipeline-cycle",
    RollbackInput = "rollback-input",
    EmptyNotify = "empty-notify",
    NotifyUrl = "notify-url",
    SelectOutputsDisagree = "select-outputs-disagree",
    InvalidTrigger = "invalid-trigger",
    DuplicatePipelineName = "duplicate-pipeline-name",
    PhaseOrder = "phase-order",
    UnusedInput = "unused-input",
    ZeroWeight = "zero-weight",
    RequiredWithDefault = "required-with-default",
}

impl DiagnosticCode {
    /// The code whose text is `text`, if any.
    pub fn parse(text: &str) -> Option<DiagnosticCode> {
        DiagnosticCode::ALL.iter().copied().find(|c| c.as_str() == text)
    }
}

impl std::fmt::Display for DiagnosticCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One diagnostic code, with what it means.
#[derive(Debug)]
pub struct Code {
    /// The code; its text (`unknown-node`) is the anchor of its row in the docs.
    pub code: DiagnosticCode,
    /// How it is reported unless `--deny-warnings` (some warnings are errors in one case).
    pub severity: Severity,
    /// What it means, as the docs say it (Markdown: identifiers in backticks).
    pub meaning: &'static str,
}

/// Every code `validate` reports, in the order of the docs' table.
pub const CODES: &[Code] = &[
    Code {
        code: DiagnosticCode::YamlSyntax,
        severity: Severity::Error,
        meaning: "the file is not valid YAML (or holds more than one document, or a NUL byte)",
    },
    Code {
        code: DiagnosticCode::YamlTooComplex,
        severity: Severity::Error,
        meaning: "nesting deeper than 64 levels, or aliases that expand past 100,000 nodes (an alias bomb)",
    },
    Code { code: DiagnosticCode::FileTooLarge, severity: Severity::Error, meaning: "larger than 64 MiB" },
    Code { code: DiagnosticCode::NotUtf8, severity: Severity::Error, meaning: "the file is not UTF-8 text" },
    Code { code: DiagnosticCode::EmptyFile, severity: Severity::Error, meaning: "nothing in the file" },
    Code {
        code: DiagnosticCode::DuplicateKey,
        severity: Severity::Error,
        meaning: "a key appears twice in one mapping (a later node would silently replace an earlier one)",
    },
    Code {
        code: DiagnosticCode::UnknownKey,
        severity: Severity::Error,
        meaning: "a key the format does not have (with did-you-mean)",
    },
    Code { code: DiagnosticCode::WrongType, severity: Severity::Error, meaning: "a value of the wrong type" },
    Code {
        code: DiagnosticCode::MissingField,
        severity: Severity::Error,
        meaning: "a required key is missing (`version`, `name`, `nodes`, a node's `phase`)",
    },
    Code {
        code: DiagnosticCode::InvalidValue,
        severity: Severity::Error,
        meaning: "a value out of range or not allowed (a duration, `attempts: 0`, an enum)",
    },
    Code { code: DiagnosticCode::UnsupportedVersion, severity: Severity::Error, meaning: "`version` is not 1" },
    Code {
        code: DiagnosticCode::InvalidName,
        severity: Severity::Error,
        meaning: "a node or input id that is not snake_case, a phase that is not UPPER_SNAKE_CASE, an empty name",
    },
    Code { code: DiagnosticCode::NoNodes, severity: Severity::Error, meaning: "`nodes` is empty" },
    Code {
        code: DiagnosticCode::UnknownPhase,
        severity: Severity::Error,
        meaning: "a phase that is neither built in nor declared",
    },
    Code {
        code: DiagnosticCode::ReservedPhase,
        severity: Severity::Error,
        meaning: "a node reports `QUEUED`, `ACTIVE` or `FAILED`",
    },
    Code {
        code: DiagnosticCode::DuplicatePhase,
        severity: Severity::Error,
        meaning: "an extra phase that already exists",
    },
    Code {
        code: DiagnosticCode::MissingAction,
        severity: Severity::Error,
        meaning: "a node with neither `uses` nor `pipeline`",
    },
    Code {
        code: DiagnosticCode::ConflictingKeys,
        severity: Severity::Error,
        meaning: "a node with both `uses` and `pipeline`",
    },
    Code { code: DiagnosticCode::UnknownAction, severity: Severity::Error, meaning: "`uses` names no built-in action" },
    Code {
        code: DiagnosticCode::UnknownParameter,
        severity: Severity::Error,
        meaning: "a `with` key the action (or sub-pipeline) does not take",
    },
    Code {
        code: DiagnosticCode::MissingParameter,
        severity: Severity::Error,
        meaning: "a required parameter or sub-pipeline input is not given",
    },
    Code {
        code: DiagnosticCode::InvalidParameter,
        severity: Severity::Error,
        meaning: "the action's own check fails (e.g. `shell` with both `run` and `command`)",
    },
    Code { code: DiagnosticCode::UnknownNode, severity: Severity::Error, meaning: "`needs` names no node" },
    Code {
        code: DiagnosticCode::Cycle,
        severity: Severity::Error,
        meaning: "`needs` forms a cycle, printed as `a -> b -> a`",
    },
    Code { code: DiagnosticCode::NegativeWeight, severity: Severity::Error, meaning: "a weight below 0" },
    Code {
        code: DiagnosticCode::InvalidPattern,
        severity: Severity::Error,
        meaning: "an input `pattern` that is not a regular expression",
    },
    Code {
        code: DiagnosticCode::TemplateSyntax,
        severity: Severity::Error,
        meaning: "a template or `if` expression that does not parse",
    },
    Code {
        code: DiagnosticCode::UnknownFilter,
        severity: Severity::Error,
        meaning: "a template applies a filter that does not exist (`{{ v | upperr }}`): it parses, but `plan` and `run` would fail there; the help names the closest filter",
    },
    Code {
        code: DiagnosticCode::UnknownTest,
        severity: Severity::Error,
        meaning: "a template uses a test that does not exist (`if: inputs.tag is definned`)",
    },
    Code {
        code: DiagnosticCode::UnknownFunction,
        severity: Severity::Error,
        meaning: "a template calls a function that does not exist (`{{ nwo() }}`)",
    },
    Code {
        code: DiagnosticCode::ShellInjection,
        severity: Severity::Error,
        meaning: "`run:` or `command:` of a `shell` step renders a caller's value (`inputs.*`, `item`, `push.*`) without `| shell_quote`: pass it through `env:`",
    },
    Code {
        code: DiagnosticCode::SecretInCommand,
        severity: Severity::Error,
        meaning: "`run:` or `command:` of a `shell` step renders a secret, visible in `ps`: pass it through `env:`",
    },
    Code {
        code: DiagnosticCode::UndefinedVariable,
        severity: Severity::Error,
        meaning: "a template reads something not in scope there: an undeclared input, a node that is not an ancestor, an output not declared",
    },
    Code {
        code: DiagnosticCode::MissingPipeline,
        severity: Severity::Error,
        meaning: "a sub-pipeline that does not exist",
    },
    Code {
        code: DiagnosticCode::InvalidSubPipeline,
        severity: Severity::Error,
        meaning: "a sub-pipeline that has errors of its own",
    },
    Code {
        code: DiagnosticCode::PipelineCycle,
        severity: Severity::Error,
        meaning: "sub-pipelines that include each other",
    },
    Code {
        code: DiagnosticCode::RollbackInput,
        severity: Severity::Error,
        meaning: "the pipeline named by `rollback` requires an input this pipeline does not have (it gets `release` and the inputs of the same names)",
    },
    Code {
        code: DiagnosticCode::EmptyNotify,
        severity: Severity::Error,
        meaning: "a `notify` entry whose `on` is empty: it would never be sent",
    },
    Code {
        code: DiagnosticCode::NotifyUrl,
        severity: Severity::Error,
        meaning: "a `notify` webhook URL written with a scheme other than `http` or `https` (`file://`, `gopher://`), or not an absolute URL",
    },
    Code {
        code: DiagnosticCode::SelectOutputsDisagree,
        severity: Severity::Error,
        meaning: "error: an output read from a `select` node that not every alternative declares; warning: alternatives declare different outputs",
    },
    Code {
        code: DiagnosticCode::InvalidTrigger,
        severity: Severity::Error,
        meaning: "a triggers file (`phased serve --triggers`): an unknown key or provider, a deployment type that does not exist, an empty secret, repository or branch, a repository that is not `owner/name` or a branch that is not a git branch name, a `max_age` that is not a duration, an input template reading more than `push.commit`, `push.branch`, `push.ref`, `push.repository`, `push.clone_url`",
    },
    Code {
        code: DiagnosticCode::DuplicatePipelineName,
        severity: Severity::Error,
        meaning: "two files in one folder declare the same `name`",
    },
    Code {
        code: DiagnosticCode::PhaseOrder,
        severity: Severity::Warning,
        meaning: "a node's phase comes before the phase of one of its ancestors",
    },
    Code { code: DiagnosticCode::UnusedInput, severity: Severity::Warning, meaning: "an input no template reads" },
    Code { code: DiagnosticCode::ZeroWeight, severity: Severity::Warning, meaning: "the nodes' weights add up to 0" },
    Code {
        code: DiagnosticCode::RequiredWithDefault,
        severity: Severity::Warning,
        meaning: "a required input with a default that can never be used",
    },
];

/// What `code` means (every code has its row: a test sees to it).
pub fn describe(code: DiagnosticCode) -> Option<&'static Code> {
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

#[cfg(test)]
mod tests {
    use super::{CODES, DiagnosticCode};

    /// The table has one row per code, in the order of the enum, and every text parses
    /// back to its code.
    #[test]
    fn every_code_has_its_row() {
        let table: Vec<DiagnosticCode> = CODES.iter().map(|c| c.code).collect();
        assert_eq!(table, DiagnosticCode::ALL);
        for code in DiagnosticCode::ALL {
            assert_eq!(DiagnosticCode::parse(code.as_str()), Some(*code));
        }
    }
}
