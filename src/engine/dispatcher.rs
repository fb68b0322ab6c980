//! The dispatcher owns everything about a run while it executes: the store (one
//! SQLite connection), every frame's node states, progress and phase. Node actions
//! run as tasks on the same single-threaded runtime and report back by message, so no
//! state is shared across tasks and nothing crosses a thread on the hot path.
//!
//! Each turn of the loop: start every ready node (up to `--parallel`), write what
//! changed in one transaction (so checkpoints that happen together cost one commit),
//! then wait for the next message, heartbeat tick or signal.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::context::{DeploymentInfo, Purpose, Scope};
use super::events::{Event, EventKind, Reporter};
use super::frame::{Frame, NodeState, Running};
use super::{Outcome, now};
use crate::action::{ActionCtx, ActionError, ActionOutputs, NodeLog, ProgressReporter};
use crate::compiler::inputs;
use crate::phase;
use crate::plan::{NodeKind, Plan, SubPipeline};
use crate::secrets::{Masker, Secrets};
use crate::store::{Lease, NodeRow, NodeStatus, RunStatus, Store, StoreError, Write};
use crate::template;

/// How often the holder of a run writes its heartbeat and looks for a cancel request.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

enum Msg {
    Progress { frame: usize, node: usize, attempt: u32, fraction: f64 },
    Done { frame: usize, node: usize, attempt: u32, result: Result<ActionOutputs, ActionError> },
}

/// Where the run failed.
struct Failure {
    node: String,
    phase: String,
    error: String,
    /// The environment, not the deployment, is at fault.
    environment: bool,
}

pub struct Dispatcher<'r> {
    store: Store,
    deployment: DeploymentInfo,
    lease: Lease,
    frames: Vec<Frame>,
    ready: BinaryHeap<Reverse<(usize, usize, usize)>>,
    /// Running action nodes by start order: (frame, node). Progress and the current
    /// phase are computed from these alone, so a large run stays linear.
    running: BTreeMap<u64, (usize, usize)>,
    parallel: usize,
    done_share: f64,
    progress: u8,
    phase: String,
    seq: u64,
    batch: Vec<Write>,
    reporter: &'r mut dyn Reporter,
    tx: UnboundedSender<Msg>,
    rx: UnboundedReceiver<Msg>,
    secrets: Secrets,
    masker: Masker,
    checkpoints: HashMap<String, NodeRow>,
    logs: PathBuf,
    work: PathBuf,
    run_key: String,
    failure: Option<Failure>,
    /// A graceful stop was asked for: start nothing new, stop when nothing runs.
    draining: bool,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
}

pub struct Start<'r> {
    pub store: Store,
    pub plan: Arc<Plan>,
    pub deployment: DeploymentInfo,
    pub lease: Lease,
    pub inputs: Map<String, Value>,
    pub checkpoints: HashMap<String, NodeRow>,
    pub progress: u8,
    pub phase: String,
    pub options: super::Options<'r>,
}

impl<'r> Dispatcher<'r> {
    pub fn new(start: Start<'r>) -> Self {
        let (tx, rx) = unbounded_channel();
        let options = start.options;
        let masker = options.secrets.masker();
        let root = Frame::new(start.plan, String::new(), None, 1.0, start.inputs, &start.checkpoints);
        let run = &start.deployment.id;
        let mut dispatcher = Dispatcher {
            logs: options.data_dir.join("logs").join(run),
            work: start.deployment.work_dir.clone(),
            run_key: crate::process::run_key(run, start.store.path()),
            store: start.store,
            deployment: start.deployment,
            lease: start.lease,
            frames: Vec::new(),
            ready: BinaryHeap::new(),
            running: BTreeMap::new(),
            parallel: options.parallel.max(1),
            done_share: 0.0,
            progress: start.progress,
            phase: start.phase,
            seq: 0,
            batch: Vec::new(),
            reporter: options.reporter,
            tx,
            rx,
            secrets: options.secrets,
            masker,
            checkpoints: start.checkpoints,
            failure: None,
            draining: false,
            stop: options.stop,
        };
        dispatcher.add_frame(root);
        dispatcher
    }

