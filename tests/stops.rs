//! How steps stop (SIGTERM to their process group, SIGKILL after `grace`), what
//! outlives a killed engine (nothing), and the event log stored with a sequence number
//! that increases across the database. Real `phased` processes, real `sh` steps, a
//! real SQLite file.

mod support;

use std::time::{Duration, Instant};

use support::{Env, events, kill9, processes_of, signal, wait_timeout};

/// A step that cleans up on SIGTERM: its trap appends to `cleaned`.
fn trapping(timeout: &str, grace: &str) -> String {
    format!(
        r#"
version: 1
name: trapping
nodes:
  work:
    phase: BUILDING
    timeout: {timeout}
    grace: {grace}
    uses: shell
    with: {{run: 'trap "echo cleaned >> cleaned; exit 3" TERM; touch running; while true; do sleep 0.05; done'}}
"#
    )
}

#[test]
fn ctrl_c_cancel_and_a_timeout_let_a_steps_trap_run_before_it_stops() {
    let env = Env::new();
    let file = env.write("trap.yaml", &trapping("5m", "5s"));
    let file = file.to_str().unwrap();

    let mut child = env.spawn(&["run", file, "--id", "sigint"]);
    env.wait_for("running", Duration::from_secs(20));
    signal(&child, libc::SIGINT);
    assert_eq!(wait_timeout(&mut child, Duration::from_secs(10)).code(), Some(130));
    assert_eq!(env.marks("cleaned"), ["cleaned"], "the trap ran on Ctrl-C");
    assert_eq!(env.status("sigint")["status"], "interrupted");

    std::fs::remove_file(env.path("running")).unwrap();
    let mut child = env.spawn(&["run", file, "--id", "cancelled"]);
    env.wait_for("running", Duration::from_secs(20));
    assert_eq!(env.run(&["cancel", "cancelled"]).status.code(), Some(0));
    assert_eq!(wait_timeout(&mut child, Duration::from_secs(10)).code(), Some(130));
    assert_eq!(env.marks("cleaned"), ["cleaned", "cleaned"], "the trap ran on cancel");
    assert_eq!(env.status("cancelled")["status"], "cancelled");

    let file = env.write("timeout.yaml", &trapping("300ms", "5s"));
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "timeout"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(env.marks("cleaned"), ["cleaned", "cleaned", "cleaned"], "the trap ran on timeout");
    let error = env.status("timeout")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert!(error.contains("timed out after 300ms"), "{error}");
}

#[test]
fn a_step_that_ignores_sigterm_is_killed_when_its_grace_is_over() {
    let env = Env::new();
    let file = env.write(
        "stubborn.yaml",
        r#"
version: 1
name: stubborn
nodes:
  work:
    phase: BUILDING
    timeout: 200ms
    grace: 300ms
    uses: shell
    with: {run: 'trap "" TERM; touch running; while true; do sleep 0.05; done'}
"#,
    );
    let started = Instant::now();
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "stubborn"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(8), "SIGKILL came after the grace: {:?}", started.elapsed());
    assert!(processes_of(&env, "stubborn").is_empty(), "nothing of the step is left");
    let log = std::fs::read_to_string(env.path("state/logs/stubborn/work.log")).unwrap();
    assert!(log.contains("SIGTERM, then SIGKILL after 300ms"), "{log}");
}

