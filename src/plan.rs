//! What validation proved: a pipeline whose node ids are resolved, whose `needs` form
//! a DAG (in a deterministic execution order), whose actions and sub-pipelines exist
//! and whose templates read only what is in scope, compiled once with their place in
//! the file. The engine and `phased plan` run this model; no YAML is left in it.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use regex::Regex;
use serde_json::json;

use crate::action::{ActionSpec, Outputs};
use crate::model::Policy;
use crate::raw::InputType;
use crate::source::{Source, Span};
use crate::template::{Block, Template, Templates};

pub(crate) mod walk;

#[derive(Debug)]
pub struct Plan {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) source: Arc<Source>,
    pub inputs: IndexMap<String, InputSpec>,
    /// In declaration order; `needs` and `order` index into this.
    pub(crate) nodes: Vec<PlanNode>,
    /// A topological order: declaration order wherever `needs` allows it.
    pub(crate) order: Vec<usize>,
    pub(crate) outputs: IndexMap<String, Block>,
    pub(crate) on_success: Option<Block>,
    pub(crate) on_failure: Option<Block>,
    /// Runs of one target never overlap (only the root pipeline's counts).
    pub(crate) concurrency: Option<Concurrency>,
    /// `notify:`: the webhooks sent when a run ends.
    pub(crate) notify: Vec<Notify>,
    /// `rollback:`: the name and plan of the pipeline that makes a release live again.
    pub(crate) rollback: Option<(String, Arc<Plan>)>,
    /// The pipeline's compiled text templates (its blocks render against these).
    pub(crate) templates: Templates,
}

/// One `notify:` entry: the outcomes it is sent on, its URL as written (a template,
/// rendered when sent) and its body's format.
#[derive(Debug, Clone)]
pub(crate) struct Notify {
    pub(crate) on: Vec<crate::model::NotifyOn>,
    pub(crate) url: String,
    pub(crate) format: crate::model::NotifyFormat,
}

/// `concurrency:`: the run's target (rendered from its inputs) and what a new run does
/// while another run of that target is queued or running.
#[derive(Debug)]
pub(crate) struct Concurrency {
    pub(crate) key: Block,
    pub(crate) policy: Policy,
}

