//! `sleep`: waits for a duration, reporting progress as time passes.

use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::spec::action_spec;
use super::{ActionCtx, ActionFuture, ActionOutputs, Outputs};
use crate::duration::Duration;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SleepParams {
    /// How long to wait, e.g. `500ms` or `2s`.
    pub duration: Duration,
}

impl SleepParams {
    pub(super) fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

fn run(ctx: ActionCtx, params: SleepParams) -> ActionFuture {
    Box::pin(async move {
        let total = params.duration.0;
        let tick = StdDuration::from_millis(100).min(total.max(StdDuration::from_millis(1)));
        let start = tokio::time::Instant::now();
        loop {
            let elapsed = start.elapsed();
            if elapsed >= total {
                break;
            }
            tokio::time::sleep(tick.min(total - elapsed)).await;
            ctx.progress.report(start.elapsed().as_secs_f64() / total.as_secs_f64());
        }
        Ok(ActionOutputs::new())
    })
}

action_spec!(SleepParams, name: "sleep", summary: "Wait for a duration.", outputs: Outputs::Fixed(&[]), example: "duration: 500ms", run: run);
