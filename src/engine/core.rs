//! The engine's pure core: a run as a state machine. It takes a message (a node
//! finished, failed or reported progress, a timer fired, a cancel or a signal came)
//! and returns transitions: records of what changed (each becomes its database writes
//! and its event in `engine::record`) and work for the driver (launch a task, stop
//! one, set a timer). No tokio, no SQLite, no clock: every message comes with its time.

mod end;
mod fan;
mod finish;
mod frame;
mod launch;
mod machine;
mod mode;
mod scope;
mod select;
mod transition;

#[cfg(test)]
mod tests;

pub(crate) use machine::{Core, CoreStart};
pub use scope::DeploymentInfo;
pub(crate) use select::{Recorded, all_node_ids, planned_ids, rerun_set};
pub(crate) use transition::{Change, Launch, Msg, Record, Task, TaskError, Transition};
