//! One function turns each change of a run into its database writes and its event, so
//! that what is stored and what is reported cannot drift apart.

use serde_json::json;

use super::core::{Change, Record};
use crate::event::{Event, EventKind};
use crate::phase;
use crate::store::{NodeRow, NodeStatus, RunStatus, Write};

/// The writes of one change, its event last (stored with them, in the same
/// transaction, so that a replay from the database sees exactly what was reported).
pub(crate) fn record(run: &str, r: &Record) -> Vec<Write> {
    let node = |id: &str, status, attempt| NodeRow {
        run: run.to_string(),
        node: id.to_string(),
        status,
        attempt,
        outputs: None,
        error: None,
        started_at: None,
        finished_at: None,
    };
    let phase_update = |metadata: &serde_json::Value, node: Option<&str>| Write::Phase {
        run: run.to_string(),
        phase: r.phase.clone(),
        progress: r.progress,
        metadata: metadata.clone(),
        node: node.map(str::to_string),
        at: r.at.clone(),
    };
    let progress =
        || Write::Progress { run: run.to_string(), phase: r.phase.clone(), progress: r.progress, at: r.at.clone() };
    let status = |status: RunStatus, error: Option<&str>, finished: bool| Write::Status {
        run: run.to_string(),
        status,
        error: error.map(str::to_string),
        finished: finished.then(|| r.at.clone()),
    };

    let (mut writes, kind) = match &r.change {
        Change::RunStarted { resumed: false } => (vec![], EventKind::RunStarted),
        Change::RunStarted { resumed: true } => (vec![], EventKind::RunResumed),
        Change::NodeStarted { id, attempt, metadata, phase_update: update, writes, selection } => {
            let mut out = Vec::with_capacity(2);
            if *update {
                out.push(phase_update(metadata, Some(id)));
            }
            out.push(Write::Node(NodeRow {
                outputs: selection.clone(),
                started_at: Some(r.at.clone()),
                ..node(id, NodeStatus::Running, *attempt)
            }));
            let kind = EventKind::NodeStarted {
                node: id.clone(),
                attempt: *attempt,
                metadata: metadata.clone(),
                writes: writes.clone(),
            };
            (out, kind)
        }
        Change::NodeProgress { id, attempt, fraction } => {
            (vec![progress()], EventKind::NodeProgress { node: id.clone(), attempt: *attempt, fraction: *fraction })
        }
        Change::NodeRetrying { id, attempt, delay, error } => {
            let delay_ms = delay.as_millis() as u64;
            (vec![], EventKind::NodeRetrying { node: id.clone(), attempt: *attempt, delay_ms, error: error.clone() })
        }
        Change::NodeSucceeded { id, attempt, outputs, started_at, result, node_phase } => {
            let checkpoint = Write::Node(NodeRow {
                outputs: Some(outputs.clone()),
                started_at: started_at.clone(),
                finished_at: Some(r.at.clone()),
                ..node(id, NodeStatus::Succeeded, *attempt)
            });
            let update = match result {
                Some(metadata) => Write::Phase {
                    run: run.to_string(),
                    phase: node_phase.clone(),
                    progress: r.progress,
                    metadata: metadata.clone(),
                    node: Some(id.clone()),
                    at: r.at.clone(),
                },
                None => progress(),
            };
            let metadata = result.clone().unwrap_or_else(|| json!({}));
            (vec![checkpoint, update], EventKind::NodeSucceeded { node: id.clone(), attempt: *attempt, metadata })
        }
        Change::NodeSkipped { id } => {
            let checkpoint =
                Write::Node(NodeRow { finished_at: Some(r.at.clone()), ..node(id, NodeStatus::Skipped, 0) });
            (vec![checkpoint, progress()], EventKind::NodeSkipped { node: id.clone() })
        }
        Change::NodeFailed { id, attempt, error, started_at } => {
            let checkpoint = Write::Node(NodeRow {
                error: Some(error.clone()),
                started_at: started_at.clone(),
                finished_at: Some(r.at.clone()),
                ..node(id, NodeStatus::Failed, *attempt)
            });
            let kind = EventKind::NodeFailed {
                node: id.clone(),
                attempt: *attempt,
                error: error.clone(),
                metadata: json!({}),
            };
            (vec![checkpoint], kind)
        }
        Change::FrameFailed { id, error, selection } => {
            let checkpoint = Write::Node(NodeRow {
                outputs: selection.clone(),
                error: Some(error.clone()),
                finished_at: Some(r.at.clone()),
                ..node(id, NodeStatus::Failed, 1)
            });
            return vec![checkpoint];
        }
        Change::UndoStarted { id, of } => {
            let kind =
                EventKind::NodeStarted { node: id.clone(), attempt: 1, metadata: json!({"undo": of}), writes: vec![] };
            (vec![], kind)
        }
        Change::UndoSucceeded { id, of } => {
            (vec![], EventKind::NodeSucceeded { node: id.clone(), attempt: 1, metadata: json!({"undo": of}) })
        }
        Change::UndoFailed { id, of, error } => {
            let metadata = json!({"undo": of});
            (vec![], EventKind::NodeFailed { node: id.clone(), attempt: 1, error: error.clone(), metadata })
        }
        Change::Forget { nodes, prefixes } => {
            let forget = Write::ResetNodes { run: run.to_string(), nodes: nodes.clone(), prefixes: prefixes.clone() };
            return vec![forget];
        }
        Change::RunSucceeded { metadata } => {
            let out = vec![phase_update(metadata, None), status(RunStatus::Succeeded, None, true)];
            (out, EventKind::RunSucceeded { metadata: metadata.clone() })
        }
        Change::RunFailed { node, error, summary, metadata } => {
            debug_assert_eq!(r.phase, phase::FAILED);
            let out = vec![phase_update(metadata, Some(node)), status(RunStatus::Failed, Some(summary), true)];
            (out, EventKind::RunFailed { node: node.clone(), error: error.clone(), metadata: metadata.clone() })
        }
        Change::RunStopped { status: how, reason } => {
            (vec![status(*how, Some(reason), false)], EventKind::RunInterrupted { reason: reason.clone() })
        }
    };
    writes.push(Write::Event(Event {
        seq: None,
        ts: r.at.clone(),
        deployment: run.to_string(),
        phase: r.phase.clone(),
        progress: r.progress,
        kind,
        eta_seconds: None,
    }));
    writes
}
