//! `phased serve` holds no connection it does not need, and its clients cannot take
//! what the runs need: the real server, under a real descriptor limit, against held,
//! slow and idle connections; followed logs counted with the streams; tokens that show
//! their last use; `/metrics` behind a token; the `bearer` scheme in any case.

#![expect(unsafe_code, reason = "the server is started under a descriptor limit: setrlimit in the child")]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use support::Env;
use support::service::{Service as Server, head, token};

/// Starts `phased serve` with `extra` flags, its descriptor limit (soft and hard) set to
/// `nofile` before it starts, as `ulimit -n` would.
fn start_limited(env: &Env, nofile: u64, extra: &[&str]) -> Server {
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--listen", &listen];
    args.extend_from_slice(extra);
    let mut command = env.command(&args);
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    let begin = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(begin.elapsed() < Duration::from_secs(20), "the server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, port }
}

fn post_run(server: &Server, token: &str, body: serde_json::Value) -> (u16, String) {
    server.send("POST", "/api/v1/runs", Some(token), &[("Content-Type", "application/json")], &body.to_string())
}

/// Waits until run `id` has ended (read with `phased status`, not through the server);
/// its status.
fn wait_ended(env: &Env, id: &str, limit: Duration) -> String {
    let begin = Instant::now();
    loop {
        let status = env.status(id)["status"].as_str().unwrap_or_default().to_string();
        if !matches!(status.as_str(), "queued" | "running") {
            return status;
        }
        assert!(begin.elapsed() < limit, "run {id} did not end: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How a test client holds a connection.
#[derive(Clone, Copy, Debug)]
enum Hold {
    /// Connects and sends nothing.
    Idle,
    /// Sends a request head one byte a second, never finishing it.
    Slow,
    /// Sends one request, reads its answer, and keeps the connection open.
    KeptAlive,
}

/// Holds a connection the way `hold` says until the server closes it (true), or until
/// `limit` (false).
fn hold(port: u16, hold: Hold, limit: Duration) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let begin = Instant::now();
    let mut head = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".bytes().cycle();
    if let Hold::KeptAlive = hold {
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    }
    let mut answered = String::new();
    let mut buffer = [0u8; 1024];
    while begin.elapsed() < limit {
        if let Hold::Slow = hold
            && stream.write_all(&[head.next().unwrap()]).is_err()
        {
            return true;
        }
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(n) => answered.push_str(&String::from_utf8_lossy(&buffer[..n])),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Break 4 of issue 22: 300 connections held (idle, slow, kept alive) against a server
/// limited to 256 descriptors made a running deploy fail with "Too many open files".
/// Now the server keeps the descriptors the run needs, and closes each connection
/// that holds nothing.
#[test]
fn held_connections_never_fail_a_running_deploy_and_are_closed_in_time() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    // `wait` holds the run until every connection is open; then eight nodes at once
    // start processes, write logs and open files.
    let mut pipeline = String::from(
        "version: 1\nname: busy\nnodes:\n  wait: {phase: BUILDING, uses: shell, with: {run: 'touch started; while [ ! -f go ]; do sleep 0.05; done'}}\n",
    );
    for n in 0..8 {
        pipeline.push_str(&format!(
            "  work{n}: {{phase: COPYING_FILES, needs: [wait], uses: shell, with: {{run: 'for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; cat pipelines/busy.yaml > out{n}; sleep 0.1; done'}}}}\n"
        ));
    }
    pipeline.push_str("  done: {phase: HEALTH_CHECK, needs: [work0, work7], uses: shell, with: {run: 'echo done'}}\n");
    env.write("pipelines/busy.yaml", &pipeline);
    let server = start_limited(
        &env,
        256,
        &["--workers", "1", "--header-timeout", "2s", "--idle-timeout", "2s", "--max-connections-per-ip", "1000"],
    );
    let (status, body) = post_run(&server, &deploy, serde_json::json!({"pipeline": "busy", "id": "held"}));
    assert_eq!(status, 202, "{body}");
    env.wait_for("started", Duration::from_secs(30));

    let port = server.port;
    let holders: Vec<_> = (0..300)
        .map(|i| {
            let how = [Hold::Idle, Hold::Slow, Hold::KeptAlive][i % 3];
            let thread = std::thread::spawn(move || hold(port, how, Duration::from_secs(180)));
            (how, thread)
        })
        .collect();
    // Every connection is open (accepted or waiting to be) before the run goes on.
    std::thread::sleep(Duration::from_secs(1));
    env.write("go", "");

    assert_eq!(wait_ended(&env, "held", Duration::from_secs(180)), "succeeded", "{}", env.status("held"));
    for (how, thread) in holders {
        assert!(thread.join().unwrap(), "a {how:?} connection was never closed by the server");
    }
    assert_eq!(server.call("GET", "/healthz", None, &[]), (200, "ok\n".to_string()));
}

/// A connection that made one request, got its answer, and is kept open (so it is
/// known to be accepted and counted).
fn kept_alive(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 256];
    while !answer.ends_with(b"ok\n") {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..n]);
    }
    stream
}

fn still_open(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    matches!(stream.read(&mut [0u8; 16]), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Break 4: past `--max-connections-per-ip`, a connection gets 503 at once (the others
/// stay open); past `--max-connections`, none is accepted until one ends.
#[test]
fn connections_are_capped_per_address_and_overall() {
    let env = Env::new();
    let server = Server::start_with(&env, &["--max-connections-per-ip", "2", "--header-timeout", "60s"]);
    let mut held = [kept_alive(&server), kept_alive(&server)];
    let mut third = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = Vec::new();
    // Closed at once: EOF (or a reset, when the 503 crossed our request).
    let closed = match third.read_to_end(&mut answer) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    };
    assert!(closed, "a third connection from one address is refused");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.is_empty() || answer.contains("max-connections-per-ip"), "{answer}");
    assert!(held.iter_mut().all(still_open), "the first two stay open");

    let server = Server::start_with(&env, &["--max-connections", "2", "--header-timeout", "60s"]);
    let mut held = vec![kept_alive(&server), kept_alive(&server)];
    let mut waiting = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    waiting.write_all(head("GET", "/healthz", None, &[]).as_bytes()).unwrap();
    // Not answered while the two are held (a wait that can only let this pass wrongly,
    // never fail wrongly).
    assert!(still_open(&mut waiting), "answered past --max-connections");
    drop(held.pop());
    waiting.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = String::new();
    waiting.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer}");
}

/// A response body sent with chunked encoding, decoded.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// Opens a streamed request and reads its head: the status, and the open connection.
fn open(server: &Server, path: &str, token: &str) -> (u16, TcpStream) {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.write_all(head("GET", path, Some(token), &[]).as_bytes()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "the head ended early");
        line.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&line).split(' ').nth(1).unwrap().parse().unwrap();
    (status, stream)
}

