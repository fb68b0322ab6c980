//! `release.switch`: makes a complete release live by pointing a symlink at it, in
//! one atomic step (a new link renamed over the old one: never remove-then-create),
//! then keeps the last `keep` complete releases, never deleting the live one.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::files_copy::MARKER;
use super::fsutil::remove_tree;
use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, ActionOutputs, Outputs};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchParams {
    /// The release folder to make live (it must hold the completion marker).
    pub release: String,
    /// The live link, for instance `/srv/site/current`.
    pub link: String,
    /// How many complete releases to keep in the release's folder (the live one always stays).
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1))]
    pub keep: u32,
}

fn default_keep() -> u32 {
    5
}

impl SwitchParams {
    pub fn check(&self) -> Result<(), String> {
        if self.keep == 0 {
            return Err("`keep` must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Switched {
    pub previous: Option<PathBuf>,
    pub removed: Vec<PathBuf>,
}

/// Points `link` at `release` atomically, then prunes old releases.
pub fn switch(params: &SwitchParams) -> Result<Switched, String> {
    let release = std::path::absolute(&params.release).map_err(|e| e.to_string())?;
    if !release.join(MARKER).is_file() {
        return Err(format!(
            "`{}` is not a complete release (no `{MARKER}`); refusing to make it live",
            release.display()
        ));
    }
    let link = Path::new(&params.link);
    let previous = match std::fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::read_link(link).ok(),
        Ok(_) => return Err(format!("`{}` exists and is not a symlink; refusing to replace it", link.display())),
        Err(_) => None,
    };
    let parent = link.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    let name = link.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "current".into());
    // A switch killed between making its new link and renaming it left that link.
    let stale = format!(".{name}.new-");
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&stale) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let fresh = parent.join(format!(".{name}.new-{}", uuid::Uuid::new_v4().simple()));
    std::os::unix::fs::symlink(&release, &fresh)
        .map_err(|e| format!("cannot create a link in `{}`: {e}", parent.display()))?;
    crate::crash::point("release.switch: the new link made, not renamed yet");
    if let Err(e) = std::fs::rename(&fresh, link) {
        let _ = std::fs::remove_file(&fresh);
        return Err(format!("cannot switch `{}`: {e}", link.display()));
    }
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
    let removed = prune(&release, params.keep as usize);
    Ok(Switched { previous, removed })
}

/// Deletes complete releases beyond the newest `keep` beside `live`, never `live`.
fn prune(live: &Path, keep: usize) -> Vec<PathBuf> {
    let Some(dir) = live.parent() else { return Vec::new() };
    let mut complete: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(MARKER).is_file())
        .map(|p| (std::fs::metadata(p.join(MARKER)).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), p))
        .collect();
    complete.sort();
    complete.reverse();
    let mut removed = Vec::new();
    for (_, path) in complete.into_iter().skip(keep) {
        if path != live {
            remove_tree(&path);
            removed.push(path);
        }
    }
    removed
}

fn run(ctx: ActionCtx, params: SwitchParams) -> ActionFuture {
    Box::pin(async move {
        let link = params.link.clone();
        let release = params.release.clone();
        let done = tokio::task::spawn_blocking(move || switch(&params))
            .await
            .map_err(|e| ActionError::new(format!("switch stopped: {e}")))?
            .map_err(ActionError::new)?;
        for path in &done.removed {
            ctx.log.line(&format!("removed old release {}", path.display()));
        }
        let mut out = ActionOutputs::new();
        out.insert("link".into(), link.into());
        out.insert("release".into(), release.into());
        out.insert("previous".into(), done.previous.map(|p| p.display().to_string()).unwrap_or_default().into());
        Ok(out)
    })
}

action_spec!(
    SwitchParams,
    name: "release.switch",
    summary: "Make a release live by switching a symlink atomically; keep the last N releases.",
    outputs: Outputs::Fixed(&["link", "release", "previous"]),
    example: "release: /srv/site/releases/0001\nlink: /srv/site/current\nkeep: 3",
    run: run,
    writes: |p: &SwitchParams| vec![PathBuf::from(&p.link)],
);
