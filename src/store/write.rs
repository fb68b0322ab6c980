//! A batch of writes in one transaction, for both databases: a history row per phase
//! update, the run's row updated once with its latest state, the events last (under
//! PostgreSQL's events lock, taken as late as possible). Only the heartbeat's count is
//! read before the end: on PostgreSQL the rest is pipelined with the `COMMIT`
//! (`sql::Db::defer`), two round trips a batch.

use serde_json::Value;

use super::columns::list;
use super::sql::{Db, Param, ToParam, params};
use super::{NodeRow, StoreError, Write};

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
    // Written a few rows to a statement, after the heartbeat.
    let (mut history, mut nodes) = (Vec::new(), Vec::new());
    let superseded = super::rows::superseded_checkpoints(batch);
    for (i, write) in batch.iter().enumerate() {
        match write {
            // A later write of the same checkpoint in this batch replaces it.
            Write::Node(_) if superseded[i] => {}
            // A run's history is numbered 1, 2, ... (only its lease holder writes it).
            Write::Phase { run, phase, progress, metadata, at, .. } => {
                history.push(write);
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
            Write::Node(n) => nodes.push(n),
            Write::ResetNodes { run, nodes: forgotten, prefixes } => {
                // After the checkpoints written before it, before those after it.
                upsert_nodes(db, &std::mem::take(&mut nodes))?;
                let d = db.dialect();
                let sql = format!(
                    "DELETE FROM node_checkpoints WHERE deployment_id = ?1 AND (node IN (SELECT p.value FROM {}) \
                     OR EXISTS (SELECT 1 FROM {} WHERE substr(node, 1, length(p.value)) = p.value))",
                    d.list("?2"),
                    d.list("?3")
                );
                db.defer(&sql, params![run, list(forgotten), list(prefixes)])?;
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
    insert_history(db, &history)?;
    upsert_nodes(db, &nodes)?;
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

/// Rows a statement writes at most (each count is a statement of its own, prepared once).
const ROWS: usize = 32;

/// `(?a, ?b, ...), (...)`: `rows` rows of `columns` placeholders, where `row(k, first)`
/// writes the row whose first placeholder is `first`.
fn values(rows: usize, columns: usize, row: impl Fn(usize) -> String) -> String {
    (0..rows).map(|k| row(k * columns + 1)).collect::<Vec<_>>().join(", ")
}

/// History rows, a few to a statement. A run's are numbered on from its last one:
/// each row's sub-select sees the table as it was before the statement (on both
/// databases), so the k-th row of a run in the statement takes that run's last number
/// plus k.
fn insert_history(db: &mut dyn Db, history: &[&Write]) -> Result<(), StoreError> {
    for chunk in history.chunks(ROWS) {
        let row = |p: usize| {
            format!(
                "(?{p}, (SELECT COALESCE(MAX(seq), 0) FROM phase_history WHERE deployment_id = ?{p}) + ?{}, \
                 ?{}, ?{}, ?{}, ?{}, ?{})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6
            )
        };
        let sql = format!(
            "INSERT INTO phase_history (deployment_id, seq, phase, progress, metadata, node, created_at) VALUES {}",
            values(chunk.len(), 7, row)
        );
        let mut taken: Vec<(&str, i64)> = Vec::new();
        let mut params = Vec::with_capacity(chunk.len() * 7);
        for write in chunk {
            let Write::Phase { run, phase, progress, metadata, node, at } = write else { continue };
            let k = match taken.iter_mut().find(|(r, _)| r == run) {
                Some((_, k)) => {
                    *k += 1;
                    *k
                }
                None => {
                    taken.push((run, 1));
                    1
                }
            };
            params.extend([
                run.param(),
                Param::Int(k),
                phase.param(),
                Param::Int(i64::from(*progress)),
                metadata.param(),
                node.param(),
                at.param(),
            ]);
        }
        db.defer(&sql, &params)?;
    }
    Ok(())
}

/// Checkpoints, a few to a statement (none twice: a batch keeps a checkpoint's last
/// write only).
fn upsert_nodes(db: &mut dyn Db, nodes: &[&NodeRow]) -> Result<(), StoreError> {
    for chunk in nodes.chunks(ROWS) {
        let row = |p: usize| {
            format!("(?{p}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})", p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7)
        };
        let sql = format!(
            "INSERT INTO node_checkpoints (deployment_id, node, status, attempt, outputs, error, started_at, \
             finished_at) VALUES {} ON CONFLICT (deployment_id, node) DO UPDATE SET status = excluded.status, \
             attempt = excluded.attempt, outputs = excluded.outputs, error = excluded.error, \
             started_at = excluded.started_at, finished_at = excluded.finished_at",
            values(chunk.len(), 8, row)
        );
        let outputs: Vec<Option<String>> = chunk.iter().map(|n| n.outputs.as_ref().map(Value::to_string)).collect();
        let mut params = Vec::with_capacity(chunk.len() * 8);
        for (n, outputs) in chunk.iter().zip(&outputs) {
            params.extend([
                n.run.param(),
                n.node.param(),
                Param::Text(n.status.as_str()),
                Param::Int(i64::from(n.attempt)),
                outputs.param(),
                n.error.param(),
                n.started_at.param(),
                n.finished_at.param(),
            ]);
        }
        db.defer(&sql, &params)?;
    }
    Ok(())
}
