//! From a [`RawPipeline`] to a [`Plan`], collecting every problem. Pure: it reads only
//! the catalog already loaded in memory (no filesystem, network, clock or Docker).

mod graph;
pub mod inputs;
mod scope;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;

use crate::action::{self, check_with};
use crate::catalog::Catalog;
use crate::diagnostic::{self, Diagnostic};
use crate::phase::{self, PhaseOrder};
use crate::plan::{
    DEFAULT_GRACE, DEFAULT_TIMEOUT, DeclaredOutputs, NodeKind, Plan, PlanNode, Retry, SubPipeline, Undo,
};
use crate::raw::{RawNode, RawPipeline, RawRetry};
use crate::reader;
use crate::source::{Source, Span};
use crate::suggest;
use crate::template;
use crate::yaml::{Yaml, YamlValue};
use scope::{NodeOutputs, Scope, Site};

pub use scope::{DEPLOYMENT_FIELDS, ERROR_FIELDS};

/// Compiles pipelines against a catalog, once each, remembering every diagnostic.
pub struct Compiler<'c> {
    catalog: &'c Catalog,
    compiled: HashMap<String, Option<Arc<Plan>>>,
    in_progress: Vec<String>,
    diagnostics: Vec<Diagnostic>,
}

enum Lookup {
    Found(Arc<Plan>),
    Missing,
    Invalid(String),
    Cycle,
}

impl<'c> Compiler<'c> {
    pub fn new(catalog: &'c Catalog) -> Self {
        Compiler { catalog, compiled: HashMap::new(), in_progress: Vec::new(), diagnostics: Vec::new() }
    }

    /// Compiles one file. `None` when it (or a sub-pipeline it uses) has errors.
    pub fn compile(&mut self, source: &Arc<Source>) -> Option<Arc<Plan>> {
        if let Some(done) = self.compiled.get(&source.name) {
            return done.clone();
        }
        self.in_progress.push(source.name.clone());
        let read = reader::read(source);
        let mut diagnostics = read.diagnostics;
        let had_errors = diagnostics.iter().any(Diagnostic::is_error);
        let plan = read.raw.and_then(|raw| self.compile_raw(source, &raw, &mut diagnostics));
        let ok = !had_errors && !diagnostics.iter().any(Diagnostic::is_error);
        let plan = if ok { plan.map(Arc::new) } else { None };
        self.diagnostics.extend(diagnostics);
        self.in_progress.pop();
        self.compiled.insert(source.name.clone(), plan.clone());
        plan
    }

