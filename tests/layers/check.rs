//! The layer check over a source tree: which file imports which (read from the text),
//! then the imports that go up a layer and the files that import each other in a
//! circle. It reads `crate::`, `super::` and `self::` paths, paths through a child
//! module (`use rows::X` in `store.rs`) and nested `use a::{b, c::{d}}` groups, in
//! `use` lines and in code; comments, strings and `#[cfg(test)]` items are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::lex::{Token, lex};

/// A module path (`["store", "postgres", "queue"]`); the crate root is `[]`.
pub(crate) type Module = Vec<String>;

/// What a tree must keep to.
pub(crate) struct Rules<'a> {
    /// The layers, lowest first: a file may import its own layer or lower ones.
    pub(crate) layers: &'a [(&'a str, &'a [&'a str])],
    /// Imports that may never be, whatever the layers: (from, to, why), each a module
    /// path or the start of one (`engine::core` is the core and its files).
    pub(crate) never: &'a [(&'a str, &'a str, &'a str)],
}

/// Everything wrong with the tree at `src`: imports that go up, imports that may
/// never be, top modules without a layer, and circles of files.
pub(crate) fn check(src: &Path, rules: &Rules<'_>) -> Vec<String> {
    let graph = Graph::read(src);
    let mut problems = graph.upward(rules.layers);
    problems.extend(graph.forbidden(rules.never));
    for circle in graph.circles() {
        problems.push(graph.describe_circle(&circle));
    }
    problems
}

/// The files of a tree and which file imports which.
pub(crate) struct Graph {
    /// Each module and its file, relative to the tree's parent (`src/store.rs`).
    pub(crate) files: BTreeMap<Module, PathBuf>,
    /// Which files each file depends on: the file that defines what a path names
    /// (through re-exports and `use` aliases), never itself. An edge from a file to
    /// one of its ancestors is left out: a child may use what its ancestors define.
    pub(crate) edges: BTreeMap<Module, BTreeSet<Module>>,
    /// Which files each file names in its paths, as written (`crate::store::RunRow`
    /// names `store` even when `store` re-exports it from lower down), and those of
    /// `edges`.
    pub(crate) named: BTreeMap<Module, BTreeSet<Module>>,
}

impl Graph {
    pub(crate) fn read(src: &Path) -> Graph {
        let mut found = BTreeMap::new();
        let base = src.parent().unwrap_or(Path::new(""));
        walk(src, src, &mut found);
        let mut files = BTreeMap::new();
        let mut read = Vec::new();
        for (module, path) in &found {
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            files.insert(module.clone(), path.strip_prefix(base).unwrap_or(path).to_path_buf());
            read.push((module.clone(), text));
        }
        let scans: BTreeMap<Module, Scan> =
            read.iter().map(|(module, text)| (module.clone(), scan(module, &lex(text), &files))).collect();
        let aliases: BTreeMap<&Module, BTreeMap<&str, &Module>> = scans
            .iter()
            .map(|(m, scan)| (m, scan.aliases.iter().map(|(name, path)| (name.as_str(), path)).collect()))
            .collect();
        let mut graph = Graph { files, edges: BTreeMap::new(), named: BTreeMap::new() };
        for (module, scan) in &scans {
            let (edges, named) =
                (graph.edges.entry(module.clone()).or_default(), graph.named.entry(module.clone()).or_default());
            for path in &scan.uses {
                let (Some(first), Some(last)) = (resolve(path, &graph.files), defined_in(path, &graph.files, &aliases))
                else {
                    continue;
                };
                named.insert(first);
                named.insert(last.clone());
                // A child may use what its ancestors define: that is what a parent
                // module is for, and it closes no circle.
                if !module.starts_with(&last) {
                    edges.insert(last);
                }
            }
            edges.remove(module);
            named.remove(module);
        }
        // Test-only files (`#[cfg(test)] mod tests;`) and the crate roots are no part
        // of the layers: unit tests may reach anywhere, roots only declare.
        let test_only: Vec<&Module> = scans.values().flat_map(|s| &s.test_only).collect();
        let skip = |m: &Module| m.is_empty() || test_only.iter().any(|t| m.starts_with(t));
        graph.files.retain(|m, _| !skip(m));
        for map in [&mut graph.edges, &mut graph.named] {
            map.retain(|m, _| !skip(m));
            for to in map.values_mut() {
                to.retain(|m| !skip(m));
            }
        }
        graph
    }

