//! Runs: start one in this process, queue one for the workers of `phased serve`,
//! resume or requeue one that stopped, cancel one. A run started here ends in an
//! [`Ended`]: its outcome, its notifications sent once, and its status as recorded.

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::{Db, Error};
use crate::actor::Actor;
use crate::engine::{self, Options, Outcome, ResumeInfo};
use crate::notify::{Guard, Sending, deliver_due};
use crate::plan::Plan;
use crate::secrets::Secrets;
use crate::store::{NotificationRow, RunRow, RunStatus, Store};

/// Who starts a run, and under which id (default: a new UUID).
pub(crate) struct Start {
    pub(crate) id: Option<String>,
    pub(crate) actor: Actor,
}

/// A run that ended in this process: how, the notifications it left undelivered, and
/// its status as recorded (read when asked, from the store the operation holds).
pub(crate) struct Ended {
    pub(crate) id: String,
    pub(crate) outcome: Outcome,
    /// Notifications tried once and not delivered (retried later by `phased notify`
    /// and `phased serve`).
    pub(crate) undelivered: Vec<NotificationRow>,
    store: Option<Box<dyn Store>>,
    detail: OnceCell<Option<Value>>,
}

impl Ended {
    /// The run as `phased status ID --format json` shows it; `None` when it cannot be
    /// read.
    pub(crate) fn detail(&self) -> Option<&Value> {
        self.detail
            .get_or_init(|| {
                let store = self.store.as_ref()?;
                crate::read::view::run_json(store.as_ref(), &self.id).ok().flatten()
            })
            .as_ref()
    }

    /// The error the run recorded, if any.
    pub(crate) fn error(&self) -> Option<&str> {
        self.detail()?["error"].as_str()
    }
}

/// After a run: with `notify`, its notifications (and any left due by an earlier
/// process) are sent, one quick attempt each: a command never waits on a receiver
/// that is down.
async fn ended(db: &Db, id: String, outcome: Outcome, notify: Option<&Guard>) -> Ended {
    let mut store = db.open().ok();
    let mut undelivered = Vec::new();
    if let Some(guard) = notify {
        crate::crash::point("run ended: its notifications recorded, not sent yet");
        if let Some(store) = store.as_mut() {
            let secrets = Secrets::from_env();
            let pending = async {
                deliver_due(store.as_mut(), &secrets, guard, Some(&id), Sending::QUICK).await?;
                deliver_due(store.as_mut(), &secrets, guard, None, Sending::QUICK).await?;
                store.notifications(&id)
            };
            if let Ok(rows) = pending.await {
                undelivered = rows.into_iter().filter(|n| n.status != "delivered").collect();
            }
        }
    }
    Ended { id, outcome, undelivered, store, detail: OnceCell::new() }
}

/// Starts a run of `plan` with resolved `inputs` in this process and runs it to its
/// end (waiting first while its target is busy, as its concurrency policy says).
pub(crate) async fn start(
    db: &Db,
    (plan, inputs): (Arc<Plan>, Map<String, Value>),
    who: Start,
    options: Options<'_>,
    notify: Option<&Guard>,
) -> Result<Ended, Error> {
    let store = db.open()?;
    let (id, outcome) = engine::start(store, plan, inputs, (who.id, &who.actor), options).await?;
    Ok(ended(db, id, outcome, notify).await)
}

/// Records a run of `plan` `queued` for the workers of `phased serve`; its id.
pub(crate) fn queue(
    store: &mut dyn Store,
    plan: &Plan,
    inputs: Map<String, Value>,
    who: Start,
) -> Result<String, Error> {
    Ok(engine::enqueue(store, plan, inputs, (who.id, &who.actor))?)
}

/// Resumes run `id` in this process (see [`engine::resume`]): `from` reruns that node
/// and what follows it; `reload` goes on with that plan instead of the run's snapshot
/// ([`pipeline_on_disk`]); `before_run` hears what was found before anything runs.
pub(crate) async fn resume(
    db: &Db,
    (id, from): (&str, Option<&str>),
    reload: Option<Arc<Plan>>,
    options: Options<'_>,
    before_run: impl FnOnce(&ResumeInfo),
    notify: Option<&Guard>,
) -> Result<Ended, Error> {
    let store = db.open()?;
    let outcome = engine::resume(store, id, from, reload, options, before_run).await?;
    Ok(ended(db, id.to_string(), outcome, notify).await)
}

/// Hands run `id` to the workers of `phased serve` (see [`engine::requeue`]).
pub(crate) fn requeue(store: &mut dyn Store, id: &str, from: Option<&str>) -> Result<(), Error> {
    Ok(engine::requeue(store, id, from)?)
}

