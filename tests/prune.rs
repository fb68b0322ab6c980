//! `phased prune`: old runs go with their logs and work folders; the newest `--keep`
//! releases of each target, interrupted runs and recent runs stay. Real runs in a real
//! SQLite file; their age is set in the database (the only way to have month-old runs
//! in a test), everything else is what `phased run` recorded.

mod support;

use std::time::Duration;

use support::{Env, signal, wait_timeout};

const APP: &str = r#"
version: 1
name: app
inputs:
  service: {type: string}
  ok: {type: boolean, default: true}
concurrency: {key: "{{ inputs.service }}"}
nodes:
  build:
    phase: BUILDING
    uses: shell
    with: {run: 'echo "building $S"; mkdir -p "{{ deployment.work_dir }}"; echo x > "{{ deployment.work_dir }}/scratch"; test "$OK" = true', env: {S: '{{ inputs.service }}', OK: '{{ "true" if inputs.ok else "false" }}'}}
"#;

fn backdate(env: &Env, ids: &[&str], days: u32) {
    for id in ids {
        let sqlite = format!(
            "UPDATE deployments SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', created_at, '-{days} days'), \
             finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', finished_at, '-{days} days') WHERE id = '{id}'"
        );
        let back = |column: &str| {
            format!(
                "to_char(({column}::timestamptz - interval '{days} days') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
            )
        };
        let postgres = format!(
            "UPDATE deployments SET created_at = {}, finished_at = {} WHERE id = '{id}'",
            back("created_at"),
            back("finished_at")
        );
        assert_eq!(env.execute(&sqlite, &postgres), 1, "{id}");
    }
}

fn exists(env: &Env, id: &str) -> bool {
    env.run(&["status", id]).status.success()
}

#[test]
fn prune_forgets_old_runs_but_never_the_releases_kept_or_a_resumable_run() {
    let env = Env::new();
    env.write("app.yaml", APP);
    let mut old = Vec::new();
    for i in 1..=5 {
        let id = format!("web{i}");
        assert_eq!(env.run(&["run", "app.yaml", "--id", &id, "-i", "service=web"]).status.code(), Some(0));
        old.push(id);
    }
    assert_eq!(
        env.run(&["run", "app.yaml", "--id", "webfail", "-i", "service=web", "-i", "ok=false"]).status.code(),
        Some(1)
    );
    assert_eq!(env.run(&["run", "app.yaml", "--id", "api1", "-i", "service=api"]).status.code(), Some(0));
    // An interrupted run (Ctrl-C while its step runs).
    env.write("slow.yaml", "version: 1\nname: slow\nnodes:\n  wait: {phase: BUILDING, uses: shell, with: {run: 'echo waiting; sleep 30'}}\n");
    let mut slow = env.spawn(&["run", "slow.yaml", "--id", "cut1"]);
    env.wait_for("state/logs/cut1/wait.log", Duration::from_secs(10));
    signal(&slow, libc::SIGINT);
    assert_eq!(wait_timeout(&mut slow, Duration::from_secs(20)).code(), Some(130));

    let mut all_old: Vec<&str> = old.iter().map(String::as_str).collect();
    all_old.extend(["webfail", "api1", "cut1"]);
    backdate(&env, &all_old, 40);
    // A recent failure stays whatever its status.
    assert_eq!(
        env.run(&["run", "app.yaml", "--id", "recent", "-i", "service=web", "-i", "ok=false"]).status.code(),
        Some(1)
    );
    let logs = env.path("state/logs");
    assert!(logs.join("web1/build.log").exists());
    assert!(env.path("state/work/web1/scratch").exists());

    let dry = env.run(&["prune", "--older-than", "30d", "--keep", "3", "--dry-run", "--format", "json"]);
    assert_eq!(dry.status.code(), Some(0), "{}", String::from_utf8_lossy(&dry.stderr));
    let dry: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    let mut pruned: Vec<&str> = dry["pruned"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    pruned.sort();
    assert_eq!(
        pruned,
        ["web1", "web2", "webfail"],
        "the 3 newest releases of web, api's only one and the interrupted run stay"
    );
    assert!(dry["bytes"].as_u64().unwrap() > 0);
    assert!(exists(&env, "web1") && logs.join("web1").exists(), "a dry run forgets nothing");

    let out = env.run(&["prune", "--older-than", "30d", "--keep", "3"]);
    assert_eq!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("forgot 3 runs"), "{said}");
    assert!(said.contains("kept cut1 (interrupted: it can be resumed)"), "{said}");
    for gone in ["web1", "web2", "webfail"] {
        assert!(!exists(&env, gone), "{gone} is forgotten");
        assert!(!logs.join(gone).exists() && !env.path(&format!("state/work/{gone}")).exists(), "{gone}'s files");
    }
    for kept in ["web3", "web4", "web5", "api1", "cut1", "recent"] {
        assert!(exists(&env, kept), "{kept} stays");
    }
    assert!(logs.join("web5/build.log").exists());
    let orphans = env.count("SELECT count(*) FROM events WHERE deployment_id NOT IN (SELECT id FROM deployments)");
    assert_eq!(orphans, 0, "nothing recorded about a forgotten run is left");
    assert_eq!(env.integrity(), "ok");
    // The interrupted run still resumes (its step is interrupted again here).
    assert!(env.status("cut1")["nodes"].as_array().is_some());

    let all = env.run(&["prune", "--older-than", "30d", "--keep", "3", "--interrupted"]);
    assert_eq!(all.status.code(), Some(0));
    assert!(!exists(&env, "cut1"), "--interrupted forgets old interrupted runs too");
    assert!(exists(&env, "web3"));

    let bad = env.run(&["prune", "--older-than", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("30d"), "{}", String::from_utf8_lossy(&bad.stderr));
}
