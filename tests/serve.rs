//! `phased serve` as a process on a free port, spoken to over real HTTP (a plain TCP
//! client written here, so that every byte on the wire is what a client gets): tokens
//! and roles, the runs, and event streams that replay exactly from `Last-Event-ID`.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::service::{Service as Server, head, token};
use support::{Env, free_port, signal, wait_timeout};

/// An open event stream, read as it comes.
struct Stream {
    reader: BufReader<TcpStream>,
}

impl Stream {
    fn open(server: &Server, path: &str, token: &str, last: Option<i64>) -> Stream {
        let stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let last = last.map(|l| l.to_string());
        let extra: Vec<(&str, &str)> = last.iter().map(|l| ("Last-Event-ID", l.as_str())).collect();
        let mut writer = stream.try_clone().unwrap();
        writer.write_all(head("GET", path, Some(token), &extra).as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains(" 200 "), "{line}");
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        Stream { reader }
    }

    /// The next event: (id, event name, data); `None` when the stream ended.
    fn next(&mut self) -> Option<(i64, String, serde_json::Value)> {
        let (mut id, mut name, mut data) = (None, String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let text = line.trim_end();
            // Chunked encoding: the chunk sizes are lines of hex digits between events.
            if text.is_empty() {
                if let Some(id) = id {
                    return Some((id, name, serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            if let Some(v) = text.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = text.strip_prefix("event: ") {
                name = v.to_string();
            } else if let Some(v) = text.strip_prefix("data: ") {
                data.push_str(v);
            } else if text == "0" {
                return None;
            }
        }
    }
}

#[test]
fn every_api_call_needs_a_token_of_a_high_enough_role() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    let deploy = token(&env, "ci", "deploy");
    let server = Server::start(&env);
    assert_eq!(server.call("GET", "/healthz", None, &[]), (200, "ok\n".to_string()), "liveness needs no token");
    for (path, method) in [("/api/v1/runs", "GET"), ("/api/v1/pipelines", "GET"), ("/api/v1/runs/x/cancel", "POST")] {
        let (status, body) = server.call(method, path, None, &[]);
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["code"], "unauthorized");
        assert_eq!(server.call(method, path, Some("phd_not-a-token"), &[]).0, 401, "a wrong token");
    }
    assert_eq!(server.call("GET", "/api/v1/runs", Some(&read), &[]).0, 200);
    let (status, body) = server.call("POST", "/api/v1/runs/nope/cancel", Some(&read), &[]);
    assert_eq!(status, 403, "reading is not deploying: {body}");
    assert!(body.contains("needs a `deploy` token"), "{body}");
    assert_eq!(server.call("POST", "/api/v1/runs/nope/cancel", Some(&deploy), &[]).0, 404, "past the token, the run");
    assert_eq!(env.run(&["token", "revoke", "viewer"]).status.code(), Some(0));
    assert_eq!(server.call("GET", "/api/v1/runs", Some(&read), &[]).0, 401, "a revoked token");
    // Only hashes are stored.
    let stored: Vec<String> = env.sql("SELECT hash FROM tokens").into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert!(stored.iter().all(|h| h.len() == 64 && !deploy.contains(h.as_str()) && h != &deploy));
    let list = String::from_utf8_lossy(&env.run(&["token", "list"]).stdout).into_owned();
    assert!(list.contains("ci") && list.contains("deploy") && !list.contains(&deploy), "{list}");
}

#[test]
fn serve_refuses_to_listen_beyond_loopback_while_no_token_exists() {
    let env = Env::new();
    let out = env.run(&["serve", "--listen", &format!("0.0.0.0:{}", free_port())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token exists"), "{out:?}");
}

#[test]
fn runs_read_through_the_api_are_what_status_prints() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    std::fs::copy("examples/hello.yaml", env.path("hello.yaml")).unwrap();
    let out = env.run(&["run", "hello.yaml", "--id", "api-1", "-i", &format!("out_dir={}", env.path("out").display())]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let server = Server::start(&env);
    let detail = server.json("/api/v1/runs/api-1", &read);
    let mut status = env.status("api-1");
    let mut detail = detail;
    // The same JSON, but for the moment each was read.
    for v in [&mut status, &mut detail] {
        v.as_object_mut().unwrap().remove("heartbeat_at");
    }
    assert_eq!(detail, status);
    let list = server.json("/api/v1/runs?pipeline=hello&limit=5", &read);
    assert_eq!(list["runs"][0]["id"], "api-1");
    assert_eq!(server.json("/api/v1/runs?pipeline=other", &read)["runs"], serde_json::json!([]));
    assert_eq!(server.call("GET", "/api/v1/runs/nope", Some(&read), &[]).0, 404);
    let pipelines = server.json("/api/v1/pipelines", &read);
    let names: Vec<&str> =
        pipelines["pipelines"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"static") && names.contains(&"docker"), "{names:?}");
    let static_type = pipelines["pipelines"].as_array().unwrap().iter().find(|p| p["name"] == "static").unwrap();
    assert_eq!(static_type["inputs"]["properties"]["project"]["type"], "string");
    assert!(static_type["inputs"]["required"].as_array().unwrap().contains(&serde_json::json!("project")));
}

#[test]
fn an_event_stream_replays_exactly_what_a_reconnecting_client_missed() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write(
        "slow.yaml",
        "version: 1\nname: slow\nnodes:\n  a: {phase: BUILDING, uses: shell, with: {run: 'while [ ! -f go-a ]; do sleep 0.02; done'}}\n  b: {phase: COPYING_FILES, needs: [a], uses: shell, with: {run: 'while [ ! -f go-b ]; do sleep 0.02; done'}}\n  c: {phase: HEALTH_CHECK, needs: [b], uses: noop}\n",
    );
    let server = Server::start(&env);
    let mut run = env.spawn(&["run", "slow.yaml", "--id", "live-1"]);
    let begin = Instant::now();
    while server.call("GET", "/api/v1/runs/live-1", Some(&read), &[]).0 != 200 {
        assert!(begin.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    // A client reads the first events live, then goes away in the middle of the run.
    let mut first = Stream::open(&server, "/api/v1/runs/live-1/events", &read, None);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(first.next().expect("live events"));
    }
    assert_eq!(seen[0].1, "run_started");
    assert_eq!(seen[1].1, "node_started");
    drop(first);
    env.write("go-a", "");
    env.write("go-b", "");
    assert_eq!(wait_timeout(&mut run, Duration::from_secs(30)).code(), Some(0));
    // It comes back with the id of the last event it saw.
    let mut again = Stream::open(&server, "/api/v1/runs/live-1/events", &read, Some(seen[1].0));
    while let Some(event) = again.next() {
        seen.push(event);
    }
    let ids: Vec<i64> = seen.iter().map(|e| e.0).collect();
    let stored = env.event_seqs(Some("live-1"));
    assert_eq!(ids, stored, "every event once, in order: none lost, none repeated");
    assert_eq!(seen.last().unwrap().1, "run_succeeded", "the stream ends after the run's last event");
    for (id, name, data) in &seen {
        assert_eq!(data["seq"], *id, "data carries the same seq");
        assert_eq!(&data["event"], name);
        assert_eq!(data["deployment"], "live-1");
    }
    // The stream of every run starts where it is told, too.
    let mut all = Stream::open(&server, "/api/v1/events", &read, Some(ids[ids.len() - 2]));
    let (next, name, _) = all.next().unwrap();
    assert_eq!((next, name.as_str()), (ids[ids.len() - 1], "run_succeeded"));
}

#[test]
fn a_stream_that_falls_behind_the_live_events_reads_them_from_the_database_and_misses_none() {
    // The hub's own branch, on SQLite, whose hub reads a commit's events at once: on a
    // loaded machine PostgreSQL's NOTIFY hands them over a few at a time, and the
    // stream keeps up (the replay itself is checked on both stores by the other tests).
    let env = Env::on_sqlite();
    let read = token(&env, "viewer", "read");
    // The first node waits for a gate; the 60 after it come in a burst.
    let mut pipeline = String::from(
        "version: 1\nname: wide\nnodes:\n  gate: {phase: BUILDING, uses: shell, with: {run: 'while [ ! -f go ]; do sleep 0.01; done'}}\n",
    );
    for i in 0..60 {
        pipeline.push_str(&format!("  n{i}: {{phase: BUILDING, needs: [gate], uses: noop}}\n"));
    }
    env.write("wide.yaml", &pipeline);
    // The hub holds two events for the streams behind it (4096 by default): a stream
    // falls behind as soon as more than two events come between two of its reads.
    let mut server = Server::start_full(&env, &[], &[("PHASED_HUB_CAPACITY", "2"), ("PHASED_LOG", "info")]);
    let mut stream = Stream::open(&server, "/api/v1/events", &read, None);
    // All 60 at once: their events are committed together, and reach the hub together.
    let mut run = env.spawn(&["run", "wide.yaml", "--id", "wide-1", "--parallel", "64"]);
    let mut seen = vec![stream.next().expect("the first event")];
    // Live by now (the gate's start comes through the hub), then a slow client: the
    // burst goes on meanwhile.
    while seen.last().unwrap().1 != "node_started" {
        seen.push(stream.next().expect("the gate's start"));
    }
    env.write("go", "");
    std::thread::sleep(Duration::from_millis(500));
    while seen.last().unwrap().1 != "run_succeeded" {
        seen.push(stream.next().expect("events until the run's end"));
    }
    assert_eq!(wait_timeout(&mut run, Duration::from_secs(30)).code(), Some(0));
    let ids: Vec<i64> = seen.iter().map(|e| e.0).collect();
    let stored = env.event_seqs(None);
    assert!(stored.len() > 120, "{} events", stored.len());
    assert_eq!(ids, stored, "every event once, in order");
    signal(&server.child, libc::SIGTERM);
    assert_eq!(wait_timeout(&mut server.child, Duration::from_secs(20)).code(), Some(0));
    let mut log = String::new();
    server.child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("fell behind"), "the stream did fall behind the hub: {log}");
}

#[test]
fn a_request_not_complete_in_time_gets_408_and_the_server_goes_on() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    let server = Server::start_with(&env, &["--request-timeout", "1s"]);
    // A body announced as 100 bytes, of which 10 come.
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let request = head("POST", "/api/v1/runs", Some(&deploy), &[("Content-Type", "application/json")])
        .replace("Content-Length: 0", "Content-Length: 100");
    slow.write_all(request.as_bytes()).unwrap();
    slow.write_all(b"{\"pipeline\"").unwrap();
    let begin = Instant::now();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request-timeout") && answer.contains("--request-timeout"), "{answer}");
    assert!(begin.elapsed() < Duration::from_secs(15));
    assert_eq!(server.json("/api/v1/runs", &deploy)["runs"], serde_json::json!([]), "nothing was started");
    // An event stream is answered at once and lives beyond the limit.
    let mut events = Stream::open(&server, "/api/v1/events", &deploy, None);
    std::thread::sleep(Duration::from_millis(1500));
    env.write("tick.yaml", "version: 1\nname: tick\nnodes:\n  a: {phase: BUILDING, uses: noop}\n");
    assert_eq!(env.run(&["run", "tick.yaml"]).status.code(), Some(0));
    assert_eq!(events.next().map(|e| e.1).as_deref(), Some("run_started"), "the stream outlived the limit");
}

#[test]
fn sigterm_ends_the_server_and_its_open_streams() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    let mut server = Server::start(&env);
    let mut open = Stream::open(&server, "/api/v1/events", &read, None);
    signal(&server.child, libc::SIGTERM);
    let status = wait_timeout(&mut server.child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert!(open.next().is_none(), "the stream ended with the server");
}

const SVC: &str = r#"
version: 1
name: svc
inputs:
  service: {type: string, pattern: '^[a-z]+$'}
  label: {type: string}
concurrency: {key: "{{ inputs.service }}", policy: queue}
nodes:
  work: {phase: BUILDING, uses: shell, with: {run: 'echo "start $L" >> marks; sleep 0.2; echo "end $L" >> marks', env: {L: '{{ inputs.label }}'}}}
"#;

fn post_run(server: &Server, token: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (status, text) =
        server.send("POST", "/api/v1/runs", Some(token), &[("Content-Type", "application/json")], &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// Follows a run's stream to its end; the names of its events.
fn follow(server: &Server, token: &str, id: &str) -> Vec<String> {
    let mut stream = Stream::open(server, &format!("/api/v1/runs/{id}/events"), token, None);
    let mut names = Vec::new();
    while let Some((_, name, _)) = stream.next() {
        names.push(name);
    }
    names
}

#[test]
fn runs_started_through_the_api_run_on_the_workers_and_queue_per_target() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    let read = token(&env, "viewer", "read");
    env.write("pipelines/svc.yaml", SVC);
    env.write(
        "pipelines/picky.yaml",
        &SVC.replace("policy: queue", "policy: reject").replace("name: svc", "name: picky"),
    );
    let server = Server::start_with(&env, &["--workers", "3"]);

    let (status, body) = post_run(&server, &read, serde_json::json!({"pipeline": "svc"}));
    assert_eq!(status, 403, "starting a run needs `deploy`: {body}");
    let (status, body) = post_run(&server, &deploy, serde_json::json!({"pipeline": "svc", "inputz": {}}));
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("line 1 column"), "with its position: {body}");
    let (status, body) = post_run(&server, &deploy, serde_json::json!({"pipeline": "sv", "inputs": {}}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown-pipeline")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("svc"), "did you mean: {body}");
    let (status, body) =
        post_run(&server, &deploy, serde_json::json!({"pipeline": "svc", "inputs": {"service": "Web", "label": "x"}}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid-inputs")), "{body}");
    assert_eq!(body["error"]["diagnostics"][0]["input"], "service");

    // Three runs of one target (with three workers free) run one after the other, in
    // the order they came; another target's run goes beside them.
    let mut ids = Vec::new();
    for label in ["a", "b", "c"] {
        let (status, body) = post_run(
            &server,
            &deploy,
            serde_json::json!({"pipeline": "svc", "inputs": {"service": "web", "label": label}, "id": format!("api-{label}")}),
        );
        assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (status, _) = post_run(
        &server,
        &deploy,
        serde_json::json!({"pipeline": "svc", "inputs": {"service": "api", "label": "d"}, "id": "api-d"}),
    );
    assert_eq!(status, 202);
    let (status, body) = post_run(
        &server,
        &deploy,
        serde_json::json!({"pipeline": "svc", "inputs": {"service": "web", "label": "x"}, "id": "api-a"}),
    );
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("id-taken")), "{body}");
    for id in ids.iter().chain([&"api-d".to_string()]) {
        let events = follow(&server, &read, id);
        assert_eq!(events[..2], ["run_queued", "run_started"], "{id}: {events:?}");
        assert_eq!(events.last().map(String::as_str), Some("run_succeeded"), "{id}: {events:?}");
    }
    let marks = env.marks("marks");
    let at = |m: &str| marks.iter().position(|x| x == m).unwrap_or_else(|| panic!("{m}: {marks:?}"));
    assert!(
        at("end a") < at("start b") && at("end b") < at("start c"),
        "one target, one at a time, in order: {marks:?}"
    );
    assert!(at("start d") < at("end c"), "another target does not wait: {marks:?}");
    assert_eq!(server.json("/api/v1/runs/api-b", &read)["target"], "web");

    // `reject`: refused while its target is busy.
    let (status, _) = post_run(
        &server,
        &deploy,
        serde_json::json!({"pipeline": "picky", "inputs": {"service": "shop", "label": "p1"}, "id": "p1"}),
    );
    assert_eq!(status, 202);
    let (status, body) = post_run(
        &server,
        &deploy,
        serde_json::json!({"pipeline": "picky", "inputs": {"service": "shop", "label": "p2"}}),
    );
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("rejected")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("p1"), "it names the run: {body}");
    assert_eq!(follow(&server, &read, "p1").last().map(String::as_str), Some("run_succeeded"));
}

#[test]
fn two_servers_on_one_database_run_each_queued_run_once() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write(
        "pipelines/once.yaml",
        "version: 1\nname: once\ninputs: {label: {type: string}}\nnodes:\n  mark: {phase: BUILDING, uses: shell, with: {run: 'echo \"$L\" >> marks; sleep 0.05', env: {L: '{{ inputs.label }}'}}}\n",
    );
    let (one, two) = (Server::start_with(&env, &["--workers", "2"]), Server::start_with(&env, &["--workers", "2"]));
    let mut ids = Vec::new();
    for i in 0..12 {
        let server = if i % 2 == 0 { &one } else { &two };
        let (status, body) =
            post_run(server, &deploy, serde_json::json!({"pipeline": "once", "inputs": {"label": format!("r{i}")}}));
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        assert_eq!(follow(&one, &deploy, id).last().map(String::as_str), Some("run_succeeded"), "{id}");
    }
    let mut marks = env.marks("marks");
    marks.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    expected.sort();
    assert_eq!(marks, expected, "each run executed exactly once");
}

#[test]
fn a_server_killed_mid_run_resumes_it_at_its_next_start_and_reruns_nothing_finished() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write(
        "pipelines/long.yaml",
        "version: 1\nname: long\nnodes:\n  first: {phase: BUILDING, uses: shell, with: {run: 'echo first >> marks'}}\n  wait: {phase: COPYING_FILES, needs: [first], uses: shell, with: {run: 'echo wait >> marks; while [ ! -f go ]; do sleep 0.02; done; echo waited >> marks'}}\n  last: {phase: HEALTH_CHECK, needs: [wait], uses: shell, with: {run: 'echo last >> marks'}}\n",
    );
    let mut server = Server::start(&env);
    let (status, _) = post_run(&server, &deploy, serde_json::json!({"pipeline": "long", "id": "k9"}));
    assert_eq!(status, 202);
    let begin = Instant::now();
    while !env.marks("marks").contains(&"wait".to_string()) {
        assert!(begin.elapsed() < Duration::from_secs(20), "the run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    support::kill9(&mut server.child);
    env.write("go", "");
    let server = Server::start(&env);
    let events = follow(&server, &deploy, "k9");
    assert_eq!(events.last().map(String::as_str), Some("run_succeeded"), "{events:?}");
    assert!(events.contains(&"run_resumed".to_string()), "{events:?}");
    assert_eq!(env.marks("marks"), ["first", "wait", "wait", "waited", "last"], "first did not run again");
    assert_eq!(server.json("/api/v1/runs/k9", &deploy)["attempt"], 2);

    // The node's log, whole, and the service's metrics.
    let (status, log) = server.call("GET", "/api/v1/runs/k9/nodes/wait/log", Some(&deploy), &[]);
    assert_eq!(status, 200);
    assert_eq!(log.lines().filter(|l| !l.starts_with("==")).count(), 0, "the step printed nothing: {log:?}");
    assert_eq!(server.call("GET", "/api/v1/runs/k9/nodes/..%2Fx/log", Some(&deploy), &[]).0, 400);
    let (status, metrics) = server.call("GET", "/metrics", Some(&deploy), &[]);
    assert_eq!(status, 200);
    assert!(metrics.contains("phased_runs{pipeline=\"long\",status=\"succeeded\"} 1"), "{metrics}");
    assert!(
        metrics.contains("phased_queue_depth 0") && metrics.contains("phased_run_duration_seconds_count 1"),
        "{metrics}"
    );
    // `wait` ran twice (killed, then resumed): its checkpoint keeps the finished attempt.
    for node in ["first", "wait", "last"] {
        let count = format!("phased_node_duration_seconds_count{{pipeline=\"long\",node=\"{node}\"}} 1");
        assert!(metrics.contains(&count), "{count} in {metrics}");
    }
}

#[test]
fn a_failed_run_is_resumed_through_the_api_from_the_node_asked() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write(
        "pipelines/flaky.yaml",
        "version: 1\nname: flaky\nnodes:\n  build: {phase: BUILDING, uses: shell, with: {run: 'echo build >> marks; echo compiled'}}\n  check: {phase: HEALTH_CHECK, needs: [build], uses: shell, with: {run: 'echo check >> marks; test -f fixed'}}\n",
    );
    let server = Server::start(&env);
    assert_eq!(post_run(&server, &deploy, serde_json::json!({"pipeline": "flaky", "id": "f1"})).0, 202);
    assert_eq!(follow(&server, &deploy, "f1").last().map(String::as_str), Some("run_failed"));
    let (status, log) = server.call("GET", "/api/v1/runs/f1/nodes/build/log?follow=true", Some(&deploy), &[]);
    assert_eq!(status, 200);
    assert!(log.contains("compiled"), "{log}");
    env.write("fixed", "");
    let (status, body) = server.send("POST", "/api/v1/runs/f1/resume", Some(&deploy), &[], r#"{"from": "bild"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("build"), "did you mean: {body}");
    assert_eq!(server.send("POST", "/api/v1/runs/f1/resume", Some(&deploy), &[], "").0, 202);
    assert_eq!(follow(&server, &deploy, "f1").last().map(String::as_str), Some("run_succeeded"));
    assert_eq!(env.marks("marks"), ["build", "check", "check"], "build had succeeded: it did not run again");
    let (status, body) = server.send("POST", "/api/v1/runs/f1/resume", Some(&deploy), &[], "");
    assert_eq!(status, 409, "{body}");
    assert_eq!(server.send("POST", "/api/v1/runs/none/resume", Some(&deploy), &[], "").0, 404);
}

/// HMAC-SHA256 in hex, as GitHub signs a delivery (computed here with `openssl`, a
/// second implementation, not phased's own).
fn github_signature(secret: &str, body: &str) -> String {
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    format!("sha256={}", String::from_utf8_lossy(&out.stdout).split(' ').next().unwrap())
}

#[test]
fn a_signed_git_push_deploys_its_commit_and_nothing_else_gets_through() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    // A real repository with two commits, served by a real `git daemon`.
    let work = env.path("work-repo");
    std::fs::create_dir_all(&work).unwrap();
    support::git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("index.html"), "v1").unwrap();
    support::git(&work, &["add", "."]);
    support::git(&work, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"]);
    let pushed = support::git(&work, &["rev-parse", "HEAD"]).trim().to_string();
    std::fs::write(work.join("index.html"), "v2").unwrap();
    support::git(&work, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "two"]);
    let repos = env.path("repos");
    std::fs::create_dir_all(&repos).unwrap();
    support::git(&repos, &["clone", "-q", "--bare", work.to_str().unwrap(), "web.git"]);
    let (_daemon, git_port) = support::git_daemon(&repos);
    env.write(
        "pipelines/from-git.yaml",
        "version: 1\nname: from-git\ninputs: {url: {type: string}, commit: {type: string}}\nnodes:\n  source: {phase: PULLING_SOURCE, pipeline: sources/git, with: {type: git, url: \"{{ inputs.url }}\", branch: \"{{ inputs.commit }}\"}}\n  record: {phase: HEALTH_CHECK, needs: [source], uses: shell, with: {run: 'cat {{ nodes.source.outputs.path }}/index.html > deployed; echo {{ nodes.source.outputs.commit }} >> deployed'}}\n",
    );
    let triggers = env.write(
        "triggers.yaml",
        "triggers:\n  web:\n    provider: github\n    secret: hook_web\n    repository: acme/web\n    branch: main\n    pipeline: from-git\n    inputs: {url: \"{{ push.clone_url }}\", commit: \"{{ push.commit }}\"}\n",
    );
    assert_eq!(
        env.run(&["validate", triggers.to_str().unwrap()]).status.code(),
        Some(0),
        "validate checks triggers files"
    );
    let broken = env.write("broken-triggers.yaml", "triggers:\n  web:\n    provider: github\n    secret: s\n    repository: a/b\n    branch: main\n    pipeline: from-gi\n    inputs: {x: \"{{ secrets.s }}\"}\n");
    let out = env.run(&["validate", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("from-git") && said.contains("secrets.s"), "{said}");

    let server =
        Server::start_full(&env, &["--triggers", triggers.to_str().unwrap()], &[("PHASED_SECRET_HOOK_WEB", "s3cret")]);
    let payload = |branch: &str| {
        serde_json::json!({"ref": format!("refs/heads/{branch}"), "after": pushed, "repository": {"full_name": "acme/web", "clone_url": format!("git://127.0.0.1:{git_port}/web.git")}}).to_string()
    };
    let body = payload("main");
    let good = github_signature("s3cret", &body);
    let deliver = |body: &str, signature: Option<&str>, delivery: &str| {
        let mut headers = vec![("X-GitHub-Delivery", delivery), ("Content-Type", "application/json")];
        if let Some(signature) = signature {
            headers.push(("X-Hub-Signature-256", signature));
        }
        server.send("POST", "/hooks/web", None, &headers, body)
    };
    assert_eq!(deliver(&body, None, "d0").0, 401, "no signature");
    assert_eq!(deliver(&body, Some(&github_signature("guess", &body)), "d0").0, 401, "a wrong signature");
    assert_eq!(deliver(&format!("{body} "), Some(&good), "d0").0, 401, "a body that is not the one signed");
    assert_eq!(server.json("/api/v1/runs", &read)["runs"], serde_json::json!([]), "nothing was queued");

    let (status, answer) = deliver(&body, Some(&good), "d1");
    assert_eq!(status, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!((answer["queued"].as_bool(), answer["commit"].as_str()), (Some(true), Some(pushed.as_str())));
    let id = answer["id"].as_str().unwrap().to_string();
    assert_eq!(follow(&server, &read, &id).last().map(String::as_str), Some("run_succeeded"));
    let deployed = std::fs::read_to_string(env.path("deployed")).unwrap();
    assert_eq!(deployed, format!("v1{pushed}\n"), "the pushed commit, not the branch's head");

    let (status, again) = deliver(&body, Some(&good), "d1");
    assert_eq!(status, 202, "{again}");
    assert!(again.contains("already received"), "{again}");
    let other = payload("feature");
    let (status, answer) = deliver(&other, Some(&github_signature("s3cret", &other)), "d2");
    assert_eq!(status, 202);
    assert!(answer.contains("\"queued\":false") && answer.contains("feature"), "{answer}");
    assert_eq!(server.json("/api/v1/runs", &read)["runs"].as_array().unwrap().len(), 1, "one delivery, one run");
    assert_eq!(server.call("POST", "/hooks/nope", None, &[]).0, 404);
}

#[test]
fn gitea_gitlab_and_generic_pushes_are_checked_and_deployed_and_a_refused_delivery_can_come_again() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write(
        "pipelines/record.yaml",
        "version: 1\nname: record\ninputs: {who: {type: string}, commit: {type: string}}\nconcurrency: {key: \"{{ inputs.who }}\", policy: reject}\nnodes:\n  mark: {phase: BUILDING, uses: shell, with: {run: 'echo \"$C\" >> \"$W.marks\"; while [ ! -f go ]; do sleep 0.02; done', env: {C: '{{ inputs.commit }}', W: '{{ inputs.who }}'}}}\n",
    );
    let mut file = String::from("triggers:\n");
    for provider in ["gitea", "gitlab", "generic"] {
        file.push_str(&format!("  {provider}:\n    provider: {provider}\n    secret: hook_{provider}\n    repository: acme/web\n    branch: main\n    pipeline: record\n    inputs: {{who: {provider}, commit: \"{{{{ push.commit }}}}\"}}\n"));
    }
    let triggers = env.write("triggers.yaml", &file);
    let secrets = [
        ("PHASED_SECRET_HOOK_GITEA", "k-gitea"),
        ("PHASED_SECRET_HOOK_GITLAB", "k-gitlab"),
        ("PHASED_SECRET_HOOK_GENERIC", "k-generic"),
    ];
    let server = Server::start_full(&env, &["--triggers", triggers.to_str().unwrap()], &secrets);
    let url = "git://127.0.0.1:1/web.git";
    // Commit ids are 40 hexadecimal digits (anything else is refused, 400).
    const C0FFEE: &str = "c0ffee0000000000000000000000000000000000";
    const BEEF: &str = "beef000000000000000000000000000000000000";
    // Each provider's own payload, signature and delivery header.
    let deliver = |provider: &str, commit: &str, delivery: &str, secret: &str| {
        let body = match provider {
            "gitlab" => serde_json::json!({"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": commit, "project": {"path_with_namespace": "acme/web", "git_http_url": url}}),
            "generic" => serde_json::json!({"ref": "main", "commit": commit, "repository": "acme/web", "clone_url": url}),
            _ => serde_json::json!({"ref": "refs/heads/main", "after": commit, "repository": {"full_name": "acme/web", "clone_url": url}}),
        }
        .to_string();
        let mac = github_signature(secret, &body);
        let headers: Vec<(&str, String)> = match provider {
            "gitea" => vec![
                ("X-Gitea-Signature", mac.trim_start_matches("sha256=").to_string()),
                ("X-Gitea-Delivery", delivery.into()),
            ],
            "gitlab" => vec![("X-Gitlab-Token", secret.to_string()), ("X-Gitlab-Event-UUID", delivery.into())],
            _ => vec![("X-Phased-Signature-256", mac), ("X-Phased-Delivery", delivery.into())],
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, answer) = server.send("POST", &format!("/hooks/{provider}"), None, &headers, &body);
        (status, serde_json::from_str::<serde_json::Value>(&answer).unwrap_or_default())
    };
    for (provider, secret) in [("gitea", "k-gitea"), ("gitlab", "k-gitlab"), ("generic", "k-generic")] {
        assert_eq!(deliver(provider, C0FFEE, "x0", "not-the-key").0, 401, "{provider}: a wrong key");
        let (status, answer) = deliver(provider, C0FFEE, &format!("{provider}-1"), secret);
        assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "{provider}: {answer}");
        let first = answer["id"].as_str().unwrap().to_string();
        env.wait_for(&format!("{provider}.marks"), Duration::from_secs(20));
        // The target is busy and the policy rejects: nothing is queued, and the delivery
        // is not taken as seen, so the provider's redelivery runs once the target is free.
        let (status, answer) = deliver(provider, BEEF, &format!("{provider}-2"), secret);
        assert_eq!(status, 409, "{provider}: {answer}");
        env.write("go", "");
        assert_eq!(follow(&server, &read, &first).last().map(String::as_str), Some("run_succeeded"));
        let (status, answer) = deliver(provider, BEEF, &format!("{provider}-2"), secret);
        assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "{provider}, delivered again: {answer}");
        let id = answer["id"].as_str().unwrap().to_string();
        assert_eq!(follow(&server, &read, &id).last().map(String::as_str), Some("run_succeeded"));
        let (status, answer) = deliver(provider, BEEF, &format!("{provider}-2"), secret);
        assert_eq!((status, answer["queued"].as_bool()), (202, Some(false)), "{provider}: run once: {answer}");
        assert_eq!(env.marks(&format!("{provider}.marks")), [C0FFEE, BEEF], "{provider}");
        std::fs::remove_file(env.path("go")).unwrap();
    }
}

