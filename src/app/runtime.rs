//! The one seam between the front ends' sync code and async work. A command of the
//! command line drives its async work on one runtime for the whole process; code on a
//! blocking thread of a running server (a request's database work) drives it on the
//! server's own runtime. Nothing builds a runtime on the spot.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// The runtime of a process that has none of its own (a command of the command line).
fn process_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts"))
}

/// Runs `future` to its end from sync code: on the runtime this thread belongs to (a
/// blocking thread of `phased serve`), else on the process's. Never from async code
/// (it would block a runtime's thread): await instead.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    match Handle::try_current() {
        Ok(handle) => handle.block_on(future),
        Err(_) => process_runtime().block_on(future),
    }
}
