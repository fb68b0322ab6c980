//! Starting nodes. [`Core::prepare`] is the one way a task's parameters are made, for
//! a first attempt, a retry and an undo step alike: render the block for the action,
//! convert each value to the type its parameter declares, check it, and name the
//! node's key and template when any of that fails.

use std::sync::Arc;

use serde_json::{Value, json};

use super::frame::{Frame, NodeState, Running, TaskState};
use super::machine::Core;
use super::scope::Purpose;
use super::transition::{Change, Launch, NodeRef, Task, Transition};
use crate::action::ActionSpec;
use crate::compiler::inputs;
use crate::plan::{NodeKind, SubPipeline};
use crate::template::{self, Block, Template};

impl Core {
    /// Renders a block; `key` names it in errors (`with`, `metadata`, `undo.with`).
    /// Values for records are masked.
    pub(super) fn render(
        &self,
        frame: usize,
        block: &Block,
        purpose: Purpose,
        extra: &[(&str, Value)],
        key: &str,
    ) -> Result<Value, String> {
        let ctx = self.context(frame, purpose, extra);
        match block.render(&self.frames[frame].plan.templates, &ctx) {
            Ok(value) if purpose == Purpose::Record => Ok(self.masker.mask_json(value)),
            Ok(value) => Ok(value),
            Err(e) => {
                let at = if e.path.is_empty() { key.to_string() } else { format!("{key}.{}", e.path) };
                let text = format!("`{at}` (`{}`): {}", e.text, template::describe_error(&e.error));
                Err(self.masker.mask(&text).into_owned())
            }
        }
    }

    /// Evaluates an `if:` expression.
    pub(super) fn condition(
        &self,
        frame: usize,
        condition: &Template,
        extra: &[(&str, Value)],
    ) -> Result<bool, String> {
        let ctx = self.context(frame, Purpose::Action, extra);
        condition
            .is_true(&self.frames[frame].plan.templates, &ctx)
            .map_err(|e| self.masker.mask(&template::describe_error(&e)).into_owned())
    }

    /// The parameters a task starts with.
    pub(super) fn prepare(
        &self,
        frame: usize,
        action: &'static ActionSpec,
        block: Option<&Block>,
        extra: &[(&str, Value)],
        key: &str,
    ) -> Result<Value, String> {
        let with = match block {
            Some(block) => action.convert(self.render(frame, block, Purpose::Action, extra, key)?),
            None => json!({}),
        };
        action.check(&with).map_err(|e| {
            let e = self.masker.mask(&e).into_owned();
            format!("invalid parameters for `{}` in `{key}`: {e}", action.name)
        })?;
        Ok(with)
    }

    pub(super) fn start_node(&mut self, r: NodeRef) {
        let plan = Arc::clone(&self.frames[r.frame].plan);
        let spec = &plan.nodes[r.node];
        let id = self.frames[r.frame].qualified(r.node);
        if let Some(foreach) = &spec.foreach {
            return self.start_fan_out(r, foreach, id);
        }
        let scope = self.node_scope(r, &[]);

        if let Some(condition) = &spec.condition {
            match self.condition(r.frame, condition, &scope) {
                Ok(true) => {}
                Ok(false) => return self.skip(r),
                Err(e) => return self.fail_node(r, 1, format!("`if: {}`: {e}", condition.text), false),
            }
        }
        let metadata = match &spec.metadata {
            Some(block) => match self.render(r.frame, block, Purpose::Record, &scope, "metadata") {
                Ok(v) => Some(v),
                Err(e) => return self.fail_node(r, 1, e, false),
            },
            None => None,
        };
        let phase_update = spec.phase.is_some() || metadata.is_some();
        let metadata = metadata.unwrap_or_else(|| json!({}));
        match &spec.kind {
            NodeKind::Action(action) => {
                let with = match self.prepare(r.frame, action, spec.with.as_ref(), &scope, "with") {
                    Ok(with) => with,
                    Err(e) => return self.fail_node(r, 1, e, false),
                };
                if let Some(p) = &spec.phase {
                    self.phase = p.clone();
                }
                let writes = action.writes(&with);
                self.occupy(r, 1, TaskState::Active);
                self.record(Change::NodeStarted {
                    id: id.clone(),
                    attempt: 1,
                    metadata,
                    phase_update,
                    writes,
                    selection: None,
                });
                let task = Task { node: r, attempt: 1, undo: false };
                let launch = Launch { task, id, action, with, timeout: spec.timeout, grace: spec.grace };
                self.emit(Transition::Launch(launch));
            }
            NodeKind::Pipeline(sub) => {
                if let Some(p) = &spec.phase {
                    self.phase = p.clone();
                }
                self.start_child(r, sub, id, metadata, phase_update);
            }
        }
    }

