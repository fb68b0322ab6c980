//! Output that cannot be written never stops a run: `phased run ... | head -1` through a
//! real pipe closed early. Read commands stop quietly. Real processes, real pipes.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

use support::{Env, wait_timeout};

#[test]
fn a_run_whose_output_pipe_closes_goes_on_to_active() {
    let env = Env::new();
    let file = env.write(
        "slow.yaml",
        r#"
version: 1
name: slow
nodes:
  first: {phase: BUILDING, uses: noop}
  second: {phase: BUILDING, needs: [first], uses: shell, with: {run: 'sleep 0.3; echo done > second-ran'}}
  third: {phase: HEALTH_CHECK, needs: [second], uses: noop}
"#,
    );
    let mut child = env
        .command(&["run", file.to_str().unwrap(), "--id", "piped"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("run piped started"), "{first}");
    drop(stdout); // `head -1` exits: the pipe's read end is closed
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(0), "the command exits as the run ends: {stderr}");
    assert_eq!(env.status("piped")["status"], "succeeded");
    assert_eq!(env.marks("second-ran"), ["done"]);
}

#[test]
fn read_commands_stop_quietly_when_their_output_is_closed() {
    let env = Env::new();
    for args in [&["actions"][..], &["schema"], &["validate", "--format", "json"]] {
        let mut child = env.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let status = wait_timeout(&mut child, Duration::from_secs(20));
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(status.code(), Some(101), "{args:?} panicked");
    }
}
