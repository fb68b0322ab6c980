//! How a run shows itself: a live progress bar on a terminal, one line per event
//! elsewhere, or one JSON object per event (`--format jsonl`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use crate::event::{Event, EventKind, OutputSink, Reporter};

static QUIET: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// `-v`: runs also show what their steps print (as `--show-output`).
pub(crate) fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

pub(crate) fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// `-q/--quiet`: only errors are said (set once, by `main`).
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A note for people on stderr (what was done, what to do next); `-q` drops it.
pub(crate) fn note_line(line: std::fmt::Arguments) {
    if !quiet() {
        err_line(line);
    }
}

/// Writes a line to stdout. Output that cannot be written (a closed pipe: `phased run
/// ... | head -1`) is dropped: a run goes on, to its database and its logs.
pub(crate) fn out_line(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Writes a line to stderr; a closed stderr never stops a run either.
pub(crate) fn err_line(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// One JSON object per event on stdout.
pub struct JsonLines;

impl Reporter for JsonLines {
    fn event(&mut self, event: &Event) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(event.to_json_string().as_bytes());
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

/// A line per event, for logs and pipes; with `show_output`, also each line a step
/// prints, as `node | line`.
pub struct Lines {
    pub show_output: bool,
}

fn describe(event: &Event) -> Option<String> {
    let run = &event.deployment;
    let text = match &event.kind {
        EventKind::RunQueued { behind: Some(behind) } => format!("run {run} waits for run {behind}"),
        EventKind::RunQueued { behind: None } => format!("run {run} is queued"),
        EventKind::RunStarted => format!("run {run} started"),
        EventKind::RunResumed => format!("run {run} resumed"),
        EventKind::NodeStarted { node, attempt: 1, .. } => format!("{node} started"),
        EventKind::NodeStarted { node, attempt, .. } => format!("{node} started (attempt {attempt})"),
        EventKind::NodeProgress { .. } => return None,
        EventKind::NodeSucceeded { node, .. } => format!("{node} succeeded"),
        EventKind::NodeSkipped { node } => format!("{node} skipped (condition is false)"),
        EventKind::NodeRetrying { node, attempt, error, .. } => {
            format!("{node} failed; retrying (attempt {attempt}): {}", first_line(error))
        }
        EventKind::NodeFailed { node, error, .. } => format!("{node} failed: {error}"),
        EventKind::RunSucceeded { .. } => format!("run {run} is ACTIVE"),
        EventKind::RunFailed { node, .. } => format!("run {run} FAILED at `{node}`"),
        EventKind::RunInterrupted { reason } => {
            format!("run {run} stopped ({reason}); resume it with `phased resume {run}`")
        }
    };
    Some(text)
}

/// The progress a line shows: a FAILED run's is the progress it reached (its
/// `progressReached`), not the 0 its event records (docs/events.md).
fn shown_progress(event: &Event) -> u8 {
    match &event.kind {
        EventKind::RunFailed { metadata, .. } => {
            metadata["progressReached"].as_u64().and_then(|p| u8::try_from(p).ok()).unwrap_or(event.progress)
        }
        _ => event.progress,
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

impl Reporter for Lines {
    fn event(&mut self, event: &Event) {
        if let Some(text) = describe(event) {
            out_line(format_args!("[{:>3}%] {:<18} {text}", shown_progress(event), event.phase));
        }
    }

    fn note(&mut self, text: &str) {
        note_line(format_args!("{text}"));
    }

    fn output(&self) -> Option<OutputSink> {
        self.show_output.then(|| Arc::new(|node: &str, line: &str| out_line(format_args!("{node} | {line}"))) as _)
    }
}

/// The nodes running now, and since when.
#[derive(Default)]
struct Live {
    running: Vec<(String, Instant)>,
    /// The run's time left as of when it was said.
    eta: Option<(Instant, f64)>,
}

impl Live {
    fn note(&mut self, event: &Event) {
        self.eta = event.eta_seconds.map(|eta| (Instant::now(), eta));
        match &event.kind {
            EventKind::NodeStarted { node, .. } => {
                self.running.retain(|(n, _)| n != node);
                self.running.push((node.clone(), Instant::now()));
            }
            EventKind::NodeSucceeded { node, .. }
            | EventKind::NodeFailed { node, .. }
            | EventKind::NodeRetrying { node, .. }
            | EventKind::NodeSkipped { node } => self.running.retain(|(n, _)| n != node),
            _ => {}
        }
    }

    /// `build 12s, test 3s`: the running nodes, oldest first, within `width` columns,
    /// then what the run has left, when its history says (`ETA 40s`).
    fn running(&self, width: usize) -> String {
        // Past its estimate the run is late: say so, never "0s left".
        let eta = self.eta.map(|(at, eta)| match eta - at.elapsed().as_secs_f64() {
            left if left > 0.0 => format!(" · ETA {}s", left.ceil()),
            left => format!(" · longer than usual (+{}s)", (-left).ceil()),
        });
        if self.running.is_empty() {
            return format!("-{}", eta.unwrap_or_default());
        }
        let parts: Vec<String> =
            self.running.iter().map(|(node, since)| format!("{node} {}s", since.elapsed().as_secs())).collect();
        fit(&format!("{}{}", parts.join(", "), eta.unwrap_or_default()), width)
    }
}

/// `text` within `width` columns, ending in `…` when cut; control characters and
/// colour codes (a step's own progress bars) are dropped.
fn fit(text: &str, width: usize) -> String {
    let plain: String = console::strip_ansi_codes(text).chars().filter(|c| !c.is_control()).collect();
    console::truncate_str(&plain, width, "…").into_owned()
}

/// A live bar on a terminal: progress, elapsed time, the phase and the running nodes,
/// then the last line a step printed; each event is printed above it.
pub struct Bar {
    bar: ProgressBar,
    live: Arc<Mutex<Live>>,
    show_output: bool,
}

impl Bar {
    pub fn new(show_output: bool) -> Self {
        let live = Arc::new(Mutex::new(Live::default()));
        let bar = ProgressBar::new(100);
        let shown = live.clone();
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos:>3}% {elapsed:>4} {prefix} · {running}\n  {wide_msg}",
            )
            .expect("a valid template")
            .with_key("running", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let columns = usize::from(console::Term::stderr().size().1);
                let room = columns.saturating_sub(64).max(20);
                let _ = w.write_str(&shown.lock().expect("bar lock").running(room));
            })
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Bar { bar, live, show_output }
    }
}

impl Reporter for Bar {
    fn event(&mut self, event: &Event) {
        self.live.lock().expect("bar lock").note(event);
        let progress = shown_progress(event);
        self.bar.set_position(u64::from(progress));
        self.bar.set_prefix(event.phase.clone());
        if let Some(text) = describe(event) {
            self.bar.println(format!("[{:>3}%] {:<18} {text}", progress, event.phase));
        }
    }

    fn note(&mut self, text: &str) {
        self.bar.println(text);
    }

    fn output(&self) -> Option<OutputSink> {
        let (bar, show) = (self.bar.clone(), self.show_output);
        Some(Arc::new(move |node: &str, line: &str| {
            if show {
                bar.println(format!("{node} | {line}"));
            }
            bar.set_message(fit(&format!("{node} | {line}"), 500));
        }))
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Prints nothing while running (`--format json` prints the final status instead).
pub struct Silent;

impl Reporter for Silent {
    fn event(&mut self, _event: &Event) {}
}
