//! `noop`: does nothing and succeeds. Makes engine tests exact.

use schemars::JsonSchema;
use serde::Deserialize;

use super::spec::action_spec;
use super::{ActionCtx, ActionFuture, ActionOutputs, Outputs};

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NoopParams {}

impl NoopParams {
    pub(super) fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

fn run(_ctx: ActionCtx, _params: NoopParams) -> ActionFuture {
    Box::pin(async { Ok(ActionOutputs::new()) })
}

action_spec!(NoopParams, name: "noop", summary: "Do nothing and succeed.", outputs: Outputs::Fixed(&[]), example: "{}", run: run, effects: false);
