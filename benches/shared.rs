//! Benchmark: the shared store. Against baselines measured in the same run (the
//! machines are shared and noisy), on a throw-away PostgreSQL cluster of its own
//! (`scripts/postgres`, Debian's server with its defaults but `fsync=off` as in the
//! tests; SQLite in WAL with `synchronous=NORMAL`, the default, does not fsync each
//! commit either):
//!
//! - runs per second through `phased serve` with 1, 2 and 4 worker processes (each
//!   its own `phased serve --workers 1`, as on separate machines) on one PostgreSQL
//!   database, against one worker on a SQLite file: N two-node `noop` runs queued at
//!   once through the API, timed from the first POST until the database counts them
//!   all succeeded;
//! - per-node overhead on PostgreSQL: `phased run` of a chain of 200 `noop` nodes less
//!   a chain of 1, per node, as a ratio to one PostgreSQL commit (a one-row INSERT, by
//!   a client on the same socket).
//!
//! Prints figures; asserts nothing about time. Run: `cargo bench --bench shared [-- N]`

mod http;

use http::Server;
mod pg;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PHASED: &str = env!("CARGO_BIN_EXE_phased");

const TICK: &str = "version: 1\nname: tick\nnodes:\n  a: {phase: BUILDING, uses: noop}\n  b: {phase: HEALTH_CHECK, needs: [a], uses: noop}\n";

fn phased(dir: &Path, db: &str) -> Command {
    let mut cmd = Command::new(PHASED);
    cmd.current_dir(dir).env("PHASED_DB", db).env("PHASED_DATA_DIR", dir.join("data")).env("NO_COLOR", "1");
    cmd
}

