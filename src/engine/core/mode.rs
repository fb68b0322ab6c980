//! The stage a run is in, and what the undo stage carries: the state the machine
//! (`machine.rs`) moves through and the run's end (`end.rs`) reads and writes.

use serde_json::{Map, Value};

use super::transition::NodeRef;
use crate::engine::Outcome;
use crate::model::RunStatus;

/// The stage a run is in.
#[derive(Debug)]
pub(super) enum Mode {
    /// Nodes start as they become ready.
    Running,
    /// Nothing new starts; when the running nodes are done, the run stops (`watch`).
    Draining { reason: String, status: RunStatus },
    /// The running tasks were asked to stop; when they have, the run stops.
    Stopping { status: RunStatus, reason: String },
    /// A node failed; the other running tasks were asked to stop.
    Failing,
    /// Undo steps run one at a time, latest node first.
    Undoing(Undoing),
    /// The run ended, with this outcome.
    Done(Outcome),
}

/// The undo steps of a failing run.
#[derive(Debug, Default)]
pub(crate) struct Undoing {
    /// What is left to undo, the next one last.
    pub(super) queue: Vec<NodeRef>,
    /// The node whose undo step runs now.
    pub(super) current: Option<NodeRef>,
    pub(super) reverted: Vec<String>,
    pub(super) errors: Map<String, Value>,
}
