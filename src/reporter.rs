//! How a run shows itself: a live progress bar on a terminal, one line per event
//! elsewhere, or one JSON object per event (`--format jsonl`).

use std::io::Write;

use indicatif::{ProgressBar, ProgressStyle};

use crate::event::{Event, EventKind, Reporter};

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

/// A line per event, for logs and pipes.
pub struct Lines;

fn describe(event: &Event) -> Option<String> {
    let run = &event.deployment;
    let text = match &event.kind {
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

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

impl Reporter for Lines {
    fn event(&mut self, event: &Event) {
        if let Some(text) = describe(event) {
            out_line(format_args!("[{:>3}%] {:<17} {text}", event.progress, event.phase));
        }
    }
}

/// A live bar on a terminal, with each event printed above it.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    pub fn new() -> Self {
        let bar = ProgressBar::new(100);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Bar { bar }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for Bar {
    fn event(&mut self, event: &Event) {
        self.bar.set_position(u64::from(event.progress));
        self.bar.set_message(format!("{} {}", event.phase, event.node().unwrap_or("")));
        if let Some(text) = describe(event) {
            self.bar.println(format!("[{:>3}%] {:<17} {text}", event.progress, event.phase));
        }
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