    /// Every diagnostic found so far, in report order.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut all = self.diagnostics.clone();
        diagnostic::sort_and_dedup(&mut all);
        all
    }

    fn lookup(&mut self, name: &str) -> Lookup {
        let Some(source) = self.catalog.get(name) else { return Lookup::Missing };
        if self.in_progress.contains(&source.name) {
            return Lookup::Cycle;
        }
        match self.compile(&source) {
            Some(plan) => Lookup::Found(plan),
            None => Lookup::Invalid(source.name.clone()),
        }
    }

    /// Resolves a sub-pipeline name, reporting what is wrong with it at `span`.
    fn resolve(
        &mut self,
        source: &Arc<Source>,
        name: &str,
        span: Span,
        out: &mut Vec<Diagnostic>,
    ) -> Option<Arc<Plan>> {
        match self.lookup(name) {
            Lookup::Found(plan) => Some(plan),
            Lookup::Missing => {
                let names = self.catalog.names();
                out.push(
                    Diagnostic::error("missing-pipeline", source, span, format!("no pipeline named `{name}`"))
                        .with_help(match suggest::closest(name, names.iter().map(String::as_str)) {
                            Some(best) => format!("did you mean `{best}`?"),
                            None => {
                                "a sub-pipeline is named by its path in the pipelines folder, without `.yaml`".into()
                            }
                        }),
                );
                None
            }
            Lookup::Invalid(file) => {
                out.push(
                    Diagnostic::error(
                        "invalid-sub-pipeline",
                        source,
                        span,
                        format!("sub-pipeline `{name}` has errors"),
                    )
                    .with_help(format!("see the errors reported for `{file}`")),
                );
                None
            }
            Lookup::Cycle => {
                out.push(Diagnostic::error(
                    "pipeline-cycle",
                    source,
                    span,
                    format!("sub-pipeline `{name}` includes this pipeline again"),
                ));
                None
            }
        }
    }

    fn compile_raw(&mut self, source: &Arc<Source>, raw: &RawPipeline, out: &mut Vec<Diagnostic>) -> Option<Plan> {
        if raw.version.value != 1 {
            out.push(
                Diagnostic::error(
                    "unsupported-version",
                    source,
                    raw.version.span,
                    format!("unsupported version {}", raw.version.value),
                )
                .with_help("this Phased reads `version: 1`"),
            );
        }
        if raw.name.value.trim().is_empty() && raw.name.span != Span::default() {
            out.push(Diagnostic::error("invalid-name", source, raw.name.span, "the pipeline `name` is empty"));
        }

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
                                    "unknown-node",
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
            let (plan_node, declared) = self.compile_node(source, raw, &phases, id, id_span, node, needs, out);
            nodes.push(plan_node);
            outputs.push(declared);
        }
        if raw.key_spans.nodes.is_empty() && raw.key_spans.nodes_key.is_some() {
            out.push(Diagnostic::error(
                "no-nodes",
                source,
                raw.key_spans.nodes_key.unwrap_or_default(),
                "the pipeline has no nodes",
            ));
        }

        let needs: Vec<Vec<usize>> = nodes.iter().map(|n| n.needs.clone()).collect();
        let order = match graph::order(&needs) {
            Ok(order) => Some(order),
            Err(cycles) => {
                for cycle in cycles {
                    report_cycle(source, raw, &node_ids, &cycle, out);
                }
                None
            }
        };
        let position = order.as_ref().map(|order| {
            let mut position = vec![0; order.len()];
            for (i, &n) in order.iter().enumerate() {
                position[n] = i;
            }
            position
        });

        // Inputs that could not be read count as declared: they were reported already.
        let input_names: Vec<String> = raw.key_spans.inputs.keys().cloned().collect();
        let mut scope = Scope {
            inputs: &input_names,
            node_ids: &node_ids,
            index_of: &index_of,
            broken: &broken,
            needs: &needs,
            position: position.as_deref(),
            outputs: &outputs,
            used_inputs: HashSet::new(),
            uses_all_inputs: false,
        };
        for (i, node) in raw.nodes.values().enumerate() {
            if let Some(condition) = &node.condition {
                check_expression(source, &mut scope, &condition.value, condition.span, Site::Node(i), out);
            }
            for block in [&node.with, &node.metadata, &node.pipeline].into_iter().flatten() {
                check_templates(source, &mut scope, block, Site::Node(i), out);
            }
            if let Some(result) = &node.result_metadata {
                check_templates(source, &mut scope, result, Site::NodeResult(i), out);
            }
            if let Some(undo) = &node.undo {
                if let Some(condition) = &undo.condition {
                    check_expression(source, &mut scope, &condition.value, condition.span, Site::NodeResult(i), out);
                }
                if let Some(with) = &undo.with {
                    check_templates(source, &mut scope, with, Site::NodeResult(i), out);
                }
            }
        }
        for output in raw.outputs.values() {
            check_templates(source, &mut scope, output, Site::Pipeline, out);
        }
        if let Some(hook) = raw.on_success.as_ref().and_then(|h| h.metadata.as_ref()) {
            check_metadata_shape(source, hook, "on_success.metadata", out);
            check_templates(source, &mut scope, hook, Site::Pipeline, out);
        }
        if let Some(hook) = raw.on_failure.as_ref().and_then(|h| h.metadata.as_ref()) {
            check_metadata_shape(source, hook, "on_failure.metadata", out);
            check_templates(source, &mut scope, hook, Site::Failure, out);
        }

        // A template that does not parse may read any input: do not guess.
        let unparsed = out.iter().any(|d| d.code == "template-syntax" && Arc::ptr_eq(&d.source, source));
        if !scope.uses_all_inputs && !unparsed {
            for name in input_names.iter().filter(|n| !scope.used_inputs.contains(*n)) {
                let span = raw.key_spans.inputs.get(name).copied().unwrap_or_default();
                out.push(
                    Diagnostic::warning("unused-input", source, span, format!("input `{name}` is never used"))
                        .with_help("read it in a template as `{{ inputs.".to_string() + name + " }}`, or remove it"),
                );
            }
        }
        warn_phase_order(source, &phases, &nodes, order.as_deref(), out);
        let total: f64 = nodes.iter().map(|n| n.weight).sum();
        let weight_errors = out.iter().any(|d| d.code == "negative-weight");
        if !nodes.is_empty() && total == 0.0 && !weight_errors {
            out.push(
                Diagnostic::warning(
                    "zero-weight",
                    source,
                    raw.key_spans.nodes_key.unwrap_or_default(),
                    "the total weight of the nodes is 0",
                )
                .with_help("progress jumps from 0 to 100; give the nodes weights that reflect their duration"),
            );
        }

        Some(Plan {
            name: raw.name.value.clone(),
            description: raw.description.clone(),
            source: Arc::clone(source),
            phases,
            inputs,
            nodes,
            order: order.unwrap_or_default(),
            outputs: raw.outputs.clone(),
            on_success: raw.on_success.as_ref().and_then(|h| h.metadata.clone()),
            on_failure: raw.on_failure.as_ref().and_then(|h| h.metadata.clone()),
        })
    }

    #[expect(clippy::too_many_arguments, reason = "one node needs the whole pipeline context")]
    fn compile_node(
        &mut self,
        source: &Arc<Source>,
        raw: &RawPipeline,
        phases: &PhaseOrder,
        id: &str,
        id_span: Span,
        node: &RawNode,
        needs: Vec<usize>,
        out: &mut Vec<Diagnostic>,
    ) -> (PlanNode, NodeOutputs) {
        if !crate::names::is_identifier(id) {
            out.push(
                Diagnostic::error("invalid-name", source, id_span, format!("node id `{id}` is not snake_case"))
                    .with_help("templates read nodes as `nodes.<id>`: use lowercase letters, digits and `_`"),
            );
        }
        if let Some(p) = &node.phase {
            if !phases.contains(&p.value) {
                out.push(
                    Diagnostic::error("unknown-phase", source, p.span, format!("unknown phase `{}`", p.value))
                        .with_help(match suggest::closest(&p.value, phases.names()) {
                            Some(best) => format!("did you mean `{best}`?"),
                            None => format!(
                                "built-in phases are {}; declare others under `phases:`",
                                suggest::list(phase::BUILTIN)
                            ),
                        }),
                );
            } else if p.value == phase::QUEUED || p.value == phase::ACTIVE || p.value == phase::FAILED {
                out.push(
                    Diagnostic::error(
                        "reserved-phase",
                        source,
                        p.span,
                        format!("`{}` is set by the engine, not by a node", p.value),
                    )
                    .with_help(
                        "the run is QUEUED before any node starts, ACTIVE when all succeed and FAILED when one fails",
                    ),
                );
            }
        }
        let weight = match &node.weight {
            Some(w) if w.value.is_nan() || w.value < 0.0 => {
                out.push(
                    Diagnostic::error(
                        "negative-weight",
                        source,
                        w.span,
                        format!("weight {} of node `{id}` is negative", w.value),
                    )
                    .with_help("a weight is this node's share of the progress bar: 0 or more"),
                );
                0.0
            }
            Some(w) => w.value,
            None => 1.0,
        };

        let mut declared = NodeOutputs::One(DeclaredOutputs::Any);
        let kind = match (&node.uses, &node.pipeline) {
            (Some(_), Some(p)) => {
                out.push(
                    Diagnostic::error(
                        "conflicting-keys",
                        source,
                        p.span,
                        format!("node `{id}` has both `uses` and `pipeline`"),
                    )
                    .with_help("a node runs either an action (`uses`) or a sub-pipeline (`pipeline`)"),
                );
                None
            }
            (None, None) => {
                out.push(
                    Diagnostic::error(
                        "missing-action",
                        source,
                        id_span,
                        format!("node `{id}` has neither `uses` nor `pipeline`"),
                    )
                    .with_help("add `uses: <action>` (for instance `uses: shell`) or `pipeline: <name>`"),
                );
                None
            }
            (Some(uses), None) => match action::find(&uses.value) {
                Some(spec) => {
                    declared = NodeOutputs::One(DeclaredOutputs::of_action(spec));
                    let null = Yaml::null(uses.span);
                    let with = node.with.as_ref().unwrap_or(&null);
                    for problem in
                        check_with(spec, with, if node.with.is_some() { with_key_span(source, with) } else { id_span })
                    {
                        out.push(
                            Diagnostic::error(problem.code, source, problem.span, problem.message)
                                .with_help_opt(problem.help),
                        );
                    }
                    Some(NodeKind::Action(spec))
                }
                None => {
                    out.push(
                        Diagnostic::error(
                            "unknown-action",
                            source,
                            uses.span,
                            format!("unknown action `{}`", uses.value),
                        )
                        .with_help_opt(suggest::hint(&uses.value, action::names())),
                    );
                    None
                }
            },
            (None, Some(pipeline)) => {
                let sub = self.compile_pipeline_ref(source, id, pipeline, node.with.as_ref(), out);
                if let Some(sub) = &sub {
                    declared = match sub {
                        SubPipeline::Fixed { plan, .. } => {
                            NodeOutputs::One(DeclaredOutputs::Names(plan.output_names()))
                        }
                        SubPipeline::Select { from, .. } => NodeOutputs::Alternatives(
                            from.values()
                                .map(|(name, plan)| (name.clone(), DeclaredOutputs::Names(plan.output_names())))
                                .collect(),
                        ),
                    };
                }
                sub.map(NodeKind::Pipeline)
            }
        };
        if node.phase.is_none() && matches!(kind, Some(NodeKind::Action(_))) {
            out.push(
                Diagnostic::error("missing-field", source, id_span, format!("node `{id}` has no `phase`"))
                    .with_help("add the phase this node reports, for instance `phase: BUILDING`"),
            );
        }
        for (name, block) in [("metadata", &node.metadata), ("result_metadata", &node.result_metadata)] {
            if let Some(block) = block {
                check_metadata_shape(source, block, name, out);
            }
        }
        let timeout = node.timeout.as_ref().or(raw.defaults.timeout.as_ref());
        if let Some(t) = timeout.filter(|t| t.value.0.is_zero()) {
            out.push(Diagnostic::error(
                "invalid-value",
                source,
                t.span,
                "a timeout of 0 would fail every node at once",
            ));
        }
        let retry = merge_retry(source, node.retry.as_ref(), raw.defaults.retry.as_ref(), out);
        let undo = node.undo.as_ref().and_then(|undo| match action::find(&undo.uses.value) {
            Some(spec) => {
                let null = Yaml::null(undo.uses.span);
                let with = undo.with.as_ref().unwrap_or(&null);
                let owner = if undo.with.is_some() { with_key_span(source, with) } else { undo.uses.span };
                for problem in check_with(spec, with, owner) {
                    out.push(
                        Diagnostic::error(problem.code, source, problem.span, problem.message)
                            .with_help_opt(problem.help),
                    );
                }
                Some(Undo {
                    condition: undo.condition.as_ref().map(|c| c.value.clone()),
                    action: spec,
                    with: undo.with.clone(),
                })
            }
            None => {
                out.push(
                    Diagnostic::error(
                        "unknown-action",
                        source,
                        undo.uses.span,
                        format!("unknown action `{}`", undo.uses.value),
                    )
                    .with_help_opt(suggest::hint(&undo.uses.value, action::names())),
                );
                None
            }
        });
        let plan_node = PlanNode {
            id: id.to_string(),
            id_span,
            phase: node.phase.as_ref().map(|p| p.value.clone()),
            weight,
            needs,
            condition: node.condition.as_ref().map(|c| c.value.clone()),
            // A node whose kind could not be resolved has been reported; `noop` keeps
            // the remaining checks running on a complete model.
            kind: kind.unwrap_or(NodeKind::Action(action::find("noop").expect("noop is built in"))),
            with: node.with.clone(),
            metadata: node.metadata.clone(),
            result_metadata: node.result_metadata.clone(),
            timeout: timeout.map_or(DEFAULT_TIMEOUT, |t| t.value.0),
            grace: node.grace.or(raw.defaults.grace).map_or(DEFAULT_GRACE, |d| d.0),
            retry,
            undo,
        };
        (plan_node, declared)
    }

    fn compile_pipeline_ref(
        &mut self,
        source: &Arc<Source>,
        id: &str,
        pipeline: &Yaml,
        with: Option<&Yaml>,
        out: &mut Vec<Diagnostic>,
    ) -> Option<SubPipeline> {
        match &pipeline.value {
            YamlValue::String(name) => {
                let plan = self.resolve(source, name, pipeline.span, out)?;
                check_sub_inputs(source, id, &[(name.as_str(), &plan)], with, out);
                Some(SubPipeline::Fixed { name: name.clone(), plan })
            }
            YamlValue::Map(entries) => {
                for (key, _) in entries {
                    if key.text != "select" && key.text != "from" {
                        out.push(
                            Diagnostic::error(
                                "unknown-key",
                                source,
                                key.span,
                                format!("unknown key `{}` in `pipeline`", key.text),
                            )
                            .with_help_opt(suggest::hint(&key.text, ["select", "from"])),
                        );
                    }
                }
                let select = pipeline.get("select");
                let from = pipeline.get("from");
                let (Some(select), Some(from)) = (select, from) else {
                    out.push(
                        Diagnostic::error(
                            "missing-field",
                            source,
                            pipeline.span,
                            "`pipeline` needs both `select` and `from`",
                        )
                        .with_help(
                            "write `pipeline: {select: \"{{ inputs.source.type }}\", from: {git: sources/git}}`",
                        ),
                    );
                    return None;
                };
                let Some(expr) = select.as_str() else {
                    out.push(Diagnostic::error(
                        "wrong-type",
                        source,
                        select.span,
                        "`select` must be a template string",
                    ));
                    return None;
                };
                let Some(alternatives) = from.as_map().filter(|a| !a.is_empty()) else {
                    out.push(Diagnostic::error(
                        "wrong-type",
                        source,
                        from.span,
                        "`from` must map each selected value to a pipeline name",
                    ));
                    return None;
                };
                let mut resolved = IndexMap::new();
                let mut complete = true;
                for (value, name_node) in alternatives {
                    let Some(name) = name_node.as_str() else {
                        out.push(Diagnostic::error(
                            "wrong-type",
                            source,
                            name_node.span,
                            "a `from` entry must be a pipeline name",
                        ));
                        complete = false;
                        continue;
                    };
                    match self.resolve(source, name, name_node.span, out) {
                        Some(plan) => {
                            resolved.insert(value.text.clone(), (name.to_string(), plan));
                        }
                        None => complete = false,
                    }
                }
                let plans: Vec<(&str, &Arc<Plan>)> = resolved.values().map(|(n, p)| (n.as_str(), p)).collect();
                check_sub_inputs(source, id, &plans, with, out);
                warn_outputs_disagree(source, id, from.span, &resolved, out);
                complete.then(|| SubPipeline::Select { expr: expr.to_string(), from: resolved })
            }
            _ => {
                out.push(Diagnostic::error(
                    "wrong-type",
                    source,
                    pipeline.span,
                    format!("`pipeline` must be a name or `{{select, from}}`, found {}", pipeline.kind_name()),
                ));
                None
            }
        }
    }
}

