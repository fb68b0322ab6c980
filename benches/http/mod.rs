//! What the benchmarks of `phased serve` share: starting a run over the real HTTP API,
//! and following the event stream.

#![allow(dead_code, reason = "each bench uses a part of it")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Child;

/// A `phased serve` the bench started: stopped (by its pid) when dropped.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one request (one connection, closed after); the response's status line and
/// its body.
fn request(port: u16, token: &str, head: &str, body: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{head} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or_default().to_string();
    let body = response.find("\r\n\r\n").map_or(String::new(), |at| response[at + 4..].to_string());
    (status, body)
}

/// Posts `body` to `POST /api/v1/runs` and returns the answer's JSON; the run must
/// have been taken (202).
pub(crate) fn post_run(port: u16, token: &str, body: &str) -> serde_json::Value {
    let (status, answer) = request(port, token, "POST /api/v1/runs", body);
    assert!(status.starts_with("HTTP/1.1 202"), "{status}\n{answer}");
    serde_json::from_str(&answer).unwrap()
}

/// `GET path`; the answer must be 200.
pub(crate) fn get(port: u16, token: &str, path: &str) {
    let (status, answer) = request(port, token, &format!("GET {path}"), "");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}\n{answer}");
}

/// The stream of every run's events after `after`, its response head read.
pub(crate) fn open_stream(port: u16, token: &str, after: i64) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /api/v1/events?after={after} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            return reader;
        }
    }
}
