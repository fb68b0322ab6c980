//! One walk over the node instances of a plan: each node, and inside it the items of
//! a `foreach` (one copy of the node each, [`Plan::fan_out`]) or the nodes of a
//! sub-pipeline, each met with its qualified id ([`NodePath`]). What is inside a node
//! is the visitor's to say ([`Inside`]): a run's view takes what the run recorded,
//! `phased plan` what the inputs decide, a snapshot every alternative. The engine's
//! progress views, `phased plan`, snapshots, `resume --reload` and the dashboard's
//! graph all walk here, so none of them recurses into `foreach` and `SubPipeline` on
//! its own.

use std::convert::Infallible;
use std::sync::Arc;

use super::{NodeKind, Plan, PlanNode, SubPipeline};
use crate::model::NodePath;

/// How an instance came to be where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A node of the walked plan itself.
    Top,
    /// One item of the `foreach` node above it (`deploy[host-a]`).
    Item,
    /// A node of the sub-pipeline of the node above it (`release.push`).
    Child,
}

/// One node instance met by [`walk`].
pub(crate) struct Instance<'a> {
    /// Its qualified id (`deploy[host-a].run`).
    pub(crate) path: &'a NodePath,
    /// The instance it is inside (the root path for a node of the walked plan).
    pub(crate) parent: &'a NodePath,
    /// The plan it is a node of (for an item, the plan its `foreach` node fanned out
    /// to), and its index there.
    pub(crate) plan: &'a Plan,
    pub(crate) index: usize,
    pub(crate) node: &'a PlanNode,
    /// How many instances it is inside (0 for a node of the walked plan).
    pub(crate) depth: usize,
    pub(crate) role: Role,
}

/// What the walk goes into inside an instance, as its visitor says.
pub(crate) enum Inside {
    Nothing,
    /// The items of a `foreach` node, by key.
    Items(Vec<String>),
    /// The nodes of sub-pipelines, each under the node's own path, one after another
    /// (several: the alternatives of a `select`).
    Pipelines(Vec<Arc<Plan>>),
}

impl Inside {
    /// The nodes of `node`'s sub-pipeline: its fixed one, or, for a `select`, the
    /// alternative named `chosen` (nothing while none is). A `foreach` node's items
    /// are not looked at.
    pub(crate) fn pipeline<'c>(node: &PlanNode, chosen: impl FnOnce() -> Option<&'c str>) -> Inside {
        let child = match &node.kind {
            NodeKind::Action(_) => None,
            NodeKind::Pipeline(SubPipeline::Fixed { plan, .. }) => Some(plan),
            NodeKind::Pipeline(sub @ SubPipeline::Select { .. }) => chosen().and_then(|name| sub.by_name(name)),
        };
        child.map_or(Inside::Nothing, |plan| Inside::Pipelines(vec![Arc::clone(plan)]))
    }
}

/// What a walk does at each instance.
pub(crate) trait Visit {
    type Error;

