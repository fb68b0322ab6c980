//! `phased init`: the starter type validates with no warning and deploys as written (a
//! second run with a new version goes live); a built-in type is copied to customise;
//! nothing is overwritten without `--force`. Real binary, real files.

mod support;

use support::Env;

#[test]
fn the_starter_validates_runs_and_a_second_version_goes_live() {
    let env = Env::new();
    let out = env.run(&["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let file = env.path("pipelines/my-app.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("name: my-app") && text.contains("# "), "commented, named");
    assert_eq!(env.run(&["validate", "--deny-warnings", file.to_str().unwrap()]).status.code(), Some(0));
    let base = env.path("srv");
    let base = format!("base_dir={}", base.display());
    for version in ["1", "2"] {
        let run = env.run(&["run", "my-app", "-i", &base, "-i", &format!("version={version}")]);
        assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stdout));
    }
    assert_eq!(std::fs::read_to_string(env.path("srv/current/index.html")).unwrap(), "version 2\n");

    let again = env.run(&["init"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    assert_eq!(env.run(&["init", "--force"]).status.code(), Some(0));
}

#[test]
fn a_built_in_type_is_copied_to_customise_and_a_wrong_one_gets_a_hint() {
    let env = Env::new();
    assert_eq!(env.run(&["init", "static"]).status.code(), Some(0));
    let copy = env.path("pipelines/static.yaml");
    assert!(std::fs::read_to_string(&copy).unwrap().contains("name: static"));
    assert_eq!(env.run(&["validate", copy.to_str().unwrap()]).status.code(), Some(0));
    let wrong = env.run(&["init", "statik"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("did you mean `static`?"));
}
