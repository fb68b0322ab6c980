//! Git push webhooks as an attacker meets them (issue 22): an empty key, a delivery
//! without a signature whose body never comes, a captured delivery sent again, a push
//! that deletes the branch, fields that are not what they claim to be, and a pipeline
//! that asks for the server's own webhook key. Each through the real `phased serve`
//! on a free port, spoken to over plain TCP, with signatures made by `openssl` (a
//! second implementation, not phased's own).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use support::service::{Service as Server, token};
use support::{Env, free_port};

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";
const ZERO: &str = "0000000000000000000000000000000000000000";

/// A deployment type that records what it was given, through `env:` (never through
/// the shell text).
const RECORD: &str = "version: 1\nname: record\ninputs: {commit: {type: string}, url: {type: string}, branch: {type: string}, repository: {type: string}}\nnodes:\n  mark: {phase: BUILDING, uses: shell, with: {run: 'printf \"%s %s %s %s\\n\" \"$C\" \"$U\" \"$B\" \"$R\" >> marks', env: {C: \"{{ inputs.commit }}\", U: \"{{ inputs.url }}\", B: \"{{ inputs.branch }}\", R: \"{{ inputs.repository }}\"}}}\n";

const INPUTS: &str = "{commit: \"{{ push.commit }}\", url: \"{{ push.clone_url }}\", branch: \"{{ push.branch }}\", repository: \"{{ push.repository }}\"}";

/// A trigger of `record` for `acme/web@main`.
fn trigger(name: &str, provider: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    provider: {provider}\n    secret: hook_{name}\n    repository: acme/web\n    branch: main\n    pipeline: record\n{extra}    inputs: {INPUTS}\n"
    )
}

/// HMAC-SHA256 in hex, computed by `openssl` (an empty key too).
fn hmac(secret: &str, body: &str) -> String {
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split(' ').next().unwrap().to_string()
}

/// The headers that sign `body` for `provider` with `secret`, and the delivery id.
fn signed(provider: &str, secret: &str, body: &str, delivery: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    let (sign, id) = match provider {
        "github" => (("X-Hub-Signature-256", format!("sha256={}", hmac(secret, body))), "X-GitHub-Delivery"),
        "gitea" => (("X-Gitea-Signature", hmac(secret, body)), "X-Gitea-Delivery"),
        "gitlab" => (("X-Gitlab-Token", secret.to_string()), "X-Gitlab-Event-UUID"),
        _ => (("X-Phased-Signature-256", format!("sha256={}", hmac(secret, body))), "X-Phased-Delivery"),
    };
    headers.push(sign);
    if let Some(delivery) = delivery {
        headers.push((id, delivery.to_string()));
    }
    headers
}

