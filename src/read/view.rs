//! What a run looks like from outside: the JSON of `phased status ID --format json`,
//! of the API's `/api/v1/runs/{id}`, and the row of a run in a list.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::plan::walk::{Inside, Instance, Visit, walk};
use crate::plan::{NodeKind, SubPipeline};

use crate::store::{NodeStatus, RunRow, RunStatus, Store, StoreError};

/// A run as a row of a list.
pub fn row_json(row: &RunRow) -> Value {
    json!({
        "id": row.id,
        "pipeline": row.pipeline,
        "target": row.target,
        "status": row.status.as_str(),
        "phase": row.phase,
        "phase_progress": row.progress,
        "phase_metadata": row.metadata,
        "phase_updated_at": row.phase_updated_at,
        "attempt": row.attempt,
        "error": row.error,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
        "superseded_by": row.superseded_by,
        // The contract's older spelling (DESIGN.md, section 9), kept for the clients that read it.
        "supersededBy": row.superseded_by,
        "short_id": row.id.chars().take(8).collect::<String>(),
        "best_progress": row.best_progress,
        // The first node whose checkpoint failed; else what the FAILED metadata names.
        "failed_node": row.failed_node.as_deref().or_else(|| match row.status {
            RunStatus::Failed => row.metadata.get("failedNode").and_then(Value::as_str),
            _ => None,
        }),
        "actor": row.actor,
    })
}

/// One run with its nodes and history, as JSON, with `last_seq`: the newest of its
/// events when it was read.
pub fn run_json(store: &dyn Store, id: &str) -> Result<Option<Value>, StoreError> {
    // Read first: the run read after it is at least this new, so a client that applies
    // the events after `last_seq` to it misses nothing (it may see one twice).
    let last_seq = store.last_event_of(id)?;
    let Some(row) = store.run(id)? else { return Ok(None) };
    let mut out = row_json(&row);
    out["last_seq"] = json!(last_seq);
    out["inputs"] = row.inputs.clone();
    out["eta_seconds"] = json!(eta_now(store, &row)?);
    // A node recorded `running` in a run that no longer runs was stopped with it (a
    // cancel, a signal, a crash, another node failing): it runs again on resume.
    let live = row.status == RunStatus::Running;
    let checkpoints = store.nodes(id)?;
    let mut nodes: Vec<Value> = checkpoints
        .iter()
        .map(|n| {
            let status = if n.status == NodeStatus::Running && !live { "stopped" } else { n.status.as_str() };
            json!({
                "node": n.node, "status": status, "attempt": n.attempt, "outputs": n.outputs,
                "error": n.error, "started_at": n.started_at, "finished_at": n.finished_at,
                "duration_ms": duration_ms(n.started_at.as_deref(), n.finished_at.as_deref()),
            })
        })
        .collect();
    // The nodes that have not started yet, in plan order.
    for planned in super::planned_nodes(store, &row, &checkpoints) {
        if !checkpoints.iter().any(|n| n.node == planned) {
            nodes.push(json!({
                "node": planned, "status": "pending", "attempt": 0, "outputs": null, "error": null,
                "started_at": null, "finished_at": null, "duration_ms": null,
            }));
        }
    }
    out["nodes"] = Value::Array(nodes);
    out["notifications"] = store
        .notifications(id)?
        .iter()
        .map(|n| {
            json!({"outcome": n.outcome, "format": n.format, "status": n.status, "attempts": n.attempts,
                   "last_error": n.last_error, "created_at": n.created_at, "delivered_at": n.delivered_at})
        })
        .collect();
    out["history"] = store
        .history(id)?
        .iter()
        .map(|h| json!({"phase": h.phase, "progress": h.progress, "metadata": h.metadata, "node": h.node, "at": h.at}))
        .collect();
    super::summary::extend_run(store, &row, &mut out)?;
    Ok(Some(out))
}

/// What a running run has left now: its last event's `eta_seconds`, less the time
/// since; `None` for a run that is not running or has no history.
pub fn eta_now(store: &dyn Store, row: &RunRow) -> Result<Option<f64>, StoreError> {
    if row.status != RunStatus::Running {
        return Ok(None);
    }
    let last = store.last_event_of(&row.id)?;
    let Some(event) = store.events(Some(&row.id), last - 1, 1)?.into_iter().next() else { return Ok(None) };
    let (Some(eta), Some(at)) = (event["eta_seconds"].as_f64(), event["ts"].as_str().and_then(parse_time)) else {
        return Ok(None);
    };
    let since = SystemTime::now().duration_since(at).map_or(0.0, |d| d.as_secs_f64());
    Ok(Some(((eta - since).max(0.0) * 10.0).round() / 10.0))
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

fn duration_ms(start: Option<&str>, end: Option<&str>) -> Option<u64> {
    let (start, end) = (parse_time(start?)?, parse_time(end?)?);
    end.duration_since(start).ok().map(|d| d.as_millis() as u64)
}

/// The graph a run runs, for drawing: every node (qualified ids, in plan order) with
/// its phase, what it is (`uses` or the sub-pipeline's name), the sub-pipeline node
/// it belongs to, and the nodes it comes after. A sub-pipeline's first nodes come after
/// the sub-pipeline node; what needs a sub-pipeline node comes after its last nodes.
/// `None` when there is no such run; an empty list when its snapshot no longer
/// compiles.
pub fn graph_json(store: &dyn Store, id: &str) -> Result<Option<Value>, StoreError> {
    let Some(row) = store.run(id)? else { return Ok(None) };
    let checkpoints = store.nodes(id)?;
    let (_, _, files) = store.snapshot(row.snapshot_id)?;
    let Ok(plan) = crate::engine::snapshot::Snapshot::from_json(&files).compile() else {
        return Ok(Some(json!({"run": id, "nodes": []})));
    };
    let nodes = graph_nodes(&plan, &crate::engine::Recorded::of(&checkpoints));
    Ok(Some(json!({"run": id, "nodes": nodes})))
}

/// The nodes of [`graph_json`]: the instances of `plan` a run recorded.
fn graph_nodes(plan: &crate::plan::Plan, recorded: &crate::engine::Recorded<'_>) -> Vec<Value> {
    let mut graph = Graph { recorded, nodes: Vec::new(), plans: vec![GraphPlan::default()] };
    let Ok(()) = walk(plan, &mut graph);
    graph.nodes
}

/// The graph of a run, drawn as its instances are walked.
struct Graph<'r> {
    recorded: &'r crate::engine::Recorded<'r>,
    nodes: Vec<Value>,
    /// One per plan the walk is inside, the top one first.
    plans: Vec<GraphPlan>,
}

