//! The one seam between the front ends' sync code and async work is `crate::seam`:
//! `block_on` runs a command's async work on this thread, its store calls blocking it
//! directly, as a sync program would. Nothing builds a runtime on the spot.

pub(crate) use crate::seam::block_on;
