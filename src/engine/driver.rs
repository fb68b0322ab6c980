//! The thin async part of a run. It owns the store (one connection) and feeds the
//! core: messages from tasks, timers, signals, heartbeats and cancel requests go in;
//! the transitions that come out are carried out (records become one transaction,
//! then their events are reported; launches become tasks on this single-threaded
//! runtime; stops and timers are sent to the tasks). Nothing is shared across tasks:
//! a task only sends messages back.
//!
//! Its store calls block its thread: the run is driven by [`crate::seam::block_on`],
//! which polls the driver outside the runtime (the `postgres` client may block there)
//! and the tasks on it between the driver's polls; a commit is a call on this thread,
//! with no hop to another, and no task runs while it is made.
//!
//! Group commit: a `noop` (or a skipped node) launched in a turn takes its first step
//! at once, so the records of work that finishes instantly join the same transaction.
//! A task with effects (any other action) starts only once the batch holding its
//! predecessors' success and its own `running` checkpoint is committed, so a crash can
//! never make a finished node run again after its successor started. Everything that
//! changed is written before the driver waits, and at least every [`MAX_BATCH`] writes
//! or [`MAX_DELAY`]. Its events are reported once written. After a crash, a node with
//! no checkpoint runs again, exactly as one recorded `running` does, and a node is only
//! ever skipped on resume for a durable `succeeded`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::watch;

use super::Outcome;
use super::core::{Core, Launch, Msg, Task, TaskError, Transition};
use super::lease::Fence;
use super::record::record;
use crate::action::{ActionCtx, ActionError, ActionOutputs, NodeLog, ProgressReporter, StopSignal, capped};
use crate::clock::{now, now_ms};
use crate::event::{OutputSink, Reporter};
use crate::secrets::Masker;
use crate::store::{Lease, RunStatus, StopRequest, Store, StoreError, Write};

/// How often the holder of a run writes its heartbeat and looks for a cancel request.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The most writes one transaction gathers before it is committed.
const MAX_BATCH: usize = 1024;

/// The longest a change waits for its commit while work keeps arriving.
const MAX_DELAY: Duration = Duration::from_millis(10);

/// The most of an error that is recorded (checkpoint, metadata, events) and shown.
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// How long past its grace a stopped task that watches the stop signal may take.
const STOP_MARGIN: Duration = Duration::from_millis(500);

pub(crate) struct Driver<'r> {
    core: Core,
    store: Box<dyn Store>,
    lease: Lease,
    reporter: &'r mut dyn Reporter,
    /// Where steps' lines go while they run, if the reporter shows them.
    output: Option<OutputSink>,
    tx: UnboundedSender<Msg>,
    rx: UnboundedReceiver<Msg>,
    /// The stop signal of every task still running.
    tasks: HashMap<Task, watch::Sender<bool>>,
    batch: Vec<Write>,
    /// When the oldest write of the batch was made.
    unflushed_since: Option<std::time::Instant>,
    /// A task was launched since the driver last let tasks run.
    launched: bool,
    /// One of them has effects outside the run (anything but `noop`): what the batch
    /// holds (its predecessor's success) is committed before it takes its first step.
    effectful: bool,
    masker: Masker,
    logs: PathBuf,
    work: PathBuf,
    run_key: String,
    /// How the run is stopped from outside (`phased watch`, `phased serve`).
    halt: Option<super::Halt>,
    /// The run has a target, so a newer run may supersede it: the request is looked
    /// for at every node boundary (before what finished starts what follows), not
    /// only at each heartbeat.
    supersedable: bool,
    /// A cancel or supersede request was acted on.
    stop_seen: bool,
    /// The time left, given to each event (none without a history).
    eta: Option<super::eta::Eta>,
    /// The root pipeline (its `notify:` entries).
    plan: std::sync::Arc<crate::plan::Plan>,
    /// When the run's steps must stop unless the lease is renewed (see [`Fence`]).
    fence: Fence,
}

