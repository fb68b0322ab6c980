//! The dashboard in a real headless Chromium against a real `phased serve` process:
//! sign-in, a deployment started from the form reaching ACTIVE live, a failure shown
//! where and why and resumed from its button, a server restarted under the page, a
//! read-only token, 1,000 runs and a run of 500 nodes, phone width and the dark scheme.
//! Every page is checked with axe-core and written as a screenshot
//! (`target/tmp/screenshots/`).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::Env;
use support::browser::{Browser, assert_accessible, sign_in, url};
use support::service::{Service, token};

const WAIT: Duration = Duration::from_secs(30);

/// The sequence numbers in the run page's event table, in the order shown.
fn shown_seqs(browser: &Browser) -> Vec<i64> {
    let v =
        browser.js("return [...document.querySelectorAll('#events-body tr')].map(r => Number(r.dataset.seq))", vec![]);
    v.as_array().unwrap().iter().map(|s| s.as_i64().unwrap()).collect()
}

const SITE: &str = r#"
version: 1
name: site
description: A site in four steps
inputs:
  service: {type: string, required: true, pattern: '^[a-z]+$', description: "the service's name"}
  replicas: {type: integer, default: 2}
  mode: {type: string, enum: [fast, careful], default: fast}
concurrency: {key: "{{ inputs.service }}", policy: queue}
nodes:
  build: {phase: BUILDING, uses: shell, metadata: {buildType: static}, with: {run: 'echo "building $S"; sleep 0.6', env: {S: '{{ inputs.service }}'}}}
  copy: {phase: COPYING_FILES, needs: [build], uses: shell, with: {run: 'sleep 0.6'}}
  route: {phase: UPDATING_ROUTES, needs: [copy], uses: shell, with: {run: 'sleep 0.6'}}
  check: {phase: HEALTH_CHECK, needs: [route], uses: shell, with: {run: 'sleep 0.6; echo healthy'}}
"#;