#[test]
fn sigterm_lets_running_nodes_finish_within_the_grace_and_leaves_the_rest_resumable() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write(
        "pipelines/steps.yaml",
        "version: 1\nname: steps\nnodes:\n  slow: {phase: BUILDING, uses: shell, with: {run: 'echo slow >> marks; touch started; sleep 0.5; echo slow-done >> marks'}}\n  next: {phase: HEALTH_CHECK, needs: [slow], uses: shell, with: {run: 'echo next >> marks'}}\n",
    );
    env.write(
        "pipelines/stuck.yaml",
        "version: 1\nname: stuck\nnodes:\n  forever: {phase: BUILDING, uses: shell, grace: 1s, with: {run: 'touch stuck-started; sleep 600'}}\n",
    );
    let mut server = Server::start_with(&env, &["--shutdown-grace", "5s"]);
    assert_eq!(post_run(&server, &deploy, serde_json::json!({"pipeline": "steps", "id": "g1"})).0, 202);
    env.wait_for("started", Duration::from_secs(20));
    signal(&server.child, libc::SIGTERM);
    assert_eq!(wait_timeout(&mut server.child, Duration::from_secs(20)).code(), Some(0));
    assert_eq!(env.marks("marks"), ["slow", "slow-done"], "the running node finished; nothing new started");
    assert_eq!(env.status("g1")["status"], "interrupted");
    let server = Server::start(&env);
    assert_eq!(follow(&server, &deploy, "g1").last().map(String::as_str), Some("run_succeeded"));
    assert_eq!(env.marks("marks"), ["slow", "slow-done", "next"], "resumed at the next start, slow not run again");
    drop(server);

    // A node that does not finish within the grace is stopped, and stays resumable.
    let mut server = Server::start_with(&env, &["--shutdown-grace", "500ms"]);
    assert_eq!(post_run(&server, &deploy, serde_json::json!({"pipeline": "stuck", "id": "g2"})).0, 202);
    env.wait_for("stuck-started", Duration::from_secs(20));
    let begin = Instant::now();
    signal(&server.child, libc::SIGTERM);
    assert_eq!(wait_timeout(&mut server.child, Duration::from_secs(20)).code(), Some(0));
    assert!(begin.elapsed() < Duration::from_secs(15), "the grace, then the step's own grace, then out");
    assert_eq!(env.status("g2")["status"], "interrupted");
}