    /// How a module's file is named in messages (`src/store/rows.rs`).
    pub(crate) fn shown(&self, module: &Module) -> String {
        self.files[module].to_string_lossy().replace('\\', "/")
    }

    fn forbidden(&self, never: &[(&str, &str, &str)]) -> Vec<String> {
        let under = |m: &Module, prefix: &str| {
            let path = m.join("::");
            path == prefix || path.starts_with(&format!("{prefix}::"))
        };
        let mut problems = Vec::new();
        for (from, targets) in &self.named {
            for to in targets {
                for (a, b, why) in never {
                    if under(from, a) && under(to, b) && !under(from, b) {
                        problems.push(format!("{} imports {}: {why}", self.shown(from), self.shown(to)));
                    }
                }
            }
        }
        problems
    }

    fn upward(&self, layers: &[(&str, &[&str])]) -> Vec<String> {
        let layer_of = |m: &Module| layers.iter().position(|(_, tops)| tops.contains(&m[0].as_str()));
        let mut problems = Vec::new();
        let tops: BTreeSet<&String> = self.files.keys().map(|m| &m[0]).collect();
        for top in tops {
            if layer_of(&vec![top.clone()]).is_none() {
                problems.push(format!("module `{top}` has no layer: give it one in tests/layers.rs"));
            }
        }
        for (from, targets) in &self.named {
            let Some(own) = layer_of(from) else { continue };
            for to in targets {
                match layer_of(to) {
                    Some(theirs) if theirs > own => problems.push(format!(
                        "{} ({}) imports {} ({}), a higher layer",
                        self.shown(from),
                        layers[own].0,
                        self.shown(to),
                        layers[theirs].0
                    )),
                    _ => {}
                }
            }
        }
        problems
    }

    /// The groups of files that import each other in a circle (strongly connected
    /// components of more than one file), each sorted, in order.
    pub(crate) fn circles(&self) -> Vec<Vec<Module>> {
        let nodes: Vec<&Module> = self.files.keys().collect();
        let index: BTreeMap<&Module, usize> = nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
        let next: Vec<Vec<usize>> = nodes
            .iter()
            .map(|m| self.edges.get(*m).into_iter().flatten().filter_map(|t| index.get(t).copied()).collect())
            .collect();
        let mut circles: Vec<Vec<Module>> = components(&next)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut c: Vec<Module> = c.into_iter().map(|i| nodes[i].clone()).collect();
                c.sort();
                c
            })
            .collect();
        circles.sort();
        circles
    }

    fn describe_circle(&self, circle: &[Module]) -> String {
        let mut text = format!(
            "import circle of {} files: {}",
            circle.len(),
            circle.iter().map(|m| self.shown(m)).collect::<Vec<_>>().join(", ")
        );
        for from in circle {
            for to in self.edges.get(from).into_iter().flatten().filter(|t| circle.contains(t)) {
                text.push_str(&format!("\n  {} -> {}", self.shown(from), self.shown(to)));
            }
        }
        text
    }
}

/// Every `.rs` file under `dir`, by module path.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Module, PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut module: Module = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if module.last().is_some_and(|last| last == "mod")
                || (module.len() == 1 && matches!(module[0].as_str(), "lib" | "main"))
            {
                module.pop();
            }
            out.insert(module, path);
        }
    }
}

/// The file module a path names: the longest start of it that is a file.
fn resolve(path: &Module, files: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| files.contains_key(m))
}

/// The file that defines what a path names: the file the path reaches, or, when that
/// file only brought the name in (`pub use rows::RunRow`, `use crate::model::Lease`),
/// the file its own path leads to, and so on.
fn defined_in(
    path: &Module,
    files: &BTreeMap<Module, PathBuf>,
    aliases: &BTreeMap<&Module, BTreeMap<&str, &Module>>,
) -> Option<Module> {
    let mut path = path.clone();
    for _ in 0..16 {
        let file = resolve(&path, files)?;
        let Some(name) = path.get(file.len()) else { return Some(file) };
        match aliases.get(&file).and_then(|a| a.get(name.as_str())) {
            Some(target) if **target != path[..file.len() + 1] => {
                path = target.iter().chain(&path[file.len() + 1..]).cloned().collect();
            }
            _ => return Some(file),
        }
    }
    resolve(&path, files)
}