/// The span of the `with:` key owning a block, for "missing parameter" errors; the
/// block's own start when the key cannot be found.
fn with_key_span(source: &Arc<Source>, with: &Yaml) -> Span {
    // The key sits just before its value: look back a little, not through the file.
    let end = with.span.start.min(source.text.len());
    let from = source.text.floor_char_boundary(end.saturating_sub(256));
    let before = &source.text[from..end];
    match before.rfind("with") {
        Some(at) if before[at..].trim_start_matches("with").trim_start().starts_with(':') => {
            Span::new(from + at, from + at + 4)
        }
        _ => Span::new(with.span.start, with.span.start),
    }
}

fn declare_phases(source: &Arc<Source>, raw: &RawPipeline, out: &mut Vec<Diagnostic>) -> PhaseOrder {
    let mut phases = PhaseOrder::default();
    for extra in &raw.phases {
        let name = &extra.name.value;
        if !phase::is_valid_name(name) {
            out.push(
                Diagnostic::error(
                    "invalid-name",
                    source,
                    extra.name.span,
                    format!("phase name `{name}` is not UPPER_SNAKE_CASE"),
                )
                .with_help(format!("write `{}`", name.to_uppercase().replace(['-', ' '], "_"))),
            );
        }
        if phases.contains(name) {
            out.push(Diagnostic::error(
                "duplicate-phase",
                source,
                extra.name.span,
                format!("phase `{name}` is already defined"),
            ));
            continue;
        }
        if extra.after.value == phase::ACTIVE || extra.after.value == phase::FAILED {
            out.push(Diagnostic::error(
                "invalid-value",
                source,
                extra.after.span,
                format!("no phase can come after `{}`", extra.after.value),
            ));
            continue;
        }
        if !phases.insert_after(name, &extra.after.value) {
            out.push(
                Diagnostic::error(
                    "unknown-phase",
                    source,
                    extra.after.span,
                    format!("unknown phase `{}`", extra.after.value),
                )
                .with_help_opt(suggest::hint(&extra.after.value, phases.names())),
            );
        }
    }
    phases
}

