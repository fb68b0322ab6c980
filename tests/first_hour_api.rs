//! Issue 23, items 8 and 20: who started a run and what it deployed, recorded and
//! shown (the CLI, the API, a rollback); the API's answers a client builds on (`Location`,
//! 409 for a cancel of an ended run, one case for the run's keys, the deployment types
//! without their building blocks). Through the real binary and `phased serve`.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::Env;
use support::service::{Service, token, two_releases_of_app};

/// A JSON request with a token; the status, the response's head and its body.
fn exchange(server: &Service, method: &str, path: &str, token: &str, body: &str) -> (u16, String, String) {
    server.exchange(method, path, Some(token), &[("Content-Type", "application/json")], body)
}

/// Polls `path` (a run's URL) until the run has ended.
fn ended(server: &Service, path: &str, read: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = server.json(path, read);
        if ["succeeded", "failed", "cancelled"].contains(&run["status"].as_str().unwrap_or("")) {
            return run;
        }
        assert!(Instant::now() < deadline, "{path} did not end: {run}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_run_started_through_the_api_answers_with_its_location_and_records_its_token() {
    let env = Env::new();
    let deploy = token(&env, "ci-bot", "deploy");
    let read = token(&env, "viewer", "read");
    env.write(
        "pipelines/ship.yaml",
        "version: 1\nname: ship\ninputs: {version: {type: string, required: true}}\nnodes:\n  build: {phase: BUILDING, uses: shell, with: {run: 'echo \"$V\"', env: {V: '{{ inputs.version }}'}}}\n",
    );
    let server = Service::start(&env);
    let (status, head, body) =
        exchange(&server, "POST", "/api/v1/runs", &deploy, r#"{"pipeline": "ship", "inputs": {"version": "1.10"}}"#);
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .unwrap_or_else(|| panic!("no Location in {head}"));
    assert_eq!(location, format!("/api/v1/runs/{id}"));
    let run = ended(&server, location, &read);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["actor"], "token:ci-bot", "the run records the token that started it");
    assert_eq!(run["short_id"], id[..8]);
    assert_eq!(run["inputs"]["version"], "1.10");

    // Cancelling what has ended is a conflict, and changes nothing.
    let (status, _, body) = exchange(&server, "POST", &format!("/api/v1/runs/{id}/cancel"), &deploy, "");
    assert_eq!(status, 409, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "finished", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("already ended (succeeded)"), "{error}");
    assert_eq!(server.json(&format!("/api/v1/runs/{id}"), &read)["status"], "succeeded");

    // The list carries the same fields, in snake_case (with the contract's older
    // `supersededBy` kept beside `superseded_by`).
    let listed = server.json("/api/v1/runs", &read)["runs"][0].clone();
    assert_eq!((listed["actor"].as_str(), listed["short_id"].as_str()), (Some("token:ci-bot"), Some(&id[..8])));
    let keys: Vec<&String> = listed.as_object().unwrap().keys().collect();
    let camel: Vec<&&String> =
        keys.iter().filter(|k| k.chars().any(|c| c.is_ascii_uppercase()) && **k != "supersededBy").collect();
    assert!(camel.is_empty(), "keys not in snake_case: {camel:?}");
    assert!(keys.iter().any(|k| *k == "superseded_by"), "{keys:?}");
}

#[test]
fn the_deployment_types_listed_are_those_one_deploys_not_their_building_blocks() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write(
        "pipelines/site.yaml",
        "version: 1\nname: site\nnodes:\n  a: {phase: BUILDING, uses: shell, with: {run: 'true'}}\n",
    );
    env.write(
        "pipelines/site/part.yaml",
        "version: 1\nname: site/part\nnodes:\n  a: {phase: BUILDING, uses: shell, with: {run: 'true'}}\n",
    );
    let server = Service::start(&env);
    let names = |path: &str| -> Vec<String> {
        server.json(path, &read)["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let types = names("/api/v1/pipelines");
    for wanted in ["static", "docker", "nodejs", "site"] {
        assert!(types.iter().any(|n| n == wanted), "{wanted} missing from {types:?}");
    }
    for block in ["sources/git", "docker/host", "static/rollback", "site/part"] {
        assert!(!types.iter().any(|n| n == block), "{block} is a building block: {types:?}");
    }
    let all = names("/api/v1/pipelines?all=true");
    assert!(all.iter().any(|n| n == "sources/git") && all.iter().any(|n| n == "site/part"), "{all:?}");
    assert_eq!(server.call("GET", "/api/v1/pipelines?al=1", Some(&read), &[]).0, 400, "an unknown parameter");
}

#[test]
fn status_says_who_started_a_run_and_what_it_deployed_and_a_rollback_names_its_release() {
    let env = Env::new();
    two_releases_of_app(&env);
    let user = std::env::var("USER").unwrap_or_else(|_| "tester".into());
    let a2 = env.status("a2");
    let actor = a2["actor"].as_str().unwrap();
    assert!(actor.starts_with("cli:") && actor.contains('@'), "{a2}");
    let text = env.command(&["status", "a2"]).env("USER", &user).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains(&format!("by        {}", &actor[4..])), "{text}");
    assert!(text.contains("deployed  version=v2"), "{text}");

    let out = env.command(&["rollback", "app", "--id", "back-1"]).env("USER", "ops-oncall").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let back = env.status("back-1");
    let actor = back["actor"].as_str().unwrap();
    assert!(actor.starts_with("rollback:a1 by cli:ops-oncall@"), "{actor}");
    let text = String::from_utf8_lossy(&env.run(&["status", "back-1"]).stdout).into_owned();
    assert!(text.contains("by        rollback of a1, by ops-oncall@"), "{text}");
}

#[test]
fn a_failed_run_says_which_node_failed_and_how_far_it_got() {
    let env = Env::new();
    env.write(
        "pipelines/half.yaml",
        "version: 1\nname: half\nnodes:\n  build: {phase: BUILDING, weight: 3, uses: shell, with: {run: 'true'}}\n  ship: {phase: COPYING_FILES, needs: [build], uses: shell, with: {run: 'exit 4'}}\n",
    );
    assert_eq!(env.run(&["run", "half", "--id", "h1"]).status.code(), Some(1));
    let run = env.status("h1");
    assert_eq!(run["status"], "failed");
    assert_eq!(run["failed_node"], "ship", "{run}");
    assert_eq!(run["best_progress"], 75, "build (weight 3 of 4) finished: {run}");
}

#[test]
fn a_rollback_whose_output_is_closed_still_finishes_its_switch() {
    let env = Env::new();
    two_releases_of_app(&env);
    let (reader, writer) = std::io::pipe().unwrap();
    // Nobody reads what it says (a terminal that went away): it must not die mid-switch.
    drop(reader);
    let (_, err_writer) = std::io::pipe().unwrap();
    let status =
        env.command(&["rollback", "app", "--id", "quiet-back"]).stdout(writer).stderr(err_writer).status().unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
    assert_eq!(env.status("quiet-back")["status"], "succeeded");
    assert_eq!(std::fs::read_to_string(env.path("live")).unwrap().trim(), "v1");
}

#[test]
fn a_node_past_its_usual_time_is_shown_late_not_as_no_time_left() {
    let env = Env::new();
    env.write(
        "pipelines/slow.yaml",
        "version: 1\nname: slow\nnodes:\n  work: {phase: BUILDING, uses: shell, with: {run: 'while [ -f hold ]; do sleep 0.05; done'}}\n",
    );
    // Its history: `work` takes almost no time.
    for i in 0..3 {
        assert_eq!(env.run(&["run", "slow", "--id", &format!("quick-{i}")]).status.code(), Some(0));
    }
    std::fs::write(env.path("hold"), "").unwrap();
    let mut late = env.spawn(&["run", "slow", "--id", "late"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let out = env.run(&["status", "late"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("usually") {
            break text;
        }
        assert!(Instant::now() < deadline, "never shown late: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    std::fs::remove_file(env.path("hold")).unwrap();
    assert_eq!(support::wait_timeout(&mut late, Duration::from_secs(30)).code(), Some(0));
    let eta = text.lines().find(|l| l.starts_with("eta")).unwrap_or_default();
    assert!(eta.contains("`work` running") && eta.contains("usually"), "{text}");
    assert!(!eta.contains("0s left"), "{text}");
}
