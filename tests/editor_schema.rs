//! The JSON Schema editors use, and the SARIF log `validate --format sarif` writes,
//! checked by a real validator: ajv (strict mode for our schema, SARIF's published
//! schema for the log), run by node through `tests/schema/check.cjs`. scripts/test-deps
//! installs ajv and the schema under /var/lib/phased-test/node.

use std::path::{Path, PathBuf};
use std::process::Command;

fn node_modules() -> PathBuf {
    let root =
        std::env::var_os("PHASED_TEST_NODE").map_or_else(|| PathBuf::from("/var/lib/phased-test/node"), PathBuf::from);
    let modules = root.join("node_modules");
    assert!(modules.join("ajv").is_dir(), "ajv is missing under {}: run scripts/test-deps", modules.display());
    modules
}

/// Each file's verdict: (file, valid, errors).
fn check(schema: &Path, files: &[PathBuf], published: bool) -> Vec<(String, bool, Vec<String>)> {
    let mut cmd = Command::new("node");
    cmd.arg("tests/schema/check.cjs").env("NODE_PATH", node_modules());
    if published {
        cmd.arg("--published");
    }
    let out = cmd.arg(schema).args(files).output().expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the schema does not compile in ajv: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let errors = v["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect();
            (v["file"].as_str().unwrap().to_string(), v["valid"].as_bool().unwrap(), errors)
        })
        .collect()
}

fn schema_file(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_phased")).arg("schema").output().unwrap();
    assert!(out.status.success());
    let path = dir.join("pipeline.schema.json");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") && !path.to_string_lossy().ends_with(".inputs.yaml")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_schema_is_strict_valid_and_accepts_every_shipped_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let schema = schema_file(dir.path());
    let mut files = yaml_files("pipelines");
    files.extend(yaml_files("examples"));
    assert!(files.len() > 10, "{files:?}");
    for (file, valid, errors) in check(&schema, &files, false) {
        assert!(valid, "{file} is valid for phased but not for its schema: {errors:?}");
    }
}

