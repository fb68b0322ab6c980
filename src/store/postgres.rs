//! The PostgreSQL store (`--db postgres://...`): the tables of the SQLite store in
//! one database that several `phased` processes on several machines share. Same SQL,
//! same semantics; what differs is how the decisions are serialized (row locks,
//! `FOR UPDATE SKIP LOCKED`, advisory locks: see `sql::Dialect`) instead of SQLite's
//! one writer, how streams learn of new events (`LISTEN`/`NOTIFY`), and that a call
//! connects again when the server went away (`conn.rs`).

mod conn;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;
use super::backend::Backend;
use super::sql::Db;
pub(crate) use conn::client;
use conn::{Conn, Link};

/// Whether `db` names a PostgreSQL database rather than a SQLite file.
pub fn is_url(db: &Path) -> bool {
    crate::paths::is_database_url(db)
}

/// The URL without its password, to be shown.
pub(crate) fn redact(url: &str) -> String {
    crate::paths::redact_url(url)
}

pub struct PgStore {
    link: Mutex<Link>,
    /// The URL without its password: what `path()` gives and messages show.
    shown: PathBuf,
}

impl PgStore {
    /// Connects, and migrates the schema when it is older than this phased.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        Ok(PgStore { link: Mutex::new(Link::open(url)?), shown: PathBuf::from(redact(url)) })
    }

    fn call<R: Send>(&self, f: impl FnMut(&mut Conn) -> Result<R, StoreError> + Send) -> Result<R, StoreError> {
        self.link.lock().unwrap_or_else(std::sync::PoisonError::into_inner).call(f)
    }
}

impl Backend for PgStore {
    fn location(&self) -> &Path {
        &self.shown
    }

    fn direct<R: Send>(&self, mut f: impl FnMut(&mut dyn Db) -> Result<R, StoreError> + Send) -> Result<R, StoreError> {
        self.call(|c| c.pg.direct(&mut f))
    }

    fn transaction<R: Send>(
        &mut self,
        mut f: impl FnMut(&mut dyn Db) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        self.call(|c| c.pg.transaction(&mut f))
    }

    /// Waits for the writers' `NOTIFY` (or a second at most).
    fn wait(&self, _poll: std::time::Duration) {
        let waited = self.call(|c| {
            if !c.listening {
                c.pg.batch_execute("LISTEN phased_events")?;
                c.listening = true;
            }
            c.pg.wait_notified(std::time::Duration::from_secs(1))?;
            Ok(())
        });
        if waited.is_err() {
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
}
