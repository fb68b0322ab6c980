//! What a running action gets from the engine, and what it gives back.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::secrets::Masker;

/// The outputs of an action: names to values.
pub type ActionOutputs = Map<String, Value>;

pub type ActionFuture = Pin<Box<dyn Future<Output = Result<ActionOutputs, ActionError>> + Send + 'static>>;

/// A failed action: a message, and the last lines of its log when it has one.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub message: String,
    pub tail: Option<String>,
    /// The environment is at fault (an engine that cannot be reached), not the
    /// deployment: the run fails resumable and the command exits with 3.
    pub environment: bool,
}

impl ActionError {
    pub fn new(message: impl Into<String>) -> Self {
        ActionError { message: message.into(), tail: None, environment: false }
    }

    /// The same error, with the last lines of a log.
    pub fn with_tail(mut self, tail: String) -> Self {
        self.tail = Some(tail);
        self
    }

    /// The same error, marked as an environment problem.
    pub fn environment(mut self) -> Self {
        self.environment = true;
        self
    }

    /// The message with the log tail, as recorded in the checkpoint and metadata.
    pub fn full(&self) -> String {
        match &self.tail {
            Some(tail) if !tail.is_empty() => format!("{}\n--- last lines of the log ---\n{tail}", self.message),
            _ => self.message.clone(),
        }
    }
}

/// `text`, then each error that `e` reports as its cause: the useful part of a
/// transport error (connection refused, no such file) is usually a cause.
pub fn with_causes(mut text: String, e: &dyn std::error::Error) -> String {
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// How a running action reports its fraction done (0.0 to 1.0).
pub struct ProgressReporter {
    pub(crate) send: Option<Box<dyn Fn(f64) + Send + Sync>>,
}

impl ProgressReporter {
    pub fn none() -> Self {
        ProgressReporter { send: None }
    }

    pub fn channel<T: Send + 'static>(tx: UnboundedSender<T>, make: impl Fn(f64) -> T + Send + Sync + 'static) -> Self {
        ProgressReporter { send: Some(Box::new(move |f| drop(tx.send(make(f))))) }
    }

    pub fn report(&self, fraction: f64) {
        if let Some(send) = &self.send {
            send(fraction.clamp(0.0, 1.0));
        }
    }
}

/// A node's log file: every line masked, the last lines kept for error messages. The
/// file is created on the first line, so nodes that print nothing cost no file.
pub struct NodeLog {
    path: Option<PathBuf>,
    /// Written before the first line, if one ever comes.
    header: Mutex<Option<String>>,
    file: Mutex<Option<std::fs::File>>,
    tail: Mutex<std::collections::VecDeque<String>>,
    masker: Masker,
    /// Also shown live (`--show-output`, the progress bar's last line).
    sink: Option<LineSink>,
    /// A line too long to hold: what is not written yet (at most a secret's length),
    /// and the start of it kept for the tail.
    long: Mutex<Option<LongLine>>,
    /// When its lines were written (`<node>.times`).
    times: Mutex<super::log_times::LineTimes>,
}

struct LongLine {
    pending: String,
    start: String,
    written: usize,
}

/// Receives each line of a node's log as it is written (masked, cut to
/// [`TAIL_LINE_BYTES`]).
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

const TAIL_LINES: usize = 20;

/// The most of one line kept in the tail (the log file has the whole line).
const TAIL_LINE_BYTES: usize = 4 * 1024;

/// `text` cut to at most `max` bytes (at a character boundary), saying how much was cut
/// and where the rest is.
pub fn capped(text: &str, max: usize, rest_in: &str) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let cut = text.floor_char_boundary(max);
    format!("{}... [{} more bytes in {rest_in}]", &text[..cut], text.len() - cut)
}

impl NodeLog {
    pub fn open(path: &std::path::Path, masker: Masker) -> Self {
        NodeLog {
            path: Some(path.to_path_buf()),
            header: Mutex::new(None),
            file: Mutex::new(None),
            tail: Mutex::new(Default::default()),
            masker,
            sink: None,
            long: Mutex::new(None),
            times: Mutex::new(super::log_times::LineTimes::new(Some(path))),
        }
    }

    /// The same log, also handing each line to `sink`.
    pub fn with_sink(mut self, sink: Option<LineSink>) -> Self {
        self.sink = sink;
        self
    }

    pub fn discard() -> Self {
        NodeLog {
            path: None,
            header: Mutex::new(None),
            file: Mutex::new(None),
            tail: Mutex::new(Default::default()),
            masker: Masker::default(),
            sink: None,
            long: Mutex::new(None),
            times: Mutex::new(super::log_times::LineTimes::new(None)),
        }
    }

    /// A line that introduces what follows (`== attempt 2 of ...`): written only if a
    /// line follows, so a step that prints nothing costs no file.
    pub fn header(&self, line: &str) {
        *self.header.lock().expect("log lock") = Some(self.masker.mask(line).into_owned());
    }

