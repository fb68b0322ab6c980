//! Running pipelines: start a run, resume one, and what they end in. The run itself is
//! the pure [`core`] state machine, fed and carried out by the [`driver`]; each change
//! becomes its writes and its event in [`record`]. This file prepares a run (the
//! snapshot, the run row, the lease, the checkpoints to restore).

mod core;
mod driver;
mod eta;
pub mod lease;
mod preview;
mod record;
pub mod releases;
pub mod reload;
pub mod snapshot;
pub mod stats;
pub mod summary;
pub mod view;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use self::core::DeploymentInfo;
use self::core::{Core, CoreStart, all_node_ids, rerun_set};
pub use crate::clock::{now, now_ms};
use crate::event::Reporter;
pub use driver::HEARTBEAT;
use driver::{Driver, DriverStart};
pub use preview::{PreviewNode, ResumePreview, planned_nodes, preview};
use snapshot::Snapshot;

use crate::diagnostic::Diagnostic;
use crate::plan::Plan;
use crate::secrets::Secrets;
use crate::store::{Admission, ClaimError, NewRun, NodeRow, NodeStatus, RunStatus, Store, StoreError, Write};
use reload::Reload;

/// How a run ended (for this process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Failed because the environment failed (an engine that cannot be reached), not
    /// the deployment: resumable once the environment is fixed (exit code 3).
    FailedEnvironment,
    /// Stopped by a signal; resumable.
    Interrupted,
    /// Stopped by `phased cancel`; resumable.
    Cancelled,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a run with id `{0}` already exists")]
    DuplicateId(String),
    #[error("invalid run id `{id}`: {why}")]
    InvalidId { id: String, why: String },
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("the pipeline snapshot of run `{run}` no longer compiles")]
    Snapshot { run: String, diagnostics: Vec<Diagnostic> },
    #[error("no node `{node}` in run `{run}`")]
    UnknownNode { run: String, node: String, help: Option<String> },
    #[error("cannot reload the pipeline of run `{run}`: {error}")]
    Reload { run: String, error: reload::ReloadError },
    #[error("no run `{0}`")]
    NoRun(String),
    #[error("{0}")]
    Target(String),
    #[error("target `{target}` is busy with run `{by}`, and the pipeline's concurrency policy is `reject`")]
    Rejected { target: String, by: String },
}

/// How often a queued run looks whether its target is free.
const QUEUE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// What every run needs, whether it starts or resumes.
pub struct Options<'r> {
    pub parallel: usize,
    pub secrets: Secrets,
    pub reporter: &'r mut dyn Reporter,
    /// Folder for node logs and scratch files (beside the database).
    pub data_dir: PathBuf,
    /// How the run is stopped from outside (`phased watch`, `phased serve`).
    pub stop: Option<Halt>,
}

/// How a run is stopped from outside, besides `phased cancel` and signals.
pub struct Halt {
    /// When true: start no new node, let the running ones finish, end as `status`.
    pub drain: tokio::sync::watch::Receiver<bool>,
    pub status: RunStatus,
    pub reason: String,
    /// When true: stop the running nodes now, as SIGTERM would (the run is interrupted).
    pub now: Option<tokio::sync::watch::Receiver<bool>>,
    /// The caller handles SIGINT and SIGTERM (a server): the run does not listen.
    pub ignore_signals: bool,
}

/// Checks the id, saves the snapshot and records a new run, its place in its target's
/// queue decided in the same transaction: held by `lease`, or queued for the workers.
fn new_run(
    store: &mut dyn Store,
    plan: &Plan,
    inputs: &Map<String, Value>,
    id: Option<String>,
    actor: &crate::actor::Actor,
    lease: &crate::store::Lease,
    for_workers: bool,
) -> Result<Recorded, EngineError> {
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Err(why) = crate::names::check_run_id(&id) {
        return Err(EngineError::InvalidId { id, why });
    }
    if store.run_exists(&id)? {
        return Err(EngineError::DuplicateId(id));
    }
    let target = plan.target(inputs).map_err(EngineError::Target)?;
    let snapshot = Snapshot::of(plan);
    let at = now();
    let snapshot_id = store.save_snapshot(&snapshot.hash, &plan.name, &snapshot.to_json(), &at)?;
    let at_ms = now_ms();
    let actor = actor.to_string();
    let admission = store.create_run(
        &NewRun {
            id: &id,
            pipeline: &plan.name,
            inputs: &Value::Object(inputs.clone()),
            snapshot_id,
            lease,
            at: &at,
            at_ms,
            target: target.as_ref().map(|(t, p)| (t.as_str(), *p)),
            for_workers,
            actor: &actor,
        },
        &|r| lease::holder_alive(r, at_ms),
    )?;
    Ok(Recorded { id, at, target, admission })
}

