//! How a run ends: ACTIVE; stopped (cancelled, interrupted, superseded); or FAILED,
//! after the `undo` of every succeeded node that has one ran, latest first, one at a
//! time, each through the same launch path as any task.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::frame::NodeState;
use super::machine::Core;
use super::mode::{Mode, Undoing};
use super::scope::Purpose;
use super::transition::{Change, Launch, NodeRef, Task, TaskError, Transition};
use crate::engine::Outcome;
use crate::model::RunStatus;
use crate::phase;
use crate::plan::NodeKind;

impl Core {
    /// Every node still running has stopped: undo what succeeded, latest first.
    pub(super) fn begin_undo(&mut self) {
        let mut queue = Vec::new();
        for (f, frame) in self.frames.iter().enumerate() {
            for &n in &frame.plan.order {
                if matches!(frame.states[n], NodeState::Succeeded)
                    && frame.plan.nodes[n].undo.is_some()
                    && !self.kept_by_fan(NodeRef { frame: f, node: n })
                {
                    queue.push(NodeRef { frame: f, node: n });
                }
            }
        }
        self.mode = Mode::Undoing(Undoing { queue, ..Undoing::default() });
    }

    /// Launches the next undo step that can run; false when none is left.
    pub(super) fn next_undo(&mut self) -> bool {
        loop {
            let Mode::Undoing(undoing) = &mut self.mode else { return false };
            let Some(r) = undoing.queue.pop() else { return false };
            let plan = Arc::clone(&self.frames[r.frame].plan);
            let node = &plan.nodes[r.node];
            let undo = node.undo.as_ref().expect("queued for its undo");
            let id = self.frames[r.frame].qualified(r.node);
            let outputs =
                self.frames[r.frame].outputs.get(&node.id).map_or_else(|| json!({}), |o| o["outputs"].clone());
            let extra = self.node_scope(r, &[("outputs", outputs)]);
            let prepared = match &undo.condition {
                Some(condition) => match self.condition(r.frame, condition, &extra) {
                    Ok(true) => self.prepare(r.frame, undo.action, undo.with.as_ref(), &extra, "undo.with").map(Some),
                    Ok(false) => Ok(None),
                    Err(e) => Err(format!("`undo.if`: {e}")),
                },
                None => self.prepare(r.frame, undo.action, undo.with.as_ref(), &extra, "undo.with").map(Some),
            };
            let with = match prepared {
                Ok(Some(with)) => with,
                Ok(None) => continue,
                Err(e) => {
                    self.undoing().errors.insert(id, json!(e));
                    continue;
                }
            };
            let undo_id = self.frames[r.frame].path(r.node).join("undo").to_string();
            self.undoing().current = Some(r);
            self.record(Change::UndoStarted { id: undo_id.clone(), of: id });
            let task = Task { node: r, attempt: 1, undo: true };
            let launch =
                Launch { task, id: undo_id, action: undo.action, with, timeout: node.timeout, grace: node.grace };
            self.emit(Transition::Launch(launch));
            return true;
        }
    }

    fn undoing(&mut self) -> &mut Undoing {
        match &mut self.mode {
            Mode::Undoing(undoing) => undoing,
            _ => unreachable!("only called while undoing"),
        }
    }

    pub(super) fn on_undo_done(&mut self, task: Task, result: Result<Map<String, Value>, TaskError>) {
        let Mode::Undoing(undoing) = &mut self.mode else { return };
        if undoing.current != Some(task.node) {
            return;
        }
        undoing.current = None;
        let r = task.node;
        let path = self.frames[r.frame].path(r.node);
        let (id, undo_id) = (path.to_string(), path.join("undo").to_string());
        match result {
            Ok(_) => {
                self.record(Change::UndoSucceeded { id: undo_id, of: id.clone() });
                self.forget_from(r);
                self.undoing().reverted.push(id);
            }
            Err(error) => {
                self.record(Change::UndoFailed { id: undo_id, of: id.clone(), error: error.message.clone() });
                self.undoing().errors.insert(id, json!(error.message));
            }
        }
    }

    /// Forgets the checkpoints of a node and of everything after it that finished,
    /// so that a resume does them again in order.
    fn forget_from(&mut self, r: NodeRef) {
        let f = &self.frames[r.frame];
        let (mut nodes, mut prefixes) = (Vec::new(), Vec::new());
        let mut queue = vec![r.node];
        let mut seen = HashSet::new();
        while let Some(i) = queue.pop() {
            if !seen.insert(i) || matches!(f.states[i], NodeState::Failed) {
                continue;
            }
            let path = f.path(i);
            if matches!(f.plan.nodes[i].kind, NodeKind::Pipeline(_)) {
                prefixes.push(path.inside_prefix());
            }
            nodes.push(path.to_string());
            queue.extend(f.dependents[i].iter().copied());
        }
        self.record(Change::Forget { nodes, prefixes });
    }

    pub(super) fn succeed_run(&mut self) {
        self.progress = 100;
        self.phase = phase::ACTIVE.to_string();
        let plan = Arc::clone(&self.frames[0].plan);
        let metadata = match &plan.on_success {
            Some(block) => self
                .render(0, block, Purpose::Record, &[], "on_success.metadata")
                .unwrap_or_else(|e| json!({ "onSuccessError": e })),
            None => json!({}),
        };
        self.record(Change::RunSucceeded { metadata });
        self.mode = Mode::Done(Outcome::Succeeded);
    }

    /// Records FAILED: where it failed, what was reverted, and what `on_failure` adds.
    pub(super) fn fail_run(&mut self) {
        let failure = self.failure.take().expect("a failing run has a failure");
        let undoing = match std::mem::replace(&mut self.mode, Mode::Failing) {
            Mode::Undoing(undoing) => undoing,
            _ => Undoing::default(),
        };
        let reached = self.progress;
        let error = json!({
            "message": failure.error, "node": failure.node, "phase": failure.phase, "progress": reached,
            "reverted": undoing.reverted,
        });
        let mut metadata = Map::new();
        metadata.insert("error".into(), json!(failure.error));
        metadata.insert("failedNode".into(), json!(failure.node));
        metadata.insert("failedPhase".into(), json!(failure.phase));
        metadata.insert("progressReached".into(), json!(reached));
        if !undoing.reverted.is_empty() {
            metadata.insert("reverted".into(), json!(undoing.reverted));
        }
        if !undoing.errors.is_empty() {
            metadata.insert("revertErrors".into(), Value::Object(undoing.errors));
        }
        let plan = Arc::clone(&self.frames[0].plan);
        if let Some(block) = &plan.on_failure {
            match self.render(0, block, Purpose::Record, &[("error", error)], "on_failure.metadata") {
                Ok(Value::Object(extra)) => metadata.extend(extra),
                Ok(_) => {}
                Err(e) => {
                    metadata.insert("onFailureError".into(), json!(e));
                }
            }
        }
        self.phase = phase::FAILED.to_string();
        self.progress = 0;
        let summary = format!("node `{}` ({}): {}", failure.node, failure.phase, failure.error);
        let change =
            Change::RunFailed { node: failure.node, error: failure.error, summary, metadata: Value::Object(metadata) };
        self.record(change);
        self.mode = Mode::Done(if failure.environment { Outcome::FailedEnvironment } else { Outcome::Failed });
    }

    /// Every stopped task has ended: the run stays resumable.
    pub(super) fn end_stopped(&mut self, status: RunStatus, reason: String) {
        self.record(Change::RunStopped { status, reason });
        self.mode = Mode::Done(if status == RunStatus::Cancelled { Outcome::Cancelled } else { Outcome::Interrupted });
    }
}
