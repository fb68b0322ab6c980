//! What a template may read where it stands. `inputs.<declared>` and `deployment.*`
//! everywhere; `nodes.<ancestor>.outputs.<declared>` in a node (any node in the
//! pipeline's `outputs` and hooks); `outputs.*` in `result_metadata`; `error.*` in
//! `on_failure`; `secrets.*` everywhere.

use std::collections::{HashMap, HashSet};

use crate::compiler::graph;
use crate::diagnostic::DiagnosticCode;
use crate::plan::DeclaredOutputs;
use crate::suggest;

pub const DEPLOYMENT_FIELDS: &[&str] =
    &["id", "short_id", "pipeline", "attempt", "started_at", "work_dir", "data_dir", "live_release"];
pub const ERROR_FIELDS: &[&str] = &["message", "node", "phase", "progress", "reverted"];

/// Where a template stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Site {
    /// `if`, `with`, `metadata`, `pipeline.select` of a node.
    Node(usize),
    /// `foreach.items` of a node: what its `if` sees, without `item`.
    Foreach(usize),
    /// `result_metadata` of a node: its own `outputs` are in scope too.
    NodeResult(usize),
    /// The pipeline's `outputs` and `on_success`: every node.
    Pipeline,
    /// `on_failure`: every node, and `error`.
    Failure,
    /// `concurrency.key`: only `inputs` (the target is known before the run starts).
    Concurrency,
}

/// The outputs a node declares; a `select` node declares what every alternative does.
#[derive(Clone, Debug)]
pub(super) enum NodeOutputs {
    One(DeclaredOutputs),
    Alternatives(Vec<(String, DeclaredOutputs)>),
}

pub(super) struct Scope<'a> {
    pub inputs: &'a [String],
    pub node_ids: &'a [String],
    pub index_of: &'a HashMap<&'a str, usize>,
    /// Ids of nodes that exist but could not be read; references to them are not
    /// reported again.
    pub broken: &'a HashSet<String>,
    pub needs: &'a [Vec<usize>],
    /// Each node's place in the execution order; `None` when `needs` has a cycle
    /// (then ancestry is not checked).
    pub position: Option<&'a [usize]>,
    pub outputs: &'a [NodeOutputs],
    /// Which nodes have `foreach` (`item` is in their scope).
    pub fanned: &'a [bool],
    pub used_inputs: HashSet<String>,
    pub uses_all_inputs: bool,
}

/// Why a variable is not in scope: code, message, help.
pub(super) struct OutOfScope {
    pub code: DiagnosticCode,
    pub message: String,
    pub help: Option<String>,
}

impl OutOfScope {
    fn new(message: String, help: Option<String>) -> Self {
        OutOfScope { code: DiagnosticCode::UndefinedVariable, message, help }
    }
}