    /// A part of a line that is too long to hold in memory (a step printing 100 MB
    /// without a newline): written to the file at once (masked; the part that may be
    /// the start of a secret waits for what follows), its start kept for the tail.
    /// [`NodeLog::line`] ends it.
    pub fn fragment(&self, part: &str) {
        let mut long = self.long.lock().expect("log lock");
        let long = long.get_or_insert_with(|| LongLine { pending: String::new(), start: String::new(), written: 0 });
        long.pending.push_str(part);
        let keep = self.masker.longest().saturating_sub(1);
        if long.pending.len() <= keep {
            return;
        }
        let cut = long.pending.floor_char_boundary(long.pending.len() - keep);
        let cut = self.masker.safe_cut(&long.pending, cut);
        let head: String = long.pending.drain(..cut).collect();
        let head = self.masker.mask(&head).into_owned();
        if long.start.len() < TAIL_LINE_BYTES {
            let room = head.floor_char_boundary(TAIL_LINE_BYTES - long.start.len());
            long.start.push_str(&head[..room]);
        }
        long.written += head.len();
        self.write_raw(&head, false);
    }

    fn write_raw(&self, text: &str, newline: bool) {
        use std::io::Write;
        let mut file = self.file.lock().expect("log lock");
        if file.is_none()
            && let Some(path) = &self.path
        {
            *file = path
                .parent()
                .and_then(|d| crate::paths::private_dir_all(d).ok())
                .and_then(|_| crate::paths::private_append(path).ok());
            if let Some(opened) = file.as_ref() {
                self.times.lock().expect("log lock").opened(opened.metadata().map_or(0, |m| m.len()));
            }
        }
        if let Some(file) = file.as_mut() {
            let mut times = self.times.lock().expect("log lock");
            if let Some(header) = self.header.lock().expect("log lock").take() {
                times.write(header.len(), true);
                let _ = writeln!(file, "{header}");
            }
            times.write(text.len(), newline);
            let _ = file.write_all(text.as_bytes());
            if newline {
                let _ = file.write_all(b"\n");
            }
        }
    }

    pub fn line(&self, line: &str) {
        let line = line.trim_end_matches(['\n', '\r']);
        if let Some(long) = self.long.lock().expect("log lock").take() {
            // The end of a long line: the rest is written, the tail gets its start.
            let rest = self.masker.mask(&format!("{}{line}", long.pending)).into_owned();
            self.write_raw(&rest, true);
            let total = long.written + rest.len();
            let shown = format!("{}... [{} more bytes in the node's log]", long.start, total - long.start.len());
            return self.keep(shown);
        }
        self.keep_line(line);
    }

    fn keep_line(&self, line: &str) {
        let line = self.masker.mask(line);
        self.write_raw(&line, true);
        self.keep(capped(&line, TAIL_LINE_BYTES, "the node's log"));
    }

    /// Shows a (capped) line live and keeps it in the tail.
    fn keep(&self, line: String) {
        if let Some(sink) = &self.sink {
            sink(&line);
        }
        let mut tail = self.tail.lock().expect("log lock");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }

    /// The last lines written, masked.
    pub fn tail(&self) -> String {
        self.tail.lock().expect("log lock").iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// How the engine asks a running action to stop (Ctrl-C, `phased cancel`, a timeout,
/// another node failing). An action that awaits [`StopSignal::requested`] stops by
/// itself within `grace` (SIGTERM to its processes, then SIGKILL); one that never
/// looks is dropped at once, which kills its processes.
#[derive(Clone)]
pub struct StopSignal {
    rx: Option<tokio::sync::watch::Receiver<bool>>,
    watched: Arc<std::sync::atomic::AtomicBool>,
    /// How long the action's processes get between SIGTERM and SIGKILL.
    pub grace: std::time::Duration,
}

impl StopSignal {
    pub fn new(rx: tokio::sync::watch::Receiver<bool>, grace: std::time::Duration) -> Self {
        StopSignal { rx: Some(rx), watched: Default::default(), grace }
    }

    /// A signal that never fires (an action run outside the engine).
    pub fn never() -> Self {
        StopSignal { rx: None, watched: Default::default(), grace: std::time::Duration::ZERO }
    }

    /// Resolves when the action is asked to stop; the action then has `grace`.
    pub async fn requested(&self) {
        self.watched.store(true, std::sync::atomic::Ordering::Relaxed);
        self.fired().await;
    }

    /// Resolves when a stop is asked for (for the engine: it does not count as watching).
    pub(crate) async fn fired(&self) {
        let Some(rx) = &self.rx else { return std::future::pending().await };
        let mut rx = rx.clone();
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether the action awaits the signal (and so stops by itself).
    pub(crate) fn watched(&self) -> bool {
        self.watched.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Everything an action may use while it runs.
#[derive(Clone)]
pub struct ActionCtx {
    pub run_id: String,
    /// The run's id and database key, marking every process it starts.
    pub run_key: String,
    pub node: String,
    pub attempt: u32,
    pub log: Arc<NodeLog>,
    pub progress: Arc<ProgressReporter>,
    /// A folder of this run's own (scratch files, `$PHASED_OUTPUT`).
    pub work_dir: PathBuf,
    pub stop: StopSignal,
}

impl ActionCtx {
    /// A context for running an action outside the engine (tests).
    pub fn detached(run_id: &str, node: &str, work_dir: PathBuf) -> Self {
        ActionCtx {
            run_id: run_id.into(),
            run_key: run_id.into(),
            node: node.into(),
            attempt: 1,
            log: Arc::new(NodeLog::discard()),
            progress: Arc::new(ProgressReporter::none()),
            work_dir,
            stop: StopSignal::never(),
        }
    }
}
