//! What a store holds, row by row: runs, their checkpoints and history, tokens and
//! the outbox of notifications.

use serde_json::Value;

use super::status::{NodeStatus, Role, RunStatus};

#[derive(Clone, Debug)]
pub struct RunRow {
    pub id: String,
    pub pipeline: String,
    pub status: RunStatus,
    pub phase: String,
    pub progress: u8,
    pub metadata: Value,
    pub phase_updated_at: String,
    pub inputs: Value,
    pub snapshot_id: i64,
    pub attempt: u32,
    pub best_progress: u8,
    pub error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub lease: Option<Lease>,
    pub heartbeat_at: Option<i64>,
    pub cancel_requested: bool,
    /// The rendered `concurrency.key`: runs of one target never overlap.
    pub target: Option<String>,
    /// The run that superseded this (cancelled) one.
    pub superseded_by: Option<String>,
    /// Who started it ([`crate::actor::Actor`] as text); `None` for runs recorded
    /// before Phased kept it.
    pub actor: Option<String>,
    /// The first node that failed (read with the row, from its checkpoints).
    pub failed_node: Option<String>,
}

/// An API token as stored: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub name: String,
    pub role: Role,
    pub hash: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// Who holds a run: a process, identified beyond its pid (pids are reused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub pid: u32,
    pub pid_start: u64,
    pub host: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NodeRow {
    pub run: String,
    pub node: String,
    pub status: NodeStatus,
    pub attempt: u32,
    pub outputs: Option<Value>,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Clone, Debug)]
pub struct HistoryRow {
    pub phase: String,
    pub progress: u8,
    pub metadata: Value,
    pub node: Option<String>,
    pub at: String,
}

pub struct NewRun<'a> {
    pub id: &'a str,
    pub pipeline: &'a str,
    pub inputs: &'a Value,
    pub snapshot_id: i64,
    pub lease: &'a Lease,
    pub at: &'a str,
    pub at_ms: i64,
    /// The run's target and what it does when the target is busy.
    pub target: Option<(&'a str, crate::model::Policy)>,
    /// Recorded `queued` and held by nobody, for a worker of `phased serve` to take
    /// (`Store::claim_next`), instead of run by this process.
    pub for_workers: bool,
    /// Who started it ([`crate::actor::Actor`] as text).
    pub actor: &'a str,
}

/// A notification of the outbox (`notify:`), as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NotificationRow {
    pub id: i64,
    pub run: String,
    pub outcome: String,
    /// The URL as written: a template, rendered when sent.
    pub url_template: String,
    pub format: String,
    pub body: String,
    /// `pending`, `delivered` or `failed` (no attempt left).
    pub status: String,
    pub attempts: u32,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}
