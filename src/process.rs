//! Child processes of nodes, and the processes that hold runs.
//!
//! A node's child never outlives the process that runs it: it leads its own process
//! group, which the supervisor (`supervise.rs`, one per phased process) kills
//! when phased dies, even by `kill -9`; the group gets SIGTERM then SIGKILL when the
//! node is stopped, and SIGKILL when it ends; and everything carries the environment
//! markers `PHASED_RUN=<run id>` and
//! `PHASED_RUN_KEY=<run id>@<database key>`, inherited by everything it starts.
//! Before a run is resumed, every process still carrying its key is killed, so two
//! copies of a step never run at once. And a run's holder gives the supervisor the
//! deadline of its lease ([`fence`]): a holder that stops renewing it (paused, cut off
//! from its database) has its steps stopped by the supervisor before another process
//! may take the run over.

#![expect(
    unsafe_code,
    reason = "process groups, signals and the fork/exec hook are syscalls; each block has its SAFETY comment"
)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable that names the run a process was started for.
pub(crate) const RUN_MARKER: &str = "PHASED_RUN";
/// The variable that identifies the run across databases: `<run id>@<database key>`
/// (run ids are unique only within one database). Leftovers are found by this one.
pub(crate) const RUN_KEY: &str = "PHASED_RUN_KEY";

/// The key of a run: its id and a short hash of the database's absolute path.
pub(crate) fn run_key(run_id: &str, db: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let path = std::fs::canonicalize(db).unwrap_or_else(|_| crate::paths::normalize(db));
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    let short: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{run_id}@{short}")
}

/// A command for `argv`: the program and its arguments, run directly (no shell).
/// It does not inherit phased's secrets (`PHASED_SECRET_*`, the webhook keys among
/// them): a step gets a secret only through its own `env:`.
pub(crate) fn command(argv: &[String]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(crate::secrets::PREFIX.as_bytes()) {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The binary to run as the supervisor (`supervise.rs`); set by the `phased`
/// binary at start. Library users that do not set it get no supervisor: a step's
/// processes are then killed when its task ends, not when the process dies.
pub static SUPERVISOR: OnceLock<std::path::PathBuf> = OnceLock::new();

/// The supervisor's hidden subcommand.
pub const SUPERVISE_COMMAND: &str = "__supervise";

/// The environment variable that names the phased process a step was started by
/// (`<pid>:<start time>`): when phased dies, its supervisor kills every process that
/// still carries it, even one spawned in the instant before it was announced.
pub(crate) const ENGINE_MARKER: &str = "PHASED_ENGINE";

/// This process's value of [`ENGINE_MARKER`].
pub(crate) fn engine_marker() -> &'static str {
    static MARKER: OnceLock<String> = OnceLock::new();
    MARKER.get_or_init(|| {
        let pid = std::process::id();
        format!("{pid}:{}", start_time(pid).unwrap_or(0))
    })
}

/// Milliseconds on this machine's monotonic clock (`CLOCK_MONOTONIC`: never set back,
/// one clock for every process here), in which a holder tells its supervisor when to
/// stop a run's steps.
pub(crate) fn monotonic_ms() -> i64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into a timespec we own; CLOCK_MONOTONIC always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    now.tv_sec * 1000 + now.tv_nsec / 1_000_000
}

/// The fences of the runs this process holds: by run key, when (monotonic ms) their
/// steps get SIGTERM and then SIGKILL unless the holder renews the lease first. Kept
/// here so that a supervisor started after a fence was set is told it, and under one
/// lock with the knowledge that the supervisor runs, so that no fence is missed.
struct Fences {
    deadlines: std::collections::BTreeMap<String, (i64, i64)>,
    /// The supervisor's pipe, once it runs.
    pipe: Option<std::os::fd::RawFd>,
}

static FENCES: std::sync::Mutex<Fences> =
    std::sync::Mutex::new(Fences { deadlines: std::collections::BTreeMap::new(), pipe: None });

fn fences() -> std::sync::MutexGuard<'static, Fences> {
    FENCES.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sets (or moves) the fence of the run `key`: past `term_at` its steps get SIGTERM
