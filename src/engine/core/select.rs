//! What `resume --from NODE` forgets: NODE, everything that depends on it, and, for a
//! node inside a sub-pipeline, the enclosing nodes and what depends on them.

use std::collections::HashSet;

use crate::plan::{NodeKind, Plan, SubPipeline};

/// Every qualified node id of a plan, sub-pipelines included (all alternatives).
pub(crate) fn all_node_ids(plan: &Plan, prefix: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for node in &plan.nodes {
        let id = format!("{prefix}{}", node.id);
        if let NodeKind::Pipeline(sub) = &node.kind {
            let children = sub.plans();
            for child in children {
                ids.extend(all_node_ids(child, &format!("{id}.")));
            }
        }
        ids.push(id);
    }
    ids
}

/// For `resume --from NODE`: the checkpoints to forget (exact ids, and prefixes of
/// sub-pipelines to forget whole): NODE, everything that depends on it, and, when NODE
/// is inside a sub-pipeline, the enclosing nodes and what depends on them.
pub(crate) fn rerun_set(plan: &Plan, node: &str) -> Option<(HashSet<String>, Vec<String>)> {
    let mut nodes = HashSet::new();
    let mut prefixes = Vec::new();
    if !reset_in(plan, "", node, &mut nodes, &mut prefixes) {
        return None;
    }
    Some((nodes, prefixes))
}

fn reset_in(plan: &Plan, prefix: &str, target: &str, nodes: &mut HashSet<String>, prefixes: &mut Vec<String>) -> bool {
    let local = target.strip_prefix(prefix).unwrap_or(target);
    let (head, rest) = match local.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (local, None),
    };
    // An item of a `foreach` (`deploy[b]`, or inside it `deploy[b].run`): the item
    // runs again, and so do its node and what comes after.
    if let Some((base, _)) = head.split_once('[')
        && head.ends_with(']')
    {
        let Some(index) = plan.nodes.iter().position(|n| n.id == base && n.foreach.is_some()) else { return false };
        let item = format!("{prefix}{head}");
        if rest.is_some() {
            let NodeKind::Pipeline(sub) = &plan.nodes[index].kind else { return false };
            let inner = format!("{item}.");
            if !sub.plans().iter().any(|child| reset_in(child, &inner, target, nodes, prefixes)) {
                return false;
            }
        } else {
            prefixes.push(format!("{item}."));
        }
        nodes.insert(item);
        return reset_in(plan, prefix, &format!("{prefix}{base}"), nodes, prefixes);
    }
    let Some(index) = plan.nodes.iter().position(|n| n.id == head) else { return false };
    if let Some(_rest) = rest {
        let NodeKind::Pipeline(sub) = &plan.nodes[index].kind else { return false };
        let children = sub.plans();
        let inner_prefix = format!("{prefix}{head}.");
        if !children.iter().any(|child| reset_in(child, &inner_prefix, target, nodes, prefixes)) {
            return false;
        }
        // The enclosing node runs again (its finished children are kept) ...
        nodes.insert(format!("{prefix}{head}"));
    }
    // ... and so does everything after it here.
    let mut queue = vec![index];
    let mut seen = HashSet::new();
    while let Some(i) = queue.pop() {
        if !seen.insert(i) {
            continue;
        }
        let id = format!("{prefix}{}", plan.nodes[i].id);
        if i != index || rest.is_none() {
            if plan.nodes[i].foreach.is_some()
                && !(i == index && nodes.iter().any(|n| n.starts_with(&format!("{id}["))))
            {
                // Every item, unless one item was asked for.
                prefixes.push(format!("{id}["));
            } else if matches!(plan.nodes[i].kind, NodeKind::Pipeline(_)) && plan.nodes[i].foreach.is_none() {
                prefixes.push(format!("{id}."));
            }
            nodes.insert(id);
        }
        for (j, other) in plan.nodes.iter().enumerate() {
            if other.needs.contains(&i) {
                queue.push(j);
            }
        }
    }
    true
}

/// What a run recorded of a node's choice, for [`planned_ids`]: the alternative a
/// sub-pipeline node `id` selected, or, asked for `id[*]`, the names of the items of a
/// `foreach` node (one a line).
pub(crate) fn recorded_choice(nodes: &[crate::model::NodeRow], id: &str) -> Option<String> {
    let (id, items) = match id.strip_suffix("[*]") {
        Some(id) => (id, true),
        None => (id, false),
    };
    let outputs = nodes.iter().find(|n| n.node == id)?.outputs.as_ref()?;
    if !items {
        return outputs.get("$selected")?.as_str().map(str::to_string);
    }
    let keys: Vec<String> = match (outputs.get("$items"), outputs.get("items")) {
        (Some(serde_json::Value::Array(keys)), _) => {
            keys.iter().filter_map(|k| k.as_str().map(str::to_string)).collect()
        }
        (_, Some(serde_json::Value::Object(items))) => items.keys().cloned().collect(),
        _ => return None,
    };
    Some(keys.join("\n"))
}

/// The qualified ids of the nodes a run runs, in plan order, each sub-pipeline's nodes
/// after it: of its fixed pipeline, or of the alternative `selected` says it recorded
/// (one not chosen yet contributes none).
pub(crate) fn planned_ids(plan: &Plan, prefix: &str, selected: &dyn Fn(&str) -> Option<String>, out: &mut Vec<String>) {
    for &i in &plan.order {
        let node = &plan.nodes[i];
        let id = format!("{prefix}{}", node.id);
        out.push(id.clone());
        if node.foreach.is_some() {
            if let Some(keys) = selected(&format!("{id}[*]")) {
                let keys: Vec<String> = keys.lines().map(str::to_string).collect();
                planned_ids(&plan.fan_out(i, &keys), &id, selected, out);
            }
            continue;
        }
        if let NodeKind::Pipeline(sub) = &node.kind {
            let child = match sub {
                SubPipeline::Fixed { plan, .. } => Some(plan),
                SubPipeline::Select { .. } => selected(&id).and_then(|name| sub.by_name(&name)),
            };
            if let Some(child) = child {
                planned_ids(child, &format!("{id}."), selected, out);
            }
        }
    }
}
