//! `.dockerignore`, with the docker CLI's rules (moby's patternmatcher), which are not
//! gitignore's: patterns are relative to the context root (`*.md` matches only at the
//! top, `**/*.md` anywhere); `*` and `?` do not cross `/`; a pattern that matches a
//! folder excludes everything under it; `!` re-includes; the last match wins.

use globset::{GlobBuilder, GlobMatcher};

#[derive(Debug)]
struct Pattern {
    matcher: GlobMatcher,
    exclusion: bool,
}

#[derive(Debug, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses `.dockerignore` text, then `extra` patterns (same syntax), in that order.
    pub fn parse(text: &str, extra: &[String]) -> Result<Self, String> {
        let mut patterns = Vec::new();
        let lines = text.lines().map(str::to_string).chain(extra.iter().cloned());
        for (n, line) in lines.enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = clean(pattern);
            if pattern.is_empty() {
                continue;
            }
            let matcher = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!(".dockerignore line {}: `{line}`: {e}", n + 1))?
                .compile_matcher();
            patterns.push(Pattern { matcher, exclusion });
        }
        Ok(DockerIgnore { patterns })
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for pattern in &self.patterns {
            if excluded != pattern.exclusion {
                // Only a pattern that would change the answer matters.
                continue;
            }
            if matches_or_parent(&pattern.matcher, path) {
                excluded = !pattern.exclusion;
            }
        }
        excluded
    }

    /// Whether some `!` pattern could re-include a path under an excluded folder
    /// (otherwise an excluded folder is skipped whole).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

/// As moby's `filepath.Clean` of a pattern: no leading `/` or `./`, no `.` segments,
/// no trailing `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn matches_or_parent(matcher: &GlobMatcher, path: &str) -> bool {
    if matcher.is_match(path) {
        return true;
    }
    let mut end = path.len();
    while let Some(i) = path[..end].rfind('/') {
        if matcher.is_match(&path[..i]) {
            return true;
        }
        end = i;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text, &[]).unwrap()
    }

    #[test]
    fn patterns_are_anchored_at_the_context_root() {
        let i = ignore("*.md\n");
        assert!(i.excludes("README.md"));
        assert!(!i.excludes("docs/guide.md"), "`*.md` is top level only, as in docker");
        let i = ignore("**/*.md\n");
        assert!(i.excludes("README.md") && i.excludes("docs/a/guide.md"));
    }

    #[test]
    fn a_matched_folder_takes_everything_under_it() {
        let i = ignore("node_modules\n/.git/\n");
        assert!(i.excludes("node_modules"));
        assert!(i.excludes("node_modules/left-pad/index.js"));
        assert!(i.excludes(".git/HEAD"));
        assert!(!i.excludes("src/node_modules_note.txt"));
    }

    #[test]
    fn the_last_match_wins_and_bang_reincludes() {
        let i = ignore("*.log\n!keep.log\n");
        assert!(i.excludes("debug.log"));
        assert!(!i.excludes("keep.log"));
        let i = ignore("!keep.log\n*.log\n");
        assert!(i.excludes("keep.log"), "a later pattern overrides an earlier exception");
        let i = ignore("docs\n!docs/public\n");
        assert!(i.excludes("docs/private/a.txt"));
        assert!(!i.excludes("docs/public/index.html"));
        assert!(i.has_exclusions());
    }

    #[test]
    fn star_does_not_cross_folders_and_comments_are_skipped() {
        let i = ignore("# comment\n\nsrc/*.tmp\n./build/./out\n");
        assert!(i.excludes("src/a.tmp"));
        assert!(!i.excludes("src/deep/a.tmp"));
        assert!(i.excludes("build/out/x"));
        assert!(!i.excludes("# comment"));
    }

    #[test]
    fn extra_patterns_apply_after_the_file() {
        let i = DockerIgnore::parse("!node_modules/keep\n", &["node_modules".to_string()]).unwrap();
        assert!(i.excludes("node_modules/keep"), "extra patterns come last, so they win");
    }

    #[test]
    fn a_broken_pattern_names_its_line() {
        let err = DockerIgnore::parse("ok\n[z-a\n", &[]).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }
}
