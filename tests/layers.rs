//! The layers of `src/` run one way: a file imports only its own layer or lower ones,
//! and no files import each other in a circle. The layers, lowest first, are
//! [`LAYERS`]; a new top-level module must be given one here. The check
//! (`layers/check.rs`) reads the sources as text: `crate::`, `super::` and `self::`
//! paths, paths through a child module and nested `use` groups, at the level of files.
//! The tests below it plant each kind of violation in a small tree of their own and
//! see the check name the file.

#[path = "layers/check.rs"]
mod check;
#[path = "layers/lex.rs"]
mod lex;

use std::path::Path;

/// The layers, lowest first. The engine's core and the store meet in the model below
/// both; the server is started by the command line and imports nothing of it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundations",
        &[
            "clock",
            "names",
            "paths",
            "duration",
            "suggest",
            "source",
            "yaml",
            "diagnostic",
            "secrets",
            "phase",
            "event",
            "template",
            "process",
            "supervise",
            "crash",
            "actor",
        ],
    ),
    ("model", &["model"]),
    ("pipeline files", &["de", "raw", "reader", "catalog"]),
    ("actions", &["action"]),
    ("compiler and plan", &["compiler", "plan", "dry_run", "schema", "admit"]),
    ("store", &["store", "seam"]),
    ("engine", &["engine", "notify"]),
    ("output", &["reporter", "report", "watch"]),
    ("application", &["app", "read"]),
    ("server", &["serve"]),
    ("command line", &["cli"]),
];

/// Imports the layers alone would allow but that may never be.
const NEVER: &[(&str, &str, &str)] = &[
    ("engine::core", "store", "the core decides, pure: it speaks the model's rows, not the store"),
    ("store", "raw", "the raw model is what serde read: the store speaks the model's types"),
    ("engine", "raw", "the raw model is what serde read: the engine runs the plan"),
    ("notify", "raw", "the raw model is what serde read: the notifier speaks the model's types"),
];

const RULES: check::Rules<'static> = check::Rules { layers: LAYERS, never: NEVER };

#[test]
fn src_keeps_its_layers() {
    let problems = check::check(Path::new("src"), &RULES);
    assert!(problems.is_empty(), "the layers of src/ are broken:\n{}", problems.join("\n"));
}

/// A tree of files under a temporary `src/`, each `(path, text)`.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join("src").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// The problems the check finds in a planted tree.
fn problems(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tree(files);
    check::check(&dir.path().join("src"), &RULES)
}

/// A tree that keeps its layers, to plant one violation in.
const CLEAN: &[(&str, &str)] = &[
    ("lib.rs", "pub mod clock;\npub mod model;\npub mod store;\npub mod engine;\npub mod serve;\npub mod cli;\n"),
    ("clock.rs", "pub fn now() -> i64 { 0 }\n"),
    ("model.rs", "mod status;\npub use status::RunStatus;\n"),
    ("model/status.rs", "pub enum RunStatus { Queued }\n"),
    ("store.rs", "mod rows;\nuse crate::model::RunStatus;\npub use rows::row;\n"),
    ("store/rows.rs", "pub fn row() -> i64 { crate::clock::now() }\n"),
    ("engine.rs", "mod core;\nuse crate::store;\npub(crate) use self::core::step;\n"),
    ("engine/core.rs", "mod machine;\npub use machine::step;\n"),
    ("engine/core/machine.rs", "use crate::model::{self, RunStatus};\npub fn step() {}\n"),
    ("serve.rs", "use crate::{engine, store::row};\npub fn serve() {}\n"),
    ("cli.rs", "use crate::serve::serve;\n// crate::nothing::here\nconst S: &str = \"crate::cli::x\";\n"),
];

fn with(changes: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut files: Vec<(&str, &str)> =
        CLEAN.iter().filter(|(p, _)| !changes.iter().any(|(c, _)| c == p)).copied().collect();
    files.extend_from_slice(changes);
    files
}

#[test]
fn a_clean_tree_passes() {
    assert_eq!(problems(CLEAN), Vec::<String>::new());
}

#[test]
fn an_upward_import_fails() {
    let found = problems(&with(&[("clock.rs", "pub fn now() -> i64 { crate::store::row() }\n")]));
    assert!(
        found.iter().any(|p| p.starts_with("src/clock.rs (foundations) imports src/store.rs (store), a higher layer")),
        "{found:#?}"
    );
}

