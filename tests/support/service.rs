//! `phased serve` as a process on a free port, and a plain HTTP/1.1 client written
//! here, so that every byte on the wire is what a client gets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

use super::{Env, free_port};

pub struct Service {
    pub child: Child,
    pub port: u16,
}

impl Service {
    pub fn start(env: &Env) -> Service {
        Service::start_with(env, &[])
    }

    pub fn start_with(env: &Env, extra: &[&str]) -> Service {
        Service::start_full(env, extra, &[])
    }

    pub fn start_full(env: &Env, extra: &[&str], vars: &[(&str, &str)]) -> Service {
        Service::start_on(env, free_port(), extra, vars)
    }

    /// On a given port: a server started again where its clients knew it.
    pub fn start_on(env: &Env, port: u16, extra: &[&str], vars: &[(&str, &str)]) -> Service {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &listen];
        args.extend_from_slice(extra);
        let child = env
            .command(&args)
            .envs(vars.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let begin = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(begin.elapsed() < Duration::from_secs(20), "the server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Service { child, port }
    }

    /// One request; the status and the body.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> (u16, String) {
        self.send(method, path, token, extra, "")
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let (status, _, body) = self.exchange(method, path, token, extra, body);
        (status, body)
    }

    /// One request; the status, the response's head (status line and headers) and its body.
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let request =
            head(method, path, token, extra).replace("Content-Length: 0", &format!("Content-Length: {}", body.len()));
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split(' ').nth(1).unwrap().parse().unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        (status, head.to_string(), body.to_string())
    }

    pub fn json(&self, path: &str, token: &str) -> serde_json::Value {
        let (status, body) = self.call("GET", path, Some(token), &[]);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn head(method: &str, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> String {
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

/// A new token of `role`, made with `phased token create`.
pub fn token(env: &Env, name: &str, role: &str) -> String {
    let out = env.run(&["token", "create", name, "--role", role]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `pipelines/app.yaml`, a deployment type of target `app` that writes its `version`
/// to `live`, and its `rollback:` pipeline `app-back`, which writes the release's;
/// then two releases of it, `a1` (v1) and `a2` (v2, live).
pub fn two_releases_of_app(env: &Env) {
    env.write(
        "pipelines/app.yaml",
        "version: 1\nname: app\ninputs: {version: {type: string, required: true}}\nconcurrency: {key: app, policy: queue}\nrollback: app-back\nnodes:\n  ship: {phase: BUILDING, uses: shell, with: {run: 'echo \"$V\" > live', env: {V: '{{ inputs.version }}'}}}\n",
    );
    env.write(
        "pipelines/app-back.yaml",
        "version: 1\nname: app-back\ninputs: {release: {type: object, required: true}}\nconcurrency: {key: app, policy: queue}\nnodes:\n  switch: {phase: CREATING_SYMLINKS, uses: shell, with: {run: 'echo \"$V\" > live', env: {V: '{{ inputs.release.inputs.version }}'}}}\n",
    );
    for (id, version) in [("a1", "v1"), ("a2", "v2")] {
        assert_eq!(env.run(&["run", "app", "--id", id, "-i", &format!("version={version}")]).status.code(), Some(0));
    }
}
