//! Finding a pipeline and compiling it: the one place a catalog (the `--pipelines`
//! folder, then the built-in types) and a compiler are set up. What a run starts from
//! is a [`Loaded`] plan with its inputs resolved, or, for a caller that is not the
//! operator, an [`Admitted`] one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::Error;
use crate::admit::{Caller, Roots};
use crate::catalog::Catalog;
use crate::compiler::Compiler;
use crate::diagnostic::Diagnostic;
use crate::plan::Plan;
use crate::source::Source;

pub(crate) use crate::catalog::yaml_files;
pub(crate) use crate::compiler::inputs::InputProblem;

/// The folder of pipeline files looked up by name (`--pipelines`), then the built-in
/// catalog.
#[derive(Clone, Debug)]
pub(crate) struct Pipelines {
    dir: PathBuf,
}

/// A pipeline compiled, with the warnings it compiled with.
pub(crate) struct Loaded {
    pub(crate) plan: Arc<Plan>,
    pub(crate) warnings: Vec<Diagnostic>,
}

/// A pipeline compiled, and the inputs a caller may give it (defaults filled in).
pub(crate) type Admitted = (Arc<Plan>, Map<String, Value>);

/// Inputs as a front end received them.
pub(crate) enum Given<'a> {
    /// Values (`-i`, `--inputs FILE`, a trigger's, a JSON object read whole).
    Values(&'a Map<String, Value>),
    /// Each value as its JSON text: a number for a string input keeps how it was written.
    Json(&'a IndexMap<String, Box<RawValue>>),
}

impl Pipelines {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Pipelines { dir: dir.into() }
    }

    /// The catalog pipelines are looked up in: the folder, then the built-in types.
    pub(crate) fn catalog(&self) -> Catalog {
        catalog_of(&self.dir)
    }

    /// `pipeline`: a path to a file, else a deployment type in the folder or built in.
    pub(crate) fn load(&self, pipeline: &str) -> Result<Loaded, Error> {
        let as_path = Path::new(pipeline);
        if !as_path.is_file() {
            return self.load_named(pipeline);
        }
        let text = std::fs::read_to_string(as_path)
            .map_err(|e| Error::Unreadable { path: pipeline.to_string(), error: e.to_string() })?;
        let root = if as_path.starts_with(&self.dir) {
            self.dir.clone()
        } else {
            as_path.parent().map_or_else(|| ".".into(), Path::to_path_buf)
        };
        compile(&catalog_of(&root), &Source::new(pipeline, text), pipeline)
    }

    /// The deployment type `name`, in the folder or built in (not a path).
    pub(crate) fn load_named(&self, name: &str) -> Result<Loaded, Error> {
        let catalog = self.catalog();
        let Some(source) = catalog.get(name) else {
            let names = catalog.names();
            let hint = crate::suggest::hint(name, names.iter().map(String::as_str));
            return Err(Error::NoPipeline { name: name.to_string(), hint, looked_in: self.dir.clone() });
        };
        compile(&catalog, &source, name)
    }

    /// [`Self::load`] without a word: `None` for what cannot be found or does not
    /// compile.
    pub(crate) fn load_quietly(&self, pipeline: &str) -> Option<Arc<Plan>> {
        self.load(pipeline).ok().map(|loaded| loaded.plan)
    }

    /// The deployment type `name` compiled and `given` checked as a run from this
    /// caller is checked: the declared types, patterns and choices, then what the
    /// caller may give ([`crate::admit`]).
    pub(crate) fn admit(&self, name: &str, given: Given<'_>, caller: Caller, roots: &Roots) -> Result<Admitted, Error> {
        let plan = self.load_named(name)?.plan;
        let names: Vec<String> = match given {
            Given::Values(values) => values.keys().cloned().collect(),
            Given::Json(values) => values.keys().cloned().collect(),
        };
        let inputs = resolve(&plan, given)?;
        let refused = crate::admit::check(&plan, &inputs, &names, caller, roots);
        if !refused.is_empty() {
            return Err(Error::Forbidden(refused));
        }
        Ok((plan, inputs))
    }

    /// The deployment types (with `all`, the building blocks in folders too) that
    /// compile, by name.
    pub(crate) fn types(&self, all: bool) -> Vec<(String, Arc<Plan>)> {
        let catalog = self.catalog();
        let mut out = Vec::new();
        // A file in a folder (`sources/git`, `docker/host`, `static/rollback`) is a
        // building block other pipelines use; the types one deploys are at the top.
        for name in catalog.names().into_iter().filter(|name| all || !name.contains('/')) {
            let Some(source) = catalog.get(&name) else { continue };
            let Some(plan) = Compiler::new(&catalog).compile(&source) else { continue };
            out.push((name, plan));
        }
        out
    }
}

