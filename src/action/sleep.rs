//! `sleep`: waits for a duration, reporting progress as time passes.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Outputs;
use super::spec::action_spec;
use crate::duration::Duration;

#[derive(Debug, Deserialize, JsonSchema)]
#[expect(dead_code, reason = "the executor reads the parameters; validation only checks them")]
#[serde(deny_unknown_fields)]
pub struct SleepParams {
    /// How long to wait, e.g. `500ms` or `2s`.
    pub duration: Duration,
}

impl SleepParams {
    pub fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

action_spec!(SleepParams, name: "sleep", summary: "Wait for a duration.", outputs: Outputs::Fixed(&[]), example: "duration: 500ms");
