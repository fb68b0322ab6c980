//! The seam between the store's one body of SQL and its two databases. A statement is
//! written once, with `?N` placeholders (PostgreSQL's side rewrites them to `$N` when it
//! prepares it, once per connection); [`Dialect`] gives the few pieces that differ
//! (clocks, row order, lists, locks); [`Db`] runs a statement on a SQLite connection or
//! a PostgreSQL client or transaction, with [`Param`]s that take the type of the column
//! they meet (`int4` or `int8`, `text` or `jsonb`) and rows read back as [`Cell`]s.

mod lite;
mod pg;

use serde_json::Value;

pub(crate) use lite::Lite;
pub(crate) use pg::PgConn;

use super::StoreError;

/// A statement's parameter.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    /// Text to SQLite and to `text` columns, `jsonb` to `jsonb` columns.
    Json(&'a Value),
}

/// What can be a [`Param`].
pub(crate) trait ToParam {
    fn param(&self) -> Param<'_>;
}

impl ToParam for str {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for String {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for Value {
    fn param(&self) -> Param<'_> {
        Param::Json(self)
    }
}

macro_rules! int_params {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn param(&self) -> Param<'_> {
                Param::Int(*self as i64)
            }
        }
    )*};
}
int_params!(i32, u32, u64, u8, usize);

impl ToParam for i64 {
    fn param(&self) -> Param<'_> {
        Param::Int(*self)
    }
}

impl ToParam for bool {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn param(&self) -> Param<'_> {
        (**self).param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn param(&self) -> Param<'_> {
        self.as_ref().map_or(Param::Null, ToParam::param)
    }
}

/// `params![a, b]`: the parameters of a statement, `?1` first.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::sql::ToParam::param(&$value)),*] as &[$crate::store::sql::Param<'_>]
    };
}
pub(crate) use params;

/// A value read from a row.
#[derive(Clone, Debug)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Json(Value),
}

/// A row read, its cells in the order selected. A getter of a NULL gives the type's
/// zero (the schema says which columns may be NULL: read them with `opt_*`).
pub(crate) struct Row(pub(crate) Vec<Cell>);

