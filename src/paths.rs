//! Paths compared as the user means them, whether or not they exist yet; the `--db`
//! that is a PostgreSQL URL instead of a file; and the files and folders of phased's
//! own, made for its user only.

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

/// Creates a folder of phased's own (the database's, node logs, work folders) and the
/// parents it lacks, 0700 whatever the umask: logs and step outputs may hold what no
/// other user should read. The umask itself is left alone: steps inherit it, and the
/// release folders they write must stay readable by a web server.
pub(crate) fn private_dir_all(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// Opens a file of phased's own for appending, creating it 0600 whatever the umask.
pub(crate) fn private_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// Takes group and other access away from an existing file or folder of phased's own
/// (made by an older version, or by hand). What is missing, a symbolic link, or not this
/// user's to change (a read-only file system) is left as it is.
pub(crate) fn make_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_symlink()
        && meta.permissions().mode() & 0o077 != 0
    {
        let mode = meta.permissions().mode() & 0o7700;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
}

/// Whether `--db` names a PostgreSQL database rather than a SQLite file.
pub(crate) fn is_database_url(db: &Path) -> bool {
    let text = db.as_os_str().to_string_lossy();
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The URL without its password (in the user part, or as `password=` among its
/// parameters), to be shown.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => format!("{}@{host}", user.split_once(':').map_or(user, |(name, _)| name)),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query.split('&').filter(|p| !p.starts_with("password=")).collect();
            if kept.is_empty() { path.to_string() } else { format!("{path}?{}", kept.join("&")) }
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::redact_url as redact;

    #[test]
    fn a_password_is_never_shown() {
        assert_eq!(redact("postgres://ops:s3cret@db.internal:5432/phased"), "postgres://ops@db.internal:5432/phased");
        assert_eq!(redact("postgres://ops@db/phased?sslmode=require"), "postgres://ops@db/phased?sslmode=require");
        assert_eq!(redact("postgresql://db/phased"), "postgresql://db/phased");
        assert_eq!(redact("postgres://a:b@c@h/d"), "postgres://a@h/d");
        assert_eq!(
            redact("postgres://ops@db/phased?password=s3cret&sslmode=require"),
            "postgres://ops@db/phased?sslmode=require"
        );
        assert_eq!(redact("postgres://db/phased?password=s3cret"), "postgres://db/phased");
    }
}