#[test]
fn a_thousand_runs_queued_at_once_all_run_and_a_bad_query_is_a_json_400() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/tick.yaml", "version: 1\nname: tick\nnodes:\n  a: {phase: BUILDING, uses: noop}\n");
    let server = Server::start_with(&env, &["--workers", "4"]);
    let (status, body) = server.call("GET", "/api/v1/runs?limt=5", Some(&deploy), &[]);
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("limt"), "{body}");
    for _ in 0..1000 {
        assert_eq!(post_run(&server, &deploy, serde_json::json!({"pipeline": "tick"})).0, 202);
    }
    let begin = Instant::now();
    loop {
        let done = env.count("SELECT count(*) FROM deployments WHERE status = 'succeeded'");
        if done == 1000 {
            break;
        }
        assert!(begin.elapsed() < Duration::from_secs(300), "{done} of 1000 done");
        std::thread::sleep(Duration::from_millis(100));
    }
    let other: i64 = env.count("SELECT count(*) FROM deployments WHERE status != 'succeeded'");
    assert_eq!(other, 0);

    // Pages of the list, in the database's order, each after the last one's last run.
    let expected: Vec<String> = env
        .sql("SELECT id FROM deployments ORDER BY created_at DESC, id")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    let (mut listed, mut before) = (Vec::new(), None::<String>);
    loop {
        let path = match &before {
            Some(id) => format!("/api/v1/runs?limit=300&status=succeeded&before={id}"),
            None => "/api/v1/runs?limit=300&status=succeeded".to_string(),
        };
        let page = server.json(&path, &deploy);
        let ids: Vec<String> =
            page["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        before = ids.last().cloned();
        listed.extend(ids);
        if page["more"] != true {
            break;
        }
    }
    assert_eq!(listed, expected, "every run once, newest first, over four pages");
    assert_eq!(server.call("GET", "/api/v1/runs?before=nope", Some(&deploy), &[]).0, 400);
    assert_eq!(server.json("/api/v1/runs?status=failed", &deploy)["runs"], serde_json::json!([]));
}

