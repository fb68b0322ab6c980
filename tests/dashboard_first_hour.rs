//! The dashboard as a new user meets it in the first hour (issue 23), in a real headless
//! Chromium against a real `phased serve` with real runs: the phase timeline drawn to
//! scale (item 7); what a run deployed and who started it, and the list's short id and
//! version (8); a failed run opening on its failed node's log beside the graph, and the
//! list saying where it failed and how far it got (9); rollback offered only where it
//! can start, confirmed, with one release live after it, and cancel confirmed (10); an
//! ETA that says a node runs late instead of "0s left" (11); at phone width a one-row
//! header, events as cards and a graph that says it scrolls, a sign-in error that looks
//! like one, the log pane's times, wrapping and download, and the deploy form's
//! sub-forms, plain messages and its Plan (12). Every page is checked with axe-core and
//! written as a screenshot (`target/tmp/screenshots/`).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Env;
use support::browser::{Browser, assert_accessible, sign_in, url};
use support::service::{Service, token};

const WAIT: Duration = Duration::from_secs(30);

fn ran(env: &Env, args: &[&str]) -> std::process::Output {
    let out = env.run(args);
    assert!(out.status.code().is_some(), "{args:?} ended by a signal");
    out
}

/// Four phases of known, different lengths, one after the other.
const STEPS: &str = "version: 1\nname: steps\nnodes:\n  build: {phase: BUILDING, uses: shell, with: {run: 'sleep 0.4'}}\n  copy: {phase: COPYING_FILES, needs: [build], uses: shell, with: {run: 'sleep 0.8'}}\n  route: {phase: UPDATING_ROUTES, needs: [copy], uses: shell, with: {run: 'sleep 0.3'}}\n  check: {phase: HEALTH_CHECK, needs: [route], uses: shell, with: {run: 'sleep 0.5'}}\n";

#[test]
fn the_phase_timeline_draws_each_phase_from_its_start_for_as_long_as_it_lasted() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write("steps.yaml", STEPS);
    assert_eq!(ran(&env, &["run", "steps.yaml", "--id", "t1"]).status.code(), Some(0));
    let server = Service::start(&env);
    // Where each phase starts and ends, as fractions of the run, from the recorded history.
    let run = server.json("/api/v1/runs/t1", &read);
    let mut starts: Vec<(String, f64)> = Vec::new();
    for row in run["history"].as_array().unwrap() {
        let phase = row["phase"].as_str().unwrap().to_string();
        if starts.last().is_none_or(|(p, _)| *p != phase) {
            let at = humantime::parse_rfc3339(row["at"].as_str().unwrap()).unwrap();
            starts.push((phase, at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()));
        }
    }
    let end = humantime::parse_rfc3339(run["finished_at"].as_str().unwrap()).unwrap();
    let end = end.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let (t0, total) = (starts[0].1, end - starts[0].1);

    for (width, height, name) in [(1280, 900, "timeline"), (390, 844, "timeline-phone")] {
        let browser = Browser::start(width, height);
        sign_in(&browser, &server, &read);
        browser.goto(&url(&server, "#/runs/t1"));
        browser.wait(
            "document.querySelector('#timeline li:last-child > .mono').textContent === 'ACTIVE'",
            "the timeline",
            WAIT,
        );
        let bars = browser.js(
            "return [...document.querySelectorAll('#timeline li')].filter(li => li.querySelector('.bar-fill')).map(li => {
               const t = li.querySelector('.bar-track').getBoundingClientRect();
               const f = li.querySelector('.bar-fill').getBoundingClientRect();
               return [li.querySelector('.mono').textContent, (f.left - t.left) / t.width, f.width / t.width, f.width, f.height];
             })",
            vec![],
        );
        let bars = bars.as_array().unwrap();
        let names: Vec<&str> = bars.iter().map(|b| b[0].as_str().unwrap()).collect();
        assert_eq!(names, ["QUEUED", "BUILDING", "COPYING_FILES", "UPDATING_ROUTES", "HEALTH_CHECK", "ACTIVE"]);
        for (i, bar) in bars.iter().enumerate().take(5) {
            let (left, share, pixels) = (bar[1].as_f64().unwrap(), bar[2].as_f64().unwrap(), bar[3].as_f64().unwrap());
            assert!(pixels >= 2.0 && bar[4].as_f64().unwrap() >= 6.0, "{name}: {bar} is drawn");
            // Offset by where its phase started, as long as it lasted (a bar of a few
            // milliseconds is drawn a few pixels wide).
            let start = (starts[i].1 - t0) / total;
            let length = (starts[i + 1].1 - starts[i].1) / total;
            assert!((left - start).abs() < 0.01, "{name}: {} starts at {left}, its phase at {start}", names[i]);
            assert!(
                share >= length - 0.01 && (share - length < 0.01 || pixels <= 3.5),
                "{name}: {bar} lasted {length}"
            );
        }
        let copy = bars[2][2].as_f64().unwrap();
        assert!(copy > bars[1][2].as_f64().unwrap(), "0.8 s of copying is longer than 0.4 s of building");
        assert_eq!(browser.js("return document.documentElement.scrollWidth <= window.innerWidth", vec![]), json!(true));
        assert_accessible(&browser, name);
        browser.js("document.querySelector('#timeline').scrollIntoView()", vec![]);
        browser.screenshot(name);
    }
}

