//! The runs of `phased serve`: the deployment types, starting a run, listing and
//! reading runs, cancel and resume.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::refused::{bad_request, refused};
use super::{ApiError, ApiResult, App, bad_query};
use crate::app::{Cancel, Given, Pipelines, Start, runs};
use crate::store::StoreError;

pub(super) async fn pipelines(
    State(app): State<Arc<App>>,
    q: Result<Query<PipelinesQuery>, QueryRejection>,
) -> ApiResult {
    let all = q.map_err(bad_query)?.0.all.unwrap_or(false);
    let pipelines = Pipelines::new(&app.pipelines);
    let list = tokio::task::spawn_blocking(move || {
        let types = pipelines.types(all).into_iter();
        let list: Vec<Value> = types
            .map(|(name, plan)| {
                json!({
                    "kind": if name.contains('/') { "block" } else { "type" },
                    "name": name,
                    "description": plan.description(),
                    "inputs": super::deploy::inputs_form(&plan),
                })
            })
            .collect();
        list
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(axum::Json(json!({"pipelines": list})).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PipelinesQuery {
    /// The building blocks too (`?all=true`).
    all: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunsQuery {
    status: Option<String>,
    pipeline: Option<String>,
    target: Option<String>,
    limit: Option<usize>,
    /// Runs created before this one (its id): the next page.
    before: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRunBody {
    pipeline: String,
    /// Each value as its JSON text: a number for a string input keeps how it was written.
    #[serde(default)]
    inputs: indexmap::IndexMap<String, Box<serde_json::value::RawValue>>,
    id: Option<String>,
}

/// 202 for a run just queued, with `Location`: where to follow it.
fn queued(body: Value) -> Response {
    let location = format!("/api/v1/runs/{}", body["id"].as_str().unwrap_or_default());
    (StatusCode::ACCEPTED, [(axum::http::header::LOCATION, location)], axum::Json(body)).into_response()
}

/// Who an API call is from: its token (a dashboard session carries its token's name).
fn actor_of(token: Option<&crate::store::TokenRow>) -> crate::actor::Actor {
    crate::actor::Actor::Token(token.map_or_else(|| "anonymous".to_string(), |t| t.name.clone()))
}

/// `POST /api/v1/runs`: checks the pipeline and the inputs, records the run `queued`
/// and wakes a worker. 202 with its id; 400 for an invalid request, pipeline or input
/// (with the diagnostics `validate --format json` gives); 409 for a taken id or a
/// `reject` policy whose target is busy.
pub(super) async fn start_run(
    State(app): State<Arc<App>>,
    token: Option<axum::Extension<crate::store::TokenRow>>,
    body: axum::body::Bytes,
) -> ApiResult {
    // An `admin` token is the operator's; a `deploy` token (or its dashboard session)
    // gives data only ([`crate::admit`]).
    let caller = match token.as_ref().map(|t| t.0.role) {
        Some(crate::store::Role::Admin) => crate::admit::Caller::Operator,
        _ => crate::admit::Caller::Untrusted,
    };
    let actor = actor_of(token.as_ref().map(|t| &t.0));
    let request: NewRunBody = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("the request body: {e}");
            return Ok(bad_request("bad-request", message, Vec::new()));
        }
    };
    if let Some(Err(why)) = request.id.as_deref().map(crate::names::check_run_id) {
        return Ok(bad_request("invalid-id", why, Vec::new()));
    }
    let pipelines = Pipelines::new(&app.pipelines);
    let roots = app.roots.clone();
    let queued_run = app
        .with_store(move |store| {
            let given = Given::Json(&request.inputs);
            let admitted = pipelines.admit(&request.pipeline, given, caller, &roots);
            Ok(admitted.and_then(|(plan, inputs)| runs::queue(store, &plan, inputs, Start { id: request.id, actor })))
        })
        .await?;
    match queued_run {
        Ok(id) => {
            app.queued.bump();
            Ok(queued(json!({"id": id, "status": "queued"})))
        }
        Err(e) => Ok(refused(e)),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ResumeBody {
    from: Option<String>,
}

/// `POST /api/v1/runs/{id}/resume` (`{"from": node}` optional): as `phased resume`,
/// on a worker. 202; 404 no run; 409 held by a live process or already succeeded.
pub(super) async fn resume(State(app): State<Arc<App>>, Path(id): Path<String>, body: axum::body::Bytes) -> ApiResult {
    let request: ResumeBody = if body.is_empty() {
        ResumeBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => return Ok(bad_request("bad-request", format!("the request body: {e}"), Vec::new())),
        }
    };
    let run = id.clone();
    let result = app.with_store(move |store| Ok(runs::requeue(store, &run, request.from.as_deref()))).await?;
    match result {
        Ok(()) => {
            app.queued.bump();
            Ok((StatusCode::ACCEPTED, axum::Json(json!({"id": id, "status": "queued"}))).into_response())
        }
        Err(e) => Ok(refused(e)),
    }
}

pub(super) async fn runs(State(app): State<Arc<App>>, q: Result<Query<RunsQuery>, QueryRejection>) -> ApiResult {
    let Query(q) = q.map_err(bad_query)?;
    let list = app
        .with_store(move |store| {
            // Read first, as in `run_json`: the events after it are newer than the list.
            let last_seq = store.latest_event()?;
            let limit = q.limit.unwrap_or(50).min(500);
            let filter = crate::store::RunFilter {
                status: q.status.clone(),
                pipeline: q.pipeline.clone(),
                target: q.target.clone(),
            };
            if let Some(before) = &q.before
                && !store.run_exists(before)?
            {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    format!("`before`: no run `{before}`"),
                ));
            }
            let mut page: Vec<Value> = store
                .runs_page(&filter, q.before.as_deref(), limit + 1)?
                .iter()
                .map(|r| {
                    let mut row = crate::read::view::row_json(r);
                    if let Ok(Some(eta)) = crate::read::view::eta_now(store, r) {
                        row["eta_seconds"] = json!(eta);
                    }
                    crate::read::summary::extend_row(store, r, &mut row)?;
                    Ok(row)
                })
                .collect::<Result<_, StoreError>>()?;
            let more = page.len() > limit;
            page.truncate(limit);
            Ok(json!({"runs": page, "more": more, "last_seq": last_seq}))
        })
        .await?;
    Ok(axum::Json(list).into_response())
}

/// `GET /api/v1/runs/{id}/graph`: the nodes and edges of the run's plan, for drawing.
pub(super) async fn graph(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let found = app.with_store(move |store| Ok(crate::read::view::graph_json(store, &id)?)).await?;
    match found {
        Some(graph) => Ok(axum::Json(graph).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run")),
    }
}

pub(super) async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let found = app.with_store(move |store| Ok(crate::read::view::run_json(store, &id)?)).await?;
    match found {
        Some(detail) => Ok(axum::Json(detail).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run")),
    }
}

pub(super) async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    match app.with_store(move |store| Ok(runs::cancel(store, &id))).await? {
        Ok(Cancel::Asked(row)) => {
            Ok((StatusCode::ACCEPTED, axum::Json(crate::read::view::row_json(&row))).into_response())
        }
        // A run that has ended has nothing to cancel: 409, and it stays as it ended.
        Ok(Cancel::Ended(row)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "finished",
            format!("run `{}` has already ended ({}): there is nothing to cancel", row.id, row.status.as_str()),
        )),
        Err(e) => Ok(refused(e)),
    }
}

/// `GET /api/v1/targets/{target}/releases`: as `phased releases TARGET --format json`.
pub(super) async fn releases(State(app): State<Arc<App>>, Path(target): Path<String>) -> ApiResult {
    let name = target.clone();
    let list = app.with_store(move |store| Ok(crate::read::summary::releases_json(store, &name)?)).await?;
    Ok(axum::Json(json!({"target": target, "releases": list})).into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    to: Option<String>,
}

/// `POST /api/v1/targets/{target}/rollback` (`{"to": run}` optional): queues a rollback
/// run, as `phased rollback`. 202 with its id; 409 when there is nothing to roll back
/// to or the release's folder is gone.
pub(super) async fn rollback(
    State(app): State<Arc<App>>,
    Path(target): Path<String>,
    token: Option<axum::Extension<crate::store::TokenRow>>,
    body: axum::body::Bytes,
) -> ApiResult {
    let by = actor_of(token.as_ref().map(|t| &t.0));
    let request: RollbackBody = if body.is_empty() {
        RollbackBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => return Ok(bad_request("bad-request", format!("the request body: {e}"), Vec::new())),
        }
    };
    let outcome =
        app.with_store(move |store| Ok(crate::app::rollback::queue(store, &target, request.to.as_deref(), by))).await?;
    match outcome {
        Ok((id, release)) => {
            app.queued.bump();
            Ok(queued(json!({"id": id, "status": "queued", "release": release})))
        }
        Err(e) => Ok(refused(e)),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsQuery {
    pipeline: Option<String>,
    /// `30d`, `12h`, ... (default 30 days).
    since: Option<String>,
}

/// `GET /api/v1/stats?pipeline=&since=`: as `phased stats --format json`.
pub(super) async fn stats(State(app): State<Arc<App>>, q: Result<Query<StatsQuery>, QueryRejection>) -> ApiResult {
    let Query(q) = q.map_err(bad_query)?;
    let age = match q.since.as_deref() {
        None => std::time::Duration::from_secs(30 * 86_400),
        Some(text) => crate::duration::parse_age(text)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", format!("`since`: {e}")))?,
    };
    let since = std::time::SystemTime::now() - age;
    let stats =
        app.with_store(move |store| Ok(crate::read::stats::stats(store, q.pipeline.as_deref(), since)?)).await?;
    Ok(axum::Json(stats).into_response())
}
