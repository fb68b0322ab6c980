//! What every run needs, whether it starts or resumes, and how it is stopped from
//! outside.

use std::path::PathBuf;

use crate::event::Reporter;
use crate::secrets::Secrets;
use crate::store::RunStatus;

/// What every run needs, whether it starts or resumes.
pub struct Options<'r> {
    pub parallel: usize,
    pub secrets: Secrets,
    pub reporter: &'r mut dyn Reporter,
    /// Folder for node logs and scratch files (beside the database).
    pub data_dir: PathBuf,
    /// How the run is stopped from outside (`phased watch`, `phased serve`).
    pub stop: Option<Halt>,
}

/// How a run is stopped from outside, besides `phased cancel` and signals.
pub struct Halt {
    /// When true: start no new node, let the running ones finish, end as `status`.
    pub drain: tokio::sync::watch::Receiver<bool>,
    pub status: RunStatus,
    pub reason: String,
    /// When true: stop the running nodes now, as SIGTERM would (the run is interrupted).
    pub now: Option<tokio::sync::watch::Receiver<bool>>,
    /// The caller handles SIGINT and SIGTERM (a server): the run does not listen.
    pub ignore_signals: bool,
}
