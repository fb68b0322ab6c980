//! The real `phased` binary: exit codes, output formats, hostile input.

use std::path::Path;
use std::process::{Command, Output};

fn phased(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phased")).args(args).env("NO_COLOR", "1").output().expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn validate_exits_0_on_the_shipped_catalog_and_1_on_an_invalid_file() {
    let ok = phased(&["validate"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("ok: "), "{}", stdout(&ok));

    let bad = phased(&["validate", "tests/fixtures/invalid/unknown-node.yaml"]);
    assert_eq!(bad.status.code(), Some(1));
    let text = stdout(&bad);
    assert!(text.contains("unknown node `sourc` in `needs` of `build`"), "{text}");
    assert!(text.contains("tests/fixtures/invalid/unknown-node.yaml:9:13"), "{text}");
    assert!(text.contains("did you mean `source`?"), "{text}");
}

#[test]
fn github_format_prints_one_annotation_per_problem() {
    let out = phased(&["validate", "--format", "github", "tests/fixtures/invalid/unknown-node.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "::error file=tests/fixtures/invalid/unknown-node.yaml,line=9,col=13::unknown node `sourc` in `needs` of `build` [unknown-node]%0Adid you mean `source`?"
    );
}

#[test]
fn json_format_has_the_documented_shape() {
    let out = phased(&[
        "validate",
        "--format",
        "json",
        "tests/fixtures/invalid/cycle.yaml",
        "tests/fixtures/invalid/negative-weight.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["files"], 2);
    let codes: Vec<&str> =
        report["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert_eq!(codes, vec!["cycle", "negative-weight"]);
    let first = &report["diagnostics"][0];
    for key in ["severity", "code", "message", "file", "line", "column", "help"] {
        assert!(first.get(key).is_some(), "missing `{key}` in {first}");
    }
    assert_eq!((first["line"].as_u64(), first["column"].as_u64()), (Some(6), Some(13)));
}

#[test]
fn warnings_pass_unless_denied() {
    let file = "tests/fixtures/invalid/phase-order.yaml";
    let out = phased(&["validate", "--format", "json", file]);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let severities: Vec<&str> =
        report["diagnostics"].as_array().unwrap().iter().map(|d| d["severity"].as_str().unwrap()).collect();
    assert_eq!(severities, vec!["warning"; 3], "{report}");
    let denied = phased(&["validate", "--deny-warnings", file]);
    assert_eq!(denied.status.code(), Some(1));
}

#[test]
fn the_command_itself_failing_exits_2() {
    let missing = phased(&["validate", "no/such/dir"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("`no/such/dir` does not exist"));
    assert_eq!(phased(&["validate", "--format", "xml"]).status.code(), Some(2));
    assert_eq!(phased(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn hostile_files_end_in_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let cases = [
        (write("garbage.yaml", &garbage), "not-utf8"),
        (write("nul.yaml", b"version: 1\0\n"), "yaml-syntax"),
        (write("empty.yaml", b""), "empty-file"),
        // Too deep for the parser: the documented code, not a syntax error.
        (write("deep.yaml", "[".repeat(100_000).as_bytes()), "yaml-too-complex"),
        (write("list.yaml", b"- a\n- b\n"), "wrong-type"),
        (
            write("bomb.yaml", std::fs::read("tests/fixtures/invalid/yaml-too-complex.yaml").unwrap().as_slice()),
            "yaml-too-complex",
        ),
    ];
    for (path, code) in cases {
        let out = phased(&["validate", "--format", "json", &path]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["diagnostics"][0]["code"], code, "{path}: {report}");
    }
}

#[test]
fn plan_shows_a_diamond_with_progress_rising_to_100() {
    let out = phased(&["plan", "tests/fixtures/plan/diamond.yaml", "-i", "with_docs=true", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ends: Vec<u64> =
        plan["nodes"].as_array().unwrap().iter().map(|n| n["progress_end"].as_u64().unwrap()).collect();
    assert_eq!(ends, vec![10, 30, 60, 100]);

    let human = phased(&["plan", "tests/fixtures/plan/diamond.yaml"]);
    let text = stdout(&human);
    assert!(text.contains("build_docs") && text.contains("(skipped)"), "{text}");
}

#[test]
fn plan_rejects_bad_inputs_with_exit_2() {
    let out = phased(&["plan", "demo", "-i", "source.type=local"]);
    assert_eq!(out.status.code(), Some(2));
    let out = phased(&["plan", "tests/fixtures/plan/diamond.yaml", "-i", "with_doc=true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `with_docs`?"));
    let out = phased(&["plan", "nosuchtype"]);
    assert_eq!(out.status.code(), Some(2));
    let out = phased(&["plan", "tests/fixtures/invalid/cycle.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a -> c -> b -> a"));
}

#[test]
fn help_explains_commands_and_exit_codes() {
    let out = phased(&["--help"]);
    let text = stdout(&out);
    for word in ["validate", "plan", "Exit codes"] {
        assert!(text.contains(word), "{text}");
    }
    assert!(Path::new("docs/pipeline-format.md").exists());
}

#[test]
fn phaseds_own_log_lines_carry_no_colour_codes_into_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_phased"))
        .args(["run", "examples/hello.yaml", "--db"])
        .arg(dir.path().join("p.db"))
        .env("PHASED_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Run started."), "the log is there: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "no escape codes in a pipe: {stderr:?}");
}

#[test]
fn completions_and_the_manual_page_are_generated_from_the_commands() {
    let bash = phased(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    let script = stdout(&bash);
    assert!(script.contains("complete -F _phased"), "{script}");
    for word in ["validate", "resume", "logs", "--durability"] {
        assert!(script.contains(word), "the script offers `{word}`");
    }
    assert!(stdout(&phased(&["completions", "zsh"])).contains("#compdef phased"));
    assert!(stdout(&phased(&["completions", "fish"])).contains("complete -c phased"));
    let man = stdout(&phased(&["man"]));
    assert!(man.starts_with(".ie") || man.contains(".TH phased"), "{man}");
    assert!(man.contains("Declarative, resumable deployment pipelines"), "{man}");
    assert_eq!(phased(&["completions", "tcsh"]).status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn verbose_shows_what_phased_does_and_watch_names_its_quiet_period_debounce() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_phased"))
            .args(args)
            .env("PHASED_DB", dir.path().join("p.db"))
            .env_remove("PHASED_LOG")
            .output()
            .unwrap()
    };
    let quiet = run(&["run", "examples/hello.yaml"]);
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("Run started."));
    let verbose = run(&["-v", "run", "examples/hello.yaml"]);
    assert!(String::from_utf8_lossy(&verbose.stderr).contains("Run started."));
    let help = run(&["watch", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--debounce <DURATION>"), "{help:?}");
}

#[test]
fn hostile_files_get_positioned_errors_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let huge_key = dir.path().join("huge-key.yaml");
    let key = "k".repeat(20 * 1024 * 1024);
    std::fs::write(
        &huge_key,
        format!("version: 1\nname: x\nnodes:\n  a:\n    phase: BUILDING\n    uses: noop\n    {key}: 1\n"),
    )
    .unwrap();
    let long_value = dir.path().join("long-value.yaml");
    let value = "heavy".repeat(400);
    std::fs::write(
        &long_value,
        format!("version: 1\nname: x\nnodes:\n  a:\n    phase: BUILDING\n    weight: {value}\n    uses: noop\n"),
    )
    .unwrap();
    let many = dir.path().join("many.yaml");
    let keys: String = (0..20_000).map(|i| format!("    unknown_{i}: 1\n")).collect();
    std::fs::write(&many, format!("version: 1\nname: x\nnodes:\n  a:\n    phase: BUILDING\n    uses: noop\n{keys}"))
        .unwrap();

    let out = phased(&["validate", huge_key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert!(stdout(&out).contains("huge-key.yaml:7:"), "{}", &stdout(&out)[..200.min(stdout(&out).len())]);

    let out = phased(&["validate", long_value.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("expected a number for `weight`") && text.contains("long-value.yaml:6:13"), "{text}");
    assert!(text.len() < 2_000, "the 2,000-character line is not printed: {} bytes", text.len());

    let out = phased(&["validate", many.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("invalid: 20000 errors in 1 of 1 file"));
    assert_eq!(stdout(&out).matches("unknown key `unknown_").count(), 20_000, "every one is reported");
}

#[test]
fn what_run_would_reject_in_a_template_validate_rejects_first_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("brace.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: x\ninputs:\n  x: {type: string, default: a}\nnodes:\n  a:\n    phase: BUILDING\n    uses: shell\n    with: {run: \"{{ inputs.x }}}\"}\n",
    )
    .unwrap();
    let out = phased(&["validate", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &report["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["line"].as_u64(), d["column"].as_u64()),
        (Some("template-syntax"), Some(9), Some(30))
    );
}