#[test]
fn a_deployment_started_from_the_form_reaches_active_on_screen_with_its_progress_rising() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/site.yaml", SITE);
    let server = Service::start(&env);
    let browser = Browser::start(1280, 900);

    // A wrong token is refused, and says so.
    browser.goto(&url(&server, ""));
    browser.wait("document.querySelector('#signin #token')", "the sign-in form", WAIT);
    assert_eq!(browser.js("return document.activeElement.id", vec![]), json!("token"), "the token field has focus");
    assert_accessible(&browser, "sign-in");
    browser.screenshot("signin");
    browser.type_into("#token", "phd_not-a-token\u{E007}");
    browser.wait("document.querySelector('#signin-error').textContent.includes('not valid')", "the refusal", WAIT);
    browser.screenshot("signin-refused");

    browser.js("document.querySelector('#token').value = ''", vec![]);
    browser.type_into("#token", &format!("{deploy}\u{E007}"));
    browser.wait("document.querySelector('#runs')", "the runs page", WAIT);
    assert!(browser.text("#who").contains("ci (deploy)"));
    browser.wait("document.querySelector('#live').textContent === 'Live'", "the live stream", WAIT);
    assert_accessible(&browser, "the empty runs page");
    browser.screenshot("runs-empty");

    // The form is made from the pipeline's inputs.
    browser.click("#deploy-link");
    browser.wait("document.querySelector('#pipeline')", "the deploy page", WAIT);
    browser.js(
        "const s = document.querySelector('#pipeline'); s.value = 'site'; s.dispatchEvent(new Event('change'))",
        vec![],
    );
    browser.wait("document.querySelector('#deploy-form')", "the form of `site`", WAIT);
    let fields = browser
        .js("return [...document.querySelectorAll('#deploy-form [data-input]')].map(f => f.dataset.input)", vec![]);
    assert_eq!(fields, json!(["service", "replicas", "mode"]));
    assert_eq!(browser.js("return document.querySelector('#input-replicas').type", vec![]), json!("number"));
    assert_eq!(
        browser.js("return document.querySelector('#input-service').getAttribute('aria-required')", vec![]),
        json!("true")
    );
    assert!(browser.text("[data-input=service] label").contains("(required)"));
    assert_eq!(browser.js("return document.querySelector('#input-replicas').value", vec![]), json!("2"), "its default");
    let modes =
        browser.js("return [...document.querySelectorAll('#input-mode option')].map(o => o.textContent)", vec![]);
    assert_eq!(modes, json!(["(default)", "fast", "careful"]));

    // The server's validation, next to the field it is about.
    browser.type_into("#input-service", "Web1");
    browser.click("#deploy-submit");
    browser.wait("document.querySelector('#input-service-error').textContent.length > 0", "the field's error", WAIT);
    let error = browser.text("#input-service-error");
    assert!(error.contains("^[a-z]+$"), "{error}");
    assert_eq!(
        browser.js("return document.querySelector('#input-service').getAttribute('aria-invalid')", vec![]),
        json!("true")
    );
    assert_eq!(browser.js("return document.activeElement.id", vec![]), json!("input-service"));
    assert_accessible(&browser, "the deploy form with an error");
    browser.screenshot("deploy-invalid");
    assert_eq!(server.json("/api/v1/runs", &deploy)["runs"], json!([]), "nothing was started");

    browser.js("document.querySelector('#input-service').value = ''", vec![]);
    browser.type_into("#input-service", "web");
    browser.js("const s = document.querySelector('#input-mode'); s.value = '\"careful\"'", vec![]);
    browser.click("#deploy-submit");
    browser.wait("location.hash.startsWith('#/runs/')", "the run's page", WAIT);
    let id = browser.js("return decodeURIComponent(location.hash.slice(7))", vec![]).as_str().unwrap().to_string();

    // Progress rises on screen, live, to ACTIVE.
    let mut seen = Vec::new();
    let begin = Instant::now();
    loop {
        let now = browser.js(
            "const p = document.querySelector('#run-progress progress'); const s = document.querySelector('#run-status .status');
             return p && s ? [p.value, s.dataset.status, document.querySelector('#run-phase').textContent] : null",
            vec![],
        );
        if let Some(now) = now.as_array() {
            let (progress, status) = (now[0].as_i64().unwrap(), now[1].as_str().unwrap().to_string());
            if seen.last().is_none_or(|(p, s, _): &(i64, String, String)| *p != progress || *s != status) {
                seen.push((progress, status.clone(), now[2].as_str().unwrap().to_string()));
            }
            if status == "succeeded" {
                break;
            }
        }
        assert!(begin.elapsed() < WAIT, "the run did not end on screen: {seen:?}");
        std::thread::sleep(Duration::from_millis(30));
    }
    let progress: Vec<i64> = seen.iter().map(|s| s.0).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress only rises: {seen:?}");
    assert!(progress.iter().any(|p| *p > 0 && *p < 100), "seen between 0 and 100: {seen:?}");
    assert_eq!(seen.last().unwrap().0, 100);
    assert!(seen.iter().any(|s| s.2 == "COPYING_FILES"), "phases went by: {seen:?}");
    assert_eq!(seen.last().unwrap().2, "ACTIVE");
    assert_eq!(
        server.json(&format!("/api/v1/runs/{id}"), &deploy)["inputs"],
        json!({"service": "web", "replicas": 2, "mode": "careful"})
    );

    // The graph and the nodes, each succeeded; the timeline with the phases' metadata.
    browser.wait("document.querySelectorAll('#graph .node.g-succeeded').length === 4", "four succeeded nodes", WAIT);
    let edges = browser.js("return document.querySelectorAll('#graph .edge').length", vec![]);
    assert_eq!(edges, json!(3));
    browser.wait(
        "document.querySelectorAll('#nodes-body tr[data-state=succeeded]').length === 4",
        "the node table",
        WAIT,
    );
    browser.wait("document.querySelector('#timeline').textContent.includes('buildType')", "the metadata", WAIT);
    browser.wait("document.querySelector('#timeline li:last-child .mono').textContent === 'ACTIVE'", "ACTIVE", WAIT);
    let timeline =
        browser.js("return [...document.querySelectorAll('#timeline li > .mono')].map(e => e.textContent)", vec![]);
    assert_eq!(timeline, json!(["QUEUED", "BUILDING", "COPYING_FILES", "UPDATING_ROUTES", "HEALTH_CHECK", "ACTIVE"]));
    browser.wait("document.querySelector('#cancel') === null", "no cancel button once ended", WAIT);
    assert_eq!(shown_seqs(&browser), env.event_seqs(Some(&id)), "every event once, in order");

    // A node's log.
    browser.click("#nodes-body tr[data-node=build] button");
    browser.wait("document.querySelector('#log').textContent.includes('building web')", "the node's log", WAIT);
    assert_accessible(&browser, "the run page");
    browser.screenshot("run-succeeded");

    // The list shows it, once.
    browser.click("#nav-runs");
    browser.wait("document.querySelectorAll('#runs-body tr').length === 1", "the list", WAIT);
    let rows = browser.js(
        "return [...document.querySelectorAll('#runs-body tr')].map(r => [r.dataset.id, r.dataset.status])",
        vec![],
    );
    assert_eq!(rows, json!([[id, "succeeded"]]));
    assert_accessible(&browser, "the runs page");
    browser.screenshot("runs");
}

