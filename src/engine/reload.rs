//! `resume --reload`: a run goes on with its pipeline as it is on disk now. The new
//! plan is compared with the run's snapshot node by node (qualified ids; the compiled
//! definition as written, see [`crate::plan`]'s `definition`): the checkpoints of
//! unchanged nodes that finished are kept; changed and new nodes, and everything that
//! depends on them, run again. A node that will run and reads an output that a kept
//! node never recorded makes the reload refuse, naming both.

use std::collections::{BTreeSet, HashMap};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::core::{Recorded, rerun_set};
use crate::model::{NodePath, NodeRow, NodeStatus};
use crate::plan::Plan;
use crate::plan::walk::{self, Inside, Instance};

/// What reloading a run's pipeline does to it.
#[derive(Debug)]
pub struct Reload {
    /// The run's inputs resolved against the new pipeline (a new input gets its default).
    pub inputs: Map<String, Value>,
    /// Nodes defined differently than in the snapshot, or new (plan order).
    pub changed: Vec<String>,
    /// Nodes of the snapshot that the new pipeline no longer has.
    pub removed: Vec<String>,
    /// Checkpoints to forget: exact node ids, and prefixes of whole sub-pipelines.
    pub forget: BTreeSet<String>,
    pub forget_prefixes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the run's inputs do not fit the reloaded pipeline: {}", .0.join("; "))]
    Inputs(Vec<String>),
    #[error(
        "node `{node}` reads `{reads}`, which `{from}` did not record when it ran; \
         `{from}` is unchanged, so its checkpoint would be kept (add `--from {from}` to run it again)"
    )]
    Unusable { node: String, reads: String, from: String },
}

impl Reload {
    /// Whether the checkpoint of `node` is forgotten.
    pub fn forgets(&self, node: &str) -> bool {
        self.forget.contains(node) || self.forget_prefixes.iter().any(|p| node.starts_with(p.as_str()))
    }
}

/// Compares `new` with the plan a run started with (`old`), given its checkpoints and
/// its stored inputs; `from` (`resume --from NODE`) also reruns NODE and what follows.
pub fn compare(
    old: &Plan,
    new: &Plan,
    checkpoints: &HashMap<String, NodeRow>,
    stored_inputs: &Map<String, Value>,
    from: Option<&str>,
) -> Result<Reload, ReloadError> {
    let known: Map<String, Value> = stored_inputs
        .iter()
        .filter(|(k, _)| new.inputs.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let inputs = crate::compiler::inputs::resolve(&new.inputs, &known)
        .map_err(|problems| ReloadError::Inputs(problems.into_iter().map(|p| p.message).collect()))?;

    let recorded = Recorded::of(checkpoints.values());
    let (mut before, mut after) = (IndexMap::new(), IndexMap::new());
    definitions(old, &recorded, &mut before);
    definitions(new, &recorded, &mut after);

    let changed: Vec<String> =
        after.iter().filter(|(id, def)| before.get(*id) != Some(def)).map(|(id, _)| id.to_string()).collect();
    let removed: Vec<NodePath> = before.keys().filter(|id| !after.contains_key(*id)).cloned().collect();
    let mut reload = Reload {
        inputs,
        changed,
        removed: removed.iter().map(NodePath::to_string).collect(),
        forget: BTreeSet::new(),
        forget_prefixes: Vec::new(),
    };
    for id in reload.changed.iter().map(String::as_str).chain(from) {
        if let Some((nodes, prefixes)) = rerun_set(new, id) {
            reload.forget.extend(nodes);
            reload.forget_prefixes.extend(prefixes);
        }
    }
    for path in &removed {
        reload.forget.insert(path.to_string());
        reload.forget_prefixes.push(path.inside_prefix());
    }

    // What is kept must give every node that runs what it reads.
    let kept = |path: &NodePath| {
        let id = path.to_string();
        after.contains_key(path)
            && !reload.forgets(&id)
            && checkpoints.get(&id).is_some_and(|c| matches!(c.status, NodeStatus::Succeeded | NodeStatus::Skipped))
    };
    let mut readers = Vec::new();
    walk::each(new, |at| {
        if !kept(at.path) {
            readers.push((
                at.path.to_string(),
                at.parent.clone(),
                at.node.templates().into_iter().flat_map(|t| t.variables.clone()).collect(),
            ));
        }
        written_inside(&recorded, at)
    });
    let mut root_reads = Vec::new();
    for block in new.outputs.values() {
        let mut templates = Vec::new();
        block.templates(&mut templates);
        root_reads.extend(templates.into_iter().flat_map(|t| t.variables.clone()));
    }
    readers.push(("the pipeline's outputs".to_string(), NodePath::root(), root_reads));
    for (node, at, reads) in readers {
        for var in reads {
            let mut parts = var.split('.');
            let (Some("nodes"), Some(from), Some("outputs"), Some(name)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (local, path) = (from, at.join(from));
            if !kept(&path) {
                continue;
            }
            let from = path.to_string();
            let recorded =
                checkpoints.get(&from).and_then(|c| c.outputs.as_ref()).is_some_and(|o| o.get(name).is_some());
            let skipped = checkpoints.get(&from).is_some_and(|c| c.status == NodeStatus::Skipped);
            if !recorded && !skipped {
                return Err(ReloadError::Unusable { node, reads: format!("nodes.{local}.outputs.{name}"), from });
            }
        }
    }
    Ok(reload)
}

/// Each node's definition by qualified id, in plan order; a sub-pipeline's nodes
/// follow it (of the alternative it recorded, for a `select`).
fn definitions(plan: &Plan, recorded: &Recorded<'_>, out: &mut IndexMap<NodePath, Value>) {
    walk::each(plan, |at| {
        out.insert(at.path.clone(), at.node.definition(at.plan));
        written_inside(recorded, at)
    });
}

/// What a reload compares inside a node: the nodes of its sub-pipeline (of the
/// alternative the run recorded, for a `select`), as written: a `foreach` node's once,
/// under its own id, not one copy per item.
fn written_inside(recorded: &Recorded<'_>, at: &Instance<'_>) -> Inside {
    Inside::pipeline(at.node, || recorded.alternative(at.path))
}
