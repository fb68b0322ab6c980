//! `phased plan`: what a run would do, without doing it. Sub-pipelines are expanded
//! inline (their weights scaled into their node's), `if` conditions that depend only
//! on inputs are evaluated, and templates are rendered with placeholders for what is
//! known only at run time (`<nodes.source.outputs.path>`).

use std::sync::Arc;

use minijinja::value::{Object, Value};
use serde::Serialize;
use serde_json::{Map, json};

use crate::model::NodePath;
use crate::plan::{NodeKind, Plan, SubPipeline};
use crate::template::{self, Block, Template};

#[derive(Debug, Serialize)]
pub struct PlannedNode {
    pub node: String,
    pub phase: Option<String>,
    pub progress_start: u8,
    pub progress_end: u8,
    pub skipped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// The nodes it comes after, as written (`needs`), by their ids in this plan.
    pub needs: Vec<String>,
    pub with: serde_json::Value,
    pub metadata: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct DryRun {
    pub pipeline: String,
    /// The run's target (`concurrency.key`) and what a run does while it is busy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<&'static str>,
    pub inputs: Map<String, serde_json::Value>,
    pub nodes: Vec<PlannedNode>,
}

/// A template that could not be rendered with the given inputs, and where it stands.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: node `{node}`: {message}")]
pub struct DryRunError {
    pub node: String,
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
}

pub fn dry_run(plan: &Plan, inputs: Map<String, serde_json::Value>) -> Result<DryRun, DryRunError> {
    let mut walker = Walker { nodes: Vec::new(), done: 0.0, total: 1.0, root: plan.name.clone() };
    walker.walk(plan, &inputs, &NodePath::root(), 1.0, None)?;
    let last = walker.nodes.len();
    if let Some(end) = walker.nodes.last_mut().filter(|_| last > 0) {
        end.progress_end = 100;
    }
    let target = plan.target(&inputs).map_err(|message| {
        let (line, column) = plan.source.line_col(0);
        DryRunError { node: "concurrency".into(), message, file: plan.source.name.clone(), line, column }
    })?;
    let (target, policy) = match target {
        Some((target, policy)) => (Some(target), Some(policy.as_str())),
        None => (None, None),
    };
    Ok(DryRun { pipeline: plan.name.clone(), target, policy, inputs, nodes: walker.nodes })
}

struct Walker {
    nodes: Vec<PlannedNode>,
    /// Finished share of the whole run, 0..=1.
    done: f64,
    total: f64,
    root: String,
}

fn percent(share: f64) -> u8 {
    (share * 100.0).floor().clamp(0.0, 100.0) as u8
}

impl Walker {
    fn context(&self, inputs: &Map<String, serde_json::Value>, item: Option<&serde_json::Value>) -> Value {
        context(&self.root, inputs, item)
    }
}

/// What a template sees before a run: the inputs, `deployment` and node outputs as
/// placeholders, secrets as `***`.
pub(crate) fn context(root: &str, inputs: &Map<String, serde_json::Value>, item: Option<&serde_json::Value>) -> Value {
    {
        let deployment = json!({
            "id": "<deployment.id>",
            "short_id": "<deployment.short_id>",
            "pipeline": root,
            "attempt": 1,
            "started_at": "<deployment.started_at>",
            "work_dir": "<deployment.work_dir>",
            "data_dir": "<deployment.data_dir>",
            "live_release": "<deployment.live_release>",
        });
        let scope: std::collections::BTreeMap<&str, Value> = [
            ("inputs", Value::from(minijinja::value::Serde(inputs))),
            ("deployment", Value::from(minijinja::value::Serde(deployment))),
            ("nodes", Value::from_object(Placeholder("nodes".into()))),
            ("secrets", Value::from_object(Secrets)),
            ("outputs", Value::from_object(Placeholder("outputs".into()))),
        ]
        .into_iter()
        .chain(item.map(|item| ("item", Value::from(minijinja::value::Serde(item)))))
        .collect();
        Value::from(scope)
    }
}

impl Walker {
    /// Walks `plan` whose nodes together are worth `share` of the whole run; the nodes
    /// of a `foreach` get their `items`, one each.
    fn walk(
        &mut self,
        plan: &Plan,
        inputs: &Map<String, serde_json::Value>,
        at: &NodePath,
        share: f64,
        items: Option<&[serde_json::Value]>,
    ) -> Result<(), DryRunError> {
        let total = plan.total_weight();
        for &i in &plan.order {
            let node = &plan.nodes[i];
            let ctx = self.context(inputs, items.map(|items| &items[i]));
            let path = at.join(&node.id);
            let id = path.to_string();
            let needs: Vec<String> = node.needs.iter().map(|&n| at.join(&plan.nodes[n].id).to_string()).collect();
            let node_share = if total > 0.0 { share * node.weight / total } else { 0.0 };
            let fail_at = |span: crate::source::Span, message: String| {
                let (line, column) = plan.source.line_col(span.start);
                DryRunError { node: id.clone(), message, file: plan.source.name.clone(), line, column }
            };
            let fail = |message: String| fail_at(node.id_span, message);
            if let Some(foreach) = &node.foreach {
                let start = percent(self.done / self.total);
                let mut entry = PlannedNode {
                    node: id.clone(),
                    phase: node.phase.clone(),
                    progress_start: start,
                    progress_end: start,
                    skipped: false,
                    note: None,
                    uses: None,
                    pipeline: None,
                    needs,
                    with: serde_json::Value::Null,
                    metadata: serde_json::Value::Null,
                };
                if reads_nodes(&foreach.items) {
                    entry.note = Some(format!("once per item of `{}`, known at run time", foreach.items.text));
                    self.done += node_share;
                    entry.progress_end = percent(self.done / self.total);
                    self.nodes.push(entry);
                    continue;
                }
                let (values, keys) = crate::plan::foreach_items(foreach, &plan.templates, &ctx, &|item| {
                    self.context(inputs, Some(item))
                })
                .map_err(|e| fail_at(foreach.items.span, e))?;
                entry.note = Some(format!(
                    "once per item: {}",
                    keys.iter().map(|k| path.item(k).to_string()).collect::<Vec<_>>().join(", ")
                ));
                let container = self.nodes.len();
                self.nodes.push(entry);
                let fanned = plan.fan_out(i, &keys);
                self.walk(&fanned, inputs, &path, node_share, Some(&values))?;
                self.nodes[container].progress_end = percent(self.done / self.total);
                continue;
            }

            let (skipped, note) = match &node.condition {
                None => (false, None),
                Some(cond) if reads_nodes(cond) => (false, Some(format!("`if: {}` is decided at run time", cond.text))),
                Some(cond) => {
                    let keep = cond
                        .is_true(&plan.templates, &ctx)
                        .map_err(|e| fail_at(cond.span, format!("`if`: {}", template::describe_error(&e))))?;
                    (!keep, (!keep).then(|| format!("skipped: `{}` is false", cond.text)))
                }
            };
            let render = |block: &Option<Block>| -> Result<serde_json::Value, DryRunError> {
                match block {
                    None => Ok(serde_json::Value::Null),
                    Some(b) => b.render(&plan.templates, &ctx).map_err(|e| {
                        let at = if e.path.is_empty() { String::new() } else { format!("`{}`: ", e.path) };
                        fail_at(e.span, format!("{at}{}", template::describe_error(&e.error)))
                    }),
                }
            };
            let with = if skipped { serde_json::Value::Null } else { render(&node.with)? };
            let metadata = if skipped { serde_json::Value::Null } else { render(&node.metadata)? };
            let start = percent(self.done / self.total);
            let mut entry = PlannedNode {
                node: id.clone(),
                phase: node.phase.clone(),
                progress_start: start,
                progress_end: start,
                skipped,
                note,
                uses: None,
                pipeline: None,
                needs,
                with: with.clone(),
                metadata,
            };
            match &node.kind {
                NodeKind::Action(spec) => {
                    entry.uses = Some(spec.name.to_string());
                    // As the engine will pass them: converted to the declared types.
                    entry.with = spec.convert(std::mem::take(&mut entry.with));
                    self.done += node_share;
                    entry.progress_end = percent(self.done / self.total);
                    self.nodes.push(entry);
                }
                NodeKind::Pipeline(sub) => {
                    // The same choice as the engine's, unless it waits for run-time outputs.
                    let decided = match sub {
                        SubPipeline::Select { expr, .. } => !reads_nodes(expr),
                        SubPipeline::Fixed { .. } => true,
                    };
                    let chosen = match (skipped, decided) {
                        (false, true) => {
                            let at = match sub {
                                SubPipeline::Select { expr, .. } => expr.span,
                                SubPipeline::Fixed { .. } => node.id_span,
                            };
                            let (name, plan) = sub.choose(&plan.templates, &ctx).map_err(|e| fail_at(at, e))?;
                            Some((name.to_string(), Arc::clone(plan)))
                        }
                        _ => None,
                    };
                    entry.pipeline = Some(match (&chosen, sub) {
                        (Some((name, _)), _) => name.clone(),
                        (None, SubPipeline::Fixed { name, .. }) => name.clone(),
                        (None, SubPipeline::Select { expr, .. }) => format!("select {}", expr.text),
                    });
                    let container = self.nodes.len();
                    self.nodes.push(entry);
                    match chosen {
                        Some((_, child)) => {
                            let child_inputs = match &with {
                                serde_json::Value::Object(map) => map.clone(),
                                _ => Map::new(),
                            };
                            let child_inputs =
                                crate::compiler::inputs::resolve(&child.inputs, &child_inputs).map_err(|problems| {
                                    fail(problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("; "))
                                })?;
                            self.walk(&child, &child_inputs, &path, node_share, None)?;
                        }
                        None => self.done += node_share,
                    }
                    self.nodes[container].progress_end = percent(self.done / self.total);
                }
            }
        }
        Ok(())
    }
}

/// Whether a template reads the outputs of nodes (known only at run time).
fn reads_nodes(template: &Template) -> bool {
    template.variables.iter().any(|v| v.starts_with("nodes"))
}

/// Stands for values known only at run time: renders as `<nodes.x.outputs.y>`.
#[derive(Debug)]
struct Placeholder(String);

impl Object for Placeholder {
    /// Plain: serializes (and prints) as its `<...>` text.
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from_object(Placeholder(format!("{}.{key}", self.0))))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

/// Secrets are never shown, not even in a plan.
#[derive(Debug)]
struct Secrets;

impl Object for Secrets {
    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from("***"))
    }
}
