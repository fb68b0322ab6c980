//! One pipeline file, from what serde read to a [`Plan`]: inputs, nodes, the DAG and
//! its order, every template compiled once and checked against its scope, and the
//! warnings about the whole (unused inputs, phase order, zero weight).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;

use super::Compiler;
use super::blocks::Blocks;
use super::checks::{check_metadata_shape, declare_phases, report_cycle, warn_phase_order, webhook_url_problem};
use super::graph;
use super::scope::{NodeOutputs, Scope, Site};
use super::{injection, inputs};
use crate::diagnostic::{Diagnostic, DiagnosticCode};
use crate::phase::PhaseOrder;
use crate::plan::{Concurrency, InputSpec, NodeKind, Notify, Plan, PlanNode, SubPipeline};
use crate::raw::{RawNode, RawNotify, RawPipeline};
use crate::source::{Source, Span};
use crate::suggest;
use crate::template::{Block, Templates};

impl Compiler<'_> {
    pub(super) fn compile_raw(
        &mut self,
        source: &Arc<Source>,
        raw: &RawPipeline,
        out: &mut Vec<Diagnostic>,
    ) -> Option<Plan> {
        check_header(source, raw, out);
        let phases = declare_phases(source, raw, out);
        let inputs: IndexMap<_, _> = raw
            .inputs
            .iter()
            .map(|(name, input)| {
                let span = raw.key_spans.inputs.get(name).copied().unwrap_or_default();
                (name.clone(), inputs::declare(source, name, span, input, out))
            })
            .collect();

        let node_ids: Vec<String> = raw.nodes.keys().cloned().collect();
        let broken: HashSet<String> =
            raw.key_spans.nodes.keys().filter(|id| !raw.nodes.contains_key(*id)).cloned().collect();
        let index_of: HashMap<&str, usize> = node_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();

        let mut templates = Templates::default();
        let (mut nodes, outputs) = self.compile_nodes(source, raw, &phases, &mut templates, &index_of, &broken, out);

        let needs: Vec<Vec<usize>> = nodes.iter().map(|n| n.needs.clone()).collect();
        let order = order_nodes(source, raw, &node_ids, &needs, out);
        let position = order.as_deref().map(positions);

        // Inputs that could not be read count as declared: they were reported already.
        let input_names: Vec<String> = raw.key_spans.inputs.keys().cloned().collect();
        let fanned: Vec<bool> = raw.nodes.values().map(|n| n.foreach.is_some()).collect();
        let mut scope = Scope {
            inputs: &input_names,
            node_ids: &node_ids,
            index_of: &index_of,
            broken: &broken,
            needs: &needs,
            position: position.as_deref(),
            outputs: &outputs,
            fanned: &fanned,
            used_inputs: HashSet::new(),
            uses_all_inputs: false,
        };
        let hooks = {
            let mut blocks = Blocks { source, templates: &mut templates, scope: &mut scope, out };
            for (i, node) in raw.nodes.values().enumerate() {
                node_templates(&mut blocks, &input_names, node, &mut nodes[i], i);
            }
            pipeline_templates(&mut blocks, raw)
        };

        let rollback = self.compile_rollback(source, raw, &inputs, out);
        let notify: Vec<Notify> = raw.notify.iter().filter_map(|n| compile_notify(source, n, out)).collect();

        warn_unused_inputs(source, raw, &scope, out);
        warn_phase_order(source, &phases, &nodes, order.as_deref(), out);
        warn_zero_weight(source, raw, &nodes, out);

        Some(Plan {
            name: raw.name.value.clone(),
            description: raw.description.clone(),
            source: Arc::clone(source),
            inputs,
            nodes,
            order: order.unwrap_or_default(),
            outputs: hooks.outputs,
            on_success: hooks.on_success,
            on_failure: hooks.on_failure,
            concurrency: hooks.concurrency,
            rollback,
            notify,
            templates,
        })
    }

    /// Every node compiled (its templates later, once the scope is known), with the
    /// outputs it declares; a pipeline with an empty `nodes:` is reported.
    #[expect(clippy::too_many_arguments, reason = "the nodes need the whole pipeline context")]
    fn compile_nodes(
        &mut self,
        source: &Arc<Source>,
        raw: &RawPipeline,
        phases: &PhaseOrder,
        templates: &mut Templates,
        index_of: &HashMap<&str, usize>,
        broken: &HashSet<String>,
        out: &mut Vec<Diagnostic>,
    ) -> (Vec<PlanNode>, Vec<NodeOutputs>) {
        let all_ids: Vec<&str> = raw.key_spans.nodes.keys().map(String::as_str).collect();
        let mut nodes = Vec::with_capacity(raw.nodes.len());
        let mut outputs = Vec::with_capacity(raw.nodes.len());
        for (id, node) in &raw.nodes {
            let id_span = raw.key_spans.nodes.get(id).copied().unwrap_or_default();
            let needs = node
                .needs
                .iter()
                .filter_map(|need| match index_of.get(need.value.as_str()) {
                    Some(&i) => Some(i),
                    None => {
                        if !broken.contains(&need.value) {
                            out.push(
                                Diagnostic::error(
                                    DiagnosticCode::UnknownNode,
                                    source,
                                    need.span,
                                    format!("unknown node `{}` in `needs` of `{id}`", need.value),
                                )
                                .with_label("no node has this id")
                                .with_help_opt(suggest::hint(&need.value, all_ids.iter().copied())),
                            );
                        }
                        None
                    }
                })
                .collect();
            let (plan_node, declared) =
                self.compile_node(source, raw, phases, templates, id, id_span, node, needs, out);
            nodes.push(plan_node);
            outputs.push(declared);
        }
        if raw.key_spans.nodes.is_empty() && raw.key_spans.nodes_key.is_some() {
            out.push(Diagnostic::error(
                DiagnosticCode::NoNodes,
                source,
                raw.key_spans.nodes_key.unwrap_or_default(),
                "the pipeline has no nodes",
            ));
        }
        (nodes, outputs)
    }

    /// The `rollback` pipeline, resolved, and checked to need no input this pipeline
    /// cannot give it.
    fn compile_rollback(
        &mut self,
        source: &Arc<Source>,
        raw: &RawPipeline,
        inputs: &IndexMap<String, InputSpec>,
        out: &mut Vec<Diagnostic>,
    ) -> Option<(String, Arc<Plan>)> {
        let r = raw.rollback.as_ref()?;
        let plan = self.resolve(source, &r.value, r.span, out)?;
        for (name, spec) in &plan.inputs {
            let given = name == "release" || inputs.contains_key(name);
            if spec.required && spec.default.is_none() && !given {
                out.push(
                    Diagnostic::error(
                        DiagnosticCode::RollbackInput,
                        source,
                        r.span,
                        format!(
                            "rollback pipeline `{}` requires input `{name}`, which this pipeline does not have",
                            r.value
                        ),
                    )
                    .with_help("a rollback pipeline gets `release` and the release's inputs of the same names"),
                );
            }
        }
        Some((r.value.clone(), plan))
    }
}

