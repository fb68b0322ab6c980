//! Rows as both databases give them back, read into the store's row types.

use serde_json::Value;

use super::sql::{Dialect, Row};
use super::{Lease, NodeRow, NodeStatus, NotificationRow, Role, RunRow, RunStatus, TokenRow};

/// A run's row (the columns of [`Dialect::run_columns`]).
pub(super) fn run_row(d: &Dialect, row: &Row) -> RunRow {
    let lease = row.opt_text(14).map(|owner| Lease {
        owner,
        pid: row.int(15) as u32,
        pid_start: row.int(16) as u64,
        host: row.text(17),
    });
    RunRow {
        id: row.text(0),
        pipeline: row.text(1),
        status: RunStatus::parse(&row.text(2)),
        phase: row.text(3),
        progress: row.int(4) as u8,
        metadata: row.json(5),
        phase_updated_at: row.text(6),
        inputs: row.json(7),
        snapshot_id: row.int(8),
        attempt: row.int(9) as u32,
        best_progress: row.int(10) as u8,
        error: row.opt_text(11),
        created_at: row.text(12),
        finished_at: row.opt_text(13),
        lease,
        heartbeat_at: d.heartbeat(row.opt_int(18)),
        cancel_requested: row.int(19) != 0,
        target: row.opt_text(20),
        superseded_by: row.opt_text(21),
        actor: row.opt_text(22),
        failed_node: row.opt_text(23),
    }
}

/// The place of a run in the order runs were created (the last of the run columns).
pub(super) fn creation_order(row: &Row) -> i64 {
    row.int(24)
}

pub(super) const NODE_COLUMNS: &str = "node, status, attempt, outputs, error, started_at, finished_at";

pub(super) fn node_row(run: &str, row: &Row) -> NodeRow {
    NodeRow {
        run: run.to_string(),
        node: row.text(0),
        status: NodeStatus::parse(&row.text(1)),
        attempt: row.int(2) as u32,
        outputs: row.opt_text(3).map(|_| row.json(3)),
        error: row.opt_text(4),
        started_at: row.opt_text(5),
        finished_at: row.opt_text(6),
    }
}

pub(super) const TOKEN_COLUMNS: &str = "t.name, t.role, t.hash, t.created_at, t.last_used_at";

pub(super) fn token_row(row: &Row) -> TokenRow {
    TokenRow {
        name: row.text(0),
        role: Role::parse(&row.text(1)).unwrap_or(Role::Read),
        hash: row.text(2),
        created_at: row.text(3),
        last_used_at: row.opt_text(4),
    }
}

pub(super) const NOTIFICATION_COLUMNS: &str = "id, deployment_id, outcome, url_template, format, body, status, \
     attempts, next_at, last_error, created_at, delivered_at";

pub(super) fn notification_row(row: &Row) -> NotificationRow {
    NotificationRow {
        id: row.int(0),
        run: row.text(1),
        outcome: row.text(2),
        url_template: row.text(3),
        format: row.text(4),
        body: row.text(5),
        status: row.text(6),
        attempts: row.int(7) as u32,
        next_at: row.int(8),
        last_error: row.opt_text(9),
        created_at: row.text(10),
        delivered_at: row.opt_text(11),
    }
}

/// A list as the JSON array [`Dialect::list`] reads.
pub(super) fn list(items: &[String]) -> Value {
    Value::from(items.to_vec())
}
