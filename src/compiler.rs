//! From a [`RawPipeline`] to a [`Plan`], collecting every problem. Pure: it reads only
//! the catalog already loaded in memory (no filesystem, network, clock or Docker).

mod blocks;
mod checks;
mod foreach;
mod graph;
mod injection;
pub mod inputs;
mod node;
mod pipeline;
mod scope;

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::diagnostic::{self, Diagnostic, DiagnosticCode};
use crate::plan::Plan;
use crate::reader;
use crate::source::{Source, Span};
use crate::suggest;

pub use scope::{DEPLOYMENT_FIELDS, ERROR_FIELDS};

/// Compiles pipelines against a catalog, once each, remembering every diagnostic.
pub struct Compiler<'c> {
    catalog: &'c Catalog,
    compiled: HashMap<String, Option<Arc<Plan>>>,
    in_progress: Vec<String>,
    diagnostics: Vec<Diagnostic>,
}

enum Lookup {
    Found(Arc<Plan>),
    Missing,
    Invalid(String),
    Cycle,
}

impl<'c> Compiler<'c> {
    pub fn new(catalog: &'c Catalog) -> Self {
        Compiler { catalog, compiled: HashMap::new(), in_progress: Vec::new(), diagnostics: Vec::new() }
    }

    /// Compiles one file. `None` when it (or a sub-pipeline it uses) has errors.
    pub fn compile(&mut self, source: &Arc<Source>) -> Option<Arc<Plan>> {
        if let Some(done) = self.compiled.get(&source.name) {
            return done.clone();
        }
        self.in_progress.push(source.name.clone());
        let read = reader::read(source);
        let mut diagnostics = read.diagnostics;
        let had_errors = diagnostics.iter().any(Diagnostic::is_error);
        let plan = read.raw.and_then(|raw| self.compile_raw(source, &raw, &mut diagnostics));
        let ok = !had_errors && !diagnostics.iter().any(Diagnostic::is_error);
        let plan = if ok { plan.map(Arc::new) } else { None };
        self.diagnostics.extend(diagnostics);
        self.in_progress.pop();
        self.compiled.insert(source.name.clone(), plan.clone());
        plan
    }

    /// Every diagnostic found so far, in report order.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut all = self.diagnostics.clone();
        diagnostic::sort_and_dedup(&mut all);
        all
    }

    fn lookup(&mut self, name: &str) -> Lookup {
        let Some(source) = self.catalog.get(name) else { return Lookup::Missing };
        if self.in_progress.contains(&source.name) {
            return Lookup::Cycle;
        }
        match self.compile(&source) {
            Some(plan) => Lookup::Found(plan),
            None => Lookup::Invalid(source.name.clone()),
        }
    }

    /// Resolves a sub-pipeline name, reporting what is wrong with it at `span`.
    fn resolve(
        &mut self,
        source: &Arc<Source>,
        name: &str,
        span: Span,
        out: &mut Vec<Diagnostic>,
    ) -> Option<Arc<Plan>> {
        match self.lookup(name) {
            Lookup::Found(plan) => Some(plan),
            Lookup::Missing => {
                let names = self.catalog.names();
                out.push(
                    Diagnostic::error(
                        DiagnosticCode::MissingPipeline,
                        source,
                        span,
                        format!("no pipeline named `{name}`"),
                    )
                    .with_help(match suggest::closest(name, names.iter().map(String::as_str)) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => "a sub-pipeline is named by its path in the pipelines folder, without `.yaml`".into(),
                    }),
                );
                None
            }
            Lookup::Invalid(file) => {
                out.push(
                    Diagnostic::error(
                        DiagnosticCode::InvalidSubPipeline,
                        source,
                        span,
                        format!("sub-pipeline `{name}` has errors"),
                    )
                    .with_help(format!("see the errors reported for `{file}`")),
                );
                None
            }
            Lookup::Cycle => {
                out.push(Diagnostic::error(
                    DiagnosticCode::PipelineCycle,
                    source,
                    span,
                    format!("sub-pipeline `{name}` includes this pipeline again"),
                ));
                None
            }
        }
    }
}
