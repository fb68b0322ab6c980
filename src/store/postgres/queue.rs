//! Runs and their targets across processes and machines: creating a run against its
//! target's queue, admitting a waiting one, a worker claiming the next (queued runs
//! with `FOR UPDATE SKIP LOCKED`, and runs whose holder died), and resume claims.
//!
//! A target's decisions are serialized by an advisory lock on its name (key space
//! `(1, hashtext(target))`), held to the end of the transaction; a run's own changes by
//! its row lock.

use super::super::{Admission, Alive, ClaimError, Lease, NewRun, RunRow, RunStatus, StoreError};
use super::conn::{Conn, Tx};
use super::rows::{DB_NOW_MS, RUN_COLUMNS, queue_seq, run_row};
use super::write::insert_run_event;
use crate::model::Policy;

fn lock_target(tx: &mut Tx, target: &str) -> Result<(), StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock(1, hashtext($1))", &[&target])?;
    Ok(())
}

fn try_lock_target(tx: &mut Tx, target: &str) -> Result<bool, StoreError> {
    Ok(tx.query_one("SELECT pg_try_advisory_xact_lock(1, hashtext($1))", &[&target])?.get(0))
}

/// The runs of `target` other than `id` that hold it: running with a live holder, or
/// queued (ahead of `seq`, when given) by a live process or by nobody yet; oldest
/// first.
fn live_of_target(
    tx: &mut Tx,
    target: &str,
    id: &str,
    seq: Option<i64>,
    alive: Alive<'_>,
) -> Result<Vec<RunRow>, StoreError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM deployments WHERE target = $1 AND id <> $2 AND status IN ('running', 'queued') \
         AND ($3::bigint IS NULL OR status = 'running' OR queue_seq < $3) ORDER BY queue_seq"
    );
    let rows = tx.query(&sql, &[&target, &id, &seq])?;
    Ok(rows.iter().map(run_row).filter(|r| r.lease.is_none() && r.status == RunStatus::Queued || alive(r)).collect())
}

pub(super) fn create_run(conn: &mut Conn, run: &NewRun, alive: Alive<'_>) -> Result<Admission, StoreError> {
    let mut tx = conn.begin()?;
    let mut queued_behind = None;
    if let Some((target, policy)) = run.target {
        lock_target(&mut tx, target)?;
        let live = live_of_target(&mut tx, target, run.id, None, alive)?;
        if let Some(first) = live.first() {
            match policy {
                Policy::Reject => return Ok(Admission::Rejected { by: first.id.clone() }),
                Policy::Queue => queued_behind = Some(live.last().expect("not empty").id.clone()),
                Policy::Supersede => {
                    for other in &live {
                        if other.status == RunStatus::Queued {
                            let reason = format!("superseded by run {}", run.id);
                            tx.execute(
                                "UPDATE deployments SET status = 'cancelled', superseded_by = $2, finished_at = $3, \
                                 lease_owner = NULL, error = $4 WHERE id = $1",
                                &[&other.id, &run.id, &run.at, &reason],
                            )?;
                            let kind = crate::event::EventKind::RunInterrupted { reason };
                            insert_run_event(&mut tx, &other.id, &other.phase, other.progress, run.at, kind)?;
                        } else {
                            queued_behind = Some(other.id.clone());
                            tx.execute(
                                "UPDATE deployments SET cancel_requested = 2, superseded_by = COALESCE(superseded_by, $2) \
                                 WHERE id = $1",
                                &[&other.id, &run.id],
                            )?;
                        }
                    }
                }
            }
        }
    }
    let status = if queued_behind.is_some() || run.for_workers { "queued" } else { "running" };
    let held = !run.for_workers;
    tx.execute(
        &format!(
            "INSERT INTO deployments (id, pipeline, status, phase, phase_progress, phase_metadata, phase_updated_at, \
             inputs, snapshot_id, created_at, lease_owner, lease_pid, lease_pid_start, lease_host, heartbeat_at, target, actor) \
             VALUES ($1, $2, $11, 'QUEUED', 0, '{{}}', $3, $4, $5, $3, $6, $7, $8, $9, \
             CASE WHEN $10 THEN {DB_NOW_MS} END, $12, $13)"
        ),
        &[
            &run.id,
            &run.pipeline,
            &run.at,
            &run.inputs.to_string(),
            &run.snapshot_id,
            &held.then_some(&run.lease.owner),
            &held.then_some(i64::from(run.lease.pid)),
            &held.then_some(run.lease.pid_start as i64),
            &held.then_some(&run.lease.host),
            &held,
            &status,
            &run.target.map(|(t, _)| t),
            &run.actor,
        ],
    )?;
    tx.execute(
        "INSERT INTO phase_history (deployment_id, seq, phase, progress, metadata, created_at) \
         VALUES ($1, 1, 'QUEUED', 0, '{}', $2)",
        &[&run.id, &run.at],
    )?;
    if status == "queued" {
        let kind = crate::event::EventKind::RunQueued { behind: queued_behind.clone() };
        insert_run_event(&mut tx, run.id, "QUEUED", 0, run.at, kind)?;
    }
    tx.commit()?;
    conn.history_seq.insert(run.id.to_string(), 1);
    Ok(match queued_behind {
        Some(behind) => Admission::Queued { behind },
        None if run.for_workers => Admission::Queued { behind: String::new() },
        None => Admission::Admitted,
    })
}