    fn add_frame(&mut self, frame: Frame) -> usize {
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

    /// Runs to the end: ACTIVE, FAILED, or stopped (signal, cancel).
    pub async fn run(mut self, resumed: bool) -> Result<Outcome, StoreError> {
        let kind = if resumed { EventKind::RunResumed } else { EventKind::RunStarted };
        self.emit(kind, None, Value::Object(Map::new()), None, None);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).expect("SIGINT handler installs");
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        loop {
            self.schedule();
            if self.failure.is_some() {
                return self.fail().await;
            }
            if self.frames[0].unfinished == 0 {
                return self.succeed();
            }
            if self.draining && self.running.is_empty() {
                self.flush()?;
                return self.stop(RunStatus::Cancelled, "superseded by newer changes");
            }
            self.flush()?;
            let stop_requested = async {
                match self.stop.as_mut() {
                    Some(stop) => {
                        let _ = stop.wait_for(|s| *s).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop_requested, if !self.draining => {
                    tracing::info!(run = %self.deployment.id, "Stop requested; finishing the running nodes.");
                    self.draining = true;
                }
                _ = interrupt.recv() => return self.stop(RunStatus::Interrupted, "interrupted by SIGINT"),
                _ = terminate.recv() => return self.stop(RunStatus::Interrupted, "interrupted by SIGTERM"),
                msg = self.rx.recv() => {
                    if let Some(msg) = msg {
                        self.handle(msg);
                    }
                    while let Ok(msg) = self.rx.try_recv() {
                        self.handle(msg);
                    }
                }
                _ = heartbeat.tick() => {
                    self.batch.push(Write::Heartbeat { run: self.deployment.id.clone(), owner: self.lease.owner.clone(), at_ms: now_ms() });
                    self.flush()?;
                    if self.store.cancel_requested(&self.deployment.id)? {
                        return self.stop(RunStatus::Cancelled, "cancelled by `phased cancel`");
                    }
                }
            }
        }
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut self.batch);
        self.store.write(&batch)
    }

    fn emit(
        &mut self,
        kind: EventKind,
        node: Option<String>,
        metadata: Value,
        attempt: Option<u32>,
        error: Option<String>,
    ) {
        let event = Event {
            ts: now(),
            event: kind,
            deployment: self.deployment.id.clone(),
            node,
            phase: self.phase.clone(),
            progress: self.progress,
            metadata,
            attempt,
            error,
            writes: Vec::new(),
        };
        self.reporter.event(&event);
    }

    fn emit_started(&mut self, id: String, metadata: Value, writes: Vec<std::path::PathBuf>) {
        let event = Event {
            ts: now(),
            event: EventKind::NodeStarted,
            deployment: self.deployment.id.clone(),
            node: Some(id),
            phase: self.phase.clone(),
            progress: self.progress,
            metadata,
            attempt: Some(1),
            error: None,
            writes,
        };
        self.reporter.event(&event);
    }

    /// Starts ready nodes while there is room; skips and sub-pipelines start at once.
    /// Nothing new starts once a stop was requested (the run drains).
    fn schedule(&mut self) {
        while self.failure.is_none() && !self.draining && self.running.len() < self.parallel {
            let Some(Reverse((frame, _, node))) = self.ready.pop() else { break };
            self.start_node(frame, node);
        }
    }

    fn render(
        &self,
        frame: usize,
        block: &crate::yaml::Yaml,
        purpose: Purpose,
        extra: &[(&str, Value)],
    ) -> Result<Value, String> {
        let f = &self.frames[frame];
        let scope =
            Scope { deployment: &self.deployment, inputs: &f.inputs, nodes: &f.outputs, secrets: &self.secrets };
        let ctx = scope.context(purpose, extra);
        template::render_yaml(block, &ctx).map(|v| mask_for(&self.masker, purpose, v)).map_err(|e| {
            let at = if e.path.is_empty() { String::new() } else { format!("`{}`: ", e.path) };
            self.masker.mask(&format!("{at}{}", describe_template_error(&e.error))).into_owned()
        })
    }

    fn start_node(&mut self, frame: usize, node: usize) {
        let plan = Arc::clone(&self.frames[frame].plan);
        let spec = &plan.nodes[node];
        let id = self.frames[frame].qualified(node);

        if let Some(condition) = &spec.condition {
            let f = &self.frames[frame];
            let scope =
                Scope { deployment: &self.deployment, inputs: &f.inputs, nodes: &f.outputs, secrets: &self.secrets };
            let ctx = scope.context(Purpose::Action, &[]);
            let expr = condition.trim().trim_start_matches("{{").trim_end_matches("}}");
            match template::eval_condition(expr, &ctx) {
                Ok(true) => {}
                Ok(false) => return self.skip(frame, node),
                Err(e) => {
                    return self.fail_node(
                        frame,
                        node,
                        1,
                        format!("`if: {condition}`: {}", describe_template_error(&e)),
                    );
                }
            }
        }

        let metadata = match &spec.metadata {
            Some(block) => match self.render(frame, block, Purpose::Record, &[]) {
                Ok(v) => Some(v),
                Err(e) => return self.fail_node(frame, node, 1, format!("`metadata`: {e}")),
            },
            None => None,
        };
        if let Some(p) = &spec.phase {
            self.phase = p.clone();
        }
        if spec.phase.is_some() || metadata.is_some() {
            self.batch.push(Write::Phase {
                run: self.deployment.id.clone(),
                phase: self.phase.clone(),
                progress: self.progress,
                metadata: metadata.clone().unwrap_or_else(|| json!({})),
                node: Some(id.clone()),
                at: now(),
            });
        }

        match &spec.kind {
            NodeKind::Action(action) => {
                let with = match &spec.with {
                    Some(block) => match self.render(frame, block, Purpose::Action, &[]) {
                        Ok(v) => v,
                        Err(e) => return self.fail_node(frame, node, 1, format!("`with`: {e}")),
                    },
                    None => json!({}),
                };
                if let Err(e) = action.check(&with) {
                    let e = self.masker.mask(&e).into_owned();
                    return self.fail_node(frame, node, 1, format!("invalid parameters for `{}`: {e}", action.name));
                }
                let writes = action.writes(&with);
                self.emit_started(id, metadata.unwrap_or_else(|| json!({})), writes);
                self.launch(frame, node, 1, with, Duration::ZERO);
            }
            NodeKind::Pipeline(sub) => self.start_child(frame, node, sub, id, metadata),
        }
    }

    /// Spawns one attempt of an action node (after `delay`, for retries).
    fn launch(&mut self, frame: usize, node: usize, attempt: u32, with: Value, delay: Duration) {
        let plan = Arc::clone(&self.frames[frame].plan);
        let spec = &plan.nodes[node];
        let NodeKind::Action(action) = spec.kind else { unreachable!("only action nodes are launched") };
        let id = self.frames[frame].qualified(node);
        let started_at = now();
        self.batch.push(Write::Node(NodeRow {
            run: self.deployment.id.clone(),
            node: id.clone(),
            status: NodeStatus::Running,
            attempt,
            outputs: None,
            error: None,
            started_at: Some(started_at.clone()),
            finished_at: None,
        }));
        let tx = self.tx.clone();
        let progress_tx = self.tx.clone();
        let ctx = ActionCtx {
            run_id: self.deployment.id.clone(),
            run_key: self.run_key.clone(),
            node: id.clone(),
            attempt,
            log: Arc::new(NodeLog::open(&self.logs.join(format!("{id}.log")), self.masker.clone())),
            progress: Arc::new(ProgressReporter::channel(progress_tx, move |fraction| Msg::Progress {
                frame,
                node,
                attempt,
                fraction,
            })),
            work_dir: self.work.clone(),
        };
        let timeout = spec.timeout;
        tracing::debug!(run = %self.deployment.id, node = %id, attempt, ?delay, "Node launched.");
        let handle = tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let work = action.run(ctx, &with);
            let result = match tokio::time::timeout(timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(ActionError::new(format!(
                    "timed out after {}: the node is considered stuck",
                    crate::duration::Duration(timeout)
                ))),
            };
            let _ = tx.send(Msg::Done { frame, node, attempt, result });
        });
        self.seq += 1;
        self.running.insert(self.seq, (frame, node));
        self.frames[frame].states[node] = NodeState::Running(Running {
            attempt,
            started_at,
            fraction: 0.0,
            seq: self.seq,
            abort: Some(handle.abort_handle()),
        });
    }

    fn start_child(&mut self, frame: usize, node: usize, sub: &SubPipeline, id: String, metadata: Option<Value>) {
        // A resumed run reuses the selection and inputs it recorded when it started.
        let recorded =
            self.checkpoints.get(&id).and_then(|row| row.outputs.clone()).filter(|o| o.get("$selected").is_some());
        let (selected, child_inputs) = match recorded {
            Some(r) => (r["$selected"].as_str().unwrap_or_default().to_string(), r["$inputs"].clone()),
            None => {
                let plan = Arc::clone(&self.frames[frame].plan);
                let with = match &plan.nodes[node].with {
                    Some(block) => match self.render(frame, block, Purpose::Action, &[]) {
                        Ok(v) => v,
                        Err(e) => return self.fail_node(frame, node, 1, format!("`with`: {e}")),
                    },
                    None => json!({}),
                };
                let selected = match sub {
                    SubPipeline::Fixed { name, .. } => name.clone(),
                    SubPipeline::Select { expr, from } => {
                        let f = &self.frames[frame];
                        let scope = Scope {
                            deployment: &self.deployment,
                            inputs: &f.inputs,
                            nodes: &f.outputs,
                            secrets: &self.secrets,
                        };
                        let key = match template::render_str(expr, &scope.context(Purpose::Action, &[])) {
                            Ok(Value::String(s)) => s,
                            Ok(other) => other.to_string(),
                            Err(e) => {
                                return self.fail_node(
                                    frame,
                                    node,
                                    1,
                                    format!("`select`: {}", describe_template_error(&e)),
                                );
                            }
                        };
                        match from.get(&key) {
                            Some((name, _)) => name.clone(),
                            None => {
                                let options: Vec<&str> = from.keys().map(String::as_str).collect();
                                return self.fail_node(
                                    frame,
                                    node,
                                    1,
                                    format!(
                                        "`select` gave `{key}`, which is not one of {}",
                                        crate::suggest::list(&options)
                                    ),
                                );
                            }
                        }
                    }
                };
                (selected, with)
            }
        };
        let child_plan = match sub {
            SubPipeline::Fixed { plan, .. } => Arc::clone(plan),
            SubPipeline::Select { from, .. } => match from.values().find(|(name, _)| *name == selected) {
                Some((_, plan)) => Arc::clone(plan),
                None => {
                    return self.fail_node(frame, node, 1, format!("sub-pipeline `{selected}` is not in the snapshot"));
                }
            },
        };
        let given = child_inputs.as_object().cloned().unwrap_or_default();
        let resolved = match inputs::resolve(&child_plan.inputs, &given) {
            Ok(r) => r,
            Err(problems) => {
                let text: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
                return self.fail_node(frame, node, 1, format!("inputs of `{selected}`: {}", text.join("; ")));
            }
        };
        // Recorded (masked) so that a resume starts the same alternative with the same inputs.
        let record = json!({ "$selected": selected, "$inputs": self.masker.mask_json(Value::Object(given)) });
        self.batch.push(Write::Node(NodeRow {
            run: self.deployment.id.clone(),
            node: id.clone(),
            status: NodeStatus::Running,
            attempt: 1,
            outputs: Some(record),
            error: None,
            started_at: Some(now()),
            finished_at: None,
        }));
        self.emit(EventKind::NodeStarted, Some(id.clone()), metadata.unwrap_or_else(|| json!({})), Some(1), None);
        let share = self.frames[frame].node_share(node);
        let child = Frame::new(child_plan, format!("{id}."), Some((frame, node)), share, resolved, &self.checkpoints);
        let child_done = child.unfinished == 0;
        let index = self.add_frame(child);
        self.frames[frame].states[node] = NodeState::Child;
        if child_done {
            self.complete_child(index);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Progress { frame, node, attempt, fraction } => {
                if let NodeState::Running(r) = &mut self.frames[frame].states[node]
                    && r.attempt == attempt
                    && fraction > r.fraction
                {
                    r.fraction = fraction;
                    if self.update_progress() {
                        let id = self.frames[frame].qualified(node);
                        self.batch.push(Write::Progress {
                            run: self.deployment.id.clone(),
                            phase: self.phase.clone(),
                            progress: self.progress,
                            at: now(),
                        });
                        self.emit(
                            EventKind::NodeProgress,
                            Some(id),
                            json!({"fraction": fraction}),
                            Some(attempt),
                            None,
                        );
                    }
                }
            }
            Msg::Done { frame, node, attempt, result } => {
                let seq = match &self.frames[frame].states[node] {
                    NodeState::Running(r) if r.attempt == attempt => r.seq,
                    _ => return,
                };
                self.running.remove(&seq);
                match result {
                    Ok(outputs) => self.succeed_node(frame, node, Value::Object(outputs)),
                    Err(error) => {
                        let plan = Arc::clone(&self.frames[frame].plan);
                        let retry = plan.nodes[node].retry;
                        let message = self.masker.mask(&error.full()).into_owned();
                        if attempt < retry.attempts && self.failure.is_none() {
                            let id = self.frames[frame].qualified(node);
                            let delay = retry.delay_before(attempt + 1);
                            self.emit(
                                EventKind::NodeRetrying,
                                Some(id),
                                json!({"delay_ms": delay.as_millis() as u64}),
                                Some(attempt + 1),
                                Some(message),
                            );
                            let with = match &plan.nodes[node].with {
                                Some(block) => {
                                    self.render(frame, block, Purpose::Action, &[]).unwrap_or_else(|_| json!({}))
                                }
                                None => json!({}),
                            };
                            self.launch(frame, node, attempt + 1, with, delay);
                        } else {
                            let first = self.failure.is_none();
                            self.fail_node(frame, node, attempt, message);
                            // Only the failure the run is recorded with decides the exit code.
                            if first && let Some(failure) = self.failure.as_mut() {
                                failure.environment = error.environment;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Recomputes progress; true when the integer moved forward.
    fn update_progress(&mut self) -> bool {
        let mut share = self.done_share;
        for &(frame, node) in self.running.values() {
            if let NodeState::Running(r) = &self.frames[frame].states[node] {
                share += self.frames[frame].node_share(node) * r.fraction;
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
    fn running_phase(&self) -> Option<String> {
        self.running.values().rev().find_map(|&(frame, node)| self.frames[frame].plan.nodes[node].phase.clone())
    }

    fn succeed_node(&mut self, frame: usize, node: usize, outputs: Value) {
        let outputs = self.masker.mask_json(outputs);
        let plan = Arc::clone(&self.frames[frame].plan);
        let spec = &plan.nodes[node];
        let id = self.frames[frame].qualified(node);
        let attempt = match &self.frames[frame].states[node] {
            NodeState::Running(r) => r.attempt,
            _ => 1,
        };
        let result = match &spec.result_metadata {
            Some(block) => match self.render(frame, block, Purpose::Record, &[("outputs", outputs.clone())]) {
                Ok(v) => Some(v),
                Err(e) => {
                    // The action did its work; a broken result template fails the node.
                    return self.fail_node(frame, node, attempt, format!("`result_metadata`: {e}"));
                }
            },
            None => None,
        };
        let started_at = match &self.frames[frame].states[node] {
            NodeState::Running(r) => Some(r.started_at.clone()),
            _ => None,
        };
        self.batch.push(Write::Node(NodeRow {
            run: self.deployment.id.clone(),
            node: id.clone(),
            status: NodeStatus::Succeeded,
            attempt,
            outputs: Some(outputs.clone()),
            error: None,
            started_at,
            finished_at: Some(now()),
        }));
        self.done_share += self.frames[frame].node_share(node);
        let ready = self.frames[frame].complete(node, true, Some(outputs));
        for next in ready {
            self.ready.push(Reverse((frame, self.frames[frame].position[next], next)));
        }
        self.update_progress();
        if let Some(p) = self.running_phase() {
            self.phase = p;
        }
        match &result {
            Some(metadata) => self.batch.push(Write::Phase {
                run: self.deployment.id.clone(),
                phase: spec.phase.clone().unwrap_or_else(|| self.phase.clone()),
                progress: self.progress,
                metadata: metadata.clone(),
                node: Some(id.clone()),
                at: now(),
            }),
            None => self.batch.push(Write::Progress {
                run: self.deployment.id.clone(),
                phase: self.phase.clone(),
                progress: self.progress,
                at: now(),
            }),
        }
        self.emit(EventKind::NodeSucceeded, Some(id), result.unwrap_or_else(|| json!({})), Some(attempt), None);
        if self.frames[frame].unfinished == 0 && self.frames[frame].parent.is_some() {
            self.complete_child(frame);
        }
    }

    fn skip(&mut self, frame: usize, node: usize) {
        let id = self.frames[frame].qualified(node);
        self.batch.push(Write::Node(NodeRow {
            run: self.deployment.id.clone(),
            node: id.clone(),
            status: NodeStatus::Skipped,
            attempt: 0,
            outputs: None,
            error: None,
            started_at: None,
            finished_at: Some(now()),
        }));
        self.done_share += self.frames[frame].node_share(node);
        let ready = self.frames[frame].complete(node, false, None);
        for next in ready {
            self.ready.push(Reverse((frame, self.frames[frame].position[next], next)));
        }
        self.update_progress();
        self.emit(EventKind::NodeSkipped, Some(id), json!({}), None, None);
        if self.frames[frame].unfinished == 0 && self.frames[frame].parent.is_some() {
            self.complete_child(frame);
        }
    }

    /// A sub-pipeline finished: its node succeeds with the outputs it declares.
    fn complete_child(&mut self, child: usize) {
        let (parent, node) = self.frames[child].parent.expect("a child frame has a parent");
        if !self.frames[child].has_weight() {
            self.done_share += self.frames[child].share;
        }
        let plan = Arc::clone(&self.frames[child].plan);
        let mut outputs = Map::new();
        for (name, block) in &plan.outputs {
            match self.render(child, block, Purpose::Action, &[]) {
                Ok(v) => {
                    outputs.insert(name.clone(), v);
                }
                Err(e) => return self.fail_node(parent, node, 1, format!("output `{name}` of `{}`: {e}", plan.name)),
            }
        }
        // Its weight was counted through its children: do not count it again.
        let share = self.frames[parent].node_share(node);
        self.done_share -= share;
        self.frames[parent].states[node] = NodeState::Running(Running {
            attempt: 1,
            started_at: self
                .checkpoints
                .get(&self.frames[parent].qualified(node))
                .and_then(|r| r.started_at.clone())
                .unwrap_or_else(now),
            fraction: 0.0,
            seq: 0,
            abort: None,
        });
        self.succeed_node(parent, node, Value::Object(outputs));
    }

    fn fail_node(&mut self, frame: usize, node: usize, attempt: u32, error: String) {
        let plan = Arc::clone(&self.frames[frame].plan);
        let id = self.frames[frame].qualified(node);
        tracing::debug!(run = %self.deployment.id, node = %id, attempt, "Node failed.");
        let phase = plan.nodes[node].phase.clone().unwrap_or_else(|| self.phase.clone());
        self.frames[frame].states[node] = NodeState::Failed;
        self.batch.push(Write::Node(NodeRow {
            run: self.deployment.id.clone(),
            node: id.clone(),
            status: NodeStatus::Failed,
            attempt,
            outputs: None,
            error: Some(error.clone()),
            started_at: None,
            finished_at: Some(now()),
        }));
        self.emit(EventKind::NodeFailed, Some(id.clone()), json!({}), Some(attempt), Some(error.clone()));
        if let Some((parent, parent_node)) = self.frames[frame].parent {
            let message = format!("sub-pipeline `{}` failed at `{id}`", plan.name);
            let parent_id = self.frames[parent].qualified(parent_node);
            self.frames[parent].states[parent_node] = NodeState::Failed;
            self.batch.push(Write::Node(NodeRow {
                run: self.deployment.id.clone(),
                node: parent_id,
                status: NodeStatus::Failed,
                attempt: 1,
                outputs: self
                    .checkpoints
                    .get(&self.frames[parent].qualified(parent_node))
                    .and_then(|r| r.outputs.clone()),
                error: Some(message),
                started_at: None,
                finished_at: Some(now()),
            }));
        }
        if self.failure.is_none() {
            self.failure = Some(Failure { node: id, phase, error, environment: false });
        }
        self.abort_all();
    }

    fn abort_all(&mut self) {
        self.running.clear();
        for frame in &mut self.frames {
            for state in &mut frame.states {
                if let NodeState::Running(r) = state
                    && let Some(abort) = r.abort.take()
                {
                    abort.abort();
                }
            }
        }
    }

    fn succeed(mut self) -> Result<Outcome, StoreError> {
        self.progress = 100;
        self.phase = phase::ACTIVE.to_string();
        let metadata = match self.frames[0].plan.on_success.clone() {
            Some(block) => {
                self.render(0, &block, Purpose::Record, &[]).unwrap_or_else(|e| json!({"onSuccessError": e}))
            }
            None => json!({}),
        };
        let at = now();
        self.batch.push(Write::Phase {
            run: self.deployment.id.clone(),
            phase: self.phase.clone(),
            progress: 100,
            metadata: metadata.clone(),
            node: None,
            at: at.clone(),
        });
        self.batch.push(Write::Status {
            run: self.deployment.id.clone(),
            status: RunStatus::Succeeded,
            error: None,
            finished: Some(at),
        });
        self.flush()?;
        self.emit(EventKind::RunSucceeded, None, metadata, None, None);
        self.reporter.finish();
        Ok(Outcome::Succeeded)
    }

    /// Runs the `undo` of every succeeded node that has one, latest first, and forgets
    /// the checkpoints of what was undone (and of what came after it), so that a resume
    /// does them again in order. Returns the nodes undone and the undos that failed.
    async fn undo_all(&mut self) -> (Vec<String>, Map<String, Value>) {
        // Let the aborted tasks drop (their process groups are killed on drop).
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let mut candidates = Vec::new();
        for (f, frame) in self.frames.iter().enumerate().rev() {
            for &n in frame.plan.order.iter().rev() {
                if matches!(frame.states[n], NodeState::Succeeded) && frame.plan.nodes[n].undo.is_some() {
                    candidates.push((f, n));
                }
            }
        }
        let (mut reverted, mut errors) = (Vec::new(), Map::new());
        for (f, n) in candidates {
            let plan = Arc::clone(&self.frames[f].plan);
            let node = &plan.nodes[n];
            let undo = node.undo.as_ref().expect("filtered above");
            let id = self.frames[f].qualified(n);
            let outputs =
                self.frames[f].outputs.get(&node.id).map(|o| o["outputs"].clone()).unwrap_or_else(|| json!({}));
            let extra = [("outputs", outputs)];
            if let Some(condition) = &undo.condition {
                let frame = &self.frames[f];
                let scope = Scope {
                    deployment: &self.deployment,
                    inputs: &frame.inputs,
                    nodes: &frame.outputs,
                    secrets: &self.secrets,
                };
                let expr = condition.trim().trim_start_matches("{{").trim_end_matches("}}");
                match template::eval_condition(expr, &scope.context(Purpose::Action, &extra)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        errors.insert(id, json!(format!("`undo.if`: {}", describe_template_error(&e))));
                        continue;
                    }
                }
            }
            let with = match &undo.with {
                Some(block) => match self.render(f, block, Purpose::Action, &extra) {
                    Ok(v) => v,
                    Err(e) => {
                        errors.insert(id, json!(format!("`undo.with`: {e}")));
                        continue;
                    }
                },
                None => json!({}),
            };
            let undo_id = format!("{id}.undo");
            self.emit(EventKind::NodeStarted, Some(undo_id.clone()), json!({"undo": id}), Some(1), None);
            let ctx = ActionCtx {
                run_id: self.deployment.id.clone(),
                run_key: self.run_key.clone(),
                node: undo_id.clone(),
                attempt: 1,
                log: Arc::new(NodeLog::open(&self.logs.join(format!("{undo_id}.log")), self.masker.clone())),
                progress: Arc::new(ProgressReporter::none()),
                work_dir: self.work.clone(),
            };
            let result = match undo.action.check(&with) {
                Err(e) => Err(ActionError::new(e)),
                Ok(()) => tokio::time::timeout(node.timeout, undo.action.run(ctx, &with))
                    .await
                    .unwrap_or_else(|_| Err(ActionError::new("timed out"))),
            };
            match result {
                Ok(_) => {
                    tracing::info!(run = %self.deployment.id, node = %id, "Node undone.");
                    self.emit(EventKind::NodeSucceeded, Some(undo_id), json!({"undo": id}), Some(1), None);
                    self.forget_from(f, n);
                    reverted.push(id);
                }
                Err(e) => {
                    let message = self.masker.mask(&e.full()).into_owned();
                    self.emit(
                        EventKind::NodeFailed,
                        Some(undo_id),
                        json!({"undo": id}),
                        Some(1),
                        Some(message.clone()),
                    );
                    errors.insert(id, json!(message));
                }
            }
        }
        (reverted, errors)
    }

    /// Forgets the checkpoints of a node and of everything after it that finished.
    fn forget_from(&mut self, frame: usize, node: usize) {
        let f = &self.frames[frame];
        let (mut nodes, mut prefixes) = (Vec::new(), Vec::new());
        let mut queue = vec![node];
        let mut seen = std::collections::HashSet::new();
        while let Some(i) = queue.pop() {
            if !seen.insert(i) || matches!(f.states[i], NodeState::Failed) {
                continue;
            }
            let id = f.qualified(i);
            if matches!(f.plan.nodes[i].kind, NodeKind::Pipeline(_)) {
                prefixes.push(format!("{id}."));
            }
            nodes.push(id);
            queue.extend(f.dependents[i].iter().copied());
        }
        self.batch.push(Write::ResetNodes { run: self.deployment.id.clone(), nodes, prefixes });
    }

    async fn fail(mut self) -> Result<Outcome, StoreError> {
        let failure = self.failure.take().expect("fail() follows a failure");
        let reached = self.progress;
        let (reverted, revert_errors) = self.undo_all().await;
        let error = json!({
            "message": failure.error, "node": failure.node, "phase": failure.phase, "progress": reached, "reverted": reverted,
        });
        let mut metadata = Map::new();
        metadata.insert("error".into(), json!(failure.error));
        metadata.insert("failedNode".into(), json!(failure.node));
        metadata.insert("failedPhase".into(), json!(failure.phase));
        metadata.insert("progressReached".into(), json!(reached));
        if !reverted.is_empty() {
            metadata.insert("reverted".into(), json!(reverted));
        }
        if !revert_errors.is_empty() {
            metadata.insert("revertErrors".into(), Value::Object(revert_errors));
        }
        if let Some(block) = self.frames[0].plan.on_failure.clone() {
            match self.render(0, &block, Purpose::Record, &[("error", error)]) {
                Ok(Value::Object(extra)) => metadata.extend(extra),
                Ok(_) => {}
                Err(e) => {
                    metadata.insert("onFailureError".into(), json!(e));
                }
            }
        }
        self.phase = phase::FAILED.to_string();
        self.progress = 0;
        let at = now();
        self.batch.push(Write::Phase {
            run: self.deployment.id.clone(),
            phase: self.phase.clone(),
            progress: 0,
            metadata: Value::Object(metadata.clone()),
            node: Some(failure.node.clone()),
            at: at.clone(),
        });
        let summary = format!("node `{}` ({}): {}", failure.node, failure.phase, failure.error);
        self.batch.push(Write::Status {
            run: self.deployment.id.clone(),
            status: RunStatus::Failed,
            error: Some(summary),
            finished: Some(at),
        });
        self.flush()?;
        self.emit(EventKind::RunFailed, Some(failure.node), Value::Object(metadata), None, Some(failure.error));
        self.reporter.finish();
        Ok(if failure.environment { Outcome::FailedEnvironment } else { Outcome::Failed })
    }

    /// Stops every running node and leaves the run resumable.
    fn stop(mut self, status: RunStatus, why: &str) -> Result<Outcome, StoreError> {
        tracing::info!(run = %self.deployment.id, why, "Stopping the run; it stays resumable.");
        self.abort_all();
        self.batch.push(Write::Status {
            run: self.deployment.id.clone(),
            status,
            error: Some(why.to_string()),
            finished: None,
        });
        self.flush()?;
        self.emit(EventKind::RunInterrupted, None, json!({"reason": why}), None, None);
        self.reporter.finish();
        Ok(if status == RunStatus::Cancelled { Outcome::Cancelled } else { Outcome::Interrupted })
    }
}

/// Values rendered for records are masked; values for actions are not.
fn mask_for(masker: &Masker, purpose: Purpose, value: Value) -> Value {
    match purpose {
        Purpose::Record => masker.mask_json(value),
        Purpose::Action => value,
    }
}

fn describe_template_error(e: &minijinja::Error) -> String {
    let mut text = e.kind().to_string();
    if let Some(detail) = e.detail() {
        text = format!("{text}: {detail}");
    }
    if text.contains("secrets") {
        text.push_str(" (secrets come from PHASED_SECRET_<NAME> environment variables)");
    }
    text
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
