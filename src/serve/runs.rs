//! The runs of `phased serve`: the deployment types, starting a run, listing and
//! reading runs, cancel and resume.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, ApiResult, App, bad_query};
use crate::store::StoreError;

pub(super) async fn pipelines(
    State(app): State<Arc<App>>,
    q: Result<Query<PipelinesQuery>, QueryRejection>,
) -> ApiResult {
    let all = q.map_err(bad_query)?.0.all.unwrap_or(false);
    let dir = app.pipelines.clone();
    let list = tokio::task::spawn_blocking(move || {
        let catalog = crate::catalog::Catalog::new().with_dir(&dir).with_builtin();
        let mut out = Vec::new();
        // A file in a folder (`sources/git`, `docker/host`, `static/rollback`) is a
        // building block other pipelines use; the types one deploys are at the top.
        for name in catalog.names().into_iter().filter(|name| all || !name.contains('/')) {
            let Some(source) = catalog.get(&name) else { continue };
            let mut compiler = crate::compiler::Compiler::new(&catalog);
            let Some(plan) = compiler.compile(&source) else { continue };
            out.push(json!({
                "kind": if name.contains('/') { "block" } else { "type" },
                "name": name,
                "description": plan.description(),
                "inputs": super::deploy::inputs_form(&plan),
            }));
        }
        out
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

pub(super) fn bad_request(code: &'static str, message: impl Into<String>, diagnostics: Vec<Value>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into(), "diagnostics": diagnostics}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
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
    let pipelines = app.pipelines.clone();
    let roots = app.roots.clone();
    let outcome = app
        .with_store(move |store| {
            let catalog = crate::catalog::Catalog::new().with_dir(&pipelines).with_builtin();
            let Some(source) = catalog.get(&request.pipeline) else {
                let names = catalog.names();
                let hint =
                    crate::suggest::hint(&request.pipeline, names.iter().map(String::as_str)).unwrap_or_default();
                return Ok(Err(bad_request(
                    "unknown-pipeline",
                    format!("no deployment type `{}` {hint}", request.pipeline),
                    vec![],
                )));
            };
            let mut compiler = crate::compiler::Compiler::new(&catalog);
            let Some(plan) = compiler.compile(&source) else {
                let diagnostics = compiler.diagnostics();
                let list = diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .map(|d| serde_json::to_value(crate::report::JsonDiagnostic::from(d)).expect("JSON"))
                    .collect();
                return Ok(Err(bad_request(
                    "invalid-pipeline",
                    format!("`{}` does not validate", request.pipeline),
                    list,
                )));
            };
            let values = match crate::compiler::inputs::from_json(&plan.inputs, &request.inputs) {
                Ok(values) => values,
                Err(message) => return Ok(Err(bad_request("bad-request", message, Vec::new()))),
            };
            let inputs = match crate::compiler::inputs::resolve(&plan.inputs, &values) {
                Ok(inputs) => inputs,
                Err(problems) => {
                    let list = super::deploy::input_diagnostics(&plan, &problems);
                    return Ok(Err(bad_request("invalid-inputs", "the inputs do not fit the pipeline", list)));
                }
            };
            let given: Vec<String> = request.inputs.keys().cloned().collect();
            let refused = crate::admit::check(&plan, &inputs, &given, caller, &roots);
            if !refused.is_empty() {
                return Ok(Err(forbidden_inputs(&refused)));
            }
            Ok(Ok(crate::engine::enqueue(store, &plan, inputs, (request.id, &actor))))
        })
        .await?;
    let enqueued = match outcome {
        Ok(enqueued) => enqueued,
        Err(response) => return Ok(response),
    };
    match enqueued {
        Ok(id) => {
            app.queued.bump();
            Ok(queued(json!({"id": id, "status": "queued"})))
        }
        Err(crate::engine::EngineError::DuplicateId(id)) => {
            Err(ApiError::new(StatusCode::CONFLICT, "id-taken", format!("a run with id `{id}` already exists")))
        }
        Err(crate::engine::EngineError::Rejected { target, by }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "rejected",
            format!("target `{target}` is busy with run {by}, and the pipeline's concurrency policy is `reject`"),
        )),
        Err(crate::engine::EngineError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.to_string())),
    }
}

/// 403 naming each input the caller may not give, with the diagnostics' shape.
pub(super) fn forbidden_inputs(refused: &[crate::admit::Refusal]) -> Response {
    let list: Vec<Value> = refused
        .iter()
        .map(|r| json!({"severity": "error", "code": "forbidden-input", "input": r.input, "message": r.message, "help": r.help}))
        .collect();
    let names: Vec<String> = refused.iter().map(|r| format!("`{}`", r.input)).collect();
    let message = format!("not allowed for this caller: {}", names.join(", "));
    let body = json!({"error": {"code": "forbidden-input", "message": message, "diagnostics": list}});
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
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
    let result = app.with_store(move |store| Ok(crate::engine::requeue(store, &run, request.from.as_deref()))).await?;
    use crate::engine::EngineError;
    use crate::store::ClaimError;
    match result {
        Ok(()) => {
            app.queued.bump();
            Ok((StatusCode::ACCEPTED, axum::Json(json!({"id": id, "status": "queued"}))).into_response())
        }
        Err(EngineError::Claim(ClaimError::Missing(_))) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run"))
        }
        Err(EngineError::Claim(ClaimError::Finished { .. })) => {
            Err(ApiError::new(StatusCode::CONFLICT, "finished", "the run already succeeded; nothing to resume"))
        }
        Err(EngineError::Claim(ClaimError::Held { pid, host, .. })) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "held",
            format!("the run is being run by process {pid} on `{host}`"),
        )),
        Err(EngineError::UnknownNode { node, help, .. }) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown-node",
            format!("no node `{node}` in this run{}", help.map(|h| format!(" ({h})")).unwrap_or_default()),
        )),
        Err(EngineError::Store(e) | EngineError::Claim(ClaimError::Store(e))) => Err(e.into()),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.to_string())),
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
                    let mut row = crate::engine::view::row_json(r);
                    if let Ok(Some(eta)) = crate::engine::view::eta_now(store, r) {
                        row["eta_seconds"] = json!(eta);
                    }
                    crate::engine::summary::extend_row(store, r, &mut row)?;
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
    let found = app.with_store(move |store| Ok(crate::engine::view::graph_json(store, &id)?)).await?;
    match found {
        Some(graph) => Ok(axum::Json(graph).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run")),
    }
}

