//! `phased serve`: the HTTP API and the live event streams, on the same database as the
//! command line (DESIGN.md section 9). Every `/api/` request shows its token first
//! ([`auth`]): before its body is read, before anything else is looked at.
//!
//! Event streams read the `events` table, each at its own pace, from the sequence
//! number the client gives (`Last-Event-ID`): a slow or gone client holds no buffer
//! and never slows a run; one that reconnects gets exactly what it missed.
//!
//! Runs started through the API are recorded `queued` for the workers (`--workers`
//! threads), which take them oldest first when their target is free, in the database,
//! so that several servers and CLI runs on one database share one queue per target.
//!
//! At start, every interrupted run whose holder is gone is handed to the workers.
//!
//! Built so far: tokens, `/healthz`, `/metrics`, pipelines, runs (start, list, one,
//! cancel, resume), node logs, event streams. Not yet: webhooks (`--triggers`).

pub mod auth;
pub mod triggers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::store::{Durability, Role, RunStatus, Store, StoreError};

/// How long a stream waits before it reads the database again after an error, and how
/// often a followed log is looked at.
const STREAM_POLL: Duration = Duration::from_millis(50);

/// How often the hub looks for newly committed events (one query for every client).
const HUB_POLL: Duration = Duration::from_millis(5);

/// Events the hub holds for streams that are behind; one further behind reads the
/// database instead.
const HUB_CAPACITY: usize = 4096;

/// Events read from the database at a time by one stream.
const STREAM_PAGE: usize = 500;

pub struct Options {
    pub listen: SocketAddr,
    pub db: PathBuf,
    pub durability: Durability,
    pub pipelines: PathBuf,
    /// The most event streams open at once; more get 503.
    pub max_streams: usize,
    /// How many runs execute at once.
    pub workers: usize,
    /// Beside the database: node logs and work folders.
    pub data_dir: PathBuf,
    /// Git push webhooks, by name (`POST /hooks/{name}`).
    pub triggers: indexmap::IndexMap<String, triggers::Trigger>,
    /// On SIGTERM, how long running nodes get to finish before they are stopped.
    pub shutdown_grace: Duration,
}

struct App {
    db: PathBuf,
    data_dir: PathBuf,
    durability: Durability,
    pipelines: PathBuf,
    streams: Arc<tokio::sync::Semaphore>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Wakes the workers when a run is queued.
    queued: Arc<Wake>,
    /// New events, read once by the hub, for every live stream.
    events: tokio::sync::broadcast::Sender<Arc<Value>>,
    triggers: indexmap::IndexMap<String, triggers::Trigger>,
    /// Set on SIGTERM: the runs start no new node.
    drain_runs: tokio::sync::watch::Sender<bool>,
    /// Set after the grace period: the runs stop their running nodes.
    stop_runs: tokio::sync::watch::Sender<bool>,
}

/// A counter workers wait on: each queued run (or the shutdown) bumps it.
#[derive(Default)]
struct Wake {
    count: std::sync::Mutex<u64>,
    changed: std::sync::Condvar,
}

impl Wake {
    fn bump(&self) {
        *self.count.lock().expect("wake lock") += 1;
        self.changed.notify_all();
    }

    /// Waits until bumped past `seen`, or `limit`; returns the count.
    fn wait(&self, seen: u64, limit: Duration) -> u64 {
        let guard = self.count.lock().expect("wake lock");
        let (guard, _) = self.changed.wait_timeout_while(guard, limit, |c| *c == seen).expect("wake lock");
        *guard
    }
}

/// A JSON error: `{"error": {"code", "message"}}` with its status.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (message, _) = e.explain(std::path::Path::new("the database"));
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// A query string that does not fit: 400 as JSON, saying which parameter.
fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad-request", rejection.body_text())
}