#[test]
fn a_newer_run_through_the_api_supersedes_the_running_one_at_its_next_node() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write(
        "pipelines/latest.yaml",
        "version: 1\nname: latest\ninputs: {label: {type: string}}\nconcurrency: {key: site, policy: supersede}\nnodes:\n  build: {phase: BUILDING, uses: shell, with: {run: 'echo \"build $L\" >> marks; while [ ! -f \"go-$L\" ]; do sleep 0.02; done', env: {L: '{{ inputs.label }}'}}}\n  ship: {phase: HEALTH_CHECK, needs: [build], uses: shell, with: {run: 'echo \"ship $L\" >> marks', env: {L: '{{ inputs.label }}'}}}\n",
    );
    let server = Server::start_with(&env, &["--workers", "2"]);
    assert_eq!(
        post_run(&server, &deploy, serde_json::json!({"pipeline": "latest", "inputs": {"label": "old"}, "id": "old"}))
            .0,
        202
    );
    let begin = Instant::now();
    while !env.marks("marks").contains(&"build old".to_string()) {
        assert!(begin.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        post_run(&server, &deploy, serde_json::json!({"pipeline": "latest", "inputs": {"label": "new"}, "id": "new"}))
            .0,
        202
    );
    env.write("go-old", "");
    env.write("go-new", "");
    assert_eq!(follow(&server, &deploy, "new").last().map(String::as_str), Some("run_succeeded"));
    let old = server.json("/api/v1/runs/old", &deploy);
    assert_eq!((old["status"].as_str(), old["supersededBy"].as_str()), (Some("cancelled"), Some("new")));
    assert_eq!(env.marks("marks"), ["build old", "build new", "ship new"], "old finished its node, then stopped");
}

