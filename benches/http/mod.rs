//! What the benchmarks of `phased serve` share: starting a run over the real HTTP API.

use std::io::{Read, Write};
use std::net::TcpStream;

/// Posts `body` to `POST /api/v1/runs` (one connection, closed after) and returns the
/// answer's JSON; the run must have been taken (202).
pub(crate) fn post_run(port: u16, token: &str, body: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).unwrap()
}
