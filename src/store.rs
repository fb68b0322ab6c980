//! The store: runs (`deployments`), phase history, node checkpoints, events and the
//! pipeline snapshots runs started from, behind one interface ([`Store`], the traits
//! of each concern gathered) so that another database can fill it. SQLite
//! ([`SqliteStore`]) is the default; PostgreSQL ([`PgStore`]) runs the same SQL
//! (`sql.rs`: the dialect seam; each concern's interface implemented once, in its
//! own file, over `backend.rs`). One
//! connection per store, owned by whoever holds it (the engine's driver during a run);
//! the writes of one batch go in one transaction.

mod backend;
mod columns;
pub mod copy;
mod events;
mod migrations;
mod postgres;
mod queue;
mod rows;
mod runs;
mod service;
mod sql;
mod sqlite;
mod stats;
mod write;

/// The store's traits, for code that calls them on a concrete store or a generic one
/// (`dyn Store` needs no import).
pub mod prelude {
    pub use super::{EventStore, OutboxStore, RunStore, ServiceStore, StatsStore, Store};
}

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use crate::model::{
    Admission, HistoryRow, Lease, NewRun, NodeRow, NodeStatus, NotificationRow, Role, RunRow, RunStatus, StopRequest,
    TokenRow, Write,
};
pub(crate) use postgres::redact;
pub use postgres::{PgStore, is_url};
pub use rows::ClaimError;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database `{path}`: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("cannot create the folder of the database `{path}`: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("the database `{path}` has schema version {found}, newer than this phased ({supported})")]
    TooNew { path: PathBuf, found: i64, supported: i64 },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("`{url}` is not a PostgreSQL URL phased can use: {source}")]
    Url { url: String, source: tokio_postgres::Error },
    #[error("cannot connect to the PostgreSQL database `{url}`: {}", pg_message(source))]
    Connect { url: String, source: tokio_postgres::Error },
    #[error("cannot set up TLS for PostgreSQL: {0}")]
    Tls(String),
    #[error("database error: {}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A write of a holder whose lease another process has taken (its heartbeat came
    /// too late): refused, so that only one process records a run.
    #[error("run `{run}` is no longer held by this process: another took it over after its heartbeat went stale")]
    LeaseLost { run: String },
    /// A holder that could not renew its lease in time (paused, or its database
    /// unreachable) had its steps stopped, and gives the run up without writing.
    #[error(
        "run `{run}` is no longer held by this process: it could not renew its lease for {:.1} s, so its steps \
         were stopped before the lease ({:.0} s) could expire and another process take the run over; it recorded \
         nothing more",
        *.silent_ms as f64 / 1000.0,
        *.lease_ms as f64 / 1000.0
    )]
    Fenced { run: String, silent_ms: i64, lease_ms: i64 },
}

/// A PostgreSQL error as the server put it (its message and detail), or as the client
/// saw it (the connection's trouble).
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// What kind of trouble the database's environment is in, for messages that say what
/// to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// Its file system is full.
    Full,
    /// It (or its folder, or its file system) cannot be written.
    ReadOnly,
    Other,
}

