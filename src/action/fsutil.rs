//! File-system helpers shared by the actions that write trees (`archive.extract`,
//! `content.write`, `files.copy`): paths that cannot leave their target, links that
//! stay inside, and replacing a folder in one atomic step.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The outputs of an action that wrote a tree: `path`, `files`, `bytes`.
pub(super) fn tree_outputs(path: String, files: u64, bytes: u64) -> super::ActionOutputs {
    let mut out = super::ActionOutputs::new();
    out.insert("path".into(), path.into());
    out.insert("files".into(), files.into());
    out.insert("bytes".into(), bytes.into());
    out
}

/// A path from an archive or a parameter, made relative and clean; `Err` when it is
/// absolute or climbs out with `..`.
pub(super) fn safe_relative(name: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("climbs out of the target with `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path".into()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("is empty".into());
    }
    Ok(out)
}

/// Whether a symlink at `entry` (relative to the root) pointing at `target` resolves
/// inside the root, judged on the text alone (no file is looked at).
pub(super) fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = entry.parent().map_or(0, |p| p.components().count() as i64);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            _ => return false,
        }
    }
    true
}

/// Creates the parent folders of `root/relative`, refusing to go through a symlink
/// (an archive could otherwise plant a link and then write through it).
pub(super) fn prepare_parent(root: &Path, relative: &Path) -> Result<PathBuf, String> {
    let mut at = root.to_path_buf();
    if let Some(parent) = relative.parent() {
        for part in parent.components() {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(format!(
                        "goes through the symlink `{}`",
                        at.strip_prefix(root).unwrap_or(&at).display()
                    ));
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(format!("needs `{}` to be a folder, but it is a file", at.display())),
                Err(_) => std::fs::create_dir(&at).map_err(|e| format!("cannot create `{}`: {e}", at.display()))?,
            }
        }
    }
    Ok(root.join(relative))
}

/// Writes a file so that readers see the old content or the new, never part of it: the
/// data goes to a hidden file beside it, which is renamed over it. The folder is
/// created if needed.
pub(super) fn write_file_atomically(path: &Path, data: &[u8]) -> Result<(), String> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    // The content reaches the disk before the rename, and the rename before we return:
    // after a power loss the file holds the old content or the new, never nothing.
    let written = write_synced(&tmp, data)
        .inspect(|()| crate::crash::point("a file written beside its place, not renamed yet"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| sync_dir(parent));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write `{}`: {e}", path.display())
    })
}

/// Writes `data` to a new file at `path` and flushes it to the disk.
pub(super) fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Flushes a folder's entries (a rename or a new file in it) to the disk.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A new empty folder beside `target`, on the same file system, for building the new
/// content before it replaces `target` in one step.
pub(super) fn staging_dir(target: &Path) -> Result<PathBuf, String> {
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "target".into());
    let staging = parent.join(format!(".{name}.partial-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&staging).map_err(|e| format!("cannot create `{}`: {e}", staging.display()))?;
    Ok(staging)
}

/// Puts `staging` in place of `target` atomically (an exchange when `target` exists),
/// then removes the old content. Readers see the old or the new tree, never a mix.
#[expect(unsafe_code, reason = "renameat2 (an atomic exchange of two paths) has no safe wrapper")]
pub(super) fn replace_dir(staging: &Path, target: &Path) -> Result<(), String> {
    let exists = std::fs::symlink_metadata(target).is_ok();
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let synced = |()| sync_dir(parent).map_err(|e| format!("cannot flush `{}`: {e}", parent.display()));
    if !exists {
        return std::fs::rename(staging, target)
            .map_err(|e| format!("cannot move into `{}`: {e}", target.display()))
            .and_then(synced);
    }
    let a = CString::new(staging.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let b = CString::new(target.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: two valid C strings; renameat2 only reads them.
    let done =
        unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if done != 0 {
        return Err(format!("cannot replace `{}`: {}", target.display(), std::io::Error::last_os_error()));
    }
    synced(())?;
    // `staging` now holds the old content.
    remove_tree(staging);
    Ok(())
}

/// Removes a file, link or folder tree; best effort.
pub(super) fn remove_tree(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => drop(std::fs::remove_dir_all(path)),
        Ok(_) => drop(std::fs::remove_file(path)),
        Err(_) => {}
    }
}

/// Removes staging folders of `target` left by an interrupted attempt.
pub(super) fn remove_stale_staging(target: &Path) {
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let prefix = format!(".{name}.partial-");
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            remove_tree(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_only() {
        assert_eq!(safe_relative(Path::new("./a/b")).unwrap(), PathBuf::from("a/b"));
        assert!(safe_relative(Path::new("a/../../b")).is_err());
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
        assert!(safe_relative(Path::new(".")).is_err());
    }

    #[test]
    fn links_must_resolve_inside() {
        assert!(link_stays_inside(Path::new("a/link"), Path::new("../b")));
        assert!(!link_stays_inside(Path::new("a/link"), Path::new("../../b")));
        assert!(!link_stays_inside(Path::new("link"), Path::new("/etc")));
        assert!(link_stays_inside(Path::new("link"), Path::new("sub/x")));
    }

    #[test]
    fn replacing_a_folder_swaps_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("site");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("old"), "1").unwrap();
        let staging = staging_dir(&target).unwrap();
        std::fs::write(staging.join("new"), "2").unwrap();
        replace_dir(&staging, &target).unwrap();
        assert!(target.join("new").exists() && !target.join("old").exists());
        assert!(!staging.exists(), "the old content is gone");
    }
}
