//! Trust boundaries (docs/security.md), tried as an attacker with a `deploy` token
//! would, through the real binary and the real HTTP server: run ids that name folders,
//! paths outside the server's roots, operator-only inputs, script injection through
//! inputs, secrets a step was not given, and secrets printed in encoded forms.

mod support;

use std::time::{Duration, Instant};

use support::Env;
use support::service::{Service, token};

/// Waits until a run has ended; its status JSON.
fn ended(env: &Env, id: &str) -> serde_json::Value {
    let begin = Instant::now();
    loop {
        let out = env.run(&["status", id, "--format", "json"]);
        if out.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if matches!(status["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
                return status;
            }
        }
        assert!(begin.elapsed() < Duration::from_secs(60), "run {id} did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(server: &Service, token: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let (status, text) = server.send("POST", "/api/v1/runs", Some(token), &[], &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[test]
fn run_ids_that_name_folders_are_refused_everywhere_and_prune_keeps_the_data_folder() {
    let env = Env::on_sqlite();
    env.write("pipelines/one.yaml", "version: 1\nname: one\nnodes:\n  a: {phase: BUILDING, uses: noop}\n");
    for id in ["..", ".", "a/b", "x\u{1}y"] {
        let out = env.run(&["run", "one", "--id", id]);
        assert_eq!(out.status.code(), Some(2), "`run --id {id:?}`");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid run id"), "{err}");
    }
    assert_eq!(env.count("SELECT COUNT(*) FROM deployments"), 0);

    let admin = token(&env, "ops", "admin");
    let server = Service::start(&env);
    for id in ["..", ".", "../../etc", "a\\b"] {
        let (status, body) = start(&server, &admin, &serde_json::json!({"pipeline": "one", "id": id}));
        assert_eq!(status, 400, "POST id {id:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid-id", "{body}");
    }
    drop(server);
    assert_eq!(env.count("SELECT COUNT(*) FROM deployments"), 0, "nothing was recorded");

    // A run recorded as `..` by an older version: prune forgets it, and keeps the
    // data folder (and the database in it).
    env.write(
        "pipelines/boom.yaml",
        "version: 1\nname: boom\nnodes:\n  a: {phase: BUILDING, uses: fail, with: {message: no}}\n",
    );
    let out = env.run(&["run", "boom", "--id", "old"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    // Only the run's own row is renamed (its checkpoints keep the old id: no foreign key
    // check, as an older version's database would be read).
    env.sqlite()
        .execute_batch(
            "PRAGMA foreign_keys = OFF; UPDATE deployments SET id = '..', created_at = '2000-01-01T00:00:00Z', \
             finished_at = '2000-01-01T00:00:00Z' WHERE id = 'old'",
        )
        .unwrap();
    std::fs::create_dir_all(env.path("state/logs/keep-me")).unwrap();
    let out = env.run(&["prune", "--older-than", "1d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not removing the folders of run `..`"), "{err}");
    assert!(env.path("state/logs/keep-me").is_dir(), "the logs of other runs are kept");
    assert!(env.path("state").is_dir(), "the data folder is kept");
    assert_eq!(env.count("SELECT COUNT(*) FROM deployments"), 0, "the run itself is forgotten");
}

/// A deployment type with a path input and operator inputs, and a source sub-pipeline
/// reached by the caller's mapping, as the built-in types have.
fn typed_pipelines(env: &Env) {
    env.write(
        "pipelines/site.yaml",
        "version: 1\nname: site\ninputs:\n  source: {type: object, required: true}\n  \
         base_dir: {type: string, operator: true, default: /srv/site}\n  \
         out: {type: string, path: true, default: \"\"}\nnodes:\n  \
         source: {phase: PULLING_SOURCE, pipeline: sources/embedded, with: \"{{ inputs.source }}\"}\n  \
         done: {phase: HEALTH_CHECK, uses: noop, needs: [source]}\n",
    );
}

#[test]
fn a_deploy_token_cannot_name_paths_outside_the_roots_nor_set_operator_inputs() {
    let env = Env::new();
    typed_pipelines(&env);
    let deploy = token(&env, "ci", "deploy");
    let admin = token(&env, "ops", "admin");
    let allowed = env.path("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), env.path("state/escape")).unwrap_or_else(|_| {
        std::fs::create_dir_all(env.path("state")).unwrap();
        std::os::unix::fs::symlink(outside.path(), env.path("state/escape")).unwrap();
    });
    let server = Service::start_with(&env, &["--allow-path", allowed.to_str().unwrap()]);
    let files = serde_json::json!({"index.html": "hi"});

    // The built-in `static` type: its proxy settings are the operator's.
    let (status, body) = start(
        &server,
        &deploy,
        &serde_json::json!({"pipeline": "static", "inputs": {"project": "p", "nginx_conf": "/tmp/evil.conf",
            "source": {"type": "embedded", "files": files}}}),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden-input");
    assert_eq!(body["error"]["diagnostics"][0]["input"], "nginx_conf", "{body}");

    let refused = |inputs: serde_json::Value, input: &str| {
        let (status, body) = start(&server, &deploy, &serde_json::json!({"pipeline": "site", "inputs": inputs}));
        assert_eq!(status, 403, "{input}: {body}");
        let named: Vec<&str> =
            body["error"]["diagnostics"].as_array().unwrap().iter().filter_map(|d| d["input"].as_str()).collect();
        assert_eq!(named, [input], "{body}");
    };
    refused(serde_json::json!({"source": {"type": "embedded", "files": files}, "base_dir": "/etc"}), "base_dir");
    refused(serde_json::json!({"source": {"type": "embedded", "files": files}, "out": "/etc/cron.d/x"}), "out");
    let escape = env.path("state/escape/x");
    refused(serde_json::json!({"source": {"type": "embedded", "files": files}, "out": escape}), "out");
    let dotdot = format!("{}/../../etc", env.path("state").display());
    refused(serde_json::json!({"source": {"type": "embedded", "files": files}, "out": dotdot}), "out");
    refused(serde_json::json!({"source": {"type": "embedded", "files": files}, "out": "relative/x"}), "out");
    // Inside the caller's mapping, handed on to the source sub-pipeline.
    refused(
        serde_json::json!({"source": {"type": "embedded", "files": files, "work_dir": outside.path()}}),
        "source.work_dir",
    );
    // A git source that would send one of the server's secrets to the caller's server.
    let (status, body) = start(
        &server,
        &deploy,
        &serde_json::json!({"pipeline": "static", "inputs": {"project": "p",
            "source": {"type": "git", "url": "http://127.0.0.1:9/x.git", "token_secret": "prod_db"}}}),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["diagnostics"][0]["input"], "source.token_secret", "{body}");
    assert_eq!(env.count("SELECT COUNT(*) FROM deployments"), 0, "nothing refused was queued");

    // Under the data folder or an allowed folder: queued and run.
    let inside = env.path("state/work/mine");
    for out in [inside.clone(), allowed.join("x")] {
        let (status, body) = start(
            &server,
            &deploy,
            &serde_json::json!({"pipeline": "site", "inputs": {"source": {"type": "embedded", "files": files,
                "work_dir": inside}, "out": out}}),
        );
        assert_eq!(status, 202, "{body}");
        assert_eq!(ended(&env, body["id"].as_str().unwrap())["status"], "succeeded");
    }
    // The operator (an admin token) may set what a deploy token may not.
    let (status, body) = start(
        &server,
        &admin,
        &serde_json::json!({"pipeline": "site", "inputs": {"source": {"type": "embedded", "files": files},
            "base_dir": "/srv/other", "out": outside.path()}}),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(ended(&env, body["id"].as_str().unwrap())["status"], "succeeded");
}

#[test]
fn inputs_in_a_script_are_a_validate_error_and_reach_steps_as_data() {
    let env = Env::new();
    env.write(
        "pipelines/bad.yaml",
        "version: 1\nname: bad\ninputs: {version: {type: string}}\nnodes:\n  \
         a: {phase: BUILDING, uses: shell, with: {run: 'echo {{ inputs.version }}'}}\n  \
         b: {phase: BUILDING, uses: shell, with: {command: [echo, '{{ secrets.token }}']}}\n",
    );
    let out = env.run(&["validate", "pipelines/bad.yaml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<(&str, u64)> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap(), d["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(codes, [("shell-injection", 5), ("secret-in-command", 6)], "{report}");
    let help = report["diagnostics"][0]["help"].as_str().unwrap();
    assert!(help.contains("env:") && help.contains("shell_quote"), "{help}");
    // `run` refuses it too, before anything runs.
    let out = env.run(&["run", "bad", "-i", "version=1"]);
    assert_eq!(out.status.code(), Some(2));

    // Written as the help says: the value is one word of data, whatever it holds.
    env.write(
        "pipelines/good.yaml",
        "version: 1\nname: good\ninputs: {version: {type: string}}\nnodes:\n  \
         a: {phase: BUILDING, uses: shell, with: {run: 'echo \"got $V\" >> marks', env: {V: '{{ inputs.version }}'}}}\n  \
         b: {phase: BUILDING, uses: shell, needs: [a], with: {run: 'echo quoted {{ inputs.version | shell_quote }} >> marks'}}\n",
    );
    let out = env.run(&["validate", "pipelines/good.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let deploy = token(&env, "ci", "deploy");
    let server = Service::start(&env);
    let attack = "1'; touch pwned-a; echo '$(touch pwned-b)`touch pwned-c`";
    let (status, body) =
        start(&server, &deploy, &serde_json::json!({"pipeline": "good", "inputs": {"version": attack}}));
    assert_eq!(status, 202, "{body}");
    assert_eq!(ended(&env, body["id"].as_str().unwrap())["status"], "succeeded");
    for file in ["pwned-a", "pwned-b", "pwned-c"] {
        assert!(!env.path(file).exists(), "{file}: the input ran as code");
    }
    assert_eq!(env.marks("marks"), [format!("got {attack}"), format!("quoted {attack}")]);

    // The shipped examples and the starter pass the rule (and `validate` checks them).
    let out = env.run(&["init", "--name", "starter"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for path in [repo.join("pipelines"), repo.join("examples"), env.path("pipelines/starter.yaml")] {
        let out = env.run(&["validate", path.to_str().unwrap(), "--deny-warnings"]);
        assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn a_step_gets_only_the_secrets_it_names_and_no_encoded_copy_is_recorded() {
    let env = Env::new();
    let secret = "Sup3r/Secret+Value=42";
    env.write(
        "pipelines/leak.yaml",
        "version: 1\nname: leak\nnodes:\n  \
         a:\n    phase: BUILDING\n    uses: shell\n    with:\n      env: {T: '{{ secrets.used }}'}\n      \
         run: |\n        env | grep PHASED_SECRET_ || echo no-inherited-secrets\n        \
         printf '%s' \"$T\" | base64\n        printf 'u:%s' \"$T\" | base64\n        \
         printf '%s' \"$T\" | od -An -tx1 | tr -d ' \\n'; echo\n        \
         python3 -c 'import os,urllib.parse; print(urllib.parse.quote(os.environ[\"T\"], safe=\"\"))'\n        \
         echo \"plain $T\"\n        echo \"t=$(printf '%s' \"$T\" | base64)\" >> \"$PHASED_OUTPUT\"\n",
    );
    let out = env
        .command(&["run", "leak", "--show-output", "--id", "leak-1"])
        .env("PHASED_SECRET_USED", secret)
        .env("PHASED_SECRET_UNUSED", "the-other-secret-value")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let logs = env.run(&["logs", "leak-1"]);
    let shown = String::from_utf8_lossy(&logs.stdout).to_string();
    assert!(shown.contains("no-inherited-secrets"), "a step inherited secrets: {shown}");
    assert!(shown.contains("plain ***"), "{shown}");

    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    let url = "Sup3r%2FSecret%2BValue%3D42";
    let in_basic = base64::engine::general_purpose::STANDARD.encode(format!("u:{secret}"));
    let forms = [secret, b64.as_str(), hex.as_str(), url, &in_basic[4..in_basic.len() - 4]];
    let everything = [
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        shown,
        env.status("leak-1").to_string(),
    ];
    for form in forms {
        for text in &everything {
            assert!(!text.contains(form), "`{form}` shown in: {text}");
        }
        for (place, bytes) in env.stored() {
            assert!(!String::from_utf8_lossy(&bytes).contains(form), "`{form}` stored in {place}");
        }
        for entry in support::files_under(&env.path("state")) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            assert!(!String::from_utf8_lossy(&bytes).contains(form), "`{form}` written to {}", entry.display());
        }
    }
}
