//! Built-in actions (`uses:`). Each action is one file holding its parameter struct
//! (serde + schemars), a pure check of the parameters and the work it does; the
//! registry below is the only list of them.

mod archive_extract;
mod content_write;
pub mod docker;
mod docker_build;
mod docker_remove;
mod docker_retire;
mod docker_run;
mod dockerfile_generate;
mod fail;
mod files_copy;
mod fsutil;
mod git_clone;
mod http_check;
pub mod log_times;
mod noop;
mod params;
mod release_switch;
mod routes_update;
mod runtime;
mod s3_download;
mod shell;
mod sleep;
mod spec;

pub use params::{ParamProblem, check_with};
pub use runtime::{
    ActionCtx, ActionError, ActionFuture, ActionOutputs, LineSink, NodeLog, ProgressReporter, StopSignal, capped,
    with_causes,
};
pub use spec::{ActionSpec, Outputs};

/// Every built-in action. Registry-wide tests run over this slice.
pub static ACTIONS: &[&ActionSpec] = &[
    &noop::SPEC,
    &sleep::SPEC,
    &fail::SPEC,
    &shell::SPEC,
    &http_check::SPEC,
    &content_write::SPEC,
    &archive_extract::SPEC,
    &files_copy::SPEC,
    &release_switch::SPEC,
    &routes_update::SPEC,
    &git_clone::SPEC,
    &s3_download::SPEC,
    &dockerfile_generate::SPEC,
    &docker_build::SPEC,
    &docker_run::SPEC,
    &docker_remove::SPEC,
    &docker_retire::SPEC,
];

pub use archive_extract::{ExtractParams, Extracted, extract};
pub use files_copy::{CopyParams, MARKER as RELEASE_MARKER, copy_release};
pub use git_clone::{CloneParams, clone};
pub use release_switch::{SwitchParams, switch};

/// The action named `name` (as written after `uses:`).
pub fn find(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().copied().find(|a| a.name == name)
}

/// The names of every action, for did-you-mean hints.
pub fn names() -> impl Iterator<Item = &'static str> + Clone {
    ACTIONS.iter().map(|a| a.name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::source::Source;
    use crate::yaml;

    #[test]
    fn names_are_unique_and_noun_verb_or_single_word() {
        let mut seen = HashSet::new();
        for action in ACTIONS {
            assert!(seen.insert(action.name), "duplicate action `{}`", action.name);
            let parts: Vec<_> = action.name.split('.').collect();
            assert!(parts.len() <= 2, "`{}` is not `noun.verb`", action.name);
            for part in parts {
                assert!(
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "`{}` is not lowercase `noun.verb`",
                    action.name
                );
            }
            assert!(!action.summary.is_empty(), "`{}` has no summary", action.name);
        }
    }

    #[test]
    fn every_example_passes_its_own_check() {
        for action in ACTIONS {
            let source = Source::new(format!("{}.example", action.name), action.example);
            let with = yaml::parse(&source).expect("example parses");
            let problems = check_with(action, &with, with.span);
            assert!(problems.is_empty(), "example of `{}` fails its check: {problems:?}", action.name);
        }
    }

    #[test]
    fn parameter_schemas_are_closed_objects() {
        for action in ACTIONS {
            let schema = action.schema();
            assert_eq!(schema["type"], "object", "`{}`", action.name);
            assert_eq!(schema["additionalProperties"], false, "`{}` accepts unknown keys", action.name);
        }
    }
}
