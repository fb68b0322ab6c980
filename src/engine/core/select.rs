//! What `resume --from NODE` forgets: NODE, everything that depends on it, and, for a
//! node inside a sub-pipeline, the enclosing nodes and what depends on them.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::model::{NodePath, NodeRow, PathSegment};
use crate::plan::walk::{self, Inside, Instance};
use crate::plan::{NodeKind, Plan};

/// Every qualified node id of a plan, sub-pipelines included (all alternatives).
pub(crate) fn all_node_ids(plan: &Plan) -> Vec<String> {
    let mut ids = Vec::new();
    all_under(plan, &NodePath::root(), &mut ids);
    ids
}

fn all_under(plan: &Plan, at: &NodePath, ids: &mut Vec<String>) {
    for node in &plan.nodes {
        let path = at.join(&node.id);
        if let NodeKind::Pipeline(sub) = &node.kind {
            for child in sub.plans() {
                all_under(child, &path, ids);
            }
        }
        ids.push(path.to_string());
    }
}

/// For `resume --from NODE`: the checkpoints to forget (exact ids, and prefixes of
/// sub-pipelines to forget whole): NODE, everything that depends on it, and, when NODE
/// is inside a sub-pipeline, the enclosing nodes and what depends on them.
pub(crate) fn rerun_set(plan: &Plan, node: &str) -> Option<(HashSet<String>, Vec<String>)> {
    let target = NodePath::parse(node)?;
    let mut nodes = HashSet::new();
    let mut prefixes = Vec::new();
    if !reset_in(plan, &NodePath::root(), target.segments(), &mut nodes, &mut prefixes) {
        return None;
    }
    Some((nodes, prefixes))
}

/// Forgets `target` (the segments of its path below `at`, the node whose plan `plan`
/// is) and what depends on it here.
fn reset_in(
    plan: &Plan,
    at: &NodePath,
    target: &[PathSegment],
    nodes: &mut HashSet<String>,
    prefixes: &mut Vec<String>,
) -> bool {
    let Some((PathSegment::Node(head), rest)) = target.split_first() else { return false };
    let node = at.join(head);
    // An item of a `foreach` (`deploy[b]`, or inside it `deploy[b].run`): the item
    // runs again, and so do its node and what comes after.
    if let Some((PathSegment::Item(key), inside)) = rest.split_first() {
        let Some(index) = plan.nodes.iter().position(|n| n.id == *head && n.foreach.is_some()) else { return false };
        let item = node.item(key);
        if inside.is_empty() {
            prefixes.push(item.inside_prefix());
        } else {
            let NodeKind::Pipeline(sub) = &plan.nodes[index].kind else { return false };
            if !sub.plans().iter().any(|child| reset_in(child, &item, inside, nodes, prefixes)) {
                return false;
            }
        }
        nodes.insert(item.to_string());
        return reset_in(plan, at, &target[..1], nodes, prefixes);
    }
    let Some(index) = plan.nodes.iter().position(|n| n.id == *head) else { return false };
    if !rest.is_empty() {
        let NodeKind::Pipeline(sub) = &plan.nodes[index].kind else { return false };
        if !sub.plans().iter().any(|child| reset_in(child, &node, rest, nodes, prefixes)) {
            return false;
        }
        // The enclosing node runs again (its finished children are kept) ...
        nodes.insert(node.to_string());
    }
    // ... and so does everything after it here.
    let mut queue = vec![index];
    let mut seen = HashSet::new();
    while let Some(i) = queue.pop() {
        if !seen.insert(i) {
            continue;
        }
        let id = at.join(&plan.nodes[i].id);
        if i != index || rest.is_empty() {
            if plan.nodes[i].foreach.is_some()
                && !(i == index && nodes.iter().any(|n| n.starts_with(&id.items_prefix())))
            {
                // Every item, unless one item was asked for.
                prefixes.push(id.items_prefix());
            } else if matches!(plan.nodes[i].kind, NodeKind::Pipeline(_)) && plan.nodes[i].foreach.is_none() {
                prefixes.push(id.inside_prefix());
            }
            nodes.insert(id.to_string());
        }
        for (j, other) in plan.nodes.iter().enumerate() {
            if other.needs.contains(&i) {
                queue.push(j);
            }
        }
    }
    true
}

/// What a run recorded of its nodes' choices, read from their checkpoints: the
/// alternative a `select` sub-pipeline node took (its `$selected` output) and the items
/// a `foreach` node fanned out to (`$items`; a run recorded before Phased kept them has
/// only its `items` output, whose keys are the items: read as well).
#[derive(Default)]
pub(crate) struct Recorded<'a> {
    outputs: HashMap<&'a str, &'a Value>,
}

impl<'a> Recorded<'a> {
    pub(crate) fn of(nodes: impl IntoIterator<Item = &'a NodeRow>) -> Recorded<'a> {
        let outputs = nodes.into_iter().filter_map(|n| Some((n.node.as_str(), n.outputs.as_ref()?))).collect();
        Recorded { outputs }
    }

    /// The alternative the `select` node at `node` took, once it started.
    pub(crate) fn alternative(&self, node: &NodePath) -> Option<&'a str> {
        self.outputs.get(node.to_string().as_str())?.get("$selected")?.as_str()
    }

    /// The items the `foreach` node at `node` fanned out to, once it started.
    pub(crate) fn items(&self, node: &NodePath) -> Option<Vec<String>> {
        let outputs = self.outputs.get(node.to_string().as_str())?;
        match (outputs.get("$items"), outputs.get("items")) {
            (Some(Value::Array(keys)), _) => Some(keys.iter().filter_map(|k| k.as_str().map(str::to_string)).collect()),
            (_, Some(Value::Object(items))) => Some(items.keys().cloned().collect()),
            _ => None,
        }
    }

    /// What a run has inside the node `at`, as it recorded it: the items of a
    /// `foreach`, the nodes of a fixed sub-pipeline or of the alternative a `select`
    /// took; nothing inside a node that has not started yet.
    pub(crate) fn inside(&self, at: &Instance<'_>) -> Inside {
        if at.node.foreach.is_some() {
            return self.items(at.path).map_or(Inside::Nothing, Inside::Items);
        }
        Inside::pipeline(at.node, || self.alternative(at.path))
    }
}

/// The qualified ids of the nodes a run runs, in plan order, each sub-pipeline's nodes
/// after it: of its fixed pipeline, or of the alternative the run recorded (one not
/// chosen yet contributes none), and the items a `foreach` recorded.
pub(crate) fn planned_ids(plan: &Plan, recorded: &Recorded<'_>) -> Vec<String> {
    let mut ids = Vec::new();
    walk::each(plan, |at| {
        ids.push(at.path.to_string());
        recorded.inside(at)
    });
    ids
}
