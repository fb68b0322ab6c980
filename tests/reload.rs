//! `resume --reload`: a run whose pipeline had a bug goes on with the fixed file.
//! Unchanged finished nodes keep their checkpoints (their steps do not run again),
//! changed nodes and what depends on them rerun, and a change that makes a kept
//! node's recorded outputs unusable is refused with the run left as it was.
//! `plan --resume ID [--reload]` says the same without running. Real files, a real
//! SQLite database, real processes.

mod support;

use support::Env;

/// `fetch` -> `build` -> `deploy`; each step appends its name to a marker file.
fn pipeline(build: &str, deploy_reads: &str, extra_inputs: &str) -> String {
    format!(
        r#"
version: 1
name: app
inputs:
  service: {{type: string, default: web}}
{extra_inputs}
nodes:
  fetch:
    phase: PULLING_SOURCE
    uses: shell
    with:
      run: 'echo fetch >> marks; echo "path=/src/$S" >> "$PHASED_OUTPUT"'
      env: {{S: '{{{{ inputs.service }}}}'}}
  build:
    phase: BUILDING
    needs: [fetch]
    uses: shell
    with: {{run: 'echo build >> marks; {build}'}}
  deploy:
    phase: UPDATING_ROUTES
    needs: [build]
    uses: shell
    with: {{run: 'echo "deploy {{{{ {deploy_reads} }}}}" >> marks'}}
"#
    )
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_fixed_pipeline_resumes_keeping_what_finished_and_rerunning_what_changed() {
    let env = Env::new();
    let file = env.write("app.yaml", &pipeline("exit 1", "nodes.fetch.outputs.path", ""));
    let first = env.run(&["run", "app.yaml", "--id", "fix1"]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert_eq!(env.marks("marks"), ["fetch", "build"]);

    std::fs::write(&file, pipeline("true", "nodes.fetch.outputs.path", "")).unwrap();
    // Without --reload, the run keeps the pipeline it started with (and fails again).
    let again = env.run(&["resume", "fix1"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("--reload"), "the note says how to take the file as it is: {}", text(&again));
    assert_eq!(env.marks("marks"), ["fetch", "build", "build"]);

    let preview = env.run(&["plan", "--resume", "fix1", "--reload", "--format", "json"]);
    assert_eq!(preview.status.code(), Some(0), "{}", text(&preview));
    let preview: serde_json::Value = serde_json::from_slice(&preview.stdout).unwrap();
    let actions: Vec<(String, String)> = preview["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap().to_string(), n["action"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        actions,
        [("fetch".into(), "kept".into()), ("build".into(), "changed".into()), ("deploy".into(), "runs".into())]
    );
    let human = text(&env.run(&["plan", "--resume", "fix1", "--reload"]));
    assert!(human.contains("fetch") && human.contains("kept") && human.contains("changed"), "{human}");
    assert_eq!(env.marks("marks").len(), 3, "plan --resume runs nothing");

    let fixed = env.run(&["resume", "fix1", "--reload"]);
    assert_eq!(fixed.status.code(), Some(0), "{}", text(&fixed));
    assert!(text(&fixed).contains("changed: build"), "it says what will rerun: {}", text(&fixed));
    assert_eq!(env.marks("marks"), ["fetch", "build", "build", "build", "deploy /src/web"], "fetch did not run again");
    let status = env.status("fix1");
    assert_eq!(status["status"], "succeeded");
    // The run now carries the pipeline it finished with.
    let snapshots = env.count("SELECT count(*) FROM snapshots");
    assert_eq!(snapshots, 2);
}

#[test]
fn what_depends_on_a_changed_node_runs_again_and_new_inputs_get_their_defaults() {
    let env = Env::new();
    let file = env.write("app.yaml", &pipeline("true", "nodes.fetch.outputs.path", ""));
    // deploy fails: fetch and build finished.
    let text_v1 = std::fs::read_to_string(&file).unwrap().replace("echo \"deploy", "exit 1; echo \"deploy");
    std::fs::write(&file, &text_v1).unwrap();
    assert_eq!(env.run(&["run", "app.yaml", "--id", "dep1"]).status.code(), Some(1));
    assert_eq!(env.marks("marks"), ["fetch", "build"]);

    // build changes (and reads a new input); deploy is fixed.
    let v2 = pipeline(
        "echo {{ inputs.flavour | shell_quote }} >> marks",
        "nodes.fetch.outputs.path",
        "  flavour: {type: string, default: fast}",
    );
    std::fs::write(&file, v2).unwrap();
    let preview = text(&env.run(&["plan", "--resume", "dep1", "--reload"]));
    assert!(preview.lines().any(|l| l.contains("build") && l.contains("changed")), "{preview}");
    assert!(preview.lines().any(|l| l.contains("fetch") && l.contains("kept")), "{preview}");

    let out = env.run(&["resume", "dep1", "--reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(env.marks("marks"), ["fetch", "build", "build", "fast", "deploy /src/web"]);
    assert_eq!(env.status("dep1")["inputs"]["flavour"], "fast", "the new input is stored with its default");
}

#[test]
fn a_change_that_makes_kept_outputs_unusable_is_refused_naming_the_node() {
    let env = Env::new();
    let file = env.write("app.yaml", &pipeline("exit 1", "nodes.fetch.outputs.path", ""));
    assert_eq!(env.run(&["run", "app.yaml", "--id", "bad1"]).status.code(), Some(1));
    let before = env.status("bad1");

    // deploy now reads an output that the kept `fetch` never recorded.
    std::fs::write(&file, pipeline("true", "nodes.fetch.outputs.commit", "")).unwrap();
    for args in [&["plan", "--resume", "bad1", "--reload"][..], &["resume", "bad1", "--reload"]] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains("`deploy`") && said.contains("nodes.fetch.outputs.commit"), "{said}");
        assert!(said.contains("--from fetch"), "it says how to go on: {said}");
    }
    assert_eq!(env.marks("marks"), ["fetch", "build"], "nothing ran");
    let after = env.status("bad1");
    assert_eq!(after["status"], before["status"], "the run is unchanged");
    assert_eq!(after["nodes"], before["nodes"]);

    // With `--from fetch` the refusal is lifted: fetch runs again. (deploy then fails
    // at run time: fetch still does not write `commit`.)
    let refetch = env.run(&["resume", "bad1", "--reload", "--from", "fetch"]);
    assert_eq!(refetch.status.code(), Some(1), "{}", text(&refetch));
    assert!(text(&refetch).contains("commit"), "{}", text(&refetch));
    assert_eq!(env.marks("marks"), ["fetch", "build", "fetch", "build"]);

    // A new required input without a default cannot be filled from the stored run.
    std::fs::write(&file, pipeline("true", "nodes.fetch.outputs.path", "  region: {type: string, required: true}"))
        .unwrap();
    let out = env.run(&["resume", "bad1", "--reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("region"), "{}", text(&out));

    // An invalid file on disk: nothing changes either.
    std::fs::write(&file, "version: 1\nname: app\nnodes: {x: {uses: nope}}\n").unwrap();
    let out = env.run(&["resume", "bad1", "--reload"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("is unchanged"), "{}", text(&out));
    assert_eq!(env.status("bad1")["status"], "failed");
}

#[test]
fn a_change_inside_a_sub_pipeline_reruns_that_node_and_what_follows_it_only() {
    let env = Env::new();
    let part = |unpack: &str| {
        format!(
            r#"
version: 1
name: part
nodes:
  fetch: {{phase: PULLING_SOURCE, uses: shell, with: {{run: 'echo part.fetch >> marks'}}}}
  unpack: {{phase: PULLING_SOURCE, needs: [fetch], uses: shell, with: {{run: 'echo part.unpack >> marks; {unpack}'}}}}
"#
        )
    };
    let part_file = env.write("pipelines/part.yaml", &part("exit 1"));
    env.write(
        "pipelines/site.yaml",
        r#"
version: 1
name: site
nodes:
  prepare: {phase: PULLING_SOURCE, uses: shell, with: {run: 'echo prepare >> marks'}}
  source: {phase: PULLING_SOURCE, needs: [prepare], pipeline: part}
  publish: {phase: COPYING_FILES, needs: [source], uses: shell, with: {run: 'echo publish >> marks'}}
"#,
    );
    assert_eq!(env.run(&["run", "site", "--id", "sub1"]).status.code(), Some(1));
    assert_eq!(env.marks("marks"), ["prepare", "part.fetch", "part.unpack"]);

    std::fs::write(&part_file, part("true")).unwrap();
    let preview = env.run(&["plan", "--resume", "sub1", "--reload", "--format", "json"]);
    let preview: serde_json::Value = serde_json::from_slice(&preview.stdout).unwrap();
    let action = |node: &str| {
        preview["nodes"].as_array().unwrap().iter().find(|n| n["node"] == node).map(|n| n["action"].clone())
    };
    assert_eq!(action("prepare").unwrap(), "kept");
    assert_eq!(action("source.fetch").unwrap(), "kept");
    assert_eq!(action("source.unpack").unwrap(), "changed");
    assert_eq!(action("publish").unwrap(), "runs");

    let out = env.run(&["resume", "sub1", "--reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(env.marks("marks"), ["prepare", "part.fetch", "part.unpack", "part.unpack", "publish"]);
}