impl App {
    /// Runs `f` on a store of its own, off the async threads (SQLite blocks).
    async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut dyn Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (db, durability) = (self.db.clone(), self.durability);
        tokio::task::spawn_blocking(move || {
            let mut store = crate::store::open(&db, durability)?;
            f(store.as_mut())
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    }
}

/// The role a request needs: reading needs `read`, changing anything `deploy`.
fn needed(method: &Method) -> Role {
    if method == Method::GET || method == Method::HEAD { Role::Read } else { Role::Deploy }
}

/// Checks the token of every `/api/` request before its handler (and its body) runs.
async fn authorize(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let header = request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let need = needed(request.method());
    let verdict = app.with_store(move |store| Ok(auth::check(store, header.as_deref(), need)?)).await;
    match verdict {
        Ok(Ok(_)) => next.run(request).await,
        Ok(Err(auth::Refusal::Unknown)) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid token is needed: `Authorization: Bearer <token>` (`phased token create NAME`)",
        )
        .into_response(),
        Ok(Err(auth::Refusal::TooLow { have, need })) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs a `{}` token; this one is `{}`", need.as_str(), have.as_str()),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn pipelines(State(app): State<Arc<App>>) -> ApiResult {
    let dir = app.pipelines.clone();
    let list = tokio::task::spawn_blocking(move || {
        let catalog = crate::catalog::Catalog::new().with_dir(&dir).with_builtin();
        let mut out = Vec::new();
        for name in catalog.names() {
            let Some(source) = catalog.get(&name) else { continue };
            let mut compiler = crate::compiler::Compiler::new(&catalog);
            let Some(plan) = compiler.compile(&source) else { continue };
            out.push(json!({
                "name": name,
                "description": plan.description(),
                "inputs": inputs_schema(&plan),
            }));
        }
        out
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(axum::Json(json!({"pipelines": list})).into_response())
}

/// A pipeline's inputs as a JSON Schema object.
fn inputs_schema(plan: &crate::plan::Plan) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for (name, spec) in &plan.inputs {
        let mut schema = json!({"type": spec.ty.as_str()});
        if let Some(d) = &spec.description {
            schema["description"] = json!(d);
        }
        if let Some(d) = &spec.default {
            schema["default"] = d.clone();
        }
        if let Some(allowed) = &spec.allowed {
            schema["enum"] = json!(allowed);
        }
        if let Some(pattern) = &spec.pattern {
            schema["pattern"] = json!(pattern.as_str());
        }
        if spec.required && spec.default.is_none() {
            required.push(name.clone());
        }
        properties.insert(name.clone(), schema);
    }
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    status: Option<String>,
    pipeline: Option<String>,
    target: Option<String>,
    limit: Option<usize>,
    /// Runs created before this one (its id): the next page.
    before: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRunBody {
    pipeline: String,
    #[serde(default)]
    inputs: serde_json::Map<String, Value>,
    id: Option<String>,
}

fn bad_request(code: &'static str, message: impl Into<String>, diagnostics: Vec<Value>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into(), "diagnostics": diagnostics}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// `POST /api/v1/runs`: checks the pipeline and the inputs, records the run `queued`
/// and wakes a worker. 202 with its id; 400 for an invalid request, pipeline or input
/// (with the diagnostics `validate --format json` gives); 409 for a taken id or a
/// `reject` policy whose target is busy.
async fn start_run(State(app): State<Arc<App>>, body: axum::body::Bytes) -> ApiResult {
    let request: NewRunBody = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("the request body: {e}");
            return Ok(bad_request("bad-request", message, Vec::new()));
        }
    };
    let pipelines = app.pipelines.clone();
    let outcome = app
        .with_store(move |store| {
            let catalog = crate::catalog::Catalog::new().with_dir(&pipelines).with_builtin();
            let Some(source) = catalog.get(&request.pipeline) else {
                let names = catalog.names();
                let hint = crate::suggest::hint(&request.pipeline, names.iter().map(String::as_str)).unwrap_or_default();
                return Ok(Err(bad_request("unknown-pipeline", format!("no deployment type `{}` {hint}", request.pipeline), vec![])));
            };
            let mut compiler = crate::compiler::Compiler::new(&catalog);
            let Some(plan) = compiler.compile(&source) else {
                let diagnostics = compiler.diagnostics();
                let list = diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .map(|d| serde_json::to_value(crate::report::JsonDiagnostic::from(d)).expect("JSON"))
                    .collect();
                return Ok(Err(bad_request("invalid-pipeline", format!("`{}` does not validate", request.pipeline), list)));
            };
            let inputs = match crate::compiler::inputs::resolve(&plan.inputs, &request.inputs) {
                Ok(inputs) => inputs,
                Err(problems) => {
                    let list = problems
                        .iter()
                        .map(|p| json!({"severity": "error", "code": "invalid-input", "input": p.input, "message": p.message, "help": p.help}))
                        .collect();
                    return Ok(Err(bad_request("invalid-inputs", "the inputs do not fit the pipeline", list)));
                }
            };
            Ok(Ok(crate::engine::enqueue(store, &plan, inputs, request.id)))
        })
        .await?;
    let enqueued = match outcome {
        Ok(enqueued) => enqueued,
        Err(response) => return Ok(response),
    };
    match enqueued {
        Ok(id) => {
            app.queued.bump();
            Ok((StatusCode::ACCEPTED, axum::Json(json!({"id": id, "status": "queued"}))).into_response())
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

/// `POST /hooks/{trigger}`: a git push. The signature is checked first, in constant
/// time (401 and nothing queued when it is bad or missing); a delivery seen before is
/// not run again; a push to another repository or branch is acknowledged (202) with
/// nothing queued; else the push's commit is deployed.
async fn hook(
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
            if let Some(id) = &delivery
                && !store.record_delivery(&trigger_name, id, &crate::clock::now())?
            {
                return Ok(Err("duplicate"));
            }
            let catalog = crate::catalog::Catalog::new().with_dir(&pipelines).with_builtin();
            let source = catalog
                .get(&pipeline)
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "bad-trigger", "no such pipeline"))?;
            let mut compiler = crate::compiler::Compiler::new(&catalog);
            let plan = compiler.compile(&source).ok_or_else(|| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-pipeline", format!("`{pipeline}` does not validate"))
            })?;
            let inputs = crate::compiler::inputs::resolve(&plan.inputs, &inputs).map_err(|problems| {
                let text: Vec<String> = problems.into_iter().map(|p| p.message).collect();
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-inputs", text.join("; "))
            })?;
            let id = crate::engine::enqueue(store, &plan, inputs, None)
                .map_err(|e| ApiError::new(StatusCode::CONFLICT, "not-queued", e.to_string()))?;
            if let Some(delivery) = &delivery {
                store.delivery_run(&trigger_name, delivery, &id)?;
            }
            Ok(Ok(id))
        })
        .await?;
    match outcome {
        Ok(id) => {
            app.queued.bump();
            Ok((StatusCode::ACCEPTED, axum::Json(json!({"queued": true, "id": id, "commit": push["commit"]})))
                .into_response())
        }
        Err(_) => Ok((StatusCode::OK, axum::Json(json!({"queued": false, "reason": "this delivery was seen before"})))
            .into_response()),
    }
}

