//! Which process holds a run. A holder heart-beats; a holder on this machine whose
//! process is gone is detected at once (pid and start time), without waiting for its
//! heartbeat to go stale.

use crate::process;
use crate::store::{Lease, RunRow, RunStatus, Store, StoreError, Write};

/// A heartbeat older than this means the holder (on another machine) is gone.
pub const STALE_MS: i64 = 15_000;

/// The lease this process takes on the runs it executes.
pub fn this_process() -> Lease {
    let pid = std::process::id();
    Lease {
        owner: uuid::Uuid::new_v4().to_string(),
        pid,
        pid_start: process::start_time(pid).unwrap_or(0),
        host: process::hostname(),
    }
}

/// Whether the holder of `row` is still alive.
pub fn holder_alive(row: &RunRow, now_ms: i64) -> bool {
    let Some(lease) = &row.lease else { return false };
    if lease.host == process::hostname() {
        return process::alive(lease.pid, lease.pid_start);
    }
    row.heartbeat_at.is_some_and(|at| now_ms - at < STALE_MS)
}

/// Marks `running` runs (and `queued` ones a process waited for) whose holder is gone
/// as `interrupted`; returns their ids.
pub fn reap(store: &mut dyn Store, now_ms: i64) -> Result<Vec<String>, StoreError> {
    let dead: Vec<String> = store
        .runs()?
        .into_iter()
        .filter(|r| {
            let held = r.status == RunStatus::Running || r.status == RunStatus::Queued && r.lease.is_some();
            held && !holder_alive(r, now_ms)
        })
        .map(|r| r.id)
        .collect();
    let writes: Vec<Write> = dead
        .iter()
        .map(|id| Write::Status {
            run: id.clone(),
            status: RunStatus::Interrupted,
            error: Some("the process running it stopped".into()),
            finished: None,
        })
        .collect();
    store.write(&writes)?;
    Ok(dead)
}