pub(crate) struct DriverStart<'r> {
    pub(crate) core: Core,
    pub(crate) store: Box<dyn Store>,
    pub(crate) lease: Lease,
    pub(crate) reporter: &'r mut dyn Reporter,
    pub(crate) masker: Masker,
    pub(crate) data_dir: PathBuf,
    pub(crate) work_dir: PathBuf,
    pub(crate) halt: Option<super::Halt>,
    pub(crate) supersedable: bool,
    pub(crate) eta: Option<super::eta::Eta>,
    pub(crate) plan: std::sync::Arc<crate::plan::Plan>,
    /// When (monotonic ms) the write that took or last renewed the lease began.
    pub(crate) held_since: i64,
}

impl<'r> Driver<'r> {
    pub(crate) fn new(start: DriverStart<'r>) -> Self {
        let (tx, rx) = unbounded_channel();
        let run = start.core.run_id().to_string();
        let run_key = crate::process::run_key(&run, start.store.path());
        Driver {
            fence: Fence::new(&run, &run_key, start.held_since),
            run_key,
            logs: start.data_dir.join("logs").join(&run),
            work: start.work_dir,
            core: start.core,
            store: start.store,
            lease: start.lease,
            output: start.reporter.output(),
            reporter: start.reporter,
            tx,
            rx,
            tasks: HashMap::new(),
            batch: Vec::new(),
            unflushed_since: None,
            launched: false,
            effectful: false,
            masker: start.masker,
            halt: start.halt,
            supersedable: start.supersedable,
            stop_seen: false,
            eta: start.eta,
            plan: start.plan,
        }
    }

    /// Runs to the end: ACTIVE, FAILED, or stopped (signal, cancel, superseded); or
    /// gives the run up, having written nothing more, once its fence is passed
    /// (whatever the store said meanwhile: the database unreachable, most likely).
    pub(crate) async fn run(mut self, resumed: bool) -> Result<Outcome, StoreError> {
        let result = self.turns(resumed).await;
        match result {
            Err(e) if self.fence.passed() => {
                if !matches!(e, StoreError::Fenced { .. }) {
                    tracing::warn!(run = %self.core.run_id(), error = %e, "The lease could not be renewed.");
                }
                super::lease::give_up(&self.lease.owner);
                Err(self.fence.error())
            }
            result => result,
        }
    }