#[test]
fn a_run_says_what_it_deployed_and_who_started_it_and_the_list_its_short_id_and_version() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write(
        "pipelines/app.yaml",
        "version: 1\nname: app\ninputs: {version: {type: string, required: true}}\nconcurrency: {key: app, policy: queue}\nnodes:\n  ship: {phase: BUILDING, uses: shell, with: {run: 'echo \"commit=0123456789abcdef0123\" >> \"$PHASED_OUTPUT\"'}}\n",
    );
    env.write(
        "pipelines/plain.yaml",
        "version: 1\nname: plain\ninputs: {version: {type: string, required: true}, note: {type: string, default: hello}}\nconcurrency: {key: plain, policy: queue}\nnodes:\n  ship: {phase: BUILDING, uses: noop}\n",
    );
    assert_eq!(ran(&env, &["run", "app", "-i", "version=2.4.1", "--id", "with-commit"]).status.code(), Some(0));
    assert_eq!(ran(&env, &["run", "plain", "-i", "version=7.1.0"]).status.code(), Some(0));
    let server = Service::start(&env);
    let runs = server.json("/api/v1/runs", &deploy)["runs"].clone();
    let generated = runs[0]["id"].as_str().unwrap().to_string();
    assert!(generated.len() > 8, "{generated}");
    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &deploy);
    browser.wait("document.querySelectorAll('#runs-body tr').length === 2", "both runs", WAIT);
    let heads = browser.js("return [...document.querySelectorAll('#runs thead th')].map(t => t.textContent)", vec![]);
    assert_eq!(heads[0], "Run", "{heads}");
    assert!(heads.as_array().unwrap().contains(&json!("Deployed")), "{heads}");
    let row = |id: &str| {
        browser.js(
            "const r = document.querySelector(`#runs-body tr[data-id=\"${arguments[0]}\"]`);
             return [r.children[0].textContent, r.querySelector('[data-label=Deployed]').textContent]",
            vec![json!(id)],
        )
    };
    assert_eq!(row(&generated), json!([&generated[..8], "7.1.0"]), "a short id and the version it was given");
    assert_eq!(row("with-commit"), json!(["with-com", "0123456"]), "the commit it recorded, short");
    assert_accessible(&browser, "the list with ids and versions");
    browser.screenshot("list-ids-versions");

    browser.click("#runs-body tr[data-id=with-commit] a");
    browser.wait("document.querySelector('#deployed')", "what it deployed", WAIT);
    let facts = browser.text("#deployed");
    assert!(facts.contains("0123456789abcdef0123"), "the whole commit: {facts}");
    assert!(browser.text("#deployed [data-input=version]").contains("2.4.1"), "{facts}");
    assert_eq!(browser.text("#run-deployed"), "0123456");
    // Who started it, as the run's `actor` says (`cli:user@host` for the command line).
    let actor = server.json("/api/v1/runs/with-commit", &deploy)["actor"].as_str().unwrap().to_string();
    assert!(actor.starts_with("cli:"), "{actor}");
    let shown = browser.text("#run-actor");
    assert!(shown.contains(actor.trim_start_matches("cli:")) && shown.contains("command line"), "{shown}");
    assert_accessible(&browser, "what a run deployed");
    browser.screenshot("run-deployed");
}