/// The pipeline-level blocks: `outputs`, the hooks' metadata and the concurrency key.
struct Hooks {
    outputs: IndexMap<String, Block>,
    on_success: Option<Block>,
    on_failure: Option<Block>,
    concurrency: Option<Concurrency>,
}

/// `version` must be 1 and `name`, when given, not empty.
fn check_header(source: &Arc<Source>, raw: &RawPipeline, out: &mut Vec<Diagnostic>) {
    if raw.version.value != 1 {
        out.push(
            Diagnostic::error(
                DiagnosticCode::UnsupportedVersion,
                source,
                raw.version.span,
                format!("unsupported version {}", raw.version.value),
            )
            .with_help("this Phased reads `version: 1`"),
        );
    }
    if raw.name.value.trim().is_empty() && raw.name.span != Span::default() {
        out.push(Diagnostic::error(DiagnosticCode::InvalidName, source, raw.name.span, "the pipeline `name` is empty"));
    }
}

/// The execution order of the nodes, or `None` (each cycle reported) when `needs` has
/// a cycle.
fn order_nodes(
    source: &Arc<Source>,
    raw: &RawPipeline,
    node_ids: &[String],
    needs: &[Vec<usize>],
    out: &mut Vec<Diagnostic>,
) -> Option<Vec<usize>> {
    match graph::order(needs) {
        Ok(order) => Some(order),
        Err(cycles) => {
            for cycle in cycles {
                report_cycle(source, raw, node_ids, &cycle, out);
            }
            None
        }
    }
}

