//! A git push's delivery to a trigger of `phased serve`: recorded once under each of
//! its keys, then queued as a run of the trigger's pipeline.

use serde_json::{Map, Value};

use super::runs::Start;
use super::{Error, Given, Pipelines};
use crate::actor::Actor;
use crate::store::Store;

/// A delivery recorded this long ago that queued no run (its server died before it
/// could) is taken again when the provider redelivers it.
const UNQUEUED_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// What became of a delivery.
pub(crate) enum Delivery {
    /// Its run, queued.
    Queued(String),
    /// Received before: the same signed body.
    SeenBody,
    /// Received before: the same delivery id.
    SeenId(String),
}

/// Records the delivery under each of its keys (the first is its body's), then queues
/// its run. A delivery seen before under any key queues nothing. One whose run could
/// not be queued is forgotten under every key, so that the provider's redelivery is
/// taken; why it was not is an [`Error::Trigger`].
pub(crate) fn deliver(
    store: &mut dyn Store,
    (trigger, actor): (&str, Actor),
    keys: &[String],
    (pipelines, pipeline): (&Pipelines, &str),
    inputs: &Map<String, Value>,
) -> Result<Delivery, Error> {
    let stale = humantime::format_rfc3339_millis(std::time::SystemTime::now() - UNQUEUED_RETRY).to_string();
    let now = crate::clock::now();
    for (i, key) in keys.iter().enumerate() {
        if !store.record_delivery(trigger, key, &now, &stale)? {
            for taken in &keys[..i] {
                store.forget_delivery(trigger, taken)?;
            }
            return Ok(if i == 0 { Delivery::SeenBody } else { Delivery::SeenId(key.clone()) });
        }
    }
    let queued = pipelines.load_named(pipeline).and_then(|loaded| {
        let inputs = super::pipelines::resolve(&loaded.plan, Given::Values(inputs))?;
        super::runs::queue(store, &loaded.plan, inputs, Start { id: None, actor })
    });
    match queued {
        Ok(run) => {
            for key in keys {
                store.delivery_run(trigger, key, &run)?;
            }
            Ok(Delivery::Queued(run))
        }
        // Nothing was queued: the provider's redelivery is taken.
        Err(e) => {
            for key in keys {
                store.forget_delivery(trigger, key)?;
            }
            Err(Error::Trigger(Box::new(e)))
        }
    }
}
