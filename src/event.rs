//! What happens during a run, as typed events. Each event is stored with a sequence
//! number that increases across the whole database (the service's event streams replay
//! from it), then handed to a [`Reporter`]: a progress bar, lines or JSON lines. The
//! JSON shape is DESIGN.md section 5, plus `seq`.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

/// One event of a run: where the run stood when it happened, and what happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The stored sequence number; `None` until the event is written.
    pub seq: Option<i64>,
    pub ts: String,
    pub deployment: String,
    pub phase: String,
    pub progress: u8,
    pub kind: EventKind,
    /// The seconds the run has left, when its nodes have a history (`eta_seconds`).
    pub eta_seconds: Option<f64>,
}

/// What happened. Node ids are qualified (`source.clone`); an undo step is
/// `<node>.undo`, with `{"undo": <node>}` as its metadata.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// Written by the store: the run waits for a worker or for its target (`behind`:
    /// the run it waits for, if any).
    RunQueued {
        behind: Option<String>,
    },
    RunStarted,
    RunResumed,
    NodeStarted {
        node: String,
        attempt: u32,
        metadata: Value,
        writes: Vec<PathBuf>,
    },
    NodeProgress {
        node: String,
        attempt: u32,
        fraction: f64,
    },
    NodeSucceeded {
        node: String,
        attempt: u32,
        metadata: Value,
    },
    NodeFailed {
        node: String,
        attempt: u32,
        error: String,
        metadata: Value,
    },
    NodeRetrying {
        node: String,
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    NodeSkipped {
        node: String,
    },
    RunSucceeded {
        metadata: Value,
    },
    RunFailed {
        node: String,
        error: String,
        metadata: Value,
    },
    RunInterrupted {
        reason: String,
    },
}

impl EventKind {
    /// The `event` field of the JSON form.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunQueued { .. } => "run_queued",
            EventKind::RunStarted => "run_started",
            EventKind::RunResumed => "run_resumed",
            EventKind::NodeStarted { .. } => "node_started",
            EventKind::NodeProgress { .. } => "node_progress",
            EventKind::NodeSucceeded { .. } => "node_succeeded",
            EventKind::NodeFailed { .. } => "node_failed",
            EventKind::NodeRetrying { .. } => "node_retrying",
            EventKind::NodeSkipped { .. } => "node_skipped",
            EventKind::RunSucceeded { .. } => "run_succeeded",
            EventKind::RunFailed { .. } => "run_failed",
            EventKind::RunInterrupted { .. } => "run_interrupted",
        }
    }
}

impl Event {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// The node the event is about, if any (a failed run names the failed node).
    pub fn node(&self) -> Option<&str> {
        match &self.kind {
            EventKind::NodeStarted { node, .. }
            | EventKind::NodeProgress { node, .. }
            | EventKind::NodeSucceeded { node, .. }
            | EventKind::NodeFailed { node, .. }
            | EventKind::NodeRetrying { node, .. }
            | EventKind::NodeSkipped { node }
            | EventKind::RunFailed { node, .. } => Some(node),
            EventKind::RunQueued { .. }
            | EventKind::RunStarted
            | EventKind::RunResumed
            | EventKind::RunSucceeded { .. }
            | EventKind::RunInterrupted { .. } => None,
        }
    }

