//! Where pipelines are found by name: a folder of YAML files (`--pipelines`, default
//! `./pipelines`), then the catalog compiled into the binary. A name is the file's
//! path relative to the folder, without `.yaml` (`static`, `sources/git`). A folder's
//! files are read only when a pipeline names them, and once.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use include_dir::{Dir, include_dir};

use crate::source::Source;

static BUILTIN: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/pipelines");

/// Pipelines by name, in layers searched in order.
#[derive(Default)]
pub struct Catalog {
    layers: Vec<Layer>,
}

enum Layer {
    /// Files are read when a name is first asked for, then remembered.
    Dir {
        root: PathBuf,
        cache: Mutex<HashMap<String, Option<Arc<Source>>>>,
    },
    Builtin(BTreeMap<String, Arc<Source>>),
}

impl Catalog {
    pub fn new() -> Self {
        Catalog::default()
    }

    /// Adds a folder: `name` is looked up as `DIR/name.yaml` (or `.yml`).
    pub fn with_dir(mut self, dir: &Path) -> Self {
        self.layers.push(Layer::Dir { root: dir.to_path_buf(), cache: Mutex::new(HashMap::new()) });
        self
    }

    /// Adds files held in memory (a run's snapshot), by name.
    pub fn with_sources(mut self, sources: impl IntoIterator<Item = (String, Arc<Source>)>) -> Self {
        self.layers.push(Layer::Builtin(sources.into_iter().collect()));
        self
    }

    /// Adds the catalog built into the binary.
    pub fn with_builtin(mut self) -> Self {
        let mut layer = BTreeMap::new();
        collect_builtin(&BUILTIN, &mut layer);
        self.layers.push(Layer::Builtin(layer));
        self
    }

    /// The pipeline called `name`, from the first layer that has it. Names that would
    /// leave the folder (`..`, absolute paths) are refused.
    pub fn get(&self, name: &str) -> Option<Arc<Source>> {
        let name = name.trim_end_matches(".yaml").trim_end_matches(".yml");
        if name.is_empty()
            || name.starts_with('/')
            || name.split(['/', '\\']).any(|part| part == ".." || part.is_empty())
        {
            return None;
        }
        self.layers.iter().find_map(|layer| match layer {
            Layer::Builtin(entries) => entries.get(name).cloned(),
            Layer::Dir { root, cache } => {
                let mut cache = cache.lock().expect("catalog cache lock");
                cache.entry(name.to_string()).or_insert_with(|| read_named(root, name)).clone()
            }
        })
    }

    /// Every name, first layer first, without repeats (for did-you-mean hints).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for layer in &self.layers {
            let layer_names: Vec<String> = match layer {
                Layer::Builtin(entries) => entries.keys().cloned().collect(),
                Layer::Dir { root, .. } => {
                    yaml_files(root).unwrap_or_default().iter().map(|p| name_of(root, p)).collect()
                }
            };
            for name in layer_names {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }
}

fn read_named(root: &Path, name: &str) -> Option<Arc<Source>> {
    ["yaml", "yml"].iter().find_map(|ext| {
        let path = root.join(format!("{name}.{ext}"));
        let text = std::fs::read_to_string(&path).ok()?;
        Some(Source::new(path.display().to_string(), text))
    })
}

fn collect_builtin(dir: &'static Dir<'static>, layer: &mut BTreeMap<String, Arc<Source>>) {
    for file in dir.files() {
        let path = file.path();
        if is_yaml(path)
            && let Some(text) = file.contents_utf8()
        {
            let name = path.with_extension("").to_string_lossy().replace('\\', "/");
            layer.insert(name, Source::new(format!("<builtin>/{}", path.display()), text));
        }
    }
    for sub in dir.dirs() {
        collect_builtin(sub, layer);
    }
}

/// A pipeline file: `*.yaml` or `*.yml`, except `*.inputs.yaml`, which by convention
/// holds inputs for `--inputs`.
fn is_yaml(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let inputs = name.ends_with(".inputs.yaml") || name.ends_with(".inputs.yml");
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) && !inputs
}

/// The name of `path` in the catalog rooted at `root`.
pub fn name_of(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative.with_extension("").to_string_lossy().replace('\\', "/")
}

/// Every YAML file below `dir`, sorted, skipping hidden folders.
pub fn yaml_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let entry = entry?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if entry.file_type()?.is_dir() {
                if !hidden {
                    pending.push(path);
                }
            } else if is_yaml(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}
