//! Nodes ending: progress reports, success (with result metadata), skips, retries,
//! timeouts and failures, and sub-pipelines completing with the outputs they declare.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::frame::{NodeState, TaskState};
use super::machine::{Core, Failure};
use super::mode::Mode;
use super::scope::Purpose;
use super::transition::{Change, NodeRef, Task, TaskError, Transition};

impl Core {
    pub(super) fn on_progress(&mut self, task: Task, fraction: f64) {
        let r = task.node;
        let NodeState::Running(state) = &mut self.frames[r.frame].states[r.node] else { return };
        if state.attempt != task.attempt || state.task != TaskState::Active || fraction <= state.fraction {
            return;
        }
        state.fraction = fraction;
        if self.update_progress() {
            let id = self.frames[r.frame].qualified(r.node);
            self.record(Change::NodeProgress { id, attempt: task.attempt, fraction });
        }
    }

    pub(super) fn on_timed_out(&mut self, task: Task) {
        let r = task.node;
        let timeout = self.frames[r.frame].plan.nodes[r.node].timeout;
        let NodeState::Running(state) = &mut self.frames[r.frame].states[r.node] else { return };
        if state.attempt != task.attempt || state.task != TaskState::Active {
            return;
        }
        let message = format!("timed out after {}: the node is considered stuck", crate::duration::Duration(timeout));
        state.task = TaskState::Stopping { then: Some(message) };
        self.emit(Transition::Stop { task });
    }

    pub(super) fn on_done(&mut self, task: Task, result: Result<Map<String, Value>, TaskError>) {
        let r = task.node;
        let (seq, how) = match &self.frames[r.frame].states[r.node] {
            NodeState::Running(s) if s.attempt == task.attempt && s.task != TaskState::Waiting => {
                (s.seq, s.task.clone())
            }
            _ => return,
        };
        self.running.remove(&seq);
        let result = match &how {
            TaskState::Stopping { then: Some(timeout) } => Err(TaskError::new(timeout.clone())),
            _ => result,
        };
        match result {
            // What a task finished before it could be stopped still counts.
            Ok(outputs) => self.succeed_node(r, task.attempt, Value::Object(outputs)),
            // Stopped because the run stops or fails elsewhere: not a failure of its
            // own. Its checkpoint stays `running`, so a resume runs it again.
            Err(_) if how == (TaskState::Stopping { then: None }) => {
                self.frames[r.frame].states[r.node] = NodeState::Pending;
            }
            Err(error) => {
                let retry = self.frames[r.frame].plan.nodes[r.node].retry;
                if task.attempt < retry.attempts && self.accepting() {
                    let next = Task { node: r, attempt: task.attempt + 1, undo: false };
                    let delay = retry.delay_before(next.attempt);
                    if let NodeState::Running(state) = &mut self.frames[r.frame].states[r.node] {
                        state.attempt = next.attempt;
                        state.task = TaskState::Waiting;
                        state.fraction = 0.0;
                    }
                    // It keeps its place (and its `--parallel` slot) while it waits.
                    self.running.insert(seq, r);
                    let id = self.frames[r.frame].qualified(r.node);
                    self.record(Change::NodeRetrying { id, attempt: next.attempt, delay, error: error.message });
                    self.emit(Transition::Timer { task: next, after: delay });
                } else {
                    self.fail_node(r, task.attempt, error.message, error.environment);
                }
            }
        }
    }

    pub(super) fn succeed_node(&mut self, r: NodeRef, attempt: u32, outputs: Value) {
        let outputs = self.masker.mask_json(outputs);
        let plan = Arc::clone(&self.frames[r.frame].plan);
        let spec = &plan.nodes[r.node];
        let id = self.frames[r.frame].qualified(r.node);
        let result = match &spec.result_metadata {
            Some(block) => {
                let scope = self.node_scope(r, &[("outputs", outputs.clone())]);
                match self.render(r.frame, block, Purpose::Record, &scope, "result_metadata") {
                    Ok(v) => Some(v),
                    // The action did its work; a broken result template fails the node.
                    Err(e) => return self.fail_node(r, attempt, e, false),
                }
            }
            None => None,
        };
        let started_at = match &self.frames[r.frame].states[r.node] {
            NodeState::Running(state) => Some(state.started_at.clone()),
            _ => self.frames.iter().find(|f| f.parent == Some((r.frame, r.node))).and_then(|f| f.started_at.clone()),
        };
        self.done_share += self.frames[r.frame].node_share(r.node);
        let ready = self.frames[r.frame].complete(r.node, true, Some(outputs.clone()));
        self.push_ready(r.frame, ready);
        self.update_progress();
        if let Some(p) = self.running_phase() {
            self.phase = p;
        }
        let node_phase = spec.phase.clone().unwrap_or_else(|| self.phase.clone());
        self.record(Change::NodeSucceeded { id, attempt, outputs, started_at, result, node_phase });
        self.frame_finished(r.frame);
        self.settle_fan(r.frame);
    }

