//! The workers: threads that take queued runs from the database and run them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::App;
use crate::store::RunStatus;

/// A counter workers wait on: each queued run (or the shutdown) bumps it.
#[derive(Default)]
pub(super) struct Wake {
    count: std::sync::Mutex<u64>,
    changed: std::sync::Condvar,
}

impl Wake {
    pub(super) fn bump(&self) {
        *self.count.lock().expect("wake lock") += 1;
        self.changed.notify_all();
    }

    /// Waits until bumped past `seen`, or `limit`; returns the count.
    pub(super) fn wait(&self, seen: u64, limit: Duration) -> u64 {
        let guard = self.count.lock().expect("wake lock");
        let (guard, _) = self.changed.wait_timeout_while(guard, limit, |c| *c == seen).expect("wake lock");
        *guard
    }
}

/// A worker: takes the oldest run queued for workers whose target is free, runs it on
/// this thread ([`crate::seam::block_on`]), and so on until the server stops.
pub(super) fn worker(app: Arc<App>, data_dir: PathBuf) {
    let mut seen = 0;
    while !*app.shutdown.borrow() {
        let lease = crate::engine::lease::this_process();
        let held_since = crate::process::monotonic_ms();
        let now = crate::clock::now_ms();
        let claimed = crate::store::open(&app.db, app.durability).and_then(|mut store| {
            Ok((store.claim_next(&lease, now, &|r| crate::engine::lease::holder_alive(r, now))?, store))
        });
        match claimed {
            Ok((Some(row), store)) => {
                let id = row.id.clone();
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
                    // The server's webhook keys are its own: never a run's.
                    secrets: crate::secrets::Secrets::from_env().without(super::webhook::keys_of(&app.triggers)),
                    reporter: &mut reporter,
                    data_dir: data_dir.clone(),
                    stop: Some(halt),
                };
                // The run's store calls block this thread, outside the runtime its steps run on.
                match crate::seam::block_on(crate::engine::run_claimed(store, row, lease, held_since, options)) {
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
