//! Which process holds a run. A holder heart-beats; a holder on this machine whose
//! process is gone is detected at once (pid and start time), without waiting for its
//! heartbeat to go stale.

use crate::process;
use crate::store::{Lease, RunRow, RunStatus, Store, StoreError, Write};

/// A heartbeat older than this means the holder (on another machine) is gone: the
/// lease time, unless `PHASED_LEASE_TIME` (a duration: `30s`) says otherwise.
pub const STALE_MS: i64 = 15_000;

/// The lease time in milliseconds: `PHASED_LEASE_TIME`, else [`STALE_MS`]. Every
/// process on a database should agree (a holder heart-beats every second).
pub fn lease_ms() -> i64 {
    static LEASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *LEASE.get_or_init(|| {
        let given = std::env::var("PHASED_LEASE_TIME").ok().filter(|v| !v.trim().is_empty());
        match given.as_deref().map(crate::duration::Duration::parse) {
            Some(Ok(d)) if d.0.as_millis() >= 3_000 => d.0.as_millis() as i64,
            Some(_) => {
                tracing::warn!(given = ?given, "PHASED_LEASE_TIME is not a duration of 3s or more; using 15s.");
                STALE_MS
            }
            None => STALE_MS,
        }
    })
}

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
    row.heartbeat_at.is_some_and(|at| now_ms - at < lease_ms())
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
