//! Notifications against a real local HTTP receiver: retried while it fails, sent
//! after the process is killed between the run's end and the delivery, never changing
//! the run's outcome, and never storing the secret in the URL. The receiver is on
//! 127.0.0.1, a loopback address: every command here allows private targets
//! (`PHASED_ALLOW_PRIVATE_NOTIFY`); tests/notify_ssrf.rs tests the refusal.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use support::Env;

/// What the receiver got: the path and the body of each request.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP receiver on a free port that answers 500 to the first `failures` requests
/// of each path, then 200.
fn receiver(failures: usize) -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Arc::default();
    let seen = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split(' ').nth(1).unwrap_or("").split('?').next().unwrap_or("").to_string();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut seen = seen.lock().unwrap();
            let before = seen.iter().filter(|(p, _)| *p == path).count();
            seen.push((path, String::from_utf8_lossy(&body).into_owned()));
            let status = if before < failures { "500 Internal Server Error" } else { "200 OK" };
            let mut stream = stream;
            let _ = stream
                .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        }
    });
    (port, got)
}

fn pipeline(port: u16) -> String {
    format!(
        r#"version: 1
name: noisy
inputs: {{fail: {{type: boolean, default: false}}}}
notify:
  - on: [failed]
    webhook: {{url: "{{{{ secrets.hook_url }}}}", format: slack}}
  - on: [succeeded, failed]
    webhook: {{url: "http://127.0.0.1:{port}/json/{{{{ deployment.short_id }}}}", format: json}}
nodes:
  build: {{phase: BUILDING, uses: shell, with: {{run: 'true'}}}}
  check: {{phase: HEALTH_CHECK, needs: [build], uses: shell, with: {{run: '{{% if inputs.fail %}}echo no answer >&2; exit 3{{% endif %}}'}}}}
"#
    )
}

const SECRET: &str = "s3cr3t-t0ken";

/// A command of `env` that may send notifications to the local receiver.
fn command(env: &Env, args: &[&str]) -> std::process::Command {
    let mut command = env.command(args);
    command.env("PHASED_ALLOW_PRIVATE_NOTIFY", "1");
    command
}

#[test]
fn a_failure_is_sent_to_each_receiver_retried_while_it_fails_and_the_secret_url_is_never_stored() {
    let env = Env::new();
    let (port, got) = receiver(2);
    env.write("noisy.yaml", &pipeline(port));
    assert_eq!(env.run(&["validate", "noisy.yaml"]).status.code(), Some(0));
    let hook = format!("http://127.0.0.1:{port}/slack?token={SECRET}");
    let out = command(&env, &["run", "noisy.yaml", "--id", "n1", "-i", "fail=true"])
        .env("PHASED_SECRET_HOOK_URL", &hook)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the run's own outcome: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(got.lock().unwrap().len(), 2, "`run` tries each once: {:?}", got.lock().unwrap());
    // The retries are `phased notify`'s, after the backoff the outbox records.
    let retried = command(&env, &["notify"]).env("PHASED_SECRET_HOOK_URL", &hook).output().unwrap();
    assert_eq!(retried.status.code(), Some(0), "{}", String::from_utf8_lossy(&retried.stderr));
    let got = got.lock().unwrap().clone();
    let slack: Vec<&(String, String)> = got.iter().filter(|(p, _)| p == "/slack").collect();
    assert_eq!(slack.len(), 3, "two failures, then delivered: {got:?}");
    let message: Value = serde_json::from_str(&slack[2].1).unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(text.contains("FAILED at `check`") && text.contains("phased resume n1"), "{text}");
    let json_path = "/json/n1";
    let sent: Vec<Value> =
        got.iter().filter(|(p, _)| p == json_path).map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(sent.len(), 3, "the other receiver fails twice too: {got:?}");
    assert_eq!((sent[2]["outcome"].as_str(), sent[2]["failedNode"].as_str()), (Some("failed"), Some("check")));
    assert_eq!(sent[2]["deployment"], "n1");

    let status = env.status("n1");
    assert_eq!(status["status"], "failed", "a notification never changes the run");
    let notifications = status["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), 2);
    for n in notifications {
        assert_eq!((n["status"].as_str(), n["attempts"].as_u64()), (Some("delivered"), Some(3)), "{n}");
    }
    let text = String::from_utf8(env.run(&["status", "n1"]).stdout).unwrap();
    assert!(text.contains("notify    failed (slack): delivered at"), "{text}");
    // The secret URL is nowhere in the database (nor in its WAL), nor in the logs.
    for entry in std::fs::read_dir(env.path("state")).unwrap().flatten() {
        let path = entry.path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains(SECRET), "{} holds the secret", path.display());
        }
    }
    assert!(!String::from_utf8_lossy(&out.stderr).contains(SECRET));
    assert!(!String::from_utf8_lossy(&retried.stderr).contains(SECRET));
}