#[test]
fn a_queued_run_cancelled_through_the_api_never_runs_and_its_stream_says_so() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write(
        "pipelines/held.yaml",
        "version: 1\nname: held\ninputs: {label: {type: string}}\nconcurrency: {key: site, policy: queue}\nnodes:\n  work: {phase: BUILDING, uses: shell, with: {run: 'echo \"$L\" >> marks; while [ ! -f go ]; do sleep 0.02; done', env: {L: '{{ inputs.label }}'}}}\n",
    );
    let server = Server::start_with(&env, &["--workers", "2"]);
    for label in ["first", "second", "third"] {
        let body = serde_json::json!({"pipeline": "held", "inputs": {"label": label}, "id": label});
        assert_eq!(post_run(&server, &deploy, body).0, 202);
    }
    env.wait_for("marks", Duration::from_secs(20));
    let (status, body) = server.send("POST", "/api/v1/runs/second/cancel", Some(&deploy), &[], "");
    assert_eq!(status, 202, "{body}");
    let second = server.json("/api/v1/runs/second", &deploy);
    assert_eq!(second["status"], "cancelled", "nobody held it: cancelled at once");
    let mut stream = Stream::open(&server, "/api/v1/runs/second/events", &deploy, None);
    let mut seen = Vec::new();
    while let Some((_, name, data)) = stream.next() {
        seen.push((name, data["metadata"].clone()));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((seen[0].0.as_str(), &seen[0].1["behind"]), ("run_queued", &serde_json::json!("first")));
    assert_eq!(seen[1].0, "run_interrupted");
    assert_eq!(seen[1].1["reason"], "cancelled while queued");
    env.write("go", "");
    assert_eq!(follow(&server, &deploy, "third").last().map(String::as_str), Some("run_succeeded"));
    assert_eq!(env.marks("marks"), ["first", "third"], "the cancelled run never ran");
    assert_eq!(server.json("/api/v1/runs/second", &deploy)["status"], "cancelled");
}

