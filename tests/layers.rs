//! The layers of `src/` run one way: a module imports only its own layer or lower
//! ones, and no group of modules imports itself in a circle. The layers, lowest first:
//! foundations, pipeline files, actions, compiler and plan, engine and store, the read
//! side, the application layer, the command line. This reads the sources as text
//! (`crate::x` paths); a new top-level module must be given a layer here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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
    ("pipeline files", &["de", "raw", "reader", "catalog"]),
    ("actions", &["action"]),
    ("compiler and plan", &["compiler", "plan", "dry_run", "schema", "admit"]),
    ("engine and store", &["engine", "store", "notify"]),
    ("read side", &["read"]),
    ("application", &["app"]),
    ("command line", &["cli", "reporter", "report", "watch", "serve"]),
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` has no layer in tests/layers.rs"))
}

/// Module paths (`engine`, `cli::run`) and the `crate::` paths each one uses.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    walk(Path::new("src"), &mut out);
    out
}

fn walk(dir: &Path, out: &mut BTreeMap<String, BTreeSet<String>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix("src").unwrap().with_extension("");
        let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if matches!(parts[0].as_str(), "lib" | "main") || parts.last().is_some_and(|p| p == "tests") {
            continue;
        }
        let module = parts.iter().take(2).cloned().collect::<Vec<_>>().join("::");
        let text = std::fs::read_to_string(&path).unwrap();
        // Unit tests may reach anywhere: only the code counts.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let used = out.entry(module).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let path: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            if let Some(first) = segments.first().filter(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '_')) {
                let second = segments.get(1).filter(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
                used.insert(match second {
                    Some(second) if Path::new("src").join(first).join(format!("{second}.rs")).exists() => {
                        format!("{first}::{second}")
                    }
                    _ => first.to_string(),
                });
            }
        }
    }
}

#[test]
fn no_module_imports_a_higher_layer() {
    let mut wrong = Vec::new();
    for (module, used) in imports() {
        let own = module.split("::").next().unwrap();
        for target in used {
            let theirs = target.split("::").next().unwrap();
            if layer_of(theirs) > layer_of(own) {
                wrong.push(format!(
                    "{module} ({}) imports {target} ({})",
                    LAYERS[layer_of(own)].0,
                    LAYERS[layer_of(theirs)].0
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports that go up:\n{}", wrong.join("\n"));
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let graph = imports();
    // A module's path names its parent too (`cli::run` is inside `cli`): an edge to a
    // parent is the parent's own declaration, not a circle.
    let edges = |from: &str| -> Vec<String> {
        graph
            .get(from)
            .into_iter()
            .flatten()
            .filter(|to| !from.starts_with(&format!("{to}::")) && !to.starts_with(&format!("{from}::")) && *to != from)
            .cloned()
            .collect()
    };
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges(&node) {
                if next == *start {
                    panic!("import circle: {} -> {start}", path.join(" -> "));
                }
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next, longer));
                }
            }
        }
    }
}
