//! `phased plan PIPELINE`.

use std::path::PathBuf;

use crate::cli::load::{Loaded, load_with_inputs};
use crate::cli::run::reloaded;
use crate::cli::store::{open_run, store_error};
use crate::cli::{CatalogArgs, OutputFormat, StoreArgs, exit, usage_error};
use crate::dry_run::{DryRun, dry_run};
use crate::engine::{self, EngineError};

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
    let reload = match reloaded(args.reload, store.as_ref(), &id, &args.catalog) {
        Ok(reload) => reload,
        Err(code) => return code,
    };
    let preview = match engine::preview(store.as_ref(), &id, reload.as_deref()) {
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
            println!("  {:<width$}  {note}", "");
        }
        for (label, value) in [("with", &node.with), ("metadata", &node.metadata)] {
            if !value.is_null() && value.as_object().is_none_or(|o| !o.is_empty()) {
                println!("  {:<width$}  {label}: {}", "", serde_json::to_string(value).expect("JSON of plain data"));
            }
        }
    }
}
