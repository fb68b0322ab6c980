//! What phased shows and keeps of a run is safe from the run's steps and from other
//! users (issue 22): `phased logs` and `phased status` never pass a step's terminal
//! control sequences on (break 13), and the database, node logs and work folders are
//! its user's only, whatever the umask (break 12). The real binary, real processes.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use support::Env;

/// A step that prints a title change (OSC, ended by BEL), a screen clear (CSI 2J) and
/// a coloured word, on stdout and on stderr, then fails: the log, the node's error and
/// the run's error metadata all hold them.
const LOUD: &str = r#"version: 1
name: loud
nodes:
  shout:
    phase: BUILDING
    uses: shell
    with:
      run: |
        printf 'before \033]0;pwned\007 \033[2J visible \033[31mred\033[0m after\n'
        printf 'before \033]0;pwned\007 \033[2J visible \033[31mred\033[0m after\n' >&2
        exit 1
"#;

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn logs_and_status_strip_what_a_step_printed_to_the_terminal_and_keep_colours_only_when_asked() {
    let env = Env::new();
    env.write("loud.yaml", LOUD);
    assert_eq!(env.run(&["run", "loud.yaml", "--id", "loud"]).status.code(), Some(1));

    let shown = [
        ("logs", stdout(&env.run(&["logs", "loud"]))),
        ("logs of the node", stdout(&env.run(&["logs", "loud", "shout"]))),
        ("status", stdout(&env.run(&["status", "loud"]))),
        ("status table", stdout(&env.run(&["status"]))),
        ("logs --color never", stdout(&env.run(&["logs", "loud", "--color", "never"]))),
    ];
    for (what, text) in &shown {
        assert!(!text.contains(['\u{1b}', '\u{7}']), "{what} passes a control character on: {text:?}");
    }
    for (what, text) in &shown[..3] {
        assert!(text.contains("before   visible red after"), "{what} keeps the visible text: {text}");
    }
    // The title's text goes with it (`status` shows the error metadata as JSON, where
    // the sequence is escaped text, inert).
    assert!(!shown[0].1.contains("pwned") && !shown[1].1.contains("pwned"), "{}", shown[0].1);

    // Asked for: the colour stays, the title change and the screen clear do not.
    for args in [["logs", "loud", "--color", "always"], ["status", "loud", "--color", "always"]] {
        let text = stdout(&env.run(&args));
        assert!(text.contains("visible \u{1b}[31mred\u{1b}[0m after"), "{args:?}: {text:?}");
        assert!(
            !text.contains("\u{1b}]") && !text.contains("\u{1b}[2J") && !text.contains('\u{7}'),
            "{args:?}: {text:?}"
        );
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Starts phased under umask 022 (the usual one: files 0644, folders 0755), through
/// sh, which sets it.
fn under_umask(env: &Env, args: &[&str]) -> std::process::Child {
    std::process::Command::new("/bin/sh")
        .args(["-c", r#"umask 022; exec "$@""#, "sh", env!("CARGO_BIN_EXE_phased")])
        .args(args)
        .env("PHASED_DB", env.db())
        .env_remove("PHASED_PIPELINES")
        .env_remove("PHASED_DATA_DIR")
        .current_dir(env.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn the_database_logs_and_work_folders_are_the_users_only_whatever_the_umask() {
    let env = Env::on_sqlite();
    let (started, go) = (env.path("started"), env.path("go"));
    env.write(
        "quiet.yaml",
        &format!(
            r#"version: 1
name: quiet
nodes:
  build:
    phase: BUILDING
    uses: shell
    with:
      run: |
        echo "a line for the log"
        echo scratch > "{{{{ deployment.work_dir }}}}/scratch"
        touch "{started}"
        while [ ! -f "{go}" ]; do sleep 0.02; done
"#,
            started = started.display(),
            go = go.display()
        ),
    );
    let state = env.path("state");
    let mut child = under_umask(&env, &["run", "quiet.yaml", "--id", "m1"]);
    env.wait_for("started", std::time::Duration::from_secs(30));
    // The step's line reaches its log through a pipe that phased reads: wait for it.
    let log = state.join("logs/m1/build.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("a line for the log") {
        assert!(std::time::Instant::now() < deadline, "the step's line never reached {}", log.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // While the run holds the database open: its WAL and shared-memory files too.
    let private = [
        state.clone(),
        state.join("phased.db"),
        state.join("phased.db-wal"),
        state.join("phased.db-shm"),
        state.join("logs"),
        state.join("logs/m1"),
        state.join("logs/m1/build.log"),
        state.join("work"),
        state.join("work/m1"),
    ];
    let modes = |paths: &[std::path::PathBuf]| -> Vec<(String, u32)> {
        paths.iter().map(|p| (p.strip_prefix(env.dir.path()).unwrap().display().to_string(), mode(p))).collect()
    };
    for (path, mode) in modes(&private) {
        assert_eq!(mode & 0o077, 0, "{path} is {mode:o}");
    }
    std::fs::write(&go, "").unwrap();
    let status = support::wait_timeout(&mut child, std::time::Duration::from_secs(30));
    assert!(status.success(), "the run failed");
    // What the step wrote itself follows the umask: a release folder stays readable.
    assert_eq!(mode(&state.join("work/m1/scratch")), 0o644);

    // Made by an older version (world-readable): made private at the next run (the
    // files inside the folders are out of reach already).
    let older = [state.join("phased.db"), state.join("logs"), state.join("work")];
    for path in &older {
        let wide = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wide)).unwrap();
    }
    std::fs::write(&go, "").unwrap();
    let mut child = under_umask(&env, &["run", "quiet.yaml", "--id", "m2"]);
    assert!(support::wait_timeout(&mut child, std::time::Duration::from_secs(30)).success());
    for (path, mode) in modes(&older) {
        assert_eq!(mode & 0o077, 0, "{path} is still {mode:o}");
    }
}
