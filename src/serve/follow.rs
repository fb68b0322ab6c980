//! Node logs, whole or followed. A followed log is one of the `--max-streams` streams;
//! it is pushed, not polled: it wakes when its run's log folder changes (one file
//! watcher for the server, one watch per followed run), when an event of its run comes
//! through the hub, and otherwise once a second (the file watcher may be unavailable,
//! or the folder not made yet).

use std::collections::{HashMap, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::{ApiError, ApiResult, App, bad_query};
use crate::store::RunStatus;

/// The longest a follower sleeps without looking at its log and its run.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    #[serde(default)]
    follow: bool,
}

/// `GET /api/v1/runs/{id}/nodes/{node}/log[?follow=true]`: the node's log (masked, as
/// recorded); followed, it goes on until the run ends.
pub(super) async fn node_log(
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
    let folder = app.data_dir.join("logs").join(&id);
    let path = folder.join(format!("{node}.log"));
    if !q.follow {
        let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
        return Ok(([("content-type", "text/plain; charset=utf-8")], text).into_response());
    }
    let permit = super::streams::stream_permit(&app)?;
    // Subscribed before the first read, so that no write falls between the two.
    let watch = app.logs.follow(&folder);
    let live = app.events.subscribe();
    let tail = Tail { app, id, path, offset: 0, look: true, done: false, watch, live, _permit: permit };
    let body = futures_util::stream::unfold(tail, |mut t| async move {
        let chunk = t.next().await?;
        Some((Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(chunk)), t))
    });
    Ok(([("content-type", "text/plain; charset=utf-8")], axum::body::Body::from_stream(body)).into_response())
}

/// `GET /api/v1/runs/{id}/nodes/{node}/log/times`: when the log's lines were written,
/// `{"times": [[byte offset, unix ms], ...], "size": bytes}`: one time a second of
/// output, at the line that started in it; the lines after `size` have none yet.
pub(super) async fn node_log_times(State(app): State<Arc<App>>, Path((id, node)): Path<(String, String)>) -> ApiResult {
    if node.contains('/') || node.starts_with('.') || id.contains('/') || id.starts_with('.') {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-request", "not a node id"));
    }
    let check = id.clone();
    if app.with_store(move |store| Ok(store.run(&check)?)).await?.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run"));
    }
    let path = app.data_dir.join("logs").join(&id).join(format!("{node}.log"));
    let (times, size) = tokio::task::spawn_blocking(move || crate::action::log_times::read(&path))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(axum::Json(serde_json::json!({"times": times, "size": size})).into_response())
}

/// A followed log: where it was read to, and what wakes it.
struct Tail {
    app: Arc<App>,
    id: String,
    path: PathBuf,
    offset: u64,
    /// Whether to look at the run's status before the next read.
    look: bool,
    done: bool,
    watch: Following,
    live: tokio::sync::broadcast::Receiver<Arc<serde_json::Value>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Tail {
    /// The next bytes of the log; `None` once the run has ended and all was sent.
    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.done {
                return None;
            }
            // The status first: what was written before the run ended is then read.
            let ended = self.look && {
                self.look = false;
                let id = self.id.clone();
                self.app
                    .with_store(move |store| {
                        Ok(store.run(&id)?.is_none_or(|r| !matches!(r.status, RunStatus::Running | RunStatus::Queued)))
                    })
                    .await
                    .unwrap_or(true)
            };
            let chunk = read_from(&self.path, self.offset).await;
            if !chunk.is_empty() {
                self.offset += chunk.len() as u64;
                // Ended with more to send: sent whole, then ended.
                self.look |= ended;
                return Some(chunk);
            }
            if ended || *self.app.shutdown.borrow() {
                self.done = true;
                continue;
            }
            self.wait().await;
        }
    }

    /// Until the log's folder changes, an event of the run comes, the server stops or
    /// [`FOLLOW_POLL`] passes.
    async fn wait(&mut self) {
        self.watch.ensure();
        let deadline = tokio::time::Instant::now() + FOLLOW_POLL;
        let mut shutdown = self.app.shutdown.clone();
        loop {
            tokio::select! {
                changed = self.watch.changed.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(deadline).await;
                        self.look = true;
                    }
                    return;
                }
                received = self.live.recv() => match received {
                    Ok(event) if event["deployment"] == self.id.as_str() => {
                        let name = event["event"].as_str().unwrap_or_default();
                        self.look = matches!(name, "run_succeeded" | "run_failed" | "run_interrupted");
                        return;
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        self.look = true;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep_until(deadline).await;
                        self.look = true;
                        return;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    self.look = true;
                    return;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn read_from(path: &FsPath, offset: u64) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut file) = tokio::fs::File::open(path).await else { return Vec::new() };
    if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return Vec::new();
    }
    let mut chunk = Vec::new();
    let _ = file.take(64 * 1024).read_to_end(&mut chunk).await;
    chunk
}

