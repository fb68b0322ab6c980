//! Rows as the PostgreSQL store reads them.

use postgres::Row;
use serde_json::Value;

use super::super::{Lease, NodeRow, NodeStatus, NotificationRow, Role, RunRow, RunStatus, TokenRow};

/// The database server's clock in Unix milliseconds: heartbeats are written and judged
/// by it alone, so that holders and takers on machines whose clocks differ agree.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}
pub(super) const DB_NOW_MS: &str = db_now_ms!();

/// Column 18 is the heartbeat relative to the database's clock now (zero or less):
/// [`run_row`] places it on this process's clock, which the lease checks read.
pub(super) const RUN_COLUMNS: &str = concat!(
    "id, pipeline, status, phase, phase_progress, phase_metadata, phase_updated_at, inputs, \
     snapshot_id, attempt, best_progress, error, created_at, finished_at, lease_owner, lease_pid, lease_pid_start, \
     lease_host, heartbeat_at - ",
    db_now_ms!(),
    ", cancel_requested, target, superseded_by, actor, \
     (SELECT c.node FROM node_checkpoints c WHERE c.deployment_id = id AND c.status = 'failed' ORDER BY c.finished_at, c.node LIMIT 1), queue_seq"
);

pub(super) fn json(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
}

pub(super) fn run_row(row: &Row) -> RunRow {
    let owner: Option<String> = row.get(14);
    let lease = owner.map(|owner| Lease {
        owner,
        pid: row.get::<_, Option<i64>>(15).unwrap_or(0) as u32,
        pid_start: row.get::<_, Option<i64>>(16).unwrap_or(0) as u64,
        host: row.get::<_, Option<String>>(17).unwrap_or_default(),
    });
    RunRow {
        id: row.get(0),
        pipeline: row.get(1),
        status: RunStatus::parse(row.get(2)),
        phase: row.get(3),
        progress: row.get::<_, i32>(4) as u8,
        metadata: row.get(5),
        phase_updated_at: row.get(6),
        inputs: json(row.get(7)),
        snapshot_id: row.get(8),
        attempt: row.get::<_, i32>(9) as u32,
        best_progress: row.get::<_, i32>(10) as u8,
        error: row.get(11),
        created_at: row.get(12),
        finished_at: row.get(13),
        lease,
        heartbeat_at: row.get::<_, Option<i64>>(18).map(|ago| crate::clock::now_ms() + ago),
        cancel_requested: row.get::<_, i32>(19) != 0,
        target: row.get(20),
        superseded_by: row.get(21),
        actor: row.get(22),
        failed_node: row.get(23),
    }
}

/// The place of a run in the order runs were created (column 24 of [`RUN_COLUMNS`]).
pub(super) fn queue_seq(row: &Row) -> i64 {
    row.get(24)
}

pub(super) const NODE_COLUMNS: &str = "node, status, attempt, outputs, error, started_at, finished_at";

pub(super) fn node_row(run: &str, r: &Row) -> NodeRow {
    NodeRow {
        run: run.to_string(),
        node: r.get(0),
        status: NodeStatus::parse(r.get(1)),
        attempt: r.get::<_, i32>(2) as u32,
        outputs: r.get::<_, Option<String>>(3).map(|t| json(Some(t))),
        error: r.get(4),
        started_at: r.get(5),
        finished_at: r.get(6),
    }
}

pub(super) const TOKEN_COLUMNS: &str = "name, role, hash, created_at, last_used_at";

pub(super) fn token_row(row: &Row) -> TokenRow {
    TokenRow {
        name: row.get(0),
        role: Role::parse(row.get(1)).unwrap_or(Role::Read),
        hash: row.get(2),
        created_at: row.get(3),
        last_used_at: row.get(4),
    }
}

pub(super) const NOTIFICATION_COLUMNS: &str = "id, deployment_id, outcome, url_template, format, body, status, attempts, \
     next_at, last_error, created_at, delivered_at";

pub(super) fn notification_row(row: &Row) -> NotificationRow {
    NotificationRow {
        id: row.get(0),
        run: row.get(1),
        outcome: row.get(2),
        url_template: row.get(3),
        format: row.get(4),
        body: row.get(5),
        status: row.get(6),
        attempts: row.get::<_, i32>(7) as u32,
        next_at: row.get(8),
        last_error: row.get(9),
        created_at: row.get(10),
        delivered_at: row.get(11),
    }
}
