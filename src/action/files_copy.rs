//! `files.copy`: copies a tree into a new folder (a release), with a completion
//! marker written last. The copy is built in a staging folder that replaces the
//! target in one step, so a release folder is either absent or complete. Symlinks
//! that point outside the source are refused (a web root must not expose the host),
//! and `.git` is left out by default.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::fsutil::{link_stays_inside, remove_stale_staging, remove_tree, replace_dir, staging_dir, tree_outputs};
use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, Outputs, ProgressReporter};

/// The file a complete release holds; `release.switch` refuses folders without it.
pub const MARKER: &str = ".phased-release";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyParams {
    /// The folder to copy.
    pub from: String,
    /// The new folder (for instance `releases/<deployment id>`); replaced if it exists.
    pub to: String,
    /// Names (files or folders, at any depth) to leave out; default `[.git]`.
    #[serde(default = "default_exclude")]
    pub exclude: Vec<String>,
}

fn default_exclude() -> Vec<String> {
    vec![".git".into()]
}

impl CopyParams {
    pub fn check(&self) -> Result<(), String> {
        if self.from.trim().is_empty() || self.to.trim().is_empty() {
            return Err("`from` and `to` must not be empty".into());
        }
        Ok(())
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
}

fn count(dir: &Path, exclude: &[String]) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if exclude.iter().any(|e| entry.file_name() == e.as_str()) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += count(&entry.path(), exclude),
            Ok(_) => total += 1,
            Err(_) => {}
        }
    }
    total
}

struct Copier<'a> {
    root: &'a Path,
    exclude: &'a [String],
    done: Copied,
    total: u64,
    progress: &'a ProgressReporter,
}

impl Copier<'_> {
    fn copy_dir(&mut self, from: &Path, to: &Path) -> Result<(), String> {
        let mut entries: Vec<_> = std::fs::read_dir(from)
            .map_err(|e| format!("cannot read `{}`: {e}", from.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot read `{}`: {e}", from.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            if self.exclude.iter().any(|e| name == e.as_str()) {
                continue;
            }
            let source = entry.path();
            let dest = to.join(&name);
            let relative = source.strip_prefix(self.root).unwrap_or(&source).to_path_buf();
            let kind = entry.file_type().map_err(|e| format!("`{}`: {e}", source.display()))?;
            if kind.is_dir() {
                std::fs::create_dir(&dest).map_err(|e| format!("cannot create `{}`: {e}", dest.display()))?;
                self.copy_dir(&source, &dest)?;
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&source).map_err(|e| format!("`{}`: {e}", source.display()))?;
                if !link_stays_inside(&relative, &target) {
                    return Err(format!(
                        "`{}` is a symlink to `{}`, outside the folder being copied; refused",
                        relative.display(),
                        target.display()
                    ));
                }
                std::os::unix::fs::symlink(&target, &dest).map_err(|e| format!("`{}`: {e}", dest.display()))?;
                self.step();
            } else if kind.is_file() {
                self.done.bytes +=
                    std::fs::copy(&source, &dest).map_err(|e| format!("cannot copy `{}`: {e}", relative.display()))?;
                self.step();
            } else {
                return Err(format!("`{}` is not a file, folder or symlink; refused", relative.display()));
            }
        }
        Ok(())
    }

    fn step(&mut self) {
        self.done.files += 1;
        if self.done.files == 1 {
            crate::crash::point("files.copy: the first file copied");
        }
        if self.total > 0 && self.done.files.is_multiple_of(64) {
            self.progress.report(self.done.files as f64 / self.total as f64);
        }
    }
}

/// Copies `from` into `to` (replacing it) and writes the completion marker last.
pub fn copy_release(params: &CopyParams, deployment: &str, progress: &ProgressReporter) -> Result<Copied, String> {
    let from = Path::new(&params.from);
    if !from.is_dir() {
        return Err(format!("`{}` is not a folder", from.display()));
    }
    let target = Path::new(&params.to);
    remove_stale_staging(target);
    let staging = staging_dir(target)?;
    let total = count(from, &params.exclude);
    let mut copier = Copier { root: from, exclude: &params.exclude, done: Copied::default(), total, progress };
    let result = copier.copy_dir(from, &staging).and_then(|()| {
        crate::crash::point("files.copy: copied, no marker yet");
        let marker = serde_json::json!({
            "deployment": deployment,
            "files": copier.done.files,
            "bytes": copier.done.bytes,
            "completed_at": crate::clock::now(),
        });
        // The marker, and the folder's entry for it, are on the disk before the swap.
        super::fsutil::write_synced(&staging.join(MARKER), marker.to_string().as_bytes())
            .and_then(|()| super::fsutil::sync_dir(&staging))
            .map_err(|e| format!("cannot write the release marker: {e}"))
    });
    match result {
        Ok(()) => {
            crate::crash::point("files.copy: marker written, not swapped in yet");
            replace_dir(&staging, target)?;
            Ok(copier.done)
        }
        Err(e) => {
            remove_tree(&staging);
            Err(e)
        }
    }
}

fn run(ctx: ActionCtx, params: CopyParams) -> ActionFuture {
    Box::pin(async move {
        let progress = ctx.progress.clone();
        let run_id = ctx.run_id.clone();
        let (done, to) =
            tokio::task::spawn_blocking(move || copy_release(&params, &run_id, &progress).map(|d| (d, params.to)))
                .await
                .map_err(|e| ActionError::new(format!("copy stopped: {e}")))?
                .map_err(ActionError::new)?;
        ctx.log.line(&format!("copied {} files, {} bytes into {to}", done.files, done.bytes));
        Ok(tree_outputs(to, done.files, done.bytes))
    })
}

action_spec!(
    CopyParams,
    name: "files.copy",
    summary: "Copy a folder into a new release folder, with a completion marker written last.",
    outputs: Outputs::Fixed(&["path", "files", "bytes"]),
    example: "from: /tmp/work/site\nto: /srv/site/releases/0001\nexclude: [.git, node_modules]",
    run: run,
    writes: |p: &CopyParams| vec![PathBuf::from(&p.to)],
);