#[test]
fn a_failed_run_opens_its_failed_nodes_log_beside_the_graph_and_the_list_says_where_it_failed() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write(
        "fails.yaml",
        "version: 1\nname: fails\nnodes:\n  build: {phase: BUILDING, uses: shell, with: {run: 'echo building the bundle'}}\n  check: {phase: HEALTH_CHECK, needs: [build], uses: shell, with: {run: 'echo \"probe answered 503\" >&2; exit 3'}}\n  announce: {phase: HEALTH_CHECK, needs: [check], uses: shell, with: {run: 'echo never'}}\n",
    );
    assert_eq!(ran(&env, &["run", "fails.yaml", "--id", "f1"]).status.code(), Some(1));
    let server = Service::start(&env);
    let reached = server.json("/api/v1/runs/f1", &read)["phase_metadata"]["progressReached"].as_i64().unwrap();
    assert!(reached > 0, "build succeeded before check failed: {reached}");
    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &read);
    browser.wait("document.querySelector('#runs-body tr[data-id=f1]')", "the failed run", WAIT);
    let status = browser.text("#runs-body tr[data-id=f1] [data-label=Status]");
    assert!(status.contains("failed") && status.contains("at check"), "{status}");
    assert_eq!(browser.text("#runs-body tr[data-id=f1] .pct"), format!("{reached}%"), "not 0%");
    browser.screenshot("list-failed-at");

    browser.click("#runs-body tr[data-id=f1] a");
    // The failed node's log, at once, without choosing anything.
    browser.wait("document.querySelector('#log').textContent.includes('probe answered 503')", "check's log", WAIT);
    assert_eq!(browser.text("#log-title"), "Log of check");
    assert!(browser.has("#graph .node.chosen[data-node=check]"), "the failed node is marked in the graph");
    let beside = browser.js(
        "const g = document.querySelector('#graph').getBoundingClientRect();
         const l = document.querySelector('#log-pane').getBoundingClientRect();
         return l.left >= g.right && Math.abs(l.top - g.top) < 80",
        vec![],
    );
    assert_eq!(beside, json!(true), "the log beside the graph");
    assert_eq!(browser.text("#run-progress .pct"), format!("{reached}%"));
    // No Log button for what never started.
    assert!(!browser.has("#nodes-body tr[data-node=announce] button"));
    assert!(browser.has("#nodes-body tr[data-node=build] button"));
    assert_accessible(&browser, "a failed run with its log");
    browser.screenshot("failed-run-log");

    // A node of the graph opens its log.
    browser.click("#graph .node[data-node=build]");
    browser.wait("document.querySelector('#log').textContent.includes('building the bundle')", "build's log", WAIT);
    assert_eq!(browser.text("#log-title"), "Log of build");
    browser.click("#graph .node[data-node=announce]");
    browser.wait("document.querySelector('#log-title').textContent === 'Log of announce'", "announce", WAIT);
    assert!(browser.text("#log").contains("not started"), "{}", browser.text("#log"));
    assert!(!browser.text("#log").contains("never"));
}

