//! What a run shows while it runs: on a real terminal (a pseudo-terminal made by
//! `script`), the bar names the nodes running now and the last line a step printed; on
//! a pipe, `--show-output` (or `-v`) prints `node | line`; `-q` says only what went
//! wrong.

mod support;

use std::process::Command;

use support::Env;

const SLOW: &str = r#"
version: 1
name: slow
nodes:
  build: {phase: BUILDING, uses: shell, with: {run: 'for i in 1 2 3; do echo "compiling unit $i"; sleep 0.4; done'}}
  test: {phase: BUILDING, uses: shell, with: {run: 'sleep 0.5; echo "tests pass"; sleep 0.5'}}
  done: {phase: HEALTH_CHECK, needs: [build, test], uses: noop}
"#;

/// What a terminal shows of `phased ARGS` run in `env`'s folder, colour codes removed.
fn on_a_terminal(env: &Env, args: &str) -> String {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_phased"));
    let out = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("PHASED_DB", env.db())
        .env("COLUMNS", "160")
        .env("TERM", "xterm")
        .current_dir(env.dir.path())
        .output()
        .expect("`script` (util-linux) runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(if c == '\r' { '\n' } else { c });
    }
    plain
}

#[test]
fn the_bar_shows_the_running_nodes_their_time_and_the_last_output_line() {
    let env = Env::new();
    env.write("slow.yaml", SLOW);
    let screen = on_a_terminal(&env, "run slow.yaml --id bar");
    let bar_lines: Vec<&str> = screen.lines().filter(|l| l.contains('%') && l.contains('[')).collect();
    assert!(
        bar_lines.iter().any(|l| l.contains("BUILDING") && l.contains("build 0s, test 0s")),
        "both running nodes, with their time, are on the bar:\n{screen}"
    );
    assert!(
        bar_lines.iter().any(|l| l.contains("HEALTH_CHECK") && l.contains("done ") && !l.contains("build 0s")),
        "finished nodes leave the bar:\n{screen}"
    );
    assert!(screen.contains("build | compiling unit 2"), "the last output line is shown:\n{screen}");
    assert!(screen.contains("test | tests pass"), "{screen}");
    assert!(screen.contains("run bar is ACTIVE"), "{screen}");
    assert!(
        !screen.lines().any(|l| l.starts_with("build | compiling")),
        "without --show-output, output lines are not printed above the bar:\n{screen}"
    );
}

#[test]
fn show_output_prints_each_line_with_its_node_on_a_pipe() {
    let env = Env::new();
    env.write("slow.yaml", SLOW);
    for flags in [&["--show-output"][..], &["-v"]] {
        let id = format!("shown{}", flags[0].len());
        let mut args = vec!["run", "slow.yaml", "--id", &id];
        args.extend_from_slice(flags);
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(0));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let of = |node: &str| -> Vec<String> {
            let prefix = format!("{node} | ");
            stdout.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_string).collect()
        };
        assert_eq!(of("build"), ["compiling unit 1", "compiling unit 2", "compiling unit 3"], "{flags:?}: {stdout}");
        assert_eq!(of("test"), ["tests pass"], "{flags:?}: {stdout}");
        let first = stdout.find("build | compiling unit 1").unwrap();
        let done = stdout.find("build succeeded").unwrap();
        assert!(first < done, "lines are printed while the node runs:\n{stdout}");
    }
    let plain = env.run(&["run", "slow.yaml", "--id", "plain"]);
    assert!(!String::from_utf8_lossy(&plain.stdout).contains(" | "), "output lines only when asked");
}

#[test]
fn quiet_says_only_what_went_wrong() {
    let env = Env::new();
    env.write("slow.yaml", SLOW);
    let ok = env.run(&["-q", "run", "slow.yaml", "--id", "q1"]);
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "");
    assert_eq!(String::from_utf8_lossy(&ok.stderr), "");
    assert_eq!(env.status("q1")["status"], "succeeded", "quiet changes what is said, not what is done");

    env.write(
        "bad.yaml",
        "version: 1\nname: bad\nnodes:\n  x: {phase: BUILDING, uses: shell, with: {run: 'exit 4'}}\n",
    );
    let failed = env.run(&["--quiet", "run", "bad.yaml", "--id", "q2"]);
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&failed.stdout), "");
    assert!(String::from_utf8_lossy(&failed.stderr).contains("deployment q2 FAILED"), "{failed:?}");

    let valid = env.run(&["-q", "validate", "slow.yaml"]);
    assert_eq!((valid.status.code(), valid.stdout.as_slice()), (Some(0), &b""[..]));
    let invalid = env.run(&["-q", "validate", "slow.yaml", "bad.yaml", "nothing.yaml"]);
    assert_ne!(invalid.status.code(), Some(0));
    assert!(!invalid.stdout.is_empty() || !invalid.stderr.is_empty(), "problems are still said");

    let both = env.run(&["-q", "-v", "status"]);
    assert_eq!(both.status.code(), Some(2), "-q and -v contradict each other");
}
