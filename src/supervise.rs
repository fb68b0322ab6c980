//! `phased __supervise`: one process per engine process that kills every step's
//! process group when phased dies, even by `kill -9`. (`PR_SET_PDEATHSIG` alone
//! reaches only a step's direct child, not what it started.)
//!
//! It reads lines on its stdin, a pipe from phased: `+PGID` when a step's group is
//! made, `-PGID` when the group is gone. It does not wake for each line: it sleeps
//! until the pipe hangs up and reads what waits there once a second. When the pipe closes, which happens the moment
//! phased dies, it SIGKILLs every group still listed, then every process that still
//! carries phased's engine marker (`PHASED_ENGINE`, given as its argument: it covers a
//! step spawned in the instant before it was announced), and exits. It leads its own
//! process group, so a Ctrl-C on the terminal does not reach it.

#![expect(
    unsafe_code,
    reason = "the supervisor leaves its group, ignores terminal signals and kills groups: syscalls, each with its SAFETY comment"
)]

use std::collections::HashSet;

pub use crate::process::{SUPERVISE_COMMAND as COMMAND, SUPERVISOR};

/// Reads what is waiting on stdin (without blocking) and applies its whole lines;
/// false once the pipe is closed.
fn drain(buffer: &mut [u8], pending: &mut Vec<u8>, groups: &mut HashSet<i32>) -> bool {
    loop {
        // SAFETY: a non-blocking read into a buffer we own.
        let n = unsafe { libc::read(0, buffer.as_mut_ptr().cast(), buffer.len()) };
        if n == 0 {
            apply(pending, groups);
            return false;
        }
        if n < 0 {
            // EAGAIN: nothing more for now (EINTR: look again at the next wake-up).
            apply(pending, groups);
            return true;
        }
        pending.extend_from_slice(&buffer[..n as usize]);
    }
}

/// Applies the complete `+PGID` / `-PGID` lines of `pending`, keeping a partial one.
fn apply(pending: &mut Vec<u8>, groups: &mut HashSet<i32>) {
    let Some(end) = pending.iter().rposition(|&b| b == b'\n') else { return };
    for line in pending[..end].split(|&b| b == b'\n') {
        let Some((&sign, pgid)) = line.split_first() else { continue };
        let Some(pgid) = std::str::from_utf8(pgid).ok().and_then(|p| p.trim().parse::<i32>().ok()) else { continue };
        if pgid <= 1 {
            continue;
        }
        match sign {
            b'+' => {
                groups.insert(pgid);
            }
            b'-' => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    pending.drain(..=end);
}

/// Runs the supervisor until its stdin closes; `args` is the engine marker of the
/// phased process it watches. Returns its exit code.
pub fn main(args: &[String]) -> i32 {
    // SAFETY: plain syscalls: leave phased's process group (terminal signals).
    unsafe {
        libc::setpgid(0, 0);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        let flags = libc::fcntl(0, libc::F_GETFL);
        libc::fcntl(0, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut groups: HashSet<i32> = HashSet::new();
    let mut pending = Vec::new();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        // Sleep until the pipe hangs up (phased died) or a second has passed: no events
        // are asked for, so the `+`/`-` lines phased writes at every step wake nobody;
        // they wait in the pipe and are read here once a second, or at the end.
        let mut fd = libc::pollfd { fd: 0, events: 0, revents: 0 };
        // SAFETY: poll on our own stdin with one pollfd we own.
        let ready = unsafe { libc::poll(&mut fd, 1, 1000) };
        let hung_up = ready > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR) != 0;
        let open = drain(&mut buffer, &mut pending, &mut groups);
        if hung_up || !open {
            break;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_are_applied_and_a_partial_one_waits_for_its_end() {
        let mut groups = HashSet::new();
        let mut pending = b"+10\n+11\n-10\n+1".to_vec();
        apply(&mut pending, &mut groups);
        assert_eq!(groups, HashSet::from([11]));
        assert_eq!(pending, b"+1", "the unfinished line is kept");
        pending.extend_from_slice(b"2\n+1\nnoise\n");
        apply(&mut pending, &mut groups);
        assert_eq!(groups, HashSet::from([11, 12]), "pgid 1 and garbage are ignored");
        assert!(pending.is_empty());
    }
}
