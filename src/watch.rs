//! What `phased watch` decides: which changed paths matter, and when a burst of
//! changes is over. One quiet period covers the whole tree, so saving 500 files or a
//! `git checkout` gives one redeploy. The command itself is in `cli/watch.rs`.

use crate::paths::normalize;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// Decides which paths are ignored.
pub(crate) struct Ignorer {
    /// Each watched folder, with the `.gitignore` of every folder below it that has one
    /// (a pattern is relative to the folder its file is in, as in git).
    roots: Vec<(PathBuf, HashMap<PathBuf, Gitignore>)>,
    globs: GlobSet,
    /// Folders and files never watched: the database folder, paths steps write.
    prefixes: Vec<PathBuf>,
}

impl Ignorer {
    /// `roots` are the watched folders (their `.gitignore` files are read, nested
    /// ones included); `globs` are `--ignore` patterns, matched against the path
    /// relative to its root and against the file name.
    pub(crate) fn new(roots: &[PathBuf], globs: &[String], prefixes: Vec<PathBuf>) -> Result<Ignorer, String> {
        let mut built = Vec::new();
        for root in roots {
            let mut per_folder = HashMap::new();
            for file in gitignore_files(root) {
                let folder = file.parent().unwrap_or(root).to_path_buf();
                let mut builder = GitignoreBuilder::new(&folder);
                if let Some(e) = builder.add(&file) {
                    return Err(format!("cannot read `{}`: {e}", file.display()));
                }
                let gitignore = builder.build().map_err(|e| format!("invalid `{}`: {e}", file.display()))?;
                per_folder.insert(folder, gitignore);
            }
            built.push((root.clone(), per_folder));
        }
        let mut set = GlobSetBuilder::new();
        for glob in globs {
            set.add(Glob::new(glob).map_err(|e| format!("invalid --ignore pattern `{glob}`: {e}"))?);
            // `dist/**` also covers the folder `dist` itself (its creation is a change too).
            if let Some(folder) = glob.strip_suffix("/**") {
                set.add(Glob::new(folder).map_err(|e| format!("invalid --ignore pattern `{glob}`: {e}"))?);
            }
        }
        let globs = set.build().map_err(|e| e.to_string())?;
        Ok(Ignorer { roots: built, globs, prefixes: prefixes.iter().map(|p| normalize(p)).collect() })
    }

    /// Ignores `path` and everything below it from now on.
    pub(crate) fn add_prefix(&mut self, path: &Path) {
        let path = normalize(path);
        if !self.prefixes.contains(&path) {
            self.prefixes.push(path);
        }
    }

    pub(crate) fn is_ignored(&self, path: &Path) -> bool {
        let path = normalize(path);
        if path.components().any(|c| c.as_os_str() == ".git") {
            return true;
        }
        if self.prefixes.iter().any(|p| path.starts_with(p)) {
            return true;
        }
        for (root, per_folder) in &self.roots {
            let Ok(relative) = path.strip_prefix(root) else { continue };
            if relative.as_os_str().is_empty() {
                continue;
            }
            if self.globs.is_match(relative) || path.file_name().is_some_and(|n| self.globs.is_match(n)) {
                return true;
            }
            if git_ignores(root, per_folder, relative, path.is_dir()) {
                return true;
            }
        }
        false
    }
}

/// Git's rules: each step of the path, from the top, is decided by the deepest
/// `.gitignore` that has a pattern for it (a later `!pattern` re-includes); once a
/// folder is ignored, nothing below it can be re-included.
fn git_ignores(root: &Path, per_folder: &HashMap<PathBuf, Gitignore>, relative: &Path, is_dir: bool) -> bool {
    let steps: Vec<_> = relative.components().collect();
    let mut here = root.to_path_buf();
    for (i, step) in steps.iter().enumerate() {
        here.push(step);
        let step_is_dir = i + 1 < steps.len() || is_dir;
        let folders = here.ancestors().skip(1).take_while(|folder| folder.starts_with(root));
        for folder in folders {
            let Some(gitignore) = per_folder.get(folder) else { continue };
            match gitignore.matched(&here, step_is_dir) {
                ignore::Match::Ignore(_) => return true,
                ignore::Match::Whitelist(_) => break,
                ignore::Match::None => {}
            }
        }
    }
    false
}

