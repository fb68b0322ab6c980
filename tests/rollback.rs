//! Releases and rollback of the built-in `static` type through a real nginx: three
//! releases, back to the second and the first and forward again under a request loop
//! with no failed request; a release pruned by `keep` refused; a rollback killed in the
//! middle of its switch, then resumed.

mod support;

use serde_json::Value;
use support::{Env, Nginx, RequestLoop};

fn deploy(env: &Env, nginx: &Nginx, project: &str, version: &str, keep: u32) -> String {
    let inputs = env.write(
        &format!("{project}-{version}.yaml"),
        &format!("project: {project}\nkeep: {keep}\nsource: {{type: embedded, files: {{index.html: '<h1>{version}</h1>'}}}}\n"),
    );
    let id = format!("{project}-{version}");
    let mut args = vec!["run".to_string(), "static".into(), "--id".into(), id.clone(), "--inputs".into()];
    args.push(inputs.display().to_string());
    for input in nginx.inputs().into_iter().chain([format!("base_dir={}", env.path("srv").display())]) {
        args.extend(["-i".to_string(), input]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.command(&args).env("PHASED_PIPELINES", "/nonexistent").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    id
}

fn releases(env: &Env, target: &str) -> Vec<Value> {
    let out = env.run(&["releases", target, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["releases"].as_array().unwrap().clone()
}

fn live(env: &Env, target: &str) -> Vec<String> {
    releases(env, target).iter().filter(|r| r["live"] == true).map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

fn rollback(env: &Env, args: &[&str]) -> std::process::Output {
    let mut all = vec!["rollback"];
    all.extend_from_slice(args);
    env.command(&all).env("PHASED_PIPELINES", "/nonexistent").output().unwrap()
}

#[test]
fn a_static_site_rolls_back_and_forward_through_nginx_with_no_failed_request() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    let ids: Vec<String> = ["v1", "v2", "v3"].iter().map(|v| deploy(&env, &nginx, "shop", v, 5)).collect();
    assert_eq!(nginx.get("shop.localhost", "/").unwrap(), (200, "<h1>v3</h1>".to_string()));

    let listed = releases(&env, "shop");
    let order: Vec<&str> = listed.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["shop-v3", "shop-v2", "shop-v1"], "newest first");
    assert_eq!(live(&env, "shop"), ["shop-v3"]);
    let folder = listed[1]["deployed"]["release"].as_str().unwrap().to_string();
    assert!(folder.ends_with("/releases/shop-v2") && std::path::Path::new(&folder).is_dir(), "{folder}");
    assert_eq!(listed[0]["pipeline"], "static");
    assert!(listed[0]["duration_ms"].as_u64().is_some());
    let table = String::from_utf8(env.run(&["releases", "shop"]).stdout).unwrap();
    assert!(table.lines().nth(1).unwrap().starts_with('*') && table.contains("shop-v2"), "{table}");

    let requests = RequestLoop::start(nginx.port, "shop.localhost", &["<h1>v1</h1>", "<h1>v2</h1>", "<h1>v3</h1>"]);
    // Back to the release before the live one, then to the first, then forward again.
    let out = rollback(&env, &["shop", "--id", "back-1", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let events = support::events(&out.stdout);
    let phases: Vec<&str> =
        events.iter().filter(|e| e["event"] == "node_started").map(|e| e["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["CREATING_SYMLINKS", "UPDATING_ROUTES", "HEALTH_CHECK"], "no copy, no build");
    assert_eq!(events.last().unwrap()["progress"], 100);
    assert_eq!(nginx.get("shop.localhost", "/").unwrap().1, "<h1>v2</h1>");
    assert_eq!(live(&env, "shop"), ["shop-v2"], "the release the rollback made live, alone");

    let out = rollback(&env, &["shop", "--to", &ids[0], "--id", "back-2"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(nginx.get("shop.localhost", "/").unwrap().1, "<h1>v1</h1>");
    let out = rollback(&env, &["shop", "--to", &ids[2], "--id", "forward"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let result = requests.stop();
    assert_eq!(nginx.get("shop.localhost", "/").unwrap().1, "<h1>v3</h1>");
    assert_eq!(result.failed, 0, "no request failed");
    assert!(result.ok > 20, "the loop ran through the rollbacks: {}", result.ok);
    assert_eq!(result.seen, ["<h1>v3</h1>", "<h1>v2</h1>", "<h1>v1</h1>", "<h1>v3</h1>"]);
    assert_eq!(live(&env, "shop"), ["shop-v3"]);
    let status = env.status("forward");
    assert_eq!(status["target"], "shop");
    assert_eq!(status["pipeline"], "static/rollback");
    assert_eq!(status["phase_metadata"]["rollbackOf"], "shop-v3");

    // Nothing to go to: the live release itself.
    let out = rollback(&env, &["shop", "--to", "shop-v3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the live one already"));
    let out = rollback(&env, &["shop", "--to", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a release of target `shop`"));
}

#[test]
fn a_release_pruned_by_keep_is_refused_and_a_killed_rollback_resumes() {
    let env = Env::new();
    let nginx = Nginx::start(&env.path("nginx"));
    for v in ["t1", "t2", "t3"] {
        deploy(&env, &nginx, "tiny", v, 2);
    }
    // keep: 2: the first release's folder is gone.
    assert!(!env.path("srv/tiny/releases/tiny-t1").exists());
    let runs_before: i64 = env.count("SELECT count(*) FROM deployments");
    let out = rollback(&env, &["tiny", "--to", "tiny-t1"]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("the folder of release `tiny-t1` is gone") && said.contains("keep"), "{said}");
    let runs_after: i64 = env.count("SELECT count(*) FROM deployments");
    assert_eq!(runs_after, runs_before, "no run was started");
    assert_eq!(nginx.get("tiny.localhost", "/").unwrap().1, "<h1>t3</h1>", "nothing changed");

    // Where the switch's crash point is, counted on a rollback that completes...
    let list = env.path("points");
    let out = env
        .command(&["rollback", "tiny", "--id", "counted"])
        .env("PHASED_PIPELINES", "/nonexistent")
        .env("PHASED_CRASH_LIST", &list)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(nginx.get("tiny.localhost", "/").unwrap().1, "<h1>t2</h1>");
    let points = std::fs::read_to_string(&list).unwrap();
    let at = points
        .lines()
        .find(|l| l.contains("release.switch: the new link made"))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    // ...then a rollback forward killed right there, and resumed.
    let out = env
        .command(&["rollback", "tiny", "--to", "tiny-t3", "--id", "killed"])
        .env("PHASED_PIPELINES", "/nonexistent")
        .env("PHASED_CRASH_AT", &at)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "aborted at its crash point");
    assert_eq!(nginx.get("tiny.localhost", "/").unwrap().1, "<h1>t2</h1>", "the old link still serves");
    let out = env.command(&["resume", "killed"]).env("PHASED_PIPELINES", "/nonexistent").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(nginx.get("tiny.localhost", "/").unwrap().1, "<h1>t3</h1>");
    assert_eq!(live(&env, "tiny"), ["tiny-t3"]);
    // The live release and the one before it are still on disk (keep: 2).
    assert!(env.path("srv/tiny/releases/tiny-t3").is_dir() && env.path("srv/tiny/releases/tiny-t2").is_dir());
}
