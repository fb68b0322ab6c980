//! `phased __supervise`: one process per engine process that kills every step's
//! process group when phased dies, even by `kill -9`. (`PR_SET_PDEATHSIG` alone
//! reaches only a step's direct child, not what it started.) It also enforces the
//! fences of the runs phased holds: a step must not outlive its run's lease, even when
//! phased itself is paused or cut off from its database and cannot stop it.
//!
//! It reads lines on its stdin, a pipe from phased: `+PGID RUN_KEY` when a step's group
//! is made, `-PGID` when the group is gone, `=RUN_KEY TERM_AT KILL_AT` when phased
//! renewed a run's lease (monotonic milliseconds: past `TERM_AT` the run's groups get
//! SIGTERM, past `KILL_AT` SIGKILL, with every process that carries the run's key), and
//! `~RUN_KEY` when phased no longer holds the run. It does not wake for each line: it
//! sleeps until the pipe hangs up, a fence is due, or a second has passed, and reads
//! what waits there then. When the pipe closes, which happens the moment
//! phased dies, it SIGKILLs every group still listed, then every process that still
//! carries phased's engine marker (`PHASED_ENGINE`, given as its argument: it covers a
//! step spawned in the instant before it was announced), and exits. It leads its own
//! process group, so a Ctrl-C on the terminal does not reach it, and a SIGSTOP of
//! phased does not stop it.

#![expect(
    unsafe_code,
    reason = "the supervisor leaves its group, ignores terminal signals and kills groups: syscalls, each with its SAFETY comment"
)]

use std::collections::HashMap;

use crate::process::monotonic_ms;
pub use crate::process::{SUPERVISE_COMMAND as COMMAND, SUPERVISOR};

/// A run's fence as phased last set it.
#[derive(Debug, PartialEq)]
struct Fence {
    term_at: i64,
    kill_at: i64,
    /// SIGTERM was sent: phased's later renewals are too late and change nothing.
    termed: bool,
    /// SIGKILL was sent: a group of the run announced now is killed at once.
    killed: bool,
    /// Phased gave the run up (`~`) after SIGTERM: the fence goes once SIGKILL is sent,
    /// and a new holder of the run in this process (`=`) starts a fence of its own.
    released: bool,
}

impl Fence {
    fn new(term_at: i64, kill_at: i64) -> Fence {
        Fence { term_at, kill_at, termed: false, killed: false, released: false }
    }
}

/// What the supervisor knows: the live step groups (with their run's key), and the
/// fences of the runs.
#[derive(Default)]
struct State {
    groups: HashMap<i32, Option<String>>,
    fences: HashMap<String, Fence>,
}

/// Reads what is waiting on stdin (without blocking) and applies its whole lines;
/// false once the pipe is closed.
fn drain(buffer: &mut [u8], pending: &mut Vec<u8>, state: &mut State) -> bool {
    loop {
        // SAFETY: a non-blocking read into a buffer we own.
        let n = unsafe { libc::read(0, buffer.as_mut_ptr().cast(), buffer.len()) };
        if n == 0 {
            apply(pending, state);
            return false;
        }
        if n < 0 {
            // EAGAIN: nothing more for now (EINTR: look again at the next wake-up).
            apply(pending, state);
            return true;
        }
        pending.extend_from_slice(&buffer[..n as usize]);
    }
}

/// Applies the complete lines of `pending`, keeping a partial one.
fn apply(pending: &mut Vec<u8>, state: &mut State) {
    let Some(end) = pending.iter().rposition(|&b| b == b'\n') else { return };
    for line in pending[..end].split(|&b| b == b'\n') {
        let Some(line) = std::str::from_utf8(line).ok() else { continue };
        let Some(sign) = line.chars().next() else { continue };
        let mut words = line[1..].split(' ');
        let (first, rest) = (words.next().unwrap_or_default(), (words.next(), words.next()));
        match (sign, rest) {
            ('+', (key, _)) => {
                let Some(pgid) = first.parse::<i32>().ok().filter(|&p| p > 1) else { continue };
                let key = key.filter(|k| !k.is_empty()).map(str::to_string);
                // A step of a run whose fence was passed: it must not run.
                if key.as_ref().and_then(|k| state.fences.get(k)).is_some_and(|f| f.killed) {
                    kill_group(pgid, libc::SIGKILL);
                    continue;
                }
                state.groups.insert(pgid, key);
            }
            ('-', _) => {
                if let Ok(pgid) = first.parse::<i32>() {
                    state.groups.remove(&pgid);
                }
            }
            ('=', (Some(term_at), Some(kill_at))) => {
                let (Ok(term_at), Ok(kill_at)) = (term_at.parse(), kill_at.parse()) else { continue };
                let fence = state.fences.entry(first.to_string()).or_insert(Fence::new(term_at, kill_at));
                if fence.released {
                    *fence = Fence::new(term_at, kill_at);
                } else if !fence.termed {
                    (fence.term_at, fence.kill_at) = (term_at, kill_at);
                }
            }
            // Given up after SIGTERM, the steps still get their SIGKILL.
            ('~', _) => match state.fences.get_mut(first) {
                Some(fence) if fence.termed && !fence.killed => fence.released = true,
                _ => {
                    state.fences.remove(first);
                }
            },
            _ => {}
        }
    }
    pending.drain(..=end);
}

