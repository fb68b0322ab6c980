//! Several `phased` processes on one real PostgreSQL server (Debian's, a cluster of
//! each test's own; one test on a SQLite file): workers of several servers sharing the queue, a worker killed
//! with its runs, the database server restarted under load, and an event stream
//! served by a process other than the one running the run.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::postgres::Postgres;
use support::service::{Service, head, token};
use support::{Env, kill9};

fn post_run(server: &Service, token: &str, body: serde_json::Value) -> u16 {
    let (status, text) =
        server.send("POST", "/api/v1/runs", Some(token), &[("Content-Type", "application/json")], &body.to_string());
    assert_eq!(status, 202, "{text}");
    status
}

/// Waits until `sql` counts `n`.
fn wait_count(env: &Env, sql: &str, n: i64, limit: Duration) {
    let begin = Instant::now();
    loop {
        let found = env.count(sql);
        if found == n {
            return;
        }
        assert!(begin.elapsed() < limit, "{found} of {n} after {limit:?}: {sql}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const ORDERED: &str = r#"
version: 1
name: ordered
inputs:
  target: {type: string, required: true}
  dir: {type: string, required: true}
concurrency: {key: "{{ inputs.target }}", policy: queue}
nodes:
  record:
    phase: BUILDING
    uses: shell
    with: {run: 'echo "{{ deployment.id }}" >> "$D/$T"', env: {D: '{{ inputs.dir }}', T: '{{ inputs.target }}'}}
"#;

#[test]
fn three_servers_share_300_queued_runs_each_run_once_and_in_its_targets_order() {
    let pg = Postgres::start();
    let env = Env::on_postgres(&pg);
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/ordered.yaml", ORDERED);
    let marks = env.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let servers: Vec<Service> = (0..3).map(|_| Service::start_with(&env, &["--workers", "2"])).collect();
    // Ten targets, thirty runs each, queued in turn through the three servers.
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for k in 0..30 {
        for t in 0..10 {
            let (target, id) = (format!("svc-{t}"), format!("r-{t}-{k:02}"));
            let body = serde_json::json!({
                "pipeline": "ordered", "id": id, "inputs": {"target": target, "dir": marks.to_str().unwrap()}
            });
            post_run(&servers[(k * 10 + t) % 3], &deploy, body);
            expected.entry(target).or_default().push(id);
        }
    }
    wait_count(&env, "SELECT count(*) FROM deployments WHERE status = 'succeeded'", 300, Duration::from_secs(240));
    assert_eq!(env.count("SELECT count(*) FROM deployments WHERE status <> 'succeeded' OR attempt <> 1"), 0);
    for (target, ids) in &expected {
        let ran: Vec<String> =
            std::fs::read_to_string(marks.join(target)).unwrap().lines().map(str::to_string).collect();
        assert_eq!(&ran, ids, "{target}: each run once, in the order it was queued");
    }
    // Every server's workers took runs.
    assert_eq!(env.count("SELECT count(DISTINCT lease_pid) FROM deployments"), 3);
    // The stored events are numbered without a gap or a repeat.
    let seqs = env.event_seqs(None);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "increasing");
}

const GATED: &str = r#"
version: 1
name: gated
inputs:
  target: {type: string, required: true}
  dir: {type: string, required: true}
concurrency: {key: "{{ inputs.target }}", policy: queue}
nodes:
  wait:
    phase: BUILDING
    uses: shell
    with: {run: 'while [ ! -e "$D/open-$T" ]; do sleep 0.05; done', env: {D: '{{ inputs.dir }}', T: '{{ inputs.target }}'}}
"#;

/// A worker looks at the waiting runs a page at a time (64 on PostgreSQL): a run of a
/// free target queued behind more than a page of runs waiting for a busy one is still
/// taken, at once, and the busy target's runs then go in their order.
#[test]
fn a_run_of_a_free_target_is_taken_behind_more_than_a_page_of_runs_waiting_for_a_busy_one() {
    let pg = Postgres::start();
    let env = Env::on_postgres(&pg);
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/gated.yaml", GATED);
    let gates = env.path("gates");
    std::fs::create_dir_all(&gates).unwrap();
    let server = Service::start_with(&env, &["--workers", "2"]);
    let run = |id: &str, target: &str| {
        let inputs = serde_json::json!({"target": target, "dir": gates.to_str().unwrap()});
        post_run(&server, &deploy, serde_json::json!({"pipeline": "gated", "id": id, "inputs": inputs}));
    };
    run("busy-00", "busy");
    wait_count(
        &env,
        "SELECT count(*) FROM deployments WHERE id = 'busy-00' AND status = 'running'",
        1,
        Duration::from_secs(30),
    );
    for k in 1..=70 {
        run(&format!("busy-{k:02}"), "busy");
    }
    std::fs::write(gates.join("open-free"), "").unwrap();
    run("free", "free");
    wait_count(
        &env,
        "SELECT count(*) FROM deployments WHERE id = 'free' AND status = 'succeeded'",
        1,
        Duration::from_secs(30),
    );
    assert_eq!(env.count("SELECT count(*) FROM deployments WHERE id = 'busy-00' AND status = 'running'"), 1);
    assert_eq!(env.count("SELECT count(*) FROM deployments WHERE target = 'busy' AND status = 'queued'"), 70);
    // The busy target's runs, once it is free, one after the other in their order.
    std::fs::write(gates.join("open-busy"), "").unwrap();
    wait_count(&env, "SELECT count(*) FROM deployments WHERE status = 'succeeded'", 72, Duration::from_secs(180));
    let order = env.count(
        "SELECT count(*) FROM deployments a JOIN deployments b ON a.target = b.target AND a.id < b.id \
         WHERE a.target = 'busy' AND a.finished_at > b.finished_at",
    );
    assert_eq!(order, 0, "a busy run finished before one queued ahead of it");
}

const SLOW: &str = r#"
version: 1
name: slow
inputs:
  dir: {type: string, required: true}
nodes:
  first:
    phase: PULLING_SOURCE
    uses: shell
    with: {run: 'echo "first {{ deployment.id }}" >> "$D/marks"', env: {D: '{{ inputs.dir }}'}}
  long:
    phase: BUILDING
    needs: [first]
    uses: shell
    with: {run: 'echo "long {{ deployment.id }}" >> "$D/marks"; touch "$D/long-{{ deployment.id }}"; sleep 3', env: {D: '{{ inputs.dir }}'}}
  last:
    phase: HEALTH_CHECK
    needs: [long]
    uses: shell
    with: {run: 'echo "last {{ deployment.id }}" >> "$D/marks"', env: {D: '{{ inputs.dir }}'}}
"#;

#[test]
fn a_worker_killed_with_9_has_its_runs_finished_by_another_server_without_rerunning_finished_nodes() {
    let pg = Postgres::start();
    worker_killed(&Env::on_postgres(&pg));
}

#[test]
fn on_sqlite_too_a_killed_workers_runs_are_taken_over_by_another_server_on_the_same_file() {
    worker_killed(&Env::on_sqlite());
}

/// Two servers on one database; the first, holding two runs, is killed with 9.
fn worker_killed(env: &Env) {
    let deploy = token(env, "ci", "deploy");
    env.write("pipelines/slow.yaml", SLOW);
    let dir = env.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    let mut doomed = Service::start_with(env, &["--workers", "2"]);
    for id in ["held-1", "held-2"] {
        post_run(
            &doomed,
            &deploy,
            serde_json::json!({"pipeline": "slow", "id": id, "inputs": {"dir": dir.to_str().unwrap()}}),
        );
    }
    for id in ["held-1", "held-2"] {
        env.wait_for(&format!("out/long-{id}"), Duration::from_secs(30));
    }
    // The other server is up before the first one dies: it takes the runs over.
    let survivor = Service::start_with(env, &["--workers", "2"]);
    let doomed_pid = doomed.child.id();
    kill9(&mut doomed.child);
    let killed_at = Instant::now();
    wait_count(
        env,
        "SELECT count(*) FROM deployments WHERE status = 'succeeded' AND attempt = 2",
        2,
        Duration::from_secs(60),
    );
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(15 + 10), "finished within the lease time (and the run's own 3 s): {took:?}");
    let marks = std::fs::read_to_string(dir.join("marks")).unwrap();
    for id in ["held-1", "held-2"] {
        let count = |node: &str| marks.lines().filter(|l| *l == format!("{node} {id}")).count();
        assert_eq!(count("first"), 1, "a finished node is not rerun: {marks}");
        assert_eq!(count("long"), 2, "the node that was running runs again: {marks}");
        assert_eq!(count("last"), 1, "{marks}");
    }
    let holders = env.sql("SELECT DISTINCT lease_pid FROM deployments");
    assert_eq!(holders, vec![vec![Some(survivor.child.id().to_string())]], "killed: {doomed_pid}");
}

const STEPS: &str = r#"
version: 1
name: steps
inputs:
  dir: {type: string, required: true}
nodes:
  a:
    phase: BUILDING
    uses: shell
    with: {run: 'echo "a {{ deployment.id }}" >> "$D/marks"; sleep 0.1', env: {D: '{{ inputs.dir }}'}}
  b:
    phase: HEALTH_CHECK
    needs: [a]
    uses: shell
    with: {run: 'echo "b {{ deployment.id }}" >> "$D/marks"; sleep 0.1', env: {D: '{{ inputs.dir }}'}}
"#;

#[test]
fn the_database_server_restarted_under_load_loses_no_run_and_runs_no_node_twice() {
    let pg = Postgres::start();
    let env = Env::on_postgres(&pg);
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/steps.yaml", STEPS);
    let dir = env.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    let server = Service::start_with(&env, &["--workers", "3"]);
    for k in 0..40 {
        let body = serde_json::json!({"pipeline": "steps", "id": format!("load-{k:02}"), "inputs": {"dir": dir.to_str().unwrap()}});
        post_run(&server, &deploy, body);
    }
    wait_count(
        &env,
        "SELECT least(count(*), 5) FROM deployments WHERE status = 'succeeded'",
        5,
        Duration::from_secs(60),
    );
    pg.stop();
    std::thread::sleep(Duration::from_secs(2));
    pg.start_again();
    wait_count(&env, "SELECT count(*) FROM deployments WHERE status = 'succeeded'", 40, Duration::from_secs(120));
    let marks = std::fs::read_to_string(dir.join("marks")).unwrap();
    for k in 0..40 {
        for node in ["a", "b"] {
            let line = format!("{node} load-{k:02}");
            assert_eq!(marks.lines().filter(|l| *l == line).count(), 1, "{line} once: {marks}");
        }
    }
    assert!(pg.log().contains("shutting down"), "the server did stop: {}", pg.log());
    assert_eq!(env.integrity(), "ok");
}

/// The ids and names of the events of a finished SSE response.
fn sse_events(response: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut id = None;
    for line in response.lines() {
        if let Some(n) = line.strip_prefix("id: ") {
            id = n.trim().parse().ok();
        } else if let (Some(name), Some(n)) = (line.strip_prefix("event: "), id) {
            out.push((n, name.trim().to_string()));
            id = None;
        }
    }
    out
}

#[test]
fn a_server_streams_the_events_of_a_run_another_process_runs() {
    let pg = Postgres::start();
    let env = Env::on_postgres(&pg);
    let read = token(&env, "viewer", "read");
    let file = env.write(
        "gated.yaml",
        "version: 1\nname: gated\nnodes:\n  wait:\n    phase: BUILDING\n    uses: shell\n    with: {run: 'while [ ! -f go ]; do sleep 0.05; done'}\n  after:\n    phase: HEALTH_CHECK\n    needs: [wait]\n    uses: noop\n",
    );
    let server = Service::start(&env);
    // The run is the CLI's: the server only reads the database.
    let mut run = env.spawn(&["run", file.to_str().unwrap(), "--id", "elsewhere"]);
    wait_count(&env, "SELECT count(*) FROM node_checkpoints WHERE node = 'wait'", 1, Duration::from_secs(30));
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(head("GET", "/api/v1/runs/elsewhere/events", Some(&read), &[]).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    env.write("go", "");
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(run.wait().unwrap().success());
    let events = sse_events(&response);
    let names: Vec<&str> = events.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"run_started"), "{response}");
    assert_eq!(names.last(), Some(&"run_succeeded"), "{response}");
    assert!(names.contains(&"node_succeeded"), "{names:?}");
    let seqs: Vec<i64> = events.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, env.event_seqs(Some("elsewhere")), "every stored event, once, in order");
}

