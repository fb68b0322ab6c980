//! `foreach`: a node that runs once per item. When it starts, its list is rendered and
//! each item becomes a node of a frame of its own (`deploy[host-a]`, checkpointed like
//! any node, so a resume reruns only the items that did not finish), with `item` in
//! its scope. `parallel` bounds how many are under way; with `on_failure: continue` a
//! failed item does not stop the others, and the node fails once all are done, naming
//! each failed item.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::frame::{Fan, Frame, NodeState};
use super::machine::Core;
use super::scope::Purpose;
use super::transition::{Change, NodeRef};
use crate::plan::Foreach;

impl Core {
    /// The template scope of a node, plus `extra`: `item` for the items of a
    /// `foreach`.
    pub(super) fn node_scope<'a>(&self, r: NodeRef, extra: &[(&'a str, Value)]) -> Vec<(&'a str, Value)> {
        let mut scope = extra.to_vec();
        if let Some(fan) = &self.frames[r.frame].fan {
            scope.push(("item", fan.items[r.node].clone()));
        }
        scope
    }

    /// Renders the list and the names of the items of a `foreach` node.
    fn items_of(&self, r: NodeRef, foreach: &Foreach) -> Result<(Vec<Value>, Vec<String>), String> {
        let templates = &self.frames[r.frame].plan.templates;
        let ctx = self.context(r.frame, Purpose::Action, &[]);
        let with_item = |item: &Value| self.context(r.frame, Purpose::Action, &[("item", item.clone())]);
        crate::plan::foreach_items(foreach, templates, &ctx, &with_item).map_err(|e| self.masker.mask(&e).into_owned())
    }

    pub(super) fn start_fan_out(&mut self, r: NodeRef, foreach: &Foreach, id: String) {
        let (items, keys) = match self.items_of(r, foreach) {
            Ok(found) => found,
            Err(e) => return self.fail_node(r, 1, e, false),
        };
        let plan = Arc::new(self.frames[r.frame].plan.fan_out(r.node, &keys));
        let selection = json!({ "$items": keys });
        self.record(Change::NodeStarted {
            id: id.clone(),
            attempt: 1,
            metadata: json!({}),
            phase_update: false,
            writes: Vec::new(),
            selection: Some(selection.clone()),
        });
        let parent = &self.frames[r.frame];
        let (share, inputs) = (parent.node_share(r.node), parent.inputs.clone());
        let at = parent.path(r.node);
        let mut fan = Frame::new(plan, at, Some((r.frame, r.node)), share, inputs, &self.checkpoints);
        // The items read what their node could read: its ancestors' outputs.
        for (name, outputs) in &self.frames[r.frame].outputs {
            fan.outputs.entry(name.clone()).or_insert_with(|| outputs.clone());
        }
        fan.selection = Some(selection);
        fan.started_at =
            Some(self.checkpoints.get(&id).and_then(|row| row.started_at.clone()).unwrap_or_else(|| self.at.clone()));
        fan.fan =
            Some(Fan { items, keys, limit: foreach.parallel, keep_going: foreach.keep_going, failed: Vec::new() });
        let done = fan.unfinished == 0;
        let index = self.add_frame(fan);
        self.frames[r.frame].states[r.node] = NodeState::Child;
        if done {
            self.complete_child(index);
        }
    }

    /// Whether a frame's items may not start another now (`foreach.parallel`).
    pub(super) fn frame_full(&self, frame: usize) -> bool {
        let f = &self.frames[frame];
        f.fan.as_ref().is_some_and(|fan| fan.limit > 0 && f.under_way() >= fan.limit)
    }

    /// Whether a frame belongs to an item that failed (with `on_failure: continue`):
    /// nothing more starts in it.
    pub(super) fn frame_dead(&self, mut frame: usize) -> bool {
        while let Some((parent, node)) = self.frames[frame].parent {
            if matches!(self.frames[parent].states[node], NodeState::Failed) {
                return true;
            }
            frame = parent;
        }
        false
    }

    /// Whether a node is part of an item that succeeded in a `foreach` with
    /// `on_failure: continue`: what it did stays when the run fails (only the failed
    /// items are resumed), so it is not undone.
    pub(super) fn kept_by_fan(&self, r: NodeRef) -> bool {
        let (mut frame, mut node) = (r.frame, r.node);
        loop {
            let f = &self.frames[frame];
            if f.fan.as_ref().is_some_and(|fan| fan.keep_going) && matches!(f.states[node], NodeState::Succeeded) {
                return true;
            }
            match f.parent {
                Some((parent, at)) => (frame, node) = (parent, at),
                None => return false,
            }
        }
    }

    /// The outputs of a `foreach` node whose items all finished: each item's, by name.
    pub(super) fn fan_outputs(&self, frame: usize) -> Value {
        let f = &self.frames[frame];
        let Some(fan) = &f.fan else { return json!({}) };
        let items: Map<String, Value> = fan
            .keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let outputs = f.outputs.get(&f.plan.nodes[i].id).map_or(Value::Null, |o| o["outputs"].clone());
                (key.clone(), outputs)
            })
            .collect();
        json!({ "items": items })
    }

    /// An item of a `continue` fan-out failed: recorded with its frame, and the node
    /// fails once no item is under way.
    pub(super) fn item_failed(&mut self, frame: usize, id: String, error: String) {
        if let Some(fan) = &mut self.frames[frame].fan {
            fan.failed.push((id, error));
        }
        self.settle_fan(frame);
    }

    /// With `on_failure: continue`, once every item has finished and some failed, the
    /// node fails naming each of them.
    pub(super) fn settle_fan(&mut self, frame: usize) {
        let f = &self.frames[frame];
        let Some(fan) = &f.fan else { return };
        let pending =
            f.states.iter().any(|s| matches!(s, NodeState::Pending | NodeState::Running(_) | NodeState::Child));
        if !fan.keep_going || fan.failed.is_empty() || pending {
            return;
        }
        let Some((parent, node)) = f.parent else { return };
        let failed: Vec<String> = fan.failed.iter().map(|(id, e)| format!("`{id}`: {e}")).collect();
        let names: Vec<&str> = fan.failed.iter().map(|(id, _)| id.as_str()).collect();
        let message = format!(
            "{} of {} items failed ({}): {}",
            fan.failed.len(),
            fan.keys.len(),
            names.join(", "),
            failed.join("; ")
        );
        self.fail_node(NodeRef { frame: parent, node }, 1, message, false);
    }
}
