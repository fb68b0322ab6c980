//! A node's qualified id: where it sits in a run, from the top pipeline down through
//! sub-pipelines and the items of `foreach` nodes. Its text (`deploy[host-a].run`) is
//! what the database keys checkpoints by and every output shows, so [`NodePath`]'s
//! `Display` and [`NodePath::parse`] keep exactly that form.

use std::fmt;

/// One step down a [`NodePath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSegment {
    /// A node of the pipeline above (`deploy`; after another node, `.run`).
    Node(String),
    /// An item of the `foreach` node above (`[host-a]`).
    Item(String),
}

/// A qualified node id: `build`, `release.push` (a node of a sub-pipeline),
/// `deploy[host-a]` (an item of a `foreach`), `deploy[host-a].run`. The empty path
/// is the run's top pipeline, under which its nodes are named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodePath {
    segments: Vec<PathSegment>,
}

impl NodePath {
    /// The top pipeline: no node yet.
    pub fn root() -> NodePath {
        NodePath::default()
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn segments(&self) -> &[PathSegment] {
        &self.segments
    }

    /// The node `id` of the pipeline this path runs (`release` + `push` is
    /// `release.push`). An id written as an item (`[host-a]`, the nodes of a plan
    /// fanned out by `Plan::fan_out`) is the item of this path's node.
    pub fn join(&self, id: &str) -> NodePath {
        match id.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            Some(key) => self.item(key),
            None => self.with(PathSegment::Node(id.to_string())),
        }
    }

    /// The item `key` of this path's `foreach` node (`deploy[host-a]`).
    pub fn item(&self, key: &str) -> NodePath {
        self.with(PathSegment::Item(key.to_string()))
    }

    fn with(&self, segment: PathSegment) -> NodePath {
        let mut segments = self.segments.clone();
        segments.push(segment);
        NodePath { segments }
    }

    /// The path one step up (`deploy[b].run` -> `deploy[b]` -> `deploy`), if any.
    pub fn parent(&self) -> Option<NodePath> {
        let (_, rest) = self.segments.split_last()?;
        Some(NodePath { segments: rest.to_vec() })
    }

    /// The last step, as the plan names it: a node's id, or an item as `[key]`.
    pub fn last_id(&self) -> Option<String> {
        match self.segments.last()? {
            PathSegment::Node(id) => Some(id.clone()),
            PathSegment::Item(key) => Some(format!("[{key}]")),
        }
    }

    /// The start every qualified id inside this node's sub-pipeline has (`release.`),
    /// as the store forgets them (`ResetNodes`' prefixes).
    pub fn inside_prefix(&self) -> String {
        format!("{self}.")
    }

    /// The start every item of this `foreach` node has (`deploy[`).
    pub fn items_prefix(&self) -> String {
        format!("{self}[")
    }

    /// Reads a qualified id back (`deploy[host-a].run`); `None` for a text that is not
    /// one (empty, an empty node name, an unclosed item). A key may hold dots
    /// (`deploy[a.example.com].run`), not brackets.
    pub fn parse(text: &str) -> Option<NodePath> {
        let mut segments = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('[') {
                let end = inner.find(']')?;
                segments.push(PathSegment::Item(inner[..end].to_string()));
                rest = &inner[end + 1..];
                continue;
            }
            if !segments.is_empty() {
                rest = rest.strip_prefix('.')?;
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            segments.push(PathSegment::Node(rest[..end].to_string()));
            rest = &rest[end..];
        }
        (!segments.is_empty()).then_some(NodePath { segments })
    }
}

impl fmt::Display for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                PathSegment::Node(id) if i == 0 => f.write_str(id)?,
                PathSegment::Node(id) => write!(f, ".{id}")?,
                PathSegment::Item(key) => write!(f, "[{key}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{NodePath, PathSegment};

    #[test]
    fn text_round_trips() {
        for text in ["build", "release.push", "deploy[host-a]", "deploy[host-a].run", "a.b[k].c[j].d", "d[a.b.c].run"] {
            let path = NodePath::parse(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(path.to_string(), text);
        }
        for bad in ["", ".a", "a.", "a..b", "a[k", "[k]x"] {
            assert_eq!(NodePath::parse(bad).map(|p| p.to_string()), None, "{bad}");
        }
    }

    #[test]
    fn joins_as_the_engine_names_nodes() {
        let deploy = NodePath::root().join("deploy");
        assert_eq!(deploy.to_string(), "deploy");
        let item = deploy.join("[host-a]");
        assert_eq!(item, deploy.item("host-a"));
        assert_eq!(item.join("run").to_string(), "deploy[host-a].run");
        assert_eq!(item.join("run").parent(), Some(item.clone()));
        assert_eq!(item.last_id().as_deref(), Some("[host-a]"));
        assert_eq!(deploy.inside_prefix(), "deploy.");
        assert_eq!(deploy.items_prefix(), "deploy[");
        assert_eq!(
            NodePath::parse("a[k].b").unwrap().segments(),
            [PathSegment::Node("a".into()), PathSegment::Item("k".into()), PathSegment::Node("b".into())]
        );
    }
}
