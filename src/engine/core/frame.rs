//! One pipeline instance inside a run: the root pipeline, or a sub-pipeline started by
//! a node of its parent. It knows which of its nodes are done, which wait for which,
//! and the outputs its templates may read.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::model::{NodePath, NodeRow, NodeStatus};
use crate::plan::Plan;

pub(crate) struct Frame {
    pub(crate) plan: Arc<Plan>,
    /// The node whose plan this frame runs (the root for the run's own): its nodes'
    /// qualified ids are under it (`source.clone`, `deploy[host-a]`).
    pub(crate) at: NodePath,
    /// The node (frame, node) that started this frame.
    pub(crate) parent: Option<(usize, usize)>,
    /// This frame's share of the whole run, 0..=1.
    pub(crate) share: f64,
    pub(crate) inputs: Map<String, Value>,
    pub(crate) states: Vec<NodeState>,
    /// For each node, how many of its `needs` have not finished.
    pub(crate) waiting_on: Vec<usize>,
    pub(crate) dependents: Vec<Vec<usize>>,
    /// Nodes not yet succeeded or skipped.
    pub(crate) unfinished: usize,
    /// `nodes.<id>.outputs` for templates: `{id: {"outputs": {...}}}`.
    pub(crate) outputs: Map<String, Value>,
    /// Each node's place in `plan.order`, for a deterministic ready queue.
    pub(crate) position: Vec<usize>,
    /// For a sub-pipeline: the alternative and inputs its node recorded, and when it
    /// started.
    pub(crate) selection: Option<Value>,
    pub(crate) started_at: Option<String>,
    /// For the items of a `foreach` node: what each of its nodes is the copy for.
    pub(crate) fan: Option<Fan>,
    total_weight: f64,
}

/// The items of a `foreach` node, one node of the frame each.
#[derive(Debug)]
pub(crate) struct Fan {
    /// `item` of each node, by index.
    pub(crate) items: Vec<Value>,
    pub(crate) keys: Vec<String>,
    /// At most this many items at once (0: no bound of its own).
    pub(crate) limit: usize,
    pub(crate) keep_going: bool,
    /// The items that failed (with `keep_going`): qualified id, error.
    pub(crate) failed: Vec<(String, String)>,
}

#[derive(Debug)]
pub(crate) enum NodeState {
    Pending,
    Running(Running),
    /// A sub-pipeline node whose frame is running.
    Child,
    Succeeded,
    Skipped,
    Failed,
}

#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) attempt: u32,
    pub(crate) started_at: String,
    pub(crate) fraction: f64,
    /// Start order, for "the phase of the node that started most recently".
    pub(crate) seq: u64,
    pub(crate) task: TaskState,
}

/// Where a running node's task is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TaskState {
    /// Its action runs.
    Active,
    /// It waits for the backoff before its next attempt.
    Waiting,
    /// It was asked to stop; when it ends, `then` is the failure to record (a
    /// timeout), or nothing (the run is stopping or failing elsewhere).
    Stopping { then: Option<String> },
}

impl Frame {
    /// A frame whose nodes that already succeeded or were skipped (per `checkpoints`,
    /// keyed by qualified id) are restored as done, with their recorded outputs.
    pub(crate) fn new(
        plan: Arc<Plan>,
        at: NodePath,
        parent: Option<(usize, usize)>,
        share: f64,
        inputs: Map<String, Value>,
        checkpoints: &HashMap<String, NodeRow>,
    ) -> Frame {
        let n = plan.nodes.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, node) in plan.nodes.iter().enumerate() {
            for &dep in &node.needs {
                dependents[dep].push(i);
            }
        }
        let mut position = vec![0; n];
        for (i, &node) in plan.order.iter().enumerate() {
            position[node] = i;
        }
        let mut frame = Frame {
            total_weight: plan.total_weight(),
            plan,
            at,
            parent,
            share,
            inputs,
            states: Vec::with_capacity(n),
            waiting_on: vec![0; n],
            dependents,
            unfinished: n,
            outputs: Map::new(),
            position,
            selection: None,
            started_at: None,
            fan: None,
        };
        for i in 0..n {
            let row = checkpoints.get(&frame.qualified(i));
            let state = match row.map(|r| r.status) {
                Some(NodeStatus::Succeeded) => {
                    let outputs = row.and_then(|r| r.outputs.clone()).unwrap_or(Value::Object(Map::new()));
                    frame.outputs.insert(frame.plan.nodes[i].id.clone(), serde_json::json!({ "outputs": outputs }));
                    frame.unfinished -= 1;
                    NodeState::Succeeded
                }
                Some(NodeStatus::Skipped) => {
                    frame.unfinished -= 1;
                    NodeState::Skipped
                }
                _ => NodeState::Pending,
            };
            frame.states.push(state);
        }
        for i in 0..n {
            frame.waiting_on[i] = frame.plan.nodes[i].needs.iter().filter(|&&d| !frame.is_done(d)).count();
        }
        frame
    }

    pub(crate) fn qualified(&self, node: usize) -> String {
        self.path(node).to_string()
    }

    /// Where a node of this frame sits in the run.
    pub(crate) fn path(&self, node: usize) -> NodePath {
        self.at.join(&self.plan.nodes[node].id)
    }

    /// The node's share of the whole run.
    pub(crate) fn node_share(&self, node: usize) -> f64 {
        if self.total_weight > 0.0 { self.share * self.plan.nodes[node].weight / self.total_weight } else { 0.0 }
    }

    /// Whether the nodes' weights give this frame's share out (else it is counted
    /// when the frame completes).
    pub(crate) fn has_weight(&self) -> bool {
        self.total_weight > 0.0
    }

    pub(crate) fn is_done(&self, node: usize) -> bool {
        matches!(self.states[node], NodeState::Succeeded | NodeState::Skipped)
    }

    /// How many of its nodes are under way (running, retrying, or a sub-pipeline).
    pub(crate) fn under_way(&self) -> usize {
        self.states.iter().filter(|s| matches!(s, NodeState::Running(_) | NodeState::Child)).count()
    }

    /// Pending nodes whose needs are all done.
    pub(crate) fn ready(&self) -> Vec<usize> {
        (0..self.states.len())
            .filter(|&i| matches!(self.states[i], NodeState::Pending) && self.waiting_on[i] == 0)
            .collect()
    }

    /// Marks `node` done and returns the nodes that became ready.
    pub(crate) fn complete(&mut self, node: usize, succeeded: bool, outputs: Option<Value>) -> Vec<usize> {
        self.states[node] = if succeeded { NodeState::Succeeded } else { NodeState::Skipped };
        if let Some(outputs) = outputs {
            self.outputs.insert(self.plan.nodes[node].id.clone(), serde_json::json!({ "outputs": outputs }));
        }
        self.unfinished -= 1;
        let mut ready = Vec::new();
        for i in 0..self.dependents[node].len() {
            let dep = self.dependents[node][i];
            self.waiting_on[dep] -= 1;
            if self.waiting_on[dep] == 0 && matches!(self.states[dep], NodeState::Pending) {
                ready.push(dep);
            }
        }
        ready
    }
}
