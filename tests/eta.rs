//! The ETA from a seeded history: each node's median over its last runs of the same
//! target, else of the pipeline, else its weight at the pace of the others; the
//! critical path of what is left, in events, `status` and the API.

mod support;

use serde_json::Value;
use support::Env;

const PIPELINE: &str = "version: 1\nname: eta\ninputs: {service: {type: string}}\nconcurrency: {key: \"{{ inputs.service }}\", policy: queue}\nnodes:\n  a: {phase: BUILDING, uses: noop}\n  b: {phase: COPYING_FILES, needs: [a], uses: noop}\n  c: {phase: BUILDING, uses: noop}\n";

/// Runs the pipeline once for `service` and rewrites its nodes' times to these
/// durations (seconds): the history a real deploy of that length would leave.
fn seed(env: &Env, service: &str, n: usize, durations: [(&str, f64); 3]) {
    let id = format!("{service}-{n}");
    let out = env.run(&["run", "eta.yaml", "--id", &id, "-i", &format!("service={service}")]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for (node, seconds) in durations {
        let sqlite = format!(
            "UPDATE node_checkpoints SET started_at = '2026-01-01T00:00:00.000Z', \
             finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', '2026-01-01T00:00:00.000Z', '{seconds} seconds') \
             WHERE deployment_id = '{id}' AND node = '{node}'"
        );
        let postgres = format!(
            "UPDATE node_checkpoints SET started_at = '2026-01-01T00:00:00.000Z', \
             finished_at = to_char(('2026-01-01T00:00:00Z'::timestamptz + interval '{seconds} seconds') AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') WHERE deployment_id = '{id}' AND node = '{node}'"
        );
        assert_eq!(env.execute(&sqlite, &postgres), 1);
    }
}

fn first_eta(env: &Env, service: &str, file: &str) -> Vec<(String, Option<f64>)> {
    let out = env.run(&["run", file, "--format", "jsonl", "-i", &format!("service={service}")]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    support::events(&out.stdout)
        .iter()
        .map(|e| (e["event"].as_str().unwrap().to_string(), e["eta_seconds"].as_f64()))
        .collect()
}

#[test]
fn the_eta_is_the_critical_path_of_the_medians_of_the_same_target_then_the_pipeline_then_the_weights() {
    let env = Env::new();
    env.write("eta.yaml", PIPELINE);
    // No history: no estimate.
    let events = first_eta(&env, "web", "eta.yaml");
    assert!(events.iter().all(|(_, eta)| eta.is_none()), "{events:?}");

    // web: a takes 10, 20 or 30 s (median 20), b 5 s, c 40 s; api: c 100 s.
    for (n, a) in [10.0, 30.0, 20.0].into_iter().enumerate() {
        seed(&env, "web", n, [("a", a), ("b", 5.0), ("c", 40.0)]);
    }
    seed(&env, "api", 0, [("a", 1.0), ("b", 1.0), ("c", 100.0)]);
    let events = first_eta(&env, "web", "eta.yaml");
    assert_eq!(events[0], ("run_started".into(), Some(40.0)), "max(a + b = 25, c = 40): {events:?}");
    assert_eq!(events.last().unwrap(), &("run_succeeded".to_string(), Some(0.0)));
    let etas: Vec<f64> = events.iter().filter_map(|e| e.1).collect();
    assert!(etas.windows(2).all(|w| w[0] >= w[1]), "it only goes down: {events:?}");

    // api has its own history: c takes 100 s there.
    assert_eq!(first_eta(&env, "api", "eta.yaml")[0].1, Some(100.0));
    // A target without a history of its own: the pipeline's medians (the runs just made
    // count too, they took about nothing: a median over all of them).
    let other = first_eta(&env, "new", "eta.yaml")[0].1.unwrap();
    assert!(other > 0.0 && other <= 100.0, "{other}");

    // A node without any history (added since): its weight at the pace of the others.
    // Target `w`: a, b and c took 10 s each (weight 1 each: 10 s a unit); d (weight 2)
    // has none: 20 s, and a -> b -> d is the longest path: 40 s.
    seed(&env, "w", 0, [("a", 10.0), ("b", 10.0), ("c", 10.0)]);
    let with_d = PIPELINE.replace(
        "  c: {phase: BUILDING, uses: noop}\n",
        "  c: {phase: BUILDING, uses: noop}\n  d: {phase: HEALTH_CHECK, needs: [b], uses: noop, weight: 2}\n",
    );
    env.write("eta2.yaml", &with_d);
    assert_eq!(first_eta(&env, "w", "eta2.yaml")[0].1, Some(40.0));
}

#[test]
fn status_and_the_api_count_a_running_run_down() {
    let env = Env::new();
    env.write(
        "eta.yaml",
        &PIPELINE.replace(
            "  c: {phase: BUILDING, uses: noop}\n",
            "  c: {phase: BUILDING, uses: shell, with: {run: 'while [ ! -f go ]; do sleep 0.02; done'}}\n",
        ),
    );
    env.write("go", "");
    seed(&env, "web", 0, [("a", 1.0), ("b", 1.0), ("c", 30.0)]);
    std::fs::remove_file(env.path("go")).unwrap();
    let mut run = env.spawn(&["run", "eta.yaml", "--id", "live", "-i", "service=web"]);
    let begin = std::time::Instant::now();
    let status: Value = loop {
        let out = env.run(&["status", "live", "--format", "json"]);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if status["nodes"].as_array().is_some_and(|n| n.iter().any(|n| n["node"] == "c" && n["status"] == "running")) {
            break status;
        }
        assert!(begin.elapsed() < std::time::Duration::from_secs(20));
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let eta = status["eta_seconds"].as_f64().expect("an ETA while running");
    assert!(eta > 25.0 && eta <= 30.0, "about 30 s minus what c ran: {eta}");
    let text = String::from_utf8(env.run(&["status", "live"]).stdout).unwrap();
    assert!(text.contains("eta ") && text.contains("s left"), "{text}");
    env.write("go", "");
    assert_eq!(support::wait_timeout(&mut run, std::time::Duration::from_secs(20)).code(), Some(0));
    assert!(env.status("live")["eta_seconds"].is_null(), "no ETA once it ended");
}

#[test]
fn stats_say_per_phase_and_node_how_long_how_often_and_what_fails_most() {
    let env = Env::new();
    env.write(
        "flaky.yaml",
        "version: 1\nname: flaky\nnodes:\n  build: {phase: BUILDING, uses: shell, with: {run: 'true'}}\n  check: {phase: HEALTH_CHECK, needs: [build], uses: shell, with: {run: 'if [ -f code ]; then exit $(cat code); fi'}}\n",
    );
    for code in ["", "3", "", "3", "4", ""] {
        if code.is_empty() {
            let _ = std::fs::remove_file(env.path("code"));
        } else {
            env.write("code", code);
        }
        let expected = if code.is_empty() { 0 } else { 1 };
        assert_eq!(env.run(&["run", "flaky.yaml"]).status.code(), Some(expected));
    }
    let out = env.run(&["stats", "flaky", "--since", "1d", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (stats["runs"]["runs"].as_u64(), stats["runs"]["success_rate"].as_f64()),
        (Some(6), Some(0.5)),
        "{stats:#}\n{}",
        String::from_utf8_lossy(&env.run(&["status"]).stdout)
    );
    let node = |id: &str| stats["nodes"].as_array().unwrap().iter().find(|n| n["node"] == id).unwrap().clone();
    assert_eq!((node("build")["runs"].as_u64(), node("build")["success_rate"].as_f64()), (Some(6), Some(1.0)));
    assert_eq!((node("check")["runs"].as_u64(), node("check")["success_rate"].as_f64()), (Some(6), Some(0.5)));
    assert!(node("check")["p95_seconds"].as_f64().unwrap() >= node("check")["p50_seconds"].as_f64().unwrap());
    let phases: Vec<&str> = stats["phases"].as_array().unwrap().iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["BUILDING", "HEALTH_CHECK"]);
    assert_eq!(stats["phases"][1]["success_rate"].as_f64(), Some(0.5));
    assert_eq!(stats["phases"][0]["success_rate"].as_f64(), Some(1.0));
    let failing = &stats["failing"][0];
    assert_eq!(
        (failing["node"].as_str(), failing["failures"].as_u64(), failing["times"].as_u64()),
        (Some("check"), Some(3), Some(2))
    );
    assert!(failing["most_frequent_error"].as_str().unwrap().contains("status 3"), "{failing}");
    let text = String::from_utf8(env.run(&["stats", "flaky"]).stdout).unwrap();
    assert!(text.contains("failing most") && text.contains("check") && text.contains("50.0%"), "{text}");
    // A pipeline that never ran is named as such (a typo, most likely): usage error.
    let other = env.run(&["stats", "nothing"]);
    assert_eq!(other.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(stderr.contains("no run of pipeline `nothing`"), "{stderr}");
}
