//! No two copies of a step: a holder that cannot renew its lease stops its steps
//! before the lease can expire, so the copy of the process that takes the run over
//! never runs beside the old one. On a real PostgreSQL cluster of each test's own
//! (`scripts/postgres`), with the holder "on another machine" (a UTS namespace with
//! another host name, so that its lease is judged by its heartbeat alone, as it is
//! across machines) and a lease of 5 s on every process.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::postgres::Postgres;
use support::service::{Service, token};
use support::{Env, signal, wait_timeout};

/// One step that writes a timestamped mark every 100 ms for about ten seconds, its
/// shell's pid first (which copy wrote it); on SIGTERM it marks `term` and ends.
const MARKS: &str = r#"
version: 1
name: marks
inputs:
  dir: {type: string, required: true}
nodes:
  long:
    phase: BUILDING
    uses: shell
    with:
      env: {DIR: "{{ inputs.dir }}"}
      run: |
        trap 'echo "$$ term $(date +%s%N)" >> "$DIR/marks"; exit 143' TERM
        i=0
        while [ $i -lt 80 ]; do
          echo "$$ mark $(date +%s%N)" >> "$DIR/marks"
          i=$((i + 1))
          sleep 0.1
        done
        echo "$$ done $(date +%s%N)" >> "$DIR/marks"
"#;

const LEASE: (&str, &str) = ("PHASED_LEASE_TIME", "5s");

