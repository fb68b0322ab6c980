//! What a run's JSON (`status ID --format json`, the API) says beside its own fields, for a reader who asks "what did
//! it deploy, where did it fail, how far did it get, is it late, can I go back to it":
//! the release, image or commit it recorded (`deployed`), the node it failed at and the
//! progress it reached, the nodes it is running with what they usually take, and
//! whether a rollback to it can start (the server decides: the pipeline declares
//! `rollback:` and the release is still there).

use serde_json::{Value, json};

use super::releases::{self, Release};
use crate::store::{NodeStatus, RunRow, RunStatus, Store, StoreError};

/// The fields a run's row in the API's list gets besides [`super::view::row_json`]'s.
pub fn extend_row(store: &dyn Store, row: &RunRow, out: &mut Value) -> Result<(), StoreError> {
    out["deployed"] = releases::deployed(store, row)?;
    out["version"] = json!(version(&row.inputs));
    out["running_nodes"] = running_nodes(store, row)?;
    Ok(())
}

/// The inputs that say which version a run deploys, in the order looked at.
const VERSION_INPUTS: [&str; 6] = ["version", "tag", "ref", "commit", "branch", "image"];

/// The version a run was given, when one of its inputs (or its `source`'s) says it:
/// a short text for a list.
fn version(inputs: &Value) -> Option<String> {
    let text = |v: &Value| v.as_str().filter(|t| !t.is_empty()).map(str::to_string);
    let found = VERSION_INPUTS
        .iter()
        .find_map(|name| inputs.get(name).and_then(text))
        .or_else(|| VERSION_INPUTS.iter().find_map(|name| inputs.get("source")?.get(name).and_then(text)))?;
    Some(if found.chars().count() > 40 { format!("{}…", found.chars().take(39).collect::<String>()) } else { found })
}

/// The fields of one run ([`super::view::run_json`]) besides its own: those of its
/// row in a list, and `rollback`.
pub(crate) fn extend_run(store: &dyn Store, row: &RunRow, out: &mut Value) -> Result<(), StoreError> {
    extend_row(store, row, out)?;
    out["rollback"] = rollback_to(store, row)?;
    Ok(())
}

/// Whether a rollback to this run can start: `{available, target, release, live,
/// reason}` (`release` is this run; `live` the release live now, read for a succeeded
/// run only); null for a run without a target.
fn rollback_to(store: &dyn Store, row: &RunRow) -> Result<Value, StoreError> {
    let Some(target) = &row.target else { return Ok(Value::Null) };
    if row.status != RunStatus::Succeeded {
        // Not a release, whatever the others are: no need to read them (a run is read
        // again after each of its events while it runs).
        let reason = format!("run `{}` is not a release of target `{target}` (it did not succeed)", row.id);
        return Ok(json!({"available": false, "target": target, "release": row.id, "live": null, "reason": reason}));
    }
    let list = releases::releases(store, target)?;
    let live = list.iter().find(|r| r.live).map(|r| r.id.clone());
    let reason = match list.iter().find(|r| r.id == row.id) {
        Some(release) => releases::rollback_refusals(store, std::slice::from_ref(release))?.remove(0),
        None => Some(format!("run `{}` is not a release of target `{target}` (a succeeded run of it)", row.id)),
    };
    Ok(json!({
        "available": reason.is_none(), "target": target, "release": row.id, "live": live, "reason": reason,
    }))
}

/// A target's releases (as `phased releases TARGET --format json`), each with
/// `rollback: {available, reason}`.
pub fn releases_json(store: &dyn Store, target: &str) -> Result<Vec<Value>, StoreError> {
    let list: Vec<Release> = releases::releases(store, target)?;
    let refusals = releases::rollback_refusals(store, &list)?;
    list.iter()
        .zip(refusals)
        .map(|(release, reason)| {
            let mut out = serde_json::to_value(release).expect("JSON of plain data");
            out["rollback"] = json!({"available": reason.is_none(), "reason": reason});
            out["version"] = json!(store.run(&release.id)?.and_then(|run| version(&run.inputs)));
            Ok(out)
        })
        .collect()
}

/// The top-level nodes a running run is running, each with when it started and what
/// it usually takes (the median of its last successful runs, `usual_seconds`, null
/// without one) or is expected to take (`estimate_seconds`, the ETA's figure): a
/// client can then say "running 53 s, usually 7 s" rather than count down to zero.
/// Empty for a run that is not running.
pub fn running_nodes(store: &dyn Store, row: &RunRow) -> Result<Value, StoreError> {
    if row.status != RunStatus::Running {
        return Ok(json!([]));
    }
    let running: Vec<_> = store
        .nodes(&row.id)?
        .into_iter()
        .filter(|n| n.status == NodeStatus::Running && !n.node.contains('.') && !n.node.contains('['))
        .collect();
    if running.is_empty() {
        return Ok(json!([]));
    }
    let (_, _, files) = store.snapshot(row.snapshot_id)?;
    let plan = crate::engine::snapshot::Snapshot::from_json(&files).compile().ok();
    let history = match &plan {
        Some(plan) => store.node_durations(Some(&plan.name), crate::engine::HISTORY_RUNS)?,
        None => Vec::new(),
    };
    let figures = plan.as_ref().map(|plan| {
        let target = row.target.as_deref();
        let medians = crate::engine::eta::medians(plan, target, &history);
        let estimates = crate::engine::eta::estimates(plan, target, &history).unwrap_or_default();
        (plan, medians, estimates)
    });
    let out = running
        .iter()
        .map(|n| {
            let (usual, estimate) = figures
                .as_ref()
                .and_then(|(plan, medians, estimates)| {
                    let i = plan.nodes.iter().position(|p| p.id == n.node)?;
                    Some((medians[i], estimates.get(i).copied()))
                })
                .unwrap_or((None, None));
            json!({"node": n.node, "started_at": n.started_at, "usual_seconds": usual, "estimate_seconds": estimate})
        })
        .collect();
    Ok(Value::Array(out))
}