impl StoreError {
    pub fn trouble(&self) -> Trouble {
        // SQLite says only "unable to open" for a database it may not write. The probe
        // is a file of our own in its folder (where SQLite writes its -wal and -shm),
        // never the database itself: closing a descriptor of it would drop every POSIX
        // lock this process holds on it.
        if let StoreError::Open { path, source } = self
            && source.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen)
            && path.exists()
            && !folder_writable(path)
        {
            return Trouble::ReadOnly;
        }
        let sql = match self {
            StoreError::Open { source, .. } | StoreError::Sql(source) => source,
            StoreError::Folder { source, .. } if source.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
                return Trouble::ReadOnly;
            }
            StoreError::Postgres(e) | StoreError::Connect { source: e, .. } => {
                return match e.code().map(|c| c.code()) {
                    Some("53100") => Trouble::Full,
                    Some("25006") => Trouble::ReadOnly,
                    _ => Trouble::Other,
                };
            }
            _ => return Trouble::Other,
        };
        match sql.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Trouble::Full,
            Some(rusqlite::ErrorCode::ReadOnly) => Trouble::ReadOnly,
            _ => Trouble::Other,
        }
    }

    /// The error with the database it concerns, and what to do about it.
    pub fn explain(&self, db: &Path) -> (String, &'static str) {
        match self.trouble() {
            Trouble::Full => (
                format!("the file system of the database `{}` is full ({self})", shown(db)),
                "free some space there; the run stays resumable (`phased resume ID`)",
            ),
            Trouble::ReadOnly => (
                format!("the database `{}` cannot be written: it is read-only ({self})", shown(db)),
                "read commands (`status`, `logs`) still work; to run, make it writable or pass another with --db PATH",
            ),
            Trouble::Other if matches!(self, StoreError::LeaseLost { .. } | StoreError::Fenced { .. }) => (
                format!("{self}"),
                "this process stopped its part of the run, writing nothing more; see where the run is with \
                 `phased status ID` (the lease time is PHASED_LEASE_TIME, 15s by default)",
            ),
            Trouble::Other if is_url(db) => (
                format!("{self}"),
                "check that the server is up and the URL's host, port, user, database and sslmode \
                 (PGSSLROOTCERT: the certificate to trust for TLS), or pass another with --db (or PHASED_DB)",
            ),
            Trouble::Other => (format!("{self}"), "pass another database with --db PATH (or PHASED_DB)"),
        }
    }
}

/// How a database is named in messages: its path, or its URL without the password.
pub fn shown(db: impl AsRef<Path>) -> String {
    let db = db.as_ref();
    if is_url(db) { redact(&db.to_string_lossy()) } else { db.display().to_string() }
}

/// Whether a file can be made beside `path` (the probe is removed at once).
fn folder_writable(path: &Path) -> bool {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let probe = folder.join(format!(".phased-write-probe-{}", std::process::id()));
    let made = std::fs::File::create(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    made
}

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: survives a killed process.
    Normal,
    /// `synchronous=FULL`: one fsync per commit; survives power loss.
    Full,
}

/// The upper bounds (seconds) of the duration histograms of `/metrics`.
pub const DURATION_BUCKETS: [f64; 9] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

/// A histogram of durations: how many are at most each of [`DURATION_BUCKETS`], how
/// many in all, and their sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub at_most: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// What `/metrics` reports, counted by the database.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// (pipeline, status, runs).
    pub runs: Vec<(String, String, u64)>,
    pub queued: u64,
    pub run_durations: Histogram,
    /// (pipeline, node, the durations of its finished checkpoints).
    pub node_durations: Vec<(String, String, Histogram)>,
}

/// Which runs a page lists (each `None`: any).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<String>,
    pub pipeline: Option<String>,
    pub target: Option<String>,
}

/// How long one node of one run took.
#[derive(Debug, Clone)]
pub struct NodeDuration {
    pub run: String,
    pub pipeline: String,
    pub target: Option<String>,
    pub node: String,
    pub succeeded: bool,
    pub seconds: f64,
    pub finished_at: String,
    pub error: Option<String>,
}

/// Whether the holder of a run's lease is still alive (the engine's lease check).
pub type Alive<'a> = &'a (dyn Fn(&RunRow) -> bool + Sync);

/// What the engine and the commands need from a database: each concern's interface,
/// which [`backend`] writes once for both databases.
pub trait Store: RunStore + EventStore + ServiceStore + OutboxStore + StatsStore + Send {}

impl<T: RunStore + EventStore + ServiceStore + OutboxStore + StatsStore + Send> Store for T {}

/// Runs and their checkpoints: creating, queueing, claiming, writing, reading and
/// deleting them, and the snapshots they start from.
pub trait RunStore {
    /// Where the database is (run keys and node logs are derived from it).
    fn path(&self) -> &Path;

    /// Stores the files a run starts with (deduplicated by content) and returns its id.
    fn save_snapshot(&mut self, hash: &str, root: &str, files: &Value, at: &str) -> Result<i64, StoreError>;

    /// The root name, hash and files of a snapshot.
    fn snapshot(&self, id: i64) -> Result<(String, String, Value), StoreError>;

