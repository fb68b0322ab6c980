//! `docker.remove`: stops and removes one container by name. A container that is
//! already gone is fine, so the action is idempotent (it is the undo of `docker.run`).

use schemars::JsonSchema;
use serde::Deserialize;

use super::docker::Engine;
use super::spec::action_spec;
use super::{ActionCtx, ActionFuture, ActionOutputs, Outputs};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoveParams {
    /// The container's name or id.
    pub name: String,
    /// Seconds between SIGTERM and SIGKILL (default 10).
    #[serde(default = "default_grace")]
    pub grace: u16,
    /// The engine (default: `DOCKER_HOST`, else the local socket).
    pub docker_host: Option<String>,
}

fn default_grace() -> u16 {
    10
}

impl RemoveParams {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.name.is_empty() { Err("`name` is empty".into()) } else { Ok(()) }
    }
}

fn run(ctx: ActionCtx, params: RemoveParams) -> ActionFuture {
    Box::pin(async move {
        let engine = Engine::connect(params.docker_host.as_deref()).await?;
        let removed = engine.remove(&params.name, i32::from(params.grace)).await?;
        ctx.log.line(&if removed {
            format!("container {} stopped and removed", params.name)
        } else {
            format!("container {} was already gone", params.name)
        });
        let mut out = ActionOutputs::new();
        out.insert("removed".into(), removed.into());
        Ok(out)
    })
}

action_spec!(
    RemoveParams,
    name: "docker.remove",
    summary: "Stop and remove a container (already gone is fine).",
    outputs: Outputs::Fixed(&["removed"]),
    example: "name: web-3f2a9c1e\ngrace: 5",
    run: run,
);
