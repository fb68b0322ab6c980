//! `concurrency: {key, policy}`: runs of one target never overlap, across processes
//! sharing a database. `queue` waits its turn (status `queued`), `reject` refuses,
//! `supersede` cancels what waits and stops the running run at its next node boundary.
//! Real `phased` processes on one real SQLite file.

mod support;

use std::time::{Duration, Instant};

use support::{Env, signal, wait_timeout};

fn pipeline(policy: &str) -> String {
    format!(
        r#"
version: 1
name: svc
inputs:
  service: {{type: string}}
  label: {{type: string}}
concurrency: {{key: "{{{{ inputs.service }}}}", policy: {policy}}}
nodes:
  work:
    phase: BUILDING
    uses: shell
    with: {{run: 'echo "start $L" >> marks; while [ ! -f "go-$L" ]; do sleep 0.02; done; echo "end $L" >> marks', env: {{L: '{{{{ inputs.label }}}}'}}}}
  after:
    phase: HEALTH_CHECK
    needs: [work]
    uses: shell
    with: {{run: 'echo "after $L" >> marks', env: {{L: '{{{{ inputs.label }}}}'}}}}
"#
    )
}

fn start(env: &Env, file: &str, service: &str, label: &str) -> std::process::Child {
    let args = ["run", file, "--id", label, "-i", &format!("service={service}"), "-i", &format!("label={label}")];
    env.spawn(&args)
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let begin = Instant::now();
    while !ok() {
        assert!(begin.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_of(env: &Env, id: &str) -> String {
    env.status(id)["status"].as_str().unwrap().to_string()
}

fn stderr(child: std::process::Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn queued_runs_of_one_target_take_turns_and_other_targets_do_not_wait() {
    let env = Env::new();
    env.write("svc.yaml", &pipeline("queue"));
    let a = start(&env, "svc.yaml", "web", "a");
    env.wait_for("marks", Duration::from_secs(10));
    let b = start(&env, "svc.yaml", "web", "b");
    wait_until("b to be queued", Duration::from_secs(10), || {
        env.run(&["status", "b", "--format", "json"]).status.success() && status_of(&env, "b") == "queued"
    });
    let c = start(&env, "svc.yaml", "api", "c");
    wait_until("c to start beside a", Duration::from_secs(10), || env.marks("marks").contains(&"start c".to_string()));
    assert_eq!(status_of(&env, "b"), "queued", "b still waits for a");
    let table = String::from_utf8_lossy(&env.run(&["status", "--target", "web"]).stdout).into_owned();
    assert!(table.contains("queued") && !table.contains("api"), "{table}");
    let json: serde_json::Value =
        serde_json::from_slice(&env.run(&["status", "--target", "web", "--format", "json"]).stdout).unwrap();
    let ids: Vec<&str> = json.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"a") && ids.contains(&"b"));
    assert_eq!(env.status("c")["target"], "api");

    env.write("go-a", "");
    env.write("go-c", "");
    wait_until("b to start after a", Duration::from_secs(10), || env.marks("marks").contains(&"start b".to_string()));
    env.write("go-b", "");
    let (code_b, said_b) = stderr(b);
    assert_eq!(code_b, Some(0), "{said_b}");
    assert!(said_b.contains("queued: target `web` is busy with run a"), "it says why it waits: {said_b}");
    assert_eq!(stderr(a).0, Some(0));
    assert_eq!(stderr(c).0, Some(0));
    let marks = env.marks("marks");
    let at = |m: &str| marks.iter().position(|x| x == m).unwrap_or_else(|| panic!("{m} missing: {marks:?}"));
    assert!(at("after a") < at("start b"), "b ran only after a finished: {marks:?}");
    assert!(at("start c") < at("end a"), "c did not wait for a: {marks:?}");
}

#[test]
fn reject_refuses_while_the_target_is_busy_and_records_nothing() {
    let env = Env::new();
    env.write("svc.yaml", &pipeline("reject"));
    let a = start(&env, "svc.yaml", "web", "a");
    env.wait_for("marks", Duration::from_secs(10));
    let b = env.run(&["run", "svc.yaml", "--id", "b", "-i", "service=web", "-i", "label=b"]);
    assert_eq!(b.status.code(), Some(1));
    let said = String::from_utf8_lossy(&b.stderr);
    assert!(said.contains("target `web` is busy with run a") && said.contains("reject"), "{said}");
    assert_eq!(env.run(&["status", "b"]).status.code(), Some(2), "the refused run was not recorded");
    env.write("go-a", "");
    assert_eq!(stderr(a).0, Some(0));
    env.write("go-b", "");
    let again = env.run(&["run", "svc.yaml", "--id", "b", "-i", "service=web", "-i", "label=b"]);
    assert_eq!(again.status.code(), Some(0), "a free target takes the run");
}

#[test]
fn supersede_cancels_what_waits_and_stops_the_running_run_at_its_next_node() {
    let env = Env::new();
    env.write("svc.yaml", &pipeline("supersede"));
    let a = start(&env, "svc.yaml", "web", "a");
    env.wait_for("marks", Duration::from_secs(10));
    let b = start(&env, "svc.yaml", "web", "b");
    wait_until("a to be asked to stop", Duration::from_secs(10), || {
        env.run(&["status", "b", "--format", "json"]).status.success()
    });
    let c = start(&env, "svc.yaml", "web", "c");
    wait_until("b to be superseded", Duration::from_secs(10), || {
        env.run(&["status", "b", "--format", "json"]).status.success() && status_of(&env, "b") == "cancelled"
    });
    assert_eq!(env.status("b")["supersededBy"], "c");
    let (code_b, _) = stderr(b);
    assert_eq!(code_b, Some(130), "a superseded waiting run ends as stopped");
    // a's running node finishes (nothing is cut mid-step), then a stops before `after`.
    env.write("go-a", "");
    let (code_a, said_a) = stderr(a);
    assert_eq!(code_a, Some(130), "{said_a}");
    let status_a = env.status("a");
    assert_eq!(status_a["status"], "cancelled");
    assert_eq!(status_a["supersededBy"], "b", "a was superseded by b, the first newer run");
    env.write("go-c", "");
    let (code_c, said_c) = stderr(c);
    assert_eq!(code_c, Some(0), "{said_c}");
    assert_eq!(env.marks("marks"), ["start a", "end a", "start c", "end c", "after c"]);
}

#[test]
fn a_run_interrupted_while_queued_stays_resumable() {
    let env = Env::new();
    env.write("svc.yaml", &pipeline("queue"));
    let a = start(&env, "svc.yaml", "web", "a");
    env.wait_for("marks", Duration::from_secs(10));
    let mut b = start(&env, "svc.yaml", "web", "b");
    wait_until("b to be queued", Duration::from_secs(10), || {
        env.run(&["status", "b", "--format", "json"]).status.success() && status_of(&env, "b") == "queued"
    });
    signal(&b, libc::SIGINT);
    assert_eq!(wait_timeout(&mut b, Duration::from_secs(10)).code(), Some(130));
    assert_eq!(status_of(&env, "b"), "interrupted");
    // Resumed while a still runs, it queues again behind a.
    let mut resumed = env.spawn(&["resume", "b"]);
    wait_until("the resumed b to queue", Duration::from_secs(10), || status_of(&env, "b") == "queued");
    env.write("go-a", "");
    env.write("go-b", "");
    assert_eq!(wait_timeout(&mut resumed, Duration::from_secs(20)).code(), Some(0));
    assert_eq!(stderr(a).0, Some(0));
    assert_eq!(env.marks("marks"), ["start a", "end a", "after a", "start b", "end b", "after b"]);
}

#[test]
fn the_key_reads_only_inputs_and_the_policy_is_checked() {
    let env = Env::new();
    let file = |key: &str, policy: &str| {
        format!(
            "version: 1\nname: k\ninputs: {{service: {{type: string}}}}\nconcurrency: {{key: \"{key}\", policy: {policy}}}\nnodes:\n  a: {{phase: BUILDING, uses: noop}}\n"
        )
    };
    env.write("secret.yaml", &file("{{ secrets.token }}-{{ inputs.service }}", "queue"));
    let out = env.run(&["validate", "secret.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("only `inputs` are in scope in `concurrency.key`"));
    env.write("policy.yaml", &file("{{ inputs.service }}", "queu"));
    let out = env.run(&["validate", "policy.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("queue"), "{}", String::from_utf8_lossy(&out.stdout));
    env.write("shown.yaml", &file("{{ inputs.service }}", "supersede"));
    let plan = env.run(&["plan", "shown.yaml", "-i", "service=web", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        (plan["target"].as_str(), plan["policy"].as_str()),
        (Some("web"), Some("supersede")),
        "plan shows the target"
    );
    env.write("empty.yaml", &file("{{ inputs.service }}", "queue"));
    let out = env.run(&["run", "empty.yaml", "-i", "service=''"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty target"), "{}", String::from_utf8_lossy(&out.stderr));
}
