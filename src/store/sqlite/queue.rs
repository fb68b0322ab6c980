//! A target's queue: which run may go now (`admit`), and which queued run a worker
//! takes next (`claim_next`), each decided under the write lock.

use rusqlite::{Connection, TransactionBehavior, params};

use super::super::{Admission, Alive, Lease, RunRow, RunStatus, StoreError};
use super::rows::{RUN_COLUMN_COUNT, RUN_COLUMNS, run_row};

/// The runs of `target` other than `id` that hold it: running with a live holder, or
/// queued (ahead of `rowid`, when given) by a live process or by nobody yet; oldest
/// first.
pub(super) fn live_of_target(
    tx: &rusqlite::Transaction,
    target: &str,
    id: &str,
    rowid: Option<i64>,
    alive: Alive<'_>,
) -> rusqlite::Result<Vec<RunRow>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM deployments WHERE target = ?1 AND id != ?2 AND status IN ('running', 'queued') \
         AND (?3 IS NULL OR status = 'running' OR rowid < ?3) ORDER BY rowid"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![target, id, rowid], run_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows.into_iter().filter(|r| r.lease.is_none() && r.status == RunStatus::Queued || alive(r)).collect())
}

pub(super) fn admit(conn: &mut Connection, id: &str, now_ms: i64, alive: Alive<'_>) -> Result<Admission, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let sql = format!("SELECT {RUN_COLUMNS}, rowid FROM deployments WHERE id = ?1");
    let (me, rowid) = tx.query_row(&sql, [id], |r| Ok((run_row(r)?, r.get::<_, i64>(RUN_COLUMN_COUNT)?)))?;
    if me.status != RunStatus::Queued {
        return Ok(if me.status == RunStatus::Running {
            Admission::Admitted
        } else {
            Admission::Gone { status: me.status }
        });
    }
    let live = match &me.target {
        Some(target) => live_of_target(&tx, target, id, Some(rowid), alive)?,
        None => Vec::new(),
    };
    let admission = match live.last() {
        Some(other) => {
            tx.execute("UPDATE deployments SET heartbeat_at = ?2 WHERE id = ?1", params![id, now_ms])?;
            Admission::Queued { behind: other.id.clone() }
        }
        None => {
            tx.execute(
                "UPDATE deployments SET status = 'running', heartbeat_at = ?2 WHERE id = ?1",
                params![id, now_ms],
            )?;
            Admission::Admitted
        }
    };
    tx.commit()?;
    Ok(admission)
}

pub(super) fn claim_next(
    conn: &mut Connection,
    lease: &Lease,
    now_ms: i64,
    alive: Alive<'_>,
) -> Result<Option<RunRow>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // A run whose holder died first (a process of this machine that is gone, or a
    // heartbeat gone stale): taken over with its attempt bumped, and resumed.
    let held = format!(
        "SELECT {RUN_COLUMNS} FROM deployments WHERE status = 'running' AND lease_owner IS NOT NULL ORDER BY rowid"
    );
    let abandoned: Vec<RunRow> = tx.prepare_cached(&held)?.query_map([], run_row)?.collect::<rusqlite::Result<_>>()?;
    if let Some(row) = abandoned.into_iter().find(|r| !alive(r)) {
        tx.execute(
            "UPDATE deployments SET attempt = attempt + 1, lease_owner = ?2, lease_pid = ?3, lease_pid_start = ?4, \
             lease_host = ?5, heartbeat_at = ?6 WHERE id = ?1",
            params![row.id, lease.owner, lease.pid, lease.pid_start as i64, lease.host, now_ms],
        )?;
        let claimed =
            tx.query_row(&format!("SELECT {RUN_COLUMNS} FROM deployments WHERE id = ?1"), [&row.id], run_row)?;
        tx.commit()?;
        return Ok(Some(claimed));
    }
    let sql = format!(
        "SELECT {RUN_COLUMNS}, rowid FROM deployments WHERE status = 'queued' AND lease_owner IS NULL ORDER BY rowid"
    );
    let waiting: Vec<(RunRow, i64)> = tx
        .prepare_cached(&sql)?
        .query_map([], |r| Ok((run_row(r)?, r.get::<_, i64>(RUN_COLUMN_COUNT)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (row, rowid) in waiting {
        let busy = match &row.target {
            Some(target) => !live_of_target(&tx, target, &row.id, Some(rowid), alive)?.is_empty(),
            None => false,
        };
        if busy {
            continue;
        }
        tx.execute(
            "UPDATE deployments SET status = 'running', lease_owner = ?2, lease_pid = ?3, lease_pid_start = ?4, \
             lease_host = ?5, heartbeat_at = ?6 WHERE id = ?1",
            params![row.id, lease.owner, lease.pid, lease.pid_start as i64, lease.host, now_ms],
        )?;
        let claimed =
            tx.query_row(&format!("SELECT {RUN_COLUMNS} FROM deployments WHERE id = ?1"), [&row.id], run_row)?;
        tx.commit()?;
        return Ok(Some(claimed));
    }
    Ok(None)
}
