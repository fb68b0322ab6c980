//! `shell`: runs a command. Its outputs are the `key=value` lines it writes to the
//! file named by `$PHASED_OUTPUT`.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::Outputs;
use super::spec::action_spec;

#[derive(Debug, Deserialize, JsonSchema)]
#[expect(dead_code, reason = "the executor reads the parameters; validation only checks them")]
#[serde(deny_unknown_fields)]
pub struct ShellParams {
    /// A script for `sh -c`.
    pub run: Option<String>,
    /// A program and its arguments, run without a shell.
    pub command: Option<Vec<String>>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// The working directory.
    pub cwd: Option<String>,
}

impl ShellParams {
    pub fn check(&self) -> Result<(), String> {
        match (&self.run, &self.command) {
            (Some(_), Some(_)) => Err("give either `run` or `command`, not both".into()),
            (None, None) => Err("give `run` (a script for `sh -c`) or `command` (a program and its arguments)".into()),
            (None, Some(argv)) if argv.is_empty() => Err("`command` is empty: give a program and its arguments".into()),
            _ => Ok(()),
        }
    }
}

action_spec!(
    ShellParams,
    name: "shell",
    summary: "Run a command; `key=value` lines written to $PHASED_OUTPUT become outputs.",
    outputs: Outputs::Any,
    example: "run: echo \"version=$(cat VERSION)\" >> \"$PHASED_OUTPUT\"\ncwd: /tmp\nenv: {LANG: C}",
);
