//! A target's queue, for both databases: creating a run against it (the concurrency
//! policy, decided in [`decide`]), admitting a waiting run, and a worker claiming the
//! next run. A target's decisions are serialized by SQLite's one writer, or by
//! PostgreSQL's advisory lock on its name; a candidate run by its row lock.

use super::columns::{creation_order, run_row};
use super::events::insert_run_event;
use super::sql::{Db, params};
use super::{Admission, Alive, Lease, NewRun, RunRow, RunStatus, StoreError};
use crate::model::Policy;

/// What a new run of a busy target does, by its policy.
#[derive(Debug)]
enum Decision<'a> {
    /// Nothing of the target runs or waits: it runs.
    Run,
    /// It waits behind this run.
    Queue { behind: &'a str },
    /// It is not created (`reject`): this run holds the target.
    Reject { by: &'a str },
    /// `supersede`: the waiting runs are cancelled, the running ones asked to stop at
    /// their next node boundary; it waits behind the last of those (if any).
    Supersede { cancel: Vec<&'a RunRow>, stop: Vec<&'a RunRow>, behind: Option<&'a str> },
}

/// The concurrency policy: what a new run does given the runs that hold its target
/// (oldest first).
fn decide(policy: Policy, live: &[RunRow]) -> Decision<'_> {
    let (Some(first), Some(last)) = (live.first(), live.last()) else { return Decision::Run };
    match policy {
        Policy::Reject => Decision::Reject { by: &first.id },
        Policy::Queue => Decision::Queue { behind: &last.id },
        Policy::Supersede => {
            let (cancel, stop): (Vec<_>, Vec<_>) = live.iter().partition(|r| r.status == RunStatus::Queued);
            let behind = stop.last().map(|r| r.id.as_str());
            Decision::Supersede { cancel, stop, behind }
        }
    }
}

/// Takes the lock on a target's decisions (or tries to: false when another holds it).
fn lock_target(db: &mut dyn Db, target: &str, wait: bool) -> Result<bool, StoreError> {
    let Some((waiting, trying)) = db.dialect().lock_target else { return Ok(true) };
    let row = db.query_one(if wait { waiting } else { trying }, params![target])?;
    Ok(wait || row.int(0) != 0)
}

/// The runs of `target` other than `id` that hold it: running with a live holder, or
/// queued (ahead of `order`, when given) by a live process or by nobody yet; oldest
/// first.
fn live_of_target(
    db: &mut dyn Db,
    target: &str,
    id: &str,
    order: Option<i64>,
    alive: Alive<'_>,
) -> Result<Vec<RunRow>, StoreError> {
    let d = db.dialect();
    let (columns, by) = (d.run_columns, d.creation_order);
    let sql = format!(
        "SELECT {columns} FROM deployments WHERE target = ?1 AND id != ?2 AND status IN ('running', 'queued') \
         AND (CAST(?3 AS BIGINT) IS NULL OR status = 'running' OR {by} < ?3) ORDER BY {by}"
    );
    let rows = db.query(&sql, params![target, id, order])?;
    let rows = rows.iter().map(|r| run_row(d, r));
    Ok(rows.filter(|r| r.lease.is_none() && r.status == RunStatus::Queued || alive(r)).collect())
}

pub(super) fn create_run(db: &mut dyn Db, run: &NewRun, alive: Alive<'_>) -> Result<Admission, StoreError> {
    let mut queued_behind = None;
    if let Some((target, policy)) = run.target {
        lock_target(db, target, true)?;
        let live = live_of_target(db, target, run.id, None, alive)?;
        match decide(policy, &live) {
            Decision::Run => {}
            Decision::Reject { by } => return Ok(Admission::Rejected { by: by.to_string() }),
            Decision::Queue { behind } => queued_behind = Some(behind.to_string()),
            Decision::Supersede { cancel, stop, behind } => {
                let reason = format!("superseded by run {}", run.id);
                for other in cancel {
                    db.execute(
                        "UPDATE deployments SET status = 'cancelled', superseded_by = ?2, finished_at = ?3, \
                         lease_owner = NULL, error = ?4 WHERE id = ?1",
                        params![other.id, run.id, run.at, reason],
                    )?;
                    let kind = crate::event::EventKind::RunInterrupted { reason: reason.clone() };
                    insert_run_event(db, &other.id, &other.phase, other.progress, run.at, kind)?;
                }
                for other in stop {
                    db.execute(
                        "UPDATE deployments SET cancel_requested = 2, superseded_by = COALESCE(superseded_by, ?2) \
                         WHERE id = ?1",
                        params![other.id, run.id],
                    )?;
                }
                queued_behind = behind.map(str::to_string);
            }
        }
    }
    let status = if queued_behind.is_some() || run.for_workers { "queued" } else { "running" };
    let held = !run.for_workers;
    let sql = format!(
        "INSERT INTO deployments (id, pipeline, status, phase, phase_progress, phase_metadata, phase_updated_at, \
         inputs, snapshot_id, created_at, lease_owner, lease_pid, lease_pid_start, lease_host, heartbeat_at, target, \
         actor) VALUES (?1, ?2, ?11, 'QUEUED', 0, '{{}}', ?3, ?4, ?5, ?3, ?6, ?7, ?8, ?9, {}, ?12, ?13)",
        db.dialect().now_ms("?10")
    );
    let lease = run.lease;
    db.execute(
        &sql,
        params![
            run.id,
            run.pipeline,
            run.at,
            run.inputs.to_string(),
            run.snapshot_id,
            held.then_some(&lease.owner),
            held.then_some(lease.pid),
            held.then_some(lease.pid_start as i64),
            held.then_some(&lease.host),
            held.then_some(run.at_ms),
            status,
            run.target.map(|(t, _)| t),
            run.actor,
        ],
    )?;
    db.execute(
        "INSERT INTO phase_history (deployment_id, seq, phase, progress, metadata, created_at) \
         VALUES (?1, 1, 'QUEUED', 0, '{}', ?2)",
        params![run.id, run.at],
    )?;
    if status == "queued" {
        let kind = crate::event::EventKind::RunQueued { behind: queued_behind.clone() };
        insert_run_event(db, run.id, "QUEUED", 0, run.at, kind)?;
    }
    Ok(match queued_behind {
        Some(behind) => Admission::Queued { behind },
        None if run.for_workers => Admission::Queued { behind: String::new() },
        None => Admission::Admitted,
    })
}

/// A `queued` run: runs now when nothing of its target runs or waits ahead of it, else
/// its heartbeat is refreshed.
pub(super) fn admit(db: &mut dyn Db, id: &str, now_ms: i64, alive: Alive<'_>) -> Result<Admission, StoreError> {
    let d = db.dialect();
    let found = db.query_one(&format!("SELECT {} FROM deployments WHERE id = ?1", d.run_columns), params![id])?;
    let me = run_row(d, &found);
    if me.status != RunStatus::Queued {
        return Ok(match me.status {
            RunStatus::Running => Admission::Admitted,
            status => Admission::Gone { status },
        });
    }
    let live = match &me.target {
        Some(target) => {
            lock_target(db, target, true)?;
            live_of_target(db, target, id, Some(creation_order(&found)), alive)?
        }
        None => Vec::new(),
    };
    let now = d.now_ms("?2");
    Ok(match live.last() {
        Some(other) => {
            db.execute(&format!("UPDATE deployments SET heartbeat_at = {now} WHERE id = ?1"), params![id, now_ms])?;
            Admission::Queued { behind: other.id.clone() }
        }
        None => {
            let sql = format!(
                "UPDATE deployments SET status = 'running', heartbeat_at = {now} WHERE id = ?1 AND status = 'queued'"
            );
            db.execute(&sql, params![id, now_ms])?;
            Admission::Admitted
        }
    })
}

/// For `phased serve`'s workers: a `running` run whose holder died (taken over, its
/// attempt bumped), else the oldest queued run whose target is free.
pub(super) fn claim_next(
    db: &mut dyn Db,
    lease: &Lease,
    now_ms: i64,
    alive: Alive<'_>,
) -> Result<Option<RunRow>, StoreError> {
    let d = db.dialect();
    let (columns, by) = (d.run_columns, d.creation_order);
    // A run whose holder died first: it was taken before anything queued now. Its
    // heartbeat is stale by the clock that wrote it (PostgreSQL's own): a full lease
    // time since the holder's last renewal, whatever the machines' clocks say.
    let held = format!(
        "SELECT {columns} FROM deployments WHERE status = 'running' AND lease_owner IS NOT NULL \
         AND (heartbeat_at IS NULL OR heartbeat_at <= {} - ?2 OR lease_host = ?3) ORDER BY {by} LIMIT ?4",
        d.now_ms("?1")
    );
    let lease_ms = crate::model::lease_ms();
    let held = db.query(&held, params![now_ms, lease_ms, lease.host, d.candidates])?;
    for row in held.iter().map(|r| run_row(d, r)).filter(|r| !alive(r)) {
        if let Some(lock) = d.skip_locked {
            let sql =
                format!("SELECT 1 FROM deployments WHERE id = ?1 AND status = 'running' AND lease_owner = ?2{lock}");
            let owner = row.lease.as_ref().map(|l| l.owner.as_str());
            if db.query_opt(&sql, params![row.id, owner])?.is_none() {
                continue;
            }
        }
        return take_run(db, &row.id, lease, now_ms).map(Some);
    }
    // The first queued run of each target only: one behind it waits for it anyway
    // (`live_of_target` counts a waiting run nobody holds). Page by page (keyset), so
    // that no run past the first `candidates` is out of every claim's sight.
    let sql = format!(
        "SELECT {columns} FROM deployments q WHERE q.status = 'queued' AND q.lease_owner IS NULL AND q.{by} > ?2 \
         AND (q.target IS NULL OR NOT EXISTS (SELECT 1 FROM deployments ahead WHERE ahead.target = q.target \
         AND ahead.status = 'queued' AND ahead.lease_owner IS NULL AND ahead.{by} < q.{by})) ORDER BY q.{by} LIMIT ?1"
    );
    let mut after = 0_i64;
    loop {
        let page = db.query(&sql, params![d.candidates, after])?;
        if let Some(row) = claim_queued(db, &page, lease, now_ms, alive, &mut after)? {
            return Ok(Some(row));
        }
        if d.candidates < 0 || (page.len() as i64) < d.candidates {
            return Ok(None);
        }
    }
}

/// The first of `page` (queued runs, oldest first) whose target is free, taken;
/// `after` becomes the creation order of the last one looked at.
fn claim_queued(
    db: &mut dyn Db,
    page: &[super::sql::Row],
    lease: &Lease,
    now_ms: i64,
    alive: Alive<'_>,
    after: &mut i64,
) -> Result<Option<RunRow>, StoreError> {
    let d = db.dialect();
    for found in page {
        *after = creation_order(found);
        let row = run_row(d, found);
        if let Some(lock) = d.skip_locked {
            let sql =
                format!("SELECT 1 FROM deployments WHERE id = ?1 AND status = 'queued' AND lease_owner IS NULL{lock}");
            if db.query_opt(&sql, params![row.id])?.is_none() {
                continue;
            }
        }
        if let Some(target) = &row.target {
            // Another worker deciding for this target: its turn.
            if !lock_target(db, target, false)?
                || !live_of_target(db, target, &row.id, Some(creation_order(found)), alive)?.is_empty()
            {
                continue;
            }
        }
        return take_run(db, &row.id, lease, now_ms).map(Some);
    }
    Ok(None)
}

/// Takes run `id` for `lease`: `running`, its attempt bumped if it was already.
fn take_run(db: &mut dyn Db, id: &str, lease: &Lease, now_ms: i64) -> Result<RunRow, StoreError> {
    let d = db.dialect();
    let sql = format!(
        "UPDATE deployments SET status = 'running', attempt = attempt + CASE WHEN status = 'running' THEN 1 ELSE 0 END, \
         lease_owner = ?2, lease_pid = ?3, lease_pid_start = ?4, lease_host = ?5, heartbeat_at = {} \
         WHERE id = ?1 RETURNING {}",
        d.now_ms("?6"),
        d.run_columns
    );
    let row = db.query_one(&sql, params![id, lease.owner, lease.pid, lease.pid_start, lease.host, now_ms])?;
    Ok(run_row(d, &row))
}
