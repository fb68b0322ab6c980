//! Rows as the SQLite store reads and batches them: a run's row, and the latest state
//! of each run within one batch of writes.

use serde_json::Value;

use super::super::{Lease, RunRow, RunStatus};

/// The latest state of a run's row within one batch.
#[derive(Default)]
pub(super) struct RowState {
    pub(super) phase: Option<(String, u8, String)>,
    pub(super) metadata: Option<String>,
    pub(super) best: u8,
}

impl RowState {
    pub(super) fn of<'a, 'r>(latest: &'a mut Vec<(&'r str, RowState)>, run: &'r str) -> &'a mut RowState {
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

pub(super) fn json(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
}

/// A run's columns, then its first failed node (from its checkpoints: `id` in the
/// sub-select is the outer row's, as `node_checkpoints` has no `id`).
pub(super) const RUN_COLUMNS: &str = "id, pipeline, status, phase, phase_progress, phase_metadata, phase_updated_at, inputs, \
     snapshot_id, attempt, best_progress, error, created_at, finished_at, lease_owner, lease_pid, lease_pid_start, \
     lease_host, heartbeat_at, cancel_requested, target, superseded_by, actor, \
     (SELECT c.node FROM node_checkpoints c WHERE c.deployment_id = id AND c.status = 'failed' ORDER BY c.finished_at, c.node LIMIT 1)";

/// How many columns [`RUN_COLUMNS`] selects.
pub(super) const RUN_COLUMN_COUNT: usize = 24;

pub(super) fn run_row(row: &rusqlite::Row) -> rusqlite::Result<RunRow> {
    let owner: Option<String> = row.get(14)?;
    let lease = match owner {
        Some(owner) => Some(Lease {
            owner,
            pid: row.get::<_, Option<u32>>(15)?.unwrap_or(0),
            pid_start: row.get::<_, Option<i64>>(16)?.unwrap_or(0) as u64,
            host: row.get::<_, Option<String>>(17)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(RunRow {
        id: row.get(0)?,
        pipeline: row.get(1)?,
        status: RunStatus::parse(&row.get::<_, String>(2)?),
        phase: row.get(3)?,
        progress: row.get(4)?,
        metadata: json(row.get(5)?),
        phase_updated_at: row.get(6)?,
        inputs: json(row.get(7)?),
        snapshot_id: row.get(8)?,
        attempt: row.get(9)?,
        best_progress: row.get(10)?,
        error: row.get(11)?,
        created_at: row.get(12)?,
        finished_at: row.get(13)?,
        lease,
        heartbeat_at: row.get(18)?,
        cancel_requested: row.get::<_, i64>(19)? != 0,
        target: row.get(20)?,
        superseded_by: row.get(21)?,
        actor: row.get(22)?,
        failed_node: row.get(23)?,
    })
}
