//! Benchmark: the `phased` process as a user runs it, each figure against a baseline
//! measured in the same run (the machines are shared and noisy):
//!
//! - start-up: `phased --version` and `phased status` on an empty database, against
//!   spawning `/bin/true` (wall time and CPU, from the children's rusage);
//! - a chained `noop` node: (1,000-node chain - 1-node chain) / 999, against one SQLite
//!   commit of one row in the same mode (WAL, synchronous=NORMAL);
//! - a fanned-out `noop` node at `--parallel 64`, the same way;
//! - a `shell` step running `true`: (200 chained steps - 1) / 199, against a bare
//!   spawn-and-wait of `sh -c true`;
//! - `phased validate` of 5,000 nodes, against `phased --version` (what is left is the
//!   validation itself; the library figure against the bare YAML parse is
//!   `cargo bench --bench validate`).
//!
//! Every run gets a database of its own. Prints figures; asserts nothing about time.
//! Run: `cargo bench --bench process`

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PHASED: &str = env!("CARGO_BIN_EXE_phased");

/// Wall time and CPU (user + system) of one child process.
#[derive(Clone, Copy)]
struct Cost {
    wall: Duration,
    cpu: Duration,
}

fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_CHILDREN has no preconditions.
    #[expect(unsafe_code, reason = "getrusage has no safe wrapper in std")]
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

