//! `docker.retire`: once a service's new container serves, stops and removes every
//! other container of the service (by the `phased.service` label), after a short
//! drain so that requests the proxy already sent them can finish. This is what leaves
//! exactly one container per service, including ones a crashed run left behind.

use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::docker::Engine;
use super::spec::action_spec;
use super::{ActionCtx, ActionFuture, ActionOutputs, Outputs};
use crate::duration::Duration;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetireParams {
    /// The service (the `phased.service` label).
    pub service: String,
    /// The container to keep (name).
    pub keep: String,
    /// How long the old containers keep running before they are stopped (default `1s`).
    pub drain: Option<Duration>,
    /// Seconds between SIGTERM and SIGKILL (default 10).
    #[serde(default = "default_grace")]
    pub grace: u16,
    /// Also remove the retired containers' images when nothing else uses them (default true).
    #[serde(default = "default_true")]
    pub remove_images: bool,
    /// Keep the service's newest images, this many (the releases a rollback may go back
    /// to); older ones go when no container uses them. 0 (the default): remove the
    /// retired containers' images only.
    #[serde(default)]
    pub keep_images: u32,
    /// The engine (default: `DOCKER_HOST`, else the local socket).
    pub docker_host: Option<String>,
}

fn default_grace() -> u16 {
    10
}

fn default_true() -> bool {
    true
}

impl RetireParams {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.service.is_empty() || self.keep.is_empty() {
            return Err("`service` and `keep` must not be empty".into());
        }
        Ok(())
    }
}

fn run(ctx: ActionCtx, params: RetireParams) -> ActionFuture {
    Box::pin(async move {
        let engine = Engine::connect(params.docker_host.as_deref()).await?;
        let others: Vec<_> =
            engine.containers_of(&params.service).await?.into_iter().filter(|c| c.name != params.keep).collect();
        if others.iter().any(|c| c.state == "running") {
            let drain = params.drain.map_or(StdDuration::from_secs(1), |d| d.0);
            tokio::time::sleep(drain).await;
        }
        let mut removed = Vec::new();
        for (i, container) in others.iter().enumerate() {
            if engine.remove(&container.id, i32::from(params.grace)).await? {
                crate::crash::point("docker.retire: an old container removed");
                ctx.log.line(&format!("retired container {} ({})", container.name, container.state));
                removed.push(container.name.clone());
            }
            ctx.progress.report((i + 1) as f64 / others.len() as f64);
        }
        if removed.is_empty() {
            ctx.log.line(&format!("no other container of {} to retire", params.service));
        }
        let mut images_removed = Vec::new();
        if params.remove_images {
            let kept_image = engine.docker.inspect_container(&params.keep, None).await.ok().and_then(|c| c.image);
            let mut images: Vec<String> = if params.keep_images > 0 {
                // The service's images (`<service>:<run>`), newest first, beyond the kept ones.
                let filters =
                    std::collections::HashMap::from([("reference".to_string(), vec![params.service.clone()])]);
                let options =
                    bollard::query_parameters::ListImagesOptions { filters: Some(filters), ..Default::default() };
                let mut all = engine.docker.list_images(Some(options)).await.unwrap_or_default();
                all.sort_by_key(|i| std::cmp::Reverse(i.created));
                all.into_iter()
                    .skip(params.keep_images as usize)
                    .flat_map(|i| i.repo_tags)
                    .filter(|t| t.split(':').next() == Some(params.service.as_str()))
                    .collect()
            } else {
                others.iter().map(|c| c.image.clone()).filter(|i| !i.is_empty()).collect()
            };
            images.sort_unstable();
            images.dedup();
            for image in images.iter().map(String::as_str) {
                let id = engine.docker.inspect_image(image).await.ok().and_then(|i| i.id);
                if id.is_none() || id == kept_image {
                    continue;
                }
                // The engine refuses (409) while another container uses the image: it stays.
                if engine
                    .docker
                    .remove_image(image, None::<bollard::query_parameters::RemoveImageOptions>, None)
                    .await
                    .is_ok()
                {
                    ctx.log.line(&format!("removed image {image}"));
                    images_removed.push(image.to_string());
                }
            }
        }
        let mut out = ActionOutputs::new();
        out.insert("removed".into(), removed.into());
        out.insert("images_removed".into(), images_removed.into());
        Ok(out)
    })
}

action_spec!(
    RetireParams,
    name: "docker.retire",
    summary: "Stop and remove every other container of a service (and their unused images), after a short drain.",
    outputs: Outputs::Fixed(&["removed", "images_removed"]),
    example: "service: web\nkeep: web-3f2a9c1e\ndrain: 2s",
    run: run,
);
