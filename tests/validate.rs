//! Validation through the library: one invalid fixture per error kind, with snapshots
//! of the human and JSON renderings; every shipped pipeline validates; the JSON Schema
//! has not drifted from the Rust types.

use std::path::Path;

use phased::catalog::Catalog;
use phased::compiler::Compiler;
use phased::diagnostic::Diagnostic;
use phased::report;
use phased::source::Source;

fn fixture_catalog() -> Catalog {
    Catalog::new().with_dir(Path::new("tests/fixtures/catalog"))
}

fn validate(path: &Path, catalog: &Catalog) -> Vec<Diagnostic> {
    let name = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(path).display().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let source = Source::new(name, text);
    let mut compiler = Compiler::new(catalog);
    compiler.compile(&source);
    compiler.diagnostics()
}

#[test]
fn every_invalid_fixture_reports_its_own_code_with_a_snapshot() {
    let catalog = fixture_catalog();
    insta::glob!("fixtures/invalid/*.yaml", |path| {
        let diagnostics = validate(path, &catalog);
        let stem = path.file_stem().unwrap().to_str().unwrap();
        assert!(
            diagnostics.iter().any(|d| stem.starts_with(d.code.as_str())),
            "{stem}: expected a diagnostic with code `{stem}`, got {:?}",
            diagnostics.iter().map(|d| d.code).collect::<Vec<_>>()
        );
        let human: Vec<String> = diagnostics.iter().map(|d| report::human(d, false)).collect();
        insta::assert_snapshot!("human", human.join("\n"));
        let json: Vec<report::JsonDiagnostic> = diagnostics.iter().map(Into::into).collect();
        insta::assert_json_snapshot!("json", json);
    });
}

#[test]
fn a_missing_need_points_at_the_entry_and_suggests_the_closest_node() {
    let diagnostics = validate(Path::new("tests/fixtures/invalid/unknown-node.yaml"), &fixture_catalog());
    let d = diagnostics.iter().find(|d| d.code.as_str() == "unknown-node").unwrap();
    assert_eq!(d.line_col(), (9, 13), "the `sourc` entry inside `needs: [sourc]`");
    assert_eq!(d.help.as_deref(), Some("did you mean `source`?"));
}

#[test]
fn a_cycle_is_printed_as_a_walk() {
    let diagnostics = validate(Path::new("tests/fixtures/invalid/cycle.yaml"), &fixture_catalog());
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages, vec!["cycle in `needs`: a -> c -> b -> a"]);
}

#[test]
fn an_undefined_variable_is_reported_at_its_line_inside_a_multiline_node() {
    let diagnostics = validate(Path::new("tests/fixtures/invalid/undefined-variable.yaml"), &fixture_catalog());
    let diagnostics: Vec<_> = diagnostics.into_iter().filter(|d| d.is_error()).collect();
    let found: Vec<(usize, usize, &str)> =
        diagnostics.iter().map(|d| (d.line_col().0, d.line_col().1, d.code.as_str())).collect();
    assert_eq!(
        found,
        vec![
            (15, 18, "undefined-variable"), // inputs.projet, inside the block scalar
            (16, 18, "undefined-variable"), // nodes.source: not an ancestor of build
            (18, 22, "undefined-variable"), // deploymnt
        ]
    );
    assert_eq!(diagnostics[0].help.as_deref(), Some("did you mean `inputs.project`?"));
    assert!(diagnostics[1].message.contains("`source` is not an ancestor of `build`"));
    assert!(diagnostics[2].help.as_deref().unwrap().contains("`inputs`, `deployment`, `nodes`, `secrets`"));
}

#[test]
fn every_problem_in_a_file_is_reported_at_once() {
    let diagnostics = validate(Path::new("tests/fixtures/invalid/unknown-key.yaml"), &fixture_catalog());
    let keys: Vec<(&str, Option<&str>)> = diagnostics.iter().map(|d| (d.message.as_str(), d.help.as_deref())).collect();
    assert_eq!(
        keys,
        vec![
            ("unknown key `descripton`", Some("did you mean `description`?")),
            (
                "node `build` has neither `uses` nor `pipeline`",
                Some("add `uses: <action>` (for instance `uses: shell`) or `pipeline: <name>`")
            ),
            ("unknown key `usess`", Some("did you mean `uses`?")),
            ("unknown key `wieght`", Some("did you mean `weight`?")),
        ]
    );
}

#[test]
fn every_shipped_pipeline_and_example_validates_without_warnings() {
    for dir in ["pipelines", "examples", "tests/fixtures/catalog", "tests/fixtures/plan"] {
        let catalog = Catalog::new().with_dir(Path::new(dir)).with_builtin();
        let files = phased::catalog::yaml_files(Path::new(dir)).unwrap();
        assert!(!files.is_empty() || dir == "examples", "{dir} has no pipelines");
        for file in files {
            let diagnostics = validate(&file, &catalog);
            let rendered: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
            assert!(diagnostics.is_empty(), "{}:\n{}", file.display(), rendered.join("\n"));
        }
    }
}

#[test]
fn the_json_schema_file_matches_the_rust_types() {
    let generated = phased::schema::pipeline_schema_json();
    let committed = std::fs::read_to_string("schemas/pipeline.schema.json").unwrap_or_default();
    assert!(
        committed.trim() == generated.trim(),
        "schemas/pipeline.schema.json is out of date: run `cargo run -- schema > schemas/pipeline.schema.json`"
    );
}

#[test]
fn every_diagnostic_code_is_documented() {
    let docs = std::fs::read_to_string("docs/pipeline-format.md").unwrap();
    let catalog = fixture_catalog();
    for entry in std::fs::read_dir("tests/fixtures/invalid").unwrap() {
        for d in validate(&entry.unwrap().path(), &catalog) {
            assert!(docs.contains(&format!("`{}`", d.code)), "code `{}` is not in docs/pipeline-format.md", d.code);
        }
    }
}

#[test]
fn every_action_and_its_outputs_are_documented() {
    let docs = std::fs::read_to_string("docs/pipeline-format.md").unwrap();
    for action in phased::action::ACTIONS {
        let row = docs
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", action.name)))
            .unwrap_or_else(|| panic!("action `{}` has no row in docs/pipeline-format.md", action.name));
        if let phased::action::Outputs::Fixed(outputs) = action.outputs {
            for output in outputs {
                assert!(
                    row.contains(&format!("`{output}`")),
                    "output `{output}` of `{}` is not documented",
                    action.name
                );
            }
        }
    }
}