fn run(cmd: &mut Command) -> Cost {
    let cpu = children_cpu();
    let start = Instant::now();
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().expect("the command starts");
    let wall = start.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    Cost { wall, cpu: children_cpu() - cpu }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median wall and CPU of `n` runs.
fn measure(n: usize, mut make: impl FnMut() -> Command) -> Cost {
    let costs: Vec<Cost> = (0..n).map(|_| run(&mut make())).collect();
    Cost { wall: median(costs.iter().map(|c| c.wall).collect()), cpu: median(costs.iter().map(|c| c.cpu).collect()) }
}

fn phased(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(PHASED);
    cmd.args(args).env("PHASED_DB", dir.join("phased.db")).current_dir(dir);
    cmd
}

/// `phased` on a database of its own: a run's figure does not depend on what earlier
/// runs left in the file (a WAL checkpoint of a grown database lands on a random run).
fn phased_fresh(dir: &Path, args: &[&str]) -> Command {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let mut cmd = phased(dir, args);
    let db = dir.join(format!("db{}", RUN.fetch_add(1, Ordering::Relaxed))).join("phased.db");
    cmd.env("PHASED_DB", db);
    cmd
}

fn chain(dir: &Path, name: &str, nodes: usize, chained: bool, uses: &str) -> PathBuf {
    let mut text = format!("version: 1\nname: {name}\nnodes:\n");
    for i in 0..nodes {
        text.push_str(&format!("  n{i}:\n    phase: BUILDING\n    {uses}\n"));
        if chained && i > 0 {
            text.push_str(&format!("    needs: [n{}]\n", i - 1));
        }
    }
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The per-node cost of a pipeline shape: (n-node run - 1-node run) / (n - 1).
fn per_node(dir: &Path, nodes: usize, chained: bool, uses: &str, parallel: &str, runs: usize) -> Duration {
    let big = chain(dir, &format!("big{nodes}{chained}"), nodes, chained, uses);
    let one = chain(dir, &format!("one{chained}"), 1, chained, uses);
    let time = |file: &Path| {
        let file = file.to_str().unwrap().to_string();
        measure(runs, || phased_fresh(dir, &["run", &file, "--parallel", parallel])).wall
    };
    let (big, one) = (time(&big), time(&one));
    println!("  ({nodes} nodes: {}, 1 node: {})", ms(big), ms(one));
    big.saturating_sub(one) / (nodes as u32 - 1)
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    println!("process: the phased binary, each figure against a baseline measured in this run");
    println!("{:<44} {:>12} {:>12} {:>14} {:>8}", "what", "phased", "baseline", "baseline is", "ratio");

    let spawn = measure(101, || Command::new("/bin/true"));
    let version = measure(101, || phased(dir, &["--version"]));
    println!(
        "{:<44} {:>12} {:>12} {:>14} {:>8}",
        "phased --version (wall)",
        ms(version.wall),
        ms(spawn.wall),
        "spawn true",
        ratio(version.wall, spawn.wall)
    );
    println!(
        "{:<44} {:>12} {:>12} {:>14} {:>8}",
        "phased --version (CPU)",
        ms(version.cpu),
        ms(spawn.cpu),
        "spawn true",
        ratio(version.cpu, spawn.cpu.max(Duration::from_micros(1)))
    );
    run(&mut phased(dir, &["status"]));
    let status = measure(101, || phased(dir, &["status"]));
    println!(
        "{:<44} {:>12} {:>12} {:>14} {:>8}",
        "phased status, empty database (wall)",
        ms(status.wall),
        ms(spawn.wall),
        "spawn true",
        ratio(status.wall, spawn.wall)
    );
    println!(
        "{:<44} {:>12} {:>12} {:>14} {:>8}",
        "phased status, empty database (CPU)",
        ms(status.cpu),
        ms(spawn.cpu),
        "spawn true",
        ratio(status.cpu, spawn.cpu.max(Duration::from_micros(1)))
    );

    let commit = common::commit_cost(dir, "NORMAL");
    let chained = per_node(dir, 1_000, true, "uses: noop", "8", 5);
    println!(
        "{:<44} {:>12} {:>12} {:>14} {:>8}",
        "chained noop node (1,000 - 1) / 999",
        us(chained),
        us(commit),
        "1 commit",
        ratio(chained, commit)
    );
    let fanned = per_node(dir, 1_000, false, "uses: noop", "64", 5);
    println!(
        "{:<44} {:>12} {:>12} {:>14} {:>8}",
        "fanned-out noop node, --parallel 64",
        us(fanned),
        us(commit),
        "1 commit",
        ratio(fanned, commit)
    );

    let sh = {
        let n = 200;
        let start = Instant::now();
        for _ in 0..n {
            let status = Command::new("/bin/sh").args(["-c", "true"]).stdin(Stdio::null()).status().unwrap();
            assert!(status.success());
        }
        start.elapsed() / n
    };
    let step = per_node(dir, 200, true, "uses: shell\n    with: {run: 'true'}", "8", 5);
    println!(
        "{:<44} {:>12} {:>12} {:>14} {:>8}",
        "chained shell step `true` (200 - 1) / 199",
        us(step),
        us(sh),
        "sh -c true",
        ratio(step, sh)
    );

    let mut text = String::from("version: 1\nname: big\ninputs: {tag: {type: string, default: v1}}\nnodes:\n");
    for i in 0..5_000 {
        text.push_str(&format!(
            // The values reach the script through `env:` (a caller's input in `run:` is a
            // `shell-injection` error since the trust-boundary work).
            "  n{i}:\n    phase: BUILDING\n    uses: shell\n    with: {{run: 'echo \"$T\"', env: {{T: \"{{{{ inputs.tag }}}}{}\"}}}}\n    metadata: {{step: \"{i}\"}}\n",
            if i > 0 { format!(" {{{{ nodes.n{}.outputs.v }}}}", i - 1) } else { String::new() }
        ));
        if i > 0 {
            text.push_str(&format!("    needs: [n{}]\n", i - 1));
        }
    }
    let file = dir.join("validate.yaml");
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap().to_string();
    let validate = measure(11, || phased(dir, &["validate", &file]));
    println!(
        "{:<44} {:>12} {:>12} {:>14} {:>8}",
        "phased validate, 5,000 nodes (wall)",
        ms(validate.wall),
        ms(version.wall),
        "--version",
        ratio(validate.wall, version.wall)
    );
}