#[test]
fn an_upward_import_through_super_fails() {
    // `super::super::super` from the model's status file is the crate root: `engine`.
    let found = problems(&with(&[(
        "model/status.rs",
        "use super::super::engine::{self as e, core::{step}};\npub enum RunStatus { Queued }\n",
    )]));
    assert!(
        found.iter().any(|p| p.starts_with("src/model/status.rs (model) imports src/engine.rs (engine)")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with("src/model/status.rs (model) imports src/engine/core.rs (engine)")),
        "{found:#?}"
    );
}

#[test]
fn a_circle_of_files_in_one_module_fails() {
    let found = problems(&with(&[
        ("engine/core.rs", "mod machine;\nmod end;\npub use machine::step;\n"),
        ("engine/core/machine.rs", "use super::end::Undo;\npub fn step() {}\n"),
        ("engine/core/end.rs", "pub struct Undo;\nfn f() { super::machine::step() }\n"),
    ]));
    let circle = found.iter().find(|p| p.starts_with("import circle")).expect("a circle");
    assert!(circle.contains("src/engine/core/end.rs -> src/engine/core/machine.rs"), "{circle}");
    assert!(circle.contains("src/engine/core/machine.rs -> src/engine/core/end.rs"), "{circle}");
}

#[test]
fn a_circle_through_a_parent_fails() {
    // The store's file uses its child; the child reaches back into the engine that
    // imports the store (the shape of the lease circle): the edge to a child counts.
    let found = problems(&with(&[
        ("store.rs", "mod rows;\npub use rows::row;\npub fn open() -> i64 { row() }\n"),
        ("store/rows.rs", "pub fn row() -> i64 { super::super::engine::tick() }\n"),
        ("engine.rs", "mod core;\npub fn tick() -> i64 { crate::store::open() }\n"),
    ]));
    assert!(
        found.iter().any(|p| p.starts_with("src/store/rows.rs (store) imports src/engine.rs (engine)")),
        "{found:#?}"
    );
    let circle = found.iter().find(|p| p.starts_with("import circle")).expect("a circle");
    assert!(circle.contains("src/store.rs -> src/store/rows.rs"), "{circle}");
}

#[test]
fn the_store_importing_the_engine_fails() {
    let found = problems(&with(&[("store/rows.rs", "use crate::engine::core::step;\npub fn row() -> i64 { 0 }\n")]));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("src/store/rows.rs (store) imports src/engine/core.rs (engine), a higher layer")),
        "{found:#?}"
    );
}

#[test]
fn the_server_importing_the_command_line_fails() {
    let found = problems(&with(&[("serve.rs", "use crate::{engine, cli::{self}};\npub fn serve() {}\n")]));
    assert!(
        found.iter().any(|p| p.starts_with("src/serve.rs (server) imports src/cli.rs (command line), a higher layer")),
        "{found:#?}"
    );
}

#[test]
fn a_module_without_a_layer_fails() {
    let found = problems(&with(&[("gadget.rs", "pub fn g() {}\n")]));
    assert!(found.iter().any(|p| p.contains("module `gadget` has no layer")), "{found:#?}");
}

#[test]
fn tests_comments_and_strings_are_not_imports() {
    let clean = problems(&with(&[
        (
            "store/rows.rs",
            "/// [`crate::engine`] calls this\npub fn row() -> i64 { let _ = \"crate::cli\"; /* super::super::cli */ 0 }\n\
             #[cfg(test)]\nmod tests {\n    use crate::cli;\n}\n",
        ),
        ("engine/core.rs", "mod machine;\n#[cfg(test)]\nmod tests;\npub use machine::step;\n"),
        ("engine/core/tests.rs", "use crate::cli;\n"),
    ]));
    assert_eq!(clean, Vec::<String>::new());
}

#[test]
fn the_core_importing_the_store_fails() {
    let found = problems(&with(&[("engine/core/machine.rs", "use crate::store::row;\npub fn step() {}\n")]));
    assert!(
        found.iter().any(|p| p.starts_with("src/engine/core/machine.rs imports src/store.rs: the core decides")),
        "{found:#?}"
    );
}

#[test]
fn the_store_importing_the_raw_model_fails() {
    let found = problems(&with(&[
        ("raw.rs", "pub enum Policy { Queue }\n"),
        ("store/rows.rs", "pub fn row() -> i64 { let _ = crate::raw::Policy::Queue; 0 }\n"),
    ]));
    assert!(
        found.iter().any(|p| p.starts_with("src/store/rows.rs imports src/raw.rs: the raw model is what serde read")),
        "{found:#?}"
    );
}
