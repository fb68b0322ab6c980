//! One node: its phase, weight, action or sub-pipeline (with every alternative of a
//! `select`), timeout, grace, retries and undo.

use std::sync::Arc;

use indexmap::IndexMap;

use super::Compiler;
use super::blocks::template_error;
use super::checks::{check_metadata_shape, check_sub_inputs, warn_outputs_disagree, with_key_span};
use super::scope::NodeOutputs;
use crate::action::{self, ActionSpec, check_with};
use crate::de::Spanned;
use crate::diagnostic::{Diagnostic, DiagnosticCode};
use crate::phase::{self, PhaseOrder};
use crate::plan::{
    DEFAULT_GRACE, DEFAULT_TIMEOUT, DeclaredOutputs, NodeKind, Plan, PlanNode, Retry, SubPipeline, Undo,
};
use crate::raw::{RawNode, RawPipeline, RawRetry, RawUndo};
use crate::source::{Source, Span};
use crate::suggest;
use crate::template::Templates;
use crate::yaml::{Yaml, YamlValue};

impl Compiler<'_> {
    #[expect(clippy::too_many_arguments, reason = "one node needs the whole pipeline context")]
    pub(super) fn compile_node(
        &mut self,
        source: &Arc<Source>,
        raw: &RawPipeline,
        phases: &PhaseOrder,
        templates: &mut Templates,
        id: &str,
        id_span: Span,
        node: &RawNode,
        needs: Vec<usize>,
        out: &mut Vec<Diagnostic>,
    ) -> (PlanNode, NodeOutputs) {
        check_id(source, id, id_span, out);
        if let Some(p) = &node.phase {
            check_phase(source, phases, p, out);
        }
        let weight = node_weight(source, id, node, out);
        let (kind, mut declared) = self.compile_kind(source, templates, id, id_span, node, out);
        if node.phase.is_none() && matches!(kind, Some(NodeKind::Action(_))) {
            out.push(
                Diagnostic::error(DiagnosticCode::MissingField, source, id_span, format!("node `{id}` has no `phase`"))
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
                DiagnosticCode::InvalidValue,
                source,
                t.span,
                "a timeout of 0 would fail every node at once",
            ));
        }
        let retry = merge_retry(source, node.retry.as_ref(), raw.defaults.retry.as_ref(), out);
        let undo = node.undo.as_ref().and_then(|undo| compile_undo(source, undo, out));
        let plan_node = PlanNode {
            id: id.to_string(),
            id_span,
            phase: node.phase.as_ref().map(|p| p.value.clone()),
            weight,
            needs,
            // Templates are compiled once the graph (and so every scope) is known.
            condition: None,
            // A node whose kind could not be resolved has been reported; `noop` keeps
            // the remaining checks running on a complete model.
            kind: kind.unwrap_or(NodeKind::Action(action::find("noop").expect("noop is built in"))),
            with: None,
            metadata: None,
            result_metadata: None,
            timeout: timeout.map_or(DEFAULT_TIMEOUT, |t| t.value.0),
            grace: node.grace.or(raw.defaults.grace).map_or(DEFAULT_GRACE, |d| d.0),
            retry,
            undo,
            // Compiled with the other templates (`item` is in scope there).
            foreach: None,
        };
        // A fanned node's outputs are each item's, by name.
        if node.foreach.is_some() {
            declared = NodeOutputs::One(DeclaredOutputs::Names(vec!["items".into()]));
        }
        (plan_node, declared)
    }

    /// What the node runs (an action or a sub-pipeline) and the outputs it declares;
    /// `None` (reported) when neither or both are given or the name is unknown.
    fn compile_kind(
        &mut self,
        source: &Arc<Source>,
        templates: &mut Templates,
        id: &str,
        id_span: Span,
        node: &RawNode,
        out: &mut Vec<Diagnostic>,
    ) -> (Option<NodeKind>, NodeOutputs) {
        let any = NodeOutputs::One(DeclaredOutputs::Any);
        match (&node.uses, &node.pipeline) {
            (Some(_), Some(p)) => {
                out.push(
                    Diagnostic::error(
                        DiagnosticCode::ConflictingKeys,
                        source,
                        p.span,
                        format!("node `{id}` has both `uses` and `pipeline`"),
                    )
                    .with_help("a node runs either an action (`uses`) or a sub-pipeline (`pipeline`)"),
                );
                (None, any)
            }
            (None, None) => {
                out.push(
                    Diagnostic::error(
                        DiagnosticCode::MissingAction,
                        source,
                        id_span,
                        format!("node `{id}` has neither `uses` nor `pipeline`"),
                    )
                    .with_help("add `uses: <action>` (for instance `uses: shell`) or `pipeline: <name>`"),
                );
                (None, any)
            }
            (Some(uses), None) => match compile_action(source, id_span, node, uses, out) {
                Some(spec) => (Some(NodeKind::Action(spec)), NodeOutputs::One(DeclaredOutputs::of_action(spec))),
                None => (None, any),
            },
            (None, Some(pipeline)) => {
                let sub = self.compile_pipeline_ref(source, templates, id, pipeline, node.with.as_ref(), out);
                let declared = match &sub {
                    Some(SubPipeline::Fixed { plan, .. }) => {
                        NodeOutputs::One(DeclaredOutputs::Names(plan.output_names()))
                    }
                    Some(SubPipeline::Select { from, .. }) => NodeOutputs::Alternatives(
                        from.values()
                            .map(|(name, plan)| (name.clone(), DeclaredOutputs::Names(plan.output_names())))
                            .collect(),
                    ),
                    None => any,
                };
                (sub.map(NodeKind::Pipeline), declared)
            }
        }
    }

    fn compile_pipeline_ref(
        &mut self,
        source: &Arc<Source>,
        templates: &mut Templates,
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
                                DiagnosticCode::UnknownKey,
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
                            DiagnosticCode::MissingField,
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
                let Some(text) = select.as_str() else {
                    out.push(Diagnostic::error(
                        DiagnosticCode::WrongType,
                        source,
                        select.span,
                        "`select` must be a template string",
                    ));
                    return None;
                };
                let expr = match templates.compile(text, select.span) {
                    Ok(expr) => Some(expr),
                    Err(e) => {
                        out.push(template_error(source, text, select.span, e));
                        None
                    }
                };
                let Some(alternatives) = from.as_map().filter(|a| !a.is_empty()) else {
                    out.push(Diagnostic::error(
                        DiagnosticCode::WrongType,
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
                            DiagnosticCode::WrongType,
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
                let expr = expr.filter(|_| complete)?;
                Some(SubPipeline::Select { expr, from: resolved })
            }
            _ => {
                out.push(Diagnostic::error(
                    DiagnosticCode::WrongType,
                    source,
                    pipeline.span,
                    format!("`pipeline` must be a name or `{{select, from}}`, found {}", pipeline.kind_name()),
                ));
                None
            }
        }
    }
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
            Diagnostic::error(DiagnosticCode::InvalidValue, source, a.span, "`attempts` must be at least 1")
                .with_help("`attempts` counts every run of the node: 1 means no retry"),
        );
    }
    Retry {
        attempts: attempts.map_or(base.attempts, |a| a.value.max(1)),
        backoff: pick(|r| r.backoff).map_or(base.backoff, |d| d.0),
        max_backoff: pick(|r| r.max_backoff).map_or(base.max_backoff, |d| d.0),
    }
}

