//! What a run looks like from outside: the JSON of `phased status ID --format json`,
//! of the API's `/api/v1/runs/{id}`, and the row of a run in a list.

use std::time::SystemTime;

use serde_json::{Value, json};

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
        "supersededBy": row.superseded_by,
    })
}

/// One run with its nodes and history, as JSON.
pub fn run_json(store: &dyn Store, id: &str) -> Result<Option<Value>, StoreError> {
    let Some(row) = store.run(id)? else { return Ok(None) };
    let mut out = row_json(&row);
    out["inputs"] = row.inputs.clone();
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
    out["history"] = store
        .history(id)?
        .iter()
        .map(|h| json!({"phase": h.phase, "progress": h.progress, "metadata": h.metadata, "node": h.node, "at": h.at}))
        .collect();
    Ok(Some(out))
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

fn duration_ms(start: Option<&str>, end: Option<&str>) -> Option<u64> {
    let (start, end) = (parse_time(start?)?, parse_time(end?)?);
    end.duration_since(start).ok().map(|d| d.as_millis() as u64)
}