/// Runs `name` of the `kept` type: a release whose folder is `rel/<name>`.
fn kept_release(env: &Env, name: &str) {
    let dir = env.path(&format!("rel/{name}")).display().to_string();
    let out = ran(env, &["run", "kept", "--id", name, "-i", &format!("dir={dir}")]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn rollback_is_offered_only_where_it_can_start_is_confirmed_and_leaves_one_release_live() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    support::service::two_releases_of_app(&env);
    // A type without `rollback:`, and one whose older release folder is gone.
    env.write(
        "pipelines/norb.yaml",
        "version: 1\nname: norb\nconcurrency: {key: norb, policy: queue}\nnodes:\n  ship: {phase: BUILDING, uses: noop}\n",
    );
    env.write(
        "pipelines/kept.yaml",
        "version: 1\nname: kept\ninputs: {dir: {type: string, required: true}}\nconcurrency: {key: kept, policy: queue}\nrollback: app-back\non_success: {metadata: {release: '{{ inputs.dir }}'}}\nnodes:\n  ship: {phase: BUILDING, uses: shell, with: {run: 'mkdir -p \"$D\"', env: {D: '{{ inputs.dir }}'}}}\n",
    );
    env.write(
        "pipelines/hold.yaml",
        "version: 1\nname: hold\nconcurrency: {key: app, policy: queue}\nnodes:\n  wait: {phase: BUILDING, uses: shell, with: {run: 'while [ -f held ]; do sleep 0.05; done'}}\n",
    );
    for id in ["n1", "n2"] {
        assert_eq!(ran(&env, &["run", "norb", "--id", id]).status.code(), Some(0));
    }
    kept_release(&env, "k1");
    kept_release(&env, "k2");
    std::fs::remove_dir_all(env.path("rel/k1")).unwrap();
    let server = Service::start(&env);

    // The server decides, and says why not.
    let n1 = server.json("/api/v1/runs/n1", &deploy)["rollback"].clone();
    assert_eq!(n1["available"], false);
    assert!(n1["reason"].as_str().unwrap().contains("declares no `rollback:`"), "{n1}");
    let k1 = server.json("/api/v1/runs/k1", &deploy)["rollback"].clone();
    assert!(k1["available"] == false && k1["reason"].as_str().unwrap().contains("is gone"), "{k1}");
    assert_eq!(server.json("/api/v1/runs/a1", &deploy)["rollback"]["available"], true);

    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &deploy);
    for (page, older) in [("n2", "n1"), ("k2", "k1")] {
        browser.goto(&url(&server, &format!("#/runs/{page}")));
        browser.wait(&format!("document.querySelector('#releases-table tr[data-release={older}]')"), "releases", WAIT);
        assert!(!browser.has("[data-rollback]"), "{page}: no rollback that would fail");
        browser.goto(&url(&server, &format!("#/runs/{older}")));
        browser.wait("document.querySelector('#rollback-reason')", "why not", WAIT);
        assert!(!browser.has("#rollback-here"));
    }
    assert!(browser.text("#rollback-reason").contains("is gone"));
    browser.screenshot("rollback-unavailable");

    // Asked first, naming the target, the release and the live one; "no" does nothing.
    browser.goto(&url(&server, "#/runs/a2"));
    browser.wait("document.querySelector('[data-rollback=a1]')", "the button", WAIT);
    let before = server.json("/api/v1/runs", &deploy)["runs"].as_array().unwrap().len();
    browser.click("[data-rollback=a1]");
    browser.wait("document.querySelector('#confirm[open]')", "the confirmation", WAIT);
    let asked = browser.text("#confirm");
    assert!(asked.contains("Roll back app to release a1") && asked.contains("in place of a2"), "{asked}");
    assert_accessible(&browser, "the rollback confirmation");
    browser.screenshot("rollback-confirm");
    browser.click("#confirm-no");
    browser.wait("document.querySelector('#confirm') === null", "the dialog gone", WAIT);
    assert_eq!(server.json("/api/v1/runs", &deploy)["runs"].as_array().unwrap().len(), before, "nothing started");
    browser.click("[data-rollback=a1]");
    browser.wait("document.querySelector('#confirm[open]')", "the confirmation", WAIT);
    browser.click("#confirm-yes");
    browser.wait("location.hash !== '#/runs/a2'", "the rollback's page", WAIT);
    browser.wait("document.querySelector('#run-status .status').dataset.status === 'succeeded'", "its end", WAIT);
    browser.wait("document.querySelector('#releases-table tr[data-release=a1][data-live=true]')", "a1 live", WAIT);
    let live = browser.js(
        "return [...document.querySelectorAll('#releases-table tr[data-live=true]')].map(r => r.dataset.release)",
        vec![],
    );
    assert_eq!(live, json!(["a1"]), "one release live");
    let table = String::from_utf8(ran(&env, &["releases", "app"]).stdout).unwrap();
    let starred: Vec<&str> = table.lines().filter(|l| l.starts_with('*')).collect();
    assert!(starred.len() == 1 && starred[0].contains("a1"), "the command line marks one too:\n{table}");
    browser.screenshot("rolled-back-one-live");

    // Cancel asks too, naming the run, its target and what stays live.
    env.write("held", "");
    let (status, body) =
        server.send("POST", "/api/v1/runs", Some(&deploy), &[], &json!({"pipeline": "hold", "id": "h1"}).to_string());
    assert_eq!(status, 202, "{body}");
    browser.goto(&url(&server, "#/runs/h1"));
    browser.wait("document.querySelector('#run-status .status').dataset.status === 'running'", "h1 running", WAIT);
    browser.wait("document.querySelector('#cancel')", "the cancel button", WAIT);
    browser.click("#cancel");
    browser.wait("document.querySelector('#confirm[open]')", "the confirmation", WAIT);
    let asked = browser.text("#confirm");
    assert!(asked.contains("Cancel run h1 of app") && asked.contains("a1 stays live"), "{asked}");
    browser.screenshot("cancel-confirm");
    browser.click("#confirm-no");
    browser.wait("document.querySelector('#confirm') === null", "the dialog gone", WAIT);
    assert_eq!(server.json("/api/v1/runs/h1", &deploy)["status"], "running");
    browser.click("#cancel");
    browser.wait("document.querySelector('#confirm[open]')", "the confirmation", WAIT);
    browser.click("#confirm-yes");
    browser.wait("document.querySelector('#run-status .status').dataset.status === 'cancelled'", "cancelled", WAIT);
}

