//! What the benchmarks of `phased serve` share: starting a run over the real HTTP API.

#![allow(dead_code, reason = "each bench uses a part of it")]

use std::io::{Read, Write};
use std::net::TcpStream;

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
