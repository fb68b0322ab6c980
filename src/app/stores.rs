//! The database an operation works on: the front ends name it ([`Db`]) and open it
//! here, never a store implementation of their own choosing.

use std::path::{Path, PathBuf};

use crate::store::{Durability, Store, StoreError, Trouble};

/// A database of runs: a SQLite file or a PostgreSQL URL, and how durably it writes.
#[derive(Clone, Debug)]
pub(crate) struct Db {
    pub(crate) path: PathBuf,
    pub(crate) durability: Durability,
}

impl Db {
    pub(crate) fn new(path: impl Into<PathBuf>, durability: Durability) -> Self {
        Db { path: path.into(), durability }
    }

    /// Opens it (a SQLite file is created if missing).
    pub(crate) fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        crate::store::open(&self.path, self.durability)
    }

    /// Whether it exists: a PostgreSQL URL always may; a SQLite file when it is there.
    pub(crate) fn exists(&self) -> bool {
        crate::store::is_url(&self.path) || self.path.exists()
    }

    /// Opens it if it exists (read commands never create one); one that cannot be
    /// written is opened to read.
    pub(crate) fn open_existing(&self) -> Result<Option<Box<dyn Store>>, StoreError> {
        if !self.exists() {
            return Ok(None);
        }
        match self.open() {
            Ok(store) => Ok(Some(store)),
            Err(e) if e.trouble() == Trouble::ReadOnly => crate::store::open_read_only(&self.path).map(Some),
            Err(e) => Err(e),
        }
    }
}

pub(crate) use crate::store::copy::CopyError;

/// Copies the SQLite database `from` into the empty PostgreSQL database `to` (runs,
/// history, checkpoints, events, tokens), saying each table's rows as it goes;
/// refused while a run in it is held by a live process. The rows copied, by table.
pub(crate) fn migrate(
    from: &Path,
    to: &str,
    said: &mut dyn FnMut(&str, u64),
) -> Result<Vec<(&'static str, u64)>, CopyError> {
    let now = crate::clock::now_ms();
    let alive = |r: &crate::store::RunRow| {
        matches!(r.status, crate::store::RunStatus::Running | crate::store::RunStatus::Queued)
            && crate::engine::lease::holder_alive(r, now)
    };
    crate::store::copy::sqlite_to_postgres(from, to, &alive, said)
}