#[test]
fn a_node_running_past_its_usual_time_says_so_instead_of_zero_left() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write(
        "late.yaml",
        "version: 1\nname: late\nconcurrency: {key: late, policy: queue}\nnodes:\n  prep: {phase: BUILDING, uses: noop}\n  work: {phase: COPYING_FILES, needs: [prep], uses: shell, with: {run: 'sleep 0.3; while [ -f hold ]; do sleep 0.05; done'}}\n",
    );
    // Its history: `work` takes 0.3 s.
    assert_eq!(ran(&env, &["run", "late.yaml", "--id", "usual"]).status.code(), Some(0));
    env.write("hold", "");
    let mut late = env.spawn(&["run", "late.yaml", "--id", "slow"]);
    let server = Service::start(&env);
    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &read);
    browser.wait("document.querySelector('#runs-body tr[data-id=slow][data-status=running]')", "the run", WAIT);
    // Once `work` has run longer than it usually does, the ETA says so.
    let late_text = "/work: running \\d+(\\.\\d)?s, usually 0\\.\\ds/";
    browser.wait(
        &format!(
            "{late_text}.test(document.querySelector('#runs-body tr[data-id=slow] [data-label=ETA]').textContent)"
        ),
        "the list saying work runs late",
        WAIT,
    );
    browser.screenshot("eta-late-list");
    browser.click("#runs-body tr[data-id=slow] a");
    browser.wait(&format!("{late_text}.test(document.querySelector('#run-eta').textContent)"), "the run page", WAIT);
    let shown = browser.text("#run-eta");
    assert!(!shown.contains("left"), "no count down past the estimate: {shown}");
    let usual = server.json("/api/v1/runs/slow", &read)["running_nodes"][0].clone();
    assert_eq!(usual["node"], "work");
    assert!(usual["usual_seconds"].as_f64().is_some_and(|s| (0.3..1.0).contains(&s)), "{usual}");
    assert_accessible(&browser, "a run running late");
    browser.screenshot("eta-late-run");
    std::fs::remove_file(env.path("hold")).unwrap();
    assert_eq!(support::wait_timeout(&mut late, WAIT).code(), Some(0));
    browser.wait("document.querySelector('#run-eta') === null", "no ETA once ended", WAIT);
}