#[test]
fn after_kill_9_of_phased_nothing_a_step_started_survives() {
    let env = Env::new();
    let file = env.write(
        "orphans.yaml",
        r#"
version: 1
name: orphans
nodes:
  work:
    phase: BUILDING
    uses: shell
    with: {run: 'sleep 300 & sleep 300 & (sleep 300 &) ; touch running; while true; do sleep 0.05; done'}
"#,
    );
    let mut child = env.spawn(&["run", file.to_str().unwrap(), "--id", "orphans"]);
    env.wait_for("running", Duration::from_secs(20));
    assert!(processes_of(&env, "orphans").len() >= 4, "the step and its background sleeps run");
    kill9(&mut child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_of(&env, "orphans").is_empty() {
        assert!(Instant::now() < deadline, "left running: {:?}", processes_of(&env, "orphans"));
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_event_is_stored_with_a_sequence_that_increases_across_runs() {
    let env = Env::new();
    let file = env.write(
        "two.yaml",
        "version: 1\nname: two\nnodes:\n  a: {phase: BUILDING, uses: noop}\n  b: {phase: HEALTH_CHECK, needs: [a], uses: noop}\n",
    );
    let first = env.run(&["run", file.to_str().unwrap(), "--id", "one", "--format", "jsonl"]);
    let second = env.run(&["run", file.to_str().unwrap(), "--id", "two", "--format", "jsonl"]);
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(second.status.code(), Some(0));
    let printed: Vec<serde_json::Value> = events(&first.stdout).into_iter().chain(events(&second.stdout)).collect();
    let seqs: Vec<i64> = printed.iter().map(|e| e["seq"].as_i64().expect("every printed event has its seq")).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "increasing across both runs: {seqs:?}");

    let stored: Vec<(i64, String, String, Option<String>, String)> = env
        .sql("SELECT seq, deployment_id, event, node, data FROM events ORDER BY seq")
        .into_iter()
        .map(|r| {
            let text = |i: usize| r[i].clone().unwrap();
            (text(0).parse().unwrap(), text(1), text(2), r[3].clone(), text(4))
        })
        .collect();
    assert_eq!(stored.len(), printed.len(), "what was printed is what was stored");
    for ((seq, run, event, node, data), shown) in stored.iter().zip(&printed) {
        assert_eq!(*seq, shown["seq"].as_i64().unwrap());
        assert_eq!(run, shown["deployment"].as_str().unwrap());
        assert_eq!(event, shown["event"].as_str().unwrap());
        assert_eq!(node.as_deref(), shown["node"].as_str());
        let mut data: serde_json::Value = serde_json::from_str(data).unwrap();
        data["seq"] = (*seq).into();
        assert_eq!(&data, shown, "the stored JSON is the printed JSON");
    }
    let names: Vec<&str> = stored.iter().filter(|s| s.1 == "one").map(|s| s.2.as_str()).collect();
    assert_eq!(
        names,
        ["run_started", "node_started", "node_succeeded", "node_started", "node_succeeded", "run_succeeded"]
    );
}

#[test]
fn a_steps_output_file_never_outlives_it_and_an_output_holding_a_secret_reads_masked() {
    let env = Env::new();
    let file = env.write(
        "leak.yaml",
        r#"
version: 1
name: leak
nodes:
  emit:
    phase: BUILDING
    uses: shell
    with: {run: 'echo "token=$TOKEN" >> "$PHASED_OUTPUT"; echo "plain=visible" >> "$PHASED_OUTPUT"', env: {TOKEN: '{{ secrets.token }}'}}
  use:
    phase: BUILDING
    needs: [emit]
    uses: shell
    with: {run: 'printf "%s %s" "$GOT" "$PLAIN" > received', env: {GOT: "{{ nodes.emit.outputs.token }}", PLAIN: "{{ nodes.emit.outputs.plain }}"}}
  broken:
    phase: HEALTH_CHECK
    needs: [use]
    uses: shell
    with: {run: 'echo "again=$TOKEN" >> "$PHASED_OUTPUT"; exit 1', env: {TOKEN: '{{ secrets.token }}'}}
"#,
    );
    let run = |args: &[&str]| env.command(args).env("PHASED_SECRET_TOKEN", "s3cr3t-value").output().unwrap();
    assert_eq!(run(&["run", file.to_str().unwrap(), "--id", "leak"]).status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(env.path("received")).unwrap(), "*** visible", "documented: masked");
    let leftovers: Vec<std::path::PathBuf> = support::files_under(&env.path("state"))
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| String::from_utf8_lossy(&b).contains("s3cr3t-value")))
        .collect();
    assert!(leftovers.is_empty(), "the secret stays in no file, the failed step's output included: {leftovers:?}");

    // Killed with phased: the next resume clears what the step had written.
    let slow = env.write(
        "slow.yaml",
        "version: 1\nname: slow\nnodes:\n  hold: {phase: BUILDING, uses: shell, with: {run: 'echo \"t=$TOKEN\" >> \"$PHASED_OUTPUT\"; touch holding; while [ ! -f go ]; do sleep 0.05; done', env: {TOKEN: '{{ secrets.token }}'}}}\n",
    );
    let mut child = env
        .command(&["run", slow.to_str().unwrap(), "--id", "slow"])
        .env("PHASED_SECRET_TOKEN", "s3cr3t-value")
        .spawn()
        .unwrap();
    env.wait_for("holding", Duration::from_secs(20));
    kill9(&mut child);
    let written = env.path("state/work/slow/hold.1.output");
    assert!(written.exists(), "the step had written its output when phased died");
    env.write("go", "");
    assert_eq!(run(&["resume", "slow"]).status.code(), Some(0));
    assert!(!written.exists());
}