#[test]
fn a_failed_run_shows_its_failed_node_and_error_and_its_resume_button_completes_it() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write(
        "flaky.yaml",
        "version: 1\nname: flaky\nnodes:\n  build: {phase: BUILDING, uses: shell, with: {run: 'echo build >> marks'}}\n  check: {phase: HEALTH_CHECK, needs: [build], uses: shell, with: {run: 'echo check >> marks; test -f fixed || { echo \"no answer on :8080/healthz\" >&2; exit 3; }'}}\n",
    );
    assert_eq!(env.run(&["run", "flaky.yaml", "--id", "f1"]).status.code(), Some(1));
    let server = Service::start(&env);
    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &deploy);
    browser.wait("document.querySelector('#runs-body tr[data-id=f1][data-status=failed]')", "the failed run", WAIT);
    browser.click("#runs-body tr[data-id=f1] a");
    browser.wait("document.querySelector('#failure')", "the failure", WAIT);
    let failure = browser.text("#failure");
    assert!(failure.contains("Failed at check"), "{failure}");
    assert!(failure.contains("no answer on :8080/healthz"), "the step's own words: {failure}");
    assert!(
        browser.has("#graph .node.g-failed[data-node=check]")
            && browser.has("#graph .node.g-succeeded[data-node=build]")
    );
    assert!(!browser.has("#cancel"), "nothing to cancel");
    assert_accessible(&browser, "a failed run");
    browser.screenshot("run-failed");

    env.write("fixed", "");
    browser.click("#resume");
    browser.wait(
        "document.querySelector('#run-status .status').dataset.status === 'succeeded'",
        "the resumed run's end",
        WAIT,
    );
    browser.wait("document.querySelector('#failure') === null", "the failure gone", WAIT);
    browser.wait("document.querySelector('#graph .node.g-succeeded[data-node=check]')", "check succeeded", WAIT);
    assert_eq!(env.marks("marks"), ["build", "check", "check"], "build had succeeded: it did not run again");
    assert_eq!(env.status("f1")["attempt"], 2);
    let stored = env.event_seqs(Some("f1"));
    let expression = format!("document.querySelectorAll('#events-body tr').length >= {}", stored.len());
    browser.wait(&expression, "every event of both attempts", WAIT);
    assert_eq!(shown_seqs(&browser), stored, "both attempts' events, each once");
    browser.screenshot("run-resumed");
}

