//! `phased init [TYPE]`: a starter deployment type that validates and runs as written,
//! commented for a first read; or a copy of a built-in type to customise. Nothing is
//! overwritten without `--force`.

use std::path::PathBuf;

use crate::catalog::Catalog;
use crate::cli::{exit, usage_error};
use crate::compiler::Compiler;
use crate::diagnostic::Diagnostic;
use crate::source::Source;

#[derive(clap::Args, Debug)]
pub(super) struct InitArgs {
    /// A built-in type to copy (`static`, `docker`, `nodejs`); without it, a starter.
    r#type: Option<String>,
    /// The new type's name (its file is `<pipelines>/<name>.yaml`).
    #[arg(long, default_value = "my-app")]
    name: String,
    /// The folder of pipeline files.
    #[arg(long, value_name = "DIR", default_value = "pipelines", env = "PHASED_PIPELINES")]
    pipelines: PathBuf,
    /// Replace a file that is already there.
    #[arg(long)]
    force: bool,
}

const STARTER: &str = include_str!("templates/starter.yaml");

pub(super) fn init(args: InitArgs) -> u8 {
    if !crate::names::is_identifier(&args.name.replace('-', "_")) {
        return usage_error(
            format!("`{}` is not a type name", args.name),
            Some("use lowercase letters, digits, `-` and `_`"),
        );
    }
    let (name, text) = match &args.r#type {
        None => (args.name.clone(), STARTER.replace("NAME", &args.name)),
        Some(builtin) => match Catalog::new().with_builtin().get(builtin) {
            Some(source) => (builtin.clone(), source.text.clone()),
            None => {
                let catalog = Catalog::new().with_builtin();
                let names = catalog.names();
                let hint = crate::suggest::hint(builtin, names.iter().map(String::as_str));
                return usage_error(format!("no built-in type `{builtin}`"), hint.as_deref());
            }
        },
    };
    let path = args.pipelines.join(format!("{name}.yaml"));
    if path.exists() && !args.force {
        return usage_error(format!("`{}` exists already", path.display()), Some("pass --force to replace it"));
    }
    // What is written must validate: checked before it is written.
    let catalog = Catalog::new().with_dir(&args.pipelines).with_builtin();
    let source = Source::new(path.display().to_string(), text.clone());
    let mut compiler = Compiler::new(&catalog);
    if compiler.compile(&source).is_none() {
        let problems: Vec<String> =
            compiler.diagnostics().iter().filter(|d| d.is_error()).map(Diagnostic::to_string).collect();
        return usage_error(format!("the starter does not validate: {}", problems.join("; ")), None);
    }
    if let Err(e) = std::fs::create_dir_all(&args.pipelines).and_then(|()| std::fs::write(&path, text)) {
        return usage_error(format!("cannot write `{}`: {e}", path.display()), None);
    }
    println!("wrote {}", path.display());
    if crate::reporter::quiet() {
        return exit::OK;
    }
    println!("next: phased validate {0} && phased plan {1} && phased run {1}", path.display(), name);
    exit::OK
}
