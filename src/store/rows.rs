//! What the store holds, row by row.

use serde_json::Value;

use super::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Interrupted,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> RunStatus {
        match text {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => RunStatus::Interrupted,
        }
    }
}

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

/// What a token may do: `read` (look), `deploy` (start, cancel, resume runs), `admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Deploy,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Deploy => "deploy",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Read, Role::Deploy, Role::Admin].into_iter().find(|r| r.as_str() == text)
    }
}

/// What the holder of a run is asked to do (`cancel_requested`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopRequest {
    None,
    /// `phased cancel`: stop now (running steps get their grace).
    Cancel,
    /// A newer run of the target: finish the running nodes, start no more.
    Supersede,
}

/// Where a new or waiting run stands with its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It may run now (its status is `running`).
    Admitted,
    /// It waits (status `queued`) behind this run of its target.
    Queued { behind: String },
    /// Policy `reject`: refused while this run of its target is queued or running;
    /// nothing was written.
    Rejected { by: String },
    /// It is no longer waiting: superseded or cancelled meanwhile.
    Gone { status: RunStatus },
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Running => "running",
            NodeStatus::Succeeded => "succeeded",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
        }
    }

    pub(crate) fn parse(text: &str) -> NodeStatus {
        match text {
            "succeeded" => NodeStatus::Succeeded,
            "failed" => NodeStatus::Failed,
            "skipped" => NodeStatus::Skipped,
            _ => NodeStatus::Running,
        }
    }
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
    pub target: Option<(&'a str, crate::raw::Policy)>,
    /// Recorded `queued` and held by nobody, for a worker of `phased serve` to take
    /// (`Store::claim_next`), instead of run by this process.
    pub for_workers: bool,
    /// Who started it ([`crate::actor::Actor`] as text).
    pub actor: &'a str,
}

/// Why a run could not be claimed for resuming.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("no run `{0}` in the database")]
    Missing(String),
    #[error("run `{id}` already succeeded")]
    Finished { id: String },
    #[error("run `{id}` is being run by process {pid} on `{host}`")]
    Held { id: String, pid: u32, host: String },
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// Which checkpoint writes of a batch a later write of the same node replaces (a node
/// that started and finished within one transaction is written once). A reset in
/// between keeps both.
pub(super) fn superseded_checkpoints(batch: &[super::Write]) -> Vec<bool> {
    let mut superseded = vec![false; batch.len()];
    let mut later = std::collections::HashSet::new();
    for (i, write) in batch.iter().enumerate().rev() {
        match write {
            super::Write::Node(n) => superseded[i] = !later.insert((n.run.as_str(), n.node.as_str())),
            super::Write::ResetNodes { .. } => later.clear(),
            _ => {}
        }
    }
    superseded
}

/// The status a notification has after an attempt: delivered, or not (pending again
/// when `next_at` says when, failed when no attempt is left).
pub(super) fn attempt_status(delivered: bool, next_at: Option<i64>) -> &'static str {
    match (delivered, next_at) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    }
}

/// An event the store itself writes, in the transaction that makes it true: a run
/// queued, or a run nobody held cancelled.
pub(super) fn run_event(
    run: &str,
    phase: &str,
    progress: u8,
    at: &str,
    kind: crate::event::EventKind,
) -> crate::event::Event {
    crate::event::Event {
        seq: None,
        ts: at.to_string(),
        deployment: run.to_string(),
        phase: phase.to_string(),
        progress,
        kind,
        eta_seconds: None,
    }
}