/// A run just recorded: its id, when, its target, and its place in the target's queue.
struct Recorded {
    id: String,
    at: String,
    target: Option<(String, crate::model::Policy)>,
    admission: Admission,
}

/// Starts a new run of `plan` with resolved inputs, recording who started it.
pub async fn start(
    mut store: Box<dyn Store>,
    plan: Arc<Plan>,
    inputs: Map<String, Value>,
    (id, actor): (Option<String>, &crate::actor::Actor),
    options: Options<'_>,
) -> Result<(String, Outcome), EngineError> {
    let lease = lease::this_process();
    let mut held_since = crate::process::monotonic_ms();
    let Recorded { id, at, target, admission } = new_run(store.as_mut(), &plan, &inputs, id, actor, &lease, false)?;
    let waited = wait_for_target(store.as_mut(), &id, target.as_ref(), admission, options.reporter, &mut held_since);
    if let Some(outcome) = waited.await? {
        return Ok((id, outcome));
    }
    tracing::info!(run = %id, pipeline = %plan.name, "Run started.");
    let live = live_release_of(store.as_ref(), target.as_ref().map(|(t, _)| t.as_str()))?;
    let deployment = DeploymentInfo::new(&id, &plan.name, 1, &at, &options.data_dir).with_live_release(live);
    let core = CoreStart {
        plan,
        deployment,
        inputs,
        secrets: options.secrets.clone(),
        checkpoints: HashMap::new(),
        progress: 0,
        phase: crate::phase::QUEUED.to_string(),
        parallel: options.parallel,
    };
    let outcome = drive(core, target.is_some(), store, (lease, held_since), options, false).await?;
    tracing::info!(run = %id, ?outcome, "Run ended.");
    Ok((id, outcome))
}

/// Records a new run of `plan` as `queued` for the workers of `phased serve` (they take
/// it with [`crate::store::Store::claim_next`], then [`run_claimed`]). Policy `reject`
/// refuses it while its target is busy; `supersede` cancels what waits and asks the
/// running run of its target to stop at its next node boundary.
pub fn enqueue(
    store: &mut dyn Store,
    plan: &Plan,
    inputs: Map<String, Value>,
    (id, actor): (Option<String>, &crate::actor::Actor),
) -> Result<String, EngineError> {
    let lease = lease::this_process();
    let Recorded { id, target, admission, .. } = new_run(store, plan, &inputs, id, actor, &lease, true)?;
    match admission {
        Admission::Rejected { by } => {
            Err(EngineError::Rejected { target: target.map(|(t, _)| t).unwrap_or_default(), by })
        }
        _ => Ok(id),
    }
}

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

/// Runs a run a worker claimed (status `running`, held by `lease`) from its snapshot.
/// `held_since`: when the claim began, on [`crate::process::monotonic_ms`]'s clock
/// (the run's steps are stopped if the lease goes unrenewed for [`lease::fence_ms`]).
pub async fn run_claimed(
    store: Box<dyn Store>,
    row: crate::store::RunRow,
    lease: crate::store::Lease,
    held_since: i64,
    options: Options<'_>,
) -> Result<Outcome, EngineError> {
    let (_, _, files) = store.snapshot(row.snapshot_id)?;
    let plan = Snapshot::from_json(&files)
        .compile()
        .map_err(|diagnostics| EngineError::Snapshot { run: row.id.clone(), diagnostics })?;
    let checkpoints: HashMap<String, NodeRow> =
        store.nodes(&row.id)?.into_iter().map(|n| (n.node.clone(), n)).collect();
    let resumed = row.attempt > 1;
    remove_output_files(&options.data_dir.join("work").join(&row.id));
    let inputs = row.inputs.as_object().cloned().unwrap_or_default();
    let supersedable = row.target.is_some();
    tracing::info!(run = %row.id, pipeline = %row.pipeline, "Run taken by a worker.");
    let live = live_release_of(store.as_ref(), row.target.as_deref())?;
    let core = CoreStart {
        deployment: DeploymentInfo::new(&row.id, &row.pipeline, row.attempt, &row.created_at, &options.data_dir)
            .with_live_release(live),
        plan,
        inputs,
        secrets: options.secrets.clone(),
        checkpoints,
        progress: row.progress.max(row.best_progress),
        phase: row.phase.clone(),
        parallel: options.parallel,
    };
    Ok(drive(core, supersedable, store, (lease, held_since), options, resumed).await?)
}