/// The log folders being followed, and the one file watcher (made at the first
/// follower; none when the system refuses one) that says when they change.
#[derive(Default)]
pub(super) struct LogWatch {
    inner: Arc<Inner>,
}

/// Per followed folder: how many follow it, and the counter of its changes.
type Folders = HashMap<PathBuf, (usize, tokio::sync::watch::Sender<u64>)>;

#[derive(Default)]
struct Inner {
    /// Per followed folder: its followers, and a counter bumped at each change in it.
    /// Only this lock is taken by the watcher's thread.
    folders: Arc<Mutex<Folders>>,
    watching: Mutex<Watching>,
}

#[derive(Default)]
struct Watching {
    watcher: Option<notify::RecommendedWatcher>,
    /// Made once: a failure is not tried again.
    tried: bool,
    watched: HashSet<PathBuf>,
}

impl LogWatch {
    /// Follows `folder`'s changes (watched at once if it exists, else at
    /// [`Following::ensure`]).
    pub(super) fn follow(&self, folder: &FsPath) -> Following {
        let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
        let changed = {
            let mut folders = lock(&self.inner.folders);
            let entry = folders.entry(folder.clone()).or_insert_with(|| (0, tokio::sync::watch::Sender::new(0)));
            entry.0 += 1;
            entry.1.subscribe()
        };
        let following = Following { inner: self.inner.clone(), folder, changed };
        following.ensure();
        following
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One follower of a log folder; it stops being followed when the last one goes.
pub(super) struct Following {
    inner: Arc<Inner>,
    folder: PathBuf,
    changed: tokio::sync::watch::Receiver<u64>,
}

impl Following {
    /// Watches the folder, if it is not watched yet and exists now. (Watching and
    /// unwatching wait for the watcher's thread, which takes only the folders' lock:
    /// that lock is never held here meanwhile.)
    fn ensure(&self) {
        let mut w = lock(&self.inner.watching);
        if w.watched.contains(&self.folder) || !self.folder.is_dir() {
            return;
        }
        if !w.tried {
            w.tried = true;
            let folders = self.inner.folders.clone();
            match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                // A follower's own reads (opening, reading, closing) change nothing; waking
                // on them would have every follower wake every other, without end.
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                let folders = lock(&folders);
                for path in &event.paths {
                    for folder in [Some(path.as_path()), path.parent()].into_iter().flatten() {
                        if let Some((_, changed)) = folders.get(folder) {
                            changed.send_modify(|n| *n += 1);
                        }
                    }
                }
            }) {
                Ok(watcher) => w.watcher = Some(watcher),
                Err(e) => tracing::warn!(error = %e, "Cannot watch log files: followed logs are read every second."),
            }
        }
        let Some(watcher) = w.watcher.as_mut() else { return };
        use notify::Watcher;
        if watcher.watch(&self.folder, notify::RecursiveMode::NonRecursive).is_ok() {
            w.watched.insert(self.folder.clone());
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut w = lock(&self.inner.watching);
        let last = {
            let mut folders = lock(&self.inner.folders);
            let entry = folders.get_mut(&self.folder).map(|e| {
                e.0 -= 1;
                e.0
            });
            if entry == Some(0) {
                folders.remove(&self.folder);
            }
            entry == Some(0)
        };
        if last && w.watched.remove(&self.folder) {
            use notify::Watcher;
            if let Some(watcher) = w.watcher.as_mut() {
                let _ = watcher.unwatch(&self.folder);
            }
        }
    }
}
