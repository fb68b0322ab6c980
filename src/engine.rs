//! Running pipelines: start a run ([`start`]), queue one for the workers of `phased
//! serve` ([`enqueue`], [`run_claimed`]), resume one ([`resume`], [`requeue`]), and what
//! they end in ([`Outcome`]). The run itself is the pure [`core`] state machine, fed and
//! carried out by the [`driver`]; each change becomes its writes and its event in
//! [`record`]. What a run was and would do (views, stats, previews, releases) is read by
//! the read side, above this; the operations the front ends call are in the
//! application layer, above both.

mod core;
mod driver;
pub(crate) mod eta;
pub mod lease;
mod options;
mod outcome;
mod record;
pub mod reload;
mod resume;
pub mod snapshot;
mod start;

pub use self::core::DeploymentInfo;
pub(crate) use self::core::{Recorded, planned_ids};
pub use crate::clock::{now, now_ms};
pub use driver::HEARTBEAT;
pub use options::{Halt, Options};
pub use outcome::{EngineError, Outcome};
pub(crate) use resume::finished;
pub use resume::{ResumeInfo, requeue, resume};
pub use start::{HISTORY_RUNS, enqueue, live_release, rollback_of, run_claimed, start};
