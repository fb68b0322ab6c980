//! Benchmark: `phased serve` end to end, as clients use it, against baselines measured
//! in the same run (the machines are shared and noisy):
//!
//! - API-triggered `noop` runs per second, from the first POST until the stream of all
//!   events has shown every `run_succeeded`, against the same runs started one after
//!   the other by `phased run`;
//! - event latency: from an event's time (`ts`, taken when the change is made, just
//!   before its commit) to its arrival at an SSE client, p50 and p95;
//! - the server's resident memory with 1,000 event-stream clients connected, against
//!   the same server with none.
//!
//! Prints figures; asserts nothing about time. Run: `cargo bench --bench serve [-- N]`

mod http;

use http::Server;

use std::io::BufRead;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PHASED: &str = env!("CARGO_BIN_EXE_phased");

const NOOP: &str = "version: 1\nname: tick\nnodes:\n  a: {phase: BUILDING, uses: noop}\n  b: {phase: HEALTH_CHECK, needs: [a], uses: noop}\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn rss_kb(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The server process, killed when the bench ends.
fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/tick.yaml"), NOOP).unwrap();
    let phased = |args: &[&str]| {
        Command::new(PHASED)
            .args(args)
            .current_dir(dir.path())
            .env("PHASED_DB", dir.path().join("p.db"))
            .output()
            .unwrap()
    };
    let token = String::from_utf8(phased(&["token", "create", "bench"]).stdout).unwrap().trim().to_string();

    // Baseline: the same runs, one `phased run` after the other.
    let begin = Instant::now();
    for _ in 0..n {
        assert!(phased(&["run", "tick"]).status.success());
    }
    let cli = begin.elapsed();

    let port = free_port();
    let child = Command::new(PHASED)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--workers", "4", "--max-streams", "1100"])
        // The 1,000 stream clients all come from 127.0.0.1.
        .args(["--max-connections", "1100", "--max-connections-per-ip", "1100"])
        .current_dir(dir.path())
        .env("PHASED_DB", dir.path().join("p.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let idle_kb = rss_kb(server.0.id());

    // Listen from the current end of the event log.
    let after: i64 = {
        let db = rusqlite::Connection::open(dir.path().join("p.db")).unwrap();
        db.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0)).unwrap()
    };
    let mut stream = http::open_stream(port, &token, after);
    let begin = Instant::now();
    let poster = std::thread::spawn({
        let token = token.clone();
        move || {
            for _ in 0..n {
                http::post_run(port, &token, r#"{"pipeline": "tick"}"#);
            }
        }
    });
    let (mut done, mut latencies, mut line) = (0, Vec::new(), String::new());
    while done < n {
        line.clear();
        stream.read_line(&mut line).unwrap();
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let received = now_ms();
            let event: serde_json::Value = serde_json::from_str(data).unwrap();
            if let Some(ts) = event["ts"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok()) {
                let ts = ts.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0;
                latencies.push(received - ts);
            }
            if event["event"] == "run_succeeded" {
                done += 1;
            }
        }
    }
    let api = begin.elapsed();
    poster.join().unwrap();

    // 1,000 clients on the stream of every run.
    let clients: Vec<_> = (0..1000).map(|_| http::open_stream(port, &token, after)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let busy_kb = rss_kb(server.0.id());
    drop(clients);

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("phased serve, {n} noop runs of 2 nodes (2 shared cores):");
    println!(
        "  API, POST to run_succeeded on the stream: {:>7.1} runs/s   baseline `phased run` one after the other: {:>7.1} runs/s   ({:.2}x)",
        rate(api),
        rate(cli),
        rate(api) / rate(cli)
    );
    println!(
        "  event latency, ts to the SSE client: p50 {:.1} ms, p95 {:.1} ms ({} events)",
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.95),
        latencies.len()
    );
    println!(
        "  server memory: {} kB with 1,000 SSE clients, {} kB idle (+{} kB, {:.1} kB a client)",
        busy_kb,
        idle_kb,
        busy_kb.saturating_sub(idle_kb),
        busy_kb.saturating_sub(idle_kb) as f64 / 1000.0
    );
}
