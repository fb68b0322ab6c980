//! `phased plan PIPELINE`.

use std::path::PathBuf;

use crate::cli::load::{Loaded, load_with_inputs};
use crate::cli::{CatalogArgs, OutputFormat, exit, usage_error};
use crate::dry_run::{DryRun, dry_run};

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// A pipeline file, or a deployment-type name (looked up in --pipelines, then built in).
    pipeline: String,
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
}

pub(super) fn run(args: Args) -> u8 {
    let Loaded { plan, resolved, .. } =
        match load_with_inputs(&args.pipeline, &args.catalog, args.inputs.as_deref(), &args.input) {
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

fn print_human(result: &DryRun, file: &str) {
    println!("plan for `{}` ({file})", result.pipeline);
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
