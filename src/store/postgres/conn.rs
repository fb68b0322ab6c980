//! One connection to PostgreSQL, kept open across the store's calls: connected (and
//! the schema migrated) on open, connected again when the server went away, and its
//! prepared statements cached (by `sql::Pg`).
//!
//! The connection (`sql::PgConn`) blocks on a runtime of its own, which tokio forbids
//! on a thread that is driving async tasks: a store is only called where none is
//! driven (`crate::seam`: a thread running its async work with `seam::block_on`, or a
//! thread of the server's pool), so a call runs on the caller's thread.

use std::time::{Duration, Instant};

use super::super::sql::{PgConn, params};

use super::super::StoreError;
use super::super::migrations::POSTGRES as MIGRATIONS;

/// The advisory lock (`pg_advisory_xact_lock`) of schema migrations, held to the end of
/// their transaction: one process migrates, the others wait and find it done. (The
/// events lock is `Dialect::lock_events`.)
const MIGRATE_LOCK: i64 = 0x7068_6173_0001;

/// How long a call waits for a server that went away (restarted, failed over) before
/// it gives up and says so.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

pub(super) struct Conn {
    pub(super) pg: PgConn,
    /// Whether this connection listens for `phased_events` (a new one does not).
    pub(super) listening: bool,
}

impl Conn {
    pub(super) fn connect(url: &str) -> Result<Conn, StoreError> {
        let mut conn = Conn { pg: connect(url)?, listening: false };
        // Once per database and process: a worker connects for every run it takes.
        static MIGRATED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let mut migrated = MIGRATED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !migrated.iter().any(|u| u == url) {
            conn.migrate(url)?;
            migrated.push(url.to_string());
        }
        Ok(conn)
    }

    /// In one transaction: a migration's file holds several statements, which only the
    /// simple protocol (`batch_execute`) runs.
    fn migrate(&mut self, url: &str) -> Result<(), StoreError> {
        self.pg.batch_execute("BEGIN")?;
        let migrated = self.migrate_in_transaction(url);
        match &migrated {
            Ok(()) => self.pg.batch_execute("COMMIT")?,
            Err(_) => {
                let _ = self.pg.batch_execute("ROLLBACK");
            }
        }
        migrated
    }