/// Tarjan's strongly connected components (iterative).
fn components(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = next.len();
    let (mut index, mut low, mut on) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut out, mut counter) = (Vec::new(), Vec::new(), 0);
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        let mut work = vec![(start, 0)];
        index[start] = counter;
        low[start] = counter;
        counter += 1;
        stack.push(start);
        on[start] = true;
        while let Some(&mut (v, ref mut i)) = work.last_mut() {
            if let Some(&w) = next[v].get(*i) {
                *i += 1;
                if index[w] == usize::MAX {
                    index[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w);
                    on[w] = true;
                    work.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

/// What one file names: the absolute paths it uses, and its test-only child modules.
struct Scan {
    uses: Vec<Module>,
    test_only: Vec<Module>,
    /// The names its `use` items bring in, and their paths.
    aliases: Vec<(String, Module)>,
}

fn ident(tokens: &[Token], i: usize) -> Option<&str> {
    match tokens.get(i) {
        Some(Token::Ident(s)) => Some(s),
        _ => None,
    }
}

/// Reads the paths of one file (module `module`) from its tokens.
fn scan(module: &Module, tokens: &[Token], files: &BTreeMap<Module, PathBuf>) -> Scan {
    let mut out = Scan { uses: Vec::new(), test_only: Vec::new(), aliases: Vec::new() };
    // `pub use` items: the tokens of each, and what it names.
    let mut reexports: Vec<(std::ops::Range<usize>, Vec<Named>)> = Vec::new();
    // Inline modules (`mod labels { ... }`) open, with the depth of their braces.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let base: Module = module.iter().cloned().chain(inline.iter().map(|(m, _)| m.clone())).collect();
        match &tokens[i] {
            Token::Punct('#') if is_cfg_test(tokens, i) => {
                let (end, child) = skip_item(tokens, i + 7);
                if let Some(child) = child {
                    out.test_only.push(base.iter().cloned().chain([child]).collect());
                }
                i = end;
                continue;
            }
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Token::Ident(m) if m == "mod" && tokens.get(i + 2) == Some(&Token::Punct('{')) => {
                if let Some(name) = ident(tokens, i + 1) {
                    inline.push((name.to_string(), depth));
                }
            }
            Token::Ident(word) if tokens.get(i + 1) == Some(&Token::Path) && starts_path(tokens, i) => {
                let start = match word.as_str() {
                    "crate" => Some(Vec::new()),
                    "self" => Some(base.clone()),
                    "super" => Some(base.clone()),
                    name if files.contains_key(&base.iter().cloned().chain([name.to_string()]).collect::<Module>()) => {
                        Some(base.clone())
                    }
                    _ => None,
                };
                if let Some(start) = start {
                    let (end, paths) = use_tree(tokens, i, start);
                    if ident(tokens, i.wrapping_sub(1)) == Some("use") {
                        out.aliases.extend(paths.iter().filter(|(_, n)| n != "*").map(|(p, n)| (n.clone(), p.clone())));
                    }
                    match reexport_from(tokens, i) {
                        Some(from) => reexports.push((from..end, paths)),
                        None => out.uses.extend(paths.into_iter().map(|(path, _)| path)),
                    }
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    // A `pub use` only hands a name on (the parent that re-exports its child's type
    // does not depend on the child), unless the file itself uses the name too.
    let inside = |k: usize| reexports.iter().any(|(span, _)| span.contains(&k));
    for (_, paths) in &reexports {
        for (path, name) in paths {
            let used = name == "*"
                || tokens.iter().enumerate().any(|(k, t)| !inside(k) && matches!(t, Token::Ident(w) if w == name));
            if used {
                out.uses.push(path.clone());
            }
        }
    }
    out
}

/// Where the `pub use` that the path at `i` starts begins, if it is one.
fn reexport_from(tokens: &[Token], i: usize) -> Option<usize> {
    let mut j = i.checked_sub(1)?;
    if ident(tokens, j) != Some("use") {
        return None;
    }
    j = j.checked_sub(1)?;
    if tokens[j] == Token::Punct(')') {
        while tokens[j] != Token::Punct('(') {
            j = j.checked_sub(1)?;
        }
        j = j.checked_sub(1)?;
    }
    (ident(tokens, j) == Some("pub")).then_some(j)
}

/// Whether the tokens at `i` are `#[cfg(test)]`.
fn is_cfg_test(tokens: &[Token], i: usize) -> bool {
    let want = [Token::Punct('#'), Token::Punct('['), Token::Ident("cfg".into()), Token::Punct('(')];
    tokens.get(i..i + 4) == Some(&want[..])
        && ident(tokens, i + 4) == Some("test")
        && tokens.get(i + 5) == Some(&Token::Punct(')'))
        && tokens.get(i + 6) == Some(&Token::Punct(']'))
}

/// Skips the item that starts at `i` (with its attributes): returns where the next
/// one starts, and the module it declares when it is `mod name;`.
fn skip_item(tokens: &[Token], mut i: usize) -> (usize, Option<String>) {
    while tokens.get(i) == Some(&Token::Punct('#')) {
        let mut depth = 0;
        i += 1;
        while i < tokens.len() {
            match tokens[i] {
                Token::Punct('[') => depth += 1,
                Token::Punct(']') => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
    let declared = (ident(tokens, i) == Some("mod") || ident(tokens, i + 1) == Some("mod"))
        .then(|| {
            let at = if ident(tokens, i) == Some("mod") { i + 1 } else { i + 2 };
            (tokens.get(at + 1) == Some(&Token::Punct(';'))).then(|| ident(tokens, at).map(str::to_string)).flatten()
        })
        .flatten();
    let is_use = ident(tokens, i) == Some("use") || ident(tokens, i + 1) == Some("use");
    let mut depth = 0;
    while i < tokens.len() {
        match tokens[i] {
            Token::Punct(';') if depth == 0 => return (i + 1, declared),
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if depth == 0 && !is_use {
                    return (i + 1, declared);
                }
            }
            _ => {}
        }
        i += 1;
    }
    (i, declared)
}

/// Whether a path starts at `i` (it is not the tail of another path, a field or a
/// visibility: `pub(in crate::cli)`).
fn starts_path(tokens: &[Token], i: usize) -> bool {
    match i.checked_sub(1).map(|p| &tokens[p]) {
        Some(Token::Path) | Some(Token::Punct('.')) | Some(Token::Punct('$')) => false,
        Some(Token::Ident(word)) => word != "in",
        _ => true,
    }
}

/// A path a file names, and the name it brings in (its last segment, or its alias;
/// `*` for a glob).
type Named = (Module, String);

/// The paths of a use tree (or a path in code) starting at `i`, resolved from
/// `prefix` (the module its first segment is relative to): returns where it ends.
fn use_tree(tokens: &[Token], mut i: usize, mut prefix: Module) -> (usize, Vec<Named>) {
    loop {
        match tokens.get(i) {
            Some(Token::Ident(word)) => {
                match word.as_str() {
                    "crate" => prefix.clear(),
                    "self" => {}
                    "super" => {
                        prefix.pop();
                    }
                    name => prefix.push(name.to_string()),
                }
                i += 1;
                if tokens.get(i) != Some(&Token::Path) {
                    return leaf(tokens, i, prefix);
                }
                i += 1;
            }
            Some(Token::Punct('{')) => {
                let mut paths = Vec::new();
                i += 1;
                loop {
                    match tokens.get(i) {
                        None => return (i, paths),
                        Some(Token::Punct('}')) => return (i + 1, paths),
                        Some(Token::Punct(',')) => i += 1,
                        Some(_) if ident(tokens, i) == Some("self") => {
                            let (end, mut more) = leaf(tokens, i + 1, prefix.clone());
                            paths.append(&mut more);
                            i = end;
                        }
                        Some(_) => {
                            let (end, more) = use_tree(tokens, i, prefix.clone());
                            paths.extend(more);
                            i = end.max(i + 1);
                        }
                    }
                }
            }
            Some(Token::Punct('*')) => return (i + 1, vec![(prefix, "*".to_string())]),
            _ => return leaf(tokens, i, prefix),
        }
    }
}

/// The end of a path at `i`, with its alias if it has one (`as name`).
fn leaf(tokens: &[Token], i: usize, path: Module) -> (usize, Vec<Named>) {
    match (ident(tokens, i), ident(tokens, i + 1)) {
        (Some("as"), Some(alias)) => (i + 2, vec![(path, alias.to_string())]),
        _ => {
            let name = path.last().cloned().unwrap_or_default();
            (i, vec![(path, name)])
        }
    }
}
