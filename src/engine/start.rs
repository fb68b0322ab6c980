//! Starting a run: a new one for this process ([`start`]), one queued for the workers
//! of `phased serve` ([`enqueue`]) and one a worker claimed ([`run_claimed`]); the
//! wait for a busy target, and the drive to the run's end.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::core::{Core, CoreStart, DeploymentInfo};
use super::driver::{Driver, DriverStart};
use super::snapshot::Snapshot;
use super::{EngineError, Options, Outcome, eta, lease, now, now_ms};
use crate::event::Reporter;
use crate::plan::Plan;
use crate::store::{Admission, NewRun, NodeRow, RunFilter, RunRow, RunStatus, Store, StoreError, Write};

/// How often a queued run looks whether its target is free.
const QUEUE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

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
pub(super) fn live_release_of(store: &dyn Store, target: Option<&str>) -> Result<Option<String>, StoreError> {
    target.map_or(Ok(None), |target| live_release(store, target))
}
/// Waits while the run is `queued` behind another run of its target (saying so once
/// per run it waits for). `Some` when it ends without running: interrupted while
/// waiting (it stays resumable), or superseded or cancelled meanwhile. Each look
/// renews the lease: `held_since` becomes when the last one began.
pub(super) async fn wait_for_target(
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
pub(super) async fn drive(
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
pub const HISTORY_RUNS: usize = 60;

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

/// The run id of `target`'s live release (the newest succeeded run; for a rollback, the
/// release it restored), reading only the target's newest succeeded runs; `None` when
/// the target has none. The read side judges the releases (`phased releases`) the same way.
pub fn live_release(store: &dyn Store, target: &str) -> Result<Option<String>, StoreError> {
    let filter =
        RunFilter { status: Some(RunStatus::Succeeded.as_str().into()), pipeline: None, target: Some(target.into()) };
    // Newest by creation; the one that finished last among them is the live one.
    let newest = store
        .runs_page(&filter, None, 16)?
        .into_iter()
        .max_by(|a, b| a.finished_at.cmp(&b.finished_at).then_with(|| a.created_at.cmp(&b.created_at)));
    Ok(newest.map(|run| rollback_of(&run).unwrap_or(run.id)))
}

/// The release a rollback run restored (its `release` input), if it is one.
pub fn rollback_of(run: &RunRow) -> Option<String> {
    run.inputs.get("release")?.get("id")?.as_str().map(str::to_string)
}

/// Removes the `$PHASED_OUTPUT` files (`<node>.<attempt>.output`) left in a run's work
/// folder by steps that did not end normally.
pub(super) fn remove_output_files(work: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(work) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(|n| n.ends_with(".output")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
