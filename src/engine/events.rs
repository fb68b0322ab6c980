//! What happens during a run, as typed events. Reporters turn them into a progress
//! bar, lines or JSON lines; the JSON shape is DESIGN.md section 5.

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RunStarted,
    RunResumed,
    NodeStarted,
    NodeProgress,
    NodeSucceeded,
    NodeFailed,
    NodeRetrying,
    NodeSkipped,
    RunSucceeded,
    RunFailed,
    RunInterrupted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunStarted => "run_started",
            EventKind::RunResumed => "run_resumed",
            EventKind::NodeStarted => "node_started",
            EventKind::NodeProgress => "node_progress",
            EventKind::NodeSucceeded => "node_succeeded",
            EventKind::NodeFailed => "node_failed",
            EventKind::NodeRetrying => "node_retrying",
            EventKind::NodeSkipped => "node_skipped",
            EventKind::RunSucceeded => "run_succeeded",
            EventKind::RunFailed => "run_failed",
            EventKind::RunInterrupted => "run_interrupted",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub ts: String,
    pub event: EventKind,
    pub deployment: String,
    pub node: Option<String>,
    pub phase: String,
    pub progress: u8,
    pub metadata: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `node_started`: the paths the node's action declares it writes.
    #[serde(skip)]
    pub writes: Vec<std::path::PathBuf>,
}

/// Receives every event of a run, in order, on the dispatcher's thread.
pub trait Reporter {
    fn event(&mut self, event: &Event);
    /// The run ended (any outcome); finish drawing.
    fn finish(&mut self) {}
}

/// Collects events (tests, and `--format json` which prints a summary at the end).
#[derive(Default)]
pub struct Collect(pub Vec<Event>);

impl Reporter for Collect {
    fn event(&mut self, event: &Event) {
        self.0.push(event.clone());
    }
}