/// Posts a delivery; the status and the JSON answer.
fn deliver(server: &Server, hook: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, text) = server.send("POST", &format!("/hooks/{hook}"), None, &headers, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// GitHub's push payload (the fields phased reads, and the head commit's timestamp).
fn github_push(commit: &str, timestamp: &str) -> Value {
    json!({
        "ref": "refs/heads/main", "before": ZERO, "after": commit, "created": false, "deleted": false,
        "repository": {"full_name": "acme/web", "clone_url": "https://git.example/acme/web.git"},
        "commits": [{"id": commit, "timestamp": timestamp}],
        "head_commit": {"id": commit, "timestamp": timestamp, "message": "a change"},
    })
}

/// GitLab's Push Hook payload, commits oldest first as GitLab lists them.
fn gitlab_push(commit: &str, timestamp: &str) -> Value {
    json!({
        "object_kind": "push", "event_name": "push", "before": C1, "after": commit, "ref": "refs/heads/main",
        "checkout_sha": commit,
        "project": {"path_with_namespace": "acme/web", "git_http_url": "https://git.example/acme/web.git"},
        "commits": [{"id": C1, "timestamp": "2011-12-12T14:27:31+02:00"}, {"id": commit, "timestamp": timestamp}],
        "total_commits_count": 2,
    })
}

/// Waits until a run has ended; its `status --format json`.
fn ended(env: &Env, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = env.status(id);
        if ["succeeded", "failed", "cancelled"].contains(&status["status"].as_str().unwrap_or("")) {
            return status;
        }
        assert!(Instant::now() < deadline, "run {id} did not end: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn runs(server: &Server, read: &str) -> Vec<Value> {
    server.json("/api/v1/runs", read)["runs"].as_array().unwrap().clone()
}

/// `phased serve` that is expected to refuse to start: its exit status and stderr. One
/// that keeps running is stopped (by its pid) and the test fails.
fn refused_start(env: &Env, triggers: &str, vars: &[(&str, Option<&str>)]) -> (Option<i32>, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut command = env.command(&["serve", "--listen", &listen, "--triggers", triggers]);
    for (name, value) in vars {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started with an empty webhook key");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn serve_does_not_start_with_an_empty_or_missing_webhook_key_and_names_the_trigger() {
    let env = Env::new();
    env.write("pipelines/record.yaml", RECORD);
    let file = format!("triggers:\n{}{}", trigger("web", "github", ""), trigger("lab", "gitlab", ""));
    let triggers = env.write("triggers.yaml", &file);
    let triggers = triggers.to_str().unwrap();
    // `validate` cannot know the server's environment: the file itself is fine.
    assert_eq!(env.run(&["validate", triggers]).status.code(), Some(0));
    // The keys of `web` and `lab` (None: not set), and the trigger refused.
    let cases = [(Some(""), Some("k-lab"), "web"), (Some("k-web"), Some(" "), "lab"), (Some("k-web"), None, "lab")];
    for (web, lab, refused) in cases {
        let (code, stderr) =
            refused_start(&env, triggers, &[("PHASED_SECRET_HOOK_WEB", web), ("PHASED_SECRET_HOOK_LAB", lab)]);
        assert_eq!(code, Some(2), "{stderr}");
        let variable = format!("PHASED_SECRET_HOOK_{}", refused.to_uppercase());
        assert!(stderr.contains(&format!("`{refused}`")) && stderr.contains(&variable), "{stderr}");
    }
}

/// Sends a request's head announcing a 1000-byte body and never the body; the answer
/// read while the body is still withheld (the connection stays open meanwhile).
fn head_only(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Only so that a server that waits for the body cannot hang the test: its answer
    // would then be the 408 of `--request-timeout`, and the status assertion fails.
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if body.len() >= length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, body.to_string());
            }
        }
        let n = stream.read(&mut chunk).expect("an answer while the body is withheld");
        assert!(n > 0, "the connection closed without an answer: {text}");
        response.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_delivery_without_a_signature_is_refused_before_its_body_is_sent() {
    let env = Env::new();
    env.write("pipelines/record.yaml", RECORD);
    let mut file = String::from("triggers:\n");
    for provider in ["github", "gitea", "gitlab", "generic"] {
        file.push_str(&trigger(provider, provider, ""));
    }
    let triggers = env.write("triggers.yaml", &file);
    let secrets = [
        ("PHASED_SECRET_HOOK_GITHUB", "k-github"),
        ("PHASED_SECRET_HOOK_GITEA", "k-gitea"),
        ("PHASED_SECRET_HOOK_GITLAB", "k-gitlab-token"),
        ("PHASED_SECRET_HOOK_GENERIC", "k-generic"),
    ];
    // A long request timeout: an answer that waits for the body would be its 408.
    let server =
        Server::start_full(&env, &["--triggers", triggers.to_str().unwrap(), "--request-timeout", "60s"], &secrets);
    let cases: [(&str, &[(&str, &str)]); 8] = [
        ("github", &[]),
        ("github", &[("X-Hub-Signature-256", "sha256=not-hex")]),
        ("gitea", &[]),
        ("generic", &[]),
        ("generic", &[("X-Phased-Signature-256", "")]),
        ("gitlab", &[]),
        ("gitlab", &[("X-Gitlab-Token", "k-gitlab")]),
        ("gitlab", &[("X-Gitlab-Token", "")]),
    ];
    for (hook, headers) in cases {
        let (status, body) = head_only(server.port, &format!("/hooks/{hook}"), headers);
        assert_eq!(status, 401, "{hook} {headers:?}: {body}");
        assert!(body.contains("bad-signature"), "{body}");
    }
    // The server goes on: a signed delivery is taken.
    let read = token(&env, "viewer", "read");
    let body = github_push(C1, "2024-01-01T00:00:00Z").to_string();
    let (status, answer) = deliver(&server, "github", &signed("github", "k-github", &body, Some("d1")), &body);
    assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "{answer}");
    assert_eq!(runs(&server, &read).len(), 1);
}

