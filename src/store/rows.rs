//! What the store's implementations share about rows: why a claim fails, and the
//! helpers both databases' writes use. The rows themselves are [`crate::model`]'s.

use super::StoreError;

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
