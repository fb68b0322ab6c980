//! The tutorial (docs/tutorial.md) works as written: its pipeline files are taken from
//! the page itself, validated, planned and deployed, then broken and resumed the way
//! section 5 says. Real files, real processes.

mod support;

use support::Env;

/// The page's YAML blocks whose first line names a file under `pipelines/`.
fn files_of(page: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("a closed block");
        let block = &body[..end];
        if let Some(name) =
            block.lines().next().and_then(|l| l.strip_prefix("# ")).filter(|n| n.starts_with("pipelines/"))
        {
            files.push((name.to_string(), block.to_string()));
        }
        rest = &body[end + 3..];
    }
    files
}

#[test]
fn the_tutorial_validates_deploys_fails_and_resumes_as_written() {
    let page = std::fs::read_to_string("docs/tutorial.md").unwrap();
    let files = files_of(&page);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["pipelines/api.yaml", "pipelines/steps/migrate.yaml"]);
    let env = Env::new();
    let root = env.path("srv");
    for (name, text) in &files {
        env.write(name, &text.replace("/tmp/phased-tutorial", root.to_str().unwrap()));
    }
    let text = |out: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };

    // Section 1: the skeleton runs as written (in a folder of its own).
    let skeleton = Env::new();
    assert_eq!(skeleton.run(&["init", "--name", "api"]).status.code(), Some(0));
    assert_eq!(skeleton.run(&["run", "api"]).status.code(), Some(0));

    let validate = env.run(&["validate"]);
    assert_eq!(validate.status.code(), Some(0), "{}", text(&validate));
    assert!(text(&validate).contains("2 files valid"), "{}", text(&validate));
    let plan = env.run(&["plan", "api", "-i", "service=shop"]);
    assert!(text(&plan).contains("migrate.apply") && text(&plan).contains("MIGRATING_DATABASE"), "{}", text(&plan));
    let bad = env.run(&["run", "api", "-i", "service=Shop"]);
    assert_eq!(bad.status.code(), Some(2), "the pattern refuses it: {}", text(&bad));

    let run = env.run(&["run", "api", "-i", "service=shop", "--id", "tut1"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let status = env.status("tut1");
    assert_eq!(status["target"], "shop");
    assert_eq!(status["phase_metadata"]["migrations"], "1");
    assert!(std::fs::read_to_string(root.join("shop/current/app.txt")).unwrap().contains("shop 1.0.0"));

    // Section 5: break the check, run, put it back, resume with --reload.
    let api = env.path("pipelines/api.yaml");
    let good = std::fs::read_to_string(&api).unwrap();
    let needle = r#"grep -qF -- "$VERSION""#;
    assert!(good.contains(needle), "the tutorial's check line");
    std::fs::write(&api, good.replace(needle, r#"grep -qF -- "$VERSION-beta""#)).unwrap();
    let failed = env.run(&["run", "api", "-i", "service=shop", "--id", "tut2"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let status = env.status("tut2");
    assert_eq!(status["phase_metadata"]["failedNode"], "check");
    let check = status["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "check").unwrap().clone();
    assert_eq!(check["attempt"], 3, "three attempts");
    std::fs::write(&api, &good).unwrap();
    let preview = text(&env.run(&["plan", "--resume", "tut2", "--reload"]));
    for kept in ["build", "migrate", "switch"] {
        assert!(preview.lines().any(|l| l.trim_start().starts_with(kept) && l.contains("kept")), "{kept}: {preview}");
    }
    assert!(preview.lines().any(|l| l.trim_start().starts_with("check") && l.contains("changed")), "{preview}");
    let resumed = env.run(&["resume", "tut2", "--reload"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let log = std::fs::read_to_string(root.join("shop/migrations.log")).unwrap();
    assert_eq!(log.lines().count(), 2, "the migration ran once per run, not again on resume");
}

#[test]
fn every_relative_link_in_the_docs_points_at_a_file() {
    let mut pages = vec![std::path::PathBuf::from("README.md")];
    for entry in std::fs::read_dir("docs").unwrap() {
        pages.push(entry.unwrap().path());
    }
    for page in pages.iter().filter(|p| p.extension().is_some_and(|e| e == "md")) {
        let text = std::fs::read_to_string(page).unwrap();
        let folder = page.parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let target = &text[i + 2..];
            let target = &target[..target.find(')').unwrap()];
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            assert!(folder.join(file).exists(), "{}: the link `{target}` points at nothing", page.display());
        }
    }
}
