//! The SQLite store (the default): one file in WAL mode, schema version in
//! `PRAGMA user_version`, migrations in `migrations.rs`.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

mod events;
mod open;
mod queue;
mod rows;
mod service;
mod stats;

use super::{
    Admission, Alive, ClaimError, HistoryRow, Lease, Metrics, NewRun, NodeDuration, NodeRow, NodeStatus,
    NotificationRow, RunFilter, RunRow, RunStatus, StopRequest, Store, StoreError, TokenRow, Write,
};
use crate::model::Policy;
use rows::{RUN_COLUMNS, RowState, json, run_row};

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// The last history `seq` of each run this store wrote to. Only a run's lease
    /// holder writes its history, so a counter here is enough.
    history_seq: std::collections::HashMap<String, i64>,
}

impl Store for SqliteStore {
    fn path(&self) -> &Path {
        &self.path
    }

    fn save_snapshot(&mut self, hash: &str, root: &str, files: &Value, at: &str) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO snapshots (hash, root, files, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(hash) DO NOTHING",
            params![hash, root, files.to_string(), at],
        )?;
        Ok(self.conn.query_row("SELECT id FROM snapshots WHERE hash = ?1", [hash], |r| r.get(0))?)
    }

    fn snapshot(&self, id: i64) -> Result<(String, String, Value), StoreError> {
        Ok(self.conn.query_row("SELECT root, hash, files FROM snapshots WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, json(r.get(2)?)))
        })?)
    }

    fn create_run(&mut self, run: &NewRun, alive: Alive<'_>) -> Result<Admission, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut queued_behind = None;
        if let Some((target, policy)) = run.target {
            let live = queue::live_of_target(&tx, target, run.id, None, alive)?;
            if let Some(first) = live.first() {
                match policy {
                    Policy::Reject => return Ok(Admission::Rejected { by: first.id.clone() }),
                    Policy::Queue => queued_behind = Some(live.last().expect("not empty").id.clone()),
                    Policy::Supersede => {
                        for other in &live {
                            if other.status == RunStatus::Queued {
                                let reason = format!("superseded by run {}", run.id);
                                tx.execute(
                                    "UPDATE deployments SET status = 'cancelled', superseded_by = ?2, finished_at = ?3, \
                                     lease_owner = NULL, error = ?4 WHERE id = ?1",
                                    params![other.id, run.id, run.at, reason],
                                )?;
                                let kind = crate::event::EventKind::RunInterrupted { reason };
                                events::insert_run_event(&tx, &other.id, &other.phase, other.progress, run.at, kind)?;
                            } else {
                                queued_behind = Some(other.id.clone());
                                tx.execute(
                                    "UPDATE deployments SET cancel_requested = 2, superseded_by = COALESCE(superseded_by, ?2) WHERE id = ?1",
                                    params![other.id, run.id],
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
            "INSERT INTO deployments (id, pipeline, status, phase, phase_progress, phase_metadata, phase_updated_at, \
             inputs, snapshot_id, created_at, lease_owner, lease_pid, lease_pid_start, lease_host, heartbeat_at, target, actor) \
             VALUES (?1, ?2, ?11, 'QUEUED', 0, '{}', ?3, ?4, ?5, ?3, ?6, ?7, ?8, ?9, ?10, ?12, ?13)",
            params![
                run.id,
                run.pipeline,
                run.at,
                run.inputs.to_string(),
                run.snapshot_id,
                held.then_some(&run.lease.owner),
                held.then_some(run.lease.pid),
                held.then_some(run.lease.pid_start as i64),
                held.then_some(&run.lease.host),
                held.then_some(run.at_ms),
                status,
                run.target.map(|(t, _)| t),
                run.actor,
            ],
        )?;
        tx.execute(
            "INSERT INTO phase_history (deployment_id, seq, phase, progress, metadata, created_at) \
             VALUES (?1, 1, 'QUEUED', 0, '{}', ?2)",
            params![run.id, run.at],
        )?;
        if status == "queued" {
            let kind = crate::event::EventKind::RunQueued { behind: queued_behind.clone() };
            events::insert_run_event(&tx, run.id, "QUEUED", 0, run.at, kind)?;
        }
        tx.commit()?;
        self.history_seq.insert(run.id.to_string(), 1);
        Ok(match queued_behind {
            Some(behind) => Admission::Queued { behind },
            None if run.for_workers => Admission::Queued { behind: String::new() },
            None => Admission::Admitted,
        })
    }

    fn admit(&mut self, id: &str, now_ms: i64, alive: Alive<'_>) -> Result<Admission, StoreError> {
        queue::admit(&mut self.conn, id, now_ms, alive)
    }

    fn claim_next(&mut self, lease: &Lease, now_ms: i64, alive: Alive<'_>) -> Result<Option<RunRow>, StoreError> {
        queue::claim_next(&mut self.conn, lease, now_ms, alive)
    }

    fn ids_starting_with(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM deployments WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id != ?1, id LIMIT ?2",
        )?;
        let ids = stmt.query_map(params![prefix, limit as i64], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    fn run_exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.conn.query_row("SELECT 1 FROM deployments WHERE id = ?1", [id], |_| Ok(())).optional()?.is_some())
    }

    fn write(&mut self, batch: &[Write]) -> Result<Vec<i64>, StoreError> {
        let mut seqs = Vec::new();
        if batch.is_empty() {
            return Ok(seqs);
        }
        // IMMEDIATE: the write lock is taken at BEGIN, waiting under the busy timeout. A
        // deferred transaction that reads first and then writes gets SQLITE_BUSY at once
        // (no busy handler) when another process wrote in between.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The run's own row is updated once per batch, with its latest state; every
        // phase update still gets its history row.
        let mut latest: Vec<(&str, RowState)> = Vec::new();
        let superseded = super::rows::superseded_checkpoints(batch);
        let mut events = Vec::new();
        for (i, write) in batch.iter().enumerate() {
            match write {
                // A later write of the same checkpoint in this batch replaces it.
                Write::Node(_) if superseded[i] => {}
                Write::Phase { run, phase, progress, metadata, node, at } => {
                    let metadata = metadata.to_string();
                    let seq = match self.history_seq.get_mut(run) {
                        Some(seq) => seq,
                        None => {
                            let last: i64 = tx.query_row(
                                "SELECT COALESCE(MAX(seq), 0) FROM phase_history WHERE deployment_id = ?1",
                                [run],
                                |r| r.get(0),
                            )?;
                            self.history_seq.entry(run.clone()).or_insert(last)
                        }
                    };
                    *seq += 1;
                    tx.prepare_cached(
                        "INSERT INTO phase_history (deployment_id, seq, phase, progress, metadata, node, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![run, *seq, phase, progress, metadata, node, at])?;
                    let state = RowState::of(&mut latest, run);
                    state.phase = Some((phase.clone(), *progress, at.clone()));
                    state.metadata = Some(metadata);
                    state.best = state.best.max(*progress);
                }
                Write::Progress { run, phase, progress, at } => {
                    let state = RowState::of(&mut latest, run);
                    state.phase = Some((phase.clone(), *progress, at.clone()));
                    state.best = state.best.max(*progress);
                }
                Write::Status { run, status, error, finished } => {
                    // A run that stops holding releases its lease.
                    tx.prepare_cached(
                        "UPDATE deployments SET status = ?2, error = COALESCE(?3, error), finished_at = ?4, \
                         lease_owner = CASE WHEN ?2 = 'running' THEN lease_owner ELSE NULL END WHERE id = ?1",
                    )?
                    .execute(params![run, status.as_str(), error, finished])?;
                }
                Write::Queue { run, target } => {
                    tx.execute(
                        "UPDATE deployments SET status = 'queued', target = ?2 WHERE id = ?1",
                        params![run, target],
                    )?;
                }
                Write::Node(n) => {
                    tx.prepare_cached(
                        "INSERT INTO node_checkpoints (deployment_id, node, status, attempt, outputs, error, started_at, finished_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                         ON CONFLICT(deployment_id, node) DO UPDATE SET status = excluded.status, attempt = excluded.attempt, \
                         outputs = excluded.outputs, error = excluded.error, started_at = excluded.started_at, \
                         finished_at = excluded.finished_at",
                    )?
                    .execute(params![
                        n.run,
                        n.node,
                        n.status.as_str(),
                        n.attempt,
                        n.outputs.as_ref().map(Value::to_string),
                        n.error,
                        n.started_at,
                        n.finished_at
                    ])?;
                }
                Write::ResetNodes { run, nodes, prefixes } => {
                    for node in nodes {
                        tx.execute(
                            "DELETE FROM node_checkpoints WHERE deployment_id = ?1 AND node = ?2",
                            params![run, node],
                        )?;
                    }
                    for prefix in prefixes {
                        tx.execute(
                            "DELETE FROM node_checkpoints WHERE deployment_id = ?1 AND substr(node, 1, length(?2)) = ?2",
                            params![run, prefix],
                        )?;
                    }
                }
                Write::Reloaded { run, snapshot_id, inputs } => {
                    tx.execute(
                        "UPDATE deployments SET snapshot_id = ?2, inputs = ?3 WHERE id = ?1",
                        params![run, snapshot_id, inputs.to_string()],
                    )?;
                }
                Write::Heartbeat { run, owner, at_ms } => {
                    let sql = "UPDATE deployments SET heartbeat_at = ?3 WHERE id = ?1 AND lease_owner = ?2";
                    if tx.prepare_cached(sql)?.execute(params![run, owner, at_ms])? == 0 {
                        return Err(StoreError::LeaseLost { run: run.clone() });
                    }
                }
                Write::Event(event) => events.push(event),
                Write::Notification(n) => service::insert_notification(&tx, n)?,
            }
        }
        events::insert_events(&tx, &events, &mut seqs)?;
        for (run, state) in latest {
            let Some((phase, progress, at)) = state.phase else { continue };
            tx.prepare_cached(
                "UPDATE deployments SET phase = ?2, phase_progress = ?3, phase_updated_at = ?4, \
                 phase_metadata = COALESCE(?5, phase_metadata), best_progress = MAX(best_progress, ?6) WHERE id = ?1",
            )?
            .execute(params![run, phase, progress, at, state.metadata, state.best])?;
        }
        tx.commit()?;
        Ok(seqs)
    }

    fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM deployments WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], run_row).optional()?)
    }

    fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM deployments ORDER BY created_at DESC, id");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], run_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn metrics(&self) -> Result<Metrics, StoreError> {
        stats::metrics(&self.conn)
    }

    fn runs_page(&self, filter: &RunFilter, before: Option<&str>, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        // Newest first, ties by id: after `before` is older than it, or as old with a
        // greater id.
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM deployments d WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR pipeline = ?2) \
             AND (?3 IS NULL OR target = ?3) AND (?4 IS NULL OR EXISTS (SELECT 1 FROM deployments b WHERE b.id = ?4 \
             AND (d.created_at < b.created_at OR (d.created_at = b.created_at AND d.id > b.id)))) \
             ORDER BY created_at DESC, id LIMIT ?5"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params![filter.status, filter.pipeline, filter.target, before, limit as i64], run_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn nodes(&self, run: &str) -> Result<Vec<NodeRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT node, status, attempt, outputs, error, started_at, finished_at FROM node_checkpoints \
             WHERE deployment_id = ?1 ORDER BY COALESCE(started_at, finished_at), node",
        )?;
        let rows = stmt
            .query_map([run], |r| {
                Ok(NodeRow {
                    run: run.to_string(),
                    node: r.get(0)?,
                    status: NodeStatus::parse(&r.get::<_, String>(1)?),
                    attempt: r.get(2)?,
                    outputs: r.get::<_, Option<String>>(3)?.map(|t| json(Some(t))),
                    error: r.get(4)?,
                    started_at: r.get(5)?,
                    finished_at: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn history(&self, run: &str) -> Result<Vec<HistoryRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT phase, progress, metadata, node, created_at FROM phase_history WHERE deployment_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([run], |r| {
                Ok(HistoryRow {
                    phase: r.get(0)?,
                    progress: r.get(1)?,
                    metadata: json(r.get(2)?),
                    node: r.get(3)?,
                    at: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn claim(
        &mut self,
        id: &str,
        lease: &Lease,
        now_ms: i64,
        alive: Alive<'_>,
    ) -> Result<(RunRow, RunRow), ClaimError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::from)?;
        let sql = format!("SELECT {RUN_COLUMNS} FROM deployments WHERE id = ?1");
        let row = tx.query_row(&sql, [id], run_row).optional().map_err(StoreError::from)?;
        let Some(before) = row else { return Err(ClaimError::Missing(id.to_string())) };
        let row = &before;
        if row.status == RunStatus::Succeeded {
            return Err(ClaimError::Finished { id: id.to_string() });
        }
        if let Some(held) = &row.lease
            && matches!(row.status, RunStatus::Running | RunStatus::Queued)
            && held.owner != lease.owner
            && alive(row)
        {
            return Err(ClaimError::Held { id: id.to_string(), pid: held.pid, host: held.host.clone() });
        }
        tx.execute(
            "UPDATE deployments SET status = 'running', attempt = attempt + 1, lease_owner = ?2, lease_pid = ?3, \
             lease_pid_start = ?4, lease_host = ?5, heartbeat_at = ?6, cancel_requested = 0, finished_at = NULL, error = NULL \
             WHERE id = ?1",
            params![id, lease.owner, lease.pid, lease.pid_start as i64, lease.host, now_ms],
        )
        .map_err(StoreError::from)?;
        let row = tx.query_row(&sql, [id], run_row).map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok((row, before))
    }

    fn request_cancel(&mut self, id: &str, alive: Alive<'_>) -> Result<Option<RunRow>, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let sql = format!("SELECT {RUN_COLUMNS} FROM deployments WHERE id = ?1");
        let Some(row) = tx.query_row(&sql, [id], run_row).optional()? else { return Ok(None) };
        let live = row.status == RunStatus::Running && alive(&row);
        if live {
            tx.execute("UPDATE deployments SET cancel_requested = 1 WHERE id = ?1", [id])?;
        } else if !matches!(row.status, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled) {
            tx.execute("UPDATE deployments SET status = 'cancelled', lease_owner = NULL WHERE id = ?1", [id])?;
            let reason = format!("cancelled while {}", row.status.as_str());
            let kind = crate::event::EventKind::RunInterrupted { reason };
            events::insert_run_event(&tx, id, &row.phase, row.progress, &crate::clock::now(), kind)?;
        }
        let row = tx.query_row(&sql, [id], run_row)?;
        tx.commit()?;
        Ok(Some(row))
    }

    fn create_token(&mut self, token: &TokenRow) -> Result<bool, StoreError> {
        service::create_token(&self.conn, token)
    }

    fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        service::tokens(&self.conn)
    }

    fn revoke_token(&mut self, name: &str) -> Result<bool, StoreError> {
        service::revoke_token(&mut self.conn, name)
    }

    fn create_session(
        &mut self,
        hash: &str,
        token: &str,
        at: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        service::create_session(&self.conn, hash, token, at, expires_ms, now_ms)
    }

    fn session_token(&self, hash: &str, now_ms: i64) -> Result<Option<TokenRow>, StoreError> {
        service::session_token(&self.conn, hash, now_ms)
    }

    fn end_session(&mut self, hash: &str) -> Result<(), StoreError> {
        service::end_session(&self.conn, hash)
    }

    fn last_event_of(&self, run: &str) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events WHERE deployment_id = ?1", [run], |r| r.get(0))?)
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        service::token_by_hash(&self.conn, hash)
    }

    fn touch_token(&mut self, name: &str, at: &str) -> Result<(), StoreError> {
        service::touch_token(&self.conn, name, at)
    }

    fn record_delivery(
        &mut self,
        trigger: &str,
        delivery: &str,
        at: &str,
        unqueued_before: &str,
    ) -> Result<bool, StoreError> {
        service::record_delivery(&self.conn, trigger, delivery, at, unqueued_before)
    }

    fn due_notifications(&self, run: Option<&str>, now_ms: i64) -> Result<Vec<NotificationRow>, StoreError> {
        service::due_notifications(&self.conn, run, now_ms)
    }

    fn claim_notification(&mut self, id: i64, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
        service::claim_notification(&self.conn, id, now_ms, until_ms)
    }

    fn notification_attempt(
        &mut self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        next_at: Option<i64>,
        at: &str,
    ) -> Result<(), StoreError> {
        service::notification_attempt(&self.conn, id, delivered, error, next_at, at)
    }

    fn notifications(&self, run: &str) -> Result<Vec<NotificationRow>, StoreError> {
        service::notifications(&self.conn, run)
    }

    fn forget_cached(&mut self) {
        self.history_seq.clear();
    }

    fn forget_delivery(&mut self, trigger: &str, delivery: &str) -> Result<(), StoreError> {
        service::forget_delivery(&self.conn, trigger, delivery)
    }

    fn node_durations(&self, pipeline: Option<&str>, last_runs: usize) -> Result<Vec<NodeDuration>, StoreError> {
        stats::node_durations(&self.conn, pipeline, last_runs)
    }

    fn delivery_run(&mut self, trigger: &str, delivery: &str, run: &str) -> Result<(), StoreError> {
        service::delivery_run(&self.conn, trigger, delivery, run)
    }

    fn latest_event(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
    }

    fn events(&self, run: Option<&str>, after: i64, limit: usize) -> Result<Vec<Value>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, data FROM events WHERE seq > ?1 AND (?2 IS NULL OR deployment_id = ?2) ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![after, run, limit as i64], |r| {
                let mut event = json(r.get(1)?);
                if let Value::Object(fields) = &mut event {
                    fields.insert("seq".into(), Value::from(r.get::<_, i64>(0)?));
                }
                Ok(event)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn delete_runs(&mut self, ids: &[String]) -> Result<usize, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut deleted = 0;
        for id in ids {
            // Events have no cascade of their own to rely on in older files: said here.
            tx.execute("DELETE FROM events WHERE deployment_id = ?1", [id])?;
            tx.execute("DELETE FROM node_checkpoints WHERE deployment_id = ?1", [id])?;
            tx.execute("DELETE FROM phase_history WHERE deployment_id = ?1", [id])?;
            deleted += tx.execute("DELETE FROM deployments WHERE id = ?1", [id])?;
            self.history_seq.remove(id);
        }
        tx.execute("DELETE FROM snapshots WHERE id NOT IN (SELECT snapshot_id FROM deployments)", [])?;
        tx.commit()?;
        Ok(deleted)
    }

    fn stop_requested(&self, id: &str) -> Result<StopRequest, StoreError> {
        let value: i64 =
            self.conn.query_row("SELECT cancel_requested FROM deployments WHERE id = ?1", [id], |r| r.get(0))?;
        Ok(match value {
            0 => StopRequest::None,
            2 => StopRequest::Supersede,
            _ => StopRequest::Cancel,
        })
    }

    fn seed_query(&self, id: &str) -> Result<Vec<Value>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, phase, phase_progress, phase_metadata->>'buildType' as build_type, \
             phase_metadata->>'sourceType' as source_type, phase_updated_at, status \
             FROM deployments WHERE id = ?1 ORDER BY phase_updated_at DESC",
        )?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(serde_json::json!({
                    "id": r.get::<_, String>(0)?, "phase": r.get::<_, String>(1)?, "phase_progress": r.get::<_, i64>(2)?,
                    "build_type": r.get::<_, Option<String>>(3)?, "source_type": r.get::<_, Option<String>>(4)?,
                    "phase_updated_at": r.get::<_, String>(5)?, "status": r.get::<_, String>(6)?,
                }))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
