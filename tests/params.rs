//! Parameters as the action declares them: a rendered value is converted to the
//! declared type (an integer input in a string parameter), the same way by `plan` and
//! `run`; what still fails at run time names the node, the key and the template; and
//! outputs a step writes in GitHub's multi-line form reach the nodes after it.

mod support;

use support::Env;

const TYPED: &str = r#"
version: 1
name: typed
inputs:
  port: {type: integer, default: 8080}
  debug: {type: boolean, default: true}
nodes:
  serve:
    phase: BUILDING
    uses: shell
    with:
      run: 'echo "$PORT $DEBUG" > seen'
      env: {PORT: "{{ inputs.port }}", DEBUG: "{{ inputs.debug }}"}
"#;

#[test]
fn an_integer_input_in_a_string_parameter_is_converted_in_plan_and_run() {
    let env = Env::new();
    let file = env.write("typed.yaml", TYPED);
    let file = file.to_str().unwrap();
    assert_eq!(env.run(&["validate", file]).status.code(), Some(0));

    let plan = env.run(&["plan", file, "-i", "port=9090", "--format", "json"]);
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["nodes"][0]["with"]["env"], serde_json::json!({"PORT": "9090", "DEBUG": "true"}));

    let out = env.run(&["run", file, "-i", "port=9090", "--id", "typed"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(env.path("seen")).unwrap(), "9090 true\n");
}

#[test]
fn a_template_that_fails_at_run_time_names_the_node_the_key_and_the_template() {
    let env = Env::new();
    let file = env.write(
        "broken.yaml",
        r#"
version: 1
name: broken
inputs:
  items: {type: array, default: [a]}
nodes:
  first: {phase: PULLING_SOURCE, uses: noop}
  deploy:
    phase: BUILDING
    needs: [first]
    uses: shell
    with: {run: 'echo "$X"', env: {X: "{{ inputs.items[3] }}"}}
"#,
    );
    let file = file.to_str().unwrap();
    assert_eq!(env.run(&["validate", file]).status.code(), Some(0), "valid: the index is known only with the input");
    let out = env.run(&["run", file, "--id", "broken"]);
    assert_eq!(out.status.code(), Some(1));
    let status = env.status("broken");
    assert_eq!(status["phase_metadata"]["failedNode"], "deploy");
    let error = status["phase_metadata"]["error"].as_str().unwrap();
    assert!(error.starts_with("`with.env.X` (`{{ inputs.items[3] }}`): "), "{error}");
    let summary = status["error"].as_str().unwrap();
    assert!(summary.starts_with("node `deploy` (BUILDING): `with.env.X`"), "{summary}");
}

#[test]
fn a_multi_line_output_in_githubs_form_reaches_the_next_node() {
    let env = Env::new();
    let file = env.write(
        "notes.yaml",
        r#"
version: 1
name: notes
nodes:
  write:
    phase: BUILDING
    uses: shell
    with: {run: 'printf "notes<<EOF\nfirst line\nsecond = line\nEOF\nversion=2\n" >> "$PHASED_OUTPUT"'}
  read:
    phase: HEALTH_CHECK
    needs: [write]
    uses: shell
    with: {run: 'printf "%s|%s" "$NOTES" "$VERSION" > seen', env: {NOTES: "{{ nodes.write.outputs.notes }}", VERSION: "{{ nodes.write.outputs.version }}"}}
"#,
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "notes"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(env.path("seen")).unwrap(), "first line\nsecond = line|2");
}
