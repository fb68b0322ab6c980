//! `phased plan`: what a run would do, without doing it. Sub-pipelines are expanded
//! inline (their weights scaled into their node's), `if` conditions that depend only
//! on inputs are evaluated, and templates are rendered with placeholders for what is
//! known only at run time (`<nodes.source.outputs.path>`).

use std::rc::Rc;
use std::sync::Arc;

use minijinja::value::{Object, Value};
use serde::Serialize;
use serde_json::{Map, json};

use crate::plan::walk::{Inside, Instance, Role, Visit, walk};
use crate::plan::{Foreach, NodeKind, Plan, SubPipeline};
use crate::source::Span;
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
    let top = Frame { inputs: Rc::new(inputs.clone()), share: 1.0, total: None, items: None, container: None };
    let mut walker = Walker { nodes: Vec::new(), done: 0.0, total: 1.0, root: plan.name.clone(), frames: vec![top] };
    walk(plan, &mut walker)?;
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
    /// One per plan the walk is inside, the top one first.
    frames: Vec<Frame>,
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

/// A plan the walk is inside: what its nodes see and what they are worth.
struct Frame {
    inputs: Rc<Map<String, serde_json::Value>>,
    /// The share of the whole run its nodes are worth together.
    share: f64,
    /// Its nodes' total weight, from its first node on.
    total: Option<f64>,
    /// The items of a `foreach`, one per node of the plan it fanned out to.
    items: Option<Vec<serde_json::Value>>,
    /// The entry of the node it is inside, whose progress ends with it.
    container: Option<usize>,
}

/// Where a node's template could not be rendered.
fn fail_at(at: &Instance<'_>, span: Span, message: String) -> DryRunError {
    let (line, column) = at.plan.source.line_col(span.start);
    DryRunError { node: at.path.to_string(), message, file: at.plan.source.name.clone(), line, column }
}

impl Visit for Walker {
    type Error = DryRunError;

    /// Adds the node; what runs inside it (the items of a `foreach`, the sub-pipeline
    /// it chooses) is walked next, in a frame of its own.
    fn enter(&mut self, at: &Instance<'_>) -> Result<Inside, DryRunError> {
        let frame = self.frames.last_mut().expect("the plan the walk is in");
        let total = *frame.total.get_or_insert_with(|| at.plan.total_weight());
        let frame = self.frames.last().expect("the plan the walk is in");
        let inputs = Rc::clone(&frame.inputs);
        let item = match (at.role, &frame.items) {
            (Role::Item, Some(items)) => Some(&items[at.index]),
            _ => None,
        };
        let ctx = self.context(&inputs, item);
        let share = if total > 0.0 { frame.share * at.node.weight / total } else { 0.0 };
        let start = percent(self.done / self.total);
        let entry = PlannedNode {
            node: at.path.to_string(),
            phase: at.node.phase.clone(),
            progress_start: start,
            progress_end: start,
            skipped: false,
            note: None,
            uses: None,
            pipeline: None,
            needs: at.node.needs.iter().map(|&n| at.parent.join(&at.plan.nodes[n].id).to_string()).collect(),
            with: serde_json::Value::Null,
            metadata: serde_json::Value::Null,
        };
        match &at.node.foreach {
            Some(foreach) => self.foreach(at, foreach, entry, &inputs, &ctx, share),
            None => self.node(at, entry, &ctx, share),
        }
    }

    fn leave(&mut self, at: &Instance<'_>) -> Result<(), DryRunError> {
        if self.frames.len() > at.depth + 1 {
            let inner = self.frames.pop().expect("the plan inside");
            if let Some(container) = inner.container {
                self.nodes[container].progress_end = percent(self.done / self.total);
            }
        }
        Ok(())
    }
}