/// A worker: takes the oldest run queued for workers whose target is free, runs it on a
/// runtime of its own, and so on until the server stops.
fn worker(app: Arc<App>, data_dir: PathBuf) {
    let mut seen = 0;
    while !*app.shutdown.borrow() {
        let lease = crate::engine::lease::this_process();
        let now = crate::clock::now_ms();
        let claimed = crate::store::open(&app.db, app.durability).and_then(|mut store| {
            Ok((store.claim_next(&lease, now, &|r| crate::engine::lease::holder_alive(r, now))?, store))
        });
        match claimed {
            Ok((Some(row), store)) => {
                let id = row.id.clone();
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime starts");
                let mut reporter = crate::reporter::Silent;
                // SIGTERM is the server's: it drains the run, then stops it after the grace.
                let halt = crate::engine::Halt {
                    drain: app.drain_runs.subscribe(),
                    status: RunStatus::Interrupted,
                    reason: "the server is stopping".into(),
                    now: Some(app.stop_runs.subscribe()),
                    ignore_signals: true,
                };
                let options = crate::engine::Options {
                    parallel: 8,
                    secrets: crate::secrets::Secrets::from_env(),
                    reporter: &mut reporter,
                    data_dir: data_dir.clone(),
                    stop: Some(halt),
                };
                match runtime.block_on(crate::engine::run_claimed(store, row, lease, options)) {
                    Ok(outcome) => tracing::info!(run = %id, ?outcome, "Worker finished a run."),
                    Err(e) => tracing::warn!(run = %id, error = %e, "Worker could not run it."),
                }
                // What waited behind it may run now.
                app.queued.bump();
            }
            Ok((None, _)) => seen = app.queued.wait(seen, Duration::from_millis(500)),
            Err(e) => {
                tracing::warn!(error = %e, "Worker cannot reach the database.");
                seen = app.queued.wait(seen, Duration::from_secs(1));
            }
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    from: Option<String>,
}

/// `POST /api/v1/runs/{id}/resume` (`{"from": node}` optional): as `phased resume`,
/// on a worker. 202; 404 no run; 409 held by a live process or already succeeded.
async fn resume(State(app): State<Arc<App>>, Path(id): Path<String>, body: axum::body::Bytes) -> ApiResult {
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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
}

/// `GET /api/v1/runs/{id}/nodes/{node}/log[?follow=true]`: the node's log (masked, as
/// recorded); followed, it goes on until the run ends.
async fn node_log(
    State(app): State<Arc<App>>,
    Path((id, node)): Path<(String, String)>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(bad_query)?;
    if node.contains('/') || node.starts_with('.') || id.contains('/') || id.starts_with('.') {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-request", "not a node id"));
    }
    let check = id.clone();
    if app.with_store(move |store| Ok(store.run(&check)?)).await?.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run"));
    }
    let path = app.data_dir.join("logs").join(&id).join(format!("{node}.log"));
    if !q.follow {
        let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
        return Ok(([("content-type", "text/plain; charset=utf-8")], text).into_response());
    }
    struct Tail {
        app: Arc<App>,
        id: String,
        path: PathBuf,
        offset: u64,
        done: bool,
    }
    let tail = Tail { app, id, path, offset: 0, done: false };
    let body = futures_util::stream::unfold(tail, |mut t| async move {
        loop {
            if t.done {
                return None;
            }
            let (id, at) = (t.id.clone(), t.offset);
            let ended = t
                .app
                .with_store(move |store| {
                    Ok(store.run(&id)?.is_none_or(|r| !matches!(r.status, RunStatus::Running | RunStatus::Queued)))
                })
                .await
                .unwrap_or(true);
            let chunk = read_from(&t.path, at).await;
            if !chunk.is_empty() {
                t.offset += chunk.len() as u64;
                return Some((Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(chunk)), t));
            }
            if ended || *t.app.shutdown.borrow() {
                t.done = true;
                continue;
            }
            tokio::time::sleep(STREAM_POLL).await;
        }
    });
    Ok(([("content-type", "text/plain; charset=utf-8")], axum::body::Body::from_stream(body)).into_response())
}

async fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut file) = tokio::fs::File::open(path).await else { return Vec::new() };
    if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return Vec::new();
    }
    let mut chunk = Vec::new();
    let _ = file.take(64 * 1024).read_to_end(&mut chunk).await;
    chunk
}

/// `GET /metrics`: Prometheus text: runs by status and pipeline, the queue's depth,
/// and the durations of finished nodes and runs.
async fn metrics(State(app): State<Arc<App>>) -> ApiResult {
    let text = app
        .with_store(|store| {
            let runs = store.runs()?;
            let mut by: std::collections::BTreeMap<(String, &'static str), u64> = Default::default();
            for r in &runs {
                *by.entry((r.pipeline.clone(), r.status.as_str())).or_default() += 1;
            }
            let mut out = String::new();
            out.push_str("# HELP phased_runs Runs in the database, by pipeline and status.\n# TYPE phased_runs gauge\n");
            for ((pipeline, status), n) in &by {
                out.push_str(&format!("phased_runs{{pipeline=\"{}\",status=\"{status}\"}} {n}\n", escape(pipeline)));
            }
            let queued = runs.iter().filter(|r| r.status == RunStatus::Queued).count();
            out.push_str(&format!("# HELP phased_queue_depth Runs waiting for a worker or their target.\n# TYPE phased_queue_depth gauge\nphased_queue_depth {queued}\n"));
            let durations: Vec<f64> = runs
                .iter()
                .filter_map(|r| {
                    let (a, b) = (r.created_at.as_str(), r.finished_at.as_deref()?);
                    let (a, b) = (humantime::parse_rfc3339(a).ok()?, humantime::parse_rfc3339(b).ok()?);
                    Some(b.duration_since(a).ok()?.as_secs_f64())
                })
                .collect();
            histogram(&mut out, "phased_run_duration_seconds", "Durations of finished runs.", &durations);
            Ok(out)
        })
        .await?;
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, help: &str, values: &[f64]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
    for le in [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0] {
        let n = values.iter().filter(|v| **v <= le).count();
        out.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {n}\n"));
    }
    out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {}\n", values.len()));
    out.push_str(&format!("{name}_sum {}\n{name}_count {}\n", values.iter().sum::<f64>(), values.len()));
}

async fn runs(State(app): State<Arc<App>>, q: Result<Query<RunsQuery>, QueryRejection>) -> ApiResult {
    let Query(q) = q.map_err(bad_query)?;
    let list = app
        .with_store(move |store| {
            let runs = store.runs()?;
            let start = match &q.before {
                Some(id) => runs.iter().position(|r| &r.id == id).map_or(runs.len(), |i| i + 1),
                None => 0,
            };
            let limit = q.limit.unwrap_or(50).min(500);
            Ok(runs[start..]
                .iter()
                .filter(|r| q.status.as_deref().is_none_or(|s| r.status.as_str() == s))
                .filter(|r| q.pipeline.as_ref().is_none_or(|p| &r.pipeline == p))
                .filter(|r| q.target.as_ref().is_none_or(|t| r.target.as_ref() == Some(t)))
                .take(limit)
                .map(crate::engine::view::row_json)
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(axum::Json(json!({"runs": list})).into_response())
}

async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let found = app.with_store(move |store| Ok(crate::engine::view::run_json(store, &id)?)).await?;
    match found {
        Some(detail) => Ok(axum::Json(detail).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run")),
    }
}

async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let now = crate::clock::now_ms();
    let row = app
        .with_store(move |store| Ok(store.request_cancel(&id, &|r| crate::engine::lease::holder_alive(r, now))?))
        .await?;
    match row {
        Some(row) => Ok((StatusCode::ACCEPTED, axum::Json(crate::engine::view::row_json(&row))).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run")),
    }
}

/// Where a stream starts: after `Last-Event-ID` (or `?after=`), else from the start.
fn start_after(headers: &HeaderMap, query: &StreamQuery) -> i64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(query.after)
        .unwrap_or(0)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    after: Option<i64>,
}

async fn run_events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    q: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Query(q) = q.map_err(bad_query)?;
    let check = id.clone();
    if app.with_store(move |store| Ok(store.run(&check)?)).await?.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run"));
    }
    stream(app, Some(id), start_after(&headers, &q))
}

async fn all_events(
    State(app): State<Arc<App>>,
    q: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Query(q) = q.map_err(bad_query)?;
    let after = start_after(&headers, &q);
    stream(app, None, after)
}

/// The one reader of new events for every live stream: it reads what was committed
/// after the last event it saw (one query, however many clients) and hands each event
/// to every stream. A stream that falls behind by more than the channel holds reads
/// the database again from its last event: no buffer grows with a slow client.
fn hub(
    db: PathBuf,
    durability: Durability,
    tx: tokio::sync::broadcast::Sender<Arc<Value>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = None;
    let mut store = None;
    while !*shutdown.borrow() {
        if store.is_none() {
            store = crate::store::open(&db, durability).ok();
        }
        let Some(open) = store.as_mut() else {
            std::thread::sleep(HUB_POLL * 100);
            continue;
        };
        let after = match last {
            Some(seq) => seq,
            // From now on: streams replay the past from the database themselves.
            None => match open.latest_event() {
                Ok(seq) => seq,
                Err(_) => continue,
            },
        };
        last = Some(after);
        match open.events(None, after, STREAM_PAGE) {
            Ok(events) if !events.is_empty() => {
                for event in events {
                    last = event["seq"].as_i64().or(last);
                    let _ = tx.send(Arc::new(event));
                }
            }
            Ok(_) => std::thread::sleep(HUB_POLL),
            Err(_) => {
                store = None;
                std::thread::sleep(HUB_POLL * 100);
            }
        }
    }
}

/// An SSE stream of the events after `after` (of one run, or of all): replayed from the
/// database, then live from the hub; a run's stream ends once the run has ended and
/// every event was sent.
fn stream(app: Arc<App>, run: Option<String>, after: i64) -> ApiResult {
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-streams",
            "too many event streams are open",
        ));
    };
    struct Cursor {
        app: Arc<App>,
        run: Option<String>,
        after: i64,
        pending: std::collections::VecDeque<Arc<Value>>,
        /// Subscribed before the replay starts, so that nothing falls between the two.
        live: tokio::sync::broadcast::Receiver<Arc<Value>>,
        replaying: bool,
        finished: bool,
        _permit: tokio::sync::OwnedSemaphorePermit,
    }
    let live = app.events.subscribe();
    let cursor = Cursor {
        app,
        run,
        after,
        pending: Default::default(),
        live,
        replaying: true,
        finished: false,
        _permit: permit,
    };
    let events = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(event) = c.pending.pop_front() {
                let seq = event["seq"].as_i64().unwrap_or(c.after);
                if seq <= c.after {
                    continue;
                }
                c.after = seq;
                let name = event["event"].as_str().unwrap_or("message").to_string();
                let sse = Event::default().id(seq.to_string()).event(name).data(event.to_string());
                return Some((Ok::<_, std::convert::Infallible>(sse), c));
            }
            if c.finished || *c.app.shutdown.borrow() {
                return None;
            }
            let (run, after) = (c.run.clone(), c.after);
            let status_of = |app: Arc<App>, run: Option<String>| async move {
                match run {
                    Some(id) => app
                        .with_store(move |store| {
                            Ok(store
                                .run(&id)?
                                .is_none_or(|r| !matches!(r.status, RunStatus::Running | RunStatus::Queued)))
                        })
                        .await
                        .unwrap_or(false),
                    None => false,
                }
            };
            if c.replaying {
                let read = c
                    .app
                    .with_store(move |store| {
                        // The status first: events written before a run ended are then read.
                        let ended = match &run {
                            Some(id) => store
                                .run(id)?
                                .is_none_or(|r| !matches!(r.status, RunStatus::Running | RunStatus::Queued)),
                            None => false,
                        };
                        Ok((ended, store.events(run.as_deref(), after, STREAM_PAGE)?))
                    })
                    .await;
                match read {
                    Ok((ended, events)) => {
                        let caught_up = events.len() < STREAM_PAGE;
                        c.pending.extend(events.into_iter().map(Arc::new));
                        if caught_up {
                            c.finished = ended;
                            c.replaying = false;
                        }
                    }
                    Err(_) => tokio::time::sleep(STREAM_POLL * 10).await,
                }
                continue;
            }
            let mut shutdown = c.app.shutdown.clone();
            let received = tokio::select! {
                received = c.live.recv() => received,
                _ = shutdown.changed() => return None,
            };
            match received {
                Ok(event) => {
                    if c.run.as_deref().is_some_and(|id| event["deployment"] != id) {
                        continue;
                    }
                    let terminal =
                        matches!(event["event"].as_str(), Some("run_succeeded" | "run_failed" | "run_interrupted"));
                    c.pending.push_back(event);
                    if terminal && status_of(c.app.clone(), c.run.clone()).await {
                        c.finished = true;
                    }
                }
                // Too far behind the hub: read the database again from the last event sent.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.replaying = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/v1/pipelines", get(pipelines))
        .route("/api/v1/runs", get(runs).post(start_run))
        .route("/api/v1/runs/{id}", get(run))
        .route("/api/v1/runs/{id}/cancel", post(cancel))
        .route("/api/v1/runs/{id}/resume", post(resume))
        .route("/api/v1/runs/{id}/nodes/{node}/log", get(node_log))
        .route("/api/v1/runs/{id}/events", get(run_events))
        .route("/api/v1/events", get(all_events))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), authorize));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/hooks/{trigger}", post(hook))
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(app)
}