/// `phased run` of `file` as if on another machine (host `far-host`), on database `db`.
fn run_elsewhere(env: &Env, db: &str, file: &Path, id: &str, dir: &Path) -> Child {
    let script = "hostname far-host && exec \"$0\" \"$@\"";
    std::process::Command::new("unshare")
        .args(["--uts", "--", "sh", "-c", script, env!("CARGO_BIN_EXE_phased")])
        .args(["run", file.to_str().unwrap(), "--id", id, "-i", &format!("dir={}", dir.display())])
        .env("PHASED_DB", db)
        .env("PHASED_DATA_DIR", env.path("state"))
        .env(LEASE.0, LEASE.1)
        .env("NO_COLOR", "1")
        .current_dir(env.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A mark: the copy (its shell's pid), what (`mark`, `term`, `done`), when (ns).
struct Mark {
    copy: String,
    what: String,
    at: u128,
}

fn marks(dir: &Path) -> Vec<Mark> {
    std::fs::read_to_string(dir.join("marks"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (copy, what, at) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
            Some(Mark { copy: copy.into(), what: what.into(), at })
        })
        .collect()
}

/// The copies in the order they started, each with its first and last mark and what
/// it ended with; asserts there are exactly two and that they never overlapped.
fn two_copies_apart(dir: &Path) -> [(String, u128, u128, String); 2] {
    let marks = marks(dir);
    let mut copies: Vec<(String, u128, u128, String)> = Vec::new();
    for m in &marks {
        match copies.iter_mut().find(|c| c.0 == m.copy) {
            Some(c) => {
                c.1 = c.1.min(m.at);
                c.2 = c.2.max(m.at);
                c.3 = m.what.clone();
            }
            None => copies.push((m.copy.clone(), m.at, m.at, m.what.clone())),
        }
    }
    let text = std::fs::read_to_string(dir.join("marks")).unwrap_or_default();
    assert_eq!(copies.len(), 2, "the holder's copy and the taker's: {text}");
    let (old, new) = (&copies[0], &copies[1]);
    assert!(
        old.2 < new.1,
        "the old copy's last mark comes before the new copy's first: they overlapped for {} ms\n{text}",
        (old.2 - new.1) / 1_000_000
    );
    eprintln!("GAP {} ms", (new.1 - old.2) / 1_000_000);
    assert_eq!(new.3, "done", "the taker's copy ran to its end: {text}");
    [copies[0].clone(), copies[1].clone()]
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let begin = Instant::now();
    while !ok() {
        assert!(begin.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn succeeded_by_taker(env: &Env, id: &str) -> bool {
    env.count(&format!("SELECT count(*) FROM deployments WHERE id = '{id}' AND status = 'succeeded' AND attempt = 2"))
        == 1
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
    text
}

#[test]
fn a_paused_holders_step_is_stopped_before_another_server_runs_its_copy() {
    assert!(support::running_as_root(), "a UTS namespace needs root");
    let pg = Postgres::start();
    let env = Env::on_postgres(&pg);
    let file = env.write("marks.yaml", MARKS);
    let dir = env.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    let mut holder = run_elsewhere(&env, env.db().to_str().unwrap(), &file, "paused", &dir);
    wait_until("the holder's first mark", Duration::from_secs(30), || !marks(&dir).is_empty());
    // The whole holder stops (a pause, a stall of its machine): its step process, in a
    // group of its own, does not stop with it.
    signal(&holder, libc::SIGSTOP);
    let _taker = Service::start_full(&env, &["--workers", "1"], &[LEASE]);
    wait_until("the run taken over and finished", Duration::from_secs(90), || succeeded_by_taker(&env, "paused"));
    let recorded = env.event_seqs(Some("paused"));
    let [old, _] = two_copies_apart(&dir);
    assert_eq!(old.3, "term", "the holder's copy was stopped (SIGTERM), not left to end");
    // Let go, it finds itself fenced: it records nothing more and stops.
    signal(&holder, libc::SIGCONT);
    let code = wait_timeout(&mut holder, Duration::from_secs(60)).code();
    let stderr = stderr_of(&mut holder);
    eprintln!("STDERR {stderr}");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("run `paused` is no longer held by this process"), "{stderr}");
    assert_eq!(env.event_seqs(Some("paused")), recorded, "it recorded nothing more");
    two_copies_apart(&dir);
}

/// A TCP proxy to PostgreSQL that the test can cut: every connection through it is
/// dropped and new ones are closed at once until it is mended. A fault that cannot be
/// made otherwise for one client alone (the other processes reach the server directly).
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(to: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, open2) = (Arc::clone(&cut), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { continue };
                let mut open = open2.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

#[test]
fn a_holder_cut_off_from_postgresql_stops_its_step_before_another_server_runs_its_copy() {
    assert!(support::running_as_root(), "a UTS namespace needs root");
    let pg = Postgres::start();
    let env = Env::on_postgres(&pg);
    let file = env.write("marks.yaml", MARKS);
    let dir = env.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    // The holder reaches PostgreSQL through the proxy; the taker and the test directly.
    let proxy = Proxy::start(pg.port);
    let url = env.db().to_str().unwrap().replace(&format!(":{}/", pg.port), &format!(":{}/", proxy.port));
    let mut holder = run_elsewhere(&env, &url, &file, "cut", &dir);
    wait_until("the holder's first mark", Duration::from_secs(30), || !marks(&dir).is_empty());
    let _taker = Service::start_full(&env, &["--workers", "1"], &[LEASE]);
    proxy.cut();
    wait_until("the run taken over and finished", Duration::from_secs(90), || succeeded_by_taker(&env, "cut"));
    let recorded = env.event_seqs(Some("cut"));
    let [old, _] = two_copies_apart(&dir);
    assert_eq!(old.3, "term", "the holder's copy was stopped (SIGTERM), not left to end");
    // The database is reachable again: the holder's writes are refused, it stops.
    proxy.mend();
    let code = wait_timeout(&mut holder, Duration::from_secs(60)).code();
    let stderr = stderr_of(&mut holder);
    eprintln!("STDERR {stderr}");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("could not renew the lease of run `cut`"), "the supervisor said why: {stderr}");
    assert!(stderr.contains("run `cut` is no longer held by this process"), "{stderr}");
    assert_eq!(env.event_seqs(Some("cut")), recorded, "it recorded nothing more");
    let status = env.status("cut");
    assert_eq!((status["status"].as_str(), status["attempt"].as_u64()), (Some("succeeded"), Some(2)));
}

#[test]
fn a_server_cut_off_past_its_fence_gives_its_run_up_and_takes_it_over_once_the_lease_expired() {
    let pg = Postgres::start();
    let env = Env::on_postgres(&pg);
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/marks.yaml", MARKS);
    let dir = env.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    // One server, on this machine, that reaches PostgreSQL through the proxy.
    let proxy = Proxy::start(pg.port);
    let url = env.db().to_str().unwrap().replace(&format!(":{}/", pg.port), &format!(":{}/", proxy.port));
    let server = Service::start_full(&env, &["--workers", "1"], &[LEASE, ("PHASED_DB", &url)]);
    let body = serde_json::json!({"pipeline": "marks", "id": "again", "inputs": {"dir": dir.to_str().unwrap()}});
    let (status, text) =
        server.send("POST", "/api/v1/runs", Some(&deploy), &[("Content-Type", "application/json")], &body.to_string());
    assert_eq!(status, 202, "{text}");
    wait_until("the first mark", Duration::from_secs(30), || !marks(&dir).is_empty());
    proxy.cut();
    wait_until("the step stopped by the fence", Duration::from_secs(30), || {
        marks(&dir).iter().any(|m| m.what == "term")
    });
    // Reachable again before anyone took the run over: the server gave it up all the
    // same (its step is gone), and takes it over itself once its lease has expired,
    // without waiting for its own process to die.
    proxy.mend();
    wait_until("the run taken over and finished", Duration::from_secs(90), || succeeded_by_taker(&env, "again"));
    let [old, _] = two_copies_apart(&dir);
    assert_eq!(old.3, "term");
}
