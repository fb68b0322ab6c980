//! The engine through the real binary, a real database (a SQLite file; PostgreSQL
//! when `PHASED_TEST_POSTGRES` names a cluster) and real processes:
//! DAG order and parallelism, retries, timeouts, conditions, crash and resume, fail /
//! fix / resume, concurrent resumers, signals, cancel, secrets, sub-pipelines.

mod support;

use std::time::{Duration, Instant};

use support::{Env, events, kill9, kinds, processes_of, signal, wait_timeout};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A row of the seed's query: id, phase, phase_progress, build_type, source_type,
/// phase_updated_at, status.
type SeedRow = (String, String, i64, Option<String>, Option<String>, String, String);

/// The seed's dashboard query, exactly as written in DESIGN.md section 7 (on the
/// SQLite file, or on PostgreSQL's `jsonb`).
fn seed_query(env: &Env, id: &str) -> Vec<SeedRow> {
    let sql = "SELECT id, phase, phase_progress,
       phase_metadata->>'buildType' as build_type,
       phase_metadata->>'sourceType' as source_type,
       phase_updated_at, status
FROM deployments WHERE id = 'deployment-id' ORDER BY phase_updated_at DESC;"
        .replace("deployment-id", id);
    env.sql(&sql)
        .into_iter()
        .map(|r| {
            let text = |i: usize| r[i].clone().unwrap();
            (text(0), text(1), text(2).parse().unwrap(), r[3].clone(), r[4].clone(), text(5), text(6))
        })
        .collect()
}

const DIAMOND: &str = r#"
version: 1
name: diamond
nodes:
  a:
    phase: PULLING_SOURCE
    weight: 10
    uses: shell
    with: {run: 'echo a >> marks; echo value=from-a >> "$PHASED_OUTPUT"'}
    metadata: {sourceType: git}
  b:
    phase: BUILDING
    weight: 20
    needs: [a]
    uses: shell
    with: {run: 'echo b-start >> marks; sleep 0.4; echo b-end >> marks'}
    metadata: {buildType: docker}
  c:
    phase: BUILDING
    weight: 30
    needs: [a]
    uses: shell
    with: {run: 'echo c-start >> marks; sleep 0.4; echo "c-{{ nodes.a.outputs.value }}" >> marks'}
  d:
    phase: HEALTH_CHECK
    weight: 40
    needs: [b, c]
    uses: shell
    with: {run: 'echo d >> marks'}
    result_metadata: {checked: true}
on_success:
  metadata: {deploymentCompletedAt: "{{ now() }}"}
"#;

#[test]
fn a_diamond_runs_in_order_with_b_and_c_in_parallel_and_monotonic_progress() {
    let env = Env::new();
    let file = env.write("diamond.yaml", DIAMOND);
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "dia", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let marks = env.marks("marks");
    assert_eq!(marks.first().map(String::as_str), Some("a"));
    assert_eq!(marks.last().map(String::as_str), Some("d"));
    let pos = |m: &str| marks.iter().position(|x| x == m).unwrap_or_else(|| panic!("{m} missing in {marks:?}"));
    assert!(pos("b-start") < pos("c-from-a") && pos("c-start") < pos("b-end"), "b and c overlap: {marks:?}");

    let events = events(&out.stdout);
    let progress: Vec<u64> = events.iter().map(|e| e["progress"].as_u64().unwrap()).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress never goes back: {progress:?}");
    assert_eq!(*progress.last().unwrap(), 100);
    assert!(progress[..progress.len() - 1].iter().all(|&p| p < 100), "100 only at ACTIVE: {progress:?}");
    let last = events.last().unwrap();
    assert_eq!((last["event"].as_str(), last["phase"].as_str()), (Some("run_succeeded"), Some("ACTIVE")));
    for key in ["ts", "event", "deployment", "node", "phase", "progress", "metadata"] {
        assert!(events[1].get(key).is_some(), "event without `{key}`: {}", events[1]);
    }

    let status = env.status("dia");
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["phase_progress"], 100);
    assert!(status["phase_metadata"]["deploymentCompletedAt"].is_string());
    assert_eq!(status["nodes"].as_array().unwrap().len(), 4);
    let rows = seed_query(&env, "dia");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].1.as_str(), rows[0].2, rows[0].6.as_str()), ("ACTIVE", 100, "succeeded"));
    // The history keeps every phase update with its metadata: the seed's columns.
    let history: Vec<(String, Option<String>)> = env
        .sql("SELECT phase, metadata->>'buildType' FROM phase_history WHERE deployment_id = 'dia' ORDER BY seq")
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone()))
        .collect();
    assert!(history.contains(&("BUILDING".to_string(), Some("docker".to_string()))), "{history:?}");
    assert_eq!(history.first().unwrap().0, "QUEUED");
    assert_eq!(history.last().unwrap().0, "ACTIVE");
}