impl Walker {
    /// A `foreach` node, worth `share` of the run: its items, when the inputs tell
    /// them, one copy of the node each.
    fn foreach(
        &mut self,
        at: &Instance<'_>,
        foreach: &Foreach,
        mut entry: PlannedNode,
        inputs: &Rc<Map<String, serde_json::Value>>,
        ctx: &Value,
        share: f64,
    ) -> Result<Inside, DryRunError> {
        if reads_nodes(&foreach.items) {
            entry.note = Some(format!("once per item of `{}`, known at run time", foreach.items.text));
            self.done += share;
            entry.progress_end = percent(self.done / self.total);
            self.nodes.push(entry);
            return Ok(Inside::Nothing);
        }
        let (values, keys) =
            crate::plan::foreach_items(foreach, &at.plan.templates, ctx, &|item| self.context(inputs, Some(item)))
                .map_err(|e| fail_at(at, foreach.items.span, e))?;
        entry.note = Some(format!(
            "once per item: {}",
            keys.iter().map(|k| at.path.item(k).to_string()).collect::<Vec<_>>().join(", ")
        ));
        let container = Some(self.nodes.len());
        self.nodes.push(entry);
        self.frames.push(Frame { inputs: Rc::clone(inputs), share, total: None, items: Some(values), container });
        Ok(Inside::Items(keys))
    }

    /// Any other node, worth `share` of the run: its `if`, what it is given, and the
    /// sub-pipeline it chooses.
    fn node(
        &mut self,
        at: &Instance<'_>,
        mut entry: PlannedNode,
        ctx: &Value,
        share: f64,
    ) -> Result<Inside, DryRunError> {
        let (plan, node) = (at.plan, at.node);
        let (skipped, note) = match &node.condition {
            None => (false, None),
            Some(cond) if reads_nodes(cond) => (false, Some(format!("`if: {}` is decided at run time", cond.text))),
            Some(cond) => {
                let keep = cond
                    .is_true(&plan.templates, ctx)
                    .map_err(|e| fail_at(at, cond.span, format!("`if`: {}", template::describe_error(&e))))?;
                (!keep, (!keep).then(|| format!("skipped: `{}` is false", cond.text)))
            }
        };
        let render = |block: &Option<Block>| -> Result<serde_json::Value, DryRunError> {
            match block {
                None => Ok(serde_json::Value::Null),
                Some(b) => b.render(&plan.templates, ctx).map_err(|e| {
                    let path = if e.path.is_empty() { String::new() } else { format!("`{}`: ", e.path) };
                    fail_at(at, e.span, format!("{path}{}", template::describe_error(&e.error)))
                }),
            }
        };
        let with = if skipped { serde_json::Value::Null } else { render(&node.with)? };
        entry.metadata = if skipped { serde_json::Value::Null } else { render(&node.metadata)? };
        entry.skipped = skipped;
        entry.note = note;
        entry.with = with.clone();
        let sub = match &node.kind {
            NodeKind::Action(spec) => {
                entry.uses = Some(spec.name.to_string());
                // As the engine will pass them: converted to the declared types.
                entry.with = spec.convert(std::mem::take(&mut entry.with));
                self.done += share;
                entry.progress_end = percent(self.done / self.total);
                self.nodes.push(entry);
                return Ok(Inside::Nothing);
            }
            NodeKind::Pipeline(sub) => sub,
        };
        // The same choice as the engine's, unless it waits for run-time outputs.
        let decided = match sub {
            SubPipeline::Select { expr, .. } => !reads_nodes(expr),
            SubPipeline::Fixed { .. } => true,
        };
        let chosen = match (skipped, decided) {
            (false, true) => {
                let span = match sub {
                    SubPipeline::Select { expr, .. } => expr.span,
                    SubPipeline::Fixed { .. } => node.id_span,
                };
                let (name, plan) = sub.choose(&plan.templates, ctx).map_err(|e| fail_at(at, span, e))?;
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
        let Some((_, child)) = chosen else {
            self.done += share;
            self.nodes[container].progress_end = percent(self.done / self.total);
            return Ok(Inside::Nothing);
        };
        let given = match with {
            serde_json::Value::Object(map) => map,
            _ => Map::new(),
        };
        let inputs = crate::compiler::inputs::resolve(&child.inputs, &given).map_err(|problems| {
            let message = problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("; ");
            fail_at(at, node.id_span, message)
        })?;
        let frame = Frame { inputs: Rc::new(inputs), share, total: None, items: None, container: Some(container) };
        self.frames.push(frame);
        Ok(Inside::Pipelines(vec![child]))
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
