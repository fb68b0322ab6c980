//! The state of a run and the one entry point that changes it: [`Core::handle`] takes
//! a message and returns the transitions it causes. Scheduling (the ready queue and
//! `--parallel`), the modes a run goes through (running, draining, stopping, failing,
//! undoing, done) and the end conditions live here; what starting and finishing a node
//! means is in `launch.rs`, `finish.rs` and `end.rs`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::frame::{Frame, NodeState, TaskState};
use super::mode::Mode;
use super::scope::{DeploymentInfo, Purpose, Scope};
use super::transition::{Change, Msg, NodeRef, Record, Task, Transition};
use crate::engine::Outcome;
use crate::model::{NodePath, NodeRow, RunStatus};
use crate::plan::Plan;
use crate::secrets::{Masker, Secrets};

/// Where the run failed.
#[derive(Clone, Debug)]
pub(super) struct Failure {
    pub(super) node: String,
    pub(super) phase: String,
    pub(super) error: String,
    pub(super) environment: bool,
}

/// Everything that is true about a run while it executes. Pure: no I/O, no clock, no
/// async; the driver (`engine::driver`) feeds it messages and carries out what it
/// returns.
pub(crate) struct Core {
    pub(super) deployment: DeploymentInfo,
    pub(super) secrets: Secrets,
    pub(super) masker: Masker,
    pub(super) frames: Vec<Frame>,
    /// Ready nodes, in plan order: (frame, position in its plan's order, node).
    ready: BinaryHeap<Reverse<(usize, usize, usize)>>,
    /// Running action nodes by start order. Progress and the current phase are
    /// computed from these alone, so a large run stays linear.
    pub(super) running: BTreeMap<u64, NodeRef>,
    parallel: usize,
    pub(super) done_share: f64,
    pub(super) progress: u8,
    pub(super) phase: String,
    pub(super) seq: u64,
    /// The checkpoints a resumed run started from, by qualified id.
    pub(super) checkpoints: HashMap<String, NodeRow>,
    pub(super) failure: Option<Failure>,
    pub(super) mode: Mode,
    /// The time of the message being handled.
    pub(super) at: String,
    out: Vec<Transition>,
}

/// What a core starts from.
pub(crate) struct CoreStart {
    pub(crate) plan: Arc<Plan>,
    pub(crate) deployment: DeploymentInfo,
    pub(crate) inputs: Map<String, Value>,
    pub(crate) secrets: Secrets,
    /// Checkpoints of an earlier attempt (empty for a new run).
    pub(crate) checkpoints: HashMap<String, NodeRow>,
    pub(crate) progress: u8,
    pub(crate) phase: String,
    pub(crate) parallel: usize,
}

impl Core {
    pub(crate) fn new(start: CoreStart) -> Core {
        let masker = start.secrets.masker();
        let root = Frame::new(start.plan, NodePath::root(), None, 1.0, start.inputs, &start.checkpoints);
        let mut core = Core {
            deployment: start.deployment,
            secrets: start.secrets,
            masker,
            frames: Vec::new(),
            ready: BinaryHeap::new(),
            running: BTreeMap::new(),
            parallel: start.parallel.max(1),
            done_share: 0.0,
            progress: start.progress,
            phase: start.phase,
            seq: 0,
            checkpoints: start.checkpoints,
            failure: None,
            mode: Mode::Running,
            at: String::new(),
            out: Vec::new(),
        };
        core.add_frame(root);
        core
    }

    /// How the run ended, once it has.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        match self.mode {
            Mode::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    pub(crate) fn run_id(&self) -> &str {
        &self.deployment.id
    }

