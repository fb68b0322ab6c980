//! `phased watch` with real file changes, through the real binary.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Env, Watch, signal, wait_timeout};

/// A deploy that records how many files it saw and what `version` said.
const DEPLOY: &str = r#"
version: 1
name: copy
inputs:
  delay: {type: number, default: 0}
nodes:
  copy:
    phase: COPYING_FILES
    uses: shell
    with:
      run: 'v=$(cat site/version 2>/dev/null); n=$(ls site | wc -l); touch "read-$v"; sleep "$DELAY"; echo "files=$n version=$v" >> deploys.log'
      env: {DELAY: "{{ inputs.delay }}"}
"#;

#[test]
fn a_burst_of_200_writes_gives_one_redeploy_that_sees_all_of_them() {
    let env = Env::new();
    let file = env.write("deploy.yaml", DEPLOY);
    env.write("site/version", "1");
    let watch = Watch::start(&env, &[file.to_str().unwrap(), "--path", "site", "--debounce", "200ms"]);
    watch.wait_runs_ended(1, Duration::from_secs(20));
    for i in 0..200 {
        std::fs::write(env.path(&format!("site/f{i}.txt")), "x").unwrap();
    }
    watch.wait_runs_ended(2, Duration::from_secs(20));
    watch.assert_quiet(2, Duration::from_millis(800));
    assert_eq!(env.marks("deploys.log"), vec!["files=1 version=1", "files=201 version=1"]);
    let (code, stderr) = watch.stop();
    assert_eq!(code, 130);
    assert!(stderr.contains("and 195 more changed"), "says which files triggered it: {stderr}");
}

/// Once the first deploy has read `version` (it is then busy for a second), writes 2,
/// 3 and 4 in separate bursts, and waits until two runs have ended and no third starts.
fn change_version_three_times_during_the_first_deploy(env: &Env, watch: &Watch) {
    env.wait_for("read-1", Duration::from_secs(20));
    for v in 2..=4 {
        env.write("site/version", &v.to_string());
        std::thread::sleep(Duration::from_millis(150));
    }
    watch.wait_runs_ended(2, Duration::from_secs(30));
    watch.assert_quiet(2, Duration::from_millis(1500));
}

#[test]
fn changes_during_a_run_cancel_it_and_one_follow_up_deploys_the_last_state() {
    let env = Env::new();
    let file = env.write("deploy.yaml", DEPLOY);
    env.write("site/version", "1");
    // `b` runs after `copy`: a run stopped at the next safe point never starts `b`.
    let text = DEPLOY.to_string()
        + "  b:\n    phase: HEALTH_CHECK\n    needs: [copy]\n    uses: shell\n    with: {run: 'echo b >> b.log'}\n";
    std::fs::write(&file, text).unwrap();
    let watch = Watch::start(&env, &[file.to_str().unwrap(), "--path", "site", "--debounce", "100ms", "-i", "delay=1"]);
    change_version_three_times_during_the_first_deploy(&env, &watch);
    // The first run finished its running node, started nothing more, and stopped.
    assert_eq!(watch.count("run_interrupted"), 1);
    assert_eq!(env.marks("deploys.log"), vec!["files=1 version=1", "files=1 version=4"]);
    assert_eq!(env.marks("b.log"), vec!["b"], "only the second run reached `b`");
    watch.stop();
}

#[test]
fn with_on_change_queue_the_run_finishes_and_exactly_one_follow_up_runs() {
    let env = Env::new();
    let file = env.write("deploy.yaml", DEPLOY);
    env.write("site/version", "1");
    let args =
        [file.to_str().unwrap(), "--path", "site", "--debounce", "100ms", "--on-change", "queue", "-i", "delay=1"];
    let watch = Watch::start(&env, &args);
    change_version_three_times_during_the_first_deploy(&env, &watch);
    assert_eq!(watch.count("run_succeeded"), 2);
    assert_eq!(env.marks("deploys.log"), vec!["files=1 version=1", "files=1 version=4"]);
    watch.stop();
}

#[test]
fn a_step_that_writes_into_the_watched_folder_does_not_trigger_itself() {
    let env = Env::new();
    let file = env.write(
        "deploy.yaml",
        r#"
version: 1
name: writer
nodes:
  build:
    phase: BUILDING
    uses: shell
    with:
      run: 'mkdir -p dist && date +%s%N > dist/stamp && echo built >> builds.log'
      cwd: site
      writes: [dist, builds.log]
"#,
    );
    env.write("site/index.html", "hi");
    env.write("site/.gitignore", "*.swp\n");
    // The database lives inside the watched folder too.
    let watch =
        Watch::start(&env, &[file.to_str().unwrap(), "--path", "site", "--debounce", "100ms", "--ignore", "tmp/**"]);
    std::thread::sleep(Duration::from_millis(50));
    watch.wait_runs_ended(1, Duration::from_secs(20));
    env.write("site/notes.swp", "ignored by .gitignore");
    env.write("site/tmp/scratch", "ignored by --ignore");
    env.write("site/.git/HEAD", "ignored: .git");
    watch.assert_quiet(1, Duration::from_millis(1000));
    env.write("site/index.html", "changed");
    watch.wait_runs_ended(2, Duration::from_secs(20));
    watch.assert_quiet(2, Duration::from_millis(1000));
    assert_eq!(env.marks("site/builds.log").len(), 2);
    watch.stop();
}

