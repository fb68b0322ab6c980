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
//! `/api/v1/events` (the hub's delivery included). p50, p95 and p99, against
//! baselines measured in the same run on the same server: the round trip of
//! `GET /api/v1/runs/{id}` (one before each measured run, on a connection of its own as
//! the POST), the POST's own answer, and the POSTs of the queued runs (which start
//! nothing). With the CPU `phased serve` and PostgreSQL used while measuring.
//!
//! Prints figures; asserts nothing about time. Run: `cargo bench --bench claim [-- N]`
//! (N runs measured per store, default 300; PHASED_BENCH_QUEUED: the runs queued, 1,000).

mod http;

use http::Server;
mod pg;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PHASED: &str = env!("CARGO_BIN_EXE_phased");

/// The measured pipeline: one `noop` node, no target.
const TICK: &str = "version: 1\nname: tick\nnodes:\n  a: {phase: BUILDING, uses: noop}\n";

/// Runs of one target: the first holds it (its step sleeps), the others wait queued.
const HOLD: &str = "version: 1\nname: hold\nconcurrency: {key: held, policy: queue}\nnodes:\n  a: {phase: BUILDING, uses: shell, with: {run: 'sleep 3600'}}\n";

/// No event for this long: the claim stalled (the bench fails instead of hanging).
const STALL: Duration = Duration::from_secs(60);

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

/// Reads the stream until `event` of run `id`; the event, and when it arrived.
fn wait_for(stream: &mut BufReader<TcpStream>, id: &str, event: &str) -> (serde_json::Value, f64) {
    let mut line = String::new();
    loop {
        line.clear();
        let read = stream.read_line(&mut line).unwrap_or_else(|e| {
            panic!("no event for {STALL:?} while waiting for {event} of run {id} ({e}): the claim stalled")
        });
        assert!(read > 0, "the stream ended");
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

/// What one store gave, times in milliseconds.
#[derive(Default)]
struct Figures {
    /// POST to the `node_started` event's `ts`.
    to_ts: Vec<f64>,
    /// POST to the event's arrival at the SSE client.
    to_client: Vec<f64>,
    /// POST to its answer (202), the measured runs'.
    answered: Vec<f64>,
    /// Baseline: `GET /api/v1/runs/{id}`'s round trip.
    get: Vec<f64>,
    /// Baseline: the POSTs of the queued runs (they start nothing).
    queue_post: Vec<f64>,
    /// Seconds to queue them all.
    queueing: f64,
    /// Seconds the measured runs took, and the CPU seconds meanwhile.
    wall: f64,
    phased_cpu: f64,
    postgres_cpu: f64,
}

/// A `phased serve --workers 2` on `db`, listening; its port.
fn serve(dir: &Path, db: &str) -> (Server, u16) {
    let port = pg::free_port();
    let child = phased(dir, db)
        .args(["serve", "--workers", "2", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let begin = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(begin.elapsed() < Duration::from_secs(20), "the server did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    (server, port)
}

/// Claim-to-start latencies on `db`, `queued` runs waiting, `n` runs measured.
fn claim_to_start(dir: &Path, db: &str, cluster: Option<&pg::Cluster>, queued: usize, n: usize) -> Figures {
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("pipelines/tick.yaml"), TICK).unwrap();
    std::fs::write(dir.join("pipelines/hold.yaml"), HOLD).unwrap();
    let out = phased(dir, db).args(["token", "create", "bench", "--role", "deploy"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (server, port) = serve(dir, db);
    let mut stream = http::open_stream(port, &token, 0);
    stream.get_ref().set_read_timeout(Some(STALL)).unwrap();
    let holder = post(port, &token, "hold");
    wait_for(&mut stream, &holder, "node_started");
    let mut figures = Figures::default();
    let mut last = holder;
    eprintln!("  {}: queueing {queued} runs", dir.display());
    let begin = Instant::now();
    for _ in 0..queued {
        let posted = now_ms();
        last = post(port, &token, "hold");
        figures.queue_post.push(now_ms() - posted);
    }
    if queued > 0 {
        wait_for(&mut stream, &last, "run_queued");
    }
    figures.queueing = begin.elapsed().as_secs_f64();
    eprintln!("  {}: measuring {n} runs (phased serve: pid {})", dir.display(), server.0.id());
    let cpu = || (pg::process_cpu(server.0.id()), cluster.map_or(0.0, pg::Cluster::cpu));
    let (phased_before, postgres_before) = cpu();
    let begin = Instant::now();
    for _ in 0..n {
        let asked = now_ms();
        http::get(port, &token, &format!("/api/v1/runs/{last}"));
        figures.get.push(now_ms() - asked);
        let posted = now_ms();
        let id = post(port, &token, "tick");
        figures.answered.push(now_ms() - posted);
        let (started, arrived) = wait_for(&mut stream, &id, "node_started");
        let ts = humantime::parse_rfc3339(started["ts"].as_str().unwrap()).unwrap();
        figures.to_ts.push(ts.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0 - posted);
        figures.to_client.push(arrived - posted);
        wait_for(&mut stream, &id, "run_succeeded");
        last = id;
    }
    figures.wall = begin.elapsed().as_secs_f64();
    let (phased_after, postgres_after) = cpu();
    (figures.phased_cpu, figures.postgres_cpu) = (phased_after - phased_before, postgres_after - postgres_before);
    figures
}

/// p50, p95 and p99 of `v`.
fn spread(v: &mut [f64]) -> String {
    let (p50, p95, p99) = (percentile(v, 0.5), percentile(v, 0.95), percentile(v, 0.99));
    format!("p50 {p50:6.2}  p95 {p95:6.2}  p99 {p99:6.2} ms")
}

fn report(store: &str, mut f: Figures) {
    let n = f.to_ts.len();
    let verdict = |v: &mut [f64]| {
        if percentile(v, 0.5) <= 5.0 && percentile(v, 0.99) <= 25.0 { "target met" } else { "target missed" }
    };
    println!("  {store} ({} runs queued in {:.1} s)", f.queue_post.len(), f.queueing);
    println!("    claim to start, to the event's ts    {}  {}", spread(&mut f.to_ts), verdict(&mut f.to_ts));
    println!("    claim to start, to the SSE client    {}  {}", spread(&mut f.to_client), verdict(&mut f.to_client));
    println!("    the POST's own answer (202)          {}", spread(&mut f.answered));
    println!("    baseline: GET /api/v1/runs/{{id}}      {}", spread(&mut f.get));
    if !f.queue_post.is_empty() {
        println!("    baseline: POST of a queued run       {}", spread(&mut f.queue_post));
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let per_run = |cpu: f64| 1000.0 * cpu / n as f64;
    let share = |cpu: f64| 100.0 * cpu / (f.wall * cores);
    println!(
        "    CPU while measuring: phased {:.2} s ({:.2} ms a run, {:.0}%), postgres {:.2} s ({:.2} ms a run, {:.0}%) \
         of {:.1} s x {cores} cores",
        f.phased_cpu,
        per_run(f.phased_cpu),
        share(f.phased_cpu),
        f.postgres_cpu,
        per_run(f.postgres_cpu),
        share(f.postgres_cpu),
        f.wall
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
    report("SQLite", claim_to_start(&sqlite, db.to_str().unwrap(), None, queued, n));
    let cluster = pg::Cluster::start(&root.path().join("cluster"));
    let dir = root.path().join("postgres");
    std::fs::create_dir_all(&dir).unwrap();
    let db = cluster.database("claim");
    report("PostgreSQL", claim_to_start(&dir, &db, Some(&cluster), queued, n));
}