impl Plan {
    /// The pipeline `phased rollback` runs for this type's releases, if any.
    pub fn rollback(&self) -> Option<&Arc<Plan>> {
        self.rollback.as_ref().map(|(_, plan)| plan)
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The run's target and policy for these inputs, if the pipeline declares
    /// `concurrency`; an error names the key's template.
    pub fn target(
        &self,
        inputs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<(String, Policy)>, String> {
        let Some(concurrency) = &self.concurrency else { return Ok(None) };
        let ctx = minijinja::Value::from(minijinja::value::Serde(json!({ "inputs": inputs })));
        let value = concurrency.key.render(&self.templates, &ctx).map_err(|e| {
            format!("`concurrency.key` ({}) cannot be rendered: {}", e.text, crate::template::describe_error(&e.error))
        })?;
        let target = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Null => String::new(),
            other => return Err(format!("`concurrency.key` must render to text, not {other}")),
        };
        if target.trim().is_empty() {
            return Err("`concurrency.key` renders to an empty target".into());
        }
        Ok(Some((target, concurrency.policy)))
    }

    pub(crate) fn total_weight(&self) -> f64 {
        self.nodes.iter().map(|n| n.weight).sum()
    }

    /// The names this pipeline exposes to a pipeline that composes it.
    pub(crate) fn output_names(&self) -> Vec<String> {
        self.outputs.keys().cloned().collect()
    }
}

#[derive(Debug)]
pub struct InputSpec {
    pub name: String,
    pub ty: InputType,
    pub required: bool,
    pub default: Option<serde_json::Value>,
    pub allowed: Option<Vec<serde_json::Value>>,
    pub pattern: Option<Regex>,
    pub description: Option<String>,
    /// The value names a file or folder: from a caller that is not the operator, it
    /// must lie under the server's data folder or an `--allow-path` root.
    pub path: bool,
    /// Only the operator sets it (the command line, the server's triggers): an API
    /// `deploy` token or a webhook that gives it is refused.
    pub operator: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct PlanNode {
    pub(crate) id: String,
    pub(crate) id_span: Span,
    /// The phase reported when the node starts. A sub-pipeline node may leave it out:
    /// its own nodes report their phases.
    pub(crate) phase: Option<String>,
    pub(crate) weight: f64,
    pub(crate) needs: Vec<usize>,
    pub(crate) condition: Option<Template>,
    pub(crate) kind: NodeKind,
    pub(crate) with: Option<Block>,
    pub(crate) metadata: Option<Block>,
    pub(crate) result_metadata: Option<Block>,
    pub(crate) timeout: Duration,
    /// Between SIGTERM and SIGKILL when the node is stopped.
    pub(crate) grace: Duration,
    pub(crate) retry: Retry,
    /// What reverses this node's effect if the run fails after it.
    pub(crate) undo: Option<Undo>,
    /// `foreach:`: the node runs once per item of a list, each as `id[key]`.
    pub(crate) foreach: Option<Foreach>,
}

/// `foreach:` of a node: the list it fans out over (rendered when the node starts),
/// how each item is named, how many run at once and what a failed item does.
#[derive(Debug, Clone)]
pub(crate) struct Foreach {
    pub(crate) items: Template,
    /// Renders an item's name (`item` in scope); by default a text item is its own
    /// name, a mapping's is its `name`, anything else its index.
    pub(crate) key: Option<Template>,
    /// At most this many items at once (0: as many as `--parallel` allows).
    pub(crate) parallel: usize,
    /// `on_failure: continue`: the other items go on, and the node fails at the end
    /// naming each failed item; else (`fail_fast`) the first failure fails the run.
    pub(crate) keep_going: bool,
}

/// The longest item name, and what it may be made of (it is part of a node id).
const KEY_MAX: usize = 64;

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= KEY_MAX
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
}

/// The items of a `foreach` and their names: the list rendered in `ctx`, each name by
/// `key` (rendered in `with_item(item)`) or from the item itself. The engine and
/// `phased plan` both name items here.
pub(crate) fn foreach_items(
    foreach: &Foreach,
    templates: &Templates,
    ctx: &minijinja::Value,
    with_item: &dyn Fn(&serde_json::Value) -> minijinja::Value,
) -> Result<(Vec<serde_json::Value>, Vec<String>), String> {
    use serde_json::Value;
    let items = match foreach.items.eval(templates, ctx) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            let kind = match other {
                Value::Object(_) => "a mapping",
                Value::String(_) => "text",
                Value::Null => "nothing",
                _ => "a single value",
            };
            return Err(format!("`foreach` (`{}`) must give a list, and gave {kind}", foreach.items.text));
        }
        Err(e) => {
            return Err(format!("`foreach` (`{}`): {}", foreach.items.text, crate::template::describe_error(&e)));
        }
    };
    let mut keys: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = match &foreach.key {
            Some(template) => match template.eval(templates, &with_item(item)) {
                Ok(Value::String(s)) => s,
                Ok(Value::Null) => String::new(),
                Ok(other) => other.to_string(),
                Err(e) => {
                    let e = crate::template::describe_error(&e);
                    return Err(format!("`foreach.key` (`{}`) of item {i}: {e}", template.text));
                }
            },
            None => match item {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Object(o) => match o.get("name") {
                    Some(Value::String(name)) => name.clone(),
                    _ => i.to_string(),
                },
                _ => i.to_string(),
            },
        };
        if !valid_key(&key) {
            return Err(format!(
                "item {i} of `foreach` is named `{key}`, which cannot be part of a node id: \
                 use letters, digits and `-_.:@`, at most {KEY_MAX} (set `foreach.key`)"
            ));
        }
        if keys.contains(&key) {
            return Err(format!("two items of `foreach` are named `{key}`: set `foreach.key` to tell them apart"));
        }
        keys.push(key);
    }
    Ok((items, keys))
}