/// The rest of a response after its status line, to its end (the connection closes:
/// `Connection: close`): its body.
fn rest(mut stream: TcpStream) -> String {
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap();
    if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() }
}

/// Break 9 of issue 22: followed logs ignored `--max-streams` (and polled every 50 ms).
/// Now a followed log is one of the streams: with two open (a followed log and an event
/// stream), a third of either kind gets 503; the two get every line and event, and end
/// with the run, which frees their places.
#[test]
fn followed_logs_count_with_the_streams_and_end_with_their_run() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    let deploy = token(&env, "ci", "deploy");
    env.write(
        "pipelines/talk.yaml",
        "version: 1\nname: talk\nnodes:\n  talk: {phase: BUILDING, uses: shell, with: {run: 'echo first; touch started; while [ ! -f go ]; do sleep 0.05; done; echo second; echo third'}}\n",
    );
    let server = Server::start_with(&env, &["--max-streams", "2"]);
    let (status, body) = post_run(&server, &deploy, serde_json::json!({"pipeline": "talk", "id": "t1"}));
    assert_eq!(status, 202, "{body}");
    env.wait_for("started", Duration::from_secs(30));

    let log = "/api/v1/runs/t1/nodes/talk/log?follow=true";
    let (status, followed) = open(&server, log, &read);
    assert_eq!(status, 200);
    let (status, events) = open(&server, "/api/v1/runs/t1/events", &read);
    assert_eq!(status, 200);
    for path in [log, "/api/v1/runs/t1/events"] {
        let (status, third) = open(&server, path, &read);
        assert_eq!(status, 503, "a third stream: {path}");
        let body = rest(third);
        assert!(body.contains("too-many-streams"), "{body}");
    }
    env.write("go", "");
    let text = rest(followed);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("==")).collect();
    assert_eq!(lines, ["first", "second", "third"], "{text}");
    let events = rest(events);
    assert!(events.contains("event: run_succeeded"), "{events}");
    assert_eq!(wait_ended(&env, "t1", Duration::from_secs(30)), "succeeded");
    // Both ended with the run: their places are free again.
    let (status, again) = server.call("GET", log, Some(&read), &[]);
    assert_eq!(status, 200, "{again}");
    assert!(again.contains("third"), "{again}");
}

