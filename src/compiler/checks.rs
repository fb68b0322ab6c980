//! Checks of a pipeline as a whole: its declared phases, cycles, the shape of metadata
//! blocks, a sub-pipeline's inputs and outputs, and the phase order along the DAG.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::diagnostic::{Diagnostic, DiagnosticCode};
use crate::phase::{self, PhaseOrder};
use crate::plan::{Plan, PlanNode};
use crate::raw::RawPipeline;
use crate::source::{Source, Span};
use crate::suggest;
use crate::yaml::{Yaml, YamlValue};

pub(super) fn declare_phases(source: &Arc<Source>, raw: &RawPipeline, out: &mut Vec<Diagnostic>) -> PhaseOrder {
    let mut phases = PhaseOrder::default();
    for extra in &raw.phases {
        let name = &extra.name.value;
        if !phase::is_valid_name(name) {
            out.push(
                Diagnostic::error(
                    DiagnosticCode::InvalidName,
                    source,
                    extra.name.span,
                    format!("phase name `{name}` is not UPPER_SNAKE_CASE"),
                )
                .with_help(format!("write `{}`", name.to_uppercase().replace(['-', ' '], "_"))),
            );
        }
        if phases.contains(name) {
            out.push(Diagnostic::error(
                DiagnosticCode::DuplicatePhase,
                source,
                extra.name.span,
                format!("phase `{name}` is already defined"),
            ));
            continue;
        }
        if extra.after.value == phase::ACTIVE || extra.after.value == phase::FAILED {
            out.push(Diagnostic::error(
                DiagnosticCode::InvalidValue,
                source,
                extra.after.span,
                format!("no phase can come after `{}`", extra.after.value),
            ));
            continue;
        }
        if !phases.insert_after(name, &extra.after.value) {
            out.push(
                Diagnostic::error(
                    DiagnosticCode::UnknownPhase,
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

pub(super) fn report_cycle(
    source: &Arc<Source>,
    raw: &RawPipeline,
    ids: &[String],
    cycle: &[usize],
    out: &mut Vec<Diagnostic>,
) {
    let names: Vec<&str> = cycle.iter().map(|&i| ids[i].as_str()).collect();
    let first = &raw.nodes[names[0]];
    let span = first
        .needs
        .iter()
        .find(|n| n.value == names[1])
        .map_or_else(|| raw.key_spans.nodes.get(names[0]).copied().unwrap_or_default(), |n| n.span);
    out.push(
        Diagnostic::error(DiagnosticCode::Cycle, source, span, format!("cycle in `needs`: {}", names.join(" -> ")))
            .with_label("this edge closes the cycle")
            .with_help("a node cannot wait for itself: remove one of these `needs` entries"),
    );
}

pub(super) fn check_metadata_shape(source: &Arc<Source>, block: &Yaml, name: &str, out: &mut Vec<Diagnostic>) {
    if !matches!(block.value, YamlValue::Map(_) | YamlValue::Null) {
        out.push(Diagnostic::error(
            DiagnosticCode::WrongType,
            source,
            block.span,
            format!("`{name}` must be a mapping, found {}", block.kind_name()),
        ));
    }
}

pub(super) fn check_sub_inputs(
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
                    DiagnosticCode::UnknownParameter,
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
                    DiagnosticCode::MissingParameter,
                    source,
                    with.map_or_else(Span::default, |w| with_key_span(source, w)),
                    format!("`{id}` does not give input `{input}`, which `{name}` requires"),
                ));
            }
        }
    }
}

pub(super) fn warn_outputs_disagree(
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
                    DiagnosticCode::SelectOutputsDisagree,
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

/// Warns about a node whose phase comes before the phase of one of its ancestors:
/// the run's phase would go backwards.
pub(super) fn warn_phase_order(
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
                    DiagnosticCode::PhaseOrder,
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

/// What is wrong with a webhook URL, as far as its written part tells: a scheme other
/// than `http` or `https` (`file://`, `gopher://`), or a URL written in full that does
/// not parse. The part a template renders is checked when it is sent.
pub(super) fn webhook_url_problem(url: &str) -> Option<String> {
    let written = &url[..url.find(['{']).unwrap_or(url.len())];
    if written.len() == url.len()
        && let Err(e) = reqwest::Url::parse(url)
    {
        return Some(format!("the webhook URL `{url}` is not an absolute URL: {e}"));
    }
    let (scheme, _) = written.split_once(':')?;
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme || matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return None;
    }
    Some(format!("a webhook URL is sent over `http` or `https` only, not `{scheme}:`"))
}

/// The span of the `with:` key owning a block, for "missing parameter" errors; the
/// block's own start when the key cannot be found.
pub(super) fn with_key_span(source: &Arc<Source>, with: &Yaml) -> Span {
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