/// `deployment.live_release`: the live release of the run's target, read once the run
/// holds its target (nothing else of the target runs meanwhile).
fn live_release_of(store: &dyn Store, target: Option<&str>) -> Result<Option<String>, StoreError> {
    target.map_or(Ok(None), |target| releases::live_release(store, target))
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

/// Waits while the run is `queued` behind another run of its target (saying so once
/// per run it waits for). `Some` when it ends without running: interrupted while
/// waiting (it stays resumable), or superseded or cancelled meanwhile. Each look
/// renews the lease: `held_since` becomes when the last one began.
async fn wait_for_target(
    store: &mut dyn Store,
    id: &str,
    target: Option<&(String, crate::model::Policy)>,
    mut admission: Admission,
    reporter: &mut dyn Reporter,
    held_since: &mut i64,
) -> Result<Option<Outcome>, EngineError> {
    use tokio::signal::unix::{SignalKind, signal};
    let name = target.map(|(t, _)| t.as_str()).unwrap_or_default();
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut told = String::new();
    loop {
        match admission {
            Admission::Admitted => return Ok(None),
            Admission::Rejected { by } => return Err(EngineError::Rejected { target: name.to_string(), by }),
            Admission::Gone { status } => {
                tracing::info!(run = %id, ?status, "No longer queued.");
                return Ok(Some(if status == RunStatus::Interrupted {
                    Outcome::Interrupted
                } else {
                    Outcome::Cancelled
                }));
            }
            Admission::Queued { behind } => {
                if behind != told {
                    reporter.note(&format!("run {id} is queued: target `{name}` is busy with run {behind}"));
                    told = behind;
                }
            }
        }
        let signal = tokio::select! {
            _ = tokio::time::sleep(QUEUE_POLL) => None,
            _ = interrupt.recv() => Some("SIGINT"),
            _ = terminate.recv() => Some("SIGTERM"),
        };
        if let Some(signal) = signal {
            let reason = format!("interrupted by {signal} while queued");
            store.write(&[Write::Status {
                run: id.to_string(),
                status: RunStatus::Interrupted,
                error: Some(reason),
                finished: None,
            }])?;
            return Ok(Some(Outcome::Interrupted));
        }
        *held_since = crate::process::monotonic_ms();
        let at = now_ms();
        admission = store.admit(id, at, &|r| lease::holder_alive(r, at))?;
    }
}

/// Runs the run to its end; `held`: its lease, and when (monotonic ms) the write that
/// took or last renewed it began.
async fn drive(
    start: CoreStart,
    supersedable: bool,
    store: Box<dyn Store>,
    held: (crate::store::Lease, i64),
    options: Options<'_>,
    resumed: bool,
) -> Result<Outcome, StoreError> {
    let work_dir = start.deployment.work_dir.clone();
    private_folders(&options.data_dir, &work_dir);
    let masker = start.secrets.masker();
    let eta = estimate(store.as_ref(), &start);
    let plan = Arc::clone(&start.plan);
    let driver = Driver::new(DriverStart {
        core: Core::new(start),
        store,
        lease: held.0,
        held_since: held.1,
        reporter: options.reporter,
        masker,
        data_dir: options.data_dir,
        work_dir,
        halt: options.stop,
        supersedable,
        eta,
        plan,
    });
    driver.run(resumed).await
}

/// The run's work folder made for phased's user only (0700), before any step writes
/// there; the node logs and work folders of older versions (0755) lose group and other
/// access, and so does the data folder when it is phased's own `.phased` (another
/// name may be a folder of the user's, the current one or `/tmp`). A folder that cannot
/// be made is said by the step that needs it.
fn private_folders(data_dir: &std::path::Path, work_dir: &std::path::Path) {
    if data_dir.file_name().is_some_and(|name| name == ".phased") {
        crate::paths::make_private(data_dir);
    }
    for folder in ["logs", "work"] {
        crate::paths::make_private(&data_dir.join(folder));
    }
    let _ = crate::paths::private_dir_all(work_dir);
}

/// The newest runs of a pipeline the ETA reads: enough for the last 20 of a target
/// among a few, and few enough that a run of many nodes starts quickly.
pub(crate) const HISTORY_RUNS: usize = 60;

/// The ETA of a run starting now, from the history of its pipeline (none without one,
/// or when the history cannot be read: an estimate never stops a run).
fn estimate(store: &dyn Store, start: &CoreStart) -> Option<eta::Eta> {
    let plan = &start.plan;
    let target = store.run(&start.deployment.id).ok().flatten().and_then(|r| r.target);
    let history = store.node_durations(Some(&plan.name), HISTORY_RUNS).ok()?;
    let estimates = eta::estimates(plan, target.as_deref(), &history)?;
    let checkpoints: Vec<NodeRow> = start.checkpoints.values().cloned().collect();
    Some(eta::Eta::new(plan, estimates, &checkpoints))
}

fn finished(node: &NodeRow) -> bool {
    matches!(node.status, NodeStatus::Succeeded | NodeStatus::Skipped)
}

/// Removes the `$PHASED_OUTPUT` files (`<node>.<attempt>.output`) left in a run's work
/// folder by steps that did not end normally.
fn remove_output_files(work: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(work) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(|n| n.ends_with(".output")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
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
