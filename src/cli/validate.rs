//! `phased validate [PATH ...]`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::app::pipelines::yaml_files;
use crate::cli::{CatalogArgs, DiagnosticFormat, color_stdout, exit, usage_error};
use crate::diagnostic::{self, Diagnostic, DiagnosticCode, Severity};
use crate::report;
use crate::source::{Source, Span};

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Files and folders to check (folders: every *.yaml and *.yml below them);
    /// default: the --pipelines folder (./pipelines).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// How to print problems.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    format: DiagnosticFormat,
    /// Treat warnings as errors.
    #[arg(long)]
    deny_warnings: bool,
    #[command(flatten)]
    catalog: CatalogArgs,
}

pub(super) fn run(mut args: Args) -> u8 {
    if args.paths.is_empty() {
        if !args.catalog.pipelines.exists() {
            return nothing_to_check(&args);
        }
        args.paths.push(args.catalog.pipelines.clone());
    }
    let mut diagnostics = Vec::new();
    let mut files = 0;
    for path in &args.paths {
        let (root, targets) = if path.is_dir() {
            match yaml_files(path) {
                Ok(found) => (path.clone(), found),
                Err(e) => return usage_error(format!("cannot read `{}`: {e}", path.display()), None),
            }
        } else if path.is_file() {
            let root = if path.starts_with(&args.catalog.pipelines) {
                args.catalog.pipelines.clone()
            } else {
                path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            };
            (root, vec![path.clone()])
        } else {
            return usage_error(
                format!("`{}` does not exist", path.display()),
                Some("give pipeline files or folders; the default is ./pipelines"),
            );
        };
        let mut sources = Vec::new();
        for target in &targets {
            files += 1;
            let text = match std::fs::read(target) {
                Ok(bytes) => bytes,
                Err(e) => return usage_error(format!("cannot read `{}`: {e}", target.display()), None),
            };
            let source = match String::from_utf8(text) {
                Ok(text) => Source::new(target.display().to_string(), text),
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    let source =
                        Source::new(target.display().to_string(), String::from_utf8_lossy(e.as_bytes()).into_owned());
                    diagnostics.push(
                        Diagnostic::error(
                            DiagnosticCode::NotUtf8,
                            &source,
                            Span::new(at, at),
                            format!("the file is not UTF-8 text (invalid byte at offset {at})"),
                        )
                        .with_help("pipeline files are UTF-8 YAML"),
                    );
                    continue;
                }
            };
            if crate::serve::triggers::is_triggers_file(&source.text) {
                // Triggers name deployment types as `serve` finds them: --pipelines, then built in.
                let types = crate::cli::load::pipelines(&args.catalog).catalog();
                diagnostics.extend(crate::serve::triggers::load(&source, &types).1);
                continue;
            }
            sources.push(source);
        }
        let (plans, found) = crate::app::pipelines::check(&root, &sources);
        let mut names: HashMap<String, String> = HashMap::new();
        for (source, plan) in plans {
            if let Some(first) = names.insert(plan.name.clone(), source.name.clone()) {
                diagnostics.push(
                    Diagnostic::error(
                        DiagnosticCode::DuplicatePipelineName,
                        &source,
                        Span::new(0, 0),
                        format!("pipeline name `{}` is also used by `{first}`", plan.name),
                    )
                    .with_help("a deployment type's name is unique within a catalog"),
                );
            }
        }
        diagnostics.extend(found);
    }
    if args.deny_warnings {
        for d in &mut diagnostics {
            d.severity = Severity::Error;
        }
    }
    diagnostic::sort_and_dedup(&mut diagnostics);
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let valid = errors == 0;

    match args.format {
        DiagnosticFormat::Human => {
            let color = color_stdout();
            for d in &diagnostics {
                println!("{}", report::human(d, color));
            }
            let files_with_errors = {
                let mut names: Vec<&str> =
                    diagnostics.iter().filter(|d| d.is_error()).map(|d| d.source.name.as_str()).collect();
                names.dedup();
                names.len()
            };
            if valid {
                if !crate::reporter::quiet() {
                    println!("ok: {files} file{} valid{}", plural(files), warning_note(warnings));
                }
            } else {
                println!(
                    "invalid: {errors} error{} in {files_with_errors} of {files} file{}{}",
                    plural(errors),
                    plural(files),
                    warning_note(warnings)
                );
            }
        }
        DiagnosticFormat::Json => {
            let list: Vec<report::JsonDiagnostic> = diagnostics.iter().map(Into::into).collect();
            let out = serde_json::json!({"valid": valid, "files": files, "diagnostics": list});
            println!("{}", serde_json::to_string_pretty(&out).expect("JSON of plain data"));
        }
        DiagnosticFormat::Sarif => {
            println!("{}", serde_json::to_string_pretty(&report::sarif(&diagnostics)).expect("JSON of plain data"));
        }
        DiagnosticFormat::Github => {
            for d in &diagnostics {
                println!("{}", report::github(d));
            }
        }
    }
    if valid { exit::OK } else { exit::FAILED }
}

/// No PATH and no pipelines folder (a first `phased validate` in an empty folder):
/// nothing is wrong, so the usual empty report, and a note saying where to start.
fn nothing_to_check(args: &Args) -> u8 {
    let folder = args.catalog.pipelines.display();
    let note = format!(
        "nothing to check: no `{folder}` folder here (`validate` without a PATH checks the --pipelines folder)\n  \
         help: `phased init` writes a starter deployment type there; or give files and folders: `phased validate PATH ...`"
    );
    match args.format {
        DiagnosticFormat::Human if !crate::reporter::quiet() => println!("{note}"),
        DiagnosticFormat::Human | DiagnosticFormat::Github => crate::reporter::note_line(format_args!("{note}")),
        DiagnosticFormat::Json => {
            crate::reporter::note_line(format_args!("{note}"));
            let out = serde_json::json!({"valid": true, "files": 0, "diagnostics": []});
            println!("{}", serde_json::to_string_pretty(&out).expect("JSON of plain data"));
        }
        DiagnosticFormat::Sarif => {
            crate::reporter::note_line(format_args!("{note}"));
            println!("{}", serde_json::to_string_pretty(&report::sarif(&[])).expect("JSON of plain data"));
        }
    }
    exit::OK
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn warning_note(warnings: usize) -> String {
    if warnings == 0 { String::new() } else { format!(", {warnings} warning{}", plural(warnings)) }
}