fn merge_retry(
    source: &Arc<Source>,
    node: Option<&RawRetry>,
    defaults: Option<&RawRetry>,
    out: &mut Vec<Diagnostic>,
) -> Retry {
    let base = Retry::default();
    let pick =
        |f: fn(&RawRetry) -> Option<crate::duration::Duration>| node.and_then(f).or_else(|| defaults.and_then(f));
    let attempts = node.and_then(|r| r.attempts.as_ref()).or_else(|| defaults.and_then(|r| r.attempts.as_ref()));
    if let Some(a) = attempts.filter(|a| a.value == 0) {
        out.push(
            Diagnostic::error("invalid-value", source, a.span, "`attempts` must be at least 1")
                .with_help("`attempts` counts every run of the node: 1 means no retry"),
        );
    }
    Retry {
        attempts: attempts.map_or(base.attempts, |a| a.value.max(1)),
        backoff: pick(|r| r.backoff).map_or(base.backoff, |d| d.0),
        max_backoff: pick(|r| r.max_backoff).map_or(base.max_backoff, |d| d.0),
    }
}

fn report_cycle(source: &Arc<Source>, raw: &RawPipeline, ids: &[String], cycle: &[usize], out: &mut Vec<Diagnostic>) {
    let names: Vec<&str> = cycle.iter().map(|&i| ids[i].as_str()).collect();
    let first = &raw.nodes[names[0]];
    let span = first
        .needs
        .iter()
        .find(|n| n.value == names[1])
        .map_or_else(|| raw.key_spans.nodes.get(names[0]).copied().unwrap_or_default(), |n| n.span);
    out.push(
        Diagnostic::error("cycle", source, span, format!("cycle in `needs`: {}", names.join(" -> ")))
            .with_label("this edge closes the cycle")
            .with_help("a node cannot wait for itself: remove one of these `needs` entries"),
    );
}