#[test]
fn the_schema_rejects_what_validate_rejects_that_a_schema_can_express() {
    let dir = tempfile::tempdir().unwrap();
    let schema = schema_file(dir.path());
    let node = |body: &str| {
        format!(
            "version: 1\nname: t\ninputs: {{code: {{type: integer, default: 200}}, p: {{type: string, default: nginx}}}}\nnodes:\n  a: {body}\n"
        )
    };
    let cases: Vec<(&str, String)> = vec![
        ("a misspelt phase", node("{phase: BUILD, uses: noop}")),
        ("a reserved phase", node("{phase: ACTIVE, uses: noop}")),
        ("a misspelt action", node("{phase: BUILDING, uses: shel}")),
        ("no attempt at all", node("{phase: BUILDING, uses: noop, retry: {attempts: 0}}")),
        ("a negative weight", node("{phase: BUILDING, uses: noop, weight: -3}")),
        ("an unknown parameter", node("{phase: BUILDING, uses: shell, with: {run: x, shel: y}}")),
        ("a parameter of the wrong type", node("{phase: BUILDING, uses: http.check, with: {url: x, status: [200]}}")),
        ("a missing parameter", node("{phase: BUILDING, uses: sleep, with: {}}")),
        ("a value outside an enum", node("{phase: BUILDING, uses: routes.update, with: {proxy: apache, domain: d}}")),
        ("both uses and pipeline", node("{phase: BUILDING, uses: noop, pipeline: other}")),
        ("neither uses nor pipeline", node("{phase: BUILDING}")),
        (
            "a node id that is not snake_case",
            "version: 1\nname: t\nnodes:\n  Bad-Id: {phase: BUILDING, uses: noop}\n".into(),
        ),
        ("another format version", "version: 2\nname: t\nnodes:\n  a: {phase: BUILDING, uses: noop}\n".into()),
    ];
    let valid_cases: Vec<(&str, String)> = vec![
        ("a template where a number goes", node("{phase: BUILDING, uses: http.check, with: {url: x, status: '{{ inputs.code }}'}}")),
        ("a template where an enum goes", node("{phase: BUILDING, uses: routes.update, with: {proxy: '{{ inputs.p }}', domain: d}}")),
        (
            "a phase the file adds",
            "version: 1\nname: t\nphases: [{name: MIGRATING, after: BUILDING}]\nnodes:\n  a: {phase: MIGRATING, uses: noop}\n".into(),
        ),
    ];
    let mut files = Vec::new();
    for (i, (_, text)) in cases.iter().chain(&valid_cases).enumerate() {
        let path = dir.path().join(format!("case{i}.yaml"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    // phased itself agrees with each verdict.
    for (i, path) in files.iter().enumerate() {
        let out = Command::new(env!("CARGO_BIN_EXE_phased")).args(["validate"]).arg(path).output().unwrap();
        let expect_valid = i >= cases.len();
        assert_eq!(out.status.success(), expect_valid, "phased on case {i}: {}", String::from_utf8_lossy(&out.stdout));
    }
    let verdicts = check(&schema, &files, false);
    for (i, (what, _)) in cases.iter().enumerate() {
        assert!(!verdicts[i].1, "the schema accepts {what}");
    }
    for (i, (what, _)) in valid_cases.iter().enumerate() {
        let (_, valid, errors) = &verdicts[cases.len() + i];
        assert!(valid, "the schema rejects {what}: {errors:?}");
    }

    // The invalid fixtures whose problem is one of shape (not of meaning: a cycle, an
    // undefined variable) are rejected by the schema too.
    let shape = [
        "conflicting-keys",
        "empty-file",
        "invalid-name",
        "missing-action",
        "missing-field",
        "missing-parameter",
        "negative-weight",
        "reserved-phase",
        "unknown-action",
        "unknown-key",
        "unknown-key-comma",
        "unknown-parameter",
        "unsupported-version",
        "wrong-type",
    ];
    let fixtures: Vec<PathBuf> =
        shape.iter().map(|n| PathBuf::from(format!("tests/fixtures/invalid/{n}.yaml"))).collect();
    for (file, valid, _) in check(&schema, &fixtures, false) {
        assert!(!valid, "the schema accepts {file}");
    }
}

#[test]
fn validate_writes_a_sarif_log_that_its_published_schema_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_phased"))
        .args(["validate", "--format", "sarif", "tests/fixtures/invalid", "pipelines"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "invalid files: exit 1");
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = dir.path().join("validate.sarif");
    std::fs::write(&path, &out.stdout).unwrap();
    let schema = node_modules().join("@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json");
    let verdict = check(&schema, &[path], true);
    assert!(verdict[0].1, "SARIF's schema rejects the log: {:?}", verdict[0].2);

    let run = &log["runs"][0];
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(run["tool"]["driver"]["name"], "phased");
    let results = run["results"].as_array().unwrap();
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let cycle = results.iter().find(|r| r["ruleId"] == "cycle").expect("the cycle fixture is reported");
    let location = &cycle["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "tests/fixtures/invalid/cycle.yaml");
    assert!(location["region"]["startLine"].as_u64().unwrap() >= 1);
    assert_eq!(rules[cycle["ruleIndex"].as_u64().unwrap() as usize]["id"], "cycle");
    // One result per diagnostic of `validate --format json`, same codes and lines.
    let json = Command::new(env!("CARGO_BIN_EXE_phased"))
        .args(["validate", "--format", "json", "tests/fixtures/invalid", "pipelines"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let expected: Vec<(String, u64)> = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap().to_string(), d["line"].as_u64().unwrap()))
        .collect();
    let got: Vec<(String, u64)> = results
        .iter()
        .map(|r| {
            let line = r["locations"][0]["physicalLocation"]["region"]["startLine"].as_u64().unwrap();
            (r["ruleId"].as_str().unwrap().to_string(), line)
        })
        .collect();
    assert_eq!(got, expected);

    let clean = Command::new(env!("CARGO_BIN_EXE_phased"))
        .args(["validate", "--format", "sarif", "pipelines"])
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(0));
    let clean: serde_json::Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(clean["runs"][0]["results"], serde_json::json!([]));
}