impl Plan {
    /// The pipeline instance a `foreach` node runs: one copy of the node per item,
    /// `[key]` each (qualified under the node's id: `deploy[host-a]`), with no `needs`
    /// among them and an equal share of the node's weight.
    pub(crate) fn fan_out(&self, node: usize, keys: &[String]) -> Plan {
        let spec = &self.nodes[node];
        let nodes: Vec<PlanNode> = keys
            .iter()
            .map(|key| PlanNode {
                id: format!("[{key}]"),
                needs: Vec::new(),
                weight: 1.0,
                foreach: None,
                ..spec.clone()
            })
            .collect();
        Plan {
            name: format!("{}[*]", spec.id),
            description: None,
            source: Arc::clone(&self.source),
            inputs: IndexMap::new(),
            order: (0..nodes.len()).collect(),
            nodes,
            outputs: IndexMap::new(),
            on_success: None,
            on_failure: None,
            concurrency: None,
            notify: Vec::new(),
            rollback: None,
            templates: self.templates.clone(),
        }
    }
}

impl PlanNode {
    /// What the node is, as written, without where it stands in its file: two
    /// versions of a pipeline define a node the same way when this is equal
    /// (`resume --reload`). A sub-pipeline node includes the inputs and outputs its
    /// pipeline declares (its own nodes are compared one by one).
    pub(crate) fn definition(&self, plan: &Plan) -> serde_json::Value {
        let written = |b: &Option<Block>| b.as_ref().map(Block::written);
        let needs: Vec<&str> = self.needs.iter().map(|&i| plan.nodes[i].id.as_str()).collect();
        let kind = match &self.kind {
            NodeKind::Action(action) => json!({ "uses": action.name }),
            NodeKind::Pipeline(SubPipeline::Fixed { name, plan }) => {
                json!({ "pipeline": name, "declares": plan.declared() })
            }
            NodeKind::Pipeline(SubPipeline::Select { expr, from }) => json!({
                "select": expr.text,
                "from": from.iter().map(|(k, (name, plan))| (k.clone(), json!([name, plan.declared()])))
                    .collect::<serde_json::Map<_, _>>(),
            }),
        };
        json!({
            "phase": self.phase,
            "weight": self.weight,
            "needs": needs,
            "if": self.condition.as_ref().map(|t| &t.text),
            "kind": kind,
            "with": written(&self.with),
            "metadata": written(&self.metadata),
            "result_metadata": written(&self.result_metadata),
            "timeout_ms": self.timeout.as_millis() as u64,
            "grace_ms": self.grace.as_millis() as u64,
            "retry": [self.retry.attempts, self.retry.backoff.as_millis() as u64, self.retry.max_backoff.as_millis() as u64],
            "undo": self.undo.as_ref().map(|u| json!({
                "if": u.condition.as_ref().map(|t| &t.text),
                "uses": u.action.name,
                "with": written(&u.with),
            })),
            "foreach": self.foreach.as_ref().map(|f| json!({
                "items": f.items.text,
                "key": f.key.as_ref().map(|k| &k.text),
                "parallel": f.parallel,
                "continue": f.keep_going,
            })),
        })
    }

    /// Every template the node renders.
    pub(crate) fn templates(&self) -> Vec<&Template> {
        let mut out = Vec::new();
        out.extend(self.condition.as_ref());
        for block in [&self.with, &self.metadata, &self.result_metadata].into_iter().flatten() {
            block.templates(&mut out);
        }
        if let NodeKind::Pipeline(SubPipeline::Select { expr, .. }) = &self.kind {
            out.push(expr);
        }
        if let Some(foreach) = &self.foreach {
            out.push(&foreach.items);
            out.extend(foreach.key.as_ref());
        }
        if let Some(undo) = &self.undo {
            out.extend(undo.condition.as_ref());
            if let Some(with) = &undo.with {
                with.templates(&mut out);
            }
        }
        out
    }
}