/// A chain of `noop` nodes is written in few batches, each holding many history rows
/// and checkpoints (written a few rows to a statement): the history is still numbered
/// 1, 2, ... with no gap, in the order the nodes ran, on both stores.
#[test]
fn a_long_batch_numbers_the_history_without_gaps_in_the_order_nodes_ran() {
    let env = Env::new();
    let mut text = String::from("version: 1\nname: long\nnodes:\n");
    for i in 0..90 {
        let phase = ["BUILDING", "COPYING_FILES", "UPDATING_ROUTES"][i % 3];
        text.push_str(&format!("  n{i}:\n    phase: {phase}\n    uses: noop\n"));
        if i > 0 {
            text.push_str(&format!("    needs: [n{}]\n", i - 1));
        }
    }
    let file = env.write("long.yaml", &text);
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "long", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = env.sql("SELECT seq, node FROM phase_history WHERE deployment_id = 'long' ORDER BY seq");
    let seqs: Vec<i64> = rows.iter().map(|r| r[0].as_deref().unwrap().parse().unwrap()).collect();
    assert!(seqs.len() > 90, "a history row a node at least: {}", seqs.len());
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "numbered 1, 2, ... with no gap");
    let nodes: Vec<usize> = rows.iter().filter_map(|r| r[1].as_deref()?.strip_prefix('n')?.parse().ok()).collect();
    assert!(nodes.windows(2).all(|w| w[0] <= w[1]), "in the order the nodes ran: {nodes:?}");
    assert_eq!((nodes.first(), nodes.last()), (Some(&0), Some(&89)));
    let done = env.sql("SELECT count(*) FROM node_checkpoints WHERE deployment_id = 'long' AND status = 'succeeded'");
    assert_eq!(done[0][0].as_deref(), Some("90"));
}

#[test]
fn a_flaky_node_is_retried_with_backoff_then_succeeds() {
    let env = Env::new();
    let file = env.write(
        "flaky.yaml",
        r#"
version: 1
name: flaky
nodes:
  flaky:
    phase: BUILDING
    retry: {attempts: 3, backoff: 50ms}
    uses: shell
    with: {run: 'echo try >> tries; [ "$(wc -l < tries)" -ge 3 ]'}
"#,
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "flaky", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(env.marks("tries").len(), 3);
    let kinds = kinds(&events(&out.stdout));
    assert_eq!(kinds.iter().filter(|k| *k == "node_retrying flaky").count(), 2, "{kinds:?}");
    assert_eq!(env.status("flaky")["nodes"][0]["attempt"], 3);
}

#[test]
fn a_stuck_node_times_out_its_process_group_is_killed_and_the_run_fails() {
    let env = Env::new();
    let file = env.write(
        "stuck.yaml",
        r#"
version: 1
name: stuck
nodes:
  hang:
    phase: BUILDING
    timeout: 300ms
    uses: shell
    with: {run: 'sleep 30 & sleep 30'}
on_failure:
  metadata: {failedAt: "{{ error.node }}", why: "{{ error.message }}"}
"#,
    );
    let started = Instant::now();
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "stuck"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(10));
    let status = env.status("stuck");
    assert_eq!(status["status"], "failed");
    assert_eq!(status["phase"], "FAILED");
    assert_eq!(status["phase_progress"], 0);
    let meta = &status["phase_metadata"];
    assert_eq!(meta["failedNode"], "hang");
    assert_eq!(meta["failedPhase"], "BUILDING");
    assert_eq!(meta["failedAt"], "hang");
    assert!(meta["error"].as_str().unwrap().contains("timed out after 300ms"), "{meta}");
    assert!(processes_of(&env, "stuck").is_empty(), "the sleeps were killed");
}

