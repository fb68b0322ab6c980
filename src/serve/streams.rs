//! Event streams. One hub reads new events for every stream (and wakes the followed
//! logs, [`super::follow`]); a stream replays what it missed from the database first.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::Value;

use super::{ApiError, ApiResult, App, HUB_POLL, STREAM_PAGE, STREAM_POLL, bad_query};
use crate::store::{Durability, RunStatus};

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
pub(super) struct StreamQuery {
    after: Option<i64>,
}

pub(super) async fn run_events(
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

pub(super) async fn all_events(
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
pub(super) fn hub(
    db: PathBuf,
    durability: Durability,
    tx: tokio::sync::broadcast::Sender<Arc<Value>>,
    wake: Arc<super::workers::Wake>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = None;
    let mut store = None;
    while !*shutdown.borrow() {
        if store.is_none() {
            store = crate::app::Db::new(&db, durability).open().ok();
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
                // A run queued, or one that ended (its target is free), by any process
                // on the database: the workers look again at once.
                let news = events.iter().any(|e| {
                    matches!(
                        e["event"].as_str(),
                        Some("run_queued" | "run_succeeded" | "run_failed" | "run_interrupted")
                    )
                });
                for event in events {
                    last = event["seq"].as_i64().or(last);
                    let _ = tx.send(Arc::new(event));
                }
                if news {
                    wake.bump();
                }
            }
            Ok(_) => open.wait_for_events(HUB_POLL),
            Err(_) => {
                store = None;
                std::thread::sleep(HUB_POLL * 100);
            }
        }
    }
}

/// One of the `--max-streams` places, for an event stream or a followed log; 503 when
/// none is free.
pub(super) fn stream_permit(app: &Arc<App>) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    app.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-streams",
            "too many event streams and followed logs are open (--max-streams); close one, or try again later",
        )
    })
}

/// An SSE stream of the events after `after` (of one run, or of all): replayed from the
/// database, then live from the hub; a run's stream ends once the run has ended and
/// every event was sent.
fn stream(app: Arc<App>, run: Option<String>, after: i64) -> ApiResult {
    let permit = stream_permit(&app)?;
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
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(
                        after = c.after,
                        missed,
                        "An event stream fell behind: it reads the database again."
                    );
                    c.replaying = true;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}
