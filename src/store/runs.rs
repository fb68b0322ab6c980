//! Runs and their checkpoints, for both databases: reads, a resume's claim, a cancel
//! request, deleting runs, and the snapshots runs start from. A target's queue is in
//! `queue.rs`, a batch of writes in `write.rs`.

use std::path::Path;

use serde_json::Value;

use super::backend::Backend;
use super::columns::{NODE_COLUMNS, list, node_row, run_row};
use super::events::insert_run_event;
use super::sql::{Db, params};
use super::{
    Admission, Alive, ClaimError, Lease, NewRun, NodeRow, RunFilter, RunRow, RunStatus, RunStore, StopRequest,
    StoreError, Write, queue,
};

impl<B: Backend> RunStore for B {
    fn path(&self) -> &Path {
        self.location()
    }

    fn save_snapshot(&mut self, hash: &str, root: &str, files: &Value, at: &str) -> Result<i64, StoreError> {
        self.transaction(|db| {
            db.execute(
                "INSERT INTO snapshots (hash, root, files, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (hash) DO NOTHING",
                params![hash, root, files.to_string(), at],
            )?;
            Ok(db.query_one("SELECT id FROM snapshots WHERE hash = ?1", params![hash])?.int(0))
        })
    }

    fn snapshot(&self, id: i64) -> Result<(String, String, Value), StoreError> {
        let sql = "SELECT root, hash, files FROM snapshots WHERE id = ?1";
        let row = self.direct(|db| db.query_one(sql, params![id]))?;
        Ok((row.text(0), row.text(1), row.json(2)))
    }

    fn create_run(&mut self, run: &NewRun, alive: Alive<'_>) -> Result<Admission, StoreError> {
        self.transaction(|db| queue::create_run(db, run, alive))
    }

    fn claim_next(&mut self, lease: &Lease, now_ms: i64, alive: Alive<'_>) -> Result<Option<RunRow>, StoreError> {
        self.transaction(|db| queue::claim_next(db, lease, now_ms, alive))
    }

    fn admit(&mut self, id: &str, now_ms: i64, alive: Alive<'_>) -> Result<Admission, StoreError> {
        self.transaction(|db| queue::admit(db, id, now_ms, alive))
    }

    fn run_exists(&self, id: &str) -> Result<bool, StoreError> {
        self.direct(|db| Ok(db.query_opt("SELECT 1 FROM deployments WHERE id = ?1", params![id])?.is_some()))
    }

    fn ids_starting_with(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT id FROM deployments WHERE substr(id, 1, length(CAST(?1 AS TEXT))) = ?1 \
                   ORDER BY id != ?1, id LIMIT ?2";
        self.direct(|db| Ok(db.query(sql, params![prefix, limit])?.iter().map(|r| r.text(0)).collect()))
    }

    fn write(&mut self, batch: &[Write]) -> Result<Vec<i64>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.transaction(|db| super::write::write(db, batch))
    }

    fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        self.direct(|db| run(db, id, ""))
    }

    fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        self.direct(|db| {
            let d = db.dialect();
            let sql = format!("SELECT {} FROM deployments ORDER BY created_at DESC, id", d.run_columns);
            Ok(db.query(&sql, params![])?.iter().map(|r| run_row(d, r)).collect())
        })
    }

    /// Newest first, ties by id: after `before` is older than it, or as old with a
    /// greater id.
    fn runs_page(&self, filter: &RunFilter, before: Option<&str>, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        self.direct(|db| {
            let d = db.dialect();
            let sql = format!(
                "SELECT {} FROM deployments d WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1) \
                 AND (CAST(?2 AS TEXT) IS NULL OR pipeline = ?2) AND (CAST(?3 AS TEXT) IS NULL OR target = ?3) \
                 AND (CAST(?4 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM deployments b WHERE b.id = ?4 \
                 AND (d.created_at < b.created_at OR (d.created_at = b.created_at AND d.id > b.id)))) \
                 ORDER BY created_at DESC, id LIMIT ?5",
                d.run_columns
            );
            let rows = db.query(&sql, params![filter.status, filter.pipeline, filter.target, before, limit])?;
            Ok(rows.iter().map(|r| run_row(d, r)).collect())
        })
    }

    fn nodes(&self, run: &str) -> Result<Vec<NodeRow>, StoreError> {
        let sql = format!(
            "SELECT {NODE_COLUMNS} FROM node_checkpoints WHERE deployment_id = ?1 \
             ORDER BY COALESCE(started_at, finished_at) NULLS FIRST, node"
        );
        self.direct(|db| Ok(db.query(&sql, params![run])?.iter().map(|r| node_row(run, r)).collect()))
    }

    fn claim(
        &mut self,
        id: &str,
        lease: &Lease,
        now_ms: i64,
        alive: Alive<'_>,
    ) -> Result<(RunRow, RunRow), ClaimError> {
        self.transaction(|db| claim(db, id, lease, now_ms, alive))?
    }

    fn request_cancel(&mut self, id: &str, alive: Alive<'_>) -> Result<Option<RunRow>, StoreError> {
        self.transaction(|db| request_cancel(db, id, alive))
    }

    fn stop_requested(&self, id: &str) -> Result<StopRequest, StoreError> {
        let sql = "SELECT cancel_requested FROM deployments WHERE id = ?1";
        Ok(match self.direct(|db| db.query_one(sql, params![id]))?.int(0) {
            0 => StopRequest::None,
            2 => StopRequest::Supersede,
            _ => StopRequest::Cancel,
        })
    }

    fn delete_runs(&mut self, ids: &[String]) -> Result<usize, StoreError> {
        let ids = list(ids);
        self.transaction(|db| {
            let of = db.dialect().list("?1");
            // Events have no cascade of their own to rely on in older SQLite files.
            for table in ["events", "node_checkpoints", "phase_history"] {
                let sql = format!("DELETE FROM {table} WHERE deployment_id IN (SELECT p.value FROM {of})");
                db.execute(&sql, params![ids])?;
            }
            let sql = format!("DELETE FROM deployments WHERE id IN (SELECT p.value FROM {of})");
            let deleted = db.execute(&sql, params![ids])?;
            let unused = "DELETE FROM snapshots WHERE NOT EXISTS \
                          (SELECT 1 FROM deployments d WHERE d.snapshot_id = snapshots.id)";
            db.execute(unused, params![])?;
            Ok(deleted as usize)
        })
    }
}

