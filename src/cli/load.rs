//! Finding the pipeline a command names: a path to a file, or a deployment-type name
//! in `--pipelines DIR` and then in the built-in catalog; then compiling it.

use std::path::Path;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::cli::{CatalogArgs, color_stdout};
use crate::compiler::Compiler;
use crate::plan::Plan;
use crate::report;
use crate::source::Source;

pub enum LoadError {
    /// Printed already (diagnostics); the pipeline is invalid.
    Invalid,
    /// The command could not run.
    Usage(String, Option<String>),
}

/// Loads and compiles `pipeline`, printing warnings and errors to stderr.
pub fn load(pipeline: &str, args: &CatalogArgs) -> Result<Arc<Plan>, LoadError> {
    let as_path = Path::new(pipeline);
    let (catalog, source) =
        if as_path.is_file() {
            let text = std::fs::read_to_string(as_path)
                .map_err(|e| LoadError::Usage(format!("cannot read `{pipeline}`: {e}"), None))?;
            let root = if as_path.starts_with(&args.pipelines) {
                args.pipelines.clone()
            } else {
                as_path.parent().map_or_else(|| ".".into(), Path::to_path_buf)
            };
            (Catalog::new().with_dir(&root).with_builtin(), Source::new(pipeline, text))
        } else {
            let catalog = Catalog::new().with_dir(&args.pipelines).with_builtin();
            let Some(source) = catalog.get(pipeline) else {
                let names = catalog.names();
                let hint = crate::suggest::hint(pipeline, names.iter().map(String::as_str));
                return Err(LoadError::Usage(
                    format!("no pipeline file or deployment type named `{pipeline}`"),
                    Some(hint.unwrap_or_else(|| {
                        format!("looked in `{}` and the built-in catalog", args.pipelines.display())
                    })),
                ));
            };
            (catalog, source)
        };
    let mut compiler = Compiler::new(&catalog);
    let plan = compiler.compile(&source);
    for d in compiler.diagnostics() {
        eprintln!("{}", report::human(&d, color_stdout()));
    }
    plan.ok_or(LoadError::Invalid)
}
