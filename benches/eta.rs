//! Benchmark: how right the ETA is. Replays a recorded history: N runs of a four-node
//! pipeline (two in a row, beside one long node, then a last one) whose steps sleep
//! durations drawn from a seeded distribution (each node its own mean, +-30%), through
//! the real `phased` binary on one database. For every run after the first five, at
//! 25, 50 and 75% progress, the event's `eta_seconds` is compared with the time the
//! run really had left. Baseline, in the same run: the naive estimate (the mean length
//! of the earlier runs, times the share of progress left). Prints the mean absolute
//! errors; asserts nothing. Run: `cargo bench --bench eta [-- N]`

use std::process::Command;

const PHASED: &str = env!("CARGO_BIN_EXE_phased");

const PIPELINE: &str = "version: 1\nname: replay\ninputs: {a: {type: number}, b: {type: number}, c: {type: number}, d: {type: number}}\nnodes:\n  a: {phase: BUILDING, weight: 10, uses: shell, with: {run: 'sleep {{ inputs.a }}'}}\n  b: {phase: COPYING_FILES, weight: 10, needs: [a], uses: shell, with: {run: 'sleep {{ inputs.b }}'}}\n  c: {phase: BUILDING, weight: 10, uses: shell, with: {run: 'sleep {{ inputs.c }}'}}\n  d: {phase: HEALTH_CHECK, weight: 10, needs: [b, c], uses: shell, with: {run: 'sleep {{ inputs.d }}'}}\n";

/// Means, in seconds: a -> b (0.25) beside c (0.30), then d.
const MEANS: [f64; 4] = [0.10, 0.15, 0.30, 0.05];

/// A small seeded generator (xorshift), so that every run of the bench replays the
/// same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn ts(event: &serde_json::Value) -> f64 {
    let text = event["ts"].as_str().unwrap();
    humantime::parse_rfc3339(text).unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("replay.yaml"), PIPELINE).unwrap();
    let mut rng = Rng(0x5eed_1234_abcd);
    let mut lengths: Vec<f64> = Vec::new();
    // Per checkpoint (25, 50, 75%): the errors of the ETA and of the baseline.
    let mut errors = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for run in 0..n {
        let mut command = Command::new(PHASED);
        command.current_dir(dir.path()).args(["run", "replay.yaml", "--format", "jsonl", "-q"]);
        for (name, mean) in ["a", "b", "c", "d"].iter().zip(MEANS) {
            let seconds = mean * (0.7 + 0.6 * rng.next());
            command.args(["-i", &format!("{name}={seconds:.3}")]);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let events: Vec<serde_json::Value> =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let (start, end) = (ts(&events[0]), ts(events.last().unwrap()));
        if run >= 5 {
            let mean = lengths.iter().sum::<f64>() / lengths.len() as f64;
            for (k, share) in [25u64, 50, 75].iter().enumerate() {
                let Some(at) = events.iter().find(|e| e["progress"].as_u64().unwrap_or(0) >= *share) else { continue };
                let left = end - ts(at);
                if let Some(eta) = at["eta_seconds"].as_f64() {
                    errors[k].0.push((eta - left).abs());
                }
                let naive = mean * (1.0 - at["progress"].as_f64().unwrap() / 100.0);
                errors[k].1.push((naive - left).abs());
            }
        }
        lengths.push(end - start);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!("ETA over a replayed history ({n} runs, the first 5 as history only), mean absolute error:");
    for (k, share) in [25, 50, 75].iter().enumerate() {
        let (eta, naive) = (mean(&errors[k].0), mean(&errors[k].1));
        println!(
            "  at {share}%: ETA {:>6.1} ms   baseline (mean length x progress left) {:>6.1} ms   ({:.2}x)   [{} runs]",
            eta * 1000.0,
            naive * 1000.0,
            eta / naive,
            errors[k].0.len()
        );
    }
    println!("  mean run length {:.0} ms", mean(&lengths) * 1000.0);
}