    async fn turns(&mut self, resumed: bool) -> Result<Outcome, StoreError> {
        use tokio::signal::unix::{SignalKind, signal};
        // A server handles the signals itself (it drains its runs, then stops them).
        let own_signals = self.halt.as_ref().is_none_or(|h| !h.ignore_signals);
        let mut interrupt = own_signals.then(|| signal(SignalKind::interrupt()).expect("SIGINT handler installs"));
        let mut terminate = own_signals.then(|| signal(SignalKind::terminate()).expect("SIGTERM handler installs"));
        let mut stopped_now = false;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let mut drained = false;
        self.handle(Msg::Start { resumed });
        loop {
            if let Some(outcome) = self.core.outcome() {
                self.flush()?;
                self.reporter.finish();
                return Ok(outcome);
            }
            // What was just launched takes its first step now; what finishes at once
            // joins this batch.
            if std::mem::take(&mut self.launched) {
                // A step with effects never starts before the success of what it
                // follows is durable: a crash in between would run that again.
                if std::mem::take(&mut self.effectful) {
                    self.flush()?;
                }
                tokio::task::yield_now().await;
            }
            if let Ok(msg) = self.rx.try_recv() {
                self.handle(msg);
                let due = self.unflushed_since.is_some_and(|since| since.elapsed() >= MAX_DELAY);
                if self.batch.len() >= MAX_BATCH || due {
                    self.flush()?;
                }
                continue;
            }
            self.flush()?;
            let (drain_as, mut drain, mut now) = match self.halt.as_mut() {
                Some(h) => ((h.status, h.reason.clone()), Some(h.drain.clone()), h.now.clone()),
                None => ((RunStatus::Cancelled, String::new()), None, None),
            };
            let drain = async {
                match drain.as_mut() {
                    Some(drain) if !drained => {
                        let _ = drain.wait_for(|d| *d).await;
                    }
                    _ => std::future::pending().await,
                }
            };
            let now = async {
                match now.as_mut() {
                    Some(now) if !stopped_now => {
                        let _ = now.wait_for(|d| *d).await;
                    }
                    _ => std::future::pending().await,
                }
            };
            let interrupted = async {
                match interrupt.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let terminated = async {
                match terminate.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = interrupted => self.handle(Msg::Signal { name: "SIGINT" }),
                _ = terminated => self.handle(Msg::Signal { name: "SIGTERM" }),
                _ = now => {
                    stopped_now = true;
                    self.handle(Msg::Signal { name: "the server's stop" });
                }
                _ = drain => {
                    drained = true;
                    tracing::info!(run = %self.core.run_id(), "Stop requested; finishing the running nodes.");
                    let (status, reason) = drain_as;
                    self.handle(Msg::Drain { reason, status });
                }
                msg = self.rx.recv() => {
                    if let Some(msg) = msg {
                        self.handle(msg);
                    }
                    while let Ok(msg) = self.rx.try_recv() {
                        self.handle(msg);
                    }
                }
                // Past the fence, the flush at the top of the loop gives the run up.
                _ = heartbeat.tick() => if !self.fence.passed() {
                    let run = self.core.run_id().to_string();
                    let beat = Write::Heartbeat { run: run.clone(), owner: self.lease.owner.clone(), at_ms: now_ms() };
                    self.batch.push(beat);
                    self.look_for_stop()?;
                }
            }
        }
    }

    /// Acts on a `phased cancel` or a newer run superseding this one, once.
    fn look_for_stop(&mut self) -> Result<(), StoreError> {
        if self.stop_seen {
            return Ok(());
        }
        let run = self.core.run_id().to_string();
        match self.store.stop_requested(&run)? {
            StopRequest::None => {}
            StopRequest::Cancel => {
                self.stop_seen = true;
                self.handle(Msg::Cancel);
            }
            StopRequest::Supersede => {
                self.stop_seen = true;
                let by = self.store.run(&run)?.and_then(|r| r.superseded_by).unwrap_or_default();
                tracing::info!(run = %run, by = %by, "Superseded; finishing the running nodes.");
                self.handle(Msg::Drain { reason: format!("superseded by run {by}"), status: RunStatus::Cancelled });
            }
        }
        Ok(())
    }

    /// Gives the core one message and carries out what it returns; nothing once the
    /// fence is passed (a step the supervisor stopped is not a failure to record, and
    /// nothing more may start).
    fn handle(&mut self, msg: Msg) {
        if self.fence.passed() {
            return;
        }
        if let Msg::Done { task, .. } = &msg {
            self.tasks.remove(task);
            if self.supersedable
                && let Err(e) = self.look_for_stop()
            {
                tracing::warn!(run = %self.core.run_id(), error = %e, "Could not look for a stop request.");
            }
        }
        let at = now();
        if self.unflushed_since.is_none() {
            self.unflushed_since = Some(std::time::Instant::now());
        }
        for transition in self.core.handle(&at, msg) {
            match transition {
                Transition::Record(r) => {
                    let mut writes = record(self.core.run_id(), &r);
                    if let Some(eta) = self.eta.as_mut() {
                        let now = humantime::parse_rfc3339(&r.at).unwrap_or_else(|_| std::time::SystemTime::now());
                        super::eta::follow(eta, &r.change, now);
                        if let Some(crate::store::Write::Event(event)) = writes.last_mut() {
                            event.eta_seconds = Some(eta.remaining(now));
                        }
                    }
                    if !self.plan.notify.is_empty() {
                        writes.extend(self.notifications(&r));
                    }
                    self.batch.extend(writes);
                }
                Transition::Launch(launch) => self.launch(launch),
                Transition::Stop { task } => {
                    if let Some(stop) = self.tasks.get(&task) {
                        let _ = stop.send(true);
                    }
                }
                Transition::Timer { task, after } => {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = tx.send(Msg::Timer { task });
                    });
                }
            }
        }
    }

    /// The outbox rows of a run that ends with this change (none for other changes):
    /// written in the batch that records the outcome, so that they exist exactly when
    /// it does.
    fn notifications(&self, r: &super::core::Record) -> Vec<crate::store::Write> {
        use super::core::Change;
        use crate::model::NotifyOn;
        let (outcome, error, metadata) = match &r.change {
            Change::RunSucceeded { metadata } => (NotifyOn::Succeeded, None, metadata.clone()),
            Change::RunFailed { summary, metadata, .. } => (NotifyOn::Failed, Some(summary.as_str()), metadata.clone()),
            Change::RunStopped { status: crate::store::RunStatus::Cancelled, reason } => {
                (NotifyOn::Cancelled, None, serde_json::json!({ "reason": reason }))
            }
            _ => return Vec::new(),
        };
        let Ok(Some(row)) = self.store.run(self.core.run_id()) else { return Vec::new() };
        let metadata = self.masker.mask_json(metadata);
        let error = error.map(|e| self.masker.mask(e).into_owned());
        let ending =
            crate::notify::Ending { outcome, phase: &r.phase, error: error.as_deref(), metadata: &metadata, at: &r.at };
        crate::notify::outbox(&self.plan, &row, &ending, super::now_ms())
    }

    /// Writes the batch in one transaction, then reports its events with their
    /// sequence numbers. Nothing once the fence is passed.
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.fence.passed() {
            return Err(self.fence.error());
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        self.unflushed_since = None;
        // Every batch first checks (and renews) this process's lease: the batch of a
        // holder another process took the run from is refused whole.
        let began = crate::process::monotonic_ms();
        let beat =
            Write::Heartbeat { run: self.core.run_id().to_string(), owner: self.lease.owner.clone(), at_ms: now_ms() };
        let batch: Vec<Write> = std::iter::once(beat).chain(std::mem::take(&mut self.batch)).collect();
        crate::crash::point("before a commit");
        let mut seqs = self.store.write(&batch)?.into_iter();
        self.fence.renewed(began)?;
        crate::crash::point("after a commit");
        for write in batch {
            if let Write::Event(mut event) = write {
                event.seq = seqs.next();
                self.reporter.event(&event);
            }
        }
        Ok(())
    }

    fn launch(&mut self, launch: Launch) {
        let Launch { task, id, action, with, timeout, grace } = launch;
        let (stop_tx, stop_rx) = watch::channel(false);
        self.tasks.insert(task, stop_tx);
        self.launched = true;
        self.effectful |= action.effects;
        let progress_tx = self.tx.clone();
        let stop = StopSignal::new(stop_rx, grace);
        let ctx = ActionCtx {
            run_id: self.core.run_id().to_string(),
            run_key: self.run_key.clone(),
            node: id.clone(),
            attempt: task.attempt,
            log: Arc::new(
                NodeLog::open(&self.logs.join(format!("{id}.log")), self.masker.clone()).with_sink(self.line_sink(&id)),
            ),
            progress: Arc::new(ProgressReporter::channel(progress_tx, move |fraction| Msg::Progress {
                task,
                fraction,
            })),
            work_dir: self.work.clone(),
            stop: stop.clone(),
        };
        tracing::debug!(run = %ctx.run_id, node = %id, attempt = task.attempt, "Task launched.");
        let tx = self.tx.clone();
        let masker = self.masker.clone();
        tokio::spawn(async move {
            let work = action.run(ctx, &with);
            let result = supervise(work, task, timeout, stop, &tx).await.map_err(|e| TaskError {
                message: capped(&masker.mask(&e.full()), MAX_ERROR_BYTES, "the node's log"),
                environment: e.environment,
            });
            let _ = tx.send(Msg::Done { task, result });
        });
    }
}

impl Driver<'_> {
    /// Where the lines of node `id` go live, if anywhere.
    fn line_sink(&self, id: &str) -> Option<crate::action::LineSink> {
        let output = self.output.clone()?;
        let node = id.to_string();
        Some(Arc::new(move |line: &str| output(&node, line)))
    }
}

/// Runs a task's work: past `timeout` the core is told (it decides to stop it); when
/// it is asked to stop, an action that watches the signal gets its grace to end by
/// itself, any other is dropped at once (which kills its processes).
async fn supervise(
    mut work: crate::action::ActionFuture,
    task: Task,
    timeout: Duration,
    stop: StopSignal,
    tx: &UnboundedSender<Msg>,
) -> Result<ActionOutputs, ActionError> {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut timed_out = false;
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = &mut deadline, if !timed_out => {
                timed_out = true;
                let _ = tx.send(Msg::TimedOut { task });
            }
            _ = stop.fired() => {
                if stop.watched() {
                    let patience = stop.grace + STOP_MARGIN;
                    if let Ok(result) = tokio::time::timeout(patience, &mut work).await {
                        return result;
                    }
                }
                return Err(ActionError::new("stopped"));
            }
        }
    }
}