    pub fn attempt(&self) -> Option<u32> {
        match &self.kind {
            EventKind::NodeStarted { attempt, .. }
            | EventKind::NodeProgress { attempt, .. }
            | EventKind::NodeSucceeded { attempt, .. }
            | EventKind::NodeFailed { attempt, .. }
            | EventKind::NodeRetrying { attempt, .. } => Some(*attempt),
            _ => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match &self.kind {
            EventKind::NodeFailed { error, .. }
            | EventKind::NodeRetrying { error, .. }
            | EventKind::RunFailed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The `metadata` field of the JSON form.
    pub fn metadata(&self) -> Value {
        match &self.kind {
            EventKind::NodeStarted { metadata, .. }
            | EventKind::NodeSucceeded { metadata, .. }
            | EventKind::NodeFailed { metadata, .. }
            | EventKind::RunSucceeded { metadata }
            | EventKind::RunFailed { metadata, .. } => metadata.clone(),
            EventKind::NodeProgress { fraction, .. } => json!({ "fraction": fraction }),
            EventKind::NodeRetrying { delay_ms, .. } => json!({ "delay_ms": delay_ms }),
            EventKind::RunInterrupted { reason } => json!({ "reason": reason }),
            EventKind::RunQueued { behind: Some(behind) } => json!({ "behind": behind }),
            EventKind::RunQueued { behind: None } => Value::Object(Map::new()),
            EventKind::RunStarted | EventKind::RunResumed | EventKind::NodeSkipped { .. } => Value::Object(Map::new()),
        }
    }

    /// The paths a starting node declares it writes (`phased watch` ignores them).
    pub fn writes(&self) -> &[PathBuf] {
        match &self.kind {
            EventKind::NodeStarted { writes, .. } => writes,
            _ => &[],
        }
    }

    /// The JSON object of `--format jsonl` and of the stored event (DESIGN.md section 5).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.shape()).expect("an event serializes")
    }

    /// The same object as text, serialized straight from the event's fields.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&self.shape()).expect("an event serializes")
    }

    fn shape(&self) -> Shape<'_> {
        let metadata = match &self.kind {
            EventKind::NodeStarted { metadata, .. }
            | EventKind::NodeSucceeded { metadata, .. }
            | EventKind::NodeFailed { metadata, .. }
            | EventKind::RunSucceeded { metadata }
            | EventKind::RunFailed { metadata, .. } => Metadata::Borrowed(metadata),
            _ => Metadata::Owned(self.metadata()),
        };
        Shape {
            seq: self.seq,
            ts: &self.ts,
            event: self.name(),
            deployment: &self.deployment,
            node: self.node(),
            phase: &self.phase,
            progress: self.progress,
            metadata,
            attempt: self.attempt(),
            error: self.error(),
            eta_seconds: self.eta_seconds,
        }
    }
}

/// The JSON form, by reference: no intermediate map.
#[derive(serde::Serialize)]
struct Shape<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<i64>,
    ts: &'a str,
    event: &'static str,
    deployment: &'a str,
    node: Option<&'a str>,
    phase: &'a str,
    progress: u8,
    metadata: Metadata<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_seconds: Option<f64>,
}

enum Metadata<'a> {
    Borrowed(&'a Value),
    Owned(Value),
}

impl serde::Serialize for Metadata<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Metadata::Borrowed(value) => value.serialize(serializer),
            Metadata::Owned(value) => value.serialize(serializer),
        }
    }
}

/// Receives every event of a run, in order, once it is stored.
pub trait Reporter {
    fn event(&mut self, event: &Event);
    /// The run ended (any outcome); finish drawing.
    fn finish(&mut self) {}
    /// Something people should know that is not an event (a run waiting for its target).
    fn note(&mut self, _text: &str) {}
    /// Where the lines that steps print go while they run (masked, each cut to a few
    /// KiB), if this reporter shows them. Called from the tasks that read the output.
    fn output(&self) -> Option<OutputSink> {
        None
    }
}

/// Receives `(node, line)` for every line a step prints.
pub type OutputSink = std::sync::Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Collects events (tests, and `--format json` which prints a summary at the end).
#[derive(Default)]
pub struct Collect(pub Vec<Event>);

impl Reporter for Collect {
    fn event(&mut self, event: &Event) {
        self.0.push(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_form_has_the_documented_fields() {
        let event = Event {
            seq: Some(7),
            ts: "2026-12-01T00:00:00.000Z".into(),
            deployment: "d1".into(),
            phase: "BUILDING".into(),
            progress: 42,
            kind: EventKind::NodeRetrying { node: "build".into(), attempt: 2, delay_ms: 50, error: "boom".into() },
            eta_seconds: None,
        };
        assert_eq!(
            event.to_json(),
            json!({"seq": 7, "ts": "2026-12-01T00:00:00.000Z", "event": "node_retrying", "deployment": "d1",
                   "node": "build", "phase": "BUILDING", "progress": 42, "metadata": {"delay_ms": 50},
                   "attempt": 2, "error": "boom"})
        );
        let started = Event { seq: None, kind: EventKind::RunStarted, ..event };
        assert_eq!(started.to_json()["node"], Value::Null);
        assert!(started.to_json().get("seq").is_none());
    }
}
