//! `fail`: fails with a message. Makes failure and retry tests exact.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Outputs;
use super::spec::action_spec;

#[derive(Debug, Deserialize, JsonSchema)]
#[expect(dead_code, reason = "the executor reads the parameters; validation only checks them")]
#[serde(deny_unknown_fields)]
pub struct FailParams {
    /// The error message the node fails with.
    #[serde(default = "default_message")]
    pub message: String,
}

fn default_message() -> String {
    "failed on purpose".into()
}

impl FailParams {
    pub fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

action_spec!(FailParams, name: "fail", summary: "Fail with a message.", outputs: Outputs::Fixed(&[]), example: "message: the database is not reachable");
