//! The model both the engine and the store speak: run and node statuses, the rows a
//! store holds, the batch of writes the engine hands it ([`Write`]), what a pipeline
//! asks of its target and its notifications ([`Policy`], [`NotifyOn`],
//! [`NotifyFormat`]), the lease length, and a node's qualified id ([`NodePath`]). It
//! sits below the engine's core, the store and the pipeline files, and imports none of
//! them: a type every one of them needs lives here, so none of them imports another
//! for it.

mod lease;
mod node_path;
mod policy;
mod rows;
mod status;
mod write;

pub use lease::{STALE_MS, lease_ms};
pub use node_path::{NodePath, PathSegment};
pub use policy::{NotifyFormat, NotifyOn, Policy};
pub use rows::{HistoryRow, Lease, NewRun, NodeRow, NotificationRow, RunRow, TokenRow};
pub use status::{Admission, NodeStatus, Role, RunStatus, StopRequest};
pub use write::Write;