#[test]
fn a_huge_line_of_output_is_capped_where_it_is_recorded_and_kept_whole_in_the_log() {
    let env = Env::new();
    let file = env.write(
        "loud.yaml",
        "version: 1\nname: loud\nnodes:\n  shout: {phase: BUILDING, uses: shell, with: {run: 'head -c 5000000 /dev/zero | tr \"\\\\0\" x; echo; exit 1'}}\n",
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "loud", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.len() < 200_000, "events carry a capped error: {} bytes", out.stdout.len());
    let status = env.run(&["status", "loud", "--format", "json"]);
    assert!(status.stdout.len() < 200_000, "status prints {} bytes", status.stdout.len());
    let detail: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let error = detail["phase_metadata"]["error"].as_str().unwrap();
    assert!(error.contains("more bytes in the node's log"), "says where the rest is: {}", &error[error.len() - 200..]);
    let db = env.stored_size();
    assert!(db < 2_000_000, "the database stays small: {db} bytes");
    let log = std::fs::metadata(env.path("state/logs/loud/shout.log")).unwrap().len();
    assert!(log > 5_000_000, "the log keeps the whole line: {log} bytes");
}

/// Peak resident memory of a process (kB), read while it runs.
fn watch_peak(child: &mut std::process::Child) -> (std::process::ExitStatus, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(hwm) = text.lines().find_map(|l| l.strip_prefix("VmHWM:"))
        {
            peak = peak.max(hwm.trim().trim_end_matches("kB").trim().parse().unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_100_mb_line_is_streamed_to_the_log_in_flat_memory_with_its_secrets_masked() {
    let env = Env::new();
    // 100 MB without a newline, a secret every 9,973 bytes (so that some straddle the
    // parts the line is written in), then exit 1.
    let file = env.write(
        "flood.yaml",
        "version: 1\nname: flood\nnodes:\n  flood:\n    phase: BUILDING\n    uses: shell\n    with:\n      run: |\n        python3 -c \"import sys; s=sys.stdout; chunk=('x'*9973 + 'hunter2-secret'); [s.write(chunk) for _ in range(10000)]; s.write('x'*200000); s.flush()\"\n        exit 1\n",
    );
    let mut child = env
        .command(&["run", file.to_str().unwrap(), "--id", "flood"])
        .env("PHASED_SECRET_TOKEN", "hunter2-secret")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (status, peak_kb) = watch_peak(&mut child);
    assert_eq!(status.code(), Some(1));
    assert!(peak_kb < 64 * 1024, "phased's peak memory was {peak_kb} kB for a 100 MB line");
    let log = std::fs::read(env.path("state/logs/flood/flood.log")).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(!text.contains("hunter2"), "a secret split between two parts of the line is masked too");
    assert_eq!(text.matches("***").count(), 10_000, "every secret is there, masked");
    assert_eq!(text.matches('x').count(), 9973 * 10_000 + 200_000, "every other byte is kept");
    let detail = env.status("flood");
    let error = detail["phase_metadata"]["error"].as_str().unwrap();
    assert!(error.len() < 32 * 1024 && error.contains("more bytes in the node's log"), "{}", error.len());
    assert!(!error.contains("hunter2"));
}
