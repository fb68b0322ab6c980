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
//! Limits: a body of at most 1 MiB, `--request-timeout` to answer, `--max-streams`
//! event streams and followed logs at once, and the connections' limits ([`conn`]):
//! timeouts, caps, and descriptors kept for the runs.

pub mod auth;
mod conn;
mod deploy;
mod follow;
mod metrics;
mod push;
mod refused;
mod runs;
mod streams;
pub mod triggers;
mod ui;
mod webhook;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::store::{Durability, Role, Store, StoreError, TokenRow};

pub use conn::Limits;

/// A tenth of how long a stream waits before it reads the database again after an
/// error.
const STREAM_POLL: Duration = Duration::from_millis(50);

/// How often the hub looks for newly committed events (one query for every client).
const HUB_POLL: Duration = Duration::from_millis(5);

/// Events the hub holds for streams that are behind; one further behind reads the
/// database instead. `PHASED_HUB_CAPACITY` changes it (the tests make it tiny, so that
/// streams fall behind).
const HUB_CAPACITY: usize = 4096;

fn hub_capacity() -> usize {
    std::env::var("PHASED_HUB_CAPACITY").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(HUB_CAPACITY)
}

/// How often the server looks for notifications that are due.
const NOTIFY_POLL: Duration = Duration::from_secs(1);

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
    /// Folders besides the data folder that paths from the API and webhooks may name.
    pub allow_paths: Vec<PathBuf>,
    /// Git push webhooks, by name (`POST /hooks/{name}`).
    pub triggers: indexmap::IndexMap<String, triggers::Trigger>,
    /// On SIGTERM, how long running nodes get to finish before they are stopped.
    pub shutdown_grace: Duration,
    /// How long a request may take to be answered (its body read, its head written).
    pub request_timeout: Duration,
    /// The server's address as its users reach it (behind a proxy): the dashboard's
    /// origin.
    pub public_url: Option<String>,
    /// Where notifications may go (public addresses only, unless the operator allows more).
    pub(crate) notify: crate::notify::Guard,
    /// How long connections may wait, and how many there may be.
    pub connections: Limits,
    /// `/metrics` without a token.
    pub public_metrics: bool,
}

struct App {
    db: PathBuf,
    data_dir: PathBuf,
    /// Where paths from the API and webhooks may point ([`crate::admit`]).
    roots: crate::admit::Roots,
    durability: Durability,
    pipelines: PathBuf,
    streams: Arc<tokio::sync::Semaphore>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Wakes the workers when a run is queued.
    queued: Arc<workers::Wake>,
    /// New events, read once by the hub, for every live stream.
    events: tokio::sync::broadcast::Sender<Arc<Value>>,
    triggers: indexmap::IndexMap<String, triggers::Trigger>,
    /// Set on SIGTERM: the runs start no new node.
    drain_runs: tokio::sync::watch::Sender<bool>,
    /// Set after the grace period: the runs stop their running nodes.
    stop_runs: tokio::sync::watch::Sender<bool>,
    request_timeout: Duration,
    /// The requests' database connections: at most [`STORES`] at once (more wait their
    /// turn), so that many clients cannot take the descriptors the runs need.
    stores: crate::seam::Stores,
    public_url: Option<String>,
    /// The followed log folders.
    logs: follow::LogWatch,
    /// When this server last recorded each token's use (by name).
    touched: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    public_metrics: bool,
}

/// The most database connections the requests use at once (more wait their turn).
const STORES: usize = 16;