#[test]
fn migrate_copies_a_sqlite_history_into_postgresql_where_it_goes_on() {
    let pg = Postgres::start();
    let sqlite = Env::on_sqlite();
    let file = sqlite.write(
        "two.yaml",
        "version: 1\nname: two\nnodes:\n  a:\n    phase: BUILDING\n    uses: shell\n    with: {run: 'echo a >> marks; echo built'}\n    metadata: {buildType: docker}\n  b:\n    phase: HEALTH_CHECK\n    needs: [a]\n    uses: shell\n    with: {run: 'echo b >> marks; test -f fixed'}\n",
    );
    let file = file.to_str().unwrap();
    assert_eq!(sqlite.run(&["run", file, "--id", "broken"]).status.code(), Some(1));
    sqlite.write("fixed", "");
    assert_eq!(sqlite.run(&["run", file, "--id", "fine"]).status.code(), Some(0));
    std::fs::remove_file(sqlite.path("fixed")).unwrap();
    token(&sqlite, "ci", "deploy");
    let before: Vec<serde_json::Value> = ["broken", "fine"].iter().map(|id| sqlite.status(id)).collect();
    let seqs = sqlite.event_seqs(None);

    let url = support::postgres::create_database(&pg.base_url());
    let from = format!("sqlite:{}", sqlite.db().display());
    let out = sqlite.run(&["migrate", "--from", &from, "--to", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("migrated 2 runs"), "{said}");
    // The same folder, now on PostgreSQL: the node logs are where they were.
    let moved = |args: &[&str]| {
        sqlite.command(args).env("PHASED_DB", &url).env("PHASED_DATA_DIR", sqlite.path("state")).output().unwrap()
    };
    for (id, was) in ["broken", "fine"].iter().zip(&before) {
        let now: serde_json::Value =
            serde_json::from_slice(&moved(&["status", id, "--format", "json"]).stdout).unwrap();
        assert_eq!(&now, was, "{id} reads the same");
    }
    let pg_seqs: Vec<i64> = support::postgres::rows(&url, "SELECT seq FROM events ORDER BY seq")
        .into_iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(pg_seqs, seqs, "every event, with its number");
    let logs = moved(&["logs", "fine"]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("built"), "{}", String::from_utf8_lossy(&logs.stdout));
    assert!(String::from_utf8_lossy(&moved(&["token", "list"]).stdout).contains("ci"));
    // The seed's query on jsonb.
    let seed = support::postgres::rows(
        &url,
        "SELECT id, phase, phase_progress, phase_metadata->>'buildType' as build_type, \
         phase_metadata->>'sourceType' as source_type, phase_updated_at, status \
         FROM deployments WHERE id = 'fine' ORDER BY phase_updated_at DESC",
    );
    assert_eq!(seed[0][1].as_deref(), Some("ACTIVE"));

    // It goes on there: the failed run resumes at its failed node, new events follow.
    std::fs::write(sqlite.path("marks"), "").unwrap();
    sqlite.write("fixed", "");
    let resumed = moved(&["resume", "broken"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(sqlite.marks("marks"), vec!["b"], "only the failed node reran");
    let newest: i64 =
        support::postgres::rows(&url, "SELECT min(seq) FROM events WHERE seq > 0 AND event = 'run_resumed'")[0][0]
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
    assert!(newest > *seqs.last().unwrap(), "numbers go on after the copied ones");

    // Into a database that holds runs: refused, nothing written.
    let again = sqlite.run(&["migrate", "--from", &from, "--to", &url]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds runs"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let out = sqlite.run(&["migrate", "--from", "sqlite:nowhere.db", "--to", &url]);
    assert_eq!(out.status.code(), Some(2));

    // From a database a live process is running a run in: refused, naming the run.
    let gated = sqlite.write("gated.yaml", "version: 1\nname: gated\nnodes:\n  wait: {phase: BUILDING, uses: shell, with: {run: 'touch waiting; while [ ! -f open ]; do sleep 0.05; done'}}\n");
    let mut live = sqlite.spawn(&["run", gated.to_str().unwrap(), "--id", "live"]);
    sqlite.wait_for("waiting", Duration::from_secs(20));
    let empty = support::postgres::create_database(&pg.base_url());
    let refused = sqlite.run(&["migrate", "--from", &from, "--to", &empty]);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("run `live` is running") && said.contains("stop the phased processes"), "{said}");
    sqlite.write("open", "");
    assert!(live.wait().unwrap().success());
}

#[test]
fn a_url_that_asks_for_tls_gets_it_checked_against_the_servers_certificate() {
    let pg = Postgres::start_tls();
    let env = Env::new();
    let file = env.write("one.yaml", "version: 1\nname: one\nnodes:\n  a: {phase: BUILDING, uses: noop}\n");
    let base = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    let run = |url: &str, root: Option<&std::path::Path>| {
        let mut cmd = env.command(&["run", file.to_str().unwrap()]);
        cmd.env("PHASED_DB", url).env("PHASED_DATA_DIR", env.path("state"));
        match root {
            Some(root) => cmd.env("PGSSLROOTCERT", root),
            None => cmd.env_remove("PGSSLROOTCERT"),
        };
        cmd.output().unwrap()
    };
    // This server refuses connections without TLS.
    let out = run(&format!("{base}?sslmode=disable"), None);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to the PostgreSQL database"));
    // TLS against the system's roots: its self-signed certificate is not trusted.
    let out = run(&format!("{base}?sslmode=require"), None);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    // Trusting its certificate: the run is recorded over TLS.
    let out = run(&format!("{base}?sslmode=require"), Some(&pg.certificate()));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `phased serve` as if on another machine: in a UTS namespace of its own with another
/// host name, so that its lease is judged by its heartbeat alone.
fn serve_elsewhere(env: &Env, host: &str) -> Service {
    let port = support::free_port();
    let script = format!("hostname {host} && exec \"$0\" \"$@\"");
    let child = std::process::Command::new("unshare")
        .args(["--uts", "--", "sh", "-c", &script, env!("CARGO_BIN_EXE_phased")])
        .args(["serve", "--workers", "1", "--listen", &format!("127.0.0.1:{port}")])
        .env("PHASED_DB", env.db())
        .env("PHASED_DATA_DIR", env.path("state"))
        .env("PHASED_LEASE_TIME", "5s")
        .env("NO_COLOR", "1")
        .current_dir(env.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let begin = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(begin.elapsed() < Duration::from_secs(20), "the server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Service { child, port }
}

#[test]
fn a_worker_on_another_machine_is_presumed_dead_only_once_its_heartbeat_is_stale() {
    assert!(support::running_as_root(), "a UTS namespace needs root");
    let pg = Postgres::start();
    let env = Env::on_postgres(&pg);
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/slow.yaml", SLOW);
    let dir = env.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    // A lease of 5 s (every process on the database says so), to keep the test short.
    let mut remote = serve_elsewhere(&env, "far-away-host");
    post_run(
        &remote,
        &deploy,
        serde_json::json!({"pipeline": "slow", "id": "far", "inputs": {"dir": dir.to_str().unwrap()}}),
    );
    env.wait_for("out/long-far", Duration::from_secs(30));
    assert_eq!(
        env.sql("SELECT lease_host FROM deployments WHERE id = 'far'"),
        vec![vec![Some("far-away-host".into())]]
    );
    let survivor = Service::start_full(&env, &["--workers", "1"], &[("PHASED_LEASE_TIME", "5s")]);
    kill9(&mut remote.child);
    let killed = Instant::now();
    // Its last heartbeat is recent: nobody takes the run over yet.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(env.count("SELECT attempt FROM deployments WHERE id = 'far'"), 1, "the lease still holds");
    wait_count(
        &env,
        "SELECT count(*) FROM deployments WHERE id = 'far' AND status = 'succeeded'",
        1,
        Duration::from_secs(60),
    );
    let took = killed.elapsed();
    assert!(took >= Duration::from_secs(3), "taken over once the lease (5 s) went stale: {took:?}");
    assert_eq!(env.count("SELECT attempt FROM deployments WHERE id = 'far'"), 2);
    let marks = std::fs::read_to_string(dir.join("marks")).unwrap();
    assert_eq!(marks.lines().filter(|l| *l == "first far").count(), 1, "{marks}");
    assert_eq!(marks.lines().filter(|l| *l == "last far").count(), 1, "{marks}");
    drop(survivor);
}

#[test]
fn a_holder_that_lost_its_lease_has_its_writes_refused_and_stops() {
    assert!(support::running_as_root(), "a UTS namespace needs root");
    let pg = Postgres::start();
    let env = Env::on_postgres(&pg);
    let file = env.write("slow.yaml", SLOW);
    let dir = env.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    // The holder, as if on another machine, with a lease of 5 s.
    let script = "hostname far-host && exec \"$0\" \"$@\"";
    let mut holder = std::process::Command::new("unshare")
        .args(["--uts", "--", "sh", "-c", script, env!("CARGO_BIN_EXE_phased")])
        .args(["run", file.to_str().unwrap(), "--id", "fenced", "-i", &format!("dir={}", dir.display())])
        .env("PHASED_DB", env.db())
        .env("PHASED_DATA_DIR", env.path("state"))
        .env("PHASED_LEASE_TIME", "5s")
        .env("NO_COLOR", "1")
        .current_dir(env.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    env.wait_for("out/long-fenced", Duration::from_secs(30));
    // It stops answering (a pause, a partition): its heartbeat goes stale, and another
    // server takes the run over and finishes it.
    support::signal(&holder, libc::SIGSTOP);
    let _survivor = Service::start_full(&env, &["--workers", "1"], &[("PHASED_LEASE_TIME", "5s")]);
    wait_count(
        &env,
        "SELECT count(*) FROM deployments WHERE id = 'fenced' AND status = 'succeeded' AND attempt = 2",
        1,
        Duration::from_secs(60),
    );
    let recorded = env.event_seqs(Some("fenced"));
    // Back, it finds its lease gone: its batch is refused whole and it stops.
    support::signal(&holder, libc::SIGCONT);
    let code = support::wait_timeout(&mut holder, Duration::from_secs(30)).code();
    let mut stderr = String::new();
    holder.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("run `fenced` is no longer held by this process"), "{stderr}");
    assert_eq!(env.event_seqs(Some("fenced")), recorded, "it recorded nothing more");
    let status = env.status("fenced");
    assert_eq!((status["status"].as_str(), status["attempt"].as_u64()), (Some("succeeded"), Some(2)));
    let marks = std::fs::read_to_string(dir.join("marks")).unwrap();
    assert_eq!(marks.lines().filter(|l| *l == "last fenced").count(), 1, "{marks}");
}

#[test]
fn a_password_in_the_url_reaches_no_output_no_log_no_step_and_no_table() {
    let pg = Postgres::start();
    let env = Env::on_postgres(&pg);
    let url = env.db().to_string_lossy().replace("postgres://postgres@", "postgres://postgres:hunter2@");
    let file = env.write(
        "envy.yaml",
        "version: 1\nname: envy\nnodes:\n  a: {phase: BUILDING, uses: shell, with: {run: 'echo \"db=$PHASED_DB\"; env'}}\n  b: {phase: HEALTH_CHECK, needs: [a], uses: shell, with: {run: 'exit 1'}}\n",
    );
    let with_password = |args: &[&str]| env.command(args).env("PHASED_DB", &url).output().unwrap();
    let run = with_password(&["run", file.to_str().unwrap(), "--id", "envy", "-v"]);
    assert_eq!(run.status.code(), Some(1), "{}", String::from_utf8_lossy(&run.stderr));
    let status = with_password(&["status", "envy"]);
    let logs = with_password(&["logs", "envy"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("db=postgres://postgres@127.0.0.1"),
        "the step saw it, redacted"
    );
    let mut places = vec![
        ("run".to_string(), [run.stdout, run.stderr].concat()),
        ("status".to_string(), [status.stdout, status.stderr].concat()),
        ("logs".to_string(), logs.stdout),
    ];
    places.extend(env.stored());
    for (place, bytes) in places {
        assert!(!String::from_utf8_lossy(&bytes).contains("hunter2"), "the password is in {place}");
    }
}