fn check_metadata_shape(source: &Arc<Source>, block: &Yaml, name: &str, out: &mut Vec<Diagnostic>) {
    if !matches!(block.value, YamlValue::Map(_) | YamlValue::Null) {
        out.push(Diagnostic::error(
            "wrong-type",
            source,
            block.span,
            format!("`{name}` must be a mapping, found {}", block.kind_name()),
        ));
    }
}

fn check_sub_inputs(
    source: &Arc<Source>,
    id: &str,
    plans: &[(&str, &Arc<Plan>)],
    with: Option<&Yaml>,
    out: &mut Vec<Diagnostic>,
) {
    let Some(entries) = with.and_then(Yaml::as_map) else { return };
    let known: Vec<&str> = {
        let mut all: Vec<&str> = plans.iter().flat_map(|(_, p)| p.inputs.keys().map(String::as_str)).collect();
        all.dedup();
        all
    };
    for (key, _) in entries {
        if !known.contains(&key.text.as_str()) {
            out.push(
                Diagnostic::error(
                    "unknown-parameter",
                    source,
                    key.span,
                    format!("sub-pipeline of `{id}` has no input `{}`", key.text),
                )
                .with_help_opt(suggest::hint(&key.text, known.iter().copied())),
            );
        }
    }
    if let [(name, plan)] = plans {
        for (input, spec) in &plan.inputs {
            if spec.required && spec.default.is_none() && !entries.iter().any(|(k, _)| &k.text == input) {
                out.push(Diagnostic::error(
                    "missing-parameter",
                    source,
                    with.map_or_else(Span::default, |w| with_key_span(source, w)),
                    format!("`{id}` does not give input `{input}`, which `{name}` requires"),
                ));
            }
        }
    }
}

