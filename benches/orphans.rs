//! Benchmark: how long a step's processes live after `phased` is killed with
//! `kill -9`. A step writes the time (ns) to a file as fast as it can, in its own
//! process, in a grandchild, and in a grandchild that left the step's group with
//! `setsid`; the bench kills phased and reads the last time each wrote. The window is
//! (last write - the moment of the kill). Baseline, in the same run: the same writer
//! killed directly by SIGKILL from the bench (the delay of a kill itself and of
//! reading the clock). Median and maximum of N trials. Prints figures; asserts nothing.
//! Run: `cargo bench --bench orphans [-- N]`

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PHASED: &str = env!("CARGO_BIN_EXE_phased");

/// A writer of `time.time_ns()` lines, flushed at every line.
const WRITER: &str = "import os,time,sys\nf=open(sys.argv[1],'a')\nf.write('pid:%d\\n' % os.getpid())\nwhile True:\n    f.write(str(time.time_ns())+'\\n'); f.flush()\n";

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
}

fn last_tick(path: &Path) -> Option<i128> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|l| l.trim().parse().ok())
}

fn wait_for_ticks(paths: &[&Path]) {
    let start = Instant::now();
    while !paths.iter().all(|p| last_tick(p).is_some()) {
        assert!(start.elapsed() < Duration::from_secs(20), "the writers did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a process runs (a zombie, dead but not reaped yet, does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(15);
    let dir = tempfile::tempdir().unwrap();
    let writer = dir.path().join("writer.py");
    std::fs::write(&writer, WRITER).unwrap();
    let w = writer.display();
    let pipeline = dir.path().join("orphans.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1\nname: orphans\nnodes:\n  step:\n    phase: BUILDING\n    uses: shell\n    with:\n      run: |\n        python3 {w} own &\n        sh -c 'python3 {w} grandchild' &\n        setsid python3 {w} escaped &\n        wait\n"
        ),
    )
    .unwrap();
    let (mut own, mut grandchild, mut escaped, mut baseline) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for trial in 0..n {
        let work = dir.path().join(format!("t{trial}"));
        std::fs::create_dir_all(&work).unwrap();
        let mut phased = Command::new(PHASED)
            .args(["run", pipeline.to_str().unwrap(), "--db", "p.db"])
            .current_dir(&work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let files = [work.join("own"), work.join("grandchild"), work.join("escaped")];
        wait_for_ticks(&[&files[0], &files[1], &files[2]]);
        let killed_at = now_ns();
        phased.kill().unwrap();
        phased.wait().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        for (file, out) in files.iter().zip([&mut own, &mut grandchild, &mut escaped]) {
            let last = last_tick(file).unwrap();
            out.push((last - killed_at) as f64 / 1e6);
        }
        // Whatever survived (it should be nothing) is stopped before the next trial, by
        // the pid each writer wrote first.
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if let Some(pid) =
                text.lines().next().and_then(|l| l.strip_prefix("pid:")).and_then(|p| p.parse::<i32>().ok())
                && alive(pid)
            {
                println!("trial {trial}: {} survived phased; killed", file.display());
                // SAFETY: a plain syscall on a process this bench started.
                #[expect(unsafe_code, reason = "kill has no safe wrapper in std")]
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }

        let base = work.join("base");
        let mut direct = Command::new("python3").arg(&writer).arg(&base).spawn().unwrap();
        wait_for_ticks(&[&base]);
        let killed_at = now_ns();
        direct.kill().unwrap();
        direct.wait().unwrap();
        baseline.push((last_tick(&base).unwrap() - killed_at) as f64 / 1e6);
    }
    let row = |name: &str, v: &Vec<f64>| {
        let max = v.iter().cloned().fold(f64::MIN, f64::max);
        println!("{name:<46} {:>8.2} ms {:>8.2} ms", median(v.clone()), max);
    };
    println!("after `kill -9` of phased, last write - kill ({n} trials)   median      max");
    row("baseline: the writer itself killed by SIGKILL", &baseline);
    row("the step's process", &own);
    row("a grandchild (same group)", &grandchild);
    row("a grandchild that called setsid", &escaped);
}
