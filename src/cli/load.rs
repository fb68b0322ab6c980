//! Finding the pipeline a command names: a path to a file, or a deployment-type name
//! in `--pipelines DIR` and then in the built-in catalog; then compiling it.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::catalog::Catalog;
use crate::cli::{CatalogArgs, color_stdout, exit, inputs, usage_error};
use crate::compiler::Compiler;
use crate::plan::Plan;
use crate::report;
use crate::source::Source;

pub(super) enum LoadError {
    /// Printed already (diagnostics); the pipeline is invalid.
    Invalid,
    /// The command could not run.
    Usage(String, Option<String>),
}

/// Loads and compiles `pipeline`, printing warnings and errors to stderr.
pub(super) fn load(pipeline: &str, args: &CatalogArgs) -> Result<Arc<Plan>, LoadError> {
    let (catalog, source) = find(pipeline, args)?;
    let mut compiler = Compiler::new(&catalog);
    let plan = compiler.compile(&source);
    for d in compiler.diagnostics() {
        eprintln!("{}", report::human(&d, color_stdout()));
    }
    plan.ok_or(LoadError::Invalid)
}

/// [`load`] without a word: `None` for what cannot be found or does not compile
/// (`status` asks whether a run's pipeline changed on disk, and says nothing of it).
pub(super) fn load_quietly(pipeline: &str, args: &CatalogArgs) -> Option<Arc<Plan>> {
    let (catalog, source) = find(pipeline, args).ok()?;
    Compiler::new(&catalog).compile(&source)
}

/// The catalog `pipeline` is compiled against, and its file.
fn find(pipeline: &str, args: &CatalogArgs) -> Result<(Catalog, Arc<Source>), LoadError> {
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
    Ok((catalog, source))
}

/// Resolves given inputs against a pipeline's declarations, printing every problem.
pub(super) fn resolve_inputs(plan: &Plan, given: &Map<String, Value>) -> Option<Map<String, Value>> {
    match crate::compiler::inputs::resolve(&plan.inputs, given) {
        Ok(resolved) => Some(resolved),
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {}", p.message);
                if let Some(help) = &p.help {
                    eprintln!("  help: {help}");
                }
            }
            None
        }
    }
}

/// What `plan`, `run` and `watch` start from.
pub(super) struct Loaded {
    pub plan: Arc<Plan>,
    /// The inputs as given (`--inputs FILE`, then `-i`).
    pub given: Map<String, Value>,
    /// The inputs checked against the pipeline, defaults filled in.
    pub resolved: Map<String, Value>,
}

/// Loads the pipeline and its inputs; any problem is printed and becomes the exit code.
pub(super) fn load_with_inputs(
    pipeline: &str,
    catalog: &CatalogArgs,
    inputs_file: Option<&Path>,
    pairs: &[String],
) -> Result<Loaded, u8> {
    let plan = match load(pipeline, catalog) {
        Ok(plan) => plan,
        Err(LoadError::Invalid) => return Err(exit::USAGE),
        Err(LoadError::Usage(message, help)) => return Err(usage_error(message, help.as_deref())),
    };
    let given = inputs::collect(inputs_file, pairs, &plan.inputs).map_err(|message| usage_error(message, None))?;
    let resolved = resolve_inputs(&plan, &given).ok_or(exit::USAGE)?;
    Ok(Loaded { plan, given, resolved })
}
