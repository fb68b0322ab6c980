//! Helpers for tests that drive the real `phased` binary against a real SQLite file.

#![allow(dead_code, reason = "each test file uses a different part of this module")]
#![expect(unreachable_pub, reason = "helpers shared by the test binaries")]
#![expect(unsafe_code, reason = "signals to the processes a test started, and the effective uid: syscalls")]

pub mod browser;
pub mod postgres;
pub mod service;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Env {
    pub dir: tempfile::TempDir,
    /// A fresh PostgreSQL database of the cluster `PHASED_TEST_POSTGRES` names, when
    /// set (the suites that run on either store); else a SQLite file in `dir`.
    postgres: Option<String>,
}

impl Env {
    pub fn new() -> Self {
        let postgres = std::env::var("PHASED_TEST_POSTGRES").ok().filter(|u| !u.is_empty());
        Env { dir: tempfile::tempdir().unwrap(), postgres: postgres.map(|base| postgres::create_database(&base)) }
    }

    /// A test folder whose database is a SQLite file, whatever `PHASED_TEST_POSTGRES` says.
    pub fn on_sqlite() -> Self {
        Env { dir: tempfile::tempdir().unwrap(), postgres: None }
    }

    /// A test folder whose database is a fresh one of this PostgreSQL cluster.
    pub fn on_postgres(cluster: &postgres::Postgres) -> Self {
        Env { dir: tempfile::tempdir().unwrap(), postgres: Some(postgres::create_database(&cluster.base_url())) }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The database: `--db` (and `PHASED_DB`) as the commands get it.
    pub fn db(&self) -> PathBuf {
        match &self.postgres {
            Some(url) => PathBuf::from(url),
            None => self.path("state/phased.db"),
        }
    }

    /// Writes a file into the test folder and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_phased"));
        cmd.args(args).env("PHASED_DB", self.db()).env("NO_COLOR", "1").current_dir(self.dir.path());
        // Where a PostgreSQL store's node logs and work folders go: `state`, as a SQLite
        // file's (beside it).
        if self.postgres.is_some() {
            cmd.env("PHASED_DATA_DIR", self.path("state"));
        }
        cmd.env_remove("PHASED_PIPELINES");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// The JSON of `phased status ID --format json`.
    pub fn status(&self, id: &str) -> serde_json::Value {
        let out = self.run(&["status", id, "--format", "json"]);
        assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Lines of a marker file (each step appends its name).
    pub fn marks(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(name)).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Waits until `name` exists (a step reached a point), up to `limit`.
    pub fn wait_for(&self, name: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.path(name).exists() {
            assert!(Instant::now() < deadline, "timed out waiting for {name}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Opens the database directly (a real SQLite file) for assertions.
    pub fn sqlite(&self) -> rusqlite::Connection {
        assert!(self.postgres.is_none(), "this test reads the SQLite file itself");
        rusqlite::Connection::open(self.db()).unwrap()
    }

    /// The rows of a query (SQL both databases read alike), each value as text (NULL:
    /// `None`), read directly from the database for assertions.
    pub fn sql(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match &self.postgres {
            Some(url) => postgres::rows(url, sql),
            None => {
                let conn = self.sqlite();
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                                rusqlite::types::Value::Null => None,
                                rusqlite::types::Value::Integer(v) => Some(v.to_string()),
                                rusqlite::types::Value::Real(v) => Some(v.to_string()),
                                rusqlite::types::Value::Text(v) => Some(v),
                                rusqlite::types::Value::Blob(v) => Some(String::from_utf8_lossy(&v).into_owned()),
                            })
                        })
                        .collect()
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
        }
    }

    /// Everything the database holds, as bytes (the SQLite file and its WAL; every
    /// row of every table of PostgreSQL as text), named by where it is.
    pub fn stored(&self) -> Vec<(String, Vec<u8>)> {
        match &self.postgres {
            Some(url) => postgres::rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                .into_iter()
                .map(|t| {
                    let table = t[0].clone().unwrap();
                    let rows = postgres::rows(url, &format!("SELECT t::text FROM {table} t"));
                    let text: String = rows.into_iter().map(|r| r[0].clone().unwrap_or_default() + "\n").collect();
                    assert!(table != "deployments" || !text.is_empty(), "the runs are in PostgreSQL");
                    (format!("{url} table {table}"), text.into_bytes())
                })
                .collect(),
            None => ["", "-wal", "-shm"]
                .iter()
                .map(|suffix| {
                    let path = self.path(&format!("state/phased.db{suffix}"));
                    (path.display().to_string(), read_all(&path))
                })
                .collect(),
        }
    }

    /// Runs a statement (its SQLite text, or its PostgreSQL one on PostgreSQL);
    /// returns how many rows it changed.
    pub fn execute(&self, sqlite: &str, postgres: &str) -> u64 {
        match &self.postgres {
            Some(url) => {
                let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
                client.execute(postgres, &[]).unwrap()
            }
            None => self.sqlite().execute(sqlite, []).unwrap() as u64,
        }
    }

    /// The one number a query counts.
    pub fn count(&self, sql: &str) -> i64 {
        self.sql(sql)[0][0].as_deref().unwrap().parse().unwrap()
    }

    /// The bytes the database takes (the SQLite file with its WAL, or the PostgreSQL
    /// database's size less an empty one's).
    pub fn stored_size(&self) -> u64 {
        match &self.postgres {
            Some(_) => {
                let size =
                    self.count("SELECT sum(pg_total_relation_size(relid)) FROM pg_catalog.pg_statio_user_tables");
                size as u64
            }
            None => {
                std::fs::metadata(self.db()).unwrap().len()
                    + std::fs::metadata(self.path("state/phased.db-wal")).map_or(0, |m| m.len())
            }
        }
    }

    /// What a database's own check says: SQLite's `PRAGMA integrity_check`; on
    /// PostgreSQL (which keeps its pages itself) that no row outlived its run.
    pub fn integrity(&self) -> String {
        match &self.postgres {
            Some(_) => {
                let orphans = self.count(
                    "SELECT (SELECT count(*) FROM node_checkpoints n WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.id = n.deployment_id)) \
                     + (SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.id = e.deployment_id)) \
                     + (SELECT count(*) FROM phase_history h WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.id = h.deployment_id))",
                );
                if orphans == 0 { "ok".into() } else { format!("{orphans} rows without their run") }
            }
            None => self.sqlite().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap(),
        }
    }

    /// The sequence numbers of the stored events (of one run, or of all), in order.
    pub fn event_seqs(&self, run: Option<&str>) -> Vec<i64> {
        let filter = run.map_or(String::new(), |r| format!(" WHERE deployment_id = '{r}'"));
        self.sql(&format!("SELECT seq FROM events{filter} ORDER BY seq"))
            .into_iter()
            .map(|row| row[0].as_deref().unwrap().parse().unwrap())
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A test's PostgreSQL database goes with its folder (the cluster's disk is shared).
        if let Some(url) = &self.postgres {
            postgres::drop_database(url);
        }
    }
}

/// Whether the tests run as root (servers started for them then need `user root;`).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Events of `--format jsonl` output.
pub fn events(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

pub fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events.iter().map(|e| format!("{} {}", e["event"].as_str().unwrap(), e["node"].as_str().unwrap_or("-"))).collect()
}

/// The processes still carrying this run's marker and this test's database (other
/// test runs on the machine may use the same run ids).
pub fn processes_of(env: &Env, run: &str) -> Vec<u32> {
    let marker = format!("PHASED_RUN={run}");
    let db = format!("PHASED_DB={}", env.db().display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rfind(')').is_some_and(|i| stat[i + 2..].starts_with('Z'));
            !zombie
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|vars| {
                        let mut vars = vars.split(|&b| b == 0);
                        let all: Vec<&[u8]> = vars.by_ref().collect();
                        all.contains(&marker.as_bytes()) && all.contains(&db.as_bytes())
                    })
                    .unwrap_or(false)
        })
        .collect()
}