#[test]
fn a_read_only_token_sees_no_button_that_would_fail() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write("pipelines/site.yaml", SITE);
    env.write(
        "bad.yaml",
        "version: 1\nname: bad\nnodes:\n  a: {phase: BUILDING, uses: shell, with: {run: 'exit 1'}}\n",
    );
    assert_eq!(env.run(&["run", "bad.yaml", "--id", "b1"]).status.code(), Some(1));
    let server = Service::start(&env);
    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &read);
    browser.wait("document.querySelector('#runs-body tr[data-id=b1]')", "the run", WAIT);
    assert!(browser.text("#who").contains("viewer (read)"));
    let hidden = browser.js("return document.querySelector('#nav-deploy').hidden", vec![]);
    assert_eq!(hidden, json!(true), "no Deploy in the menu");
    assert!(!browser.has("#deploy-link"), "no Deploy button");
    browser.click("#runs-body tr[data-id=b1] a");
    browser.wait("document.querySelector('#failure')", "the failed run", WAIT);
    assert!(!browser.has("#resume") && !browser.has("#cancel"), "no resume or cancel for a read token");
    browser.screenshot("run-read-only");
    // The deploy page is not offered either.
    browser.goto(&url(&server, "#/deploy"));
    browser.wait("document.querySelector('#runs')", "the runs page instead", WAIT);
    assert!(!browser.has("#deploy-form"));
    // What the page would have sent is refused by the server anyway.
    let status = browser.js(
        "return fetch('/api/v1/runs/b1/resume', {method: 'POST', credentials: 'same-origin'}).then(r => r.status)",
        vec![],
    );
    assert_eq!(status, json!(403));
    assert_eq!(env.status("b1")["status"], "failed");
}

#[test]
fn a_server_restarted_mid_run_is_rejoined_with_no_row_missing_or_repeated() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write(
        "pipelines/long.yaml",
        "version: 1\nname: long\nconcurrency: {key: app, policy: queue}\nnodes:\n  first: {phase: BUILDING, uses: shell, with: {run: 'echo first >> marks'}}\n  wait: {phase: COPYING_FILES, needs: [first], uses: shell, with: {run: 'echo wait >> marks; while [ ! -f go ]; do sleep 0.02; done'}}\n  last: {phase: HEALTH_CHECK, needs: [wait], uses: shell, with: {run: 'echo last >> marks'}}\n",
    );
    let mut server = Service::start(&env);
    let port = server.port;
    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &deploy);
    browser.wait("document.querySelector('#live').textContent === 'Live'", "the live stream", WAIT);
    let (status, _) =
        server.send("POST", "/api/v1/runs", Some(&deploy), &[], &json!({"pipeline": "long", "id": "r1"}).to_string());
    assert_eq!(status, 202);
    browser.wait("document.querySelector('#runs-body tr[data-id=r1]')", "the new run, without a reload", WAIT);
    browser.click("#runs-body tr[data-id=r1] a");
    browser.wait("document.querySelector('#graph .node.g-running[data-node=wait]')", "wait running", WAIT);

    support::kill9(&mut server.child);
    browser.wait("document.querySelector('#live').textContent.startsWith('Reconnecting')", "the page noticing", WAIT);
    browser.screenshot("server-gone");
    env.write("go", "");
    let _server = Service::start_on(&env, port, &[], &[]);
    browser.wait("document.querySelector('#live').textContent === 'Live'", "the page back live", WAIT);
    browser.wait("document.querySelector('#run-status .status').dataset.status === 'succeeded'", "the run's end", WAIT);
    let stored = env.event_seqs(Some("r1"));
    browser.wait(
        &format!("document.querySelectorAll('#events-body tr').length >= {}", stored.len()),
        "every event",
        WAIT,
    );
    let shown = shown_seqs(&browser);
    assert_eq!(shown, stored, "none missing, none repeated");
    let names = browser
        .js("return [...document.querySelectorAll('#events-body tr')].map(r => r.children[2].textContent)", vec![]);
    assert!(names.as_array().unwrap().contains(&json!("run_resumed")), "{names}");
    assert_eq!(env.marks("marks")[..2], ["first", "wait"], "first did not run again");
    browser.screenshot("run-rejoined");
    browser.click("#nav-runs");
    browser.wait("document.querySelector('#runs-body tr[data-id=r1][data-status=succeeded]')", "the list", WAIT);
    let rows = browser.js("return document.querySelectorAll('#runs-body tr').length", vec![]);
    assert_eq!(rows, json!(1), "one run, one row");
}

