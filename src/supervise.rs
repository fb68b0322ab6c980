//! `phased __supervise`: one process per engine process that kills every step's
//! process group when phased dies, even by `kill -9`. (`PR_SET_PDEATHSIG` alone
//! reaches only a step's direct child, not what it started.)
//!
//! It reads lines on its stdin, a pipe from phased: `+PGID` when a step's group is
//! made (written by the step's own child before it execs, so no grandchild can exist
//! unannounced), `-PGID` when the group is gone. When the pipe closes, which happens
//! the moment phased dies, it SIGKILLs every group still listed and exits. It leads
//! its own process group, so a Ctrl-C on the terminal does not reach it.

#![expect(
    unsafe_code,
    reason = "the supervisor leaves its group, ignores terminal signals and kills groups: syscalls, each with its SAFETY comment"
)]

use std::collections::HashSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The binary to run as supervisor; set by the `phased` binary at start. Library users
/// that do not set it get each step's direct child killed on parent death, not its
/// children.
pub static SUPERVISOR: OnceLock<PathBuf> = OnceLock::new();

/// The hidden subcommand's name.
pub const COMMAND: &str = "__supervise";

/// Runs the supervisor until its stdin closes; returns its exit code.
pub fn main() -> i32 {
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
    0
}
