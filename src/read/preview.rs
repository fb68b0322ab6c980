//! What a run runs and what resuming it would do, without running anything: the
//! planned nodes (`status`, the API) and `phased plan --resume ID [--reload]`.

use std::collections::HashMap;

use crate::engine::snapshot::Snapshot;
use crate::engine::{EngineError, Recorded, finished, planned_ids, reload};
use crate::plan::Plan;
use crate::store::{NodeRow, Store};

/// Every node a run runs (qualified ids, in plan order), from the snapshot it started
/// with and the alternatives its sub-pipeline nodes recorded; empty when the snapshot
/// no longer compiles.
pub fn planned_nodes(store: &dyn Store, row: &crate::store::RunRow, nodes: &[NodeRow]) -> Vec<String> {
    let Ok((_, _, files)) = store.snapshot(row.snapshot_id) else { return Vec::new() };
    let Ok(plan) = Snapshot::from_json(&files).compile() else { return Vec::new() };
    planned_ids(&plan, &Recorded::of(nodes))
}

/// What resuming a run would do to each node, without doing it (`phased plan
/// --resume ID [--reload]`).
#[derive(Debug, serde::Serialize)]
pub struct ResumePreview {
    pub run: String,
    pub pipeline: String,
    pub status: &'static str,
    pub nodes: Vec<PreviewNode>,
    /// Nodes of the snapshot that the reloaded pipeline no longer has.
    pub removed: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct PreviewNode {
    pub node: String,
    /// `kept` (finished, its checkpoint is kept), `changed` (defined differently now,
    /// or new: runs), `rerun` (finished, but depends on a changed node: runs again),
    /// `runs` (did not finish).
    pub action: &'static str,
}

/// What [`resume`] would do with run `id`, with `reload` as the pipeline on disk.
pub fn preview(store: &dyn Store, id: &str, reload: Option<&Plan>) -> Result<ResumePreview, EngineError> {
    let row = store.run(id)?.ok_or_else(|| EngineError::NoRun(id.to_string()))?;
    let (_, _, files) = store.snapshot(row.snapshot_id)?;
    let old = Snapshot::from_json(&files)
        .compile()
        .map_err(|diagnostics| EngineError::Snapshot { run: id.to_string(), diagnostics })?;
    let checkpoints: HashMap<String, NodeRow> = store.nodes(id)?.into_iter().map(|n| (n.node.clone(), n)).collect();
    let inputs = row.inputs.as_object().cloned().unwrap_or_default();
    let change = match reload {
        Some(new) => Some(
            reload::compare(&old, new, &checkpoints, &inputs, None)
                .map_err(|error| EngineError::Reload { run: id.to_string(), error })?,
        ),
        None => None,
    };
    let plan = reload.unwrap_or(&old);
    let nodes = planned_ids(plan, &Recorded::of(checkpoints.values()))
        .into_iter()
        .map(|node| {
            let done = checkpoints.get(&node).is_some_and(finished);
            let action = match &change {
                Some(c) if c.changed.contains(&node) => "changed",
                Some(c) if done && c.forgets(&node) => "rerun",
                _ if done => "kept",
                _ => "runs",
            };
            PreviewNode { node, action }
        })
        .collect();
    Ok(ResumePreview {
        run: id.to_string(),
        pipeline: plan.name.clone(),
        status: row.status.as_str(),
        nodes,
        removed: change.map(|c| c.removed).unwrap_or_default(),
    })
}