/// Each node's place in `order`.
fn positions(order: &[usize]) -> Vec<usize> {
    let mut position = vec![0; order.len()];
    for (i, &n) in order.iter().enumerate() {
        position[n] = i;
    }
    position
}

/// One node's templates (`foreach`, `if`, `with`, `metadata`, `result_metadata`, its
/// undo's), compiled into `compiled` now that every scope is known; a `shell` command
/// is checked for injection.
fn node_templates(blocks: &mut Blocks, input_names: &[String], node: &RawNode, compiled: &mut PlanNode, i: usize) {
    let source = blocks.source;
    if let Some(foreach) = &node.foreach {
        compiled.foreach = blocks.foreach(foreach, i);
    }
    let site = Site::Node(i);
    compiled.condition = node.condition.as_ref().and_then(|c| blocks.expression(&c.value, c.span, site));
    compiled.with = node.with.as_ref().map(|b| blocks.block(b, site));
    let in_scope = injection::InScope { inputs: input_names, item: node.foreach.is_some() };
    if let (NodeKind::Action(spec), Some(with)) = (&compiled.kind, &compiled.with)
        && spec.name == "shell"
    {
        injection::check_shell(source, with, &in_scope, blocks.out);
    }
    compiled.metadata = node.metadata.as_ref().map(|b| blocks.block(b, site));
    if let NodeKind::Pipeline(SubPipeline::Select { expr, .. }) = &compiled.kind {
        blocks.check(expr, site);
    }
    let site = Site::NodeResult(i);
    compiled.result_metadata = node.result_metadata.as_ref().map(|b| blocks.block(b, site));
    if let (Some(raw_undo), Some(undo)) = (&node.undo, compiled.undo.as_mut()) {
        undo.condition = raw_undo.condition.as_ref().and_then(|c| blocks.expression(&c.value, c.span, site));
        undo.with = raw_undo.with.as_ref().map(|b| blocks.block(b, site));
        if let Some(with) = undo.with.as_ref().filter(|_| undo.action.name == "shell") {
            injection::check_shell(source, with, &in_scope, blocks.out);
        }
    }
}

/// The pipeline's own templates: `outputs`, `on_success` and `on_failure` metadata,
/// `concurrency.key`.
fn pipeline_templates(blocks: &mut Blocks, raw: &RawPipeline) -> Hooks {
    let source = blocks.source;
    let outputs: IndexMap<String, Block> =
        raw.outputs.iter().map(|(name, block)| (name.clone(), blocks.block(block, Site::Pipeline))).collect();
    let on_success = raw.on_success.as_ref().and_then(|h| h.metadata.as_ref()).map(|hook| {
        check_metadata_shape(source, hook, "on_success.metadata", blocks.out);
        blocks.block(hook, Site::Pipeline)
    });
    let on_failure = raw.on_failure.as_ref().and_then(|h| h.metadata.as_ref()).map(|hook| {
        check_metadata_shape(source, hook, "on_failure.metadata", blocks.out);
        blocks.block(hook, Site::Failure)
    });
    let concurrency = raw
        .concurrency
        .as_ref()
        .map(|c| Concurrency { key: blocks.text(&c.key.value, c.key.span, Site::Concurrency), policy: c.policy });
    Hooks { outputs, on_success, on_failure, concurrency }
}

