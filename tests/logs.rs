//! `phased logs RUN [NODE] [-f]` against real runs: every node's lines prefixed and in
//! the order the nodes started, one node's log as it is, a node that printed nothing,
//! an unknown node, and `-f` following a live run until it ends.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use support::{Env, wait_timeout};

const TWO: &str = r#"
version: 1
name: two
nodes:
  build: {phase: BUILDING, uses: shell, with: {run: 'echo compiling; echo "token is $TOKEN"', env: {TOKEN: '{{ secrets.token }}'}}}
  quiet: {phase: BUILDING, needs: [build], uses: shell, with: {run: 'true'}}
  check: {phase: HEALTH_CHECK, needs: [quiet], uses: shell, with: {run: 'echo healthy'}}
"#;

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn logs_show_every_node_prefixed_or_one_node_as_it_is() {
    let env = Env::new();
    let file = env.write("two.yaml", TWO);
    let run = env
        .command(&["run", file.to_str().unwrap(), "--id", "logged-1"])
        .env("PHASED_SECRET_TOKEN", "hunter2")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0));

    let all = env.run(&["logs", "logged"]);
    assert_eq!(all.status.code(), Some(0));
    let lines: Vec<String> = text(&all).lines().filter(|l| !l.contains("| ==")).map(str::to_string).collect();
    assert_eq!(lines, ["build | compiling", "build | token is ***", "check | healthy"], "{}", text(&all));

    let json = env.run(&["logs", "logged", "--format", "jsonl"]);
    let objects: Vec<serde_json::Value> =
        String::from_utf8_lossy(&json.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let pairs: Vec<(&str, &str)> = objects
        .iter()
        .map(|o| (o["node"].as_str().unwrap(), o["line"].as_str().unwrap()))
        .filter(|(_, l)| !l.starts_with("=="))
        .collect();
    assert_eq!(pairs, [("build", "compiling"), ("build", "token is ***"), ("check", "healthy")]);

    let one = env.run(&["logs", "logged-1", "check"]);
    assert!(text(&one).ends_with("healthy\n"), "{}", text(&one));
    let quiet = env.run(&["logs", "logged-1", "quiet"]);
    assert_eq!(quiet.status.code(), Some(0));
    assert!(text(&quiet).contains("printed nothing"), "{}", text(&quiet));
    let wrong = env.run(&["logs", "logged-1", "chek"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("did you mean `check`?"));
}

#[test]
fn logs_follow_a_live_run_until_it_ends() {
    let env = Env::new();
    let file = env.write(
        "live.yaml",
        "version: 1\nname: live\nnodes:\n  step: {phase: BUILDING, uses: shell, with: {run: 'echo one; while [ ! -f go ]; do sleep 0.05; done; echo two'}}\n",
    );
    let mut run = env.spawn(&["run", file.to_str().unwrap(), "--id", "live"]);
    env.wait_for("state/logs/live/step.log", Duration::from_secs(20));
    let mut follow = env.command(&["logs", "live", "step", "-f"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = loop {
        let line = out.next().unwrap().unwrap();
        if !line.starts_with("==") {
            break line;
        }
    };
    assert_eq!(first, "one", "printed while the step still runs");
    env.write("go", "");
    assert_eq!(out.next().unwrap().unwrap(), "two");
    assert_eq!(wait_timeout(&mut follow, Duration::from_secs(20)).code(), Some(0), "it ends with the run");
    assert_eq!(wait_timeout(&mut run, Duration::from_secs(20)).code(), Some(0));
}
