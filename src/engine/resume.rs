//! Going on with a run that stopped: [`resume`] it in this process, or [`requeue`] it
//! for the workers of `phased serve`; `--from NODE` and `--reload` decide what reruns.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::core::{CoreStart, DeploymentInfo, all_node_ids, rerun_set};
use super::reload::{self, Reload};
use super::snapshot::Snapshot;
use super::start::{drive, live_release_of, remove_output_files, wait_for_target};
use super::{EngineError, Options, Outcome, lease, now_ms};
use crate::plan::Plan;
use crate::store::{Admission, NodeRow, NodeStatus, RunStatus, Store, StoreError, Write};

/// Hands an interrupted or failed run to the workers of `phased serve`: claims it
/// (only one process can; a live holder refuses), kills what an earlier attempt left
/// running, forgets `from` and what follows it, and records it `queued`, held by
/// nobody, for [`crate::store::Store::claim_next`].
pub fn requeue(store: &mut dyn Store, id: &str, from: Option<&str>) -> Result<(), EngineError> {
    let lease = lease::this_process();
    let now = now_ms();
    let (_, before) = store.claim(id, &lease, now, &|r| lease::holder_alive(r, now))?;
    let key = crate::process::run_key(id, store.path());
    let killed = crate::process::kill_leftovers(&key, std::time::Duration::from_secs(5));
    if killed > 0 {
        tracing::warn!(run = %id, killed, "Killed processes left running by an earlier attempt.");
    }
    if let Some(node) = from {
        let (_, _, files) = store.snapshot(before.snapshot_id)?;
        let plan = match Snapshot::from_json(&files).compile() {
            Ok(plan) => plan,
            Err(diagnostics) => {
                release(store, &before)?;
                return Err(EngineError::Snapshot { run: id.to_string(), diagnostics });
            }
        };
        forget_from(store, &plan, &before, node)?;
    }
    let queued = Write::Status { run: id.to_string(), status: RunStatus::Queued, error: None, finished: None };
    store.write(&[queued])?;
    Ok(())
}

/// What `resume` found before it ran.
pub struct ResumeInfo {
    pub id: String,
    /// Processes of an earlier attempt that were still running and were killed.
    pub killed: usize,
    pub plan: Arc<Plan>,
    /// With `--reload`: what changed, and which checkpoints were forgotten.
    pub reload: Option<Reload>,
    /// The nodes that had finished before and run again (qualified ids).
    pub rerun: Vec<String>,
}