/// A token's last use is recorded at most this often (not at each request).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

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
    /// Runs `f` on a store of the pool, off the async threads (a store blocks).
    async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut dyn Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        match self.stores.call(f).await {
            Ok(answer) => answer,
            Err(crate::seam::CallError::Store(e)) => Err(e.into()),
            Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
        }
    }

    /// Records the use of `token` (for `phased token list`), unless this server or
    /// another did less than [`TOUCH_EVERY`] ago; in the background: a request never
    /// waits for it, nor fails with it.
    fn touch(self: &Arc<Self>, token: &TokenRow) {
        let recent = token
            .last_used_at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339(at).ok())
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|ago| ago < TOUCH_EVERY);
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        if recent || touched.get(&token.name).is_some_and(|at| at.elapsed() < TOUCH_EVERY) {
            return;
        }
        touched.insert(token.name.clone(), std::time::Instant::now());
        let (app, name, at) = (self.clone(), token.name.clone(), crate::clock::now());
        tokio::spawn(async move {
            if let Err(e) = app.with_store(move |store| Ok(store.touch_token(&name, &at)?)).await {
                tracing::debug!(error = %e.message, "Could not record a token's use.");
            }
        });
    }
}

/// The role a request needs: reading needs `read`, changing anything `deploy`.
fn needed(method: &Method) -> Role {
    if method == Method::GET || method == Method::HEAD { Role::Read } else { Role::Deploy }
}

