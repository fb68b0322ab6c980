//! Paths compared as the user means them, whether or not they exist yet.

use std::path::{Component, Path, PathBuf};

/// An absolute path with `.` and `..` resolved lexically (the path may not exist).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
