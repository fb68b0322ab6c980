//! The SQLite store (the default): one file in WAL mode, its file and folder private to
//! its user, the schema migrated on open; or read-only, for a database that cannot be
//! written. Its decisions are serialized by SQLite's one writer (`BEGIN IMMEDIATE`).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};

use super::backend::Backend;
use super::migrations::SQLITE as MIGRATIONS;
use super::sql::{Db, Lite};
use super::{Durability, StoreError};

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl Backend for SqliteStore {
    fn location(&self) -> &Path {
        &self.path
    }

    fn direct<R: Send>(&self, mut f: impl FnMut(&mut dyn Db) -> Result<R, StoreError> + Send) -> Result<R, StoreError> {
        f(&mut Lite(&self.conn))
    }

    fn transaction<R: Send>(
        &mut self,
        mut f: impl FnMut(&mut dyn Db) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let result = f(&mut Lite(&tx))?;
        tx.commit()?;
        Ok(result)
    }
}

/// The database file and its companions for its user only: a new file is made 0600
/// before SQLite opens it (SQLite gives the `-wal` and `-shm` files the database file's
/// mode); an existing one, and its companions, lose group and other access.
fn make_private(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_os_string();
            name.push(suffix);
            crate::paths::make_private(Path::new(&name));
        }
    } else {
        // An empty file is a new database to SQLite. If it cannot be made, SQLite's own
        // open says why.
        let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    }
}

impl SqliteStore {
    fn new(conn: Connection, path: &Path) -> SqliteStore {
        // Every statement is prepared once and kept: the store has a few dozen, and the
        // batch writes one per row count (`write::ROWS`, events a few more).
        conn.set_prepared_statement_cache_capacity(256);
        // And stays prepared. Without the query planner stability guarantee, SQLite
        // plans some statements for the values bound (`deployment_id = ?1` in the
        // history insert's sub-select), and a cached statement's cleared bindings then
        // make it parse and plan again at its next step: a fifth of a chained node's
        // CPU. The plans for our indexes do not depend on the values.
        if let Err(e) = conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true) {
            tracing::debug!(error = %e, "SQLite would not keep its query plans stable.");
        }
        SqliteStore { conn, path: path.to_path_buf() }
    }

    /// Opens (creating it and its folder if needed) and migrates the database.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::paths::private_dir_all(dir)
                .map_err(|source| StoreError::Folder { path: dir.to_path_buf(), source })?;
        }
        make_private(path);
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(open_err)?;
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.execute_batch(&format!("PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"))
            .map_err(open_err)?;
        let mut store = SqliteStore::new(conn, path);
        store.migrate()?;
        Ok(store)
    }

    /// For reading a database that cannot be written: `immutable` tells SQLite that no
    /// one changes it meanwhile, so it needs no WAL index (which it could not create).
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut uri = String::from("file:");
        for byte in absolute.as_os_str().as_encoded_bytes() {
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => uri.push(*byte as char),
                other => uri.push_str(&format!("%{other:02X}")),
            }
        }
        uri.push_str("?immutable=1");
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(uri, flags).map_err(open_err)?;
        Ok(SqliteStore::new(conn, path))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew { path: self.path.clone(), found: version, supported });
        }
        if version == supported {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(migration)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        }
        tx.commit()?;
        Ok(())
    }
}