#[test]
fn the_database_inside_the_watched_folder_does_not_loop() {
    let env = Env::new();
    let file = env.write("deploy.yaml", DEPLOY);
    env.write("site/version", "1");
    let mut cmd =
        env.command(&["watch", "--format", "jsonl", file.to_str().unwrap(), "--path", "site", "--debounce", "100ms"]);
    cmd.env("PHASED_DB", env.path("site/.phased/phased.db"));
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    signal(&child, libc::SIGINT);
    wait_timeout(&mut child, Duration::from_secs(10));
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    let starts = out.lines().filter(|l| l.contains("\"run_started\"")).count();
    assert_eq!(starts, 1, "the database (and the node logs beside it) triggered deploys:\n{out}");
    assert!(env.path("site/.phased/phased.db").exists());
}

#[test]
fn an_invalid_edit_of_the_pipeline_keeps_the_last_good_version() {
    let env = Env::new();
    let file = env.write("deploy.yaml", DEPLOY);
    env.write("site/version", "1");
    let watch = Watch::start(&env, &[file.to_str().unwrap(), "--path", "site", "--debounce", "100ms"]);
    watch.wait_runs_ended(1, Duration::from_secs(20));
    std::fs::write(&file, DEPLOY.replace("uses: shell", "uses: shel")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(watch.stderr.lock().unwrap().contains("unknown action `shel`"), "diagnostics printed");
    assert_eq!(watch.count("run_started"), 1, "an invalid pipeline deploys nothing");
    env.write("site/version", "2");
    watch.wait_runs_ended(2, Duration::from_secs(20));
    std::fs::write(&file, DEPLOY.replace("version=$v", "v=$v")).unwrap();
    watch.wait_runs_ended(3, Duration::from_secs(20));
    assert_eq!(env.marks("deploys.log"), vec!["files=1 version=1", "files=1 version=2", "files=1 v=2"]);
    let (_, stderr) = watch.stop();
    assert!(stderr.contains("keeping the last good version"), "{stderr}");
    assert!(stderr.contains("using the new version"), "{stderr}");
}

#[test]
fn ctrl_c_during_a_deploy_leaves_it_resumable() {
    let env = Env::new();
    let file = env.write("deploy.yaml", DEPLOY);
    env.write("site/version", "1");
    let watch = Watch::start(&env, &[file.to_str().unwrap(), "--path", "site", "-i", "delay=5"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while watch.count("node_started") == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = watch.events.lock().unwrap()[0]["deployment"].as_str().unwrap().to_string();
    let (code, _) = watch.stop();
    assert_eq!(code, 130);
    assert_eq!(env.status(&id)["status"], "interrupted");
    assert_eq!(env.run(&["resume", &id]).status.code(), Some(0));
}

#[test]
fn an_edit_of_a_sub_pipeline_is_revalidated_and_redeploys() {
    let env = Env::new();
    env.write(
        "pipes/app.yaml",
        "version: 1\nname: app\nnodes:\n  step:\n    phase: BUILDING\n    pipeline: parts/step\n",
    );
    let step = |text: &str| {
        format!(
            "version: 1\nname: parts/step\nnodes:\n  write:\n    phase: BUILDING\n    uses: shell\n    with:\n      run: 'echo {text} >> deploys.log'\n"
        )
    };
    let sub = env.write("pipes/parts/step.yaml", &step("first"));
    env.write("site/index.html", "x");
    let watch = Watch::start(&env, &["app", "--pipelines", "pipes", "--path", "site", "--debounce", "100ms"]);
    watch.wait_runs_ended(1, Duration::from_secs(20));
    // An invalid edit of the sub-pipeline: diagnostics, no deploy.
    std::fs::write(&sub, step("broken").replace("uses: shell", "uses: shel")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(watch.stderr.lock().unwrap().contains("unknown action `shel`"), "{}", watch.stderr.lock().unwrap());
    assert_eq!(watch.count("run_started"), 1);
    // A valid one: the next deploy runs it.
    std::fs::write(&sub, step("second")).unwrap();
    watch.wait_runs_ended(2, Duration::from_secs(20));
    assert_eq!(env.marks("deploys.log"), vec!["first", "second"]);
    let (_, stderr) = watch.stop();
    assert!(stderr.contains("step.yaml changed") || stderr.contains("parts/step.yaml"), "{stderr}");
}

#[test]
fn a_database_inside_the_watched_folder_is_ignored_but_the_rest_of_the_folder_is_not() {
    // About a database file: SQLite's, whatever `PHASED_TEST_POSTGRES` says.
    let env = Env::on_sqlite();
    let file = env.write(
        "deploy.yaml",
        "version: 1\nname: here\nnodes:\n  copy:\n    phase: COPYING_FILES\n    uses: shell\n    with: {run: 'echo $(cat site/version) >> deploys.log', writes: [deploys.log]}\n",
    );
    env.write("site/version", "1");
    // `--db` inside `--path`: the database, its WAL, logs and work files change on every
    // run; only the site's change may redeploy.
    let args = [file.to_str().unwrap(), "--path", ".", "--db", "phased.db", "--debounce", "200ms"];
    let watch = Watch::start(&env, &args);
    watch.wait_runs_ended(1, Duration::from_secs(20));
    watch.assert_quiet(1, Duration::from_millis(800));
    env.write("site/version", "2");
    watch.wait_runs_ended(2, Duration::from_secs(20));
    watch.assert_quiet(2, Duration::from_millis(800));
    assert_eq!(env.marks("deploys.log"), ["1", "2"]);
    assert!(env.path("phased.db").exists(), "the database really is inside the watched folder");
    watch.stop();
}
