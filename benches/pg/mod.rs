//! What the benches on PostgreSQL share: a throw-away cluster of their own, and the CPU
//! time processes used (to tell a CPU-bound plateau from lock or round-trip waits).

#![allow(dead_code, reason = "each bench uses a part of it")]

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A cluster of the bench's own (`scripts/postgres`, `fsync=off` as in the tests),
/// stopped (by its pid file) when dropped.
pub(crate) struct Cluster {
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    pub(crate) fn start(dir: &Path) -> Cluster {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let port = free_port();
        let out = Command::new(script())
            .args(["start", dir.join("pg").to_str().unwrap(), &port.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Cluster { dir: dir.to_path_buf(), port }
    }

    /// A new database of the cluster: its URL.
    pub(crate) fn database(&self, name: &str) -> String {
        let base = format!("postgres://postgres@127.0.0.1:{}", self.port);
        let mut client = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls).unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        format!("{base}/{name}")
    }

    /// CPU seconds used by the server and its backends so far, those that exited
    /// included (their time is the postmaster's, once it reaped them).
    pub(crate) fn cpu(&self) -> f64 {
        let pid_file = std::fs::read_to_string(self.dir.join("pg/data/postmaster.pid")).unwrap_or_default();
        let Some(postmaster) = pid_file.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) else { return 0.0 };
        let mut ticks = stat(postmaster).map_or(0, |s| s.own + s.children);
        for pid in children(postmaster) {
            ticks += stat(pid).map_or(0, |s| s.own);
        }
        ticks as f64 / clock_ticks()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["stop", self.dir.join("pg").to_str().unwrap()]).output();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres")
}

struct Stat {
    ppid: u32,
    /// utime + stime, in clock ticks.
    own: u64,
    /// cutime + cstime: of its children that it waited for.
    children: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = text[text.rfind(')')? + 2..].split(' ').collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Stat { ppid: field(4)? as u32, own: field(14)? + field(15)?, children: field(16)? + field(17)? })
}

fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == parent))
        .collect()
}

/// The unit of `/proc/PID/stat`'s times: USER_HZ, 100 a second on Linux whatever the
/// kernel's own tick.
fn clock_ticks() -> f64 {
    100.0
}

/// CPU seconds used by the process `pid` and the children it waited for.
pub(crate) fn process_cpu(pid: u32) -> f64 {
    let ticks = stat(pid).map_or(0, |s| s.own + s.children);
    let live: u64 = children(pid).into_iter().filter_map(stat).map(|s| s.own).sum();
    (ticks + live) as f64 / clock_ticks()
}
