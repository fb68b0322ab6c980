//! What the benchmarks share: the baseline one SQLite commit of one row costs.

use std::path::Path;
use std::time::{Duration, Instant};

/// One row, one commit, in WAL mode with `synchronous` (`NORMAL` or `FULL`).
pub(crate) fn commit_cost(dir: &Path, synchronous: &str) -> Duration {
    let conn = rusqlite::Connection::open(dir.join(format!("baseline-{synchronous}.db"))).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
    ))
    .unwrap();
    let n = 2_000;
    let start = Instant::now();
    for i in 0..n {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [format!("row {i}")]).unwrap();
    }
    start.elapsed() / n
}