/// `_now_ms` is the caller's clock: the heartbeat is the database's (see [`DB_NOW_MS`]).
pub(super) fn admit(conn: &mut Conn, id: &str, _now_ms: i64, alive: Alive<'_>) -> Result<Admission, StoreError> {
    let mut tx = conn.begin()?;
    let sql = format!("SELECT {RUN_COLUMNS} FROM deployments WHERE id = $1");
    let found = tx.query_one(&sql, &[&id])?;
    let (me, seq) = (run_row(&found), queue_seq(&found));
    if me.status != RunStatus::Queued {
        return Ok(if me.status == RunStatus::Running {
            Admission::Admitted
        } else {
            Admission::Gone { status: me.status }
        });
    }
    let live = match &me.target {
        Some(target) => {
            lock_target(&mut tx, target)?;
            live_of_target(&mut tx, target, id, Some(seq), alive)?
        }
        None => Vec::new(),
    };
    let admission = match live.last() {
        Some(other) => {
            tx.execute(&format!("UPDATE deployments SET heartbeat_at = {DB_NOW_MS} WHERE id = $1"), &[&id])?;
            Admission::Queued { behind: other.id.clone() }
        }
        None => {
            tx.execute(
                &format!(
                    "UPDATE deployments SET status = 'running', heartbeat_at = {DB_NOW_MS} WHERE id = $1 \
                     AND status = 'queued'"
                ),
                &[&id],
            )?;
            Admission::Admitted
        }
    };
    tx.commit()?;
    Ok(admission)
}

/// How many waiting runs one claim looks at.
const CANDIDATES: i64 = 64;

