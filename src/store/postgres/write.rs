//! A batch of writes in one transaction, as the SQLite store does it: a history row per
//! phase update, the run's row updated once with its latest state, the events last
//! (under the events lock, taken as late as possible).

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Statement, Transaction};
use serde_json::Value;

use super::super::{NotificationRow, StoreError, Write};
use super::conn::{Conn, locks};
use super::rows::DB_NOW_MS;
use crate::event::Event;

/// The latest state of a run's row within one batch.
#[derive(Default)]
struct RowState {
    phase: Option<(String, i32, String)>,
    metadata: Option<Value>,
    best: i32,
}

pub(super) fn write(conn: &mut Conn, batch: &[Write]) -> Result<Vec<i64>, StoreError> {
    let (client, statements, history_seq) = conn.parts();
    let mut tx = client.transaction()?;
    let mut latest: Vec<(&str, RowState)> = Vec::new();
    // Counters move only when the transaction commits.
    let mut seqs_of: HashMap<String, i64> = HashMap::new();
    let mut events = Vec::new();
    let superseded = super::super::rows::superseded_checkpoints(batch);
    for (i, write) in batch.iter().enumerate() {
        match write {
            // A later write of the same checkpoint in this batch replaces it.
            Write::Node(_) if superseded[i] => {}
            Write::Phase { run, phase, progress, metadata, node, at } => {
                let seq = match seqs_of.get_mut(run) {
                    Some(seq) => seq,
                    None => {
                        let last = match history_seq.get(run) {
                            Some(last) => *last,
                            None => tx
                                .query_one(
                                    "SELECT COALESCE(MAX(seq), 0) FROM phase_history WHERE deployment_id = $1",
                                    &[run],
                                )?
                                .get::<_, i32>(0)
                                .into(),
                        };
                        seqs_of.entry(run.clone()).or_insert(last)
                    }
                };
                *seq += 1;
                let insert = Conn::prepare(
                    statements,
                    &mut tx,
                    "INSERT INTO phase_history (deployment_id, seq, phase, progress, metadata, node, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )?;
                tx.execute(&insert, &[run, &(*seq as i32), phase, &i32::from(*progress), metadata, node, at])?;
                let state = row_state(&mut latest, run);
                state.phase = Some((phase.clone(), i32::from(*progress), at.clone()));
                state.metadata = Some(metadata.clone());
                state.best = state.best.max(i32::from(*progress));
            }
            Write::Progress { run, phase, progress, at } => {
                let state = row_state(&mut latest, run);
                state.phase = Some((phase.clone(), i32::from(*progress), at.clone()));
                state.best = state.best.max(i32::from(*progress));
            }
            Write::Status { run, status, error, finished } => {
                let update = Conn::prepare(
                    statements,
                    &mut tx,
                    "UPDATE deployments SET status = $2, error = COALESCE($3, error), finished_at = $4, \
                     lease_owner = CASE WHEN $2 = 'running' THEN lease_owner ELSE NULL END WHERE id = $1",
                )?;
                tx.execute(&update, &[run, &status.as_str(), error, finished])?;
            }
            Write::Queue { run, target } => {
                tx.execute("UPDATE deployments SET status = 'queued', target = $2 WHERE id = $1", &[run, target])?;
            }
            Write::Node(n) => {
                let upsert = Conn::prepare(
                    statements,
                    &mut tx,
                    "INSERT INTO node_checkpoints (deployment_id, node, status, attempt, outputs, error, started_at, finished_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (deployment_id, node) DO UPDATE SET status = excluded.status, attempt = excluded.attempt, \
                     outputs = excluded.outputs, error = excluded.error, started_at = excluded.started_at, \
                     finished_at = excluded.finished_at",
                )?;
                let outputs = n.outputs.as_ref().map(Value::to_string);
                tx.execute(
                    &upsert,
                    &[
                        &n.run,
                        &n.node,
                        &n.status.as_str(),
                        &(n.attempt as i32),
                        &outputs,
                        &n.error,
                        &n.started_at,
                        &n.finished_at,
                    ],
                )?;
            }
            Write::ResetNodes { run, nodes, prefixes } => {
                tx.execute(
                    "DELETE FROM node_checkpoints WHERE deployment_id = $1 AND (node = ANY($2) OR \
                     EXISTS (SELECT 1 FROM unnest($3::text[]) p WHERE starts_with(node, p)))",
                    &[run, nodes, prefixes],
                )?;
            }
            Write::Reloaded { run, snapshot_id, inputs } => {
                tx.execute(
                    "UPDATE deployments SET snapshot_id = $2, inputs = $3 WHERE id = $1",
                    &[run, snapshot_id, &inputs.to_string()],
                )?;
            }
            // The database's clock, not the holder's: takers compare with it (`at_ms` is
            // the SQLite store's, whose processes share one machine's clock).
            Write::Heartbeat { run, owner, .. } => {
                let sql =
                    format!("UPDATE deployments SET heartbeat_at = {DB_NOW_MS} WHERE id = $1 AND lease_owner = $2");
                let beat = Conn::prepare(statements, &mut tx, &sql)?;
                // The batch of a holder that lost its lease is refused whole.
                if tx.execute(&beat, &[run, owner])? == 0 {
                    return Err(StoreError::LeaseLost { run: run.clone() });
                }
            }
            Write::Event(event) => events.push(event),
            Write::Notification(n) => insert_notification(&mut tx, n)?,
        }
    }
    for (run, state) in latest {
        let Some((phase, progress, at)) = state.phase else { continue };
        let update = Conn::prepare(
            statements,
            &mut tx,
            "UPDATE deployments SET phase = $2, phase_progress = $3, phase_updated_at = $4, \
             phase_metadata = COALESCE($5, phase_metadata), best_progress = GREATEST(best_progress, $6) WHERE id = $1",
        )?;
        tx.execute(&update, &[&run, &phase, &progress, &at, &state.metadata, &state.best])?;
    }
    let seqs = insert_events(&mut tx, statements, &events)?;
    tx.commit()?;
    history_seq.extend(seqs_of);
    Ok(seqs)
}

fn row_state<'a, 'r>(latest: &'a mut Vec<(&'r str, RowState)>, run: &'r str) -> &'a mut RowState {
    let i = match latest.iter().position(|(r, _)| *r == run) {
        Some(i) => i,
        None => {
            latest.push((run, RowState::default()));
            latest.len() - 1
        }
    };
    &mut latest[i].1
}

/// Inserts events in one statement, under the events lock (held to the commit: the
/// numbers they get are committed in order). Returns their numbers, in order.
pub(super) fn insert_events(
    tx: &mut Transaction,
    statements: &mut HashMap<String, Statement>,
    events: &[&Event],
) -> Result<Vec<i64>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let lock = Conn::prepare(statements, tx, "SELECT pg_advisory_xact_lock($1)")?;
    tx.execute(&lock, &[&locks::EVENTS])?;
    let runs: Vec<&str> = events.iter().map(|e| e.deployment.as_str()).collect();
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    let nodes: Vec<Option<&str>> = events.iter().map(|e| e.node()).collect();
    let data: Vec<String> = events.iter().map(|e| e.to_json_string()).collect();
    let at: Vec<&str> = events.iter().map(|e| e.ts.as_str()).collect();
    let params: [&(dyn ToSql + Sync); 5] = [&runs, &names, &nodes, &data, &at];
    // The streams of every server wake on the NOTIFY, sent when this commits.
    let insert = Conn::prepare(
        statements,
        tx,
        "WITH stored AS (INSERT INTO events (deployment_id, event, node, data, created_at) \
         SELECT r, k, n, d, t FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
         WITH ORDINALITY AS e(r, k, n, d, t, i) ORDER BY i RETURNING seq), \
         woken AS (SELECT pg_notify('phased_events', '')) SELECT seq FROM stored, woken",
    )?;
    let rows = tx.query(&insert, &params)?;
    let mut seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// An event the store itself writes, in the transaction that makes it true: a run
/// queued, or a run nobody held cancelled.
pub(super) fn insert_run_event(
    tx: &mut super::conn::Tx,
    run: &str,
    phase: &str,
    progress: u8,
    at: &str,
    kind: crate::event::EventKind,
) -> Result<(), StoreError> {
    let event = super::super::rows::run_event(run, phase, progress, at, kind);
    insert_events(&mut tx.tx, tx.statements, &[&event])?;
    Ok(())
}

fn insert_notification(tx: &mut Transaction, n: &NotificationRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO notifications (deployment_id, outcome, url_template, format, body, next_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&n.run, &n.outcome, &n.url_template, &n.format, &n.body, &n.next_at, &n.created_at],
    )?;
    Ok(())
}
