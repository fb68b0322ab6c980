//! What a new user meets at run time in the first hour (issue 23, items 4, 5 and 21),
//! through the real binary: an archive made with `tar -C dir .` (real GNU tar), what
//! the static type's FAILED metadata says (real nginx), notifications to a receiver
//! that is down (real TCP ports), and `phased serve` stopped right after it starts.
//! The receivers are on 127.0.0.1: the notification commands allow private targets
//! (`PHASED_ALLOW_PRIVATE_NOTIFY`); tests/notify_ssrf.rs tests the refusal.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{Env, Nginx, free_port, signal, wait_timeout};

/// Runs GNU tar in `dir`, as a user types it.
fn tar(dir: &Path, args: &[&str]) {
    let out = Command::new("tar").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `dist/`: a small site with a folder, a relative symlink and a nested file.
fn site(env: &Env, page: &str) {
    env.write("dist/index.html", page);
    env.write("dist/css/app.css", "body{}");
    let link = env.path("dist/home.html");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("index.html", link).unwrap();
}

/// A pipeline that unpacks `archive` into `to`.
fn unpack(env: &Env, archive: &str, to: &str) -> std::path::PathBuf {
    env.write(
        &format!("unpack-{to}.yaml"),
        &format!(
            "version: 1\nname: unpack\nnodes:\n  unpack:\n    phase: PULLING_SOURCE\n    uses: archive.extract\n    with: {{archive: {archive}, to: {to}}}\n    result_metadata: {{files: \"{{{{ outputs.files }}}}\"}}\n"
        ),
    )
}

#[test]
fn an_archive_made_with_tar_c_dir_dot_unpacks_and_what_climbs_out_is_still_refused() {
    let env = Env::new();
    site(&env, "<h1>hi</h1>");
    // `./`, `./index.html`, `./css/`, ...: the root entry first, every name under `./`.
    tar(env.dir.path(), &["-C", "dist", "-czf", "site.tgz", "."]);
    let out = env.run(&["run", unpack(&env, "site.tgz", "out").to_str().unwrap(), "--id", "dot"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(env.path("out/index.html")).unwrap(), "<h1>hi</h1>");
    assert_eq!(std::fs::read_to_string(env.path("out/css/app.css")).unwrap(), "body{}");
    assert_eq!(std::fs::read_link(env.path("out/home.html")).unwrap(), Path::new("index.html"));
    let files =
        env.status("dot")["history"].as_array().unwrap().iter().find_map(|h| h["metadata"]["files"].as_u64()).unwrap();
    assert_eq!(files, 4, "the root entry is the target itself, not an entry of its own");

    // The same tar, keeping a name that climbs out (`-P`), and a link out: refused as before.
    env.write("escape.txt", "untouched");
    tar(env.dir.path(), &["-C", "dist", "-P", "-cf", "climb.tar", ".", "./../escape.txt"]);
    std::os::unix::fs::symlink("/etc/passwd", env.path("dist/passwd")).unwrap();
    tar(env.dir.path(), &["-C", "dist", "-czf", "link.tgz", "."]);
    for (archive, to, error) in [
        ("climb.tar", "climbed", "entry `./../escape.txt` climbs out of the target with `..`"),
        ("link.tgz", "linked", "entry `./passwd` is a symlink to `/etc/passwd`, outside the target"),
    ] {
        let out = env.run(&["run", unpack(&env, archive, to).to_str().unwrap(), "--id", to]);
        assert_eq!(out.status.code(), Some(1), "{archive}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(env.status(to)["phase_metadata"]["error"], error);
        assert!(!env.path(to).exists(), "{archive}: nothing unpacked");
    }
    assert_eq!(std::fs::read_to_string(env.path("escape.txt")).unwrap(), "untouched");
}

#[test]
fn a_zip_with_a_root_entry_unpacks() {
    let env = Env::new();
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    writer.add_directory("./", options).unwrap();
    writer.start_file("./index.html", options).unwrap();
    writer.write_all(b"zipped").unwrap();
    std::fs::write(env.path("site.zip"), writer.finish().unwrap().into_inner()).unwrap();
    let out = env.run(&["run", unpack(&env, "site.zip", "out").to_str().unwrap(), "--id", "zip"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(env.path("out/index.html")).unwrap(), "zipped");
}

/// `phased run static` for project `docs` from an uploaded archive, through `nginx`.
fn deploy_upload(env: &Env, nginx: &Nginx, id: &str, archive: &str) -> std::process::Output {
    let mut args: Vec<String> = vec!["run".into(), "static".into(), "--id".into(), id.into()];
    let inputs = nginx.inputs().into_iter().chain([
        "project=docs".to_string(),
        "source.type=upload".to_string(),
        format!("source.file={}", env.path(archive).display()),
        format!("source.work_dir={}", env.path("work").display()),
        format!("base_dir={}", env.path("srv").display()),
    ]);
    for input in inputs {
        args.extend(["-i".to_string(), input]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.command(&args).env("PHASED_PIPELINES", "/nonexistent").output().unwrap()
}

#[test]
fn a_static_deploy_that_fails_before_its_switch_says_the_previous_release_serves_and_where_it_is_checked() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    std::fs::create_dir_all(env.path("dist")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", env.path("dist/passwd")).unwrap();
    tar(env.dir.path(), &["-C", "dist", "-czf", "bad.tgz", "."]);
    std::fs::remove_file(env.path("dist/passwd")).unwrap();
    let port_url = format!("http://docs.localhost:{}/", nginx.port);

    // A first deploy refused at its source: nothing served before, nothing serves now.
    assert_eq!(deploy_upload(&env, &nginx, "docs-0", "bad.tgz").status.code(), Some(1));
    let meta = env.status("docs-0")["phase_metadata"].clone();
    assert_eq!(
        (meta["failedNode"].as_str(), meta["previousReleaseServing"].as_bool()),
        (Some("source.extract"), Some(false)),
        "{meta}"
    );

    // `tar -C dist .`, deployed: the health check URL names the proxy's port.
    site(&env, "v1");
    tar(env.dir.path(), &["-C", "dist", "-czf", "v1.tgz", "."]);
    let out = deploy_upload(&env, &nginx, "docs-1", "v1.tgz");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(nginx.get("docs.localhost", "/").unwrap(), (200, "v1".to_string()));
    assert_eq!(env.status("docs-1")["phase_metadata"]["healthCheckUrl"], port_url);

    // Refused at its source: nothing was switched, so v1 still serves, and says so.
    assert_eq!(deploy_upload(&env, &nginx, "docs-2", "bad.tgz").status.code(), Some(1));
    assert_eq!(nginx.get("docs.localhost", "/").unwrap(), (200, "v1".to_string()));
    let meta = env.status("docs-2")["phase_metadata"].clone();
    assert_eq!(meta["failedNode"], "source.extract", "{meta}");
    assert!(meta.get("reverted").is_none(), "nothing to revert: {meta}");
    assert_eq!(meta["previousReleaseServing"], true, "{meta}");
    assert_eq!(meta["healthCheckUrl"], port_url, "{meta}");
    assert_eq!(meta["containerName"], "nginx");
}

/// A TCP server on 127.0.0.1 that counts the connections it gets and answers each
/// request 500: a receiver that is up but failing.
fn failing_receiver() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let _ = reader.read_exact(&mut vec![0; length]);
            let mut stream = stream;
            let _ = stream
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, count)
}

/// A pipeline that notifies `http://127.0.0.1:PORT/hook` when it succeeds.
fn notifying(env: &Env, port: u16) -> String {
    env.write(
        "hooked.yaml",
        &format!(
            "version: 1\nname: hooked\nnotify:\n  - on: [succeeded]\n    webhook: {{url: \"http://127.0.0.1:{port}/hook\"}}\nnodes:\n  build: {{phase: BUILDING, uses: noop}}\n"
        ),
    )
    .display()
    .to_string()
}

fn command(env: &Env, args: &[&str]) -> Command {
    let mut command = env.command(args);
    command.env("PHASED_ALLOW_PRIVATE_NOTIFY", "1");
    command
}

/// The run's one notification as stored: status, attempts, last error.
fn outbox(env: &Env, id: &str) -> (String, u64, String) {
    let n = env.status(id)["notifications"][0].clone();
    (
        n["status"].as_str().unwrap().into(),
        n["attempts"].as_u64().unwrap(),
        n["last_error"].as_str().unwrap_or("").into(),
    )
}

#[test]
fn run_tries_a_receiver_that_is_down_once_and_says_why_and_where_in_one_clean_line() {
    let env = Env::new();
    // A port that was listening and is closed now: the connection is refused.
    let port = free_port();
    let file = notifying(&env, port);
    let out = command(&env, &["run", &file, "--id", "down"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "the run's own outcome");
    let said = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "warning: the `succeeded` notification (json) of run down was not delivered: connection refused to \
         127.0.0.1:{port} (kept; `phased notify` retries it)"
    );
    assert!(said.lines().any(|l| l == expected), "{said}");
    assert!(!said.contains("WARN") && !said.contains("INFO"), "no tracing lines without -v: {said}");
    let (status, attempts, error) = outbox(&env, "down");
    assert_eq!((status.as_str(), attempts), ("pending", 1), "one attempt, then kept for `phased notify`");
    assert_eq!(error, format!("connection refused to 127.0.0.1:{port}"));

    // With -v, each attempt is traced as well.
    let out = command(&env, &["-v", "run", &file, "--id", "told"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("A notification was not delivered."));
}

#[test]
fn run_makes_one_attempt_and_notify_a_bounded_number_with_the_backoff_in_the_outbox() {
    let env = Env::new();
    let (port, connections) = failing_receiver();
    let file = notifying(&env, port);
    let out = command(&env, &["run", &file, "--id", "failing"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(connections.load(Ordering::SeqCst), 1, "`run` tried once, then exited");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("was not delivered: 127.0.0.1:{port} answered 500 Internal Server Error (kept;")),
        "{said}"
    );

    // A long --wait no longer means a minute of retries: three attempts, each after
    // the backoff recorded in the outbox (1 s, 2 s, 4 s), then it returns.
    let out = command(&env, &["notify", "--wait", "60s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "still pending");
    assert_eq!(connections.load(Ordering::SeqCst), 4, "three more attempts");
    let (status, attempts, error) = outbox(&env, "failing");
    assert_eq!((status.as_str(), attempts), ("pending", 4));
    assert_eq!(error, format!("127.0.0.1:{port} answered 500 Internal Server Error"));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("pending: the `succeeded` notification of run failing (4 attempt(s): 127.0.0.1:"), "{said}");
    assert!(said.contains("; next attempt in "), "{said}");
    assert!(!said.contains("WARN"), "{said}");
    let next_at: i64 = env.sql("SELECT next_at FROM notifications")[0][0].as_deref().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(next_at > now, "the next attempt is recorded in the outbox, in the future");
}

/// Starts `phased serve` on a free port, waits until `up` says it is reachable, sends
/// SIGTERM at once; its exit status and what it said. `None` when another test's
/// server took the port first (this one could not listen).
fn start_then_sigterm(env: &Env, up: &dyn Fn(u16) -> bool) -> Option<(std::process::ExitStatus, String)> {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child =
        env.command(&["serve", "--listen", &listen]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let begin = Instant::now();
    while !up(port) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(begin.elapsed() < Duration::from_secs(20), "the server did not come up");
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(&child, libc::SIGTERM);
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    let mut said = String::new();
    child.stderr.take().unwrap().read_to_string(&mut said).unwrap();
    (!said.contains("cannot listen")).then_some((status, said))
}

#[test]
fn sigterm_right_after_the_server_is_reachable_ends_it_gracefully_every_time() {
    let env = Env::new();
    let accepts = |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok();
    let healthy = |port: u16| support::http_get(port, "localhost", "/healthz").is_ok_and(|(s, _)| s == 200);
    let mut starts = 0;
    while starts < 20 {
        // The earliest moment a client can take it for up: its port accepts a
        // connection (a TCP probe); or its first answer to /healthz.
        let probe: &dyn Fn(u16) -> bool = if starts % 2 == 0 { &accepts } else { &healthy };
        let Some((status, said)) = start_then_sigterm(&env, probe) else { continue };
        assert_eq!(status.code(), Some(0), "start {starts}: ended by {status} instead of exiting: {said}");
        starts += 1;
    }
}

#[test]
fn a_server_whose_stderr_is_closed_keeps_serving() {
    let env = Env::new();
    for _ in 0..5 {
        let (reader, writer) = std::io::pipe().unwrap();
        // Nobody reads what it says (a terminal that went away, a log pipe that died).
        drop(reader);
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child =
            env.command(&["serve", "--listen", &listen]).stdout(Stdio::null()).stderr(writer).spawn().unwrap();
        let begin = Instant::now();
        let exited = loop {
            // Its first line (`listening on ...`) is written before it answers.
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if support::http_get(port, "localhost", "/healthz").is_ok_and(|(s, _)| s == 200) {
                break child.try_wait().unwrap();
            }
            assert!(begin.elapsed() < Duration::from_secs(20), "the server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        };
        match exited {
            // Another test's server took the port first: this one could not listen.
            Some(status) if status.code() == Some(3) => continue,
            Some(status) => panic!("it died once it wrote to its closed stderr: {status}"),
            None => {}
        }
        signal(&child, libc::SIGTERM);
        assert_eq!(wait_timeout(&mut child, Duration::from_secs(20)).code(), Some(0));
        return;
    }
    panic!("no free port could be listened on");
}
