//! `foreach`: a node run once per item, through the real binary and a real database
//! (a SQLite file; PostgreSQL when `PHASED_TEST_POSTGRES` names a cluster), with real
//! processes: items checkpointed as `node[item]`, `parallel`, `on_failure`, resumes
//! that rerun only the unfinished items, sub-pipelines fanned out, `plan`, and what
//! validation says.

mod support;

use std::time::Duration;

use support::{Env, events, kill9};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Four items, two at a time; each records how many were under way when it started.
const FLEET: &str = r#"
version: 1
name: fleet
inputs:
  hosts: {type: array, default: [alpha, beta, gamma, delta]}
nodes:
  prep:
    phase: BUILDING
    uses: shell
    with: {run: 'echo "version=v7" >> "$PHASED_OUTPUT"'}
  deploy:
    phase: UPDATING_ROUTES
    weight: 4
    needs: [prep]
    foreach: {items: "{{ inputs.hosts }}", parallel: 2, on_failure: continue}
    uses: shell
    with:
      run: |
        mkdir -p busy && touch "busy/$ITEM" && ls busy | wc -l >> counts
        echo "$ITEM {{ nodes.prep.outputs.version }}" >> marks
        sleep 0.4
        rm "busy/$ITEM"
        test ! -f "broken-$ITEM" && echo "host=$ITEM" >> "$PHASED_OUTPUT"
      env: {ITEM: "{{ item }}"}
    metadata: {host: "{{ item }}"}
  after:
    phase: HEALTH_CHECK
    needs: [deploy]
    uses: shell
    with: {run: 'echo "after {{ nodes.deploy.outputs.items.alpha.host }} {{ nodes.deploy.outputs.items.delta.host }}" >> marks'}
"#;

#[test]
fn items_run_two_at_a_time_a_failed_one_is_named_and_a_resume_reruns_only_it() {
    let env = Env::new();
    let file = env.write("fleet.yaml", FLEET);
    let file = file.to_str().unwrap();
    env.write("broken-gamma", "");
    let out = env.run(&["run", file, "--id", "wave", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Every other item ran (and saw the ancestor's output); `after` did not.
    let mut marks = env.marks("marks");
    marks.sort();
    assert_eq!(marks, ["alpha v7", "beta v7", "delta v7", "gamma v7"]);
    let counts: Vec<u32> = env.marks("counts").iter().map(|c| c.trim().parse().unwrap()).collect();
    assert_eq!(counts.iter().max(), Some(&2), "two at a time, never more, and both used: {counts:?}");
    // The events name each item; the run's error names the failed one.
    let events = events(&out.stdout);
    let started: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "node_started")
        .filter_map(|e| e["node"].as_str())
        .filter(|n| n.starts_with("deploy["))
        .collect();
    assert_eq!(started, ["deploy[alpha]", "deploy[beta]", "deploy[gamma]", "deploy[delta]"]);
    let status = env.status("wave");
    assert_eq!(status["status"], "failed");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("1 of 4 items failed (deploy[gamma])"), "{error}");
    let nodes: Vec<(String, String)> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap().to_string(), n["status"].as_str().unwrap().to_string()))
        .collect();
    for (node, want) in [("deploy[alpha]", "succeeded"), ("deploy[gamma]", "failed"), ("deploy", "failed")] {
        assert!(nodes.contains(&(node.to_string(), want.to_string())), "{node} {want}: {nodes:?}");
    }
    assert_eq!(status["phase_metadata"]["failedNode"], "deploy");

    // Fixed: the resume runs gamma alone, then what came after.
    std::fs::remove_file(env.path("broken-gamma")).unwrap();
    std::fs::write(env.path("marks"), "").unwrap();
    let out = env.run(&["resume", "wave"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(env.marks("marks"), ["gamma v7", "after alpha delta"]);
    let status = env.status("wave");
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["phase_progress"], 100);
}

#[test]
fn fail_fast_stops_the_other_items_and_the_run_fails_at_the_item() {
    let env = Env::new();
    let file = env.write(
        "fast.yaml",
        r#"
version: 1
name: fast
nodes:
  deploy:
    phase: UPDATING_ROUTES
    foreach: '{{ ["one", "two", "three"] }}'
    uses: shell
    with: {run: 'if [ "$ITEM" = two ]; then exit 3; fi; sleep 20; echo "$ITEM" >> marks', env: {ITEM: '{{ item }}'}}
"#,
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "fast"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(env.marks("marks").is_empty(), "the others were stopped, not finished");
    let status = env.status("fast");
    assert_eq!(status["phase_metadata"]["failedNode"], "deploy[two]");
    let running: Vec<&str> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "stopped")
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(running, ["deploy[one]", "deploy[three]"], "stopped items stay to be rerun");
}

const HOST: &str = r#"
version: 1
name: host
inputs:
  name: {type: string, required: true}
nodes:
  upload:
    phase: COPYING_FILES
    uses: shell
    with: {run: 'echo "upload $N" >> marks; if [ -f "hold-$N" ]; then touch "held-$N"; while [ ! -f go ]; do sleep 0.05; done; fi', env: {N: '{{ inputs.name }}'}}
  restart:
    phase: HEALTH_CHECK
    needs: [upload]
    uses: shell
    with: {run: 'echo "restart $N" >> marks; echo "at=$N" >> "$PHASED_OUTPUT"', env: {N: '{{ inputs.name }}'}}
