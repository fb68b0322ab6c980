//! The application layer: each operation both front ends offer, written once. The
//! command line (`cli`) and the HTTP API (`serve`) parse a request, call one function
//! here and render what it returns; neither sets up a catalog or a compiler, resolves
//! inputs, nor orchestrates a run itself.
//!
//! - [`pipelines`]: find a pipeline (a file or a deployment type) and compile it, with
//!   its inputs resolved and admitted for a caller: the one place a [`crate::catalog`]
//!   and a [`crate::compiler`] are set up.
//! - [`runs`]: start a run in this process, queue one for the workers of `phased
//!   serve`, resume or requeue one, cancel one.
//! - [`rollback`]: make an earlier release of a target live again, as a new run.
//! - [`trigger`]: a git push's delivery, recorded once, queued as a run.
//! - [`runtime`]: the one seam between the front ends' sync code and async work.
//!
//! Every operation fails with an [`Error`]; the command line turns it into an exit
//! code (`cli::failed`), the API into a status and a JSON body (`serve::refused`).
//!
//! Round 3's operations come here the same way, one function each that both front ends
//! call: approving a gated run (environments), opening and tearing down a preview per
//! pull request, tearing down a target.

mod error;
pub(crate) mod pipelines;
pub(crate) mod rollback;
pub(crate) mod runs;
pub(crate) mod runtime;
pub(crate) mod stores;
pub(crate) mod trigger;

pub(crate) use error::Error;
pub(crate) use pipelines::{Given, InputProblem, Loaded, Pipelines};
pub(crate) use runs::{Cancel, Ended, Start};
pub(crate) use runtime::block_on;
pub(crate) use stores::Db;