/// from the supervisor, past `kill_at` SIGKILL with every process carrying the key.
pub(crate) fn fence(key: &str, term_at: i64, kill_at: i64) {
    let mut fences = fences();
    fences.deadlines.insert(key.to_string(), (term_at, kill_at));
    if let Some(fd) = fences.pipe {
        write_line(fd, &format!("={key} {term_at} {kill_at}\n"));
    }
}

/// The run `key` is no longer held here: its fence goes.
pub(crate) fn unfence(key: &str) {
    let mut fences = fences();
    if fences.deadlines.remove(key).is_some()
        && let Some(fd) = fences.pipe
    {
        write_line(fd, &format!("~{key}\n"));
    }
}

/// Whether the fence of the run `key` has been passed: its steps are being stopped,
/// and none may start.
pub(crate) fn fenced(key: &str) -> bool {
    fences().deadlines.get(key).is_some_and(|&(term_at, _)| monotonic_ms() >= term_at)
}

/// One `write` of a whole line to the supervisor's pipe (atomic on a pipe).
fn write_line(fd: std::os::fd::RawFd, line: &str) {
    // SAFETY: `write` on a pipe this process owns, from a live buffer.
    unsafe {
        libc::write(fd, line.as_ptr().cast(), line.len());
    }
}

/// The write end of the pipe to this process's supervisor (`supervise.rs`),
/// started with the first step; `None` where there is no supervisor binary.
fn supervisor() -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    static PIPE: OnceLock<Option<std::process::ChildStdin>> = OnceLock::new();
    PIPE.get_or_init(|| {
        let binary = SUPERVISOR.get()?;
        let child = std::process::Command::new(binary)
            .arg(SUPERVISE_COMMAND)
            .arg(engine_marker())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn();
        match child {
            // The pipe's write end is close-on-exec: only phased holds it, so it
            // closes (and the supervisor acts) the moment phased dies.
            Ok(mut child) => {
                let stdin = child.stdin.take()?;
                // Room for a second of announcements between the supervisor's reads.
                // SAFETY: fcntl on the pipe we just made; failing leaves the default size.
                unsafe {
                    libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&stdin), libc::F_SETPIPE_SZ, 1 << 20);
                }
                // The fences set before it ran, then every later one (same lock).
                let mut fences = fences();
                for (key, (term_at, kill_at)) in &fences.deadlines {
                    write_line(stdin.as_raw_fd(), &format!("={key} {term_at} {kill_at}\n"));
                }
                fences.pipe = Some(stdin.as_raw_fd());
                Some(stdin)
            }
            Err(e) => {
                tracing::warn!(error = %e, "The step supervisor did not start; steps' children may outlive a killed phased.");
                None
            }
        }
    })
    .as_ref()
    .map(|stdin| stdin.as_raw_fd())
}

/// Tells the supervisor a step's group: `+PGID RUN_KEY` when it is made, `-PGID` when
/// it is gone.
fn tell_supervisor(line: &str) {
    if let Some(fd) = supervisor() {
        write_line(fd, line);
    }
}

/// Prepares a command: its own process group, marked with the run and with this
/// phased process. No code runs between fork and exec, so the standard library
/// spawns it with `posix_spawn` (no copy of phased's page tables): a step costs one
/// process start, as a shell's does.
pub(crate) fn configure(cmd: &mut tokio::process::Command, run_id: &str, run_key: &str, node: &str) {
    cmd.env(RUN_MARKER, run_id)
        .env(RUN_KEY, run_key)
        .env(ENGINE_MARKER, engine_marker())
        .env("PHASED_NODE", node)
        .process_group(0)
        .kill_on_drop(true);
    // A step never sees the database's password (a PostgreSQL URL may hold one).
    if let Some(db) = std::env::var_os("PHASED_DB") {
        let db = std::path::PathBuf::from(db);
        if crate::paths::is_database_url(&db) {
            cmd.env("PHASED_DB", crate::paths::redact_url(&db.to_string_lossy()));
        }
    }
    // Started now, so that it exists before the first step does.
    supervisor();
}

