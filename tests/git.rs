//! `git.clone` and the `sources/git` pipeline against real git servers: `git daemon`
//! (git://) and lighttpd running git-http-backend (smart HTTP, with a private
//! repository behind basic auth).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Env, Server, git, kill9, start_on_free_port};

/// A bare repository `repos/<name>.git` with: main (two commits), a branch `feature`
/// and a tag `v1` on the first commit. Returns the commit ids (first, second, feature).
fn make_repo(env: &Env, name: &str, big: bool) -> (String, String, String) {
    let work = env.path(&format!("work-{name}"));
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("index.html"), "v1").unwrap();
    if big {
        // Incompressible, so the transfer takes a moment.
        let mut data = vec![0u8; 24 << 20];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        std::fs::write(work.join("big.bin"), data).unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["tag", "v1"]);
    std::fs::write(work.join("index.html"), "v2").unwrap();
    git(&work, &["commit", "-q", "-am", "second"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["checkout", "-q", "-b", "feature", &first]);
    std::fs::write(work.join("index.html"), "feature").unwrap();
    git(&work, &["commit", "-q", "-am", "feature"]);
    let feature = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["checkout", "-q", "main"]);
    let repos = env.path("repos");
    std::fs::create_dir_all(&repos).unwrap();
    git(&repos, &["clone", "-q", "--bare", work.to_str().unwrap(), &format!("{name}.git")]);
    (first, second, feature)
}

fn git_daemon(env: &Env) -> (Server, u16) {
    support::git_daemon(&env.path("repos"))
}