    /// Creates a run, atomically with its target's queue: without a target it runs at
    /// once; with one, it runs when no other run of the target is running or queued
    /// ahead of it (held by a live process: `alive`), else it is `queued` (policy
    /// `queue`), supersedes them (`supersede`: the queued ones are cancelled, the
    /// running one asked to stop at its next node boundary) or is not created
    /// (`reject`).
    fn create_run(&mut self, run: &NewRun, alive: Alive<'_>) -> Result<Admission, StoreError>;

    /// For `phased serve`'s workers: takes a `running` run whose holder is gone
    /// (`alive`), its attempt bumped, to resume it; else the oldest run queued for
    /// workers whose target is free (status `running`, held by `lease`), if any.
    fn claim_next(&mut self, lease: &Lease, now_ms: i64, alive: Alive<'_>) -> Result<Option<RunRow>, StoreError>;

    /// For a `queued` run: runs it now (status `running`) when nothing of its target is
    /// running or queued ahead of it, else refreshes its heartbeat.
    fn admit(&mut self, id: &str, now_ms: i64, alive: Alive<'_>) -> Result<Admission, StoreError>;

    fn run_exists(&self, id: &str) -> Result<bool, StoreError>;

    /// The ids that start with `prefix` (an exact id first), at most `limit`.
    fn ids_starting_with(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError>;

    /// Applies a batch of writes in one transaction. Returns the sequence numbers the
    /// batch's events were given, in order.
    fn write(&mut self, batch: &[Write]) -> Result<Vec<i64>, StoreError>;

    fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError>;

    /// Every run, newest first.
    fn runs(&self) -> Result<Vec<RunRow>, StoreError>;

    /// A page of runs, newest first (in the order of [`RunStore::runs`]): those that
    /// pass the filter, after run `before` when given, at most `limit`.
    fn runs_page(&self, filter: &RunFilter, before: Option<&str>, limit: usize) -> Result<Vec<RunRow>, StoreError>;

    fn nodes(&self, run: &str) -> Result<Vec<NodeRow>, StoreError>;

    /// Claims a run for this process, atomically: under the write lock, the run must
    /// not be finished, and its holder (if any) must be gone (`alive` says
    /// whether a lease is still held). Bumps the attempt and clears a cancel request.
    /// Returns the run as claimed, and as it was before (to give it back unchanged).
    fn claim(&mut self, id: &str, lease: &Lease, now_ms: i64, alive: Alive<'_>)
    -> Result<(RunRow, RunRow), ClaimError>;

    /// Asks the holder of a run to stop it; marks it cancelled at once when nobody
    /// holds it. Returns the run as it is afterwards.
    fn request_cancel(&mut self, id: &str, alive: Alive<'_>) -> Result<Option<RunRow>, StoreError>;

    fn stop_requested(&self, id: &str) -> Result<StopRequest, StoreError>;

    /// Deletes runs with everything recorded about them (history, checkpoints, events),
    /// and the snapshots no run uses any more, in one transaction. Returns how many
    /// runs were deleted.
    fn delete_runs(&mut self, ids: &[String]) -> Result<usize, StoreError>;

    /// Forgets what this connection remembers of the runs it wrote to (a connection
    /// taken again from a pool may meet runs others wrote to since). The stores
    /// remember nothing now (a run's history is numbered by the database).
    fn forget_cached(&mut self) {}
}

/// The events runs emit, as streams read them.
pub trait EventStore {
    /// Stored events after sequence number `after` (of one run, or of all), oldest
    /// first, at most `limit`: each the JSON of `--format jsonl` with its `seq`.
    fn events(&self, run: Option<&str>, after: i64, limit: usize) -> Result<Vec<Value>, StoreError>;

    /// The sequence number of the newest event (0 when there is none).
    fn latest_event(&self) -> Result<i64, StoreError>;

    /// The sequence number of the newest event of one run (0 when there is none).
    fn last_event_of(&self, run: &str) -> Result<i64, StoreError>;

    /// Waits until new events may have been stored, by any process: SQLite polls
    /// (`poll`); PostgreSQL waits for the writers' `NOTIFY` (or a second at most).
    fn wait_for_events(&self, poll: std::time::Duration) {
        std::thread::sleep(poll);
    }
}

/// The tables of `phased serve`: API tokens, dashboard sessions, webhook deliveries.
pub trait ServiceStore {
    /// Records a webhook delivery; false when it was seen before (nothing to do). One
    /// seen before that queued no run and was recorded before `unqueued_before` is
    /// taken again (its handler died before queueing).
    fn record_delivery(
        &mut self,
        trigger: &str,
        delivery: &str,
        at: &str,
        unqueued_before: &str,
    ) -> Result<bool, StoreError>;

    /// Forgets a delivery that queued nothing (its run could not be queued), so that
    /// the provider's redelivery is taken.
    fn forget_delivery(&mut self, trigger: &str, delivery: &str) -> Result<(), StoreError>;

    /// The run a delivery queued.
    fn delivery_run(&mut self, trigger: &str, delivery: &str, run: &str) -> Result<(), StoreError>;

    /// Adds a token; false when the name is taken.
    fn create_token(&mut self, token: &TokenRow) -> Result<bool, StoreError>;

    /// Every token, by name.
    fn tokens(&self) -> Result<Vec<TokenRow>, StoreError>;

    /// Removes a token, and ends the dashboard sessions made with it; false when there
    /// was none of that name.
    fn revoke_token(&mut self, name: &str) -> Result<bool, StoreError>;

    /// Records a dashboard session (the hash of its cookie) made with token `token`,
    /// valid until `expires_ms`; forgets the expired ones.
    fn create_session(
        &mut self,
        hash: &str,
        token: &str,
        at: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The token of an unexpired session whose cookie hashes to `hash`.
    fn session_token(&self, hash: &str, now_ms: i64) -> Result<Option<TokenRow>, StoreError>;

    fn end_session(&mut self, hash: &str) -> Result<(), StoreError>;

    /// The token whose hash this is, if any.
    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError>;

    /// Records that token `name` was used at `at` (`phased token list` shows it).
    fn touch_token(&mut self, name: &str, at: &str) -> Result<(), StoreError>;
}

/// The outbox of `notify:` webhooks.
pub trait OutboxStore {
    /// The notifications due at `now_ms` (pending, their next attempt reached), of one
    /// run or of all, oldest first.
    fn due_notifications(&self, run: Option<&str>, now_ms: i64) -> Result<Vec<NotificationRow>, StoreError>;

    /// Takes a due notification for one attempt (its next attempt moved to `until`), so
    /// that two processes on one database never send it both; false when another
    /// process took it first.
    fn claim_notification(&mut self, id: i64, now_ms: i64, until_ms: i64) -> Result<bool, StoreError>;

    /// Records an attempt to deliver a notification: delivered, or not (with when to
    /// try again, or `None`: no attempt left).
    fn notification_attempt(
        &mut self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        next_at: Option<i64>,
        at: &str,
    ) -> Result<(), StoreError>;

    /// The notifications of a run, in order.
    fn notifications(&self, run: &str) -> Result<Vec<NotificationRow>, StoreError>;
}

/// A run's phase history, and what finished runs and nodes took.
pub trait StatsStore {
    fn history(&self, run: &str) -> Result<Vec<HistoryRow>, StoreError>;

    /// Counts for `/metrics`: runs by pipeline and status, the queue, and histograms of
    /// the durations of finished runs and nodes.
    fn metrics(&self) -> Result<Metrics, StoreError>;

    /// The durations of the finished nodes (succeeded or failed) of the newest
    /// `last_runs` finished runs (of one pipeline, or of all), newest first.
    fn node_durations(&self, pipeline: Option<&str>, last_runs: usize) -> Result<Vec<NodeDuration>, StoreError>;

    /// Runs the seed's dashboard query as written (DESIGN.md section 7).
    fn seed_query(&self, id: &str) -> Result<Vec<Value>, StoreError>;
}

/// Opens (creating it and its folder if needed) and migrates the database at `path`:
/// a SQLite file, or a PostgreSQL database when it is a `postgres://` URL (whose
/// durability is the server's).
pub fn open(path: &Path, durability: Durability) -> Result<Box<dyn Store>, StoreError> {
    if is_url(path) {
        return Ok(Box::new(PgStore::open(&path.to_string_lossy())?));
    }
    Ok(Box::new(SqliteStore::open(path, durability)?))
}

/// Opens an existing database that cannot be written (a read-only file system), for
/// reading only: nobody can write it meanwhile.
pub fn open_read_only(path: &Path) -> Result<Box<dyn Store>, StoreError> {
    Ok(Box::new(SqliteStore::open_read_only(path)?))
}