/// RFC 3339 with a numeric offset, as GitHub and GitLab write commit timestamps:
/// `at` shown in the zone `hours` east of UTC.
fn timestamp(at: SystemTime, hours: i64) -> String {
    let shifted = if hours >= 0 {
        at + Duration::from_secs(hours as u64 * 3600)
    } else {
        at - Duration::from_secs(hours.unsigned_abs() * 3600)
    };
    let utc = humantime::format_rfc3339_seconds(shifted).to_string();
    let sign = if hours >= 0 { '+' } else { '-' };
    format!("{}{sign}{:02}:00", utc.trim_end_matches('Z'), hours.abs())
}

#[test]
fn a_captured_delivery_sent_again_with_a_new_id_or_none_is_not_queued_again() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write("pipelines/record.yaml", RECORD);
    // `hold` rejects a second run while one runs: a delivery refused 409 queued nothing
    // and is forgotten, so that its redelivery, with any id or none, is taken.
    env.write(
        "pipelines/hold.yaml",
        "version: 1\nname: hold\ninputs: {commit: {type: string}}\nconcurrency: {key: hold, policy: reject}\nnodes:\n  mark: {phase: BUILDING, uses: shell, with: {run: 'echo \"$C\" >> held; while [ ! -f go ]; do sleep 0.02; done', env: {C: \"{{ inputs.commit }}\"}}}\n",
    );
    let file = format!(
        "triggers:\n{}{}  hold:\n    provider: github\n    secret: hook_web\n    repository: acme/web\n    branch: main\n    pipeline: hold\n    inputs: {{commit: \"{{{{ push.commit }}}}\"}}\n",
        trigger("web", "github", ""),
        trigger("lab", "gitlab", ""),
    );
    let triggers = env.write("triggers.yaml", &file);
    let secrets = [("PHASED_SECRET_HOOK_WEB", "k-web"), ("PHASED_SECRET_HOOK_LAB", "k-lab")];
    let server = Server::start_full(&env, &["--triggers", triggers.to_str().unwrap()], &secrets);
    let now = timestamp(SystemTime::now(), 0);

    let body = github_push(C1, &now).to_string();
    let (status, answer) = deliver(&server, "web", &signed("github", "k-web", &body, Some("d1")), &body);
    assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "{answer}");
    let first = ended(&env, answer["id"].as_str().unwrap());
    assert_eq!(first["actor"], "webhook:web#d1", "the run records the trigger and the delivery that started it");
    for delivery in [Some("d2"), None] {
        let (status, answer) = deliver(&server, "web", &signed("github", "k-web", &body, delivery), &body);
        assert_eq!((status, answer["queued"].as_bool()), (202, Some(false)), "replayed as {delivery:?}: {answer}");
        assert!(answer["reason"].as_str().unwrap().contains("already received"), "{answer}");
    }
    // A new push, with no id, runs: the body decides, not the id.
    let lab = gitlab_push(C1, &now).to_string();
    let (status, answer) = deliver(&server, "lab", &signed("gitlab", "k-lab", &lab, Some("u1")), &lab);
    assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "{answer}");
    ended(&env, answer["id"].as_str().unwrap());
    let (status, answer) = deliver(&server, "lab", &signed("gitlab", "k-lab", &lab, Some("u2")), &lab);
    assert_eq!((status, answer["queued"].as_bool()), (202, Some(false)), "gitlab, replayed: {answer}");
    let body = github_push(C2, &now).to_string();
    let (status, answer) = deliver(&server, "web", &signed("github", "k-web", &body, None), &body);
    assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "a new push without an id: {answer}");
    ended(&env, answer["id"].as_str().unwrap());
    let marks = env.marks("marks");
    let commits: Vec<&str> = marks.iter().map(|m| m.split(' ').next().unwrap()).collect();
    assert_eq!(commits, [C1, C1, C2], "each push once");

    // Refused while the target is busy: taken again when redelivered, with a new id or
    // none. (The body `web` took first is another delivery to another trigger.)
    let first = github_push(C1, &now).to_string();
    let (status, answer) = deliver(&server, "hold", &signed("github", "k-web", &first, Some("h1")), &first);
    assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "{answer}");
    let held = answer["id"].as_str().unwrap().to_string();
    env.wait_for("held", Duration::from_secs(20));
    let second = github_push(C2, &now).to_string();
    let (status, answer) = deliver(&server, "hold", &signed("github", "k-web", &second, Some("h2")), &second);
    assert_eq!(status, 409, "{answer}");
    env.write("go", "");
    ended(&env, &held);
    let (status, answer) = deliver(&server, "hold", &signed("github", "k-web", &second, None), &second);
    assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "redelivered: {answer}");
    ended(&env, answer["id"].as_str().unwrap());
    let (status, answer) = deliver(&server, "hold", &signed("github", "k-web", &second, Some("h3")), &second);
    assert_eq!((status, answer["queued"].as_bool()), (202, Some(false)), "run once: {answer}");
    assert_eq!(env.marks("held"), [C1, C2]);
    assert_eq!(runs(&server, &read).len(), 5);
}