    /// Marks a node running (holding one of the `--parallel` slots).
    fn occupy(&mut self, r: NodeRef, attempt: u32, task: TaskState) {
        self.seq += 1;
        self.running.insert(self.seq, r);
        self.frames[r.frame].states[r.node] =
            NodeState::Running(Running { attempt, started_at: self.at.clone(), fraction: 0.0, seq: self.seq, task });
    }

    /// The backoff before a retry is over: the attempt starts, through the same
    /// rendering and checks as the first.
    pub(super) fn on_timer(&mut self, task: Task) {
        let r = task.node;
        let NodeState::Running(state) = &self.frames[r.frame].states[r.node] else { return };
        if state.attempt != task.attempt || state.task != TaskState::Waiting || !self.accepting() {
            return;
        }
        let seq = state.seq;
        let plan = Arc::clone(&self.frames[r.frame].plan);
        let spec = &plan.nodes[r.node];
        let NodeKind::Action(action) = spec.kind else { return };
        let id = self.frames[r.frame].qualified(r.node);
        match self.prepare(r.frame, action, spec.with.as_ref(), &self.node_scope(r, &[]), "with") {
            Ok(with) => {
                if let NodeState::Running(state) = &mut self.frames[r.frame].states[r.node] {
                    state.task = TaskState::Active;
                    state.started_at = self.at.clone();
                }
                let writes = action.writes(&with);
                self.record(Change::NodeStarted {
                    id: id.clone(),
                    attempt: task.attempt,
                    metadata: json!({}),
                    phase_update: false,
                    writes,
                    selection: None,
                });
                let launch = Launch { task, id, action, with, timeout: spec.timeout, grace: spec.grace };
                self.emit(Transition::Launch(launch));
            }
            Err(e) => {
                self.running.remove(&seq);
                self.fail_node(r, task.attempt, e, false);
            }
        }
    }

    fn start_child(
        &mut self,
        r: NodeRef,
        sub: &SubPipeline,
        id: String,
        metadata: serde_json::Value,
        phase_update: bool,
    ) {
        // A resumed run reuses the selection and inputs it recorded when it started.
        let recorded =
            self.checkpoints.get(&id).and_then(|row| row.outputs.clone()).filter(|o| o.get("$selected").is_some());
        let (selected, given) = match recorded {
            Some(r) => (r["$selected"].as_str().unwrap_or_default().to_string(), r["$inputs"].clone()),
            None => match self.select(r, sub) {
                Ok(chosen) => chosen,
                Err(e) => return self.fail_node(r, 1, e, false),
            },
        };
        let Some(child_plan) = sub.by_name(&selected).cloned() else {
            let e = format!("sub-pipeline `{selected}` is not in the snapshot");
            return self.fail_node(r, 1, e, false);
        };
        let given = given.as_object().cloned().unwrap_or_default();
        let resolved = match inputs::resolve(&child_plan.inputs, &given) {
            Ok(resolved) => resolved,
            Err(problems) => {
                let text: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
                return self.fail_node(r, 1, format!("inputs of `{selected}`: {}", text.join("; ")), false);
            }
        };
        // Recorded (masked) so that a resume starts the same alternative with the same inputs.
        let selection = json!({ "$selected": selected, "$inputs": self.masker.mask_json(Value::Object(given)) });
        self.record(Change::NodeStarted {
            id: id.clone(),
            attempt: 1,
            metadata,
            phase_update,
            writes: Vec::new(),
            selection: Some(selection.clone()),
        });
        let share = self.frames[r.frame].node_share(r.node);
        let mut child = Frame::new(
            child_plan,
            self.frames[r.frame].path(r.node),
            Some((r.frame, r.node)),
            share,
            resolved,
            &self.checkpoints,
        );
        child.selection = Some(selection);
        child.started_at =
            Some(self.checkpoints.get(&id).and_then(|row| row.started_at.clone()).unwrap_or_else(|| self.at.clone()));
        let child_done = child.unfinished == 0;
        let index = self.add_frame(child);
        self.frames[r.frame].states[r.node] = NodeState::Child;
        if child_done {
            self.complete_child(index);
        }
    }

    /// Which alternative a sub-pipeline node runs, and its inputs (`with`, rendered).
    fn select(&self, r: NodeRef, sub: &SubPipeline) -> Result<(String, Value), String> {
        let plan = &self.frames[r.frame].plan;
        let scope = self.node_scope(r, &[]);
        let with = match &plan.nodes[r.node].with {
            Some(block) => self.render(r.frame, block, Purpose::Action, &scope, "with")?,
            None => json!({}),
        };
        let ctx = self.context(r.frame, Purpose::Action, &scope);
        let (selected, _) = sub.choose(&plan.templates, &ctx).map_err(|e| self.masker.mask(&e).into_owned())?;
        Ok((selected.to_string(), with))
    }
}
