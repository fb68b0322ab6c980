//! `rollback`: a target's earlier release made live again, as a new run of the
//! release's `rollback:` pipeline (DESIGN.md section 11), started in this process
//! ([`start`]) or queued for the workers ([`queue`]). Both check the same way first.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::runs::{Ended, Start};
use super::{Db, Error};
use crate::actor::Actor;
use crate::engine::Options;
use crate::notify::Guard;
use crate::plan::Plan;
use crate::read::releases::{check_image, prepare};
use crate::store::Store;

/// A rollback checked: the release it makes live, its pipeline and resolved inputs.
struct Checked {
    release: String,
    plan: Arc<Plan>,
    inputs: Map<String, Value>,
}

/// Chooses the release (`to`, else the one before the live one) and checks that the
/// rollback can start: its pipeline, its folder or image still there, its inputs.
async fn check(store: &dyn Store, target: &str, to: Option<&str>) -> Result<Checked, Error> {
    let refused = |error| Error::Rollback { target: target.to_string(), error };
    let run = prepare(store, target, to).map_err(refused)?;
    check_image(&run).await.map_err(refused)?;
    let inputs = super::pipelines::resolve(&run.plan, super::Given::Values(&run.inputs)).map_err(|e| match e {
        Error::Inputs { problems, .. } => Error::RollbackInputs { release: run.release.clone(), problems },
        other => other,
    })?;
    Ok(Checked { release: run.release, plan: run.plan, inputs })
}

/// Rolls `target` back in this process; `before_run` hears the release first.
pub(crate) async fn start(
    db: &Db,
    (target, to, id): (&str, Option<&str>, Option<String>),
    by: Actor,
    options: Options<'_>,
    before_run: impl FnOnce(&str),
    notify: Option<&Guard>,
) -> Result<Ended, Error> {
    let checked = {
        let store = db.open()?;
        check(store.as_ref(), target, to).await?
    };
    before_run(&checked.release);
    let actor = Actor::Rollback { of: checked.release, by: Box::new(by) };
    super::runs::start(db, (checked.plan, checked.inputs), Start { id, actor }, options, notify).await
}

/// Queues a rollback of `target` for the workers (from a blocking thread: the image is
/// asked of its engine on the runtime's); the run's id and the release.
pub(crate) fn queue(
    store: &mut dyn Store,
    target: &str,
    to: Option<&str>,
    by: Actor,
) -> Result<(String, String), Error> {
    let checked = super::block_on(check(store, target, to))?;
    let actor = Actor::Rollback { of: checked.release.clone(), by: Box::new(by) };
    let id = crate::engine::enqueue(store, &checked.plan, checked.inputs, (None, &actor)).map_err(Error::NotQueued)?;
    Ok((id, checked.release))
}
