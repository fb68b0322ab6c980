//! The pipeline files a run started with. A run keeps them (deduplicated by hash) so
//! that `resume` runs exactly what was started, even if the files changed since.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::compiler::Compiler;
use crate::diagnostic::Diagnostic;
use crate::plan::walk::{self, Inside};
use crate::plan::{NodeKind, Plan};
use crate::source::Source;

/// The key of the root file among a snapshot's files.
pub const ROOT: &str = "$root";

pub struct Snapshot {
    /// Catalog name (or `$root`) -> the file as it was.
    pub files: BTreeMap<String, Arc<Source>>,
    pub hash: String,
}

impl Snapshot {
    /// Every file `plan` was compiled from: its own and its sub-pipelines'.
    pub fn of(plan: &Plan) -> Snapshot {
        Snapshot::from_files(Snapshot::files_of(plan))
    }

    /// The files of [`Snapshot::of`], without hashing them.
    pub fn files_of(plan: &Plan) -> BTreeMap<String, Arc<Source>> {
        let mut files = BTreeMap::new();
        files.insert(ROOT.to_string(), Arc::clone(&plan.source));
        collect(plan, &mut files);
        files
    }

    fn from_files(files: BTreeMap<String, Arc<Source>>) -> Snapshot {
        let mut hasher = Sha256::new();
        for (name, source) in &files {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(source.text.as_bytes());
            hasher.update([0]);
        }
        let hash = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Snapshot { files, hash }
    }

    pub fn to_json(&self) -> Value {
        Value::Object(
            self.files.iter().map(|(name, s)| (name.clone(), json!({"path": s.name, "text": s.text}))).collect(),
        )
    }

    pub fn from_json(files: &Value) -> Snapshot {
        let files = files
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(name, file)| {
                        let path = file["path"].as_str().unwrap_or(name);
                        let text = file["text"].as_str().unwrap_or_default();
                        (name.clone(), Source::new(path, text))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Snapshot::from_files(files)
    }

    /// Compiles the snapshot's root against the snapshot's own files only.
    pub fn compile(&self) -> Result<Arc<Plan>, Vec<Diagnostic>> {
        let catalog = Catalog::new()
            .with_sources(self.files.iter().filter(|(k, _)| *k != ROOT).map(|(k, v)| (k.clone(), Arc::clone(v))));
        let root = self.files.get(ROOT).cloned().unwrap_or_else(|| Source::new("<missing>", ""));
        let mut compiler = Compiler::new(&catalog);
        compiler.compile(&root).ok_or_else(|| compiler.diagnostics())
    }
}

/// Adds the files of the pipelines `plan` runs: its rollback pipeline and every
/// alternative of every sub-pipeline, theirs too, each once (by name).
fn collect(plan: &Plan, files: &mut BTreeMap<String, Arc<Source>>) {
    rollback(plan, files);
    walk::each(plan, |at| {
        let NodeKind::Pipeline(sub) = &at.node.kind else { return Inside::Nothing };
        // Every alternative; the walk goes into those not met before.
        let mut new = Vec::new();
        for (name, child) in sub.named() {
            if !files.contains_key(name) {
                files.insert(name.to_string(), Arc::clone(&child.source));
                rollback(child, files);
                new.push(Arc::clone(child));
            }
        }
        Inside::Pipelines(new)
    });
}

/// The rollback pipeline too: a release is rolled back the way it was deployed.
fn rollback(plan: &Plan, files: &mut BTreeMap<String, Arc<Source>>) {
    if let Some((name, rollback)) = &plan.rollback
        && !files.contains_key(name)
    {
        files.insert(name.clone(), Arc::clone(&rollback.source));
        collect(rollback, files);
    }
}
