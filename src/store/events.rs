//! The events runs emit, for both databases: stored a few to a statement (numbered in
//! the order they are given), and read back as streams.

use serde_json::Value;

use super::backend::Backend;
use super::sql::{Db, params};
use super::{EventStore, StoreError};
use crate::event::Event;

impl<B: Backend> EventStore for B {
    fn events(&self, run: Option<&str>, after: i64, limit: usize) -> Result<Vec<Value>, StoreError> {
        let sql = "SELECT seq, data FROM events WHERE seq > ?1 AND (CAST(?2 AS TEXT) IS NULL OR deployment_id = ?2) \
                   ORDER BY seq LIMIT ?3";
        let event = |r: &super::sql::Row| {
            let mut event = r.json(1);
            if let Value::Object(fields) = &mut event {
                fields.insert("seq".into(), Value::from(r.int(0)));
            }
            event
        };
        self.direct(|db| Ok(db.query(sql, params![after, run, limit])?.iter().map(event).collect()))
    }

    fn latest_event(&self) -> Result<i64, StoreError> {
        self.direct(|db| Ok(db.query_one("SELECT COALESCE(MAX(seq), 0) FROM events", params![])?.int(0)))
    }

    fn last_event_of(&self, run: &str) -> Result<i64, StoreError> {
        let sql = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE deployment_id = ?1";
        self.direct(|db| Ok(db.query_one(sql, params![run])?.int(0)))
    }

    fn wait_for_events(&self, poll: std::time::Duration) {
        self.wait(poll);
    }
}

/// Inserts events, a few to a statement. Returns their numbers, in order. `last`: they
/// are the transaction's last statements (see `Db::query_last`).
pub(super) fn insert_events(db: &mut dyn Db, events: &[&Event], last: bool) -> Result<Vec<i64>, StoreError> {
    let mut seqs = Vec::with_capacity(events.len());
    if events.is_empty() {
        return Ok(seqs);
    }
    let d = db.dialect();
    if let Some(lock) = d.lock_events {
        db.defer(lock, params![])?;
    }
    let chunks = events.len().div_ceil(d.event_rows);
    for (c, chunk) in events.chunks(d.event_rows).enumerate() {
        let rows: Vec<String> = (0..chunk.len())
            .map(|k| format!("(?{}, ?{}, ?{}, ?{}, ?{})", 5 * k + 1, 5 * k + 2, 5 * k + 3, 5 * k + 4, 5 * k + 5))
            .collect();
        let insert = format!(
            "INSERT INTO events (deployment_id, event, node, data, created_at) VALUES {} RETURNING seq",
            rows.join(", ")
        );
        let data: Vec<String> = chunk.iter().map(|e| e.to_json_string()).collect();
        let names: Vec<&str> = chunk.iter().map(|e| e.name()).collect();
        let nodes: Vec<Option<&str>> = chunk.iter().map(|e| e.node()).collect();
        let mut values = Vec::with_capacity(chunk.len() * 5);
        for (k, event) in chunk.iter().enumerate() {
            values.extend_from_slice(params![event.deployment, names[k], nodes[k], data[k], event.ts]);
        }
        let first = seqs.len();
        let insert = d.notifying(insert);
        let stored =
            if last && c + 1 == chunks { db.query_last(&insert, &values)? } else { db.query(&insert, &values)? };
        seqs.extend(stored.iter().map(|r| r.int(0)));
        seqs[first..].sort_unstable();
    }
    Ok(seqs)
}

/// An event the store itself writes, in the transaction that makes it true: a run
/// queued, or a run nobody held cancelled.
pub(super) fn insert_run_event(
    db: &mut dyn Db,
    run: &str,
    phase: &str,
    progress: u8,
    at: &str,
    kind: crate::event::EventKind,
) -> Result<(), StoreError> {
    let event = super::rows::run_event(run, phase, progress, at, kind);
    insert_events(db, &[&event], false).map(drop)
}