/// lighttpd serving `repos/` over smart HTTP at /git/, with /git/private* behind
/// basic auth (user `deploy`, password `s3cret-token-123`).
fn smart_http(env: &Env) -> (Server, u16) {
    let dir = env.path("lighttpd");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("users"), "deploy:s3cret-token-123\n").unwrap();
    let backend = PathBuf::from(git(Path::new("."), &["--exec-path"])).join("git-http-backend");
    let (child, port) = start_on_free_port("lighttpd", |port| {
        let conf = format!(
            r#"server.modules = ("mod_alias", "mod_cgi", "mod_setenv", "mod_auth", "mod_authn_file")
server.document-root = "{dir}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{dir}/error.log"
alias.url = ("/git/" => "{backend}/")
$HTTP["url"] =~ "^/git/" {{
    cgi.assign = ("" => "")
    setenv.add-environment = ("GIT_PROJECT_ROOT" => "{repos}", "GIT_HTTP_EXPORT_ALL" => "")
}}
auth.backend = "plain"
auth.backend.plain.userfile = "{dir}/users"
auth.require = ("/git/private" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
"#,
            dir = dir.display(),
            backend = backend.display(),
            repos = env.path("repos").display(),
        );
        std::fs::write(dir.join("lighttpd.conf"), conf).unwrap();
        Command::new("lighttpd")
            .args(["-D", "-f"])
            .arg(dir.join("lighttpd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("lighttpd is installed (.ci/run installs it)")
    });
    (Server(child), port)
}

fn clone_run(env: &Env, id: &str, url: &str, branch: Option<&str>, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "sources/git", "--id", id, "-i", "type=git"];
    let url_arg = format!("url={url}");
    args.extend(["-i", &url_arg]);
    let branch_arg;
    if let Some(b) = branch {
        branch_arg = format!("branch={b}");
        args.extend(["-i", &branch_arg]);
    }
    let work = format!("work_dir={}", env.path("clones").display());
    args.extend(["-i", &work]);
    args.extend_from_slice(extra);
    env.command(&args).env("PHASED_PIPELINES", "/nonexistent").output().unwrap()
}

fn output(env: &Env, id: &str, name: &str) -> String {
    let status = env.status(id);
    let node = status["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "clone").unwrap().clone();
    node["outputs"][name].as_str().map(str::to_string).unwrap_or_else(|| node["outputs"][name].to_string())
}

#[test]
fn clones_a_branch_a_tag_and_a_commit_over_git_protocol() {
    let env = Env::new();
    let (first, second, feature) = make_repo(&env, "site", false);
    let (_daemon, port) = git_daemon(&env);
    let url = format!("git://127.0.0.1:{port}/site.git");
    for (id, branch, commit, content) in [
        ("default", None, &second, "v2"),
        ("branch", Some("feature"), &feature, "feature"),
        ("tag", Some("v1"), &first, "v1"),
        ("commit", Some(&first[..12]), &first, "v1"),
    ] {
        let out = clone_run(&env, id, &url, branch, &[]);
        assert_eq!(out.status.code(), Some(0), "{id}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(&output(&env, id, "commit"), commit, "{id}");
        let path = output(&env, id, "path");
        assert_eq!(std::fs::read_to_string(Path::new(&path).join("index.html")).unwrap(), content, "{id}");
    }
    // The seed's git metadata: init, clone starting, clone completed.
    let history = env.status("branch")["history"].clone();
    let metas: Vec<&serde_json::Value> = history.as_array().unwrap().iter().map(|h| &h["metadata"]).collect();
    assert!(metas.iter().any(|m| m["sourceType"] == "git" && m["sourceConfig"]["branch"] == "feature"));
    assert!(metas.iter().any(|m| m["cloneStatus"] == "starting" && m["repositoryUrl"] == url.as_str()));
    assert!(metas.iter().any(|m| m["cloneStatus"] == "completed" && m["sourcePath"].is_string()));

    let out = clone_run(&env, "missing", &url, Some("no-such-branch"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let error = env.status("missing")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert!(error.contains("`no-such-branch` is not a branch or tag"), "{error}");
}

#[test]
fn a_private_repository_over_smart_http_needs_the_token_which_never_leaks() {
    let env = Env::new();
    let (_, second, _) = make_repo(&env, "private", false);
    let (_server, port) = smart_http(&env);
    let url = format!("http://127.0.0.1:{port}/git/private.git");
    let out = clone_run(&env, "anon", &url, Some("main"), &[]);
    assert_eq!(out.status.code(), Some(1), "no token, no clone");
    let error = env.status("anon")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert!(error.contains("needs credentials") || error.contains("401"), "{error}");

    let out = env
        .command(&[
            "run",
            "sources/git",
            "--id",
            "token",
            "-i",
            &format!("url={url}"),
            "-i",
            "branch=main",
            "-i",
            "token_secret=git_token",
            "-i",
            "username=deploy",
            "-i",
            &format!("work_dir={}", env.path("clones").display()),
        ])
        .env("PHASED_PIPELINES", "/nonexistent")
        .env("PHASED_SECRET_GIT_TOKEN", "s3cret-token-123")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(output(&env, "token", "commit"), second);
    for suffix in ["", "-wal"] {
        let bytes = support::read_all(&env.path(&format!("state/phased.db{suffix}")));
        assert!(!bytes.windows(16).any(|w| w == b"s3cret-token-123"), "the token is not in the database");
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret-token-123"));
}

#[test]
fn a_clone_at_the_right_commit_is_reused_and_kill_9_mid_transfer_resumes_cleanly() {
    let env = Env::new();
    let (_, second, _) = make_repo(&env, "big", true);
    let (_server, port) = smart_http(&env);
    let url = format!("http://127.0.0.1:{port}/git/big.git");
    let work = format!("work_dir={}", env.path("clones").display());
    let mut child = env.spawn(&["run", "sources/git", "--id", "bigrun", "-i", &format!("url={url}"), "-i", &work]);
    // Kill once the transfer is under way (the staging folder of the clone exists).
    let target_parent = env.path("clones/bigrun");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let staging = std::fs::read_dir(&target_parent)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().contains(".partial-")))
            .unwrap_or(false);
        if staging {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the clone never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill9(&mut child);
    assert!(!target_parent.join("source").exists(), "no half clone under the final name");
    let out = env.run(&["resume", "bigrun"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(output(&env, "bigrun", "commit"), second);
    assert_eq!(output(&env, "bigrun", "reused"), "false");
    let leftovers = std::fs::read_dir(&target_parent)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".partial-"))
        .count();
    assert_eq!(leftovers, 0);

    // Resuming from the clone again finds the folder at the wanted commit and reuses it.
    let out = env.run(&["resume", "bigrun", "--from", "clone"]);
    assert_eq!(out.status.code(), Some(0), "already succeeded runs are not resumed");
    let params = phased::action::CloneParams {
        url: url.clone(),
        reference: None,
        to: target_parent.join("source").display().to_string(),
        depth: None,
        token: None,
        username: None,
        ssh_key: None,
        known_hosts: None,
    };
    let done = phased::action::clone(&params, std::sync::Arc::new(phased::action::ProgressReporter::none())).unwrap();
    assert_eq!((done.commit.as_str(), done.reused), (second.as_str(), true));
}

#[test]
fn a_shallow_clone_fetches_one_commit_and_file_urls_work() {
    let env = Env::new();
    let (_, second, _) = make_repo(&env, "shallow", false);
    let (_daemon, port) = git_daemon(&env);
    let out =
        clone_run(&env, "shallow", &format!("git://127.0.0.1:{port}/shallow.git"), Some("main"), &["-i", "depth=1"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let path = output(&env, "shallow", "path");
    assert_eq!(output(&env, "shallow", "commit"), second);
    assert_eq!(git(Path::new(&path), &["rev-list", "--count", "HEAD"]), "1", "only the tip was fetched");

    let file_url = format!("file://{}", env.path("repos/shallow.git").display());
    let out = clone_run(&env, "file", &file_url, Some("v1"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let path = output(&env, "file", "path");
    assert_eq!(std::fs::read_to_string(Path::new(&path).join("index.html")).unwrap(), "v1");
}

/// A real OpenSSH server on 127.0.0.1 with its own configuration, host key and
/// authorized key, serving `repos/` to root (git-upload-pack through the login shell).
/// Returns the server, its port, the client's private key (PEM) and the server's
/// `known_hosts` line.
fn ssh_server(env: &Env) -> (Server, u16, String, String) {
    let dir = env.path("sshd");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let keygen = |args: &[&str]| {
        let out = Command::new("ssh-keygen").args(args).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    };
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "host_key"]);
    keygen(&["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f", "client_key"]);
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    let (child, port) = start_on_free_port("sshd", |port| {
        let conf = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nPidFile none\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), conf).unwrap();
        Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd is installed (.ci/run installs openssh-server)")
    });
    let host_key = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
    let mut fields = host_key.split_whitespace();
    let known = format!("[127.0.0.1]:{port} {} {}", fields.next().unwrap(), fields.next().unwrap());
    (Server(child), port, std::fs::read_to_string(dir.join("client_key")).unwrap(), known)
}

#[test]
fn over_ssh_the_host_key_is_checked_against_known_hosts_and_the_key_comes_from_a_secret() {
    let env = Env::new();
    let (_, second, _) = make_repo(&env, "app", false);
    let (_sshd, port, client_key, known) = ssh_server(&env);
    let url = format!("ssh://root@127.0.0.1:{port}{}", env.path("repos/app.git").display());
    let run = |id: &str, known_hosts: Option<&str>| {
        let mut inputs = serde_json::json!({
            "type": "git", "url": url, "branch": "main", "ssh_key_secret": "deploy_key",
            "work_dir": env.path("clones").display().to_string(),
        });
        if let Some(k) = known_hosts {
            inputs["known_hosts"] = serde_json::json!(k);
        }
        let file = env.write(&format!("{id}.yaml"), &inputs.to_string());
        env.command(&["run", "sources/git", "--id", id, "--inputs", file.to_str().unwrap()])
            .env("PHASED_PIPELINES", "/nonexistent")
            .env("PHASED_SECRET_DEPLOY_KEY", &client_key)
            // An empty home: no ~/.ssh/known_hosts to fall back on.
            .env("HOME", env.path("home"))
            .output()
            .unwrap()
    };

    let out = run("ssh-ok", Some(&format!("# from ssh-keyscan\n{known}\n")));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(output(&env, "ssh-ok", "commit"), second);
    assert_eq!(std::fs::read_to_string(env.path("clones/ssh-ok/source/index.html")).unwrap(), "v2");

    // Unknown host: refused, and the error says how to fix it.
    let out = run("ssh-unknown", None);
    assert_eq!(out.status.code(), Some(1));
    let error = env.status("ssh-unknown")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert!(error.contains(&format!("ssh-keyscan -p {port} 127.0.0.1")), "{error}");

    // A different key for the host (a man in the middle, or a reinstalled server): refused.
    let other = env.path("other");
    std::fs::create_dir_all(&other).unwrap();
    let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(other.join("k")).output();
    assert!(keygen.unwrap().status.success());
    let other_key = std::fs::read_to_string(other.join("k.pub")).unwrap();
    let wrong = format!("[127.0.0.1]:{port} {}", other_key.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
    let out = run("ssh-wrong", Some(&wrong));
    assert_eq!(out.status.code(), Some(1));
    let error = env.status("ssh-wrong")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert!(error.contains(&format!("the host key of [127.0.0.1]:{port} is not in `known_hosts`")), "{error}");
    assert!(!env.path("clones/ssh-wrong/source").exists(), "nothing was cloned");
    // The private key is nowhere in the database.
    let marker = client_key.lines().nth(1).unwrap();
    for (place, bytes) in env.stored() {
        assert!(!String::from_utf8_lossy(&bytes).contains(marker), "the key is in {place}");
    }
}