#[test]
fn a_phone_in_the_dark_scheme_gets_every_run_readable_without_sideways_scrolling() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write("pipelines/site.yaml", SITE);
    for service in ["web", "api"] {
        assert_eq!(env.run(&["run", "site", "-i", &format!("service={service}")]).status.code(), Some(0));
    }
    let server = Service::start(&env);
    let browser = Browser::start_with(390, 844, &["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]);
    sign_in(&browser, &server, &read);
    browser.wait("document.querySelectorAll('#runs-body tr').length === 2", "two runs", WAIT);
    assert_eq!(browser.js("return matchMedia('(prefers-color-scheme: dark)').matches", vec![]), json!(true));
    let background = browser.js("return getComputedStyle(document.body).backgroundColor", vec![]);
    assert_eq!(background, json!("rgb(15, 18, 23)"), "the dark background");
    let fits = "document.documentElement.scrollWidth <= window.innerWidth";
    assert_eq!(browser.js(&format!("return {fits}"), vec![]), json!(true), "no sideways scrolling");
    // Each cell says what it is (the table's head is off screen at this width).
    let label =
        browser.js("return getComputedStyle(document.querySelector('#runs-body td'), '::before').content", vec![]);
    assert_eq!(label, json!("\"Run\""));
    assert_accessible(&browser, "the runs page, dark, at phone width");
    browser.screenshot("phone-dark-runs");
    browser.click("#runs-body tr a");
    browser.wait("document.querySelectorAll('#graph .node').length === 4", "the run", WAIT);
    assert_eq!(
        browser.js(&format!("return {fits}"), vec![]),
        json!(true),
        "the run page fits too (its graph scrolls in its box)"
    );
    assert_accessible(&browser, "a run, dark, at phone width");
    browser.screenshot("phone-dark-run");
}

#[test]
fn a_thousand_runs_page_and_a_run_of_500_nodes_draws_whole() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/tick.yaml", "version: 1\nname: tick\nnodes:\n  a: {phase: BUILDING, uses: noop}\n");
    // 50 columns of 10 noop nodes, each after the one beside it in the column before.
    let mut wide = String::from("version: 1\nname: wide\nnodes:\n");
    for column in 0..50 {
        for row in 0..10 {
            let needs = if column == 0 { String::new() } else { format!(", needs: [n{}x{row}]", column - 1) };
            wide.push_str(&format!("  n{column}x{row}: {{phase: BUILDING, uses: noop{needs}}}\n"));
        }
    }
    env.write("wide.yaml", &wide);
    assert_eq!(env.run(&["run", "wide.yaml", "--id", "wide"]).status.code(), Some(0));
    let server = Service::start_with(&env, &["--workers", "4"]);
    for _ in 0..1000 {
        let (status, _) = server.send("POST", "/api/v1/runs", Some(&deploy), &[], r#"{"pipeline": "tick"}"#);
        assert_eq!(status, 202);
    }
    let begin = Instant::now();
    loop {
        let done: i64 = env
            .sqlite()
            .query_row("SELECT count(*) FROM deployments WHERE status = 'succeeded'", [], |r| r.get(0))
            .unwrap();
        if done == 1001 {
            break;
        }
        assert!(begin.elapsed() < Duration::from_secs(300), "{done} of 1001");
        std::thread::sleep(Duration::from_millis(100));
    }
    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &deploy);
    browser.wait("document.querySelectorAll('#runs-body tr').length === 50", "a page of 50", WAIT);
    let first = browser.js("return [...document.querySelectorAll('#runs-body tr')].map(r => r.dataset.id)", vec![]);
    browser.click("#older");
    browser.wait(
        "document.querySelector('#newest') && document.querySelectorAll('#runs-body tr').length === 50",
        "the next page",
        WAIT,
    );
    let second = browser.js("return [...document.querySelectorAll('#runs-body tr')].map(r => r.dataset.id)", vec![]);
    let (first, second) = (first.as_array().unwrap(), second.as_array().unwrap());
    assert!(first.iter().all(|id| !second.contains(id)), "two different pages");
    let newest: Vec<String> = env
        .sqlite()
        .prepare("SELECT id FROM deployments ORDER BY created_at DESC, id LIMIT 100")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let shown: Vec<String> = first.iter().chain(second).map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(shown, newest, "the newest 100, newest first");

    // A new run arrives on the first page live; the page stays 50 long.
    browser.click("#newest");
    browser.wait(
        "!document.querySelector('#newest') && document.querySelectorAll('#runs-body tr').length === 50",
        "the first page",
        WAIT,
    );
    let (_, started) =
        server.send("POST", "/api/v1/runs", Some(&deploy), &[], r#"{"pipeline": "tick", "id": "latest"}"#);
    assert!(started.contains("latest"), "{started}");
    browser.wait(
        "document.querySelector('#runs-body tr:first-child').dataset.id === 'latest'",
        "the new run on top",
        WAIT,
    );
    assert_eq!(browser.js("return document.querySelectorAll('#runs-body tr').length", vec![]), json!(50));
    browser.screenshot("runs-thousand");

    // 500 nodes: every node drawn and listed, each with its state.
    browser.goto(&url(&server, "#/runs/wide"));
    browser.wait("document.querySelectorAll('#graph .node.g-succeeded').length === 500", "500 nodes drawn", WAIT);
    browser.wait("document.querySelectorAll('#nodes-body tr').length === 500", "500 nodes listed", WAIT);
    assert_eq!(browser.js("return document.querySelectorAll('#graph .edge').length", vec![]), json!(490));
    let width = browser.js("return document.querySelector('#graph svg').getAttribute('width')", vec![]);
    assert!(width.as_str().unwrap().parse::<u32>().unwrap() > 50 * 168, "50 columns: {width}");
    browser.screenshot("run-500-nodes");
}

#[test]
fn a_release_is_rolled_back_to_from_its_button() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    let read = token(&env, "viewer", "read");
    support::service::two_releases_of_app(&env);
    let server = Service::start(&env);
    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &read);
    browser.goto(&url(&server, "#/runs/a2"));
    browser.wait("document.querySelector('#releases-table tr[data-release=a2][data-live=true]')", "the releases", WAIT);
    assert!(!browser.has("[data-rollback]"), "no rollback button for a read token");
    browser.click("#sign-out");
    browser.wait("document.querySelector('#signin')", "signed out", WAIT);

    sign_in(&browser, &server, &deploy);
    browser.goto(&url(&server, "#/runs/a2"));
    browser.wait("document.querySelector('[data-rollback=a1]')", "the button on the older release", WAIT);
    assert!(!browser.has("[data-rollback=a2]"), "none on the live one");
    assert_accessible(&browser, "a run with its releases");
    browser.js("document.querySelector('#releases').scrollIntoView()", vec![]);
    browser.screenshot("releases");
    browser.click("[data-rollback=a1]");
    browser.wait("document.querySelector('#confirm[open]')", "the confirmation", WAIT);
    browser.click("#confirm-yes");
    browser.wait("location.hash !== '#/runs/a2'", "the rollback run's page", WAIT);
    browser.wait(
        "document.querySelector('#run-status .status').dataset.status === 'succeeded'",
        "the rollback's end",
        WAIT,
    );
    assert_eq!(std::fs::read_to_string(env.path("live")).unwrap().trim(), "v1");
    // The releases are read again once the run has ended: a1 becomes the live one.
    browser.wait("document.querySelector('#releases-table tr[data-release=a1][data-live=true]')", "a1 live", WAIT);
    let live = browser.js(
        "return [...document.querySelectorAll('#releases-table tr[data-live=true]')].map(r => r.dataset.release)",
        vec![],
    );
    assert_eq!(live, json!(["a1"]), "the release the rollback made live, alone");
    browser.screenshot("rolled-back");
}

