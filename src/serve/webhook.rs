//! `POST /hooks/{trigger}`: a git push, as [`super::triggers`] reads it.

use std::sync::Arc;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, ApiResult, App, push, triggers};
use crate::app::trigger::{Delivery, deliver};

/// `POST /hooks/{trigger}`: a git push. The headers are looked at first: without a
/// usable key, a signature of the right form (or GitLab's right token) the answer is
/// 401 at once, before the body is read; then the signature over the (bounded) body
/// is checked in constant time (401 when wrong). Nothing else is looked at before.
/// Then: a push's fields are held to their kind (400 naming the field); a push to
/// another repository or branch, one that deletes the branch, one older than the
/// trigger's `max_age`, and one received before (the same signed body, or the same
/// delivery id) are acknowledged (202) with nothing queued; else the push's commit is
/// deployed.
pub(super) async fn hook(State(app): State<Arc<App>>, Path(name): Path<String>, request: Request) -> ApiResult {
    let Some(trigger) = app.triggers.get(&name).cloned() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such trigger"));
    };
    let unsigned =
        || ApiError::new(StatusCode::UNAUTHORIZED, "bad-signature", "the delivery's signature is missing or wrong");
    let secret = crate::secrets::Secrets::from_env().values().get(&trigger.secret.to_lowercase()).cloned();
    let Some(secret) = secret.filter(|s| triggers::may_be_signed(trigger.provider, s, request.headers())) else {
        return Err(unsigned());
    };
    let headers = request.headers().clone();
    // The body, within the server's body limit (`DefaultBodyLimit`).
    let body = axum::body::Bytes::from_request(request, &())
        .await
        .map_err(|e| ApiError::new(e.status(), "bad-request", e.body_text()))?;
    if !triggers::signed(trigger.provider, &secret, &headers, &body) {
        return Err(unsigned());
    }
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", format!("the payload: {e}")))?;
    let Some(push) = triggers::push_of(trigger.provider, &payload) else {
        return Ok(nothing_queued("not a push"));
    };
    push::check(&push).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-push", e))?;
    if push["repository"] != trigger.repository.as_str() || push["branch"] != trigger.branch.as_str() {
        let reason = format!(
            "a push to {}@{}, not {}@{}",
            push["repository"].as_str().unwrap_or("?"),
            push["branch"].as_str().unwrap_or("?"),
            trigger.repository,
            trigger.branch
        );
        return Ok(nothing_queued(&reason));
    }
    if push::deletes(&payload, &push) {
        tracing::info!(trigger = %name, "A push deleted the branch: nothing to deploy.");
        return Ok(nothing_queued("branch deleted: nothing to deploy"));
    }
    if let Some(reason) = too_old(&trigger, &payload, &push) {
        tracing::info!(trigger = %name, reason, "A push was refused.");
        return Ok(nothing_queued(&reason));
    }
    let inputs =
        triggers::inputs_for(&trigger, &push).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-trigger", e))?;
    // Known by its signed body first (a replay under a new id, or none, is the same
    // delivery), and by the provider's id when it gives one.
    let mut keys = vec![triggers::body_key(&name, &body)];
    let delivery = triggers::delivery_id(trigger.provider, &headers);
    // Shown by `status` and the dashboard: a header is the sender's text, kept short.
    let actor = crate::actor::Actor::Webhook {
        trigger: name.clone(),
        delivery: delivery.as_ref().map(|d| d.chars().take(80).collect()),
    };
    keys.extend(delivery);
    let pipelines = crate::app::Pipelines::new(&app.pipelines);
    let (trigger_name, pipeline) = (name.clone(), trigger.pipeline.clone());
    let outcome = app
        .with_store(move |store| Ok(deliver(store, (&trigger_name, actor), &keys, (&pipelines, &pipeline), &inputs)))
        .await?;
    match outcome {
        Ok(Delivery::Queued(id)) => {
            app.queued.bump();
            Ok((StatusCode::ACCEPTED, axum::Json(json!({"queued": true, "id": id, "commit": push["commit"]})))
                .into_response())
        }
        Ok(Delivery::SeenBody) => {
            Ok(nothing_queued("already received: this push (the same signed body) was delivered before"))
        }
        Ok(Delivery::SeenId(id)) => {
            Ok(nothing_queued(&format!("already received: the delivery `{id}` was seen before")))
        }
        Err(e) => Ok(super::refused::refused(e)),
    }
}

/// 202 with nothing queued, and why.
fn nothing_queued(reason: &str) -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"queued": false, "reason": reason}))).into_response()
}

/// Why a push is refused by the trigger's `max_age`, if it is.
fn too_old(trigger: &triggers::Trigger, payload: &Value, push: &Value) -> Option<String> {
    let max_age = trigger.max_age?;
    let Some(made) = push::head_time(payload, push["commit"].as_str().unwrap_or_default()) else {
        return Some(format!(
            "the push gives no time for its head commit, and `max_age` ({max_age}) is set: nothing queued"
        ));
    };
    let age = std::time::SystemTime::now().duration_since(made).unwrap_or_default();
    (age > max_age.0).then(|| {
        format!(
            "the head commit was made {} ago, longer than `max_age` ({max_age}): an old delivery sent again? \
             nothing queued",
            humantime::format_duration(std::time::Duration::from_secs(age.as_secs()))
        )
    })
}

/// The webhook keys of these triggers, by secret name: what a run is never given.
pub(super) fn keys_of(triggers: &indexmap::IndexMap<String, triggers::Trigger>) -> Vec<&str> {
    triggers.values().map(|t| t.secret.as_str()).collect()
}
