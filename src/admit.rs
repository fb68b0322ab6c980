//! What a caller may give a run, checked before the run is queued. The operator (the
//! command line, an `admin` token, the server's own triggers file) may give anything.
//! Anyone else (a `deploy` token, a webhook's push fields) gives data only:
//!
//! - an input declared `operator: true` is refused from them, at any depth: a
//!   sub-pipeline's operator input is refused when the value that reaches it was
//!   built from what the caller gave (`with: "{{ inputs.source }}"` hands the caller's
//!   mapping on whole);
//! - an input declared `path: true` that they gave must be an absolute path under one
//!   of the server's roots (its data folder, each `--allow-path`), after `..` and
//!   symbolic links are resolved.
//!
//! Values a node computes (`nodes.<id>.outputs`) are the pipeline author's, not the
//! caller's: they are not followed. A sub-pipeline whose inputs cannot be rendered
//! before the run (they read node outputs) is checked for what can be known: which of
//! its inputs the caller's values reach.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::plan::{NodeKind, Plan, SubPipeline};
use crate::template::{Block, Template};

/// Who gave the inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The command line, an `admin` token, the triggers file.
    Operator,
    /// A `deploy` token, a webhook's push fields: data only.
    Untrusted,
}

/// An input a caller may not give, named by its path from the run's inputs
/// (`source.work_dir`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    pub(crate) input: String,
    pub(crate) message: String,
    pub(crate) help: String,
}

/// The folders a path given by a caller must lie under, resolved once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Roots(Vec<PathBuf>);

impl Roots {
    /// The data folder and the `--allow-path` folders (made absolute, symbolic links
    /// resolved where they exist).
    pub(crate) fn new(data_dir: &Path, allowed: &[PathBuf]) -> Self {
        Roots(std::iter::once(data_dir).chain(allowed.iter().map(PathBuf::as_path)).map(resolve).collect())
    }

    fn shown(&self) -> String {
        self.0.iter().map(|r| format!("`{}`", r.display())).collect::<Vec<_>>().join(", ")
    }

    /// Whether `given` (absolute) lies under one of the roots once resolved.
    fn admit(&self, given: &str) -> Result<(), String> {
        let path = Path::new(given);
        if !path.is_absolute() {
            return Err(format!("`{given}` is not an absolute path"));
        }
        let resolved = resolve(path);
        if self.0.iter().any(|root| resolved.starts_with(root)) {
            Ok(())
        } else {
            Err(format!("`{given}` is outside the folders this server allows"))
        }
    }
}

