//! A build context as the tar stream the engine reads: the folder's files minus what
//! `.dockerignore` (and extra patterns) leave out, symlinks kept as links (never
//! followed, so nothing outside the folder is read), and the Dockerfile always sent,
//! even from outside the folder. Headers are deterministic (no owners, no times), so
//! two clones of the same commit hit the same build cache.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::DockerIgnore;

pub struct BuildContext {
    /// The folder sent to the engine.
    pub root: PathBuf,
    /// Patterns applied after `.dockerignore`.
    pub exclude: Vec<String>,
    /// The Dockerfile's name inside the context (the build's `dockerfile` option): its
    /// path under `root`, or a hidden name when it lives elsewhere (as the docker CLI
    /// does with `-f` outside the context).
    pub dockerfile_name: String,
    /// The Dockerfile, read once.
    dockerfile_text: Vec<u8>,
}

/// What was sent.
#[derive(Debug, Default)]
pub struct Packed {
    pub files: u64,
    pub bytes: u64,
}

impl BuildContext {
    /// `dockerfile` is relative to `root` (and must stay inside it, links followed: the
    /// source is the caller's, and may hold a link to any file), or an absolute path
    /// (a pipeline's own generated file).
    pub fn new(root: &Path, dockerfile: &Path, exclude: Vec<String>) -> Result<BuildContext, String> {
        let path = if dockerfile.is_absolute() { dockerfile.to_path_buf() } else { root.join(dockerfile) };
        let inside = std::fs::canonicalize(&path)
            .ok()
            .zip(std::fs::canonicalize(root).ok())
            .and_then(|(file, root)| file.strip_prefix(&root).ok().map(Path::to_path_buf));
        if !dockerfile.is_absolute() && inside.is_none() && path.exists() {
            return Err(format!(
                "the Dockerfile `{}` leads outside the source folder (through `..` or a symbolic link)",
                dockerfile.display()
            ));
        }
        let text = std::fs::read(&path).map_err(|e| format!("cannot read the Dockerfile `{}`: {e}", path.display()))?;
        let dockerfile_name = match inside {
            Some(rel) => rel.to_string_lossy().replace('\\', "/"),
            None => format!(".dockerfile.phased-{}", &hex(&sha2::Sha256::digest(&text))[..12]),
        };
        Ok(BuildContext { root: root.to_path_buf(), exclude, dockerfile_name, dockerfile_text: text })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the context as a tar to `out`.
pub fn pack(context: &BuildContext, out: impl Write) -> Result<Packed, String> {
    if !context.root.is_dir() {
        return Err(format!("the build context `{}` is not a folder", context.root.display()));
    }
    let ignore_file = context.root.join(".dockerignore");
    let text = match std::fs::read_to_string(&ignore_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read `{}`: {e}", ignore_file.display())),
    };
    let ignore = DockerIgnore::parse(&text, &context.exclude).map_err(|e| format!("{}: {e}", ignore_file.display()))?;
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    let mut packed = Packed::default();
    let mut walk = Walk { tar: &mut tar, ignore: &ignore, skip: &context.dockerfile_name, packed: &mut packed };
    walk.dir(&context.root, "")?;
    // The Dockerfile is always sent, whatever .dockerignore says.
    let data = &context.dockerfile_text;
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, &context.dockerfile_name, data.as_slice())
        .map_err(|e| format!("writing the context: {e}"))?;
    packed.files += 1;
    packed.bytes += data.len() as u64;
    tar.into_inner().and_then(|mut w| w.flush()).map_err(|e| format!("writing the context: {e}"))?;
    Ok(packed)
}

struct Walk<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
    ignore: &'a DockerIgnore,
    skip: &'a str,
    packed: &'a mut Packed,
}

impl<W: Write> Walk<'_, W> {
    fn dir(&mut self, dir: &Path, rel: &str) -> Result<(), String> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let kind = entry.file_type().map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            let excluded = self.ignore.excludes(&rel);
            if kind.is_dir() {
                if excluded && !self.ignore.has_exclusions() {
                    continue;
                }
                if !excluded {
                    self.append(&path, &rel)?;
                }
                self.dir(&path, &rel)?;
            } else if !excluded && rel != self.skip && (kind.is_file() || kind.is_symlink()) {
                self.append(&path, &rel)?;
                self.packed.files += 1;
                if kind.is_file() {
                    self.packed.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        Ok(())
    }

    fn append(&mut self, path: &Path, rel: &str) -> Result<(), String> {
        self.tar
            .append_path_with_name(path, rel)
            .map_err(|e| format!("cannot add `{}` to the context: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().trim_end_matches('/').to_string(), e.header().entry_type())
            })
            .collect()
    }

    #[test]
    fn dockerignore_applies_and_the_dockerfile_is_always_sent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("node_modules/pkg")).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("node_modules/pkg/index.js"), "x").unwrap();
        std::fs::write(root.join("src/app.js"), "app").unwrap();
        std::fs::write(root.join("secret.env"), "TOKEN=1").unwrap();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(root.join(".dockerignore"), "node_modules\n*.env\nDockerfile\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let mut out = Vec::new();
        let context = BuildContext::new(root, Path::new("Dockerfile"), vec![]).unwrap();
        let packed = pack(&context, &mut out).unwrap();
        let entries = names(&out);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [".dockerignore", "link", "src", "src/app.js", "Dockerfile"]);
        assert_eq!(entries[1].1, tar::EntryType::Symlink, "a symlink is sent as a link, not followed");
        assert_eq!(context.dockerfile_name, "Dockerfile");
        assert_eq!(packed.files, 4);
    }

    #[test]
    fn a_dockerfile_outside_the_context_gets_a_hidden_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        let dockerfile = dir.path().join("Dockerfile.generated");
        std::fs::write(&dockerfile, "FROM scratch\nCOPY index.html /\n").unwrap();
        let mut out = Vec::new();
        let context = BuildContext::new(&root, &dockerfile, vec!["*.tmp".into()]).unwrap();
        pack(&context, &mut out).unwrap();
        let name = &context.dockerfile_name;
        assert!(name.starts_with(".dockerfile.phased-"), "{name}");
        let names: Vec<String> = names(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["index.html".to_string(), name.clone()]);
    }

    #[test]
    fn a_missing_dockerfile_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = BuildContext::new(dir.path(), Path::new("Dockerfile"), vec![]).err().unwrap();
        assert!(err.contains("cannot read the Dockerfile") && err.contains("Dockerfile"), "{err}");
    }
}
