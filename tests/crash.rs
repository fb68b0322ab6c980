//! A crash at every crash point, in turn (src/crash.rs: before and after each commit,
//! inside the built-in actions' steps): the process aborts there (SIGABRT, as a
//! `kill -9` or a power cut would stop it), then `phased resume` must end ACTIVE with
//! nothing that had finished run again, the database intact, and the live site whole
//! at every moment. A real nginx, real files and links, a real SQLite file.

mod support;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;

use support::{Env, Nginx};

/// node -> (status, started_at) of every checkpoint.
fn checkpoints(env: &Env, id: &str) -> HashMap<String, (String, Option<String>)> {
    env.sql(&format!("SELECT node, status, started_at FROM node_checkpoints WHERE deployment_id = '{id}'"))
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), (r[1].clone().unwrap(), r[2].clone())))
        .collect()
}

fn integrity(env: &Env) -> String {
    env.integrity()
}

/// The points a run passes, in order (`PHASED_CRASH_LIST`).
fn points_of(list: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(list).unwrap().lines().map(|l| l.split_once(' ').unwrap().1.to_string()).collect()
}

struct Summary {
    rows: Vec<(usize, String, &'static str)>,
}

impl Summary {
    fn print(&self, what: &str) {
        let missed = self.rows.iter().filter(|r| r.2.starts_with("not reached")).count();
        let again = self.rows.iter().filter(|r| r.2.contains("at-least-once")).count();
        println!(
            "{what}: {} crash points, {} crashed and resumed ACTIVE ({again} with a node run again, at least once), {missed} not reached",
            self.rows.len(),
            self.rows.len() - missed
        );
        for (k, point, verdict) in &self.rows {
            println!("  {k:>3}  {point:<60}  {verdict}");
        }
    }
}

/// Deploys of the static type, crashed at each point in turn. `fresh`: each crashed
/// deploy is the first of its project (its route is written, its site did not exist:
/// it may answer 404 until the switch, never a part of the site); otherwise each
/// replaces the live release of one project (the old page or the new, never a mix).
fn static_campaign(fresh: bool) -> Summary {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let deploy = |id: &str, project: &str, page: &str| {
        let inputs = env.write(
            &format!("{id}.inputs.yaml"),
            &format!(
                "project: {project}\nsource:\n  type: embedded\n  work_dir: {}\n  files:\n    index.html: {page}\n    a/b.txt: deep\n",
                env.path("work").display()
            ),
        );
        let mut cmd = env.command(&["run", "static", "--id", id, "--inputs", inputs.to_str().unwrap()]);
        cmd.args(nginx.inputs().iter().flat_map(|i| ["-i".to_string(), i.clone()]))
            .args(["-i".to_string(), format!("base_dir={}", env.path("srv").display())]);
        cmd
    };
    let project = |k: usize| if fresh { format!("site{k}") } else { "site".to_string() };
    assert_eq!(deploy("v0", &project(0), "page-v0").output().unwrap().status.code(), Some(0));
    let list = env.path("points.txt");
    let listed = deploy("v1", &project(1000), "page-v1").env("PHASED_CRASH_LIST", &list).output().unwrap();
    assert_eq!(listed.status.code(), Some(0));
    let points = points_of(&list);
    let mut wanted = vec![
        "before a commit",
        "after a commit",
        "files.copy: the first file copied",
        "release.switch: the new link made",
    ];
    if fresh {
        wanted.extend(["routes.update: the route written", "a file written beside its place"]);
    }
    for wanted in wanted {
        assert!(points.iter().any(|p| p.starts_with(wanted)), "no `{wanted}` point in {points:?}");
    }

    let mut summary = Summary { rows: Vec::new() };
    let mut live = "page-v1".to_string();
    for (i, point) in points.iter().enumerate() {
        let k = i + 1;
        let (id, project) = (format!("crash{k}"), project(k));
        let host = format!("{project}.localhost");
        let page = format!("page-{id}");
        let reached = env.path(&format!("points-{k}.txt"));
        let out = deploy(&id, &project, &page)
            .env("PHASED_CRASH_AT", k.to_string())
            .env("PHASED_CRASH_LIST", &reached)
            .output()
            .unwrap();
        let count = std::fs::read_to_string(&reached).map(|t| t.lines().count()).unwrap_or(0);
        if out.status.code() == Some(0) && count < k {
            // This run grouped its writes into fewer commits than the listed one did:
            // it had no point k.
            summary.rows.push((k, point.clone(), "not reached: fewer commits this time"));
            live = page;
            continue;
        }
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "point {k} ({point}) was not reached: {out:?}");
        assert_eq!(integrity(&env), "ok", "point {k}");
        // The site is whole: the old page or the new one (or, for a new site, not
        // there yet), never an error or a mix.
        let (code, body) = nginx.get(&host, "/").unwrap();
        let whole = (code == 200 && (body == page || (!fresh && body == live))) || (fresh && code == 404);
        assert!(whole, "point {k} ({point}): the live site shows {code} {body}");
        let before = checkpoints(&env, &id);

        let resumed = env.command(&["resume", &id]).env("PHASED_PIPELINES", "/nonexistent").output().unwrap();
        let status = env.status(&id);
        assert_eq!(resumed.status.code(), Some(0), "point {k} ({point}): {}", status["error"]);
        assert_eq!(nginx.get(&host, "/").unwrap(), (200, page.clone()), "point {k}");
        assert_eq!(nginx.get(&host, "/a/b.txt").unwrap(), (200, "deep".to_string()));
        let after = checkpoints(&env, &id);
        for (node, (status, started)) in &before {
            if status == "succeeded" {
                assert_eq!(&after[node].1, started, "point {k} ({point}): `{node}` had finished and ran again");
            }
        }
        live = page;
        summary.rows.push((k, point.clone(), "ok"));
    }
    summary
}

