//! The time a run has left (DESIGN.md section 11): each top-level node is estimated by
//! the median duration of its last 20 successful runs of the same pipeline and target,
//! else of the pipeline, else from its weight at the pace of the nodes that have a
//! history; what is left is the longest path through the nodes not finished, a running
//! node counting what its estimate has left.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::plan::Plan;
use crate::store::{NodeDuration, NodeRow, NodeStatus};

/// Successful runs of a node looked at for its estimate.
const HISTORY: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Pending,
    Running(SystemTime),
    Done,
}

pub(crate) struct Eta {
    index: HashMap<String, usize>,
    needs: Vec<Vec<usize>>,
    /// In topological order.
    order: Vec<usize>,
    estimate: Vec<f64>,
    state: Vec<State>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

/// Per node of `plan` (top level): its estimate in seconds, from `history` (newest
/// first, of this pipeline). `None` when no node has a history.
pub(crate) fn estimates(plan: &Plan, target: Option<&str>, history: &[NodeDuration]) -> Option<Vec<f64>> {
    let known = medians(plan, target, history);
    // The pace of the nodes with a history, for those without: seconds per unit of weight.
    let (seconds, weight) = plan
        .nodes
        .iter()
        .zip(&known)
        .filter_map(|(n, k)| k.map(|k| (k, n.weight)))
        .fold((0.0, 0.0), |(s, w), (k, nw)| (s + k, w + nw));
    if known.iter().all(Option::is_none) {
        return None;
    }
    let pace = if weight > 0.0 { seconds / weight } else { 0.0 };
    Some(plan.nodes.iter().zip(known).map(|(n, k)| k.unwrap_or(n.weight * pace)).collect())
}

/// Per node of `plan` (top level): the median of its last successful durations (of
/// this target, else of the pipeline), in seconds; `None` for a node without any. What
/// a node "usually" takes, said beside one that runs longer.
pub(crate) fn medians(plan: &Plan, target: Option<&str>, history: &[NodeDuration]) -> Vec<Option<f64>> {
    // One pass over the history: per node, its newest successful durations of this
    // target and of any.
    let mut same: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut any: HashMap<&str, Vec<f64>> = HashMap::new();
    for d in history.iter().filter(|d| d.succeeded) {
        let all = any.entry(d.node.as_str()).or_default();
        if all.len() < HISTORY {
            all.push(d.seconds);
        }
        if target.is_some() && d.target.as_deref() == target {
            let mine = same.entry(d.node.as_str()).or_default();
            if mine.len() < HISTORY {
                mine.push(d.seconds);
            }
        }
    }
    plan.nodes
        .iter()
        .map(|n| {
            let id = n.id.as_str();
            same.remove(id).and_then(median).or_else(|| any.remove(id).and_then(median))
        })
        .collect()
}

impl Eta {
    /// For a run of `plan` that starts with these checkpoints (a resume keeps what
    /// finished).
    pub(crate) fn new(plan: &Plan, estimate: Vec<f64>, checkpoints: &[NodeRow]) -> Eta {
        let ids: Vec<String> = plan.nodes.iter().map(|n| n.id.clone()).collect();
        let status: HashMap<&str, NodeStatus> = checkpoints.iter().map(|c| (c.node.as_str(), c.status)).collect();
        let state = ids
            .iter()
            .map(|id| match status.get(id.as_str()) {
                Some(NodeStatus::Succeeded | NodeStatus::Skipped) => State::Done,
                _ => State::Pending,
            })
            .collect();
        Eta {
            index: ids.into_iter().enumerate().map(|(i, id)| (id, i)).collect(),
            needs: plan.nodes.iter().map(|n| n.needs.clone()).collect(),
            order: plan.order.clone(),
            estimate,
            state,
        }
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub(crate) fn started(&mut self, id: &str, at: SystemTime) {
        if let Some(i) = self.index(id) {
            self.state[i] = State::Running(at);
        }
    }

    pub(crate) fn finished(&mut self, id: &str) {
        if let Some(i) = self.index(id) {
            self.state[i] = State::Done;
        }
    }

    /// Seconds left at `now`: the longest path through what has not finished.
    pub(crate) fn remaining(&self, now: SystemTime) -> f64 {
        let mut end = vec![0.0; self.estimate.len()];
        let mut longest: f64 = 0.0;
        for &i in &self.order {
            let left = match self.state[i] {
                State::Done => 0.0,
                State::Pending => self.estimate[i],
                State::Running(since) => {
                    let ran = now.duration_since(since).map_or(0.0, |d| d.as_secs_f64());
                    (self.estimate[i] - ran).max(0.0)
                }
            };
            let start = self.needs[i].iter().map(|&n| end[n]).fold(0.0, f64::max);
            let finish = start + left;
            end[i] = finish;
            longest = longest.max(finish);
        }
        (longest * 1000.0).round() / 1000.0
    }
}

/// Follows a change of the run (top-level nodes only: a sub-pipeline node runs until
/// its own nodes have finished).
pub(crate) fn follow(eta: &mut Eta, change: &super::core::Change, now: SystemTime) {
    use super::core::Change;
    match change {
        Change::NodeStarted { id, .. } if !id.contains('.') => eta.started(id, now),
        Change::NodeSucceeded { id, .. } | Change::NodeSkipped { id } if !id.contains('.') => eta.finished(id),
        Change::RunSucceeded { .. } => {
            for state in &mut eta.state {
                *state = State::Done;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_and_an_odd_count() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
