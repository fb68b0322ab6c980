//! `POST /hooks/{trigger}`: a git push, as [`super::triggers`] reads it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, App, triggers};
use crate::store::Store;

/// A delivery recorded this long ago that queued no run (its server died before it
/// could) is taken again when the provider redelivers it.
const UNQUEUED_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// `POST /hooks/{trigger}`: a git push. The signature is checked first, in constant
/// time (401 and nothing queued when it is bad or missing); a delivery seen before is
/// not run again; a push to another repository or branch is acknowledged (202) with
/// nothing queued; else the push's commit is deployed.
pub(super) async fn hook(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let Some(trigger) = app.triggers.get(&name).cloned() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such trigger"));
    };
    let secret = crate::secrets::Secrets::from_env().values().get(&trigger.secret.to_lowercase()).cloned();
    let signed = secret.as_deref().is_some_and(|s| triggers::signed(trigger.provider, s, &headers, &body));
    if !signed {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad-signature",
            "the delivery's signature is missing or wrong",
        ));
    }
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", format!("the payload: {e}")))?;
    let Some(push) = triggers::push_of(trigger.provider, &payload) else {
        return Ok((StatusCode::ACCEPTED, axum::Json(json!({"queued": false, "reason": "not a push"}))).into_response());
    };
    if push["repository"] != trigger.repository.as_str() || push["branch"] != trigger.branch.as_str() {
        let reason = format!(
            "a push to {}@{}, not {}@{}",
            push["repository"].as_str().unwrap_or("?"),
            push["branch"].as_str().unwrap_or("?"),
            trigger.repository,
            trigger.branch
        );
        return Ok((StatusCode::ACCEPTED, axum::Json(json!({"queued": false, "reason": reason}))).into_response());
    }
    let inputs =
        triggers::inputs_for(&trigger, &push).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-trigger", e))?;
    let delivery = triggers::delivery_id(trigger.provider, &headers);
    let pipelines = app.pipelines.clone();
    let (trigger_name, pipeline) = (name.clone(), trigger.pipeline.clone());
    let outcome = app
        .with_store(move |store| {
            if let Some(id) = &delivery {
                let now = std::time::SystemTime::now();
                let stale = humantime::format_rfc3339_millis(now - UNQUEUED_RETRY).to_string();
                if !store.record_delivery(&trigger_name, id, &crate::clock::now(), &stale)? {
                    return Ok(None);
                }
            }
            match queue(store, &pipelines, &pipeline, &inputs) {
                Ok(run) => {
                    if let Some(delivery) = &delivery {
                        store.delivery_run(&trigger_name, delivery, &run)?;
                    }
                    Ok(Some(run))
                }
                // Nothing was queued: the provider's redelivery is taken.
                Err(e) => {
                    if let Some(delivery) = &delivery {
                        store.forget_delivery(&trigger_name, delivery)?;
                    }
                    Err(e)
                }
            }
        })
        .await?;
    match outcome {
        Some(id) => {
            app.queued.bump();
            Ok((StatusCode::ACCEPTED, axum::Json(json!({"queued": true, "id": id, "commit": push["commit"]})))
                .into_response())
        }
        None => Ok((StatusCode::OK, axum::Json(json!({"queued": false, "reason": "this delivery was seen before"})))
            .into_response()),
    }
}

/// Compiles the trigger's pipeline and queues a run of it with these inputs.
fn queue(
    store: &mut dyn Store,
    pipelines: &std::path::Path,
    pipeline: &str,
    inputs: &serde_json::Map<String, Value>,
) -> Result<String, ApiError> {
    let catalog = crate::catalog::Catalog::new().with_dir(pipelines).with_builtin();
    let source = catalog
        .get(pipeline)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "bad-trigger", "no such pipeline"))?;
    let mut compiler = crate::compiler::Compiler::new(&catalog);
    let plan = compiler.compile(&source).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid-pipeline", format!("`{pipeline}` does not validate"))
    })?;
    let inputs = crate::compiler::inputs::resolve(&plan.inputs, inputs).map_err(|problems| {
        let text: Vec<String> = problems.into_iter().map(|p| p.message).collect();
        ApiError::new(StatusCode::BAD_REQUEST, "invalid-inputs", text.join("; "))
    })?;
    crate::engine::enqueue(store, &plan, inputs, None)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "not-queued", e.to_string()))
}