/// `phased token list --format json`: each token's name and when it was last used.
fn last_used(env: &Env) -> Vec<(String, Option<String>)> {
    let out = env.run(&["token", "list", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["last_used_at"].as_str().map(str::to_string)))
        .collect()
}

/// Break 12 of issue 22 (part): `token list` never showed a last use, and `/metrics`
/// (which names every pipeline and node) needed no token.
#[test]
fn a_token_shows_its_last_use_and_metrics_need_a_token() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    token(&env, "unused", "deploy");
    assert_eq!(last_used(&env), [("unused".to_string(), None), ("viewer".to_string(), None)]);
    let server = Server::start(&env);
    assert_eq!(server.call("GET", "/api/v1/runs", Some(&read), &[]).0, 200);
    // Recorded beside the request, not before its answer: looked for until it is there.
    let begin = Instant::now();
    let used = loop {
        let list = last_used(&env);
        if let Some(at) = list.iter().find(|(name, _)| name == "viewer").and_then(|(_, at)| at.clone()) {
            assert_eq!(list.iter().find(|(name, _)| name == "unused").unwrap().1, None, "{list:?}");
            break at;
        }
        assert!(begin.elapsed() < Duration::from_secs(30), "the use was never recorded: {list:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(used.starts_with("20") && used.ends_with('Z'), "a time: {used}");
    let out = env.run(&["token", "list"]);
    let human = String::from_utf8_lossy(&out.stdout).to_string();
    let viewer = human.lines().find(|l| l.starts_with("viewer")).unwrap();
    assert!(viewer.ends_with(&used), "{human}");
    let unused = human.lines().find(|l| l.starts_with("unused")).unwrap();
    assert!(unused.ends_with(" -"), "{human}");

    let (status, body) = server.call("GET", "/metrics", None, &[]);
    assert_eq!(status, 401, "{body}");
    let (status, body) = server.call("GET", "/metrics", Some(&read), &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("phased_queue_depth 0"), "{body}");

    let open = Server::start_with(&env, &["--public-metrics"]);
    let (status, body) = open.call("GET", "/metrics", None, &[]);
    assert_eq!(status, 200, "{body}");
}

/// Break 14 of issue 22: `Authorization: bearer TOKEN` was refused; the scheme's name is
/// case-insensitive (RFC 7235).
#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    let server = Server::start(&env);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let header = format!("{scheme} {read}");
        let (status, body) = server.call("GET", "/api/v1/runs", None, &[("Authorization", &header)]);
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    for header in [format!("Basic {read}"), format!("Bearer{read}"), "Bearer ".to_string()] {
        let (status, body) = server.call("GET", "/api/v1/runs", None, &[("Authorization", &header)]);
        assert_eq!(status, 401, "{header}: {body}");
    }
}