#[test]
fn at_phone_width_the_header_is_one_row_events_are_cards_and_the_graph_says_it_scrolls() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    let mut chain = String::from("version: 1\nname: chain\nnodes:\n");
    for i in 0..6 {
        let needs = if i == 0 { String::new() } else { format!(", needs: [s{}]", i - 1) };
        chain.push_str(&format!("  s{i}: {{phase: BUILDING, uses: noop{needs}}}\n"));
    }
    env.write("chain.yaml", &chain);
    assert_eq!(ran(&env, &["run", "chain.yaml", "--id", "c1"]).status.code(), Some(0));
    let server = Service::start(&env);
    let browser = Browser::start(390, 844);

    // The sign-in error looks like one.
    browser.goto(&url(&server, ""));
    browser.wait("document.querySelector('#signin #token')", "the sign-in form", WAIT);
    browser.type_into("#token", "phd_not-a-token\u{E007}");
    browser.wait("document.querySelector('#signin-error').textContent.includes('not valid')", "the refusal", WAIT);
    let look = browser.js(
        "const s = getComputedStyle(document.querySelector('#signin-error'));
         return [s.color, s.borderTopStyle, s.backgroundColor]",
        vec![],
    );
    assert_eq!(look, json!(["rgb(180, 35, 24)", "solid", "rgb(253, 236, 234)"]), "the error's colours");
    assert_accessible(&browser, "the sign-in error");
    browser.screenshot("phone-signin-error");
    browser.js("document.querySelector('#token').value = ''", vec![]);
    browser.type_into("#token", &format!("{read}\u{E007}"));
    browser.wait("document.querySelector('#runs-body tr[data-id=c1]')", "the list", WAIT);

    // One row of header.
    let tops = browser.js(
        "return [...document.querySelectorAll('header.bar > *')].filter(e => e.getBoundingClientRect().width > 1)
           .map(e => Math.round(e.getBoundingClientRect().top + e.getBoundingClientRect().height / 2))",
        vec![],
    );
    let tops: Vec<i64> = tops.as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
    assert!(tops.len() >= 3 && tops.iter().all(|t| (t - tops[0]).abs() <= 4), "one row: {tops:?}");
    let fits = "document.documentElement.scrollWidth <= window.innerWidth";
    assert_eq!(browser.js(&format!("return {fits}"), vec![]), json!(true));
    assert_accessible(&browser, "the list at phone width");
    browser.screenshot("phone-header");

    browser.click("#runs-body tr[data-id=c1] a");
    browser.wait("document.querySelectorAll('#graph .node').length === 6", "the graph", WAIT);
    browser.wait("document.querySelectorAll('#events-body tr').length > 3", "the events", WAIT);
    // The graph scrolls in its box, and says so.
    let graph = browser.js(
        "const g = document.querySelector('#graph'); return [g.scrollWidth > g.clientWidth, g.clientWidth]",
        vec![],
    );
    assert_eq!(graph[0], true, "{graph}");
    assert_eq!(browser.js("return document.querySelector('#graph-hint').offsetHeight > 0", vec![]), json!(true));
    assert!(browser.text("#graph-hint").contains("sideways"));
    // Each event a card: no table row, no table head, nothing wider than the screen.
    let cards = browser.js(
        "return [getComputedStyle(document.querySelector('#events-body tr')).display,
                 document.querySelector('#events thead').getBoundingClientRect().left < 0,
                 document.querySelector('#events').getBoundingClientRect().right <= window.innerWidth]",
        vec![],
    );
    assert_eq!(cards, json!(["grid", true, true]), "events as cards");
    assert_eq!(browser.js(&format!("return {fits}"), vec![]), json!(true));
    assert_accessible(&browser, "a run at phone width");
    browser.screenshot("phone-run-top");
    browser.js("document.querySelector('#events').scrollIntoView()", vec![]);
    browser.screenshot("phone-events");
}

