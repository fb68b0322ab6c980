//! `phased __supervise`: one process per engine process that kills every step's
//! process group when phased dies, even by `kill -9`. (`PR_SET_PDEATHSIG` alone
//! reaches only a step's direct child, not what it started.)
//!
//! It reads lines on its stdin, a pipe from phased: `+PGID` when a step's group is
//! made, `-PGID` when the group is gone. When the pipe closes, which happens the moment
//! phased dies, it SIGKILLs every group still listed, then every process that still
//! carries phased's engine marker (`PHASED_ENGINE`, given as its argument: it covers a
//! step spawned in the instant before it was announced), and exits. It leads its own
//! process group, so a Ctrl-C on the terminal does not reach it.

#![expect(
    unsafe_code,
    reason = "the supervisor leaves its group, ignores terminal signals and kills groups: syscalls, each with its SAFETY comment"
)]

use std::collections::HashSet;
use std::io::BufRead;

pub use crate::process::{SUPERVISE_COMMAND as COMMAND, SUPERVISOR};

/// Runs the supervisor until its stdin closes; `args` is the engine marker of the
/// phased process it watches. Returns its exit code.
pub fn main(args: &[String]) -> i32 {
    // SAFETY: plain syscalls: leave phased's process group (terminal signals).
    unsafe {
        libc::setpgid(0, 0);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mut groups: HashSet<i32> = HashSet::new();
    let stdin = std::io::stdin().lock();
    for line in stdin.lines() {
        let Ok(line) = line else { break };
        let (sign, pgid) = line.split_at(line.len().min(1));
        let Ok(pgid) = pgid.trim().parse::<i32>() else { continue };
        if pgid <= 1 {
            continue;
        }
        match sign {
            "+" => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    for pgid in groups {
        // SAFETY: plain syscall on a group phased announced and did not retire.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    if let Some(marker) = args.first() {
        // A process may fork while it is being killed: look until none is left.
        for _ in 0..20 {
            let left = crate::process::carrying(crate::process::ENGINE_MARKER, marker);
            if left.is_empty() {
                break;
            }
            left.into_iter().for_each(crate::process::kill_with_group);
        }
    }
    0
}
