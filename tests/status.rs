//! `status`, `cancel` and `resume` as a user types them: a unique prefix of a run id
//! (as printed) is enough, an ambiguous one is named, a folder without a database gets
//! none created, a node stopped with its run says so, and nodes that have not started
//! are listed as pending. Real binary, real SQLite.

mod support;

use std::time::Duration;

use support::{Env, wait_timeout};

const ONE: &str = "version: 1\nname: one\nnodes:\n  a: {phase: BUILDING, uses: noop}\n";

#[test]
fn a_read_command_in_a_folder_without_a_database_creates_none() {
    let env = Env::new();
    let db = env.path("nothing/here.db");
    let out = env.command(&["status"]).env("PHASED_DB", &db).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("no runs yet: there is no database at `{}`", db.display())), "{text}");
    let json = env.command(&["status", "--format", "json"]).env("PHASED_DB", &db).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&json.stdout).trim(), "[]");
    let one = env.command(&["status", "abc"]).env("PHASED_DB", &db).output().unwrap();
    assert_eq!(one.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&one.stderr).contains("there is no database at"));
    let cancel = env.command(&["cancel", "abc"]).env("PHASED_DB", &db).output().unwrap();
    assert_eq!(cancel.status.code(), Some(2));
    assert!(!db.exists() && !env.path("nothing").exists(), "no database and no folder were made");
}

#[test]
fn a_unique_prefix_of_a_run_id_names_the_run_and_an_ambiguous_one_is_refused() {
    let env = Env::new();
    let file = env.write("one.yaml", ONE);
    for id in ["2aff1ec3-aaaa", "2aff1ec3-bbbb", "deadbeef-1"] {
        assert_eq!(env.run(&["run", file.to_str().unwrap(), "--id", id]).status.code(), Some(0));
    }
    assert_eq!(env.status("dead")["id"], "deadbeef-1");
    assert_eq!(env.status("2aff1ec3-b")["id"], "2aff1ec3-bbbb");
    let ambiguous = env.run(&["status", "2aff1ec3"]);
    assert_eq!(ambiguous.status.code(), Some(2));
    let text = String::from_utf8_lossy(&ambiguous.stderr);
    assert!(text.contains("`2aff1ec3` is the start of several runs: 2aff1ec3-aaaa, 2aff1ec3-bbbb"), "{text}");
    let none = env.run(&["status", "zzz"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no run `zzz` in `"), "names the database");
    let resume = env.run(&["resume", "dead"]);
    assert!(String::from_utf8_lossy(&resume.stderr).contains("`deadbeef-1` already succeeded"), "resume takes it too");
}

#[test]
fn a_node_stopped_by_cancel_shows_stopped_and_nodes_not_started_show_pending() {
    let env = Env::new();
    let file = env.write(
        "wait.yaml",
        "version: 1\nname: wait\nnodes:\n  hold: {phase: BUILDING, uses: shell, with: {run: 'touch holding; while true; do sleep 0.05; done'}}\n  after: {phase: HEALTH_CHECK, needs: [hold], uses: noop}\n",
    );
    let mut child = env.spawn(&["run", file.to_str().unwrap(), "--id", "held"]);
    env.wait_for("holding", Duration::from_secs(20));
    let nodes = |env: &Env| -> Vec<(String, String)> {
        env.status("held")["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["node"].as_str().unwrap().to_string(), n["status"].as_str().unwrap().to_string()))
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(nodes(&env), [pair("hold", "running"), pair("after", "pending")], "while it runs");
    assert_eq!(env.run(&["cancel", "hel"]).status.code(), Some(0), "cancel takes a prefix");
    wait_timeout(&mut child, Duration::from_secs(20));
    let status = env.status("held");
    assert_eq!(status["status"], "cancelled");
    assert_eq!(nodes(&env), [pair("hold", "stopped"), pair("after", "pending")]);
    let human = env.run(&["status", "held"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("after") && text.contains("pending"), "{text}");
}

#[test]
fn status_filters_by_pipeline_and_status_and_limits_newest_first() {
    let env = Env::new();
    let one = env.write("one.yaml", ONE);
    let failing = env.write("bad.yaml", "version: 1\nname: bad\nnodes:\n  a: {phase: BUILDING, uses: fail}\n");
    for (file, id) in [(&one, "r1"), (&failing, "r2"), (&one, "r3")] {
        env.run(&["run", file.to_str().unwrap(), "--id", id]);
        std::thread::sleep(Duration::from_millis(5));
    }
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["status", "--format", "json"];
        all.extend_from_slice(args);
        let out = env.run(&all);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&[]), ["r3", "r2", "r1"]);
    assert_eq!(ids(&["--pipeline", "one"]), ["r3", "r1"]);
    assert_eq!(ids(&["--status", "failed"]), ["r2"]);
    assert_eq!(ids(&["--pipeline", "one", "--limit", "1"]), ["r3"]);
    assert_eq!(env.run(&["status", "r1", "--limit", "1"]).status.code(), Some(2), "a filter is for the table");
}

#[test]
fn actions_and_cancel_speak_json_too() {
    let env = Env::new();
    let out = env.run(&["actions", "--format", "json"]);
    let actions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shell = actions.as_array().unwrap().iter().find(|a| a["name"] == "shell").unwrap();
    assert_eq!(shell["outputs"], "any");
    assert_eq!(shell["parameters"]["properties"]["run"]["type"], serde_json::json!(["string", "null"]));
    let file = env.write("one.yaml", ONE);
    env.run(&["run", file.to_str().unwrap(), "--id", "done-1"]);
    let cancel = env.run(&["cancel", "done", "--format", "json"]);
    assert_eq!(cancel.status.code(), Some(0));
    let run: serde_json::Value = serde_json::from_slice(&cancel.stdout).unwrap();
    assert_eq!((run["id"].as_str(), run["status"].as_str()), (Some("done-1"), Some("succeeded")));
}
