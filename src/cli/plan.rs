//! `phased plan PIPELINE`.

use std::path::PathBuf;

use crate::cli::load::{Loaded, load_with_inputs};
use crate::cli::run::reloaded;
use crate::cli::store::{open_run, store_error};
use crate::cli::{CatalogArgs, OutputFormat, StoreArgs, exit, usage_error};
use crate::dry_run::{DryRun, dry_run};
use crate::engine::EngineError;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// A pipeline file, or a deployment-type name (looked up in --pipelines, then built in).
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    pipeline: Option<String>,
    /// Show what `phased resume ID` would do instead: which nodes are kept, which run.
    #[arg(long, value_name = "ID")]
    resume: Option<String>,
    /// With --resume: as `resume --reload` (the pipeline as it is on disk now).
    #[arg(long, requires = "resume")]
    reload: bool,
    /// An input, `key=value` (the value is read as YAML: `8080` is a number); `a.b=c` nests.
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    input: Vec<String>,
    /// A YAML file of inputs (`-i` values override it).
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    #[command(flatten)]
    catalog: CatalogArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub(super) fn run(args: Args) -> u8 {
    if let Some(id) = &args.resume {
        return resume_plan(&args, id);
    }
    let pipeline = args.pipeline.as_deref().expect("clap requires a pipeline without --resume");
    let Loaded { plan, resolved, .. } =
        match load_with_inputs(pipeline, &args.catalog, args.inputs.as_deref(), &args.input) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        };
    let result = match dry_run(&plan, resolved) {
        Ok(result) => result,
        Err(e) => return usage_error(e, None),
    };
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&result).expect("JSON of plain data")),
        OutputFormat::Human => print_human(&result, &plan.source.name),
    }
    exit::OK
}

/// `plan --resume ID [--reload]`: what resuming would keep and run, node by node.
fn resume_plan(args: &Args, given: &str) -> u8 {
    let (store, id) = match open_run(&args.store, given) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let reload = match reloaded(args.reload, &args.store, &id, &args.catalog) {
        Ok(reload) => reload,
        Err(code) => return code,
    };
    let preview = match crate::read::preview(store.as_ref(), &id, reload.as_deref()) {
        Ok(preview) => preview,
        Err(EngineError::Store(e)) => return store_error(&e, &args.store.db),
        Err(e) => return usage_error(e, Some("the run is unchanged")),
    };
    if args.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&preview).expect("JSON of plain data"));
        return exit::OK;
    }
    let from = match &reload {
        Some(plan) => format!("the pipeline on disk (`{}`)", plan.source.name),
        None => "the pipeline it started with".to_string(),
    };
    println!("resuming run {} ({}, {}) with {from}:", preview.run, preview.pipeline, preview.status);
    let width = preview.nodes.iter().map(|n| n.node.len()).max().unwrap_or(4).max(4);
    for node in &preview.nodes {
        let why = match node.action {
            "kept" => "finished; its checkpoint is kept",
            "changed" => "defined differently now (or new): runs",
            "rerun" => "finished, but depends on a changed node: runs again",
            _ => "did not finish: runs",
        };
        println!("  {:<width$}  {:<7}  {why}", node.node, node.action);
    }
    if !preview.removed.is_empty() {
        println!("  removed from the pipeline: {}", preview.removed.join(", "));
    }
    exit::OK
}

fn print_human(result: &DryRun, file: &str) {
    println!("plan for `{}` ({file})", result.pipeline);
    if let (Some(target), Some(policy)) = (&result.target, result.policy) {
        println!("  target `{target}` (runs of it never overlap: {policy})");
    }
    let width = result.nodes.iter().map(|n| n.node.len()).max().unwrap_or(4).max(4);
    println!("  {:<width$}  {:<18}  {:>9}", "node", "phase", "progress");
    let pad = " ".repeat(width + 4);
    for node in &result.nodes {
        let phase = node.phase.as_deref().unwrap_or("-");
        let progress = format!("{:>3} -> {:<3}", node.progress_start, node.progress_end);
        let what = match (&node.uses, &node.pipeline) {
            (Some(uses), _) => format!("uses {uses}"),
            (_, Some(p)) => format!("pipeline {p}"),
            _ => String::new(),
        };
        let skipped = if node.skipped { "  (skipped)" } else { "" };
        println!("  {:<width$}  {:<18}  {progress}  {what}{skipped}", node.node, phase);
        if let Some(note) = &node.note {
            println!("{pad}{note}");
        }
        if !node.needs.is_empty() {
            println!("{pad}needs: {}", node.needs.join(", "));
        }
        for (label, value) in [("with", &node.with), ("metadata", &node.metadata)] {
            if !value.is_null() && value.as_object().is_none_or(|o| !o.is_empty()) {
                let mut lines = Vec::new();
                block(label, value, &mut lines);
                for line in lines {
                    println!("{pad}{line}");
                }
            }
        }
    }
}

/// `key: value` as a reader wants it, close to YAML: a mapping's keys one a line below
/// it, a multi-line string as an indented block (`|`), a list of plain values on one
/// line; a string is shown as it is unless that would be ambiguous (empty, spaces at an
/// end, a number, control characters), then quoted as JSON.
fn block(key: &str, value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(_) if is_multiline(value) => out.push(format!("{key}: |")),
        serde_json::Value::Object(map) if !map.is_empty() => out.push(format!("{key}:")),
        serde_json::Value::Array(items) if items.iter().any(nested) => out.push(format!("{key}:")),
        _ => {
            out.push(format!("{key}: {}", inline(value)));
            return;
        }
    }
    out.extend(body(value).into_iter().map(|line| format!("  {line}")));
}

/// The lines under `key:` of a value that is not shown inline.
fn body(value: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    match value {
        serde_json::Value::String(text) => {
            let text = crate::cli::terminal::clean(text, false);
            out.extend(text.trim_end_matches('\n').lines().map(str::to_string));
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                block(k, v, &mut out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                match item {
                    _ if !nested(item) => out.push(format!("- {}", inline(item))),
                    // A mapping's first key goes after the dash, the others under it.
                    serde_json::Value::Object(_) => {
                        for (i, line) in body(item).into_iter().enumerate() {
                            out.push(format!("{} {line}", if i == 0 { "-" } else { " " }));
                        }
                    }
                    _ => {
                        out.push(if item.is_string() { "- |".to_string() } else { "-".to_string() });
                        out.extend(body(item).into_iter().map(|line| format!("  {line}")));
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// Shown on lines of its own: a non-empty mapping or list, or a multi-line string.
fn nested(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => !map.is_empty(),
        serde_json::Value::Array(items) => items.iter().any(nested),
        _ => is_multiline(value),
    }
}

fn inline(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(inline).collect::<Vec<_>>().join(", ")),
        _ => scalar(value),
    }
}

fn is_multiline(value: &serde_json::Value) -> bool {
    value.as_str().is_some_and(|s| s.trim_end_matches('\n').contains('\n'))
}

fn scalar(value: &serde_json::Value) -> String {
    match value.as_str() {
        Some(text)
            if !text.is_empty()
                && text.trim() == text
                && !text.chars().any(char::is_control)
                && !text.starts_with(['"', '{', '[', '|'])
                && serde_json::from_str::<serde_json::Value>(text).is_err() =>
        {
            text.to_string()
        }
        _ => serde_json::to_string(value).expect("JSON of plain data"),
    }
}