/// The catalog of a folder of pipeline files, then the built-in types.
fn catalog_of(dir: &Path) -> Catalog {
    Catalog::new().with_dir(dir).with_builtin()
}

fn compile(catalog: &Catalog, source: &Arc<Source>, name: &str) -> Result<Loaded, Error> {
    let mut compiler = Compiler::new(catalog);
    let plan = compiler.compile(source);
    let diagnostics = compiler.diagnostics();
    match plan {
        Some(plan) => Ok(Loaded { plan, warnings: diagnostics }),
        None => Err(Error::Invalid { name: name.to_string(), diagnostics }),
    }
}

/// `given` checked against `plan`'s declared inputs, defaults filled in.
pub(crate) fn resolve(plan: &Arc<Plan>, given: Given<'_>) -> Result<Map<String, Value>, Error> {
    let values = match given {
        Given::Values(values) => std::borrow::Cow::Borrowed(values),
        Given::Json(raw) => {
            std::borrow::Cow::Owned(crate::compiler::inputs::from_json(&plan.inputs, raw).map_err(Error::InputShape)?)
        }
    };
    crate::compiler::inputs::resolve(&plan.inputs, &values)
        .map_err(|problems| Error::Inputs { plan: Arc::clone(plan), problems })
}

/// The built-in deployment type `name`'s text, or a close name when there is none.
pub(crate) fn builtin(name: &str) -> Result<String, Option<String>> {
    let catalog = Catalog::new().with_builtin();
    match catalog.get(name) {
        Some(source) => Ok(source.text.clone()),
        None => {
            let names = catalog.names();
            Err(crate::suggest::hint(name, names.iter().map(String::as_str)))
        }
    }
}

/// Whether a built-in deployment type of this name exists.
pub(crate) fn is_builtin(name: &str) -> bool {
    Catalog::new().with_builtin().get(name).is_some()
}

/// The errors of `source` (a file to be written to `dir`) compiled against the
/// catalog of `dir`: empty when it compiles.
pub(crate) fn errors_of(dir: &Path, source: &Arc<Source>) -> Vec<Diagnostic> {
    let catalog = catalog_of(dir);
    let mut compiler = Compiler::new(&catalog);
    if compiler.compile(source).is_some() {
        return Vec::new();
    }
    compiler.diagnostics().into_iter().filter(Diagnostic::is_error).collect()
}

/// Each file that compiled with its plan, and every diagnostic.
pub(crate) type Checked = (Vec<(Arc<Source>, Arc<Plan>)>, Vec<Diagnostic>);

/// `validate`: each of `sources` compiled against the catalog of `root` (one compiler:
/// a sub-pipeline is checked once), the plans that compiled, by source, and every
/// diagnostic.
pub(crate) fn check(root: &Path, sources: &[Arc<Source>]) -> Checked {
    let catalog = catalog_of(root);
    let mut compiler = Compiler::new(&catalog);
    let plans = sources.iter().filter_map(|source| Some((Arc::clone(source), compiler.compile(source)?))).collect();
    (plans, compiler.diagnostics())
}