#[test]
fn a_false_condition_skips_the_node_and_dependents_still_run() {
    let env = Env::new();
    let file = env.write(
        "cond.yaml",
        r#"
version: 1
name: cond
inputs:
  docs: {type: boolean, default: false}
nodes:
  docs:
    phase: BUILDING
    if: inputs.docs
    uses: shell
    with: {run: 'echo docs >> marks'}
  publish:
    phase: COPYING_FILES
    needs: [docs]
    uses: shell
    with: {run: 'echo publish >> marks'}
"#,
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "cond", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(env.marks("marks"), vec!["publish"]);
    let events = events(&out.stdout);
    let skipped = events.iter().find(|e| e["event"] == "node_skipped").unwrap();
    assert_eq!((skipped["node"].as_str(), skipped["progress"].as_u64()), (Some("docs"), Some(50)));
    assert_eq!(env.status("cond")["nodes"][0]["status"], "skipped");
}

const THREE: &str = r#"
version: 1
name: three
nodes:
  first:
    phase: PULLING_SOURCE
    uses: shell
    with: {run: 'echo first >> marks; echo value=42 >> "$PHASED_OUTPUT"'}
    metadata: {sourceType: git}
  second:
    phase: BUILDING
    needs: [first]
    uses: shell
    with: {run: 'echo "second-{{ nodes.first.outputs.value }}" >> marks; touch second-running; while [ ! -f go ]; do sleep 0.05; done'}
    metadata: {buildType: nodejs}
  third:
    phase: HEALTH_CHECK
    needs: [second]
    uses: shell
    with: {run: 'echo third >> marks'}
"#;

#[test]
fn kill_9_in_the_middle_node_then_resume_reruns_only_what_did_not_finish() {
    let env = Env::new();
    let file = env.write("three.yaml", THREE);
    let mut child = env.spawn(&["run", file.to_str().unwrap(), "--id", "crash"]);
    env.wait_for("second-running", Duration::from_secs(20));
    kill9(&mut child);
    // Nothing the step started outlives phased: not the shell, not the loop's `sleep`.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_of(&env, "crash").is_empty() {
        assert!(Instant::now() < deadline, "processes of the run survived kill -9: {:?}", processes_of(&env, "crash"));
        std::thread::sleep(Duration::from_millis(20));
    }

    // Seen from outside: the holder is gone, so the run is interrupted at BUILDING.
    let status = env.status("crash");
    assert_eq!((status["status"].as_str(), status["phase"].as_str()), (Some("interrupted"), Some("BUILDING")));
    let rows = seed_query(&env, "crash");
    assert_eq!(rows[0].3.as_deref(), Some("nodejs"), "the seed's query reads the current metadata");

    env.write("go", "");
    let out = env.run(&["resume", "crash"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(processes_of(&env, "crash").is_empty());
    // `first` did not run again; its recorded output fed the rerun of `second`.
    assert_eq!(env.marks("marks"), vec!["first", "second-42", "second-42", "third"]);
    let status = env.status("crash");
    assert_eq!((status["status"].as_str(), status["phase_progress"].as_u64()), (Some("succeeded"), Some(100)));
    assert_eq!(status["attempt"], 2);
    let rows = seed_query(&env, "crash");
    assert_eq!((rows[0].1.as_str(), rows[0].2, rows[0].6.as_str()), ("ACTIVE", 100, "succeeded"));
    let human = stdout(&env.run(&["status", "crash"]));
    for word in ["succeeded (attempt 2)", "first", "second", "third", "history", "BUILDING"] {
        assert!(human.contains(word), "status tells the story: {human}");
    }
}

#[test]
fn a_resume_kills_what_an_earlier_attempt_left_running() {
    // A process that escaped its group (setsid) and dropped phased's engine marker is
    // beyond the supervisor's reach; the run's marker in its environment still finds
    // it before the resume.
    let env = Env::new();
    // `second-running` only once the escaped process runs in its own session (before
    // that, a kill of the step's group would take it too).
    let escape = "env -u PHASED_ENGINE setsid sh -c \"touch escaped; exec sleep 60\" & \
                  while [ ! -f escaped ]; do sleep 0.01; done; touch second-running;";
    let file = env.write("three.yaml", &THREE.replace("touch second-running;", escape));
    let mut child = env.spawn(&["run", file.to_str().unwrap(), "--id", "escaped"]);
    env.wait_for("second-running", Duration::from_secs(20));
    kill9(&mut child);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(processes_of(&env, "escaped").len(), 1, "only the escaped sleep is left");
    env.write("go", "");
    let out = env.run(&["resume", "escaped"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("stopped 1 process(es) left running"), "{}", stderr(&out));
    // The rerun of `second` started its own escaped sleep; it is the only one left.
    assert_eq!(processes_of(&env, "escaped").len(), 1);
    let leftover = processes_of(&env, "escaped")[0];
    // SAFETY: plain syscall on a process this test's run started.
    #[expect(unsafe_code, reason = "a signal to a process this test started")]
    unsafe {
        libc::kill(leftover as i32, libc::SIGKILL);
    }
}

#[test]
fn a_command_that_cannot_start_fails_with_the_reason() {
    let env = Env::new();
    let file = env.write(
        "missing.yaml",
        "version: 1\nname: missing\nnodes:\n  go:\n    phase: BUILDING\n    uses: shell\n    with: {command: [no-such-program-xyz, --flag]}\n",
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "missing"]);
    assert_eq!(out.status.code(), Some(1));
    let error = env.status("missing")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert!(error.contains("cannot start `no-such-program-xyz`: No such file or directory"), "{error}");
}

#[test]
fn a_failed_run_is_fixed_then_resumed_at_the_failed_node() {
    let env = Env::new();
    let file = env.write(
        "fix.yaml",
        r#"
version: 1
name: fix
nodes:
  fetch:
    phase: PULLING_SOURCE
    weight: 30
    uses: shell
    with: {run: 'echo fetch >> marks'}
  build:
    phase: BUILDING
    weight: 70
    needs: [fetch]
    uses: shell
    with: {run: 'echo build >> marks; test -f config || { echo "config is missing" >&2; exit 3; }'}
"#,
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "fix"]);
    assert_eq!(out.status.code(), Some(1));
    let status = env.status("fix");
    assert_eq!((status["phase"].as_str(), status["phase_progress"].as_u64()), (Some("FAILED"), Some(0)));
    let meta = &status["phase_metadata"];
    assert_eq!(meta["failedNode"], "build");
    assert_eq!(meta["progressReached"], 30);
    let error = meta["error"].as_str().unwrap();
    assert!(
        error.contains("exited with status 3") && error.contains("config is missing"),
        "log tail in error: {error}"
    );

    env.write("config", "ok");
    let out = env.run(&["resume", "fix"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(env.marks("marks"), vec!["fetch", "build", "build"]);
    assert_eq!(env.status("fix")["status"], "succeeded");
}

#[test]
fn two_concurrent_resumers_never_run_the_same_node() {
    let env = Env::new();
    let file = env.write("three.yaml", THREE);
    let mut child = env.spawn(&["run", file.to_str().unwrap(), "--id", "race"]);
    env.wait_for("second-running", Duration::from_secs(20));
    kill9(&mut child);
    std::fs::remove_file(env.path("second-running")).unwrap();

    let mut one = env.spawn(&["resume", "race"]);
    let mut two = env.spawn(&["resume", "race"]);
    env.wait_for("second-running", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    env.write("go", "");
    let a = wait_timeout(&mut one, Duration::from_secs(30));
    let b = wait_timeout(&mut two, Duration::from_secs(30));
    let mut codes = vec![a.code().unwrap(), b.code().unwrap()];
    codes.sort();
    assert_eq!(codes, vec![0, 2], "one resumer runs, the other is refused");
    let seconds = env.marks("marks").iter().filter(|m| m.starts_with("second")).count();
    assert_eq!(seconds, 2, "second ran once before the crash and once after: {:?}", env.marks("marks"));
    assert_eq!(env.status("race")["status"], "succeeded");
}

#[test]
fn ctrl_c_stops_the_run_with_130_and_resume_finishes_it() {
    let env = Env::new();
    let file = env.write("three.yaml", THREE);
    let mut child = env.spawn(&["run", file.to_str().unwrap(), "--id", "sigint"]);
    env.wait_for("second-running", Duration::from_secs(20));
    signal(&child, libc::SIGINT);
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    assert!(processes_of(&env, "sigint").is_empty(), "the step's processes stop with the run");
    assert_eq!(env.status("sigint")["status"], "interrupted");
    env.write("go", "");
    let out = env.run(&["resume", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(env.status("sigint")["status"], "succeeded");
}

#[test]
fn cancel_stops_a_live_run_which_can_be_resumed() {
    let env = Env::new();
    let file = env.write("three.yaml", THREE);
    let mut child = env.spawn(&["run", file.to_str().unwrap(), "--id", "cx"]);
    env.wait_for("second-running", Duration::from_secs(20));
    let out = env.run(&["cancel", "cx"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(wait_timeout(&mut child, Duration::from_secs(10)).code(), Some(130));
    assert_eq!(env.status("cx")["status"], "cancelled");
    env.write("go", "");
    assert_eq!(env.run(&["resume", "cx"]).status.code(), Some(0));
    assert_eq!(env.status("cx")["status"], "succeeded");
}

#[test]
fn resume_from_a_node_reruns_it_and_what_depends_on_it() {
    let env = Env::new();
    let file = env.write("three.yaml", THREE);
    env.write("go", "");
    assert_eq!(env.run(&["run", file.to_str().unwrap(), "--id", "again"]).status.code(), Some(0));
    let out = env.run(&["resume", "again", "--from", "second"]);
    // A succeeded run is not resumed ...
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("already succeeded"));
    // ... but a failed one can be rerun from a node.
    let file = env.write(
        "fail-last.yaml",
        &THREE
            .replace("echo third >> marks", "echo third >> marks; test -f fixed")
            .replace("name: three", "name: fail_last"),
    );
    std::fs::remove_file(env.path("marks")).unwrap();
    assert_eq!(env.run(&["run", file.to_str().unwrap(), "--id", "from"]).status.code(), Some(1));
    env.write("fixed", "");
    let out = env.run(&["resume", "from", "--from", "second"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(env.marks("marks"), vec!["first", "second-42", "third", "second-42", "third"]);
    let out = env.run(&["resume", "from", "--from", "secnd"]);
    assert_eq!(out.status.code(), Some(0), "succeeded runs are not resumed, even with a typo");
}

#[test]
fn secrets_reach_the_action_but_never_the_database_logs_or_output() {
    let env = Env::new();
    let secret = "hunter2-very-secret-value";
    let file = env.write(
        "secret.yaml",
        r#"
version: 1
name: secret
nodes:
  use:
    phase: BUILDING
    uses: shell
    with:
      run: 'echo "token is $TOKEN"; echo "token=$TOKEN" >> "$PHASED_OUTPUT"; test "$TOKEN" = "$AGAIN" && test -n "$TOKEN" && echo ok >> marks'
      env: {TOKEN: "{{ secrets.token }}", AGAIN: "{{ secrets.token }}"}
    metadata: {auth: "{{ secrets.token }}"}
    result_metadata: {seen: "{{ outputs.token }}"}
  leak:
    phase: HEALTH_CHECK
    needs: [use]
    uses: shell
    with: {run: 'echo "failing with $TOKEN" >&2; exit 1', env: {TOKEN: "{{ secrets.token }}"}}
"#,
    );
    let out = env
        .command(&["run", file.to_str().unwrap(), "--id", "sec", "--format", "jsonl"])
        .env("PHASED_SECRET_TOKEN", secret)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(env.marks("marks"), vec!["ok"], "the action received the real value");
    let status = env.status("sec");
    assert!(status.to_string().contains("***"), "masked, not dropped: {status}");
    let human = env.command(&["status", "sec"]).output().unwrap();

    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("stdout".into(), out.stdout.clone()),
        ("stderr".into(), out.stderr.clone()),
        ("status".into(), human.stdout),
    ];
    places.extend(env.stored());
    for log in support::files_under(&env.path("state/logs")) {
        places.push((log.display().to_string(), support::read_all(&log)));
    }
    assert!(places.len() > 6, "the node logs exist: {:?}", places.iter().map(|p| &p.0).collect::<Vec<_>>());
    for (place, bytes) in places {
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "the secret leaked into {place}");
    }
}

#[test]
fn a_sub_pipeline_is_checkpointed_node_by_node_and_resumes_inside() {
    let env = Env::new();
    env.write(
        "pipelines/sources/slow.yaml",
        r#"
version: 1
name: sources/slow
inputs:
  type: {type: string}
  label: {type: string, required: true}
nodes:
  fetch:
    phase: PULLING_SOURCE
    uses: shell
    with: {run: 'echo "fetch-$L" >> marks', env: {L: '{{ inputs.label }}'}}
    metadata: {sourceType: "{{ inputs.type }}"}
  unpack:
    phase: PULLING_SOURCE
    needs: [fetch]
    uses: shell
    with: {run: 'echo unpack >> marks; touch unpacking; while [ ! -f go ]; do sleep 0.05; done; echo "path=/srv/$L" >> "$PHASED_OUTPUT"', env: {L: '{{ inputs.label }}'}}
outputs:
  path: "{{ nodes.unpack.outputs.path }}"
"#,
    );
    env.write(
        "pipelines/site.yaml",
        r#"
version: 1
name: site
inputs:
  source: {type: object, required: true}
nodes:
  source:
    phase: PULLING_SOURCE
    weight: 50
    pipeline: {select: "{{ inputs.source.type }}", from: {slow: sources/slow}}
    with: "{{ inputs.source }}"
  publish:
    phase: COPYING_FILES
    weight: 50
    needs: [source]
    uses: shell
    with: {run: 'echo "publish-{{ nodes.source.outputs.path }}" >> marks'}
"#,
    );
    let mut child = env.spawn(&["run", "site", "--id", "sub", "-i", "source.type=slow", "-i", "source.label=blog"]);
    env.wait_for("unpacking", Duration::from_secs(20));
    kill9(&mut child);
    let nodes: Vec<(String, String)> = env.status("sub")["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap().to_string(), n["status"].as_str().unwrap().to_string()))
        .collect();
    assert!(nodes.contains(&("source.fetch".into(), "succeeded".into())), "{nodes:?}");
    // It was running when phased died: `status` says it stopped (it runs again on resume).
    assert!(nodes.contains(&("source.unpack".into(), "stopped".into())), "{nodes:?}");
    env.write("go", "");
    let out = env.run(&["resume", "sub"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(env.marks("marks"), vec!["fetch-blog", "unpack", "unpack", "publish-/srv/blog"]);
}

#[test]
fn an_unusable_database_exits_3_and_bad_inputs_exit_2() {
    let env = Env::new();
    let file = env.write("three.yaml", THREE);
    env.write("not-a-dir", "x");
    let out = env
        .command(&["run", file.to_str().unwrap()])
        .env("PHASED_DB", env.path("not-a-dir/db.sqlite"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("not-a-dir"), "names the resource: {}", stderr(&out));
    let garbage = env.write("garbage.db", &"not a database ".repeat(200));
    let out = env.command(&["status"]).env("PHASED_DB", &garbage).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // A PostgreSQL server nobody listens for: named, without its password.
    let url = format!("postgres://ops:s3cret@127.0.0.1:{}/phased", support::free_port());
    let out = env.command(&["run", file.to_str().unwrap()]).env("PHASED_DB", &url).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot connect to the PostgreSQL database `postgres://ops@127.0.0.1:"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("s3cret"), "{}", stderr(&out));

    let out = env.run(&["run", "tests/none.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "bad id!"]);
    assert_eq!(out.status.code(), Some(2));
    env.write("go", "");
    assert_eq!(env.run(&["run", file.to_str().unwrap(), "--id", "dup"]).status.code(), Some(0));
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "dup"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"));
    assert_eq!(env.run(&["resume", "nope"]).status.code(), Some(2));
}

#[test]
fn when_a_run_fails_the_undo_of_finished_nodes_runs_latest_first() {
    let env = Env::new();
    let file = env.write(
        "undo.yaml",
        r#"
version: 1
name: undo
nodes:
  first:
    phase: BUILDING
    uses: shell
    with: {run: 'echo first >> marks; echo token=one >> "$PHASED_OUTPUT"'}
    undo: {uses: shell, with: {run: 'echo "undo-first-{{ outputs.token }}" >> marks'}}
  second:
    phase: COPYING_FILES
    needs: [first]
    uses: shell
    with: {run: 'echo second >> marks'}
    undo: {if: "false", uses: shell, with: {run: 'echo never >> marks'}}
  third:
    phase: CREATING_SYMLINKS
    needs: [second]
    uses: shell
    with: {run: 'echo third >> marks'}
    undo: {uses: shell, with: {run: 'echo undo-third >> marks'}}
  broken:
    phase: HEALTH_CHECK
    needs: [third]
    uses: fail
    with: {message: unhealthy}
on_failure:
  metadata: {reverted: "{{ error.reverted }}"}
"#,
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "undo"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        env.marks("marks"),
        vec!["first", "second", "third", "undo-third", "undo-first-one"],
        "undos run latest first, with the node's outputs; a false `if` skips one"
    );
    let status = env.status("undo");
    assert_eq!(status["phase_metadata"]["reverted"], serde_json::json!(["third", "first"]));
    // Undone nodes and what followed them lose their checkpoints: a resume redoes them.
    let nodes: Vec<(String, String)> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap().to_string(), n["status"].as_str().unwrap().to_string()))
        .collect();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        nodes,
        [pair("broken", "failed"), pair("first", "pending"), pair("second", "pending"), pair("third", "pending")],
        "what was undone (and what came after it) is pending again"
    );
}