#[test]
fn a_process_killed_before_it_sends_leaves_them_pending_and_the_next_one_sends_them() {
    let env = Env::new();
    let (port, got) = receiver(0);
    env.write("noisy.yaml", &pipeline(port));
    let hook = format!("http://127.0.0.1:{port}/slack?token={SECRET}");
    // Where the point between the run's end and the sending is, counted on a run.
    let list = env.path("points");
    let out = command(&env, &["run", "noisy.yaml", "--id", "count"]).env("PHASED_CRASH_LIST", &list).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let points = std::fs::read_to_string(&list).unwrap();
    let at = points
        .lines()
        .find(|l| l.contains("notifications recorded, not sent"))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    got.lock().unwrap().clear();

    let out = command(&env, &["run", "noisy.yaml", "--id", "k1", "-i", "fail=true"])
        .env("PHASED_SECRET_HOOK_URL", &hook)
        .env("PHASED_CRASH_AT", &at)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(1), "aborted before it could send");
    assert!(got.lock().unwrap().is_empty(), "nothing was sent");
    let status = env.status("k1");
    assert_eq!(status["status"], "failed", "the run's outcome was committed first");
    let pending: Vec<&str> =
        status["notifications"].as_array().unwrap().iter().map(|n| n["status"].as_str().unwrap()).collect();
    assert_eq!(pending, ["pending", "pending"]);

    let out = command(&env, &["notify"]).env("PHASED_SECRET_HOOK_URL", &hook).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let paths: Vec<String> = got.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths.contains(&"/slack".to_string()) && paths.contains(&"/json/k1".to_string()));
    let delivered: Vec<String> = env.status("k1")["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(delivered, ["delivered", "delivered"]);
    // Sent once: nothing more to send.
    let out = command(&env, &["notify", "--wait", "1s"]).env("PHASED_SECRET_HOOK_URL", &hook).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(got.lock().unwrap().len(), 2);
}

#[test]
fn a_receiver_that_never_answers_leaves_the_run_as_it_ended_and_says_so() {
    let env = Env::new();
    // A port nothing listens on.
    let port = support::free_port();
    env.write("noisy.yaml", &pipeline(port));
    let out = command(&env, &["run", "noisy.yaml", "--id", "q1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "ACTIVE whatever the receiver does");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&format!("of run q1 was not delivered: connection refused to 127.0.0.1:{port}")), "{said}");
    assert!(said.contains("`phased notify` retries it"), "{said}");
    let n = &env.status("q1")["notifications"][0];
    assert_eq!(n["status"], "pending");
    assert_eq!(n["attempts"], 1, "one attempt, then left to `phased notify`: {n}");
    let out = command(&env, &["notify", "--wait", "1s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "still pending");
    assert!(String::from_utf8_lossy(&out.stderr).contains("pending: the `succeeded` notification of run q1"));
}

#[test]
fn a_notification_is_checked_like_the_rest_of_the_pipeline() {
    let env = Env::new();
    let nodes = "nodes:\n  build: {phase: BUILDING, uses: noop}\n";
    let cases = [
        ("  - on: [failled]\n    webhook: {url: 'http://x/'}\n", "did you mean `failed`?", 4),
        ("  - on: [failed]\n    webhook: {url: 'http://x/', format: teams}\n", "teams", 5),
        (
            "  - on: [failed]\n    webhook: {url: '{{ nodes.build.outputs.x }}'}\n",
            "only `secrets`, `inputs` and `deployment`",
            5,
        ),
        ("  - on: []\n    webhook: {url: 'http://x/'}\n", "`on` is empty", 5),
    ];
    for (i, (notify, expected, line)) in cases.iter().enumerate() {
        let file = env.write(&format!("bad{i}.yaml"), &format!("version: 1\nname: bad{i}\nnotify:\n{notify}{nodes}"));
        let out = env.run(&["validate", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{notify}");
        let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(expected) && said.contains(&format!("bad{i}.yaml:{line}")), "{expected} in {said}");
    }
}

#[test]
fn watch_sends_the_notifications_of_each_run_it_makes() {
    let env = Env::new();
    let (port, got) = receiver(0);
    env.write("site/index.html", "v1");
    let file = env.write(
        "watched.yaml",
        &format!(
            "version: 1\nname: watched\nnotify:\n  - on: [succeeded]\n    webhook: {{url: \"http://127.0.0.1:{port}/watch\"}}\nnodes:\n  build: {{phase: BUILDING, uses: shell, with: {{run: 'cat site/index.html'}}}}\n"
        ),
    );
    let args = ["watch", "--format", "jsonl", file.to_str().unwrap(), "--path", "site", "--debounce", "100ms"];
    let watch = support::Watch::spawn(command(&env, &args));
    watch.wait_runs_ended(1, std::time::Duration::from_secs(20));
    env.write("site/index.html", "v2");
    watch.wait_runs_ended(2, std::time::Duration::from_secs(20));
    let begin = std::time::Instant::now();
    while got.lock().unwrap().len() < 2 {
        assert!(begin.elapsed() < std::time::Duration::from_secs(20), "{:?}", got.lock().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (code, _) = watch.stop();
    assert_eq!(code, 130);
    let sent: Vec<Value> = got.lock().unwrap().iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    assert!(sent.iter().all(|b| b["outcome"] == "succeeded"), "{sent:?}");
    assert_ne!(sent[0]["deployment"], sent[1]["deployment"], "one for each run");
}