pub fn kill9(child: &mut Child) {
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    child.wait().unwrap();
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit in {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file under `dir`, in every sub-folder (a missing folder has none).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
    }
    out
}

pub fn read_all(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// A plain HTTP/1.0 GET on 127.0.0.1:`port` with a Host header: status and body
/// (HTTP/1.0, so that the body is never chunked).
pub fn http_get(port: u16, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A free TCP port on 127.0.0.1 (free now; see [`start_on_free_port`] for servers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts a server on a free port and makes sure it is *this* server that answers:
/// tests run in parallel, and two of them can be handed the same free port, in which
/// case one server fails to bind and exits. Then another port is tried.
pub fn start_on_free_port(what: &str, mut spawn: impl FnMut(u16) -> Child) -> (Child, u16) {
    for _ in 0..10 {
        let port = free_port();
        let mut child = spawn(port);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exited = false;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // A server that lost the race for its port exits right after starting.
        std::thread::sleep(Duration::from_millis(100));
        if !exited && child.try_wait().unwrap().is_none() {
            return (child, port);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{what} could not start on a free port");
}

/// A real nginx running under its own prefix on 127.0.0.1, including the route files
/// of `routes/`; stopped when dropped.
pub struct Nginx {
    pub prefix: PathBuf,
    pub port: u16,
    child: Child,
}

impl Nginx {
    pub fn start(prefix: &Path) -> Nginx {
        for dir in ["logs", "tmp", "routes"] {
            std::fs::create_dir_all(prefix.join(dir)).unwrap();
        }
        let p = prefix.display().to_string();
        let (child, port) = start_on_free_port("nginx", |port| {
            // As root, workers would run as `nobody` and could not read test folders.
            let user = if running_as_root() { "user root;" } else { "" };
            let conf = format!(
                "{user}
daemon off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/logs/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    include {p}/routes/*.conf;
    server {{ listen 127.0.0.1:{port} default_server; return 404; }}
}}
"
            );
            std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
            Command::new("nginx")
                .args(["-p", &p, "-c", &format!("{p}/nginx.conf")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx is installed (.ci/run installs it)")
        });
        Nginx { prefix: prefix.to_path_buf(), port, child }
    }

    /// `-i` arguments that point the built-in route action at this nginx.
    pub fn inputs(&self) -> Vec<String> {
        let p = self.prefix.display();
        vec![
            format!("nginx_config_dir={p}/routes"),
            format!("nginx_prefix={p}"),
            format!("nginx_conf={p}/nginx.conf"),
            format!("listen=127.0.0.1:{}", self.port),
        ]
    }

    /// GET `/path` for `host` through this nginx: status and body.
    pub fn get(&self, host: &str, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.port, host, path)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's fast shutdown, workers included.
        // SAFETY: plain syscall on the nginx this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `git` with arguments in `dir`, asserting success; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.test")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.test")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A real `git daemon` serving `repos` over git://, on a free port. The `git-daemon`
/// program is started itself: `git daemon` would start it as a child of its own,
/// which killing the `git` we hold would leave running.
pub fn git_daemon(repos: &Path) -> (Server, u16) {
    let exec = git(Path::new("."), &["--exec-path"]);
    let program = Path::new(&exec).join("git-daemon");
    let (child, port) = start_on_free_port("git daemon", |port| {
        Command::new(&program)
            .args(["--listen=127.0.0.1", &format!("--port={port}"), "--export-all"])
            .arg(format!("--base-path={}", repos.display()))
            .arg(repos)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    (Server(child), port)
}

/// A process this test started, stopped when dropped: SIGTERM first (a server such as
/// nginx then stops its workers too; SIGKILL would leave them running), SIGKILL after
/// five seconds.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: plain syscall on the process this test started.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real caddy with its admin API and one HTTP server (`phased`) on 127.0.0.1;
/// stopped when dropped.
pub struct Caddy {
    pub port: u16,
    pub admin: String,
    _server: Server,
}

impl Caddy {
    pub fn start(dir: &Path) -> Caddy {
        std::fs::create_dir_all(dir).unwrap();
        let admin_port = free_port();
        let (child, port) = start_on_free_port("caddy", |port| {
            let config = serde_json::json!({
                "admin": {"listen": format!("127.0.0.1:{admin_port}")},
                "apps": {"http": {"servers": {"phased": {
                    "listen": [format!("127.0.0.1:{port}")],
                    "routes": [],
                    "automatic_https": {"disable": true}
                }}}}
            });
            std::fs::write(dir.join("caddy.json"), config.to_string()).unwrap();
            Command::new("caddy")
                .args(["run", "--config"])
                .arg(dir.join("caddy.json"))
                .env("XDG_DATA_HOME", dir.join("data"))
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("caddy is installed (.ci/run installs it)")
        });
        Caddy { port, admin: format!("http://127.0.0.1:{admin_port}"), _server: Server(child) }
    }

    /// GET `/path` for `host` through this caddy: status and body.
    pub fn get(&self, host: &str, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.port, host, path)
    }
}

/// GET `/` for a host in a loop on its own thread (for at most two minutes) while a
/// deploy runs: counts the answers whose body is one of `expected`, the rest as failed,
/// and records each change of body.
pub struct RequestLoop {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<LoopResult>,
}

#[derive(Debug, Default)]
pub struct LoopResult {
    pub ok: u64,
    pub failed: u64,
    /// The bodies, each time the body changed.
    pub seen: Vec<String>,
}

impl RequestLoop {
    pub fn start(port: u16, host: &str, expected: &[&str]) -> RequestLoop {
        use std::sync::atomic::Ordering;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (host, expected) = (host.to_string(), expected.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let stop = std::sync::Arc::clone(&done);
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut result = LoopResult::default();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(120) {
                match http_get(port, &host, "/") {
                    Ok((200, body)) if expected.contains(&body) => {
                        result.ok += 1;
                        if result.seen.last() != Some(&body) {
                            result.seen.push(body);
                        }
                    }
                    other => {
                        result.failed += 1;
                        eprintln!("failed request: {other:?}");
                    }
                }
            }
            result
        });
        RequestLoop { done, thread }
    }

    /// Lets the loop run a little longer, then stops it.
    pub fn stop(self) -> LoopResult {
        std::thread::sleep(Duration::from_millis(200));
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A running `phased watch` whose JSON-lines events are collected as they come.
pub struct Watch {
    pub child: Child,
    pub events: Arc<Mutex<Vec<serde_json::Value>>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Watch {
    pub fn start(env: &Env, args: &[&str]) -> Watch {
        let mut all = vec!["watch", "--format", "jsonl"];
        all.extend_from_slice(args);
        Watch::spawn(env.command(&all))
    }

    /// Collects the events of a `phased watch` command (with `--format jsonl`).
    pub fn spawn(mut command: Command) -> Watch {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Watch { child, events, stderr }
    }

    pub fn count(&self, kind: &str) -> usize {
        self.events.lock().unwrap().iter().filter(|e| e["event"] == kind).count()
    }

    /// Waits until `n` runs have ended (ACTIVE, FAILED or superseded).
    pub fn wait_runs_ended(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ended = self.count("run_succeeded") + self.count("run_failed") + self.count("run_interrupted");
            if ended >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {ended} of {n} runs ended; stderr:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits a while and checks that no further run starts.
    pub fn assert_quiet(&self, runs: usize, wait: Duration) {
        std::thread::sleep(wait);
        assert_eq!(self.count("run_started"), runs, "no further run; stderr:\n{}", self.stderr.lock().unwrap());
    }

    pub fn stop(mut self) -> (i32, String) {
        signal(&self.child, libc::SIGINT);
        let status = wait_timeout(&mut self.child, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
        (status.code().unwrap_or(-1), self.stderr.lock().unwrap().clone())
    }
}