/// Serves until SIGTERM or SIGINT: then it stops taking requests, ends the event
/// streams, and returns.
pub fn serve(options: Options, ready: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let app = Arc::new(App {
            data_dir: options.data_dir.clone(),
            db: options.db,
            durability: options.durability,
            pipelines: options.pipelines,
            streams: Arc::new(tokio::sync::Semaphore::new(options.max_streams)),
            shutdown: shutdown.clone(),
            queued: Arc::new(Wake::default()),
            events: tokio::sync::broadcast::channel(HUB_CAPACITY).0,
            triggers: options.triggers,
            drain_runs: tokio::sync::watch::channel(false).0,
            stop_runs: tokio::sync::watch::channel(false).0,
        });
        let hub_thread = {
            let (db, durability, tx) = (app.db.clone(), app.durability, app.events.clone());
            std::thread::spawn(move || hub(db, durability, tx, shutdown))
        };
        // Interrupted runs whose holder is gone go to the workers first.
        let requeued = app
            .with_store(|store| {
                crate::engine::lease::reap(store, crate::clock::now_ms())?;
                let mut ids = Vec::new();
                for run in store.runs()?.into_iter().rev().filter(|r| r.status == RunStatus::Interrupted) {
                    match crate::engine::requeue(store, &run.id, None) {
                        Ok(()) => ids.push(run.id),
                        Err(e) => tracing::warn!(run = %run.id, error = %e, "Could not resume it."),
                    }
                }
                Ok(ids)
            })
            .await
            .map_err(|e| e.message)?;
        if !requeued.is_empty() {
            tracing::warn!(runs = ?requeued, "Resuming the runs interrupted before this start.");
        }
        let workers: Vec<_> = (0..options.workers.max(1))
            .map(|_| {
                let (app, data_dir) = (app.clone(), options.data_dir.clone());
                std::thread::spawn(move || worker(app, data_dir))
            })
            .collect();
        ready(address);
        let signals = async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("Stopping: no new requests or runs; event streams end.");
            let _ = stop.send(true);
        };
        let (waker, halting) = (app.queued.clone(), app.clone());
        let served =
            axum::serve(listener, router(app)).with_graceful_shutdown(signals).await.map_err(|e| e.to_string());
        // The running nodes get the grace period to finish (nothing new starts); then
        // they are stopped. What did not finish is left interrupted, resumed at the next
        // start.
        let _ = halting.drain_runs.send(true);
        let grace = options.shutdown_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = halting.stop_runs.send(true);
        });
        waker.bump();
        for worker in workers.into_iter().chain([hub_thread]) {
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        }
        served
    })
}