#[test]
fn the_log_pane_shows_when_each_line_was_written_wraps_or_not_and_downloads() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    let long = "x".repeat(300);
    env.write(
        "talk.yaml",
        &format!(
            "version: 1\nname: talk\nnodes:\n  speak: {{phase: BUILDING, uses: shell, with: {{run: 'echo one; sleep 1.1; echo two; echo {long}'}}}}\n"
        ),
    );
    assert_eq!(ran(&env, &["run", "talk.yaml", "--id", "t1"]).status.code(), Some(0));
    let server = Service::start(&env);
    let (status, log) = server.call("GET", "/api/v1/runs/t1/nodes/speak/log", Some(&read), &[]);
    assert_eq!(status, 200);
    let header = log.lines().next().unwrap().to_string();
    assert!(header.starts_with("== attempt 1 of `speak`"), "{log}");
    assert_eq!(log, format!("{header}\none\ntwo\n{long}\n"));
    let times = server.json("/api/v1/runs/t1/nodes/speak/log/times", &read);
    let list = times["times"].as_array().unwrap().clone();
    // The header and `one` in one second, `two` in a later one: a time for each second.
    assert_eq!(list.len(), 2, "{times}");
    let two = header.len() as u64 + 1 + 4;
    assert_eq!((list[0][0].as_u64(), list[1][0].as_u64()), (Some(0), Some(two)), "where `two` starts: {times}");
    assert!(list[1][1].as_u64().unwrap() >= list[0][1].as_u64().unwrap() + 1000, "{times}");
    assert_eq!(times["size"].as_u64(), Some(log.len() as u64));

    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &read);
    browser.goto(&url(&server, "#/runs/t1"));
    browser.wait("document.querySelector('#nodes-body tr[data-node=speak] button')", "the node", WAIT);
    browser.click("#nodes-body tr[data-node=speak] button");
    browser.wait("document.querySelector('#log').textContent.includes('xxx')", "the log", WAIT);
    browser.click("#log-times");
    let lines = browser.js("return document.querySelector('#log').textContent.split('\\n')", vec![]);
    let expected = browser.js(
        "const f = new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false});
         return [f.format(new Date(arguments[0])), f.format(new Date(arguments[1]))]",
        vec![list[0][1].clone(), list[1][1].clone()],
    );
    let (first, second) = (expected[0].as_str().unwrap(), expected[1].as_str().unwrap());
    assert_eq!(lines[0], format!("{first}  {header}"));
    assert_eq!(lines[1], format!("{first}  one"), "the time `one` was written, not when the page read it");
    assert_eq!(lines[2], format!("{second}  two"));
    assert!(lines[3].as_str().unwrap().starts_with(&format!("{second}  xxx")), "{lines}");
    assert_accessible(&browser, "the log with times");
    browser.screenshot("log-times");

    // Long lines wrap, or scroll when asked.
    let white = "return getComputedStyle(document.querySelector('#log')).whiteSpace";
    assert_eq!(browser.js(white, vec![]), json!("pre-wrap"));
    browser.click("#log-wrap");
    assert_eq!(browser.js(white, vec![]), json!("pre"));
    let scrolls = browser.js("const l = document.querySelector('#log'); return l.scrollWidth > l.clientWidth", vec![]);
    assert_eq!(scrolls, json!(true), "the long line scrolls");
    browser.screenshot("log-nowrap");

    // The whole log, as a file.
    let name = browser.js("return document.querySelector('#log-download').getAttribute('download')", vec![]);
    assert_eq!(name, json!("t1-speak.log"));
    let body = browser.js(
        "return fetch(document.querySelector('#log-download').href, {credentials: 'same-origin'}).then(r => r.text())",
        vec![],
    );
    assert_eq!(body, json!(log));
}

const SITE: &str = r#"
version: 1
name: site
inputs:
  service: {type: string, required: true, pattern: '^[a-z]+$', description: "the service's name"}
concurrency: {key: "{{ inputs.service }}", policy: queue}
nodes:
  build: {phase: BUILDING, uses: shell, with: {run: 'echo "building $S"', env: {S: '{{ inputs.service }}'}}}
  check: {phase: HEALTH_CHECK, needs: [build], uses: shell, with: {run: 'echo healthy'}}
"#;

