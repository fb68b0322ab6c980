//! `fail`: fails with a message. Makes failure and retry tests exact.

use schemars::JsonSchema;
use serde::Deserialize;

use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, Outputs};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FailParams {
    /// The error message the node fails with.
    #[serde(default = "default_message")]
    pub message: String,
}

fn default_message() -> String {
    "failed on purpose".into()
}

impl FailParams {
    pub(super) fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

fn run(_ctx: ActionCtx, params: FailParams) -> ActionFuture {
    Box::pin(async move { Err(ActionError::new(params.message)) })
}

action_spec!(FailParams, name: "fail", summary: "Fail with a message.", outputs: Outputs::Fixed(&[]), example: "message: the database is not reachable", run: run);