/// `path` absolute, `.` and `..` resolved, and the symbolic links of the part that
/// exists followed (a link inside a root that points elsewhere leads elsewhere).
fn resolve(path: &Path) -> PathBuf {
    let lexical = crate::paths::normalize(path);
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(real, |acc: PathBuf, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

/// Checks the resolved inputs of a run of `plan` that `caller` gave (`given`: the
/// names of the top-level inputs the caller set; the rest are defaults).
pub(crate) fn check(
    plan: &Plan,
    inputs: &Map<String, Value>,
    given: &[String],
    caller: Caller,
    roots: &Roots,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    if caller == Caller::Operator {
        return out;
    }
    let tainted: HashSet<String> = given.iter().cloned().collect();
    walk(plan, inputs, &tainted, "", roots, &mut out, 0);
    out
}

/// How deep sub-pipelines are followed (a catalog's cycles are refused by the compiler;
/// this bounds the work whatever happens).
const MAX_DEPTH: usize = 16;

fn walk(
    plan: &Plan,
    inputs: &Map<String, Value>,
    tainted: &HashSet<String>,
    prefix: &str,
    roots: &Roots,
    out: &mut Vec<Refusal>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    for (name, spec) in &plan.inputs {
        if !tainted.contains(name) {
            continue;
        }
        let value = inputs.get(name).unwrap_or(&Value::Null);
        let shown = format!("{prefix}{name}");
        if spec.operator && !value.is_null() && spec.default.as_ref() != Some(value) {
            out.push(Refusal {
                input: shown.clone(),
                message: format!("input `{shown}` is set by the operator only"),
                help: format!(
                    "`{}` declares `{name}` with `operator: true`: give it on the command line, with an `admin` \
                     token or in the server's triggers file",
                    plan.name
                ),
            });
            continue;
        }
        if spec.path
            && let Some(text) = value.as_str().filter(|t| !t.is_empty())
            && let Err(why) = roots.admit(text)
        {
            out.push(Refusal {
                input: shown.clone(),
                message: format!("input `{shown}`: {why}"),
                help: format!(
                    "a path given through the API or a webhook must lie under {} (the server's `--data-dir` and \
                     `--allow-path`)",
                    roots.shown()
                ),
            });
        }
    }
    let reads_tainted = |t: &Template| t.variables.iter().any(|v| taints(v, tainted));
    for node in &plan.nodes {
        let NodeKind::Pipeline(sub) = &node.kind else { continue };
        let children: Vec<&Plan> = match sub {
            SubPipeline::Fixed { plan, .. } => vec![plan.as_ref()],
            SubPipeline::Select { expr, .. }
                if !expr.variables.iter().any(|v| v.starts_with("nodes") || v == "item") =>
            {
                let ctx = crate::dry_run::context(&plan.name, inputs, None);
                match sub.choose(&plan.templates, &ctx) {
                    Ok((_, chosen)) => vec![chosen.as_ref()],
                    Err(_) => continue, // the run fails at this node: nothing under it runs
                }
            }
            SubPipeline::Select { from, .. } => from.values().map(|(_, p)| p.as_ref()).collect(),
        };
        // Which of the child's inputs the caller's values reach, and what they render to
        // when that can be known now.
        let (child_tainted, rendered): (HashSet<String>, Option<Map<String, Value>>) = match &node.with {
            None => (HashSet::new(), Some(Map::new())),
            Some(with) => {
                let keys: HashSet<String> = match with {
                    Block::Template(t) if reads_tainted(t) => {
                        children.iter().flat_map(|c| c.inputs.keys().cloned()).collect()
                    }
                    Block::Map(entries) => entries
                        .iter()
                        .filter(|(_, b)| {
                            let mut templates = Vec::new();
                            b.templates(&mut templates);
                            templates.into_iter().any(&reads_tainted)
                        })
                        .map(|(k, _)| k.clone())
                        .collect(),
                    _ => HashSet::new(),
                };
                let rendered = if node.foreach.is_some() {
                    None
                } else {
                    let ctx = crate::dry_run::context(&plan.name, inputs, None);
                    with.render(&plan.templates, &ctx).ok().and_then(|v| match v {
                        Value::Object(map) => Some(map),
                        _ => None,
                    })
                };
                (keys, rendered)
            }
        };
        if child_tainted.is_empty() {
            continue;
        }
        let child_prefix = format!("{prefix}{}.", node.id);
        for child in children {
            match &rendered {
                Some(given) => {
                    // Resolved as the engine will; a value that does not fit fails the
                    // run at this node, before anything under it runs.
                    if let Ok(resolved) = crate::compiler::inputs::resolve(&child.inputs, given) {
                        walk(child, &resolved, &child_tainted, &child_prefix, roots, out, depth + 1);
                    }
                }
                None => unknown_values(child, &child_tainted, &child_prefix, out),
            }
        }
    }
}

/// A sub-pipeline whose inputs are rendered per item at run time: an operator input
/// the caller's values reach is refused, since its value cannot be checked now.
fn unknown_values(child: &Plan, tainted: &HashSet<String>, prefix: &str, out: &mut Vec<Refusal>) {
    for (name, spec) in &child.inputs {
        if tainted.contains(name) && (spec.operator || spec.path) {
            let shown = format!("{prefix}{name}");
            out.push(Refusal {
                input: shown.clone(),
                message: format!("input `{shown}` would be built from the caller's values at run time"),
                help: format!(
                    "`{}` declares `{name}` as {}: a `deploy` token or a webhook cannot reach it",
                    child.name,
                    if spec.operator { "`operator: true`" } else { "`path: true`" }
                ),
            });
        }
    }
}

/// Whether a variable a template reads carries what the caller gave.
fn taints(var: &str, tainted: &HashSet<String>) -> bool {
    let mut parts = var.split('.');
    match (parts.next(), parts.next()) {
        (Some("inputs"), None) => !tainted.is_empty(),
        (Some("inputs"), Some(name)) => tainted.contains(name),
        (Some("item"), _) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_must_stay_under_a_root_once_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let other = dir.path().join("other");
        std::fs::create_dir_all(data.join("in")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::os::unix::fs::symlink(&other, data.join("escape")).unwrap();
        let roots = Roots::new(&data, &[]);
        let under = |p: &Path| roots.admit(p.to_str().unwrap());
        assert!(under(&data.join("in/new/file")).is_ok());
        assert!(under(&data.join("in/../../other")).is_err(), "`..` leaves the root");
        assert!(under(&data.join("escape/x")).is_err(), "a link inside the root points out of it");
        assert!(under(&other).is_err());
        assert!(roots.admit("relative/x").is_err());
        assert!(under(&data).is_ok());
        let allowed = Roots::new(&data, std::slice::from_ref(&other));
        assert!(allowed.admit(other.join("x").to_str().unwrap()).is_ok());
    }

    #[test]
    fn a_template_taints_what_it_builds_from_given_inputs() {
        let given: HashSet<String> = ["source".to_string()].into();
        assert!(taints("inputs.source.url", &given));
        assert!(taints("inputs", &given));
        assert!(taints("item", &given));
        assert!(!taints("inputs.base_dir", &given));
        assert!(!taints("nodes.a.outputs.path", &given));
        assert!(!taints("deployment.id", &given));
    }
}