#[test]
fn with_max_age_a_push_whose_head_commit_is_older_is_not_queued() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write("pipelines/record.yaml", RECORD);
    let file = format!(
        "triggers:\n{}{}",
        trigger("web", "github", "    max_age: 24h\n"),
        trigger("lab", "gitlab", "    max_age: 24h\n")
    );
    let triggers = env.write("triggers.yaml", &file);
    assert_eq!(env.run(&["validate", triggers.to_str().unwrap()]).status.code(), Some(0));
    let broken = env.write("broken.yaml", &format!("triggers:\n{}", trigger("web", "github", "    max_age: soon\n")));
    let out = env.run(&["validate", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_age"), "{}", String::from_utf8_lossy(&out.stdout));

    let secrets = [("PHASED_SECRET_HOOK_WEB", "k-web"), ("PHASED_SECRET_HOOK_LAB", "k-lab")];
    let server = Server::start_full(&env, &["--triggers", triggers.to_str().unwrap()], &secrets);
    let old = SystemTime::now() - Duration::from_secs(3 * 86_400);
    // Written in a zone behind UTC and one ahead, so that the offset is read.
    for (provider, hook, secret) in [("github", "web", "k-web"), ("gitlab", "lab", "k-lab")] {
        let push = if provider == "github" { github_push } else { gitlab_push };
        let body = push(C1, &timestamp(old, -7)).to_string();
        let (status, answer) = deliver(&server, hook, &signed(provider, secret, &body, Some("o1")), &body);
        assert_eq!((status, answer["queued"].as_bool()), (202, Some(false)), "{provider}: {answer}");
        assert!(answer["reason"].as_str().unwrap().contains("max_age"), "{answer}");
        let body = push(C2, &timestamp(SystemTime::now() - Duration::from_secs(3600), 9)).to_string();
        let (status, answer) = deliver(&server, hook, &signed(provider, secret, &body, Some("n1")), &body);
        assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "{provider}: {answer}");
        ended(&env, answer["id"].as_str().unwrap());
    }
    assert_eq!(runs(&server, &read).len(), 2, "the recent pushes only");
}

