//! Two harnesses of the hostile campaign, kept in the repository: random `kill -9` of
//! `phased` (and of the resumes after it), and resumers racing for one run. Seeded;
//! small in CI, long in the documented soak (docs/reliability.md):
//!
//!     PHASED_SOAK_TRIALS=300 PHASED_SOAK_SEED=7 cargo nextest run --test soak --no-capture
//!
//! Each prints a summary table: trials, passes, and the reason for every node that ran
//! more than once (at least once is the guarantee for a node whose success was not yet
//! committed when the process died; a node recorded as succeeded never runs again).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{Env, kill9, wait_timeout};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn trials(default: usize) -> usize {
    std::env::var("PHASED_SOAK_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("PHASED_SOAK_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(42)
}

/// Six shell nodes (a chain with a fan-out), each a few random milliseconds long,
/// each appending its name to `marks` when it runs.
const PIPELINE: &str = r#"
version: 1
name: soak
nodes:
  fetch: {phase: PULLING_SOURCE, uses: shell, with: {run: 'sleep 0.0$(( $$ % 5 )); echo fetch >> marks'}}
  build: {phase: BUILDING, needs: [fetch], uses: shell, with: {run: 'sleep 0.0$(( $$ % 7 )); echo build >> marks'}}
  lint: {phase: BUILDING, needs: [fetch], uses: shell, with: {run: 'sleep 0.0$(( $$ % 3 )); echo lint >> marks'}}
  copy: {phase: COPYING_FILES, needs: [build, lint], uses: shell, with: {run: 'sleep 0.0$(( $$ % 4 )); echo copy >> marks'}}
  link: {phase: CREATING_SYMLINKS, needs: [copy], uses: shell, with: {run: 'echo link >> marks'}}
  check: {phase: HEALTH_CHECK, needs: [link], uses: shell, with: {run: 'sleep 0.0$(( $$ % 6 )); echo check >> marks'}}
"#;

const NODES: [&str; 6] = ["fetch", "build", "lint", "copy", "link", "check"];