/// A plan the walk is inside.
#[derive(Default)]
struct GraphPlan {
    /// The node it is inside.
    parent: Option<String>,
    /// Per node of the plan (from its first node on): the ids that stand for it when
    /// something comes after it.
    ends: Vec<Vec<String>>,
    /// The nodes of the plan that another one needs.
    needed: HashSet<usize>,
}

impl Visit for Graph<'_> {
    type Error = Infallible;

    /// Adds the node; a sub-pipeline's first nodes come after it.
    fn enter(&mut self, at: &Instance<'_>) -> Result<Inside, Infallible> {
        let here = self.plans.last_mut().expect("the plan the walk is in");
        if here.ends.is_empty() {
            here.ends = vec![Vec::new(); at.plan.nodes.len()];
            here.needed = at.plan.nodes.iter().flat_map(|n| n.needs.iter().copied()).collect();
        }
        let node = at.node;
        let id = at.path.to_string();
        let mut after: Vec<String> = node.needs.iter().flat_map(|&n| here.ends[n].clone()).collect();
        if node.needs.is_empty()
            && let Some(parent) = &here.parent
        {
            after.push(parent.clone());
        }
        let uses = match &node.kind {
            NodeKind::Action(action) => action.name.to_string(),
            NodeKind::Pipeline(SubPipeline::Fixed { name, .. }) => name.clone(),
            NodeKind::Pipeline(SubPipeline::Select { .. }) => {
                self.recorded.alternative(at.path).unwrap_or("select").to_string()
            }
        };
        self.nodes.push(json!({"id": id, "phase": node.phase, "uses": uses, "parent": here.parent, "after": after}));
        here.ends[at.index] = vec![id.clone()];
        // The items of a `foreach` once it recorded them, or the sub-pipeline it runs.
        let inside = self.recorded.inside(at);
        if !matches!(inside, Inside::Nothing) {
            self.plans.push(GraphPlan { parent: Some(id), ..GraphPlan::default() });
        }
        Ok(inside)
    }

    /// What needs a node with nodes inside it comes after their last nodes (those
    /// nothing there needs), if it has any.
    fn leave(&mut self, at: &Instance<'_>) -> Result<(), Infallible> {
        if self.plans.len() > at.depth + 1 {
            let inner = self.plans.pop().expect("the plan inside");
            let last: Vec<String> = (0..inner.ends.len())
                .filter(|i| !inner.needed.contains(i))
                .flat_map(|i| inner.ends[i].clone())
                .collect();
            if !last.is_empty() {
                self.plans.last_mut().expect("the plan the walk is in").ends[at.index] = last;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Recorded;
    use crate::model::NodeRow;

    fn recorded(node: &str, outputs: Value) -> NodeRow {
        NodeRow {
            run: "r".into(),
            node: node.into(),
            status: NodeStatus::Running,
            attempt: 1,
            outputs: Some(outputs),
            error: None,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn the_graph_draws_each_item_with_the_alternative_it_took_and_what_follows_their_last_nodes() {
        let plan = crate::plan::walk::fixture::plan();
        let rows = [
            recorded("hosts", json!({"$items": ["a", "b"]})),
            recorded("hosts[a].source", json!({"$selected": "git"})),
            recorded("hosts[b].source", json!({"$selected": "upload"})),
        ];
        let nodes = graph_nodes(&plan, &Recorded::of(&rows));
        let drawn: Vec<String> = nodes
            .iter()
            .map(|n| {
                let after: Vec<&str> = n["after"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
                format!("{} {} in {} after {}", n["id"], n["uses"], n["parent"], after.join(","))
            })
            .collect();
        assert_eq!(
            drawn,
            [
                r#""hosts" "host" in null after "#,
                r#""hosts[a]" "host" in "hosts" after hosts"#,
                r#""hosts[a].source" "git" in "hosts[a]" after hosts[a]"#,
                r#""hosts[a].source.clone" "noop" in "hosts[a].source" after hosts[a].source"#,
                r#""hosts[a].check" "noop" in "hosts[a]" after hosts[a].source.clone"#,
                r#""hosts[b]" "host" in "hosts" after hosts"#,
                r#""hosts[b].source" "upload" in "hosts[b]" after hosts[b]"#,
                r#""hosts[b].source.unpack" "noop" in "hosts[b].source" after hosts[b].source"#,
                r#""hosts[b].source.verify" "noop" in "hosts[b].source" after hosts[b].source.unpack"#,
                r#""hosts[b].check" "noop" in "hosts[b]" after hosts[b].source.verify"#,
                r#""report" "noop" in null after hosts[a].check,hosts[b].check"#,
            ]
        );
    }
}