/// `POST /session` as the dashboard sends it; the status, the `Set-Cookie` header and
/// the body.
fn sign_in(server: &Server, token: &str, origin: &str) -> (u16, Option<String>, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let body = serde_json::json!({"token": token}).to_string();
    let request = head("POST", "/session", None, &[("Origin", origin), ("Content-Type", "application/json")])
        .replace("Host: localhost", &format!("Host: 127.0.0.1:{}", server.port))
        .replace("Content-Length: 0", &format!("Content-Length: {}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let cookie = response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .map(|l| l.split_once(':').unwrap().1.trim().to_string());
    (status, cookie, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn a_dashboard_session_is_an_http_only_strict_cookie_checked_against_the_origin_and_ended_by_revoking() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/tick.yaml", "version: 1\nname: tick\nnodes:\n  a: {phase: BUILDING, uses: noop}\n");
    let server = Server::start(&env);
    let me = format!("http://127.0.0.1:{}", server.port);
    let host = format!("127.0.0.1:{}", server.port);

    assert_eq!(sign_in(&server, "phd_wrong", &me).0, 401);
    assert_eq!(sign_in(&server, &deploy, "http://evil.example").0, 403, "a sign-in from another site's page");
    let (status, cookie, body) = sign_in(&server, &deploy, &me);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"role\":\"deploy\""), "{body}");
    let cookie = cookie.expect("a cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    let value = cookie.split(';').next().unwrap().to_string();
    assert!(value.starts_with("phased_session=") && value.len() > 40, "{value}");
    let stored: Vec<String> = env.sql("SELECT hash FROM sessions").into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(value.trim_start_matches("phased_session=")), "only the hash is stored");

    // Reading with the cookie alone works; a change needs the page's own origin.
    let get = |path: &str| {
        let headers = [("Cookie", value.as_str()), ("Host", host.as_str())];
        let request = head("GET", path, None, &headers).replace("Host: localhost\r\n", "");
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let post = |origin: Option<&str>| {
        let mut headers = vec![("Cookie", value.as_str()), ("Host", host.as_str())];
        headers.extend(origin.map(|o| ("Origin", o)));
        let body = r#"{"pipeline": "tick"}"#;
        let request = head("POST", "/api/v1/runs", None, &headers)
            .replace("Host: localhost\r\n", "")
            .replace("Content-Length: 0", &format!("Content-Length: {}", body.len()));
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
    };
    assert!(get("/api/v1/session").contains("\"name\":\"ci\""));
    assert_eq!(post(Some("http://evil.example")), 403, "another site's page");
    assert_eq!(post(None), 403, "no origin at all");
    assert_eq!(post(Some(&me)), 202, "the dashboard's own page");
    assert_eq!(server.json("/api/v1/runs", &deploy)["runs"].as_array().unwrap().len(), 1, "one run: the allowed one");

    // Revoking the token ends its sessions.
    assert_eq!(env.run(&["token", "revoke", "ci"]).status.code(), Some(0));
    assert!(get("/api/v1/session").starts_with("HTTP/1.1 401"), "the session ended with its token");
    let left = env.count("SELECT count(*) FROM sessions");
    assert_eq!(left, 0);

    // The page itself: its own files only, and never framed.
    let (status, page) = server.call("GET", "/", None, &[]);
    assert_eq!(status, 200);
    assert!(page.contains("/ui/app.js"), "{page}");
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.write_all(head("GET", "/", None, &[]).as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let policy = response.lines().find(|l| l.to_ascii_lowercase().starts_with("content-security-policy")).unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(server.call("GET", "/ui/app.js", None, &[]).0, 200);
    assert_eq!(server.call("GET", "/ui/..%2Fserve.rs", None, &[]).0, 404);
}

#[test]
fn releases_rollback_and_stats_through_the_api() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    let read = token(&env, "viewer", "read");
    support::service::two_releases_of_app(&env);
    let server = Server::start(&env);
    let releases = server.json("/api/v1/targets/app/releases", &read);
    let ids: Vec<(&str, bool)> = releases["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["live"] == true))
        .collect();
    assert_eq!(ids, [("a2", true), ("a1", false)]);
    assert_eq!(server.send("POST", "/api/v1/targets/app/rollback", Some(&read), &[], "{}").0, 403);
    let (status, body) = server.send("POST", "/api/v1/targets/app/rollback", Some(&deploy), &[], r#"{"to": "nope"}"#);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("not a release of target `app`"), "{body}");
    let (status, body) = server.send("POST", "/api/v1/targets/app/rollback", Some(&deploy), &[], "");
    assert_eq!(status, 202, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["release"], "a1", "the one before the live one");
    let id = answer["id"].as_str().unwrap().to_string();
    assert_eq!(follow(&server, &deploy, &id).last().map(String::as_str), Some("run_succeeded"));
    assert_eq!(std::fs::read_to_string(env.path("live")).unwrap().trim(), "v1");
    let releases = server.json("/api/v1/targets/app/releases", &read)["releases"].clone();
    let newest = releases[0].clone();
    assert_eq!(
        (newest["id"].as_str(), newest["rollback_of"].as_str(), newest["live"].as_bool()),
        (Some(id.as_str()), Some("a1"), Some(false))
    );
    let live: Vec<&str> =
        releases.as_array().unwrap().iter().filter(|r| r["live"] == true).map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(live, ["a1"], "one release live: the one the rollback restored");

    let stats = server.json("/api/v1/stats?pipeline=app&since=1d", &read);
    assert_eq!((stats["runs"]["runs"].as_u64(), stats["nodes"][0]["node"].as_str()), (Some(2), Some("ship")));
    assert_eq!(server.call("GET", "/api/v1/stats?since=soon", Some(&read), &[]).0, 400);
}

#[test]
fn behind_a_proxy_the_public_url_is_the_dashboards_origin() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/tick.yaml", "version: 1\nname: tick\nnodes:\n  a: {phase: BUILDING, uses: noop}\n");
    let out = env.run(&["serve", "--public-url", "https://deploy.example.com/app"]);
    assert_eq!(out.status.code(), Some(2), "a path is not an origin");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an origin"));
    let server = Server::start_with(&env, &["--public-url", "https://deploy.example.com"]);
    // The proxy sends its own Host; the browser's Origin is the public one.
    let (status, cookie, body) = sign_in(&server, &deploy, "https://deploy.example.com");
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.unwrap();
    assert!(cookie.contains("; Secure"), "over TLS only: {cookie}");
    let value = cookie.split(';').next().unwrap().to_string();
    let post = |origin: &str| {
        let body = r#"{"pipeline": "tick"}"#;
        let request = head("POST", "/api/v1/runs", None, &[("Cookie", value.as_str()), ("Origin", origin)])
            .replace("Content-Length: 0", &format!("Content-Length: {}", body.len()));
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
    };
    assert_eq!(post("https://deploy.example.com"), 202);
    assert_eq!(post("https://evil.example"), 403);
    assert_eq!(post("http://deploy.example.com"), 403, "the scheme counts");
}