#[test]
fn a_push_that_deletes_the_branch_queues_nothing_and_says_why() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write("pipelines/record.yaml", RECORD);
    let file = format!(
        "triggers:\n{}{}{}",
        trigger("hub", "github", ""),
        trigger("lab", "gitlab", ""),
        trigger("tea", "gitea", "")
    );
    let triggers = env.write("triggers.yaml", &file);
    let secrets =
        [("PHASED_SECRET_HOOK_HUB", "k-hub"), ("PHASED_SECRET_HOOK_LAB", "k-lab"), ("PHASED_SECRET_HOOK_TEA", "k-tea")];
    let server = Server::start_full(&env, &["--triggers", triggers.to_str().unwrap()], &secrets);
    // The forges' documented shapes of a push that deletes `main`.
    let github = json!({
        "ref": "refs/heads/main", "before": C1, "after": ZERO, "created": false, "deleted": true, "forced": false,
        "base_ref": null, "compare": "https://github.com/acme/web/compare/111111111111...000000000000",
        "commits": [], "head_commit": null,
        "repository": {"full_name": "acme/web", "clone_url": "https://github.com/acme/web.git"},
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
    });
    let gitlab = json!({
        "object_kind": "push", "event_name": "push", "before": C1, "after": ZERO, "ref": "refs/heads/main",
        "checkout_sha": null, "user_username": "jsmith",
        "project": {"path_with_namespace": "acme/web", "git_http_url": "https://gitlab.example/acme/web.git"},
        "commits": [], "total_commits_count": 0,
    });
    let gitea = json!({
        "ref": "refs/heads/main", "before": C1, "after": ZERO, "compare_url": "", "commits": [],
        "total_commits": 0, "head_commit": null,
        "repository": {"full_name": "acme/web", "clone_url": "https://gitea.example/acme/web.git"},
        "pusher": {"login": "gitea"}, "sender": {"login": "gitea"},
    });
    for (provider, hook, secret, payload) in
        [("github", "hub", "k-hub", github), ("gitlab", "lab", "k-lab", gitlab), ("gitea", "tea", "k-tea", gitea)]
    {
        let body = payload.to_string();
        let (status, answer) = deliver(&server, hook, &signed(provider, secret, &body, Some("del-1")), &body);
        assert_eq!((status, answer["queued"].as_bool()), (202, Some(false)), "{provider}: {answer}");
        assert_eq!(answer["reason"], "branch deleted: nothing to deploy", "{provider}");
    }
    assert_eq!(runs(&server, &read), Vec::<Value>::new(), "nothing was queued");
}

