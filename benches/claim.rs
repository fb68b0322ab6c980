//! Benchmark: claim to start. The time from `POST /api/v1/runs` (the request about to
//! be sent) to the run's first `node_started`, on SQLite and on PostgreSQL (a
//! throw-away cluster of the bench's own, `fsync=off` as in the tests), through the
//! real `phased serve --workers 2`, with 1,000 runs queued that no worker may take
//! (they wait behind a running run of their target, whose step sleeps), so a claim
//! passes over them. One run at a time: each is posted once the one before succeeded,
//! so no figure includes waiting for a worker.
//!
//! Two figures per run: to the event's `ts` (taken when the node starts, just before
//! its commit; milliseconds, truncated) and to its arrival at an SSE client of
//! `/api/v1/events` (the hub's delivery included). p50 and p99.
//!
//! Prints figures; asserts nothing about time. Run: `cargo bench --bench claim [-- N]`
//! (N runs measured per store, default 300; PHASED_BENCH_QUEUED: the runs queued, 1,000).

mod http;
mod pg;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PHASED: &str = env!("CARGO_BIN_EXE_phased");

/// The measured pipeline: one `noop` node, no target.
const TICK: &str = "version: 1\nname: tick\nnodes:\n  a: {phase: BUILDING, uses: noop}\n";

/// Runs of one target: the first holds it (its step sleeps), the others wait queued.
const HOLD: &str = "version: 1\nname: hold\nconcurrency: {key: held, policy: queue}\nnodes:\n  a: {phase: BUILDING, uses: shell, with: {run: 'sleep 3600'}}\n";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// Posts a run of `pipeline`; its id.
fn post(port: u16, token: &str, pipeline: &str) -> String {
    let answer = http::post_run(port, token, &format!(r#"{{"pipeline": "{pipeline}"}}"#));
    answer["id"].as_str().unwrap().to_string()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The stream of every run's events, its response head read.
fn open_stream(port: u16, token: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /api/v1/events?after=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            return reader;
        }
    }
}

/// Reads the stream until `event` of run `id`; the event, and when it arrived.
fn wait_for(stream: &mut BufReader<TcpStream>, id: &str, event: &str) -> (serde_json::Value, f64) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stream.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let arrived = now_ms();
            let value: serde_json::Value = serde_json::from_str(data).unwrap();
            if value["deployment"] == id && value["event"] == event {
                return (value, arrived);
            }
        }
    }
}

fn phased(dir: &Path, db: &str) -> Command {
    let mut cmd = Command::new(PHASED);
    cmd.current_dir(dir).env("PHASED_DB", db).env("PHASED_DATA_DIR", dir.join("data")).env("NO_COLOR", "1");
    cmd
}

/// Claim-to-start latencies (ms) on `db`: to the event's `ts`, and to the SSE client.
fn claim_to_start(dir: &Path, db: &str, queued: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("pipelines/tick.yaml"), TICK).unwrap();
    std::fs::write(dir.join("pipelines/hold.yaml"), HOLD).unwrap();
    let out = phased(dir, db).args(["token", "create", "bench", "--role", "deploy"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = pg::free_port();
    let child = phased(dir, db)
        .args(["serve", "--workers", "2", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let begin = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(begin.elapsed() < Duration::from_secs(20), "the server did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut stream = open_stream(port, &token);
    let holder = post(port, &token, "hold");
    wait_for(&mut stream, &holder, "node_started");
    let mut last = holder;
    for _ in 0..queued {
        last = post(port, &token, "hold");
    }
    wait_for(&mut stream, &last, "run_queued");
    let (mut to_ts, mut to_client) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let posted = now_ms();
        let id = post(port, &token, "tick");
        let (started, arrived) = wait_for(&mut stream, &id, "node_started");
        let ts = humantime::parse_rfc3339(started["ts"].as_str().unwrap()).unwrap();
        to_ts.push(ts.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0 - posted);
        to_client.push(arrived - posted);
        wait_for(&mut stream, &id, "run_succeeded");
    }
    (to_ts, to_client)
}

fn report(store: &str, (mut to_ts, mut to_client): (Vec<f64>, Vec<f64>)) {
    println!(
        "  {store:<10} to the event's ts: p50 {:5.1} ms, p99 {:5.1} ms;  to the SSE client: p50 {:5.1} ms, p99 {:5.1} ms",
        percentile(&mut to_ts, 0.5),
        percentile(&mut to_ts, 0.99),
        percentile(&mut to_client, 0.5),
        percentile(&mut to_client, 0.99),
    );
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(300);
    let queued: usize = std::env::var("PHASED_BENCH_QUEUED").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let root = tempfile::tempdir().unwrap();
    println!(
        "claim to start: POST /api/v1/runs to the run's first node_started, {n} runs one at a time, \
         {queued} runs queued behind a busy target (targets: p50 <= 5 ms, p99 <= 25 ms)"
    );
    let sqlite = root.path().join("sqlite");
    std::fs::create_dir_all(&sqlite).unwrap();
    let db = sqlite.join("phased.db");
    report("SQLite", claim_to_start(&sqlite, db.to_str().unwrap(), queued, n));
    let cluster = pg::Cluster::start(&root.path().join("cluster"));
    let dir = root.path().join("postgres");
    std::fs::create_dir_all(&dir).unwrap();
    let db = cluster.database("claim");
    report("PostgreSQL", claim_to_start(&dir, &db, queued, n));
}