/// The nodes recorded as succeeded; none while the database (or the run) does not
/// exist yet (a kill during the first start).
fn succeeded_nodes(env: &Env, id: &str) -> Vec<String> {
    if !env.db().exists() {
        return Vec::new();
    }
    let db = env.sqlite();
    let Ok(mut stmt) =
        db.prepare("SELECT node FROM node_checkpoints WHERE deployment_id = ?1 AND status = 'succeeded'")
    else {
        return Vec::new();
    };
    stmt.query_map([id], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Whether the run was recorded at all (a kill may come before it is).
fn recorded(env: &Env, id: &str) -> bool {
    env.db().exists() && env.run(&["status", id]).status.success()
}

fn integrity(env: &Env) -> String {
    env.sqlite().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

#[test]
fn random_kill_9_and_resume_always_ends_active_and_never_reruns_a_finished_node() {
    let (n, seed) = (trials(8), seed());
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (mut kills, mut passes, mut reruns) = (0, 0, Vec::new());
    for trial in 0..n {
        let env = Env::new();
        env.write("soak.yaml", PIPELINE);
        let id = format!("soak{trial}");
        // node -> succeeded before one of the kills (so it must never run after it)
        let mut durable: HashMap<String, usize> = HashMap::new();
        let mut runs_before: HashMap<String, usize> = HashMap::new();
        let mut child = env.spawn(&["run", "soak.yaml", "--id", &id]);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let delay = rng.below(150);
            std::thread::sleep(Duration::from_millis(delay));
            let finished = child.try_wait().unwrap().is_some();
            let kill = attempt <= 4 && !finished && rng.below(4) != 0;
            if kill {
                kill9(&mut child);
                kills += 1;
                let marks = env.marks("marks");
                for node in succeeded_nodes(&env, &id) {
                    durable.entry(node.clone()).or_insert_with(|| marks.iter().filter(|m| **m == node).count());
                }
                for node in NODES {
                    runs_before.insert(node.to_string(), marks.iter().filter(|m| *m == node).count());
                }
                child = if recorded(&env, &id) {
                    env.spawn(&["resume", &id])
                } else {
                    env.spawn(&["run", "soak.yaml", "--id", &id])
                };
                continue;
            }
            let status = wait_timeout(&mut child, Duration::from_secs(60));
            if env.status(&id)["status"] != "succeeded" {
                // The last process ended without finishing (killed between our look and
                // our kill, or a resume that found it already running): resume again.
                assert!(attempt < 20, "trial {trial}: no end after {attempt} attempts ({status:?})");
                child = env.spawn(&["resume", &id]);
                continue;
            }
            break;
        }
        assert_eq!(integrity(&env), "ok", "trial {trial}");
        let marks = env.marks("marks");
        for node in NODES {
            let times = marks.iter().filter(|m| *m == node).count();
            assert!(times >= 1, "trial {trial}: `{node}` never ran: {marks:?}");
            if let Some(&at_kill) = durable.get(node) {
                assert_eq!(
                    times, at_kill,
                    "trial {trial}: `{node}` had succeeded before a kill and ran again: {marks:?}"
                );
            }
            if times > 1 {
                reruns.push((trial, node, times, "running, or done but not committed, when killed"));
            }
        }
        passes += 1;
    }
    println!("kill -9 harness (seed {seed}): {n} trials, {passes} ACTIVE after resume, {kills} kills");
    println!("  integrity_check ok in every trial; no node recorded as succeeded ran again");
    println!("  nodes run more than once (at least once): {}", reruns.len());
    for (trial, node, times, why) in &reruns {
        println!("    trial {trial:>3}  {node:<6} x{times}  {why}");
    }
    assert_eq!(passes, n);
}

#[test]
fn racing_resumers_leave_exactly_one_holder_and_the_run_active() {
    let (n, seed) = (trials(5), seed());
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for trial in 0..n {
        let env = Env::new();
        env.write(
            "race.yaml",
            "version: 1\nname: race\nnodes:\n  first: {phase: BUILDING, uses: shell, with: {run: 'echo first >> marks; while [ ! -f go ]; do sleep 0.01; done'}}\n  second: {phase: HEALTH_CHECK, needs: [first], uses: shell, with: {run: 'echo second >> marks'}}\n",
        );
        let id = format!("race{trial}");
        let mut child = env.spawn(&["run", "race.yaml", "--id", &id]);
        // The line itself, not only the file (made an instant before it is written).
        let begin = std::time::Instant::now();
        while !env.marks("marks").contains(&"first".to_string()) {
            assert!(begin.elapsed() < Duration::from_secs(10), "trial {trial}: `first` did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        kill9(&mut child);
        let racers = 3 + rng.below(4) as usize;
        let mut children: Vec<_> = (0..racers).map(|_| env.spawn(&["resume", &id])).collect();
        std::thread::sleep(Duration::from_millis(rng.below(200)));
        env.write("go", "");
        let mut ran = 0;
        for child in &mut children {
            let status = wait_timeout(child, Duration::from_secs(60));
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            let outcome = match status.code() {
                Some(0) if stderr.contains("already succeeded") => "0: already succeeded",
                Some(0) => {
                    ran += 1;
                    "0: ran it"
                }
                Some(2) if stderr.contains("is being run by process") => "2: held by another resumer",
                other => panic!("trial {trial}: a resumer ended with {other:?}: {stderr}"),
            };
            *outcomes.entry(outcome.to_string()).or_default() += 1;
        }
        assert_eq!(ran, 1, "trial {trial}: exactly one resumer runs it");
        assert_eq!(env.status(&id)["status"], "succeeded", "trial {trial}: the run is never left without a holder");
        assert_eq!(integrity(&env), "ok");
        let marks = env.marks("marks");
        assert_eq!(marks.iter().filter(|m| *m == "second").count(), 1, "trial {trial}: {marks:?}");
        assert_eq!(marks.iter().filter(|m| *m == "first").count(), 2, "first ran before the kill and once after");
    }
    println!("racing resumers (seed {seed}): {n} trials, each ACTIVE with exactly one holder");
    let mut rows: Vec<_> = outcomes.into_iter().collect();
    rows.sort();
    for (outcome, count) in rows {
        println!("  {count:>4}  {outcome}");
    }
}