impl Plan {
    /// The inputs and outputs a pipeline declares, as written.
    fn declared(&self) -> serde_json::Value {
        let inputs: serde_json::Map<String, serde_json::Value> = self
            .inputs
            .iter()
            .map(|(name, spec)| {
                let spec = json!([
                    format!("{:?}", spec.ty),
                    spec.required,
                    spec.default,
                    spec.allowed,
                    spec.pattern.as_ref().map(|p| p.as_str())
                ]);
                (name.clone(), spec)
            })
            .collect();
        let outputs: serde_json::Map<String, serde_json::Value> =
            self.outputs.iter().map(|(k, b)| (k.clone(), b.written())).collect();
        json!({ "inputs": inputs, "outputs": outputs })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Undo {
    pub(crate) condition: Option<Template>,
    pub(crate) action: &'static ActionSpec,
    pub(crate) with: Option<Block>,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Action(&'static ActionSpec),
    Pipeline(SubPipeline),
}

#[derive(Debug, Clone)]
pub(crate) enum SubPipeline {
    Fixed {
        name: String,
        plan: Arc<Plan>,
    },
    /// `select` chooses among `from`: selected value -> (pipeline name, plan).
    Select {
        expr: Template,
        from: IndexMap<String, (String, Arc<Plan>)>,
    },
}

impl SubPipeline {
    /// The alternative a context selects (its pipeline name and plan); `templates` are
    /// those of the pipeline holding this node. The engine and `phased plan` both
    /// choose here.
    pub(crate) fn choose(&self, templates: &Templates, ctx: &minijinja::Value) -> Result<(&str, &Arc<Plan>), String> {
        match self {
            SubPipeline::Fixed { name, plan } => Ok((name, plan)),
            SubPipeline::Select { expr, from } => {
                let key = match expr.eval(templates, ctx) {
                    Ok(serde_json::Value::String(s)) => s,
                    Ok(other) => other.to_string(),
                    Err(e) => {
                        return Err(format!("`select` (`{}`): {}", expr.text, crate::template::describe_error(&e)));
                    }
                };
                match from.get(&key) {
                    Some((name, plan)) => Ok((name, plan)),
                    None => {
                        let options: Vec<&str> = from.keys().map(String::as_str).collect();
                        Err(format!("`select` gave `{key}`, which is not one of {}", crate::suggest::list(&options)))
                    }
                }
            }
        }
    }

    /// The alternative called `name` (a resumed run takes the one it recorded).
    pub(crate) fn by_name(&self, name: &str) -> Option<&Arc<Plan>> {
        match self {
            SubPipeline::Fixed { name: fixed, plan } => (fixed == name).then_some(plan),
            SubPipeline::Select { from, .. } => from.values().find(|(n, _)| n == name).map(|(_, plan)| plan),
        }
    }

    /// Every alternative's plan.
    pub(crate) fn plans(&self) -> Vec<&Arc<Plan>> {
        self.named().into_iter().map(|(_, plan)| plan).collect()
    }

    /// Every alternative: its pipeline's name and plan.
    pub(crate) fn named(&self) -> Vec<(&str, &Arc<Plan>)> {
        match self {
            SubPipeline::Fixed { name, plan } => vec![(name, plan)],
            SubPipeline::Select { from, .. } => from.values().map(|(name, plan)| (name.as_str(), plan)).collect(),
        }
    }
}

impl std::fmt::Debug for ActionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActionSpec({})", self.name)
    }
}

/// What a node declares it outputs, for checking the templates that read them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum DeclaredOutputs {
    Any,
    Names(Vec<String>),
}

impl DeclaredOutputs {
    pub(crate) fn of_action(action: &ActionSpec) -> Self {
        match action.outputs {
            Outputs::Any => DeclaredOutputs::Any,
            Outputs::Fixed(names) => DeclaredOutputs::Names(names.iter().map(|s| s.to_string()).collect()),
        }
    }

    pub(crate) fn allows(&self, name: &str) -> bool {
        match self {
            DeclaredOutputs::Any => true,
            DeclaredOutputs::Names(names) => names.iter().any(|n| n == name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Retry {
    /// Runs in all, at least 1.
    pub(crate) attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl Retry {
    /// The wait before attempt `attempt` (2, 3, ...): `backoff` doubling, capped.
    pub(crate) fn delay_before(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(30);
        self.backoff.saturating_mul(1 << doublings).min(self.max_backoff)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 1, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(30) }
    }
}

/// The default node timeout (stuck detection), as in the system Phased replaces.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a stopped node's processes get between SIGTERM and SIGKILL by default.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(10);