/// A pipeline of quick `shell` steps (each appends its node's name to `marks`),
/// crashed at each of its points in turn, then resumed: ACTIVE, each node run once,
/// or twice when its success was not yet committed at the crash.
fn step_campaign(env: &Env, file: &str, nodes: &[&str]) -> Summary {
    let list = env.path("points.txt");
    let listed = env.command(&["run", file, "--id", "count"]).env("PHASED_CRASH_LIST", &list).output().unwrap();
    assert_eq!(listed.status.code(), Some(0));
    let points = points_of(&list);
    let mut summary = Summary { rows: Vec::new() };
    for (i, point) in points.iter().enumerate() {
        let k = i + 1;
        let id = format!("c{k}");
        std::fs::remove_file(env.path("marks")).ok();
        let out = env.command(&["run", file, "--id", &id]).env("PHASED_CRASH_AT", k.to_string()).output().unwrap();
        if out.status.code() == Some(0) {
            // Steps this quick finish in one batch or in two, as it happens.
            summary.rows.push((k, point.clone(), "not reached: fewer commits this time"));
            continue;
        }
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "point {k} ({point})");
        let before = checkpoints(env, &id);
        let resumed = env.run(&["resume", &id]);
        assert_eq!(resumed.status.code(), Some(0), "point {k}: {}", String::from_utf8_lossy(&resumed.stderr));
        assert_eq!(integrity(env), "ok");
        let ran = env.marks("marks");
        std::fs::rename(env.path("marks"), env.path(&format!("marks-{k}"))).unwrap();
        let verdict = once_each(nodes, &ran, &before, k, point);
        assert_eq!(env.status(&id)["status"], "succeeded", "point {k}");
        summary.rows.push((k, point.clone(), verdict));
    }
    summary
}

/// Each node ran once after a crash at point `k`, or twice if its success was not yet
/// committed when the run crashed (at least once); a node recorded as succeeded never
/// ran again.
fn once_each(
    nodes: &[&str],
    ran: &[String],
    before: &HashMap<String, (String, Option<String>)>,
    k: usize,
    point: &str,
) -> &'static str {
    let mut verdict = "ok";
    for node in nodes {
        let times = ran.iter().filter(|m| m == node).count();
        let finished = before.get(*node).is_some_and(|(s, _)| s == "succeeded");
        match times {
            1 => {}
            2 if !finished => verdict = "ok, at-least-once: a node ran again whose success was not yet committed",
            _ => panic!(
                "point {k} ({point}): `{node}` ran {times} times (finished before the crash: {finished}): {ran:?}"
            ),
        }
    }
    verdict
}

impl Summary {
    /// Most points must have been crashed at (a run may group its commits differently
    /// from the listed one; the actions' own points are always reached).
    fn check(self, what: &str) {
        self.print(what);
        let missed = self.rows.iter().filter(|r| r.2.starts_with("not reached")).count();
        assert!(missed * 4 <= self.rows.len(), "{missed} of {} points not reached", self.rows.len());
    }
}

#[test]
fn a_crash_at_every_point_of_a_static_deploy_resumes_active_and_the_live_site_is_never_partial() {
    static_campaign(false).check("static deploy replacing a live release");
}

#[test]
fn a_crash_at_every_point_of_a_first_static_deploy_resumes_active_and_its_route_is_written_once() {
    static_campaign(true).check("static deploy of a new site");
}

#[test]
fn a_crash_at_every_point_of_a_shell_pipeline_reruns_only_the_node_that_was_running() {
    let env = Env::new();
    env.write(
        "steps.yaml",
        r#"
version: 1
name: steps
nodes:
  one: {phase: BUILDING, uses: shell, with: {run: 'echo one >> marks'}}
  two: {phase: BUILDING, needs: [one], uses: shell, with: {run: 'echo two >> marks'}}
  side: {phase: BUILDING, needs: [one], uses: shell, with: {run: 'echo side >> marks'}}
  three: {phase: HEALTH_CHECK, needs: [two, side], uses: shell, with: {run: 'echo three >> marks'}}
"#,
    );
    let summary = step_campaign(&env, "steps.yaml", &["one", "two", "side", "three"]);
    summary.check("shell pipeline");
}

#[test]
fn a_crash_at_every_point_of_a_fanned_out_pipeline_resumes_and_reruns_no_finished_item() {
    let env = Env::new();
    env.write(
        "fan.yaml",
        r#"
version: 1
name: fan
nodes:
  prep: {phase: BUILDING, uses: shell, with: {run: 'echo prep >> marks'}}
  hosts:
    phase: UPDATING_ROUTES
    needs: [prep]
    foreach: {items: '{{ ["a", "b", "c"] }}', parallel: 2, on_failure: continue}
    uses: shell
    with: {run: 'echo "hosts[$ITEM]" >> marks', env: {ITEM: '{{ item }}'}}
  done: {phase: HEALTH_CHECK, needs: [hosts], uses: shell, with: {run: 'echo done >> marks'}}
"#,
    );
    let summary = step_campaign(&env, "fan.yaml", &["prep", "hosts[a]", "hosts[b]", "hosts[c]", "done"]);
    summary.check("fanned-out shell pipeline");
}