fn plan_call(server: &Service, token: Option<&str>, body: Value) -> (u16, Value) {
    let (status, text) = server.send("POST", "/api/v1/plan", token, &[], &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn the_deploy_form_speaks_plainly_builds_a_source_and_plans_before_it_deploys() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    let read = token(&env, "viewer", "read");
    let admin = token(&env, "root", "admin");
    env.write("pipelines/site.yaml", SITE);
    let server = Service::start(&env);

    // The plan is checked as a run is: the same tokens, roles and admission.
    let static_site = |source: Value| json!({"pipeline": "static", "inputs": {"project": "shop", "source": source}});
    let git = json!({"type": "git", "url": "https://git.example/shop.git"});
    assert_eq!(plan_call(&server, None, static_site(git.clone())).0, 401);
    assert_eq!(plan_call(&server, Some(&read), static_site(git.clone())).0, 403);
    let mut operator = static_site(git.clone());
    operator["inputs"]["base_dir"] = json!("/tmp");
    let (status, body) = plan_call(&server, Some(&deploy), operator.clone());
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden-input")), "{body}");
    assert_eq!(plan_call(&server, Some(&admin), operator).0, 200, "the operator may");
    let outside = static_site(json!({"type": "git", "url": "x", "work_dir": "/etc"}));
    let (status, body) = plan_call(&server, Some(&deploy), outside);
    assert_eq!((status, body["error"]["diagnostics"][0]["input"].as_str()), (403, Some("source.work_dir")), "{body}");
    let (status, body) = plan_call(&server, Some(&deploy), json!({"pipeline": "site", "inputs": {"service": "Web"}}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid-inputs")), "{body}");

    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &deploy);
    browser.goto(&url(&server, "#/deploy/site"));
    browser.wait("document.querySelector('#deploy-form')", "the form", WAIT);
    browser.click("#deploy-submit");
    browser.wait("document.querySelector('#input-service-error').textContent.length > 0", "the error", WAIT);
    let error = browser.text("#input-service-error");
    assert!(error.contains("missing required input"), "{error}");
    assert!(!error.contains("-i ") && !error.contains("--inputs"), "no command-line advice in a form: {error}");
    assert_accessible(&browser, "the deploy form's error");
    browser.screenshot("deploy-plain-error");

    // Plan first: what it would run, and nothing started.
    browser.type_into("#input-service", "web");
    browser.click("#plan-submit");
    browser.wait("document.querySelector('#plan')", "the plan", WAIT);
    let steps = browser.js("return [...document.querySelectorAll('#plan li')].map(l => l.dataset.node)", vec![]);
    assert_eq!(steps, json!(["build", "check"]));
    assert!(browser.text("#plan li[data-node=build] .cmd").contains("echo \"building $S\""));
    assert!(browser.text("#plan").contains("web"), "its target");
    assert_eq!(server.json("/api/v1/runs", &deploy)["runs"], json!([]), "a plan starts nothing");
    assert_accessible(&browser, "a plan");
    browser.screenshot("deploy-plan");
    browser.click("#deploy-submit");
    browser.wait("location.hash.startsWith('#/runs/')", "the run's page", WAIT);

    // An object input the pipeline hands to a sub-pipeline: its own fields per choice;
    // what only the operator sets is not offered to a deploy token.
    browser.goto(&url(&server, "#/deploy/static"));
    browser.wait("document.querySelector('#input-source')", "the static form", WAIT);
    assert!(!browser.has("#input-base_dir") && !browser.has("#operator-inputs"), "no operator inputs");
    let choices = browser.js("return [...document.querySelectorAll('#input-source option')].map(o => o.value)", vec![]);
    for kind in ["git", "s3", "embedded", "upload"] {
        assert!(choices.as_array().unwrap().contains(&json!(kind)), "{choices}");
    }
    let choose = |kind: &str| {
        browser.js(
            "const s = document.querySelector('#input-source'); s.value = arguments[0]; s.dispatchEvent(new Event('change'))",
            vec![json!(kind)],
        )
    };
    choose("git");
    browser.wait("document.querySelector('#input-source-url')", "git's fields", WAIT);
    assert!(!browser.has("#input-source-token_secret"), "an operator field of the source");
    browser.type_into("#input-project", "shop");
    browser.type_into("#input-source-url", "https://git.example/shop.git");
    browser.type_into("#input-source-branch", "main");
    assert_accessible(&browser, "the source sub-form");
    browser.screenshot("deploy-source-git");
    browser.click("#plan-submit");
    browser.wait("document.querySelector('#plan li[data-node=copy_files]')", "the plan of static", WAIT);
    let steps = browser.js("return [...document.querySelectorAll('#plan li')].map(l => l.dataset.node)", vec![]);
    assert!(steps.as_array().unwrap().iter().any(|s| s.as_str().unwrap().starts_with("source.")), "{steps}");

    // A mapping of names to texts (embedded files) as pairs of fields.
    choose("embedded");
    browser.wait("document.querySelector('#input-source-files-add')", "the files' fields", WAIT);
    browser.click("#input-source-files-add");
    browser.type_into("#input-source-files .pair-key", "index.html");
    browser.type_into("#input-source-files .pair-value", "<h1>shop</h1>");
    browser.click("#plan-submit");
    browser.wait("document.querySelector('#plan li[data-node=\"source.generate\"]')", "the embedded source", WAIT);
    browser.screenshot("deploy-source-embedded");
    let runs = server.json("/api/v1/runs", &deploy)["runs"].as_array().unwrap().len();
    assert_eq!(runs, 1, "only the deploy started anything");
}