/// A node id must be snake_case: templates read it as `nodes.<id>`.
fn check_id(source: &Arc<Source>, id: &str, id_span: Span, out: &mut Vec<Diagnostic>) {
    if !crate::names::is_identifier(id) {
        out.push(
            Diagnostic::error(
                DiagnosticCode::InvalidName,
                source,
                id_span,
                format!("node id `{id}` is not snake_case"),
            )
            .with_help("templates read nodes as `nodes.<id>`: use lowercase letters, digits and `_`"),
        );
    }
}

/// A node's phase must be declared (or built in) and not one the engine sets.
fn check_phase(source: &Arc<Source>, phases: &PhaseOrder, p: &Spanned<String>, out: &mut Vec<Diagnostic>) {
    if !phases.contains(&p.value) {
        out.push(
            Diagnostic::error(DiagnosticCode::UnknownPhase, source, p.span, format!("unknown phase `{}`", p.value))
                .with_help(match suggest::closest(&p.value, phases.names()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => {
                        format!("built-in phases are {}; declare others under `phases:`", suggest::list(phase::BUILTIN))
                    }
                }),
        );
    } else if p.value == phase::QUEUED || p.value == phase::ACTIVE || p.value == phase::FAILED {
        out.push(
            Diagnostic::error(
                DiagnosticCode::ReservedPhase,
                source,
                p.span,
                format!("`{}` is set by the engine, not by a node", p.value),
            )
            .with_help("the run is QUEUED before any node starts, ACTIVE when all succeed and FAILED when one fails"),
        );
    }
}

/// The node's share of the progress bar: 1 when not given, 0 (reported) when negative.
fn node_weight(source: &Arc<Source>, id: &str, node: &RawNode, out: &mut Vec<Diagnostic>) -> f64 {
    match &node.weight {
        Some(w) if w.value.is_nan() || w.value < 0.0 => {
            out.push(
                Diagnostic::error(
                    DiagnosticCode::NegativeWeight,
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
    }
}

/// The action of `uses`, its `with` checked against what the action takes.
fn compile_action(
    source: &Arc<Source>,
    id_span: Span,
    node: &RawNode,
    uses: &Spanned<String>,
    out: &mut Vec<Diagnostic>,
) -> Option<&'static ActionSpec> {
    let Some(spec) = action::find(&uses.value) else {
        out.push(
            Diagnostic::error(
                DiagnosticCode::UnknownAction,
                source,
                uses.span,
                format!("unknown action `{}`", uses.value),
            )
            .with_help_opt(suggest::hint(&uses.value, action::names())),
        );
        return None;
    };
    let null = Yaml::null(uses.span);
    let with = node.with.as_ref().unwrap_or(&null);
    for problem in check_with(spec, with, if node.with.is_some() { with_key_span(source, with) } else { id_span }) {
        out.push(Diagnostic::error(problem.code, source, problem.span, problem.message).with_help_opt(problem.help));
    }
    Some(spec)
}

/// A node's `undo`: its action found and its `with` checked; its templates are
/// compiled with the others, once the scope is known.
fn compile_undo(source: &Arc<Source>, undo: &RawUndo, out: &mut Vec<Diagnostic>) -> Option<Undo> {
    let Some(spec) = action::find(&undo.uses.value) else {
        out.push(
            Diagnostic::error(
                DiagnosticCode::UnknownAction,
                source,
                undo.uses.span,
                format!("unknown action `{}`", undo.uses.value),
            )
            .with_help_opt(suggest::hint(&undo.uses.value, action::names())),
        );
        return None;
    };
    let null = Yaml::null(undo.uses.span);
    let with = undo.with.as_ref().unwrap_or(&null);
    let owner = if undo.with.is_some() { with_key_span(source, with) } else { undo.uses.span };
    for problem in check_with(spec, with, owner) {
        out.push(Diagnostic::error(problem.code, source, problem.span, problem.message).with_help_opt(problem.help));
    }
    Some(Undo { condition: None, action: spec, with: None })
}