    /// Takes one message (which happened at `at`, RFC 3339) and returns what follows.
    pub(crate) fn handle(&mut self, at: &str, msg: Msg) -> Vec<Transition> {
        self.at.clear();
        self.at.push_str(at);
        if self.outcome().is_none() {
            self.take(msg);
            self.advance();
        }
        std::mem::take(&mut self.out)
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Start { resumed } => self.record(Change::RunStarted { resumed }),
            Msg::Progress { task, fraction } => self.on_progress(task, fraction),
            Msg::Done { task, result } if task.undo => self.on_undo_done(task, result),
            Msg::Done { task, result } => self.on_done(task, result),
            Msg::TimedOut { task } => self.on_timed_out(task),
            Msg::Timer { task } => self.on_timer(task),
            Msg::Cancel => self.stop_all(RunStatus::Cancelled, "cancelled by `phased cancel`"),
            Msg::Signal { name } => self.stop_all(RunStatus::Interrupted, &format!("interrupted by {name}")),
            Msg::Drain { reason, status } => {
                if matches!(self.mode, Mode::Running) {
                    self.mode = Mode::Draining { reason, status };
                }
            }
        }
    }

    /// Starts what can start and ends the run when it is over, until nothing changes.
    fn advance(&mut self) {
        loop {
            match &self.mode {
                Mode::Running => {
                    // Items of a `foreach` beyond its `parallel` wait for their turn.
                    let mut held = Vec::new();
                    while matches!(self.mode, Mode::Running) && self.running.len() < self.parallel {
                        let Some(Reverse(entry)) = self.ready.pop() else { break };
                        let (frame, _, node) = entry;
                        if self.frame_dead(frame) {
                            continue;
                        }
                        if self.frame_full(frame) {
                            held.push(entry);
                            continue;
                        }
                        self.start_node(NodeRef { frame, node });
                    }
                    for entry in held {
                        self.ready.push(Reverse(entry));
                    }
                    if !matches!(self.mode, Mode::Running) {
                        continue;
                    }
                    if self.frames[0].unfinished == 0 {
                        self.succeed_run();
                    }
                    return;
                }
                Mode::Draining { reason, status } => {
                    if self.frames[0].unfinished == 0 {
                        self.succeed_run();
                    } else if self.running.is_empty() {
                        let (reason, status) = (reason.clone(), *status);
                        self.end_stopped(status, reason);
                    }
                    return;
                }
                Mode::Stopping { status, reason } => {
                    // What was running finished after all, and nothing is left to do.
                    if self.frames[0].unfinished == 0 {
                        self.succeed_run();
                    } else if self.running.is_empty() {
                        let (status, reason) = (*status, reason.clone());
                        self.end_stopped(status, reason);
                    }
                    return;
                }
                Mode::Failing => {
                    if !self.running.is_empty() {
                        return;
                    }
                    self.begin_undo();
                }
                Mode::Undoing(undoing) => {
                    if undoing.current.is_some() {
                        return;
                    }
                    if !self.next_undo() {
                        self.fail_run();
                    }
                }
                Mode::Done(_) => return,
            }
        }
    }

    /// Whether new attempts (retries) may still begin.
    pub(super) fn accepting(&self) -> bool {
        matches!(self.mode, Mode::Running | Mode::Draining { .. })
    }

    /// Asks every running task to stop; the run ends `status` once they have.
    fn stop_all(&mut self, status: RunStatus, reason: &str) {
        if !self.accepting() {
            return;
        }
        self.mode = Mode::Stopping { status, reason: reason.to_string() };
        self.stop_running();
    }

    /// Stops the running tasks: a waiting retry is dropped at once, an active one is
    /// asked to stop (and reports back when it has).
    pub(super) fn stop_running(&mut self) {
        let running: Vec<(u64, NodeRef)> = self.running.iter().map(|(&s, &n)| (s, n)).collect();
        for (seq, r) in running {
            let NodeState::Running(state) = &mut self.frames[r.frame].states[r.node] else { continue };
            match state.task {
                TaskState::Waiting => {
                    self.running.remove(&seq);
                    self.frames[r.frame].states[r.node] = NodeState::Pending;
                }
                TaskState::Active => {
                    state.task = TaskState::Stopping { then: None };
                    let task = Task { node: r, attempt: state.attempt, undo: false };
                    self.out.push(Transition::Stop { task });
                }
                TaskState::Stopping { .. } => {}
            }
        }
    }

    pub(super) fn add_frame(&mut self, frame: Frame) -> usize {
        let index = self.frames.len();
        for node in 0..frame.states.len() {
            if frame.is_done(node) {
                self.done_share += frame.node_share(node);
            }
        }
        for node in frame.ready() {
            self.ready.push(Reverse((index, frame.position[node], node)));
        }
        self.frames.push(frame);
        index
    }

    pub(super) fn push_ready(&mut self, frame: usize, nodes: Vec<usize>) {
        for node in nodes {
            self.ready.push(Reverse((frame, self.frames[frame].position[node], node)));
        }
    }

    /// Records a change at the run's current phase and progress.
    pub(super) fn record(&mut self, change: Change) {
        self.record_at(self.phase.clone(), self.progress, change);
    }

    pub(super) fn record_at(&mut self, phase: String, progress: u8, change: Change) {
        self.out.push(Transition::Record(Record { at: self.at.clone(), phase, progress, change }));
    }

    pub(super) fn emit(&mut self, transition: Transition) {
        self.out.push(transition);
    }

    /// The template context of a frame, for actions or for records, plus `extra`.
    pub(super) fn context(&self, frame: usize, purpose: Purpose, extra: &[(&str, Value)]) -> minijinja::Value {
        let f = &self.frames[frame];
        let scope = Scope {
            deployment: &self.deployment,
            inputs: &f.inputs,
            nodes: &f.outputs,
            secrets: &self.secrets,
            now: &self.at,
        };
        scope.context(purpose, extra)
    }

    /// Recomputes progress; true when the integer moved forward. It never goes back
    /// and reaches 100 only at ACTIVE.
    pub(super) fn update_progress(&mut self) -> bool {
        let mut share = self.done_share;
        for r in self.running.values() {
            if let NodeState::Running(state) = &self.frames[r.frame].states[r.node] {
                share += self.frames[r.frame].node_share(r.node) * state.fraction;
            }
        }
        let value = ((share * 100.0).floor() as i64).clamp(0, 99) as u8;
        if value > self.progress {
            self.progress = value;
            true
        } else {
            false
        }
    }

    /// The phase of the most recently started node still running, if any.
    pub(super) fn running_phase(&self) -> Option<String> {
        self.running.values().rev().find_map(|r| self.frames[r.frame].plan.nodes[r.node].phase.clone())
    }
}