/// Every `.gitignore` below `root`, outside `.git`.
fn gitignore_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name() == ".git" {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(path),
                Ok(_) if entry.file_name() == ".gitignore" => found.push(path),
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// Collects changed paths until nothing changed for a quiet period.
pub(crate) struct Debouncer {
    quiet: Duration,
    pending: BTreeSet<PathBuf>,
    deadline: Option<Instant>,
}

impl Debouncer {
    pub(crate) fn new(quiet: Duration) -> Self {
        Debouncer { quiet, pending: BTreeSet::new(), deadline: None }
    }

    pub(crate) fn add(&mut self, path: PathBuf, now: Instant) {
        self.pending.insert(path);
        self.deadline = Some(now + self.quiet);
    }

    /// When the current burst ends, if one is under way.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The paths of a burst that is over (`now` past its deadline).
    pub(crate) fn take_if_quiet(&mut self, now: Instant) -> Option<BTreeSet<PathBuf>> {
        match self.deadline {
            Some(deadline) if now >= deadline => {
                self.deadline = None;
                Some(std::mem::take(&mut self.pending))
            }
            _ => None,
        }
    }
}

/// `a, b, c and 197 more`
pub(crate) fn describe(paths: &BTreeSet<PathBuf>, roots: &[PathBuf]) -> String {
    let shown: Vec<String> = paths
        .iter()
        .take(5)
        .map(|p| {
            roots
                .iter()
                .find_map(|r| p.strip_prefix(r).ok())
                .map_or_else(|| p.display().to_string(), |rel| rel.display().to_string())
        })
        .collect();
    let more = paths.len().saturating_sub(shown.len());
    if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tree with nested `.gitignore` files and compares every path with what
    /// `git check-ignore` says about it in a real repository.
    #[test]
    fn nested_gitignores_follow_gits_rules_as_git_check_ignore_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = normalize(dir.path());
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(".gitignore", "*.log\nbuild/\n!keep.log\ndocs/*.tmp\n");
        write("sub/.gitignore", "/gen\n!*.log\nnested/\n");
        write("sub/deep/.gitignore", "*.txt\n!important.txt\n");
        let paths = [
            "sub/gen/x.txt",
            "gen/y.txt",
            "a.log",
            "keep.log",
            "sub/a.log",
            "build/out.js",
            "sub/build/out.js",
            "docs/a.tmp",
            "docs/more/a.tmp",
            "sub/nested/file",
            "sub/deep/a.txt",
            "sub/deep/important.txt",
            "sub/deep/other.md",
            "sub/genx/file",
        ];
        for path in paths {
            write(path, "x");
        }
        let git = |args: &[&str]| std::process::Command::new("git").args(args).current_dir(&root).output().unwrap();
        assert!(git(&["init", "-q"]).status.success());
        let ignorer = Ignorer::new(std::slice::from_ref(&root), &[], Vec::new()).unwrap();
        for path in paths {
            let by_git = git(&["check-ignore", "-q", path]).status.code() == Some(0);
            assert_eq!(ignorer.is_ignored(&root.join(path)), by_git, "`{path}`: git says ignored = {by_git}");
        }
        assert!(ignorer.is_ignored(&root.join("sub/gen/x.txt")) && !ignorer.is_ignored(&root.join("gen/y.txt")));
    }

    #[test]
    fn ignores_git_gitignored_globs_and_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let root = normalize(dir.path());
        std::fs::write(root.join(".gitignore"), "node_modules/\n*.log\n").unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/.gitignore"), "secret.txt\n").unwrap();
        std::fs::create_dir_all(root.join("node_modules")).unwrap();
        let ignorer =
            Ignorer::new(std::slice::from_ref(&root), &["*.tmp".into(), "cache/**".into()], vec![root.join(".phased")])
                .unwrap();
        for ignored in [
            ".git/index",
            "node_modules/x/y.js",
            "app.log",
            "sub/secret.txt",
            "a.tmp",
            "cache",
            "cache/a/b",
            ".phased/phased.db",
        ] {
            assert!(ignorer.is_ignored(&root.join(ignored)), "{ignored} should be ignored");
        }
        for kept in ["index.html", "sub/page.html", "src/app.js"] {
            assert!(!ignorer.is_ignored(&root.join(kept)), "{kept} should be watched");
        }
    }

    #[test]
    fn a_burst_ends_after_one_quiet_period() {
        let start = Instant::now();
        let mut d = Debouncer::new(Duration::from_millis(300));
        d.add("a".into(), start);
        d.add("b".into(), start + Duration::from_millis(200));
        assert!(d.take_if_quiet(start + Duration::from_millis(400)).is_none(), "the second change restarted the wait");
        let burst = d.take_if_quiet(start + Duration::from_millis(500)).unwrap();
        assert_eq!(burst.len(), 2);
        assert!(d.deadline().is_none());
    }
}