fn warn_outputs_disagree(
    source: &Arc<Source>,
    id: &str,
    span: Span,
    alternatives: &IndexMap<String, (String, Arc<Plan>)>,
    out: &mut Vec<Diagnostic>,
) {
    let mut sets = alternatives.values().map(|(name, plan)| {
        let mut names = plan.output_names();
        names.sort();
        (name, names)
    });
    let Some((first_name, first)) = sets.next() else { return };
    for (name, outputs) in sets {
        if outputs != first {
            out.push(
                Diagnostic::warning(
                    "select-outputs-disagree",
                    source,
                    span,
                    format!("alternatives of `{id}` declare different outputs"),
                )
                .with_help(format!(
                    "`{first_name}` declares [{}], `{name}` declares [{}]",
                    first.join(", "),
                    outputs.join(", ")
                )),
            );
            return;
        }
    }
}

fn template_error(source: &Arc<Source>, text: &str, span: Span, e: template::TemplateError) -> Diagnostic {
    let at = e.range.and_then(|r| text.get(r)).and_then(|needle| source.find_in(span, needle)).unwrap_or(span);
    Diagnostic::error("template-syntax", source, at, format!("invalid template: {}", e.message))
        .with_help("templates are minijinja: `{{ expression }}`, `{% if ... %}...{% endif %}`")
}