/// A run, with the row lock `lock` (a decision about it follows).
fn run(db: &mut dyn Db, id: &str, lock: &str) -> Result<Option<RunRow>, StoreError> {
    let d = db.dialect();
    let sql = format!("SELECT {} FROM deployments WHERE id = ?1{lock}", d.run_columns);
    Ok(db.query_opt(&sql, params![id])?.map(|r| run_row(d, &r)))
}

/// Claims a run to resume it: not finished, and its holder (if any) gone. Returns the
/// run as claimed and as it was.
fn claim(
    db: &mut dyn Db,
    id: &str,
    lease: &Lease,
    now_ms: i64,
    alive: Alive<'_>,
) -> Result<Result<(RunRow, RunRow), ClaimError>, StoreError> {
    let d = db.dialect();
    let Some(before) = run(db, id, d.for_update)? else { return Ok(Err(ClaimError::Missing(id.to_string()))) };
    if before.status == RunStatus::Succeeded {
        return Ok(Err(ClaimError::Finished { id: id.to_string() }));
    }
    if let Some(held) = &before.lease
        && matches!(before.status, RunStatus::Running | RunStatus::Queued)
        && held.owner != lease.owner
        && alive(&before)
    {
        return Ok(Err(ClaimError::Held { id: id.to_string(), pid: held.pid, host: held.host.clone() }));
    }
    let sql = format!(
        "UPDATE deployments SET status = 'running', attempt = attempt + 1, lease_owner = ?2, lease_pid = ?3, \
         lease_pid_start = ?4, lease_host = ?5, heartbeat_at = {}, cancel_requested = 0, finished_at = NULL, \
         error = NULL WHERE id = ?1 RETURNING {}",
        d.now_ms("?6"),
        d.run_columns
    );
    let claimed = db.query_one(&sql, params![id, lease.owner, lease.pid, lease.pid_start, lease.host, now_ms])?;
    Ok(Ok((run_row(d, &claimed), before)))
}

/// Asks the holder of a run to stop it, or marks it cancelled when nobody holds it.
fn request_cancel(db: &mut dyn Db, id: &str, alive: Alive<'_>) -> Result<Option<RunRow>, StoreError> {
    let lock = db.dialect().for_update;
    let Some(row) = run(db, id, lock)? else { return Ok(None) };
    if row.status == RunStatus::Running && alive(&row) {
        db.execute("UPDATE deployments SET cancel_requested = 1 WHERE id = ?1", params![id])?;
    } else if !matches!(row.status, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled) {
        db.execute("UPDATE deployments SET status = 'cancelled', lease_owner = NULL WHERE id = ?1", params![id])?;
        let reason = format!("cancelled while {}", row.status.as_str());
        let kind = crate::event::EventKind::RunInterrupted { reason };
        insert_run_event(db, id, &row.phase, row.progress, &crate::clock::now(), kind)?;
    }
    run(db, id, "")
}
