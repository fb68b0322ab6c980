//! `phased init [TYPE]`: a starter deployment type that validates and runs as written,
//! commented for a first read; or a copy of a built-in type to customise. Nothing is
//! overwritten without `--force`.

use std::path::{Path, PathBuf};

use crate::app::pipelines;
use crate::cli::{exit, usage_error};
use crate::diagnostic::Diagnostic;
use crate::source::Source;

#[derive(clap::Args, Debug)]
pub(super) struct InitArgs {
    /// A built-in type to copy (`static`, `docker`, `nodejs`, `hello`); without it, a starter.
    r#type: Option<String>,
    /// The new type's name and file (`<pipelines>/<name>.yaml`); default `my-app`, or
    /// with TYPE the type's own name (the copy then takes the built-in's place).
    #[arg(long)]
    name: Option<String>,
    /// The folder of pipeline files.
    #[arg(long, value_name = "DIR", default_value = "pipelines", env = "PHASED_PIPELINES")]
    pipelines: PathBuf,
    /// Replace a file that is already there.
    #[arg(long)]
    force: bool,
}

const STARTER: &str = include_str!("templates/starter.yaml");

/// Where the JSON Schema goes, from the pipelines folder: `schemas/` beside it, as in
/// this repository. The `$schema` line of every file `init` writes points there.
const SCHEMA_FROM_PIPELINES: &str = "../schemas/pipeline.schema.json";

pub(super) fn init(args: InitArgs) -> u8 {
    let name = args.name.clone().or_else(|| args.r#type.clone()).unwrap_or_else(|| "my-app".to_string());
    if !crate::names::is_identifier(&name.replace('-', "_")) {
        return usage_error(format!("`{name}` is not a type name"), Some("use lowercase letters, digits, `-` and `_`"));
    }
    let text = match &args.r#type {
        None => STARTER.replace("NAME", &name),
        Some(builtin) => match pipelines::builtin(builtin) {
            Ok(text) => renamed(&text, &name),
            Err(hint) => return usage_error(format!("no built-in type `{builtin}`"), hint.as_deref()),
        },
    };
    let text = with_schema_line(&text);
    let path = args.pipelines.join(format!("{name}.yaml"));
    if path.exists() && !args.force {
        return usage_error(format!("`{}` exists already", path.display()), Some("pass --force to replace it"));
    }
    // What is written must validate: checked before it is written.
    let source = Source::new(path.display().to_string(), text.clone());
    let errors = pipelines::errors_of(&args.pipelines, &source);
    if !errors.is_empty() {
        let problems: Vec<String> = errors.iter().map(Diagnostic::to_string).collect();
        return usage_error(format!("the starter does not validate: {}", problems.join("; ")), None);
    }
    if let Err(e) = std::fs::create_dir_all(&args.pipelines).and_then(|()| std::fs::write(&path, text)) {
        return usage_error(format!("cannot write `{}`: {e}", path.display()), None);
    }
    println!("wrote {}", path.display());
    write_schema(&args.pipelines);
    if crate::reporter::quiet() {
        return exit::OK;
    }
    if pipelines::is_builtin(&name) {
        println!("`{name}` in {} now takes the place of the built-in type of that name", args.pipelines.display());
    }
    println!("next: phased validate {0} && phased plan {1} && phased run {1}", path.display(), name);
    exit::OK
}

/// A built-in type's text as the type `name`: its `name:` line says so.
fn renamed(text: &str, name: &str) -> String {
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("name: ") {
            Some(_) if !done => {
                done = true;
                format!("name: {name}")
            }
            _ => line.to_string(),
        })
        .collect();
    lines.join("\n") + "\n"
}

/// `text` whose first line points editors at the schema `init` writes beside the
/// pipelines folder (replacing the built-in's own line).
fn with_schema_line(text: &str) -> String {
    let line = format!("# yaml-language-server: $schema={SCHEMA_FROM_PIPELINES}");
    match text.split_once('\n') {
        Some((first, rest)) if first.starts_with("# yaml-language-server:") => format!("{line}\n{rest}"),
        _ => format!("{line}\n{text}"),
    }
}

/// Writes what `phased schema` prints where the `$schema` lines point, unless a file
/// is there; an older one is left alone, with how to update it.
fn write_schema(pipelines: &Path) {
    // `pipelines/../schemas/...` as the user would write it: `schemas/...`.
    let path = match (pipelines.file_name(), pipelines.parent()) {
        (Some(_), Some(parent)) => parent.join("schemas/pipeline.schema.json"),
        _ => pipelines.join(SCHEMA_FROM_PIPELINES),
    };
    let schema = crate::schema::pipeline_schema_json() + "\n";
    match std::fs::read_to_string(&path) {
        Ok(old) if old == schema => {}
        Ok(_) => crate::reporter::note_line(format_args!(
            "note: `{0}` is not this version's schema: `phased schema > {0}` updates it",
            path.display()
        )),
        Err(_) => {
            let written =
                path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, schema));
            match written {
                Ok(()) => println!("wrote {} (for editors: `phased schema` prints it)", path.display()),
                Err(e) => crate::reporter::err_line(format_args!("warning: cannot write `{}`: {e}", path.display())),
            }
        }
    }
}