fn check_variables(
    source: &Arc<Source>,
    scope: &mut Scope,
    vars: Vec<String>,
    span: Span,
    site: Site,
    out: &mut Vec<Diagnostic>,
) {
    for var in vars {
        if let Err(problem) = scope.check(&var, site) {
            let at = source.find_in(span, &var).unwrap_or(span);
            out.push(Diagnostic::error(problem.code, source, at, problem.message).with_help_opt(problem.help));
        }
    }
}

fn check_expression(
    source: &Arc<Source>,
    scope: &mut Scope,
    expr: &str,
    span: Span,
    site: Site,
    out: &mut Vec<Diagnostic>,
) {
    let expr = expr.trim();
    let expr = expr.strip_prefix("{{").and_then(|e| e.strip_suffix("}}")).unwrap_or(expr);
    match template::expression_variables(expr) {
        Ok(vars) => check_variables(source, scope, vars, span, site, out),
        Err(e) => out.push(template_error(source, expr, span, e)),
    }
}

fn check_templates(source: &Arc<Source>, scope: &mut Scope, block: &Yaml, site: Site, out: &mut Vec<Diagnostic>) {
    block.walk(&mut Vec::new(), &mut |_, node| {
        let Some(text) = node.as_str().filter(|t| template::is_template(t)) else { return };
        match template::template_variables(text) {
            Ok(vars) => check_variables(source, scope, vars, node.span, site, out),
            Err(e) => out.push(template_error(source, text, node.span, e)),
        }
    });
}

/// Warns about a node whose phase comes before the phase of one of its ancestors:
/// the run's phase would go backwards.
fn warn_phase_order(
    source: &Arc<Source>,
    phases: &PhaseOrder,
    nodes: &[PlanNode],
    order: Option<&[usize]>,
    out: &mut Vec<Diagnostic>,
) {
    let Some(order) = order else { return };
    let rank = |n: &PlanNode| n.phase.as_deref().and_then(|p| phases.position(p));
    // The latest phase among each node's ancestors, and which ancestor has it.
    let mut latest: Vec<Option<(usize, usize)>> = vec![None; nodes.len()];
    for &i in order {
        let mut best: Option<(usize, usize)> = None;
        for &dep in &nodes[i].needs {
            for candidate in [latest[dep], rank(&nodes[dep]).map(|r| (r, dep))].into_iter().flatten() {
                if best.is_none_or(|b| candidate.0 > b.0) {
                    best = Some(candidate);
                }
            }
        }
        latest[i] = best;
        if let (Some(own), Some((ancestor_rank, ancestor))) = (rank(&nodes[i]), best)
            && own < ancestor_rank
        {
            let own_phase = nodes[i].phase.as_deref().unwrap_or_default();
            let their_phase = nodes[ancestor].phase.as_deref().unwrap_or_default();
            out.push(
                Diagnostic::warning(
                    "phase-order",
                    source,
                    nodes[i].id_span,
                    format!(
                        "node `{}` reports `{own_phase}`, which comes before `{their_phase}` of its ancestor `{}`",
                        nodes[i].id, nodes[ancestor].id
                    ),
                )
                .with_help("the run's phase would go backwards; reorder the phases or the `needs`"),
            );
        }
    }
}