/// A step's process group. Dropping it (the node's task ended or was dropped) kills
/// the whole group: the shell and everything it started.
pub(crate) struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    /// Takes charge of a step's group (its leader's pid) of the run `run_key` and
    /// announces it to the supervisor. A step that started past its run's fence (the
    /// holder could not renew the lease) is killed at once.
    pub(crate) fn new(pid: Option<u32>, run_key: &str) -> Self {
        let pgid = pid.map(|p| p as i32);
        let mut guard = GroupGuard { pgid };
        if let Some(pgid) = pgid {
            tell_supervisor(&format!("+{pgid} {run_key}\n"));
            if fenced(run_key) {
                guard.kill();
            }
        }
        guard
    }

    /// Asks the group to stop (SIGTERM: a step's `trap ... TERM` runs).
    pub(crate) fn terminate(&self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: plain syscall; a group that no longer exists gives ESRCH.
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
        }
    }

    /// The step is over; still kill what it left running in its group.
    pub(crate) fn finish(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: plain syscall; a group that no longer exists gives ESRCH.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            tell_supervisor(&format!("-{pgid}\n"));
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// For commands that only print: stop quietly when the output is closed (`phased
/// actions | head -1`), as Unix tools do, by giving SIGPIPE its default action back.
/// Commands that run nodes keep it ignored: their writes fail, the output is dropped,
/// and the run goes on to its database and logs.
pub(crate) fn stop_on_closed_output() {
    // SAFETY: plain syscall, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The start time of a process (clock ticks since boot), to tell a live holder from
/// a new process that reused its pid.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: fields are counted after its `)`.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `start` is still alive (on this host).
pub(crate) fn alive(pid: u32, start: u64) -> bool {
    start_time(pid).is_some_and(|s| s == start) && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rfind(')').map(|i| stat[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// This machine's name, for leases.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Every process carrying `PHASED_RUN_KEY=<run_key>` (other than this one).
pub(crate) fn marked(run_key: &str) -> Vec<u32> {
    carrying(RUN_KEY, run_key)
}

/// Every live process (other than this one) whose environment has `name=value`.
pub(crate) fn carrying(name: &str, value: &str) -> Vec<u32> {
    carrying_all(&[(name, value)])
}

/// Every live process (other than this one) whose environment has each `name=value`.
pub(crate) fn carrying_all(vars: &[(&str, &str)]) -> Vec<u32> {
    let markers: Vec<String> = vars.iter().map(|(name, value)| format!("{name}={value}")).collect();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| {
                    let env: Vec<&[u8]> = env.split(|&b| b == 0).collect();
                    markers.iter().all(|m| env.contains(&m.as_bytes()))
                })
                .unwrap_or(false)
        })
        .filter(|&pid| !is_zombie(pid))
        .collect()
}

/// SIGKILL to `pid` and to its process group.
pub(crate) fn kill_with_group(pid: u32) {
    // SAFETY: plain syscalls on a pid found carrying a marker of ours.
    unsafe {
        let pgid = libc::getpgid(pid as i32);
        if pgid > 1 {
            libc::kill(-pgid, libc::SIGKILL);
        }
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

/// Kills every process left over from an earlier attempt of the run `run_key` and
/// waits (up to `patience`) until they are gone. Returns how many there were.
pub(crate) fn kill_leftovers(run_key: &str, patience: Duration) -> usize {
    let found = marked(run_key);
    for &pid in &found {
        kill_with_group(pid);
    }
    let deadline = Instant::now() + patience;
    while !marked(run_key).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    found.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keys_tell_the_same_run_id_in_two_databases_apart() {
        let a = run_key("deploy-1", std::path::Path::new("/tmp/a/phased.db"));
        let b = run_key("deploy-1", std::path::Path::new("/tmp/b/phased.db"));
        assert_ne!(a, b);
        assert!(a.starts_with("deploy-1@"));
        assert_eq!(a, run_key("deploy-1", std::path::Path::new("/tmp/a/../a/phased.db")));
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let start = start_time(me).expect("own stat");
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
        assert!(!alive(u32::MAX - 1, start));
    }
}
