//! Releases and rollback (DESIGN.md section 11). A release is a succeeded run of a
//! target. A rollback is a run of the pipeline's `rollback:` pipeline, given the
//! release's inputs and the release itself; it is a succeeded run of the target too,
//! and what it made live is the release it restored.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::engine::snapshot::Snapshot;
pub use crate::engine::{live_release, rollback_of};
use crate::plan::Plan;
use crate::store::{RunRow, RunStatus, Store, StoreError};

/// One succeeded run of a target, newest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Release {
    pub id: String,
    pub pipeline: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// What it deployed: `release` (a folder), `image`, `commit`, when recorded.
    pub deployed: Value,
    /// For a rollback: the release it made live again.
    pub rollback_of: Option<String>,
    /// Whether what it deployed is what is live now.
    pub live: bool,
}

fn duration_ms(run: &RunRow) -> Option<u64> {
    let start = humantime::parse_rfc3339(&run.created_at).ok()?;
    let end = humantime::parse_rfc3339(run.finished_at.as_deref()?).ok()?;
    end.duration_since(start).ok().map(|d| d.as_millis() as u64)
}

/// What a run recorded it deployed: `release` (a folder), `image`, `commit` (from its
/// metadata, else a node's `commit` output); empty when it recorded none.
pub fn deployed(store: &dyn Store, run: &RunRow) -> Result<Value, StoreError> {
    let meta = &run.metadata;
    let mut out = Map::new();
    if let Some(release) = meta.get("release").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        out.insert("release".into(), json!(release));
    }
    if let Some(image) = meta.get("imageTag").or_else(|| meta.get("image")).and_then(Value::as_str) {
        out.insert("image".into(), json!(image));
    }
    let commit = match meta.get("commit").and_then(Value::as_str) {
        Some(commit) => Some(commit.to_string()),
        None => store
            .nodes(&run.id)?
            .iter()
            .find_map(|n| n.outputs.as_ref()?.get("commit")?.as_str().filter(|c| !c.is_empty()).map(str::to_string)),
    };
    if let Some(commit) = commit {
        out.insert("commit".into(), json!(commit));
    }
    Ok(Value::Object(out))
}

/// The succeeded runs of `target`, newest first, with which one is live: the newest
/// run's release (for a rollback, the release it restored; the rollback run itself is
/// not live: one release is).
pub fn releases(store: &dyn Store, target: &str) -> Result<Vec<Release>, StoreError> {
    let runs: Vec<RunRow> = store
        .runs()?
        .into_iter()
        .filter(|r| r.target.as_deref() == Some(target) && r.status == RunStatus::Succeeded)
        .collect();
    // Newest by when they finished: a rollback finishes after the release it restores.
    let mut runs = runs;
    runs.sort_by(|a, b| b.finished_at.cmp(&a.finished_at).then_with(|| b.created_at.cmp(&a.created_at)));
    let live = runs.first().map(|newest| rollback_of(newest).unwrap_or_else(|| newest.id.clone()));
    let mut out = Vec::with_capacity(runs.len());
    for run in &runs {
        let rollback_of = rollback_of(run);
        let is_live = rollback_of.is_none() && live.as_deref() == Some(run.id.as_str());
        out.push(Release {
            id: run.id.clone(),
            pipeline: run.pipeline.clone(),
            finished_at: run.finished_at.clone(),
            duration_ms: duration_ms(run),
            deployed: deployed(store, run)?,
            rollback_of,
            live: is_live,
        });
    }
    Ok(out)
}

/// Why a rollback cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("target `{0}` has no release (no succeeded run)")]
    NoRelease(String),
    #[error("run `{run}` is not a release of target `{target}` (a succeeded run of it)")]
    NotARelease { run: String, target: String },
    #[error("target `{0}` has no release before the live one to go back to")]
    NothingBefore(String),
    #[error("release `{0}` is the live one already")]
    AlreadyLive(String),
    #[error("pipeline `{pipeline}` of release `{run}` declares no `rollback:` pipeline")]
    NoRollbackPipeline { run: String, pipeline: String },
    #[error("the pipeline snapshot of release `{0}` does not compile with this phased")]
    Snapshot(String),
    #[error("the folder of release `{run}` is gone: `{path}` (removed by retention, `keep`, or by hand)")]
    Gone { run: String, path: String },
    #[error("the image of release `{run}` is gone: `{image}` (removed by retention, `keep`, or by hand)")]
    ImageGone { run: String, image: String },
    #[error("{0}")]
    Engine(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RollbackRun {
    /// The image the release runs, with the engine it runs on, when it is a container.
    pub fn image(&self) -> Option<(String, Option<String>)> {
        let release = self.inputs.get("release")?;
        let image = release["deployed"]["image"].as_str()?.to_string();
        let host = release["inputs"]["docker_host"].as_str().filter(|h| !h.is_empty()).map(str::to_string);
        Some((image, host))
    }
}

/// Refuses a rollback to an image the engine no longer has (removed by retention or by
/// hand), before anything starts.
pub async fn check_image(run: &RollbackRun) -> Result<(), RollbackError> {
    let Some((image, host)) = run.image() else { return Ok(()) };
    match crate::action::docker::has_image(host.as_deref(), &image).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(RollbackError::ImageGone { run: run.release.clone(), image }),
        Err(e) => Err(RollbackError::Engine(e)),
    }
}