/// Claims run `id` (atomically: only one process can), kills what an earlier attempt
/// left running, restores its checkpoints and runs it from the nodes that did not
/// finish; `from` reruns that node and everything after it. With `reload`, the run goes
/// on with that plan (the pipeline as it is now) instead of its snapshot: see [`reload`].
pub async fn resume(
    mut store: Box<dyn Store>,
    id: &str,
    from: Option<&str>,
    reload: Option<Arc<Plan>>,
    options: Options<'_>,
    before_run: impl FnOnce(&ResumeInfo),
) -> Result<Outcome, EngineError> {
    let lease = lease::this_process();
    let mut held_since = crate::process::monotonic_ms();
    let now = now_ms();
    let (row, before) = store.claim(id, &lease, now, &|r| lease::holder_alive(r, now))?;
    tracing::info!(run = %id, attempt = row.attempt, "Run claimed for resuming.");
    let key = crate::process::run_key(id, store.path());
    let killed = crate::process::kill_leftovers(&key, std::time::Duration::from_secs(5));
    // What a step killed with phased wrote to `$PHASED_OUTPUT` (maybe a secret) goes.
    remove_output_files(&options.data_dir.join("work").join(id));
    if killed > 0 {
        tracing::warn!(run = %id, killed, "Killed processes left running by an earlier attempt.");
    }
    let (_, _, files) = store.snapshot(row.snapshot_id)?;
    let snapshot = Snapshot::from_json(&files);
    let mut plan = match snapshot.compile() {
        Ok(plan) => plan,
        Err(diagnostics) => {
            release(store.as_mut(), &before)?;
            return Err(EngineError::Snapshot { run: id.to_string(), diagnostics });
        }
    };
    let mut checkpoints: HashMap<String, NodeRow> = store.nodes(id)?.into_iter().map(|n| (n.node.clone(), n)).collect();
    let finished_before: Vec<String> = checkpoints.values().filter(|c| finished(c)).map(|c| c.node.clone()).collect();
    let mut inputs = row.inputs.as_object().cloned().unwrap_or_default();
    let mut reloaded = None;
    if let Some(new) = reload {
        let change = match reload::compare(&plan, &new, &checkpoints, &inputs, from) {
            Ok(change) => change,
            Err(error) => {
                release(store.as_mut(), &before)?;
                return Err(EngineError::Reload { run: id.to_string(), error });
            }
        };
        let snapshot = Snapshot::of(&new);
        let snapshot_id = store.save_snapshot(&snapshot.hash, &new.name, &snapshot.to_json(), &crate::clock::now())?;
        // One transaction: the run has the new snapshot and has forgotten what it
        // reruns, or neither.
        store.write(&[
            Write::Reloaded { run: id.to_string(), snapshot_id, inputs: Value::Object(change.inputs.clone()) },
            Write::ResetNodes {
                run: id.to_string(),
                nodes: change.forget.iter().cloned().collect(),
                prefixes: change.forget_prefixes.clone(),
            },
        ])?;
        checkpoints.retain(|name, _| !change.forgets(name));
        tracing::info!(run = %id, changed = ?change.changed, "Pipeline reloaded.");
        inputs = change.inputs.clone();
        plan = new;
        reloaded = Some(change);
    }
    if let Some(node) = from {
        let (nodes, prefixes) = forget_from(store.as_mut(), &plan, &before, node)?;
        checkpoints.retain(|name, _| !nodes.contains(name) && !prefixes.iter().any(|p| name.starts_with(p.as_str())));
    }
    let rerun = finished_before.into_iter().filter(|n| !checkpoints.contains_key(n)).collect();
    // A resumed run waits for its target like a new one (it never supersedes others).
    let target = match plan.target(&inputs) {
        Ok(target) => target,
        Err(e) => {
            release(store.as_mut(), &before)?;
            return Err(EngineError::Target(e));
        }
    };
    if let Some((name, policy)) = &target {
        store.write(&[Write::Queue { run: id.to_string(), target: name.clone() }])?;
        held_since = crate::process::monotonic_ms();
        let at = now_ms();
        let admission = store.admit(id, at, &|r| lease::holder_alive(r, at))?;
        if let (crate::model::Policy::Reject, Admission::Queued { behind }) = (policy, &admission) {
            release(store.as_mut(), &before)?;
            return Err(EngineError::Rejected { target: name.clone(), by: behind.clone() });
        }
        let waited = wait_for_target(store.as_mut(), id, target.as_ref(), admission, options.reporter, &mut held_since);
        if let Some(outcome) = waited.await? {
            return Ok(outcome);
        }
    }
    before_run(&ResumeInfo { id: id.to_string(), killed, plan: Arc::clone(&plan), reload: reloaded, rerun });
    let live = live_release_of(store.as_ref(), row.target.as_deref())?;
    let deployment =
        DeploymentInfo::new(id, &row.pipeline, row.attempt, &row.created_at, &options.data_dir).with_live_release(live);
    let core = CoreStart {
        plan,
        deployment,
        inputs,
        secrets: options.secrets.clone(),
        checkpoints,
        progress: if before.status == RunStatus::Failed {
            row.best_progress
        } else {
            row.progress.max(row.best_progress)
        },
        phase: row.phase.clone(),
        parallel: options.parallel,
    };
    let outcome = drive(core, target.is_some(), store, (lease, held_since), options, true).await?;
    tracing::info!(run = %id, ?outcome, "Resumed run ended.");
    Ok(outcome)
}
pub(crate) fn finished(node: &NodeRow) -> bool {
    matches!(node.status, NodeStatus::Succeeded | NodeStatus::Skipped)
}

/// `--from NODE`: forgets the checkpoints of NODE and of what follows it (returned:
/// exact ids and sub-pipeline prefixes); an unknown NODE gives the claimed run back as
/// it was and says which nodes there are.
fn forget_from(
    store: &mut dyn Store,
    plan: &Plan,
    before: &crate::store::RunRow,
    node: &str,
) -> Result<(std::collections::HashSet<String>, Vec<String>), EngineError> {
    let Some((nodes, prefixes)) = rerun_set(plan, node) else {
        release(store, before)?;
        let all = all_node_ids(plan);
        return Err(EngineError::UnknownNode {
            run: before.id.clone(),
            node: node.to_string(),
            help: crate::suggest::hint(node, all.iter().map(String::as_str)),
        });
    };
    let reset = Write::ResetNodes {
        run: before.id.clone(),
        nodes: nodes.iter().cloned().collect(),
        prefixes: prefixes.clone(),
    };
    store.write(&[reset])?;
    Ok((nodes, prefixes))
}

/// Gives a claimed run back as it was (when resuming stopped before running anything):
/// a failed run stays failed with its error; a run that was running (its holder died)
/// is interrupted.
fn release(store: &mut dyn Store, before: &crate::store::RunRow) -> Result<(), StoreError> {
    let status = if before.status == RunStatus::Running { RunStatus::Interrupted } else { before.status };
    let status = Write::Status {
        run: before.id.clone(),
        status,
        error: before.error.clone(),
        finished: before.finished_at.clone(),
    };
    store.write(&[status]).map(drop)
}
