//! Finding the pipeline a command names (a path to a file, or a deployment-type name in
//! `--pipelines DIR` and then in the built-in catalog) through [`crate::app`], and
//! saying what it compiled with.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::app::{Given, Pipelines};
use crate::cli::failed::print_diagnostics;
use crate::cli::{CatalogArgs, failed, inputs, usage_error};
use crate::plan::Plan;

/// The pipelines the command looks in.
pub(super) fn pipelines(args: &CatalogArgs) -> Pipelines {
    Pipelines::new(&args.pipelines)
}

/// Loads and compiles `pipeline`, printing warnings and errors to stderr; a problem
/// becomes the exit code.
pub(super) fn load(pipeline: &str, args: &CatalogArgs) -> Result<Arc<Plan>, u8> {
    match pipelines(args).load(pipeline) {
        Ok(loaded) => {
            print_diagnostics(&loaded.warnings);
            Ok(loaded.plan)
        }
        Err(e) => Err(failed(e, Path::new(""))),
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

/// Resolves given inputs against a pipeline's declarations, printing every problem.
pub(super) fn resolve_inputs(plan: &Arc<Plan>, given: &Map<String, Value>) -> Result<Map<String, Value>, u8> {
    crate::app::pipelines::resolve(plan, Given::Values(given)).map_err(|e| failed(e, Path::new("")))
}

/// Loads the pipeline and its inputs; any problem is printed and becomes the exit code.
pub(super) fn load_with_inputs(
    pipeline: &str,
    catalog: &CatalogArgs,
    inputs_file: Option<&Path>,
    pairs: &[String],
) -> Result<Loaded, u8> {
    let plan = load(pipeline, catalog)?;
    let given = inputs::collect(inputs_file, pairs, &plan.inputs).map_err(|message| usage_error(message, None))?;
    let resolved = resolve_inputs(&plan, &given)?;
    Ok(Loaded { plan, given, resolved })
}