pub(super) fn claim_next(
    conn: &mut Conn,
    lease: &Lease,
    _now_ms: i64,
    alive: Alive<'_>,
) -> Result<Option<RunRow>, StoreError> {
    let mut tx = conn.begin()?;
    let take = format!(
        "UPDATE deployments SET status = 'running', attempt = attempt + CASE WHEN status = 'running' THEN 1 ELSE 0 END, \
         lease_owner = $2, lease_pid = $3, lease_pid_start = $4, lease_host = $5, heartbeat_at = {DB_NOW_MS} \
         WHERE id = $1 RETURNING {RUN_COLUMNS}"
    );
    let lease_params = (i64::from(lease.pid), lease.pid_start as i64);
    // A run whose holder died first: it was taken before anything queued now. Its
    // heartbeat is stale by the database's clock, which wrote it: a full lease time
    // since the holder's last renewal, whatever the machines' clocks say.
    let lease_ms = crate::model::lease_ms();
    let held = tx.query(
        &format!(
            "SELECT {RUN_COLUMNS} FROM deployments WHERE status = 'running' AND lease_owner IS NOT NULL \
             AND (heartbeat_at IS NULL OR heartbeat_at < {DB_NOW_MS} - $1 OR lease_host = $2) \
             ORDER BY queue_seq LIMIT {CANDIDATES}"
        ),
        &[&lease_ms, &lease.host],
    )?;
    for row in held.iter().map(run_row).filter(|r| !alive(r)) {
        let owner = row.lease.as_ref().map(|l| l.owner.clone());
        let locked = tx.query_opt(
            "SELECT 1 FROM deployments WHERE id = $1 AND status = 'running' AND lease_owner = $2 FOR UPDATE SKIP LOCKED",
            &[&row.id, &owner],
        )?;
        if locked.is_none() {
            continue;
        }
        let claimed = tx.query_one(&take, &[&row.id, &lease.owner, &lease_params.0, &lease_params.1, &lease.host])?;
        tx.commit()?;
        return Ok(Some(run_row(&claimed)));
    }
    let waiting = tx.query(
        &format!(
            "SELECT {RUN_COLUMNS} FROM deployments WHERE status = 'queued' AND lease_owner IS NULL \
             ORDER BY queue_seq LIMIT {CANDIDATES}"
        ),
        &[],
    )?;
    for found in &waiting {
        let row = run_row(found);
        let locked = tx.query_opt(
            "SELECT 1 FROM deployments WHERE id = $1 AND status = 'queued' AND lease_owner IS NULL FOR UPDATE SKIP LOCKED",
            &[&row.id],
        )?;
        if locked.is_none() {
            continue;
        }
        if let Some(target) = &row.target {
            // Another worker deciding for this target: its turn.
            if !try_lock_target(&mut tx, target)?
                || !live_of_target(&mut tx, target, &row.id, Some(queue_seq(found)), alive)?.is_empty()
            {
                continue;
            }
        }
        let claimed = tx.query_one(&take, &[&row.id, &lease.owner, &lease_params.0, &lease_params.1, &lease.host])?;
        tx.commit()?;
        return Ok(Some(run_row(&claimed)));
    }
    Ok(None)
}

pub(super) fn claim(
    conn: &mut Conn,
    id: &str,
    lease: &Lease,
    _now_ms: i64,
    alive: Alive<'_>,
) -> Result<Result<(RunRow, RunRow), ClaimError>, StoreError> {
    let mut tx = conn.begin()?;
    let sql = format!("SELECT {RUN_COLUMNS} FROM deployments WHERE id = $1 FOR UPDATE");
    let Some(found) = tx.query_opt(&sql, &[&id])? else { return Ok(Err(ClaimError::Missing(id.to_string()))) };
    let before = run_row(&found);
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
    let claimed = tx.query_one(
        &format!(
            "UPDATE deployments SET status = 'running', attempt = attempt + 1, lease_owner = $2, lease_pid = $3, \
             lease_pid_start = $4, lease_host = $5, heartbeat_at = {DB_NOW_MS}, cancel_requested = 0, finished_at = NULL, \
             error = NULL WHERE id = $1 RETURNING {RUN_COLUMNS}"
        ),
        &[&id, &lease.owner, &i64::from(lease.pid), &(lease.pid_start as i64), &lease.host],
    )?;
    tx.commit()?;
    Ok(Ok((run_row(&claimed), before)))
}

pub(super) fn request_cancel(conn: &mut Conn, id: &str, alive: Alive<'_>) -> Result<Option<RunRow>, StoreError> {
    let mut tx = conn.begin()?;
    let sql = format!("SELECT {RUN_COLUMNS} FROM deployments WHERE id = $1 FOR UPDATE");
    let Some(found) = tx.query_opt(&sql, &[&id])? else { return Ok(None) };
    let row = run_row(&found);
    let live = row.status == RunStatus::Running && alive(&row);
    if live {
        tx.execute("UPDATE deployments SET cancel_requested = 1 WHERE id = $1", &[&id])?;
    } else if !matches!(row.status, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled) {
        tx.execute("UPDATE deployments SET status = 'cancelled', lease_owner = NULL WHERE id = $1", &[&id])?;
        let reason = format!("cancelled while {}", row.status.as_str());
        let kind = crate::event::EventKind::RunInterrupted { reason };
        insert_run_event(&mut tx, id, &row.phase, row.progress, &crate::clock::now(), kind)?;
    }
    let row = run_row(&tx.query_one(&format!("SELECT {RUN_COLUMNS} FROM deployments WHERE id = $1"), &[&id])?);
    tx.commit()?;
    Ok(Some(row))
}
