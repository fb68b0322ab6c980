//! The database's environment failing, for real: a file system that fills up during a
//! run (a small tmpfs), and one mounted read-only. Each error names the database and
//! says what to do, the database stays consistent, and read commands still read.
//! (Mounting needs root, as the tests run here and in CI.)

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::Env;

/// A tmpfs this test mounted; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(ok.success(), "mount a tmpfs (the tests run as root)");
        Tmpfs(at.to_path_buf())
    }

    fn read_only(&self) {
        let ok = Command::new("mount").args(["-o", "remount,ro"]).arg(&self.0).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A small file whose run records a lot: each node's metadata is a 4 KB input.
fn many_nodes(env: &Env, nodes: usize) -> PathBuf {
    let text: String = (0..nodes)
        .map(|i| {
            format!("  n{i}:\n    phase: BUILDING\n    uses: noop\n    metadata: {{pad: \"{{{{ inputs.pad }}}}\"}}\n")
        })
        .collect();
    let pad = "x".repeat(4096);
    env.write(
        "many.yaml",
        &format!("version: 1\nname: many\ninputs:\n  pad: {{type: string, default: {pad}}}\nnodes:\n{text}"),
    )
}

#[test]
fn a_full_disk_ends_the_run_with_3_naming_the_database_and_nothing_is_corrupt() {
    let env = Env::new();
    let disk = Tmpfs::mount(&env.path("small"), "512k");
    let db = disk.0.join("phased.db");
    let file = many_nodes(&env, 600);
    let out = env.command(&["run", file.to_str().unwrap(), "--id", "full"]).env("PHASED_DB", &db).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "an environment problem");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("the file system of the database `{}` is full", db.display())), "{stderr}");
    assert!(stderr.contains("phased resume"), "says what to do: {stderr}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let status = env.command(&["status", "full", "--format", "json"]).env("PHASED_DB", &db).output().unwrap();
    assert_eq!(status.status.code(), Some(0), "read commands still read: {}", String::from_utf8_lossy(&status.stderr));
}

#[test]
fn a_read_only_database_is_read_by_read_commands_and_refused_by_run_with_a_reason() {
    let env = Env::new();
    let disk = Tmpfs::mount(&env.path("ro"), "4m");
    let db = disk.0.join("phased.db");
    let file = env.write("one.yaml", "version: 1\nname: one\nnodes:\n  a: {phase: BUILDING, uses: noop}\n");
    let with_db = |args: &[&str]| env.command(args).env("PHASED_DB", &db).output().unwrap();
    assert_eq!(with_db(&["run", file.to_str().unwrap(), "--id", "before"]).status.code(), Some(0));
    disk.read_only();

    let list = with_db(&["status"]);
    assert_eq!(list.status.code(), Some(0), "{}", String::from_utf8_lossy(&list.stderr));
    assert!(String::from_utf8_lossy(&list.stdout).contains("before"));
    let one = with_db(&["status", "before", "--format", "json"]);
    assert_eq!(one.status.code(), Some(0), "{}", String::from_utf8_lossy(&one.stderr));
    let run = with_db(&["run", file.to_str().unwrap(), "--id", "after"]);
    assert_eq!(run.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("cannot be written: it is read-only"), "{stderr}");
    assert!(stderr.contains(&db.display().to_string()) && stderr.contains("--db"), "{stderr}");
}
