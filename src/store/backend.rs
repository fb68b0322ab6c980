//! What a database gives the store's interfaces ([`super::Store`] and the traits it
//! gathers, each implemented once for any [`Backend`], in the file of its concern):
//! statements run on their own, or a few in one transaction.

use std::path::Path;

use super::StoreError;
use super::sql::Db;

/// A database the store's SQL runs on.
pub(super) trait Backend: Send {
    /// Where the database is (a URL without its password).
    fn location(&self) -> &Path;

    /// Runs statements each on its own (a read, or a write of one statement).
    fn direct<R: Send>(&self, f: impl FnMut(&mut dyn Db) -> Result<R, StoreError> + Send) -> Result<R, StoreError>;

    /// Runs statements in one transaction, committed when `f` succeeds. SQLite takes its
    /// write lock at `BEGIN IMMEDIATE` (a deferred transaction that reads, then writes,
    /// fails at once when another process wrote in between); PostgreSQL's decisions
    /// take the locks the [`super::sql::Dialect`] says.
    fn transaction<R: Send>(
        &mut self,
        f: impl FnMut(&mut dyn Db) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError>;

    /// Waits until new events may have been stored, by any process.
    fn wait(&self, poll: std::time::Duration) {
        std::thread::sleep(poll);
    }
}
