//! How a run shows itself: a live progress bar on a terminal, one line per event
//! elsewhere, or one JSON object per event (`--format jsonl`).

use std::io::Write;

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::events::{Event, EventKind, Reporter};

/// One JSON object per event on stdout.
pub struct JsonLines;

impl Reporter for JsonLines {
    fn event(&mut self, event: &Event) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, event);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

/// A line per event, for logs and pipes.
pub struct Lines;

fn describe(event: &Event) -> Option<String> {
    let node = event.node.as_deref().unwrap_or("");
    let text = match event.event {
        EventKind::RunStarted => format!("run {} started", event.deployment),
        EventKind::RunResumed => format!("run {} resumed", event.deployment),
        EventKind::NodeStarted => format!("{node} started"),
        EventKind::NodeProgress => return None,
        EventKind::NodeSucceeded => format!("{node} succeeded"),
        EventKind::NodeSkipped => format!("{node} skipped (condition is false)"),
        EventKind::NodeRetrying => format!(
            "{node} failed; retrying (attempt {}): {}",
            event.attempt.unwrap_or(0),
            first_line(event.error.as_deref().unwrap_or(""))
        ),
        EventKind::NodeFailed => format!("{node} failed: {}", event.error.as_deref().unwrap_or("")),
        EventKind::RunSucceeded => format!("run {} is ACTIVE", event.deployment),
        EventKind::RunFailed => format!("run {} FAILED at `{node}`", event.deployment),
        EventKind::RunInterrupted => format!(
            "run {} stopped ({}); resume it with `phased resume {}`",
            event.deployment,
            event.metadata["reason"].as_str().unwrap_or("interrupted"),
            event.deployment
        ),
    };
    Some(text)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

impl Reporter for Lines {
    fn event(&mut self, event: &Event) {
        if let Some(text) = describe(event) {
            println!("[{:>3}%] {:<17} {text}", event.progress, event.phase);
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
        self.bar.set_message(format!("{} {}", event.phase, event.node.as_deref().unwrap_or("")));
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
