//! The read side: what runs were, are and would do, for `status`, `stats`, `releases`,
//! `plan --resume` and the API. Nothing here runs a node or changes a run (rollback's
//! preparation only reads, too); the runtime is [`crate::engine`].

pub mod preview;
pub mod releases;
pub mod stats;
pub mod summary;
pub mod view;

pub use preview::{PreviewNode, ResumePreview, planned_nodes, preview};