#[test]
fn a_deployment_can_be_started_and_followed_with_the_keyboard_alone() {
    let env = Env::new();
    let deploy = token(&env, "ci", "deploy");
    env.write("pipelines/site.yaml", SITE);
    let server = Service::start(&env);
    let browser = Browser::start(1280, 900);
    browser.goto(&url(&server, ""));
    browser.wait("document.activeElement && document.activeElement.id === 'token'", "focus in the token field", WAIT);
    browser.keys(&format!("{deploy}\u{E007}"));
    browser.wait("document.querySelector('#runs')", "the runs page", WAIT);
    // Tab to the Deploy button, Enter.
    let focused =
        |id: &str| browser.js("return document.activeElement && document.activeElement.id", vec![]) == json!(id);
    let mut tabs = 0;
    while !focused("deploy-link") {
        browser.keys("\u{E004}");
        tabs += 1;
        assert!(tabs < 20, "the Deploy button is reachable with Tab");
    }
    let ring = browser.js("return getComputedStyle(document.activeElement).outlineStyle", vec![]);
    assert_ne!(ring, json!("none"), "the focused control shows it");
    browser.keys("\u{E007}");
    browser.wait("document.activeElement && document.activeElement.id === 'pipeline'", "focus on the type", WAIT);
    // The type with the arrow keys; the form takes the focus to its first field.
    browser.keys("\u{E015}");
    browser.wait(
        "document.activeElement && document.activeElement.id === 'input-service'",
        "focus in the first field",
        WAIT,
    );
    browser.keys("web\u{E007}");
    browser.wait("location.hash.startsWith('#/runs/')", "the run's page", WAIT);
    browser.wait("document.querySelector('#run-status .status').dataset.status === 'succeeded'", "ACTIVE", WAIT);
    // Each node's log is a button in the tab order.
    let buttons = browser
        .js("return [...document.querySelectorAll('#nodes-body button')].filter(b => b.tabIndex >= 0).length", vec![]);
    assert_eq!(buttons, json!(4));
    browser.screenshot("keyboard-run");
}