    pub(super) fn skip(&mut self, r: NodeRef) {
        let id = self.frames[r.frame].qualified(r.node);
        self.done_share += self.frames[r.frame].node_share(r.node);
        let ready = self.frames[r.frame].complete(r.node, false, None);
        self.push_ready(r.frame, ready);
        self.update_progress();
        self.record(Change::NodeSkipped { id });
        self.frame_finished(r.frame);
        self.settle_fan(r.frame);
    }

    fn frame_finished(&mut self, frame: usize) {
        if self.frames[frame].unfinished == 0 && self.frames[frame].parent.is_some() {
            self.complete_child(frame);
        }
    }

    /// A sub-pipeline finished: its node succeeds with the outputs it declares.
    pub(super) fn complete_child(&mut self, child: usize) {
        let (parent, node) = self.frames[child].parent.expect("a child frame has a parent");
        let parent_ref = NodeRef { frame: parent, node };
        // Inside an item that failed already (`on_failure: continue`): nothing to finish.
        if matches!(self.frames[parent].states[node], NodeState::Failed) {
            return;
        }
        if self.frames[child].fan.is_some() {
            self.done_share -= self.frames[parent].node_share(node);
            if !self.frames[child].has_weight() {
                self.done_share += self.frames[child].share;
            }
            let outputs = self.fan_outputs(child);
            return self.succeed_node(parent_ref, 1, outputs);
        }
        if !self.frames[child].has_weight() {
            self.done_share += self.frames[child].share;
        }
        let plan = Arc::clone(&self.frames[child].plan);
        let mut outputs = Map::new();
        for (name, block) in &plan.outputs {
            match self.render(child, block, Purpose::Action, &[], &format!("outputs.{name}")) {
                Ok(v) => {
                    outputs.insert(name.clone(), v);
                }
                Err(e) => {
                    let e = format!("output `{name}` of `{}`: {e}", plan.name);
                    return self.fail_node(parent_ref, 1, e, false);
                }
            }
        }
        // Its weight was counted through its children: do not count it again.
        self.done_share -= self.frames[parent].node_share(node);
        self.succeed_node(parent_ref, 1, Value::Object(outputs));
    }

    /// A node failed for good: the enclosing sub-pipeline nodes fail with it, the
    /// first failure is the run's, and every other running task is asked to stop.
    pub(super) fn fail_node(&mut self, r: NodeRef, attempt: u32, error: String, environment: bool) {
        let id = self.frames[r.frame].qualified(r.node);
        let phase = self.frames[r.frame].plan.nodes[r.node].phase.clone().unwrap_or_else(|| self.phase.clone());
        let mut started_at = None;
        if let NodeState::Running(state) = &self.frames[r.frame].states[r.node] {
            self.running.remove(&state.seq);
            started_at = Some(state.started_at.clone());
        }
        self.frames[r.frame].states[r.node] = NodeState::Failed;
        // A `foreach` node keeps the names of its items with its failure.
        let fanned = self.frames.iter().find(|f| f.parent == Some((r.frame, r.node)) && f.fan.is_some());
        match fanned.map(|f| f.selection.clone()) {
            Some(selection) => self.record(Change::FrameFailed { id: id.clone(), error: error.clone(), selection }),
            None => self.record(Change::NodeFailed { id: id.clone(), attempt, error: error.clone(), started_at }),
        }
        // Inside an item that failed already: it was counted then.
        if self.frame_dead(r.frame) {
            return;
        }
        // An item of a `foreach` with `on_failure: continue` fails alone.
        let alone = |core: &Core, frame: usize| {
            core.accepting() && core.frames[frame].fan.as_ref().is_some_and(|fan| fan.keep_going)
        };
        if alone(self, r.frame) {
            return self.item_failed(r.frame, id, error);
        }
        let mut child = r.frame;
        while let Some((parent, node)) = self.frames[child].parent {
            let message = match self.frames[child].fan {
                Some(_) => format!("`{id}` failed"),
                None => format!("sub-pipeline `{}` failed at `{id}`", self.frames[child].plan.name),
            };
            let parent_id = self.frames[parent].qualified(node);
            let selection = self.frames[child].selection.clone();
            self.frames[parent].states[node] = NodeState::Failed;
            self.record(Change::FrameFailed { id: parent_id.clone(), error: message, selection });
            if alone(self, parent) {
                return self.item_failed(parent, parent_id, format!("{error} (at `{id}`)"));
            }
            child = parent;
        }
        if self.failure.is_none() {
            self.failure = Some(Failure { node: id, phase, error, environment });
        }
        if matches!(self.mode, Mode::Running | Mode::Draining { .. } | Mode::Stopping { .. }) {
            self.mode = Mode::Failing;
            self.stop_running();
        }
    }
}
