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

    /// How many bumps so far.
    fn count(&self) -> u64 {
        *self.count.lock().expect("wake lock")
    }

    /// Waits until bumped past `seen`, or `limit`.
    fn wait(&self, seen: u64, limit: Duration) {
        let guard = self.count.lock().expect("wake lock");
        drop(self.changed.wait_timeout_while(guard, limit, |c| *c == seen).expect("wake lock"));
    }
}

/// A worker: takes the oldest run queued for workers whose target is free, runs it on
/// this thread ([`crate::seam::block_on`]), and so on until the server stops.
pub(super) fn worker(app: Arc<App>, data_dir: PathBuf) {
    // The store it claims with, kept while it waits: opening one is off the path from
    // a run's POST to its start (on PostgreSQL a connection, some milliseconds). A
    // claimed run takes it along; the next is opened once that run ends.
    let mut idle: Option<Box<dyn crate::store::Store>> = None;
    while !*app.shutdown.borrow() {
        let lease = crate::engine::lease::this_process();
        let held_since = crate::process::monotonic_ms();
        let now = crate::clock::now_ms();
        // The bumps this claim answers: those before it. One while it looks (or while
        // the run it takes runs) is looked at again after.
        let seen = app.queued.count();
        let store = idle.take().map_or_else(|| crate::store::open(&app.db, app.durability), Ok);
        let claimed = store.and_then(|mut store| {
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
            Ok((None, store)) => {
                idle = Some(store);
                app.queued.wait(seen, Duration::from_millis(500));
            }
            Err(e) => {
                tracing::warn!(error = %e, "Worker cannot reach the database.");
                app.queued.wait(seen, Duration::from_secs(1));
            }
        }
    }
}
