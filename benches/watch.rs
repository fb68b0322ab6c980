//! Benchmark: latency from a file change to the start of the redeploy under
//! `phased watch`, median and 95th percentile, for a 100 ms quiet period and for the
//! default (300 ms). The baseline is the quiet period itself: by design nothing can
//! start before it has passed, so the figure that matters is the latency above it.
//! Drives the real binary; prints figures, asserts nothing about time.
//!
//! Run: `cargo bench --bench watch`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SAMPLES: usize = 25;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn measure(quiet_ms: u64) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(&pipeline, "version: 1\nname: w\nnodes:\n  a: {phase: BUILDING, uses: noop}\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_phased"))
        .args(["watch", "--format", "jsonl", "--debounce", &format!("{quiet_ms}ms"), "--path"])
        .arg(&site)
        .arg(&pipeline)
        .env("PHASED_DB", dir.path().join("state/phased.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });
    let wait_for = |kind: &str| loop {
        let (at, line) = rx.recv_timeout(Duration::from_secs(30)).expect("watch answers");
        if line.contains(&format!("\"event\":\"{kind}\"")) {
            return at;
        }
    };
    wait_for("run_succeeded");
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        std::thread::sleep(Duration::from_millis(50));
        let changed = Instant::now();
        std::fs::write(site.join(format!("f{i}")), "x").unwrap();
        let started = wait_for("run_started");
        samples.push(started - changed);
        wait_for("run_succeeded");
    }
    // SAFETY: plain syscall on our own child.
    #[expect(unsafe_code, reason = "Ctrl-C to the phased this benchmark started")]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let _ = child.wait();
    samples.sort();
    samples
}

fn main() {
    println!("watch: latency from a file change to run_started, {SAMPLES} changes each");
    println!("{:>7}  {:>9}  {:>9}  {:>14}  {:>14}", "quiet", "median", "p95", "median - quiet", "p95 - quiet");
    for quiet_ms in [100, 300] {
        let samples = measure(quiet_ms);
        let quiet = Duration::from_millis(quiet_ms);
        let (median, p95) = (percentile(&samples, 0.5), percentile(&samples, 0.95));
        println!(
            "{:>5}ms  {:>7.1}ms  {:>7.1}ms  {:>12.1}ms  {:>12.1}ms  (median {:.2}x the quiet period)",
            quiet_ms,
            median.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3,
            (median.saturating_sub(quiet)).as_secs_f64() * 1e3,
            (p95.saturating_sub(quiet)).as_secs_f64() * 1e3,
            median.as_secs_f64() / quiet.as_secs_f64()
        );
    }
}
