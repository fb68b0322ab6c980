//! How a run ends, and why one cannot start or go on.

use super::reload;
use crate::diagnostic::Diagnostic;
use crate::store::{ClaimError, StoreError};

/// How a run ended (for this process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Failed because the environment failed (an engine that cannot be reached), not
    /// the deployment: resumable once the environment is fixed (exit code 3).
    FailedEnvironment,
    /// Stopped by a signal; resumable.
    Interrupted,
    /// Stopped by `phased cancel`; resumable.
    Cancelled,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a run with id `{0}` already exists")]
    DuplicateId(String),
    #[error("invalid run id `{id}`: {why}")]
    InvalidId { id: String, why: String },
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("the pipeline snapshot of run `{run}` no longer compiles")]
    Snapshot { run: String, diagnostics: Vec<Diagnostic> },
    #[error("no node `{node}` in run `{run}`")]
    UnknownNode { run: String, node: String, help: Option<String> },
    #[error("cannot reload the pipeline of run `{run}`: {error}")]
    Reload { run: String, error: reload::ReloadError },
    #[error("no run `{0}`")]
    NoRun(String),
    #[error("{0}")]
    Target(String),
    #[error("target `{target}` is busy with run `{by}`, and the pipeline's concurrency policy is `reject`")]
    Rejected { target: String, by: String },
}