impl Row {
    pub(crate) fn opt_int(&self, i: usize) -> Option<i64> {
        match &self.0[i] {
            Cell::Int(v) => Some(*v),
            Cell::Real(v) => Some(*v as i64),
            Cell::Text(t) => t.parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn int(&self, i: usize) -> i64 {
        self.opt_int(i).unwrap_or(0)
    }

    pub(crate) fn real(&self, i: usize) -> f64 {
        match &self.0[i] {
            Cell::Real(v) => *v,
            Cell::Int(v) => *v as f64,
            _ => 0.0,
        }
    }

    pub(crate) fn opt_text(&self, i: usize) -> Option<String> {
        match &self.0[i] {
            Cell::Text(t) => Some(t.clone()),
            Cell::Int(v) => Some(v.to_string()),
            Cell::Json(v) => Some(v.to_string()),
            _ => None,
        }
    }

    pub(crate) fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }

    /// JSON stored as text (SQLite, and PostgreSQL's `text` columns) or as `jsonb`;
    /// `Null` when there is none or it does not parse.
    pub(crate) fn json(&self, i: usize) -> Value {
        match &self.0[i] {
            Cell::Json(v) => v.clone(),
            Cell::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

/// A connection or transaction of either database.
pub(crate) trait Db {
    fn dialect(&self) -> &'static Dialect;

    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;

    /// Runs a statement whose count nobody reads. In a PostgreSQL transaction it waits
    /// and goes with the next statement whose answer is read, or with the `COMMIT`
    /// (pipelined: one round trip for all); its error, if any, comes then.
    fn defer(&mut self, sql: &str, params: &[Param<'_>]) -> Result<(), StoreError> {
        self.execute(sql, params).map(drop)
    }

    /// Runs the transaction's last statement: in a PostgreSQL transaction its `COMMIT`
    /// goes in the same round trip. Nothing may follow it in the transaction.
    fn query_last(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        self.query(sql, params)
    }
}

impl dyn Db + '_ {
    pub(crate) fn query_opt(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row, which the statement should give (an aggregate, a row just
    /// written or locked).
    pub(crate) fn query_one(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?.ok_or(StoreError::Sql(rusqlite::Error::QueryReturnedNoRows))
    }
}

/// The database's clock in Unix milliseconds (PostgreSQL's heartbeats are its alone,
/// so that holders and takers on machines whose clocks differ agree).
macro_rules! db_now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

/// A run's columns (read by [`super::columns::run_row`]): then its first failed node,
/// then its place in the order runs were created.
macro_rules! run_columns {
    ($heartbeat:expr, $order:expr) => {
        concat!(
            "id, pipeline, status, phase, phase_progress, phase_metadata, phase_updated_at, inputs, snapshot_id, \
             attempt, best_progress, error, created_at, finished_at, lease_owner, lease_pid, lease_pid_start, \
             lease_host, ",
            $heartbeat,
            ", cancel_requested, target, superseded_by, actor, (SELECT c.node FROM node_checkpoints c \
             WHERE c.deployment_id = id AND c.status = 'failed' ORDER BY c.finished_at, c.node LIMIT 1), ",
            $order
        )
    };
}

/// What differs between the two databases' SQL, and nothing else. A template's `{p}`
/// stands for a placeholder or an expression the caller gives.
#[derive(Debug)]
pub(crate) struct Dialect {
    pub(crate) run_columns: &'static str,
    /// The order runs were created in (SQLite's `rowid`, PostgreSQL's `queue_seq`).
    pub(crate) creation_order: &'static str,
    /// Whether heartbeats are read relative to the database's clock now (zero or
    /// less), to be placed on this process's clock, the one lease checks read.
    relative_heartbeat: bool,
    /// "Now" for a heartbeat, where `{p}` holds the caller's clock (NULL for no
    /// heartbeat): that clock on SQLite (its processes share one machine's), the
    /// database's on PostgreSQL.
    now_ms: &'static str,
    /// Seconds between two ISO-8601 text columns, `{from}` and `{to}`.
    seconds: &'static str,
    /// The index of a pipeline's newest runs, named for SQLite's planner.
    pub(crate) pipeline_index: &'static str,
    /// A table `p(value)` of the texts of the JSON array `{p}`.
    list: &'static str,
    /// The row lock a read-then-write decision about one run takes (SQLite's write
    /// lock, taken at `BEGIN IMMEDIATE`, already covers the file).
    pub(crate) for_update: &'static str,
    /// A candidate a worker may take, locked unless another worker has it.
    pub(crate) skip_locked: Option<&'static str>,
    /// The lock on one target's decisions (`?1` its name): waited for, and tried
    /// (true when taken). None on SQLite, whose one writer decides alone.
    pub(crate) lock_target: Option<(&'static str, &'static str)>,
    /// How many waiting runs one worker's claim looks at (SQLite: all).
    pub(crate) candidates: i64,
    /// Events per INSERT: SQLite's AUTOINCREMENT updates `sqlite_sequence` once per
    /// statement, and a statement's rows get consecutive numbers.
    pub(crate) event_rows: usize,
    /// The lock taken before events are numbered: PostgreSQL's numbers are then
    /// committed in the order they are given, so a reader that has seen `n` never
    /// meets a smaller one later (`0x7068_6173_0002`: "phas" and 2).
    pub(crate) lock_events: Option<&'static str>,
    /// An insert of events `{p}` (returning their numbers) that also wakes the streams
    /// of every PostgreSQL server when it commits.
    notifying: &'static str,
}

pub(crate) const SQLITE: Dialect = Dialect {
    run_columns: run_columns!("heartbeat_at", "rowid"),
    creation_order: "rowid",
    relative_heartbeat: false,
    now_ms: "{p}",
    seconds: "(julianday({to}) - julianday({from})) * 86400.0",
    pipeline_index: "INDEXED BY deployments_pipeline",
    list: "json_each({p}) AS p",
    for_update: "",
    skip_locked: None,
    lock_target: None,
    candidates: -1,
    event_rows: 16,
    lock_events: None,
    notifying: "{p}",
};

pub(crate) const POSTGRES: Dialect = Dialect {
    run_columns: run_columns!(concat!("heartbeat_at - ", db_now_ms!()), "queue_seq"),
    creation_order: "queue_seq",
    relative_heartbeat: true,
    now_ms: concat!("CASE WHEN CAST({p} AS BIGINT) IS NULL THEN NULL ELSE ", db_now_ms!(), " END"),
    seconds: "EXTRACT(EPOCH FROM ({to}::timestamptz - {from}::timestamptz))::float8",
    pipeline_index: "",
    list: "json_array_elements_text(CAST({p} AS JSON)) AS p(value)",
    for_update: " FOR UPDATE",
    skip_locked: Some(" FOR UPDATE SKIP LOCKED"),
    lock_target: Some((
        "SELECT pg_advisory_xact_lock(1, hashtext(?1))",
        "SELECT pg_try_advisory_xact_lock(1, hashtext(?1))",
    )),
    candidates: 64,
    event_rows: 64,
    lock_events: Some("SELECT pg_advisory_xact_lock(123593613836290)"),
    notifying: "WITH stored AS ({p}), woken AS (SELECT pg_notify('phased_events', '')) SELECT seq FROM stored, woken",
};

impl Dialect {
    pub(crate) fn heartbeat(&self, read: Option<i64>) -> Option<i64> {
        if self.relative_heartbeat { read.map(|ago| crate::clock::now_ms() + ago) } else { read }
    }

    pub(crate) fn now_ms(&self, param: &str) -> String {
        self.now_ms.replace("{p}", param)
    }

    pub(crate) fn seconds(&self, from: &str, to: &str) -> String {
        self.seconds.replace("{from}", from).replace("{to}", to)
    }

    pub(crate) fn list(&self, param: &str) -> String {
        self.list.replace("{p}", param)
    }

    pub(crate) fn notifying(&self, insert: String) -> String {
        self.notifying.replace("{p}", &insert)
    }
}