    fn migrate_in_transaction(&mut self, url: &str) -> Result<(), StoreError> {
        let found = self.pg.direct(|db| {
            db.execute("SELECT pg_advisory_xact_lock(?1)", params![MIGRATE_LOCK])?;
            db.execute("CREATE TABLE IF NOT EXISTS phased_schema (version INTEGER NOT NULL)", params![])?;
            Ok(db.query_opt("SELECT version FROM phased_schema", params![])?.map_or(0, |r| r.int(0)))
        })?;
        let supported = MIGRATIONS.len() as i64;
        if found > supported {
            return Err(StoreError::TooNew { path: crate::paths::redact_url(url).into(), found, supported });
        }
        for migration in MIGRATIONS.iter().skip(found as usize) {
            self.pg.batch_execute(migration)?;
        }
        if found < supported {
            self.pg.direct(|db| {
                db.execute("DELETE FROM phased_schema", params![])?;
                db.execute("INSERT INTO phased_schema (version) VALUES (?1)", params![supported])?;
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// The config of the database at `url`, named `phased` to the server.
fn config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| StoreError::Url { url: crate::paths::redact_url(url), source: e })?;
    if config.get_application_name().is_none() {
        config.application_name("phased");
    }
    Ok(config)
}

/// A connection to the database at `url` (no schema check).
fn connect(url: &str) -> Result<PgConn, StoreError> {
    PgConn::connect(&config(url)?, tls()?)
        .map_err(|e| StoreError::Connect { url: crate::paths::redact_url(url), source: e })
}

/// A blocking client of the database at `url` (no schema check), for a one-off
/// command's bulk copy (`store::copy`).
pub(crate) fn client(url: &str) -> Result<postgres::Client, StoreError> {
    let config = postgres::Config::from(config(url)?);
    config.connect(tls()?).map_err(|e| StoreError::Connect { url: crate::paths::redact_url(url), source: e })
}

/// TLS as the URL asks (`sslmode=require`); the server's certificate is checked
/// against the system's roots, or `PGSSLROOTCERT` when set. Made once a process:
/// reading the system's roots costs milliseconds, a connection's share of a command.
fn tls() -> Result<postgres_openssl::MakeTlsConnector, StoreError> {
    use openssl::ssl::{SslConnector, SslMethod};
    static TLS: std::sync::OnceLock<Result<postgres_openssl::MakeTlsConnector, String>> = std::sync::OnceLock::new();
    let made = TLS.get_or_init(|| {
        let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
        if let Some(root) = std::env::var_os("PGSSLROOTCERT") {
            builder.set_ca_file(&root).map_err(|e| e.to_string())?;
        }
        Ok(postgres_openssl::MakeTlsConnector::new(builder.build()))
    });
    made.clone().map_err(StoreError::Tls)
}

/// Whether an error means the connection is gone (a new one may succeed), rather than
/// that the statement was refused.
pub(super) fn connection_lost(e: &StoreError) -> bool {
    let StoreError::Postgres(e) = e else { return false };
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Whether the error is a deadlock or serialization failure: the transaction is
/// retried.
pub(super) fn retryable(e: &StoreError) -> bool {
    let StoreError::Postgres(e) = e else { return false };
    e.code().is_some_and(|c| matches!(c.code(), "40P01" | "40001"))
}

/// The connection of a store, and how calls reach it.
pub(super) struct Link {
    url: String,
    conn: Option<Conn>,
}

/// Connections a store of this process closed, kept for the next store of the same
/// database (a worker opens one for every run it takes; a connection costs a few
/// milliseconds, a statement tens of microseconds).
static IDLE: std::sync::Mutex<Vec<(String, Conn)>> = std::sync::Mutex::new(Vec::new());
const IDLE_MAX: usize = 8;

fn idle() -> std::sync::MutexGuard<'static, Vec<(String, Conn)>> {
    IDLE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Link {
    pub(super) fn open(url: &str) -> Result<Link, StoreError> {
        let kept = {
            let mut idle = idle();
            let at = idle.iter().position(|(u, c)| u == url && !c.pg.is_closed());
            at.map(|at| idle.swap_remove(at).1)
        };
        let conn = match kept {
            Some(conn) => conn,
            None => Conn::connect(url)?,
        };
        Ok(Link { url: url.to_string(), conn: Some(conn) })
    }

    /// Runs `f` on the connection, connecting again (for up to [`RECONNECT_FOR`]) when
    /// the server went away, and again on a deadlock.
    pub(super) fn call<R>(&mut self, mut f: impl FnMut(&mut Conn) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let started = Instant::now();
        let mut tries = 0;
        let (url, slot) = (&self.url, &mut self.conn);
        loop {
            let conn = match slot {
                Some(conn) if !conn.pg.is_closed() => conn,
                _ => {
                    *slot = None;
                    match Conn::connect(url) {
                        Ok(conn) => slot.insert(conn),
                        Err(e) if started.elapsed() < RECONNECT_FOR => {
                            tracing::warn!(error = %e, "PostgreSQL is unreachable; trying again.");
                            std::thread::sleep(Duration::from_millis(250));
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            match f(conn) {
                Err(e) if connection_lost(&e) && started.elapsed() < RECONNECT_FOR => {
                    tracing::warn!(error = %e, "Lost the connection to PostgreSQL; connecting again.");
                    *slot = None;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) if retryable(&e) && tries < 5 => tries += 1,
                result => return result,
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // A listening connection would gather notifications nobody reads.
        if !conn.listening && !conn.pg.is_closed() {
            let mut idle = idle();
            if idle.len() < IDLE_MAX {
                idle.push((self.url.clone(), conn));
                return;
            }
        }
        // Closing the client blocks on its runtime too: here, where none is driven.
        drop(conn);
    }
}