fn kill_group(pgid: i32, signal: i32) {
    // SAFETY: plain syscall on a group phased announced and did not retire.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Stops the steps of every run whose fence is due at `now` (read before the pipe was
/// drained, so that a renewal written before then counts). `engine`: the marker of the
/// phased process watched, when known: of the processes that carry a run's key, only
/// those it started are killed (another process on this machine may hold the run next).
fn enforce(state: &mut State, now: i64, engine: Option<&str>) {
    for (key, fence) in &mut state.fences {
        let groups: Vec<i32> =
            state.groups.iter().filter(|(_, k)| k.as_deref() == Some(key.as_str())).map(|(&g, _)| g).collect();
        if !fence.termed && now >= fence.term_at {
            fence.termed = true;
            let run = key.rsplit_once('@').map_or(key.as_str(), |(id, _)| id);
            eprintln!(
                "warning: could not renew the lease of run `{run}` in time (the database unreachable, or this \
                 process paused): stopping its steps (SIGTERM, then SIGKILL) before another process may take \
                 the run over"
            );
            groups.iter().for_each(|&g| kill_group(g, libc::SIGTERM));
        }
        if fence.termed && !fence.killed && now >= fence.kill_at {
            fence.killed = true;
            groups.iter().for_each(|&g| kill_group(g, libc::SIGKILL));
            // What left its group (`setsid`) still carries the run's key.
            let mut marks = vec![(crate::process::RUN_KEY, key.as_str())];
            marks.extend(engine.map(|e| (crate::process::ENGINE_MARKER, e)));
            for _ in 0..20 {
                let left = crate::process::carrying_all(&marks);
                if left.is_empty() {
                    break;
                }
                left.into_iter().for_each(crate::process::kill_with_group);
            }
        }
    }
    let fences = &state.fences;
    state.groups.retain(|_, key| key.as_ref().and_then(|k| fences.get(k)).is_none_or(|f| !f.killed));
    state.fences.retain(|_, f| !(f.killed && f.released));
}

/// How long to sleep: until the next fence is due, at most a second.
fn patience(state: &State, now: i64) -> i32 {
    let next = state
        .fences
        .values()
        .filter(|f| !f.killed)
        .map(|f| if f.termed { f.kill_at } else { f.term_at })
        .min()
        .map_or(1000, |at| at - now);
    next.clamp(0, 1000) as i32
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
    let mut state = State::default();
    let mut pending = Vec::new();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        // Sleep until the pipe hangs up (phased died), a fence is due or a second has
        // passed: no events are asked for, so the lines phased writes at every step
        // wake nobody; they wait in the pipe and are read here then.
        let mut fd = libc::pollfd { fd: 0, events: 0, revents: 0 };
        let timeout = patience(&state, monotonic_ms());
        // SAFETY: poll on our own stdin with one pollfd we own.
        let ready = unsafe { libc::poll(&mut fd, 1, timeout) };
        let hung_up = ready > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR) != 0;
        let now = monotonic_ms();
        let open = drain(&mut buffer, &mut pending, &mut state);
        if hung_up || !open {
            break;
        }
        enforce(&mut state, now, args.first().map(String::as_str));
    }
    for pgid in state.groups.into_keys() {
        kill_group(pgid, libc::SIGKILL);
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
    use std::collections::HashSet;

    use super::*;

    fn groups(state: &State) -> HashSet<i32> {
        state.groups.keys().copied().collect()
    }

    #[test]
    fn whole_lines_are_applied_and_a_partial_one_waits_for_its_end() {
        let mut state = State::default();
        let mut pending = b"+10\n+11 run@abc\n-10\n+1".to_vec();
        apply(&mut pending, &mut state);
        assert_eq!(groups(&state), HashSet::from([11]));
        assert_eq!(state.groups[&11].as_deref(), Some("run@abc"));
        assert_eq!(pending, b"+1", "the unfinished line is kept");
        pending.extend_from_slice(b"2\n+1\nnoise\n=x 5\n");
        apply(&mut pending, &mut state);
        assert_eq!(groups(&state), HashSet::from([11, 12]), "pgid 1 and garbage are ignored");
        assert!(state.fences.is_empty(), "a fence needs both times");
        assert!(pending.is_empty());
    }

    #[test]
    fn a_fence_moves_until_it_is_passed_and_goes_with_its_run() {
        let mut state = State::default();
        let mut pending = b"=r@k 100 200\n=r@k 150 250\n".to_vec();
        apply(&mut pending, &mut state);
        assert_eq!((state.fences["r@k"].term_at, state.fences["r@k"].kill_at), (150, 250));
        assert_eq!(patience(&state, 100), 50, "it wakes when the fence is due");
        // Past it (nothing to signal: no group is listed), a renewal comes too late.
        enforce(&mut state, 150, None);
        assert!(state.fences["r@k"].termed && !state.fences["r@k"].killed);
        assert_eq!(patience(&state, 150), 100, "then when SIGKILL is due");
        pending.extend_from_slice(b"=r@k 900 990\n");
        apply(&mut pending, &mut state);
        assert_eq!(state.fences["r@k"].term_at, 150, "a late renewal changes nothing");
        // Given up between SIGTERM and SIGKILL: SIGKILL still comes, then the fence goes.
        pending.extend_from_slice(b"~r@k\n");
        apply(&mut pending, &mut state);
        assert!(state.fences["r@k"].released);
        enforce(&mut state, 250, None);
        assert!(state.fences.is_empty());
        assert_eq!(patience(&state, 0), 1000);
        // A new holder of the run in this process has a fence of its own.
        pending.extend_from_slice(b"=r@k 400 500\n~r@k\n=r@k 600 700\n");
        apply(&mut pending, &mut state);
        assert_eq!(state.fences["r@k"], Fence::new(600, 700), "given up before its fence, it simply goes");
        enforce(&mut state, 600, None);
        pending.extend_from_slice(b"~r@k\n=r@k 2000 2100\n");
        apply(&mut pending, &mut state);
        assert_eq!(state.fences["r@k"], Fence::new(2000, 2100), "a new holder after one that gave up");
    }
}