    /// Meets an instance, before anything inside it; says what is inside it.
    fn enter(&mut self, instance: &Instance<'_>) -> Result<Inside, Self::Error>;

    /// Leaves an instance, after everything inside it.
    fn leave(&mut self, _instance: &Instance<'_>) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A closure that only enters.
impl<F: FnMut(&Instance<'_>) -> Inside> Visit for F {
    type Error = Infallible;

    fn enter(&mut self, instance: &Instance<'_>) -> Result<Inside, Infallible> {
        Ok(self(instance))
    }
}

/// Walks the instances of `plan` in its order (`order`, as a run starts them), what
/// is inside each one right after it; stops at the visitor's first error.
pub(crate) fn walk<V: Visit>(plan: &Plan, visitor: &mut V) -> Result<(), V::Error> {
    walk_in(plan, &NodePath::root(), 0, Role::Top, visitor)
}

/// [`walk`] with a visitor that cannot fail.
pub(crate) fn each(plan: &Plan, mut enter: impl FnMut(&Instance<'_>) -> Inside) {
    match walk(plan, &mut enter) {
        Ok(()) => {}
        Err(never) => match never {},
    }
}

fn walk_in<V: Visit>(plan: &Plan, at: &NodePath, depth: usize, role: Role, visitor: &mut V) -> Result<(), V::Error> {
    for &index in &plan.order {
        let node = &plan.nodes[index];
        let path = at.join(&node.id);
        let instance = Instance { path: &path, parent: at, plan, index, node, depth, role };
        match visitor.enter(&instance)? {
            Inside::Nothing => {}
            Inside::Items(keys) => walk_in(&plan.fan_out(index, &keys), &path, depth + 1, Role::Item, visitor)?,
            Inside::Pipelines(children) => {
                for child in &children {
                    walk_in(child, &path, depth + 1, Role::Child, visitor)?;
                }
            }
        }
        visitor.leave(&instance)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod fixture {
    use super::*;
    use crate::catalog::Catalog;
    use crate::compiler::Compiler;
    use crate::source::Source;

    const ROOT: &str = "version: 1\nname: fleet\nnodes:\n  \
        hosts:\n    foreach: '{{ [\"a\", \"b\"] }}'\n    pipeline: host\n  \
        report: {phase: HEALTH_CHECK, needs: [hosts], uses: noop}\n";
    const HOST: &str = "version: 1\nname: host\nnodes:\n  \
        source: {pipeline: {select: \"{{ inputs.kind }}\", from: {git: git, upload: upload}}}\n  \
        check: {phase: HEALTH_CHECK, needs: [source], uses: noop}\ninputs: {kind: {type: string}}\n";
    const GIT: &str = "version: 1\nname: git\nnodes:\n  clone: {phase: PULLING_SOURCE, uses: noop}\n";
    const UPLOAD: &str = "version: 1\nname: upload\nnodes:\n  \
        unpack: {phase: PULLING_SOURCE, uses: noop}\n  verify: {phase: PULLING_SOURCE, needs: [unpack], uses: noop}\n";

    /// A `foreach` over two hosts, each running a sub-pipeline that selects `git` or
    /// `upload` by an input.
    pub(crate) fn plan() -> Arc<Plan> {
        let subs = [("host", HOST), ("git", GIT), ("upload", UPLOAD)];
        let catalog = Catalog::new()
            .with_sources(subs.iter().map(|(n, t)| (n.to_string(), Source::new(format!("{n}.yaml"), *t))));
        let mut compiler = Compiler::new(&catalog);
        compiler.compile(&Source::new("root.yaml", ROOT)).unwrap_or_else(|| panic!("{:#?}", compiler.diagnostics()))
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::plan;
    use super::*;

    /// Enters and leaves, as text: `+path depth role parent` and `-path`.
    struct Trace(Vec<String>);

    impl Visit for Trace {
        type Error = Infallible;

        fn enter(&mut self, at: &Instance<'_>) -> Result<Inside, Infallible> {
            self.0.push(format!("+{} {} {:?} {}", at.path, at.depth, at.role, at.parent));
            assert_eq!(at.plan.nodes[at.index].id, at.node.id, "the node is the plan's at its index");
            if at.node.foreach.is_some() {
                return Ok(Inside::Items(vec!["a".into(), "b".into()]));
            }
            // Item `a` takes `git`, item `b` `upload`.
            let chosen = if at.parent.to_string() == "hosts[a]" { "git" } else { "upload" };
            Ok(Inside::pipeline(at.node, || Some(chosen)))
        }

        fn leave(&mut self, at: &Instance<'_>) -> Result<(), Infallible> {
            self.0.push(format!("-{}", at.path));
            Ok(())
        }
    }

    #[test]
    fn walks_the_items_of_a_foreach_and_the_chosen_alternative_inside_each() {
        let mut trace = Trace(Vec::new());
        walk(&plan(), &mut trace).unwrap();
        assert_eq!(
            trace.0,
            [
                "+hosts 0 Top ",
                "+hosts[a] 1 Item hosts",
                "+hosts[a].source 2 Child hosts[a]",
                "+hosts[a].source.clone 3 Child hosts[a].source",
                "-hosts[a].source.clone",
                "-hosts[a].source",
                "+hosts[a].check 2 Child hosts[a]",
                "-hosts[a].check",
                "-hosts[a]",
                "+hosts[b] 1 Item hosts",
                "+hosts[b].source 2 Child hosts[b]",
                "+hosts[b].source.unpack 3 Child hosts[b].source",
                "-hosts[b].source.unpack",
                "+hosts[b].source.verify 3 Child hosts[b].source",
                "-hosts[b].source.verify",
                "-hosts[b].source",
                "+hosts[b].check 2 Child hosts[b]",
                "-hosts[b].check",
                "-hosts[b]",
                "-hosts",
                "+report 0 Top ",
                "-report",
            ]
        );
    }

    #[test]
    fn goes_only_where_the_visitor_says() {
        let mut ids = Vec::new();
        each(&plan(), |at| {
            ids.push(at.path.to_string());
            Inside::Nothing
        });
        assert_eq!(ids, ["hosts", "report"], "no items unless given, no alternative unless chosen");
        let mut ids = Vec::new();
        each(&plan(), |at| {
            ids.push(at.path.to_string());
            Inside::pipeline(at.node, || None)
        });
        assert_eq!(ids, ["hosts", "hosts.source", "hosts.check", "report"], "a fixed sub-pipeline, no alternative");
    }
}
