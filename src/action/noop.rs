//! `noop`: does nothing and succeeds. Makes engine tests exact.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Outputs;
use super::spec::action_spec;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoopParams {}

impl NoopParams {
    pub fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

action_spec!(NoopParams, name: "noop", summary: "Do nothing and succeed.", outputs: Outputs::Fixed(&[]), example: "{}");
