//! A batch of writes in one transaction, for both databases: a history row per phase
//! update, the run's row updated once with its latest state, the events last (under
//! PostgreSQL's events lock, taken as late as possible). Only the heartbeat's count is
//! read before the end: on PostgreSQL the rest is pipelined with the `COMMIT`
//! (`sql::Db::defer`), two round trips a batch.

use serde_json::Value;

use super::columns::list;
use super::sql::{Db, params};
use super::{StoreError, Write};

/// The latest state of a run's row within one batch.
#[derive(Default)]
struct RowState<'a> {
    phase: Option<(&'a str, u8, &'a str)>,
    metadata: Option<&'a Value>,
    best: u8,
}

impl<'a> RowState<'a> {
    fn of<'l>(latest: &'l mut Vec<(&'a str, RowState<'a>)>, run: &'a str) -> &'l mut RowState<'a> {
        let i = match latest.iter().position(|(r, _)| *r == run) {
            Some(i) => i,
            None => {
                latest.push((run, RowState::default()));
                latest.len() - 1
            }
        };
        &mut latest[i].1
    }
}

/// Applies a batch. Returns the numbers the batch's events were given, in order.
pub(super) fn write(db: &mut dyn Db, batch: &[Write]) -> Result<Vec<i64>, StoreError> {
    let mut latest: Vec<(&str, RowState)> = Vec::new();
    let mut events = Vec::new();
    let superseded = super::rows::superseded_checkpoints(batch);
    for (i, write) in batch.iter().enumerate() {
        match write {
            // A later write of the same checkpoint in this batch replaces it.
            Write::Node(_) if superseded[i] => {}
            // A run's history is numbered 1, 2, ... (only its lease holder writes it).
            Write::Phase { run, phase, progress, metadata, node, at } => {
                db.defer(
                    "INSERT INTO phase_history (deployment_id, seq, phase, progress, metadata, node, created_at) \
                     VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM phase_history WHERE deployment_id = ?1), \
                     ?2, ?3, ?4, ?5, ?6)",
                    params![run, phase, *progress, metadata, node, at],
                )?;
                let state = RowState::of(&mut latest, run);
                state.phase = Some((phase, *progress, at));
                state.metadata = Some(metadata);
                state.best = state.best.max(*progress);
            }
            Write::Progress { run, phase, progress, at } => {
                let state = RowState::of(&mut latest, run);
                state.phase = Some((phase, *progress, at));
                state.best = state.best.max(*progress);
            }
            // A run that stops holding releases its lease.
            Write::Status { run, status, error, finished } => {
                db.defer(
                    "UPDATE deployments SET status = ?2, error = COALESCE(?3, error), finished_at = ?4, \
                     lease_owner = CASE WHEN ?2 = 'running' THEN lease_owner ELSE NULL END WHERE id = ?1",
                    params![run, status.as_str(), error, finished],
                )?;
            }
            Write::Queue { run, target } => {
                db.defer("UPDATE deployments SET status = 'queued', target = ?2 WHERE id = ?1", params![run, target])?;
            }
            Write::Node(n) => {
                db.defer(
                    "INSERT INTO node_checkpoints (deployment_id, node, status, attempt, outputs, error, started_at, \
                     finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT (deployment_id, node) DO UPDATE SET status = excluded.status, attempt = excluded.attempt, \
                     outputs = excluded.outputs, error = excluded.error, started_at = excluded.started_at, \
                     finished_at = excluded.finished_at",
                    params![
                        n.run,
                        n.node,
                        n.status.as_str(),
                        n.attempt,
                        n.outputs.as_ref().map(Value::to_string),
                        n.error,
                        n.started_at,
                        n.finished_at
                    ],
                )?;
            }
            Write::ResetNodes { run, nodes, prefixes } => {
                let d = db.dialect();
                let sql = format!(
                    "DELETE FROM node_checkpoints WHERE deployment_id = ?1 AND (node IN (SELECT p.value FROM {}) \
                     OR EXISTS (SELECT 1 FROM {} WHERE substr(node, 1, length(p.value)) = p.value))",
                    d.list("?2"),
                    d.list("?3")
                );
                db.defer(&sql, params![run, list(nodes), list(prefixes)])?;
            }
            Write::Reloaded { run, snapshot_id, inputs } => {
                db.defer(
                    "UPDATE deployments SET snapshot_id = ?2, inputs = ?3 WHERE id = ?1",
                    params![run, snapshot_id, inputs.to_string()],
                )?;
            }
            // The heartbeat is on the database's clock on PostgreSQL (`at_ms` is the
            // holder's): takers compare with it. The batch of a holder that lost its
            // lease is refused whole.
            Write::Heartbeat { run, owner, at_ms } => {
                let now = db.dialect().now_ms("?3");
                let sql = format!("UPDATE deployments SET heartbeat_at = {now} WHERE id = ?1 AND lease_owner = ?2");
                if db.execute(&sql, params![run, owner, at_ms])? == 0 {
                    return Err(StoreError::LeaseLost { run: run.clone() });
                }
            }
            Write::Event(event) => events.push(event),
            Write::Notification(n) => {
                db.defer(
                    "INSERT INTO notifications (deployment_id, outcome, url_template, format, body, next_at, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![n.run, n.outcome, n.url_template, n.format, n.body, n.next_at, n.created_at],
                )?;
            }
        }
    }
    for (run, state) in latest {
        let Some((phase, progress, at)) = state.phase else { continue };
        db.defer(
            "UPDATE deployments SET phase = ?2, phase_progress = ?3, phase_updated_at = ?4, \
             phase_metadata = COALESCE(?5, phase_metadata), \
             best_progress = CASE WHEN best_progress > ?6 THEN best_progress ELSE ?6 END WHERE id = ?1",
            params![run, phase, progress, at, state.metadata, state.best],
        )?;
    }
    super::events::insert_events(db, &events, true)
}