pub(super) async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let found = app.with_store(move |store| Ok(crate::engine::view::run_json(store, &id)?)).await?;
    match found {
        Some(detail) => Ok(axum::Json(detail).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run")),
    }
}

pub(super) async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    use crate::store::RunStatus::{Cancelled, Failed, Succeeded};
    let now = crate::clock::now_ms();
    let row = app
        .with_store(move |store| {
            let ended = |row: &crate::store::RunRow| Err((row.id.clone(), row.status.as_str()));
            // A run that has ended has nothing to cancel: 409, and it stays as it ended.
            match store.run(&id)? {
                Some(row) if matches!(row.status, Succeeded | Failed | Cancelled) => return Ok(Some(ended(&row))),
                Some(_) => {}
                None => return Ok(None),
            }
            let row = store.request_cancel(&id, &|r| crate::engine::lease::holder_alive(r, now))?;
            // It ended meanwhile (not by this cancel).
            Ok(row.map(|row| if matches!(row.status, Succeeded | Failed) { ended(&row) } else { Ok(row) }))
        })
        .await?;
    match row {
        Some(Ok(row)) => Ok((StatusCode::ACCEPTED, axum::Json(crate::engine::view::row_json(&row))).into_response()),
        Some(Err((id, status))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "finished",
            format!("run `{id}` has already ended ({status}): there is nothing to cancel"),
        )),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run")),
    }
}

/// `GET /api/v1/targets/{target}/releases`: as `phased releases TARGET --format json`.
pub(super) async fn releases(State(app): State<Arc<App>>, Path(target): Path<String>) -> ApiResult {
    let name = target.clone();
    let list = app.with_store(move |store| Ok(crate::engine::summary::releases_json(store, &name)?)).await?;
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
    use crate::engine::releases::{RollbackError, prepare};
    let request: RollbackBody = if body.is_empty() {
        RollbackBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => return Ok(bad_request("bad-request", format!("the request body: {e}"), Vec::new())),
        }
    };
    let outcome = app
        .with_store(move |store| {
            let prepared = match prepare(store, &target, request.to.as_deref()) {
                Ok(prepared) => prepared,
                Err(RollbackError::Store(e)) => return Err(e.into()),
                Err(e) => return Ok(Err(ApiError::new(StatusCode::CONFLICT, "no-rollback", e.to_string()))),
            };
            // On this blocking thread: a runtime of its own for the engine's answer.
            let checked = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
                .block_on(crate::engine::releases::check_image(&prepared));
            if let Err(e) = checked {
                return Ok(Err(ApiError::new(StatusCode::CONFLICT, "no-rollback", e.to_string())));
            }
            let inputs = crate::compiler::inputs::resolve(&prepared.plan.inputs, &prepared.inputs).map_err(|p| {
                let text: Vec<String> = p.into_iter().map(|p| p.message).collect();
                ApiError::new(StatusCode::CONFLICT, "no-rollback", text.join("; "))
            })?;
            let actor = crate::actor::Actor::Rollback { of: prepared.release.clone(), by: Box::new(by) };
            let id = crate::engine::enqueue(store, &prepared.plan, inputs, (None, &actor))
                .map_err(|e| ApiError::new(StatusCode::CONFLICT, "not-queued", e.to_string()))?;
            Ok(Ok((id, prepared.release)))
        })
        .await?;
    let (id, release) = outcome?;
    app.queued.bump();
    Ok(queued(json!({"id": id, "status": "queued", "release": release})))
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
        app.with_store(move |store| Ok(crate::engine::stats::stats(store, q.pipeline.as_deref(), since)?)).await?;
    Ok(axum::Json(stats).into_response())
}
