//! The core's vocabulary: the messages it takes and the transitions it returns.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::action::ActionSpec;
use crate::model::RunStatus;

/// A node of a frame: `frame` 0 is the root pipeline, others are sub-pipelines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NodeRef {
    pub(crate) frame: usize,
    pub(crate) node: usize,
}

/// One piece of work the driver runs: an attempt of a node's action, or an undo step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Task {
    pub(crate) node: NodeRef,
    pub(crate) attempt: u32,
    pub(crate) undo: bool,
}

/// Why an action failed, as the driver reports it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TaskError {
    /// Masked, with the log tail when there is one.
    pub(crate) message: String,
    /// The environment (an engine that cannot be reached), not the deployment, failed.
    pub(crate) environment: bool,
}

impl TaskError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        TaskError { message: message.into(), environment: false }
    }
}

/// What the core is told. Each message comes with the time it happened at.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Msg {
    /// The run begins, or continues after a resume.
    Start { resumed: bool },
    /// A running task reported how far it is (0.0 to 1.0).
    Progress { task: Task, fraction: f64 },
    /// A task ended: its outputs, or why it failed. A stopped task ends too.
    Done { task: Task, result: Result<Map<String, Value>, TaskError> },
    /// A task ran past its node's `timeout`.
    TimedOut { task: Task },
    /// The backoff before a retry is over.
    Timer { task: Task },
    /// `phased cancel`: stop the running nodes; the run is `cancelled`, resumable.
    Cancel,
    /// SIGINT or SIGTERM: stop the running nodes; the run is `interrupted`, resumable.
    Signal { name: &'static str },
    /// Start nothing new, let the running nodes finish, then stop as `status` with
    /// `reason`: a newer deploy supersedes this one (`phased watch`, policy
    /// `supersede`: `cancelled`), or the server is stopping (`interrupted`).
    Drain { reason: String, status: crate::model::RunStatus },
}

/// What the core decides. Records change the run's state (each becomes its database
/// writes and its event in one function, `engine::record`); the others are work for
/// the driver.
#[derive(Debug)]
pub(crate) enum Transition {
    Record(Record),
    /// Start a task: rendered, converted and checked parameters.
    Launch(Launch),
    /// Ask a task to stop: SIGTERM to its processes, SIGKILL after `grace`.
    Stop {
        task: Task,
    },
    /// Send `Msg::Timer { task }` after `after`.
    Timer {
        task: Task,
        after: Duration,
    },
}

#[derive(Debug)]
pub(crate) struct Launch {
    pub(crate) task: Task,
    /// The qualified id (`source.clone`, `switch.undo`).
    pub(crate) id: String,
    pub(crate) action: &'static ActionSpec,
    pub(crate) with: Value,
    pub(crate) timeout: Duration,
    pub(crate) grace: Duration,
}

/// A change of the run's state, with where the run stood when it happened.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Record {
    pub(crate) at: String,
    pub(crate) phase: String,
    pub(crate) progress: u8,
    pub(crate) change: Change,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change {
    RunStarted {
        resumed: bool,
    },
    /// A node (an attempt of it) started, with its rendered `metadata`. When it
    /// declares a phase or metadata (`phase_update`), that is a phase update of the
    /// run. `selection` is what a sub-pipeline node records so that a resume takes
    /// the same alternative with the same inputs.
    NodeStarted {
        id: String,
        attempt: u32,
        metadata: Value,
        phase_update: bool,
        writes: Vec<PathBuf>,
        selection: Option<Value>,
    },
    NodeProgress {
        id: String,
        attempt: u32,
        fraction: f64,
    },
    NodeRetrying {
        id: String,
        /// The attempt that will run next.
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// `phase` is the node's own phase (its result metadata is a phase update of it).
    NodeSucceeded {
        id: String,
        attempt: u32,
        outputs: Value,
        started_at: Option<String>,
        result: Option<Value>,
        node_phase: String,
    },
    NodeSkipped {
        id: String,
    },
    NodeFailed {
        id: String,
        attempt: u32,
        error: String,
        /// When its last attempt started (kept in its checkpoint).
        started_at: Option<String>,
    },
    /// A sub-pipeline node whose inner node failed: its checkpoint only (the event is
    /// the inner node's).
    FrameFailed {
        id: String,
        error: String,
        selection: Option<Value>,
    },
    UndoStarted {
        id: String,
        of: String,
    },
    UndoSucceeded {
        id: String,
        of: String,
    },
    UndoFailed {
        id: String,
        of: String,
        error: String,
    },
    /// Forget checkpoints (what an undo reverted, and what came after it): these nodes
    /// and every node under these prefixes.
    Forget {
        nodes: Vec<String>,
        prefixes: Vec<String>,
    },
    RunSucceeded {
        metadata: Value,
    },
    RunFailed {
        node: String,
        error: String,
        /// `node (phase): error`, the run's `error` column.
        summary: String,
        metadata: Value,
    },
    RunStopped {
        status: RunStatus,
        reason: String,
    },
}
