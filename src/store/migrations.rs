//! The schema of each database, one migration per version, in `migrations/sqlite/`
//! (version in `PRAGMA user_version`) and `migrations/postgres/` (table
//! `phased_schema`); each file says what its version adds. A migration is never edited
//! once released: add a new one.
//!
//! PostgreSQL's version 1 is SQLite's version 8 in PostgreSQL's types, its version 2
//! SQLite's 9. Differences, each for a reason:
//! - `phase_metadata` and `phase_history.metadata` are `jsonb`, so the seed's query
//!   (`phase_metadata->>'buildType'`) runs as written. The other JSON columns (inputs,
//!   outputs, event data, snapshot files) stay `text`: `jsonb` reorders object keys,
//!   and those are shown (and hashed) in the order they were written.
//! - `deployments.queue_seq`: the order runs were created in (SQLite's `rowid`), which
//!   a target's queue and the workers' claims follow.
//! - `events.seq` is an identity column; writers take the events lock (see
//!   `Dialect::lock_events`) before inserting, so numbers are committed in order.

macro_rules! migrations {
    ($dialect:literal: $($version:literal),*) => {
        &[$(include_str!(concat!("migrations/", $dialect, "/", $version, ".sql"))),*]
    };
}

pub(super) const SQLITE: &[&str] = migrations!("sqlite": "1", "2", "3", "4", "5", "6", "7", "8", "9");

pub(super) const POSTGRES: &[&str] = migrations!("postgres": "1", "2");