/// The interrupted runs, oldest first, once the runs of holders that died are marked
/// interrupted: what `resume --all` and a starting server resume.
pub(crate) fn interrupted(store: &mut dyn Store) -> Result<Vec<String>, Error> {
    engine::lease::reap(store, engine::now_ms())?;
    Ok(store.runs()?.into_iter().rev().filter(|r| r.status == RunStatus::Interrupted).map(|r| r.id).collect())
}

/// What asking to cancel a run did.
pub(crate) enum Cancel {
    /// It had ended already (succeeded, failed or cancelled): nothing changed.
    Ended(RunRow),
    /// Cancelled at once (it was queued, or its holder is gone), or asked of the
    /// process that runs it (it stops at its next heartbeat): the run as it is now.
    Asked(RunRow),
}

/// Cancels run `id`: at once when nothing runs it, else by asking its holder.
pub(crate) fn cancel(store: &mut dyn Store, id: &str) -> Result<Cancel, Error> {
    use RunStatus::{Cancelled, Failed, Succeeded};
    match store.run(id)? {
        Some(row) if matches!(row.status, Succeeded | Failed | Cancelled) => return Ok(Cancel::Ended(row)),
        Some(_) => {}
        None => return Err(Error::NoRun(id.to_string())),
    }
    let now = engine::now_ms();
    let row = store
        .request_cancel(id, &|r| engine::lease::holder_alive(r, now))?
        .ok_or_else(|| Error::NoRun(id.to_string()))?;
    // It ended meanwhile (not by this cancel).
    Ok(if matches!(row.status, Succeeded | Failed) { Cancel::Ended(row) } else { Cancel::Asked(row) })
}

/// Waits up to `wait` for run `id` to stop running (its holder saw the cancel); the
/// run once it has, `None` when it still runs.
pub(crate) fn wait_stopped(store: &dyn Store, id: &str, wait: Duration) -> Result<Option<RunRow>, Error> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        match store.run(id)? {
            Some(row) if row.status != RunStatus::Running => return Ok(Some(row)),
            _ => {}
        }
    }
    Ok(None)
}

/// The pipeline of run `id` as it is on disk now: the file it started from, else its
/// deployment type in the pipelines folder or built in (what `--reload` takes).
pub(crate) fn pipeline_on_disk(
    store: &dyn Store,
    id: &str,
    pipelines: &super::Pipelines,
) -> Result<super::Loaded, Error> {
    let row = store.run(id)?.ok_or_else(|| Error::NoRun(id.to_string()))?;
    let (_, _, files) = store.snapshot(row.snapshot_id)?;
    let name = name_on_disk(&row, &files);
    pipelines.load(&name).map_err(|error| Error::Reload { id: id.to_string(), name, error: Box::new(error) })
}

/// What `--reload` loads for a run: the file it started from if it is still there,
/// else its deployment type by name.
fn name_on_disk(row: &RunRow, files: &Value) -> String {
    let root = files[engine::snapshot::ROOT]["path"].as_str().unwrap_or_default();
    if std::path::Path::new(root).is_file() { root.to_string() } else { row.pipeline.clone() }
}

/// Whether the pipeline `--reload` would take for run `row` (its files and its
/// sub-pipelines') differs from the snapshot the run runs; `None` when that cannot be
/// told (the snapshot is unreadable, or the pipeline is gone or does not compile now).
pub(crate) fn changed_since_started(store: &dyn Store, row: &RunRow, pipelines: &super::Pipelines) -> Option<bool> {
    let (_, hash, files) = store.snapshot(row.snapshot_id).ok()?;
    let now = pipelines.load_quietly(&name_on_disk(row, &files))?;
    Some(engine::snapshot::Snapshot::of(&now).hash != hash)
}

/// Sends run `id`'s notifications patiently (each retried after its backoff for up to a
/// minute; what is left is sent by the next phased process); those not delivered
/// after. `None` when the database cannot be opened.
pub(crate) async fn notify_patiently(db: &Db, guard: &Guard, id: &str) -> Option<Result<Vec<NotificationRow>, Error>> {
    use crate::notify::{MOST_ATTEMPTS, deliver};
    let mut store = db.open().ok()?;
    let secrets = Secrets::from_env();
    let wait = Duration::from_secs(60);
    let sent = deliver(store.as_mut(), &secrets, guard, Some(id), wait, MOST_ATTEMPTS, Sending::PATIENT).await;
    let rows = sent.and_then(|_| store.notifications(id)).map_err(Error::from);
    Some(rows.map(|rows| rows.into_iter().filter(|n| n.status != "delivered").collect()))
}