/// One entry of `notify:`, its webhook URL checked; `None` (reported) when the URL
/// cannot be sent.
fn compile_notify(source: &Arc<Source>, n: &RawNotify, out: &mut Vec<Diagnostic>) -> Option<Notify> {
    let url = &n.webhook.url;
    if n.on.is_empty() {
        out.push(
            Diagnostic::error(
                DiagnosticCode::EmptyNotify,
                source,
                url.span,
                "this notification is sent on nothing: `on` is empty",
            )
            .with_help("say when: `on: [failed]`, `on: [failed, succeeded, cancelled]`"),
        );
    }
    let env = minijinja::Environment::new();
    let template = match env.template_from_str(&url.value) {
        Ok(template) => template,
        Err(e) => {
            out.push(Diagnostic::error(
                DiagnosticCode::TemplateSyntax,
                source,
                url.span,
                format!("the webhook URL does not parse: {e}"),
            ));
            return None;
        }
    };
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !matches!(v.as_str(), "secrets" | "inputs" | "deployment"))
        .collect();
    unknown.sort();
    if let Some(var) = unknown.first() {
        out.push(
            Diagnostic::error(
                DiagnosticCode::UndefinedVariable,
                source,
                url.span,
                format!("undefined variable `{var}` in a webhook URL"),
            )
            .with_help(
                "a webhook URL is rendered when it is sent: only `secrets`, `inputs` and `deployment` are in scope",
            ),
        );
        return None;
    }
    if let Some(problem) = webhook_url_problem(&url.value) {
        out.push(Diagnostic::error(DiagnosticCode::NotifyUrl, source, url.span, problem).with_help(
            "a notification is an HTTP POST: give an `https://` (or `http://`) URL; \
             a URL from a secret or an input is checked when it is sent",
        ));
        return None;
    }
    Some(Notify { on: n.on.clone(), url: url.value.clone(), format: n.webhook.format })
}

/// Inputs no template reads (unless one reads them all, or one does not parse: it
/// may read any input, do not guess).
fn warn_unused_inputs(source: &Arc<Source>, raw: &RawPipeline, scope: &Scope, out: &mut Vec<Diagnostic>) {
    let unparsed = out.iter().any(|d| d.code == DiagnosticCode::TemplateSyntax && Arc::ptr_eq(&d.source, source));
    if scope.uses_all_inputs || unparsed {
        return;
    }
    for name in scope.inputs.iter().filter(|n| !scope.used_inputs.contains(*n)) {
        let span = raw.key_spans.inputs.get(name).copied().unwrap_or_default();
        out.push(
            Diagnostic::warning(DiagnosticCode::UnusedInput, source, span, format!("input `{name}` is never used"))
                .with_help("read it in a template as `{{ inputs.".to_string() + name + " }}`, or remove it"),
        );
    }
}

/// Nodes whose weights sum to 0 make the progress bar jump (not said again when a
/// weight was reported negative).
fn warn_zero_weight(source: &Arc<Source>, raw: &RawPipeline, nodes: &[PlanNode], out: &mut Vec<Diagnostic>) {
    let total: f64 = nodes.iter().map(|n| n.weight).sum();
    let weight_errors = out.iter().any(|d| d.code == DiagnosticCode::NegativeWeight);
    if !nodes.is_empty() && total == 0.0 && !weight_errors {
        out.push(
            Diagnostic::warning(
                DiagnosticCode::ZeroWeight,
                source,
                raw.key_spans.nodes_key.unwrap_or_default(),
                "the total weight of the nodes is 0",
            )
            .with_help("progress jumps from 0 to 100; give the nodes weights that reflect their duration"),
        );
    }
}