/// What `phased rollback` starts: the rollback pipeline and its inputs.
pub struct RollbackRun {
    pub release: String,
    pub plan: Arc<Plan>,
    pub inputs: Map<String, Value>,
}

/// Chooses the release to make live (`to`, else the one before the live one) and builds
/// the rollback run: the release's pipeline names its rollback pipeline, which gets the
/// release's inputs it declares and `release`. Refuses a release whose folder is gone.
pub fn prepare(store: &dyn Store, target: &str, to: Option<&str>) -> Result<RollbackRun, RollbackError> {
    let all = releases(store, target)?;
    let newest = all.first().ok_or_else(|| RollbackError::NoRelease(target.into()))?;
    let live_id = newest.rollback_of.clone().unwrap_or_else(|| newest.id.clone());
    let chosen = match to {
        Some(to) => {
            let found = all
                .iter()
                .find(|r| r.id == to)
                .ok_or_else(|| RollbackError::NotARelease { run: to.into(), target: target.into() })?;
            found.rollback_of.clone().unwrap_or_else(|| found.id.clone())
        }
        None => {
            // The release made live before the live one: releases (not rollbacks) older
            // than it, newest first.
            let position = all.iter().position(|r| r.id == live_id);
            let before = all.iter().skip(position.map_or(0, |p| p + 1)).find(|r| r.rollback_of.is_none());
            before.map(|r| r.id.clone()).ok_or_else(|| RollbackError::NothingBefore(target.into()))?
        }
    };
    if chosen == live_id {
        return Err(RollbackError::AlreadyLive(chosen));
    }
    let run =
        store.run(&chosen)?.ok_or_else(|| RollbackError::NotARelease { run: chosen.clone(), target: target.into() })?;
    let (_, _, files) = store.snapshot(run.snapshot_id)?;
    let release_plan = Snapshot::from_json(&files).compile().map_err(|_| RollbackError::Snapshot(chosen.clone()))?;
    let plan = release_plan
        .rollback()
        .cloned()
        .ok_or_else(|| RollbackError::NoRollbackPipeline { run: chosen.clone(), pipeline: run.pipeline.clone() })?;
    let deployed = deployed(store, &run)?;
    if let Some(path) = deployed.get("release").and_then(Value::as_str)
        && !std::path::Path::new(path).is_dir()
    {
        return Err(RollbackError::Gone { run: chosen, path: path.into() });
    }
    let outputs: Map<String, Value> =
        store.nodes(&chosen)?.into_iter().filter_map(|n| Some((n.node, n.outputs?))).collect();
    let release = json!({
        "id": run.id, "pipeline": run.pipeline, "inputs": run.inputs, "metadata": run.metadata,
        "outputs": outputs, "deployed": deployed,
    });
    let mut inputs = Map::new();
    for name in plan.inputs.keys() {
        if name == "release" {
            inputs.insert(name.clone(), release.clone());
        } else if let Some(value) = run.inputs.get(name).filter(|v| !v.is_null()) {
            inputs.insert(name.clone(), value.clone());
        }
    }
    Ok(RollbackRun { release: chosen, plan, inputs })
}

/// Per release of `list` (as [`releases`] gives it): `None` when a rollback to it can
/// start, else why not, as [`prepare`] would say (the live one, a rollback run, a
/// pipeline without `rollback:`, a release folder that is gone). The image of a
/// container release is not looked at here (that asks its engine): [`check_image`]
/// refuses it when the rollback is asked for. One compile per pipeline snapshot.
pub fn rollback_refusals(store: &dyn Store, list: &[Release]) -> Result<Vec<Option<String>>, StoreError> {
    let mut declares: std::collections::HashMap<i64, Option<bool>> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for release in list {
        if let Some(of) = &release.rollback_of {
            out.push(Some(format!("run `{}` is a rollback to release `{of}`, not a release", release.id)));
            continue;
        }
        if release.live {
            out.push(Some(RollbackError::AlreadyLive(release.id.clone()).to_string()));
            continue;
        }
        let Some(run) = store.run(&release.id)? else {
            out.push(Some(format!("run `{}` is gone", release.id)));
            continue;
        };
        let declared = match declares.get(&run.snapshot_id) {
            Some(known) => *known,
            None => {
                let (_, _, files) = store.snapshot(run.snapshot_id)?;
                let known = Snapshot::from_json(&files).compile().ok().map(|plan| plan.rollback().is_some());
                declares.insert(run.snapshot_id, known);
                known
            }
        };
        let refusal = match declared {
            None => Some(RollbackError::Snapshot(release.id.clone())),
            Some(false) => {
                Some(RollbackError::NoRollbackPipeline { run: release.id.clone(), pipeline: release.pipeline.clone() })
            }
            Some(true) => release
                .deployed
                .get("release")
                .and_then(Value::as_str)
                .filter(|path| !std::path::Path::new(path).is_dir())
                .map(|path| RollbackError::Gone { run: release.id.clone(), path: path.into() }),
        };
        out.push(refusal.map(|e| e.to_string()));
    }
    Ok(out)
}
