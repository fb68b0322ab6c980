//! Which process holds a run. A holder heart-beats; a holder on this machine whose
//! process is gone is detected at once (pid and start time), without waiting for its
//! heartbeat to go stale.

use crate::process;
use crate::store::{Lease, RunRow, RunStatus, Store, StoreError, Write};

pub use crate::model::{STALE_MS, lease_ms};

/// How long a holder may go without renewing its lease before its steps get SIGTERM:
/// the lease time less a margin (a quarter of it, at least a second). SIGKILL follows
/// half the margin later, so that a holder's steps are gone before any other process
/// can see the lease expire (it waits the full lease time since the last heartbeat).
pub fn fence_ms() -> i64 {
    lease_ms() - margin_ms()
}

fn margin_ms() -> i64 {
    (lease_ms() / 4).max(1_000)
}

/// How much newer a renewal must be than the last one the supervisor was told of.
const RETELL_MS: i64 = 250;

/// The self-fence of a run this process holds. The supervisor (a process of its own,
/// which a pause of phased does not stop) is given the moment the run's steps must
/// stop unless the lease is renewed first; each renewal moves it. Once passed, the
/// holder gives the run up: it starts nothing more and writes nothing more, since
/// another process may take the run over once the lease expires.
pub(crate) struct Fence {
    run: String,
    key: String,
    /// When (monotonic ms) the last renewal the supervisor was told of began.
    renewed: i64,
    /// The fence was passed: the holder has given the run up, for good.
    passed: bool,
}

impl Fence {
    /// The fence of run `run` (key `key`, see [`process::run_key`]), whose lease was
    /// taken or last renewed by a write that began at `held_since` (monotonic ms).
    pub(crate) fn new(run: &str, key: &str, held_since: i64) -> Fence {
        let fence = Fence { run: run.to_string(), key: key.to_string(), renewed: held_since, passed: false };
        fence.tell();
        fence
    }

    fn term_at(&self) -> i64 {
        self.renewed + fence_ms()
    }

    fn tell(&self) {
        process::fence(&self.key, self.term_at(), self.term_at() + margin_ms() / 2);
    }

    /// Whether the fence was passed (then for good).
    pub(crate) fn passed(&mut self) -> bool {
        self.passed = self.passed || process::monotonic_ms() >= self.term_at();
        self.passed
    }

    /// A write that began at `began` renewed the lease: the fence moves, unless it was
    /// passed while the write was under way (the supervisor may have stopped the steps).
    pub(crate) fn renewed(&mut self, began: i64) -> Result<(), StoreError> {
        let was = self.term_at();
        // A busy run writes many batches a second: the supervisor hears of a renewal
        // every quarter of a second at most (the fence is that much earlier, no later).
        if began >= self.renewed + RETELL_MS {
            self.renewed = began;
            self.tell();
        }
        // Read after the supervisor was told: before its deadline, the supervisor (which
        // reads the clock before its pipe) sees the new one in time.
        if self.passed || process::monotonic_ms() >= was {
            self.passed = true;
            return Err(self.error());
        }
        Ok(())
    }

    /// What a holder that passed its fence says.
    pub(crate) fn error(&self) -> StoreError {
        StoreError::Fenced {
            run: self.run.clone(),
            silent_ms: process::monotonic_ms() - self.renewed,
            lease_ms: lease_ms(),
        }
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        process::unfence(&self.key);
    }
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

/// The leases (owners) this process gave up when it passed their fence: it lives on
/// (a server), but no longer holds them.
static GIVEN_UP: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// This process gives up the lease `owner` (it passed its fence): its own workers judge
/// that lease by its heartbeat from now on, as another machine's, and take the run over
/// once it has expired, instead of waiting for this process to die.
pub(crate) fn give_up(owner: &str) {
    GIVEN_UP.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(owner.to_string());
}

fn given_up(owner: &str) -> bool {
    GIVEN_UP.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().any(|o| o == owner)
}

/// Whether the holder of `row` is still alive.
pub fn holder_alive(row: &RunRow, now_ms: i64) -> bool {
    let Some(lease) = &row.lease else { return false };
    if lease.host == process::hostname() && !given_up(&lease.owner) {
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