#[test]
fn a_fanned_out_node_shows_each_item_with_its_own_state() {
    let env = Env::new();
    let read = token(&env, "viewer", "read");
    env.write(
        "wave.yaml",
        r#"version: 1
name: wave
nodes:
  prep: {phase: BUILDING, uses: noop}
  deploy:
    phase: UPDATING_ROUTES
    needs: [prep]
    foreach: {items: '{{ ["eu-1", "eu-2", "us-1"] }}', on_failure: continue}
    uses: shell
    with: {run: 'test "$ITEM" != eu-2 || { echo "eu-2 refused the connection" >&2; exit 1; }', env: {ITEM: '{{ item }}'}}
  check: {phase: HEALTH_CHECK, needs: [deploy], uses: noop}
"#,
    );
    assert_eq!(env.run(&["run", "wave.yaml", "--id", "w1"]).status.code(), Some(1));
    let server = Service::start(&env);
    let browser = Browser::start(1280, 900);
    sign_in(&browser, &server, &read);
    browser.goto(&url(&server, "#/runs/w1"));
    browser.wait("document.querySelector('#failure')", "the failure", WAIT);
    let failure = browser.text("#failure");
    assert!(failure.contains("1 of 3 items failed (deploy[eu-2])"), "{failure}");
    for (node, state) in [("deploy[eu-1]", "succeeded"), ("deploy[eu-2]", "failed"), ("deploy[us-1]", "succeeded")] {
        let selector = format!("#graph .node.g-{state}[data-node=\"{node}\"]");
        assert!(browser.has(&selector), "{selector}");
    }
    assert_accessible(&browser, "a fanned-out run");
    browser.screenshot("run-foreach");
}
