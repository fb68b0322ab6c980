//! Phased: declarative, resumable deployment pipelines.

pub mod action;
pub mod catalog;
pub mod cli;
pub mod compiler;
pub mod de;
pub mod diagnostic;
pub mod docker;
pub mod dry_run;
pub mod duration;
pub mod engine;
pub mod phase;
pub mod plan;
pub mod process;
pub mod raw;
pub mod reader;
pub mod report;
pub mod reporter;
pub mod schema;
pub mod secrets;
pub mod source;
pub mod store;
pub mod suggest;
pub mod supervise;
pub mod template;
pub mod watch;
pub mod yaml;