impl Scope<'_> {
    pub(super) fn check(&mut self, var: &str, site: Site) -> Result<(), OutOfScope> {
        let parts: Vec<&str> = var.split('.').collect();
        let field = parts.get(1).copied();
        if matches!(site, Site::Concurrency) && parts[0] != "inputs" {
            return Err(OutOfScope::new(
                format!("undefined variable `{var}`: only `inputs` are in scope in `concurrency.key`"),
                Some("a run's target is known before it starts: build it from inputs".into()),
            ));
        }
        match parts[0] {
            "inputs" => match field {
                None => {
                    self.uses_all_inputs = true;
                    Ok(())
                }
                Some(name) if self.inputs.iter().any(|i| i == name) => {
                    self.used_inputs.insert(name.to_string());
                    Ok(())
                }
                Some(name) => Err(OutOfScope::new(
                    format!("undefined variable `{var}`: the pipeline declares no input `{name}`"),
                    Some(match suggest::closest(name, self.inputs.iter().map(String::as_str)) {
                        Some(best) => format!("did you mean `inputs.{best}`?"),
                        None if self.inputs.is_empty() => "declare it under `inputs:`".to_string(),
                        None => format!("declared inputs: {}", list(self.inputs)),
                    }),
                )),
            },
            "deployment" => match field {
                Some(f) if !DEPLOYMENT_FIELDS.contains(&f) => Err(OutOfScope::new(
                    format!("undefined variable `{var}`"),
                    suggest::hint(f, DEPLOYMENT_FIELDS.iter().copied())
                        .map(|h| format!("`deployment` has {}; {h}", suggest::list(DEPLOYMENT_FIELDS))),
                )),
                _ => Ok(()),
            },
            "secrets" => Ok(()),
            "item" => match site {
                Site::Node(node) | Site::NodeResult(node) if self.fanned[node] => Ok(()),
                Site::Foreach(_) => Err(OutOfScope::new(
                    format!(
                        "undefined variable `{var}`: `foreach.items` makes the items, so `item` is not in scope there"
                    ),
                    Some("build the list from `inputs` or the outputs of the node's ancestors".into()),
                )),
                _ => Err(OutOfScope::new(
                    format!("undefined variable `{var}`: `item` is only in scope in a node with `foreach`"),
                    Some("add `foreach: \"{{ inputs.<list> }}\"` to the node to run it once per item".into()),
                )),
            },
            "nodes" => self.check_node_ref(var, &parts, site),
            "outputs" => match site {
                Site::NodeResult(node) => match field {
                    None => Ok(()),
                    Some(name) => self.check_output(var, node, name, None),
                },
                _ => Err(OutOfScope::new(
                    format!("undefined variable `{var}`: `outputs` is only in scope in `result_metadata`"),
                    Some("read another node's outputs as `nodes.<id>.outputs.<name>`".into()),
                )),
            },
            "error" => match (site, field) {
                (Site::Failure, Some(f)) if !ERROR_FIELDS.contains(&f) => Err(OutOfScope::new(
                    format!("undefined variable `{var}`"),
                    Some(format!("`error` has {}", suggest::list(ERROR_FIELDS))),
                )),
                (Site::Failure, _) => Ok(()),
                _ => Err(OutOfScope::new(
                    format!("undefined variable `{var}`: `error` is only in scope in `on_failure`"),
                    None,
                )),
            },
            other => Err(OutOfScope::new(
                format!("undefined variable `{other}`"),
                Some(format!("defined here: {}", self.defined_at(site))),
            )),
        }
    }

    fn defined_at(&self, site: Site) -> String {
        let mut names = vec!["inputs", "deployment", "nodes", "secrets"];
        match site {
            Site::NodeResult(_) => names.push("outputs"),
            Site::Failure => names.push("error"),
            _ => {}
        }
        suggest::list(&names)
    }

    fn check_node_ref(&self, var: &str, parts: &[&str], site: Site) -> Result<(), OutOfScope> {
        let Some(&id) = parts.get(1) else { return Ok(()) };
        let Some(&target) = self.index_of.get(id) else {
            if self.broken.contains(id) {
                return Ok(());
            }
            return Err(OutOfScope::new(
                format!("undefined variable `{var}`: there is no node `{id}`"),
                suggest::hint(id, self.node_ids.iter().map(String::as_str)),
            ));
        };
        if let Site::Node(node) | Site::NodeResult(node) | Site::Foreach(node) = site {
            let current = &self.node_ids[node];
            if target == node {
                return Err(OutOfScope::new(
                    format!("undefined variable `{var}`: a node cannot read its own outputs"),
                    Some("use `outputs.<name>` in `result_metadata`".into()),
                ));
            }
            if let Some(position) = self.position
                && !graph::is_ancestor(target, node, self.needs, position)
            {
                return Err(OutOfScope::new(
                    format!("undefined variable `{var}`: `{id}` is not an ancestor of `{current}`"),
                    Some(format!(
                        "add `{id}` to the `needs` of `{current}` so that its outputs exist when `{current}` runs"
                    )),
                ));
            }
        }
        match parts.get(2) {
            None | Some(&"outputs") => {}
            Some(other) => {
                return Err(OutOfScope::new(
                    format!("undefined variable `{var}`: a node has only `outputs`, not `{other}`"),
                    Some(format!("write `nodes.{id}.outputs.<name>`")),
                ));
            }
        }
        match parts.get(3) {
            None => Ok(()),
            Some(name) => self.check_output(var, target, name, Some(id)),
        }
    }

    fn check_output(&self, var: &str, node: usize, name: &str, id: Option<&str>) -> Result<(), OutOfScope> {
        let id = id.unwrap_or(&self.node_ids[node]);
        match &self.outputs[node] {
            NodeOutputs::One(declared) => {
                if declared.allows(name) {
                    return Ok(());
                }
                let DeclaredOutputs::Names(names) = declared else { return Ok(()) };
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                Err(OutOfScope::new(
                    format!("undefined variable `{var}`: `{id}` declares no output `{name}`"),
                    Some(if names.is_empty() {
                        format!("`{id}` declares no outputs")
                    } else {
                        match suggest::closest(name, names.iter().copied()) {
                            Some(best) => format!("did you mean `{best}`? `{id}` declares {}", suggest::list(&names)),
                            None => format!("`{id}` declares {}", suggest::list(&names)),
                        }
                    }),
                ))
            }
            NodeOutputs::Alternatives(alternatives) => {
                let lacking: Vec<&str> =
                    alternatives.iter().filter(|(_, d)| !d.allows(name)).map(|(alt, _)| alt.as_str()).collect();
                if lacking.is_empty() {
                    return Ok(());
                }
                Err(OutOfScope {
                    code: DiagnosticCode::SelectOutputsDisagree,
                    message: format!(
                        "`{var}` is not declared by every alternative of `{id}`: {} lack{} `{name}`",
                        suggest::list(&lacking),
                        if lacking.len() == 1 { "s" } else { "" }
                    ),
                    help: Some(format!("declare `{name}` under `outputs:` in each alternative pipeline")),
                })
            }
        }
    }
}

fn list(names: &[String]) -> String {
    suggest::list(&names.iter().map(String::as_str).collect::<Vec<_>>())
}
