//! Where a notification may go (issue 22, break 15): a `notify:` URL whose host comes
//! from an input reaches nothing on loopback or a private network unless the operator
//! allows it; a redirect never carries the body to another port; and only `http` and
//! `https` pass `validate`. Real receivers on 127.0.0.1, the real binary.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use support::Env;

/// What a receiver got: the path and the body of each request.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP receiver on a free port of 127.0.0.1 that gives every request `answer`
/// (a status line and headers, without the blank line).
fn receiver(answer: &str) -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Arc::default();
    let seen = Arc::clone(&got);
    let answer = answer.to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split(' ').nth(1).unwrap_or("").to_string();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen.lock().unwrap().push((path, String::from_utf8_lossy(&body).into_owned()));
            let _ = stream.write_all(format!("{answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        }
    });
    (port, got)
}

/// A pipeline that notifies `http://{{ inputs.host }}/hook` when it succeeds: the
/// host is an input, as an API caller or a webhook could give it.
const PIPELINE: &str = r#"version: 1
name: told
inputs: {host: {type: string}}
notify:
  - on: [succeeded]
    webhook: {url: "http://{{ inputs.host }}/hook"}
nodes:
  build: {phase: BUILDING, uses: shell, with: {run: 'true'}}
"#;

/// The run's one notification, as `status --format json` shows it.
fn notification(env: &Env, id: &str) -> Value {
    let status = env.status(id);
    assert_eq!(status["status"], "succeeded", "a notification never changes the run: {status}");
    status["notifications"][0].clone()
}

#[test]
fn a_loopback_target_is_refused_unless_the_operator_allows_private_ones() {
    let env = Env::new();
    let (port, got) = receiver("HTTP/1.1 200 OK");
    env.write("told.yaml", PIPELINE);
    let host = format!("host=127.0.0.1:{port}");

    let out = env.run(&["run", "told.yaml", "--id", "refused", "-i", &host]);
    assert_eq!(out.status.code(), Some(0), "the run is ACTIVE whatever the notification: {out:?}");
    assert!(got.lock().unwrap().is_empty(), "nothing reached the receiver: {:?}", got.lock().unwrap());
    let n = notification(&env, "refused");
    let error = n["last_error"].as_str().unwrap();
    assert_eq!((n["status"].as_str(), n["attempts"].as_u64()), (Some("failed"), Some(1)), "not retried: {n}");
    assert!(error.starts_with("refused: 127.0.0.1 is a loopback address"), "{error}");
    assert!(error.contains("--allow-private-notify") && error.contains(&format!("--notify-allow 127.0.0.1:{port}")));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("was not delivered: refused: 127.0.0.1 is a loopback address"), "{said}");
    let shown = String::from_utf8(env.run(&["status", "refused"]).stdout).unwrap();
    assert!(shown.contains("notify    succeeded (json): failed after 1 attempt(s): refused: 127.0.0.1"), "{shown}");

    // A name that resolves to loopback is refused the same way.
    let out = env.run(&["run", "told.yaml", "--id", "by-name", "-i", &format!("host=localhost:{port}")]);
    assert_eq!(out.status.code(), Some(0));
    let error = notification(&env, "by-name")["last_error"].as_str().unwrap().to_string();
    assert!(error.starts_with("refused: `localhost` resolves to") && error.contains("loopback"), "{error}");
    assert!(got.lock().unwrap().is_empty());

    // Allowed: by the flag, by the variable, by naming the host and port (with the
    // variable set to false beside the flag and the list).
    let listed = format!("127.0.0.1:{port}");
    let allowed: [(&str, &[&str], &str); 3] = [
        ("flag", &["--allow-private-notify"], "0"),
        ("variable", &[], "1"),
        ("listed", &["--notify-allow", &listed], "false"),
    ];
    for (id, flags, variable) in allowed {
        let mut args = vec!["run", "told.yaml", "--id", id, "-i", &host];
        args.extend(flags);
        let out = env.command(&args).env("PHASED_ALLOW_PRIVATE_NOTIFY", variable).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(notification(&env, id)["status"], "delivered", "{id}");
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "one for each allowed run: {got:?}");
    let bodies: Vec<Value> = got.iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(
        bodies.iter().map(|b| b["deployment"].as_str().unwrap()).collect::<Vec<_>>(),
        ["flag", "variable", "listed"]
    );

    // An allowed host on another port is still refused.
    let out = env.run(&["run", "told.yaml", "--id", "other-port", "-i", &host, "--notify-allow", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(notification(&env, "other-port")["status"], "failed");
}

#[test]
fn a_redirect_is_not_followed_and_the_body_never_reaches_its_target() {
    let env = Env::new();
    let (inner, stolen) = receiver("HTTP/1.1 200 OK");
    let (outer, asked) =
        receiver(&format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{inner}/steal"));
    env.write("told.yaml", PIPELINE);
    let out = env.run(&[
        "run",
        "told.yaml",
        "--id",
        "moved",
        "-i",
        &format!("host=127.0.0.1:{outer}"),
        "--allow-private-notify",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stolen.lock().unwrap().is_empty(),
        "the body went on to the redirect's target: {:?}",
        stolen.lock().unwrap()
    );
    assert_eq!(asked.lock().unwrap().len(), 1, "asked once: a redirect is not retried");
    let n = notification(&env, "moved");
    let error = n["last_error"].as_str().unwrap();
    assert_eq!(n["status"], "failed", "{n}");
    assert!(error.contains("307") && error.contains(&format!("http://127.0.0.1:{inner}/steal")), "{error}");
    assert!(error.contains("redirects are not followed"), "{error}");
}

#[test]
fn only_http_and_https_urls_pass_validate() {
    let env = Env::new();
    let cases = [("file:///etc/passwd", "`file:`"), ("gopher://127.0.0.1:6379/_{{ inputs.key }}", "`gopher:`")];
    for (i, (url, scheme)) in cases.iter().enumerate() {
        let file = env.write(
            &format!("bad{i}.yaml"),
            &format!(
                "version: 1\nname: bad{i}\ninputs: {{key: {{type: string, default: k}}}}\nnotify:\n  - on: [failed]\n    webhook: {{url: '{url}'}}\nnodes:\n  build: {{phase: BUILDING, uses: noop}}\n"
            ),
        );
        let out = env.run(&["validate", file.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {said}");
        assert!(said.contains(&format!("bad{i}.yaml:6")), "the position: {said}");
        assert!(said.contains(&format!("over `http` or `https` only, not {scheme}")), "{said}");
        assert!(said.contains("give an `https://` (or `http://`) URL"), "the help: {said}");
    }
    // Schemes in any case, and a URL whose scheme comes from a secret, pass.
    let good = env.write(
        "good.yaml",
        "version: 1\nname: good\nnotify:\n  - on: [failed]\n    webhook: {url: 'HTTPS://hooks.example/x'}\n  - on: [failed]\n    webhook: {url: '{{ secrets.hook }}'}\nnodes:\n  build: {phase: BUILDING, uses: noop}\n",
    );
    let out = env.run(&["validate", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}
