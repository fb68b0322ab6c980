//! `phased serve` as a process on a free port, spoken to over real HTTP (a plain TCP
//! client written here, so that every byte on the wire is what a client gets): tokens
//! and roles, the runs, and event streams that replay exactly from `Last-Event-ID`.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

use support::{Env, free_port, signal, wait_timeout};

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(env: &Env) -> Server {
        let port = free_port();
        let child = env.spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
        let begin = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(begin.elapsed() < Duration::from_secs(20), "the server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, port }
    }

    /// One request; the status and the body.
    fn call(&self, method: &str, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(head(method, path, token, extra).as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split(' ').nth(1).unwrap().parse().unwrap();
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    fn json(&self, path: &str, token: &str) -> serde_json::Value {
        let (status, body) = self.call("GET", path, Some(token), &[]);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn head(method: &str, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

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

fn token(env: &Env, name: &str, role: &str) -> String {
    let out = env.run(&["token", "create", name, "--role", role]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
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
    let db = env.sqlite();
    let stored: Vec<String> = db
        .prepare("SELECT hash FROM tokens")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
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
    let stored: Vec<i64> = env
        .sqlite()
        .prepare("SELECT seq FROM events WHERE deployment_id = 'live-1' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
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
