//! The language between the engine and the store: one write of a batch, each batch
//! one transaction.

use serde_json::Value;

use super::rows::{NodeRow, NotificationRow};
use super::status::RunStatus;
use crate::event::Event;

/// One write of a batch; a batch is one transaction.
#[derive(Debug, Clone)]
pub enum Write {
    /// Sets the run's current phase, progress and metadata, and adds a history row.
    Phase {
        run: String,
        phase: String,
        progress: u8,
        metadata: Value,
        node: Option<String>,
        at: String,
    },
    /// Progress and phase only, metadata unchanged (a running node reported a
    /// fraction, a node finished without result metadata).
    Progress {
        run: String,
        phase: String,
        progress: u8,
        at: String,
    },
    Status {
        run: String,
        status: RunStatus,
        error: Option<String>,
        finished: Option<String>,
    },
    /// A resumed run waits for its target (status `queued`, lease kept).
    Queue {
        run: String,
        target: String,
    },
    Node(NodeRow),
    /// Forgets checkpoints (`resume --from`): this node and every node under a prefix.
    ResetNodes {
        run: String,
        nodes: Vec<String>,
        prefixes: Vec<String>,
    },
    /// `resume --reload`: the run goes on from another snapshot, with its inputs
    /// resolved against it.
    Reloaded {
        run: String,
        snapshot_id: i64,
        inputs: Value,
    },
    Heartbeat {
        run: String,
        owner: String,
        at_ms: i64,
    },
    /// Stores an event; the store gives it the next sequence number of the database.
    Event(Event),
    /// Adds a notification to the outbox (its `id`, `status` and `attempts` are the
    /// store's).
    Notification(NotificationRow),
}
