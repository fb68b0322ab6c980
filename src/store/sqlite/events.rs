//! Events are written many to a statement, so that a batch of them costs few steps.

use crate::event::Event;

/// Events per INSERT statement: AUTOINCREMENT updates `sqlite_sequence` once per
/// statement, and the rows of one statement get consecutive sequence numbers.
const EVENT_ROWS: usize = 16;

pub(super) fn insert_events(
    tx: &rusqlite::Transaction,
    events: &[&Event],
    seqs: &mut Vec<i64>,
) -> rusqlite::Result<()> {
    for chunk in events.chunks(EVENT_ROWS) {
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO events (deployment_id, event, node, data, created_at) VALUES {rows}");
        let data: Vec<String> = chunk.iter().map(|e| e.to_json_string()).collect();
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 5);
        let names: Vec<&str> = chunk.iter().map(|e| e.name()).collect();
        let nodes: Vec<Option<&str>> = chunk.iter().map(|e| e.node()).collect();
        for (k, event) in chunk.iter().enumerate() {
            values.extend([&event.deployment as &dyn rusqlite::ToSql, &names[k], &nodes[k], &data[k], &event.ts]);
        }
        tx.prepare_cached(&sql)?.execute(values.as_slice())?;
        let last = tx.last_insert_rowid();
        seqs.extend(last - chunk.len() as i64 + 1..=last);
    }
    Ok(())
}

/// An event the store itself writes, in the transaction that makes it true: a run
/// queued, or a run nobody held cancelled.
pub(super) fn insert_run_event(
    tx: &rusqlite::Transaction,
    run: &str,
    phase: &str,
    progress: u8,
    at: &str,
    kind: crate::event::EventKind,
) -> rusqlite::Result<()> {
    let event = super::super::rows::run_event(run, phase, progress, at, kind);
    insert_events(tx, &[&event], &mut Vec::new())
}