#[test]
fn a_signed_push_whose_fields_are_not_what_they_claim_is_refused_naming_the_field() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write("pipelines/record.yaml", RECORD);
    let triggers = env.write("triggers.yaml", &format!("triggers:\n{}", trigger("web", "github", "")));
    let server =
        Server::start_full(&env, &["--triggers", triggers.to_str().unwrap()], &[("PHASED_SECRET_HOOK_WEB", "k")]);
    let push = |commit: &str, reference: &str, repository: &str, url: &str| {
        json!({"ref": reference, "after": commit, "repository": {"full_name": repository, "clone_url": url}})
            .to_string()
    };
    let (main, web, url) = ("refs/heads/main", "acme/web", "https://git.example/acme/web.git");
    let cases = [
        ("commit", push("$(touch pwned)", main, web, url)),
        ("commit", push("c0ffee", main, web, url)),
        ("commit", push(&format!("{}g", &C1[..39]), main, web, url)),
        ("clone_url", push(C1, main, web, "https://git.example/acme/web.git; touch pwned")),
        ("clone_url", push(C1, main, web, "--upload-pack=touch pwned")),
        ("clone_url", push(C1, main, web, "file:///etc")),
        ("clone_url", push(C1, main, web, "https://git.example/`touch pwned`")),
        ("ref", push(C1, "refs/heads/main$(touch pwned)", web, url)),
        ("ref", push(C1, "refs/heads/ma in", web, url)),
        ("ref", push(C1, "refs/heads/main\ntouch pwned", web, url)),
        ("ref", push(C1, "refs/heads/../main", web, url)),
        ("ref", push(C1, "refs/heads/main.lock", web, url)),
        ("repository", push(C1, main, "acme/web';touch pwned'", url)),
        ("repository", push(C1, main, "../../etc", url)),
    ];
    for (i, (field, body)) in cases.iter().enumerate() {
        let delivery = format!("bad-{i}");
        let (status, answer) = deliver(&server, "web", &signed("github", "k", body, Some(&delivery)), body);
        assert_eq!(status, 400, "{field}: {body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("`push.{field}`")), "{field}: {message}");
    }
    assert_eq!(runs(&server, &read), Vec::<Value>::new(), "nothing was queued");
    assert!(!env.path("pwned").exists());

    // What the forges really send passes: a SHA-256 commit, scp-like and ssh URLs.
    let sha256 = "ab".repeat(32);
    let good = [
        push(&sha256, main, web, "git@git.example:acme/web.git"),
        push(C2, main, web, "ssh://git@git.example:2222/acme/web.git"),
    ];
    for (i, body) in good.iter().enumerate() {
        let (status, answer) = deliver(&server, "web", &signed("github", "k", body, Some(&format!("ok-{i}"))), body);
        assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "{body}: {answer}");
        ended(&env, answer["id"].as_str().unwrap());
    }
    assert_eq!(
        env.marks("marks"),
        [
            format!("{sha256} git@git.example:acme/web.git main acme/web"),
            format!("{C2} ssh://git@git.example:2222/acme/web.git main acme/web"),
        ]
    );
}

#[test]
fn a_run_started_by_a_webhook_is_never_given_the_servers_webhook_keys() {
    let env = Env::new();
    env.write(
        "pipelines/leak.yaml",
        "version: 1\nname: leak\ninputs: {commit: {type: string}}\nnodes:\n  other: {phase: BUILDING, uses: shell, with: {run: 'printf %s \"$O\" > other.txt', env: {O: \"{{ secrets.other }}\"}}}\n  key: {phase: HEALTH_CHECK, needs: [other], uses: shell, with: {run: 'printf %s \"$K\" > key.txt', env: {K: \"{{ secrets.hook_web }}\"}}}\n",
    );
    let triggers = env.write(
        "triggers.yaml",
        "triggers:\n  web:\n    provider: github\n    secret: hook_web\n    repository: acme/web\n    branch: main\n    pipeline: leak\n    inputs: {commit: \"{{ push.commit }}\"}\n",
    );
    let secrets = [("PHASED_SECRET_HOOK_WEB", "the-webhook-key"), ("PHASED_SECRET_OTHER", "another-secret")];
    let server = Server::start_full(&env, &["--triggers", triggers.to_str().unwrap()], &secrets);
    let body = github_push(C1, "2024-01-01T00:00:00Z").to_string();
    let (status, answer) = deliver(&server, "web", &signed("github", "the-webhook-key", &body, Some("d1")), &body);
    assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)), "{answer}");
    let run = ended(&env, answer["id"].as_str().unwrap());
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("node `key`") && error.contains("`{{ secrets.hook_web }}` is undefined"), "{run}");
    // The pipeline's other secrets are given as before; the key never reached a step.
    assert_eq!(std::fs::read_to_string(env.path("other.txt")).unwrap(), "another-secret");
    assert!(!env.path("key.txt").exists());
}