fn serve(dir: &Path, db: &str) -> (Server, u16) {
    let port = pg::free_port();
    let child = phased(dir, db)
        .args(["serve", "--workers", "1", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let begin = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(begin.elapsed() < Duration::from_secs(20), "the server did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    (Server(child), port)
}

fn token(dir: &Path, db: &str) -> String {
    let out = phased(dir, db).args(["token", "create", "bench", "--role", "deploy"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// How many runs `phased status` counts as succeeded.
fn succeeded(dir: &Path, db: &str) -> usize {
    let out = phased(dir, db).args(["status", "--format", "json"]).output().unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let list = runs.get("runs").and_then(|r| r.as_array()).or_else(|| runs.as_array()).cloned().unwrap_or_default();
    list.iter().filter(|r| r["status"] == "succeeded").count()
}

/// What one measurement of runs per second gave.
struct Rate {
    runs_per_second: f64,
    wall: f64,
    /// CPU seconds of the `phased serve` processes (and their children).
    phased_cpu: f64,
    /// CPU seconds of the PostgreSQL server and its backends.
    postgres_cpu: f64,
}

/// Runs per second of `workers` servers on `db`, `n` runs queued at once.
fn runs_per_second(dir: &Path, db: &str, workers: usize, n: usize, cluster: Option<&pg::Cluster>) -> Rate {
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("pipelines/tick.yaml"), TICK).unwrap();
    let token = token(dir, db);
    let servers: Vec<(Server, u16)> = (0..workers).map(|_| serve(dir, db)).collect();
    let cpu = || {
        let phased: f64 = servers.iter().map(|(s, _)| pg::process_cpu(s.0.id())).sum();
        (phased, cluster.map_or(0.0, pg::Cluster::cpu))
    };
    let (phased_before, postgres_before) = cpu();
    let begin = Instant::now();
    for i in 0..n {
        http::post_run(servers[i % workers].1, &token, r#"{"pipeline": "tick"}"#);
    }
    while succeeded(dir, db) < n {
        assert!(begin.elapsed() < Duration::from_secs(600), "not done");
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = begin.elapsed().as_secs_f64();
    let (phased_after, postgres_after) = cpu();
    Rate {
        runs_per_second: n as f64 / wall,
        wall,
        phased_cpu: phased_after - phased_before,
        postgres_cpu: postgres_after - postgres_before,
    }
}

/// The CPU the processes used, in seconds and as a share of the machine's cores.
fn cpu_line(rate: &Rate) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let share = |s: f64| 100.0 * s / (rate.wall * cores);
    format!(
        "CPU: phased {:.2} s ({:.0}%), postgres {:.2} s ({:.0}%) of {:.2} s x {cores} cores",
        rate.phased_cpu,
        share(rate.phased_cpu),
        rate.postgres_cpu,
        share(rate.postgres_cpu),
        rate.wall
    )
}

fn chain(dir: &Path, nodes: usize) -> PathBuf {
    let mut text = format!("version: 1\nname: chain{nodes}\nnodes:\n");
    for i in 0..nodes {
        let needs = if i == 0 { String::new() } else { format!(", needs: [n{}]", i - 1) };
        text.push_str(&format!("  n{i}: {{phase: BUILDING, uses: noop{needs}}}\n"));
    }
    let file = dir.join(format!("chain{nodes}.yaml"));
    std::fs::write(&file, text).unwrap();
    file
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run_time(dir: &Path, db: &str, file: &Path, runs: usize) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let begin = Instant::now();
                let out = phased(dir, db).args(["run", file.to_str().unwrap(), "--format", "jsonl"]).output().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                begin.elapsed()
            })
            .collect(),
    )
}

/// One PostgreSQL commit: a one-row INSERT in its own transaction (median of 1,000).
fn commit(url: &str) -> Duration {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client.batch_execute("CREATE TABLE IF NOT EXISTS bench_commit (v bigint)").unwrap();
    let insert = client.prepare("INSERT INTO bench_commit (v) VALUES ($1)").unwrap();
    median(
        (0..1000i64)
            .map(|i| {
                let begin = Instant::now();
                client.execute(&insert, &[&i]).unwrap();
                begin.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(300);
    let root = tempfile::tempdir().unwrap();
    let cluster = pg::Cluster::start(&root.path().join("cluster"));
    println!("runs per second through `phased serve`, {n} two-node noop runs queued at once");
    let sqlite_dir = root.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir).unwrap();
    let sqlite_db = sqlite_dir.join("phased.db");
    let sqlite = runs_per_second(&sqlite_dir, sqlite_db.to_str().unwrap(), 1, n, None);
    let baseline = sqlite.runs_per_second;
    println!("  SQLite, 1 worker (baseline)      {baseline:8.1} runs/s                       {}", cpu_line(&sqlite));
    // Each against the one before: 2 workers against 1, 4 against 2.
    let mut before: Option<(usize, f64)> = None;
    for workers in [1, 2, 4] {
        let dir = root.path().join(format!("pg{workers}"));
        std::fs::create_dir_all(&dir).unwrap();
        let db = cluster.database(&format!("bench{workers}"));
        let rate = runs_per_second(&dir, &db, workers, n, Some(&cluster));
        let per_second = rate.runs_per_second;
        let against = before.map_or(String::new(), |(w, r)| format!(", {:.2}x {w} worker(s)", per_second / r));
        before = Some((workers, per_second));
        println!(
            "  PostgreSQL, {workers} worker{}            {per_second:8.1} runs/s  ({:.2}x the baseline{against})  {}",
            if workers == 1 { " " } else { "s" },
            per_second / baseline,
            cpu_line(&rate)
        );
    }

    let dir = root.path().join("nodes");
    std::fs::create_dir_all(&dir).unwrap();
    let db = cluster.database("nodes");
    let (one, many) = (chain(&dir, 1), chain(&dir, 200));
    let base = run_time(&dir, &db, &one, 5);
    let long = run_time(&dir, &db, &many, 5);
    let per_node = long.saturating_sub(base) / 199;
    let commit = commit(&db);
    println!("per-node overhead on PostgreSQL (`phased run`, 200 chained noop nodes less 1)");
    println!(
        "  per node {:7.1} us; one PostgreSQL commit {:6.1} us; ratio {:.2}",
        per_node.as_secs_f64() * 1e6,
        commit.as_secs_f64() * 1e6,
        per_node.as_secs_f64() / commit.as_secs_f64()
    );
}