/// Checks the token of every `/api/` request before its handler (and its body) runs:
/// an `Authorization: Bearer` header, else the dashboard's session cookie, with which
/// a request that changes anything must come from a page of this server (403 else).
/// The token is handed to the handler.
async fn authorize(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let header = request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let session = if header.is_none() { auth::session_of(request.headers()) } else { None };
    let need = needed(request.method());
    if session.is_some() && need >= Role::Deploy && !auth::same_origin(request.headers(), app.public_url.as_deref()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin",
            "a change made with a dashboard session must come from the dashboard's own page",
        )
        .into_response();
    }
    let now = crate::clock::now_ms();
    let verdict = app
        .with_store(move |store| match &session {
            Some(secret) => Ok(auth::check_session(store, secret, need, now)?),
            None => Ok(auth::check(store, header.as_deref(), need)?),
        })
        .await;
    match verdict {
        Ok(Ok(token)) => {
            app.touch(&token);
            request.extensions_mut().insert(token);
            next.run(request).await
        }
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

/// Answers 408 to a request not answered in time (a body sent too slowly, a database
/// locked too long). A stream's head is its answer: what follows is not timed.
async fn time_limit(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(app.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            format!("the request was not complete within {:?} (--request-timeout)", app.request_timeout),
        )
        .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/v1/pipelines", get(runs::pipelines))
        .route("/api/v1/runs", get(runs::runs).post(runs::start_run))
        .route("/api/v1/plan", post(deploy::plan))
        .route("/api/v1/session", get(ui::whoami))
        .route("/api/v1/runs/{id}", get(runs::run))
        .route("/api/v1/runs/{id}/graph", get(runs::graph))
        .route("/api/v1/targets/{target}/releases", get(runs::releases))
        .route("/api/v1/targets/{target}/rollback", post(runs::rollback))
        .route("/api/v1/stats", get(runs::stats))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/api/v1/runs/{id}/resume", post(runs::resume))
        .route("/api/v1/runs/{id}/nodes/{node}/log", get(follow::node_log))
        .route("/api/v1/runs/{id}/nodes/{node}/log/times", get(follow::node_log_times))
        .route("/api/v1/runs/{id}/events", get(streams::run_events))
        .route("/api/v1/events", get(streams::all_events))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), authorize));
    // Metrics name every pipeline and node: a `read` token sees them, unless
    // `--public-metrics`.
    let metrics = Router::new().route("/metrics", get(metrics::metrics));
    let metrics = if app.public_metrics {
        metrics
    } else {
        metrics.route_layer(axum::middleware::from_fn_with_state(app.clone(), authorize))
    };
    Router::new()
        .route("/", get(ui::page))
        .route("/ui/{file}", get(ui::asset))
        .route("/session", post(ui::sign_in).delete(ui::sign_out))
        .route("/healthz", get(healthz))
        .route("/hooks/{trigger}", post(webhook::hook))
        .merge(metrics)
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .layer(axum::middleware::from_fn_with_state(app.clone(), time_limit))
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
        // The signal handlers come first: from the moment the port accepts a connection
        // (a client or a probe may take that for "up"), SIGTERM and SIGINT end the server
        // gracefully, even while it is still starting; before, they would kill it.
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        let listener = conn::listen(options.listen).map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let stores = crate::seam::Stores::new(options.db.clone(), options.durability, STORES);
        let app = Arc::new(App {
            roots: crate::admit::Roots::new(&options.data_dir, &options.allow_paths),
            data_dir: options.data_dir.clone(),
            db: options.db,
            durability: options.durability,
            pipelines: options.pipelines,
            streams: Arc::new(tokio::sync::Semaphore::new(options.max_streams)),
            shutdown: shutdown.clone(),
            queued: Arc::new(workers::Wake::default()),
            events: tokio::sync::broadcast::channel(hub_capacity()).0,
            triggers: options.triggers,
            drain_runs: tokio::sync::watch::channel(false).0,
            stop_runs: tokio::sync::watch::channel(false).0,
            request_timeout: options.request_timeout,
            stores,
            public_url: options.public_url,
            logs: Default::default(),
            touched: Default::default(),
            public_metrics: options.public_metrics,
        });
        // Notifications: the outbox of every run, whoever ran it, sent as they come due.
        let notifier = {
            let hook_keys: Vec<String> = webhook::keys_of(&app.triggers).into_iter().map(String::from).collect();
            let (db, durability, mut stop) = (app.db.clone(), app.durability, shutdown.clone());
            let guard = options.notify.clone();
            std::thread::spawn(move || {
                let secrets = crate::secrets::Secrets::from_env().without(hook_keys.iter().map(String::as_str));
                crate::seam::block_on(async move {
                    let sending = crate::notify::Sending::PATIENT;
                    while !*stop.borrow() {
                        if let Ok(mut store) = crate::store::open(&db, durability) {
                            match crate::notify::deliver_due(store.as_mut(), &secrets, &guard, None, sending).await {
                                Ok(pass) => {
                                    for n in &pass.failed {
                                        let line = crate::notify::undelivered_line(n, "retried after its backoff");
                                        tracing::warn!("{line}");
                                    }
                                }
                                Err(e) => tracing::warn!(error = %e, "Could not read the notifications."),
                            }
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(NOTIFY_POLL) => {}
                            _ = stop.changed() => {}
                        }
                    }
                });
            })
        };
        let hub_thread = {
            let (db, durability, tx, wake) = (app.db.clone(), app.durability, app.events.clone(), app.queued.clone());
            std::thread::spawn(move || streams::hub(db, durability, tx, wake, shutdown))
        };
        // Interrupted runs whose holder is gone go to the workers first.
        let requeued = app
            .with_store(|store| {
                let interrupted = crate::app::runs::interrupted(store).map_err(|e| match e {
                    crate::app::Error::Store(e) => ApiError::from(e),
                    e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
                })?;
                let mut ids = Vec::new();
                for run in interrupted {
                    match crate::app::runs::requeue(store, &run, None) {
                        Ok(()) => ids.push(run),
                        Err(e) => tracing::warn!(run = %run, error = %e, "Could not resume it."),
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
                std::thread::spawn(move || workers::worker(app, data_dir))
            })
            .collect();
        let (allowed, why) = conn::room(&options.connections, options.workers.max(1), STORES);
        match why {
            Some((true, why)) => tracing::warn!("{why}"),
            Some((false, why)) => tracing::info!("{why}"),
            None => {}
        }
        ready(address);
        let signals = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("Stopping: no new requests or runs; event streams end.");
            let _ = stop.send(true);
        };
        let (waker, halting) = (app.queued.clone(), app.clone());
        tokio::spawn(signals);
        let stopping = app.shutdown.clone();
        conn::serve(listener, router(app), options.connections, allowed, stopping).await;
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
        for worker in workers.into_iter().chain([hub_thread, notifier]) {
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        }
        Ok(())
    })
}