outputs:
  at: "{{ nodes.restart.outputs.at }}"
"#;

#[test]
fn a_fanned_sub_pipeline_killed_midway_resumes_only_the_items_that_did_not_finish() {
    let env = Env::new();
    env.write("host.yaml", HOST);
    let file = env.write(
        "roll.yaml",
        r#"
version: 1
name: roll
inputs:
  hosts: {type: array, required: true}
nodes:
  hosts:
    weight: 3
    foreach: {items: "{{ inputs.hosts }}", key: "{{ item.id }}", parallel: 1}
    pipeline: host
    with: {name: "{{ item.id }}"}
  report:
    phase: HEALTH_CHECK
    needs: [hosts]
    uses: shell
    with: {run: 'echo "report {{ nodes.hosts.outputs.items.h2.at }}" >> marks'}
"#,
    );
    env.write("hold-h2", "");
    let hosts = r#"hosts=[{id: h1}, {id: h2}, {id: h3}]"#;
    let run = ["run", file.to_str().unwrap(), "--id", "roll", "-i", hosts];
    let mut child = env.spawn(&run);
    env.wait_for("held-h2", Duration::from_secs(30));
    kill9(&mut child);
    assert_eq!(env.marks("marks"), ["upload h1", "restart h1", "upload h2"], "one at a time");
    let status = env.status("roll");
    assert_eq!(status["status"], "interrupted");

    env.write("go", "");
    std::fs::write(env.path("marks"), "").unwrap();
    let out = env.run(&["resume", "roll"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // h1 finished before the kill: kept. h2 resumes at the node that did not finish.
    assert_eq!(env.marks("marks"), ["upload h2", "restart h2", "upload h3", "restart h3", "report h2"]);
    let status = env.status("roll");
    let ids: Vec<&str> = status["nodes"].as_array().unwrap().iter().filter_map(|n| n["node"].as_str()).collect();
    for id in ["hosts[h1]", "hosts[h1].upload", "hosts[h2].restart", "hosts[h3].restart", "hosts", "report"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }

    // `plan` shows each item under its node.
    let out = env.run(&["plan", file.to_str().unwrap(), "-i", hosts, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let planned: Vec<&str> = plan["nodes"].as_array().unwrap().iter().filter_map(|n| n["node"].as_str()).collect();
    assert_eq!(
        planned,
        [
            "hosts",
            "hosts[h1]",
            "hosts[h1].upload",
            "hosts[h1].restart",
            "hosts[h2]",
            "hosts[h2].upload",
            "hosts[h2].restart",
            "hosts[h3]",
            "hosts[h3].upload",
            "hosts[h3].restart",
            "report"
        ]
    );
}

#[test]
fn resume_from_one_item_reruns_it_and_what_comes_after_only() {
    let env = Env::new();
    let file = env.write("fleet.yaml", FLEET);
    env.write("broken-delta", "");
    let file = file.to_str().unwrap();
    assert_eq!(env.run(&["run", file, "--id", "again"]).status.code(), Some(1));
    std::fs::remove_file(env.path("broken-delta")).unwrap();
    std::fs::write(env.path("marks"), "").unwrap();
    let out = env.run(&["resume", "again", "--from", "deploy[beta]"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut marks = env.marks("marks");
    marks.sort();
    assert_eq!(marks, ["after alpha delta", "beta v7", "delta v7"], "beta asked for, delta unfinished");
}

#[test]
fn validation_names_item_out_of_scope_and_bad_foreach_settings_and_a_run_names_a_bad_list() {
    let env = Env::new();
    let file = env.write(
        "bad.yaml",
        r#"
version: 1
name: bad
inputs:
  hosts: {type: array, default: []}
nodes:
  a:
    phase: BUILDING
    uses: shell
    with: {run: 'echo "$ITEM"', env: {ITEM: '{{ item }}'}}
  b:
    phase: BUILDING
    foreach: {items: "{{ item.hosts }}", parallel: 0, on_failure: later, sort: true}
    uses: noop
"#,
    );
    let out = env.run(&["validate", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "`item` is only in scope in a node with `foreach`",
        "`foreach.items` makes the items",
        "`foreach.parallel` must be a whole number",
        "`foreach.on_failure` is `fail_fast` or `continue`",
        "unknown key `sort` in `foreach`",
    ] {
        assert!(report.contains(needle), "{needle}: {report}");
    }

    let file = env.write(
        "dup.yaml",
        "version: 1\nname: dup\ninputs:\n  hosts: {type: array}\nnodes:\n  d:\n    phase: BUILDING\n    foreach: \"{{ inputs.hosts }}\"\n    uses: noop\n",
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "dup", "-i", "hosts=[x, x]"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(env.status("dup")["error"].as_str().unwrap().contains("two items of `foreach` are named `x`"));
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "badname", "-i", "hosts=[{name: a b}]"]);
    assert_eq!(out.status.code(), Some(1));
    let error = env.status("badname")["error"].as_str().unwrap().to_string();
    assert!(error.contains("cannot be part of a node id"), "{error}");
    // No items: the node has nothing to do, and succeeds.
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "none", "-i", "hosts=[]"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
