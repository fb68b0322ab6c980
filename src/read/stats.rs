//! `phased stats`: how long each phase and node takes, how often it succeeds, and what
//! fails most (DESIGN.md section 11).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::store::{RunRow, RunStatus, Store, StoreError};

/// Runs looked at, newest first.
const MOST_RUNS: usize = 5_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    (sorted[rank.min(sorted.len() - 1)] * 1000.0).round() / 1000.0
}

fn summary(mut seconds: Vec<f64>, succeeded: usize, all: usize) -> Value {
    seconds.sort_by(f64::total_cmp);
    json!({
        "runs": all,
        "p50_seconds": percentile(&seconds, 50.0),
        "p95_seconds": percentile(&seconds, 95.0),
        "success_rate": if all == 0 { 0.0 } else { ((succeeded as f64 / all as f64) * 1000.0).round() / 1000.0 },
    })
}

/// One node's durations, successes, runs, and failures by the first line of their error.
#[derive(Default)]
struct NodeTally(Vec<f64>, usize, usize, BTreeMap<String, usize>);

fn parse(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

/// The statistics of the runs of `pipeline` (or of all) finished since `since`.
pub fn stats(store: &dyn Store, pipeline: Option<&str>, since: SystemTime) -> Result<Value, StoreError> {
    let recent = |at: &str| parse(at).is_some_and(|t| t >= since);
    let runs: Vec<_> = store
        .runs()?
        .into_iter()
        .filter(|r| pipeline.is_none_or(|p| r.pipeline == p))
        .filter(|r| matches!(r.status, RunStatus::Succeeded | RunStatus::Failed))
        .filter(|r| r.finished_at.as_deref().is_some_and(recent))
        .take(MOST_RUNS)
        .collect();

    // Phases: the time from a phase's first update to the next phase's (or the end).
    let mut phases: BTreeMap<String, (Vec<f64>, usize, usize)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for run in &runs {
        let history = store.history(&run.id)?;
        let end = run.finished_at.as_deref().and_then(parse);
        let mut segments: Vec<(String, SystemTime)> = Vec::new();
        for h in &history {
            if segments.last().is_none_or(|(p, _)| *p != h.phase)
                && let Some(at) = parse(&h.at)
            {
                segments.push((h.phase.clone(), at));
            }
        }
        for (i, (phase, start)) in segments.iter().enumerate() {
            if matches!(phase.as_str(), "QUEUED" | "ACTIVE" | "FAILED") {
                continue;
            }
            let stop = segments.get(i + 1).map(|s| s.1).or(end);
            let Some(stop) = stop else { continue };
            let seconds = stop.duration_since(*start).map_or(0.0, |d| d.as_secs_f64());
            // A phase the run left for another succeeded; the last one of a failed run did not.
            let passed = run.status == RunStatus::Succeeded || i + 1 < segments.len() - 1;
            if !order.contains(phase) {
                order.push(phase.clone());
            }
            let entry = phases.entry(phase.clone()).or_default();
            entry.0.push(seconds);
            entry.1 += usize::from(passed);
            entry.2 += 1;
        }
    }

    // Nodes: their checkpoints.
    let ids: std::collections::HashSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let mut nodes: BTreeMap<String, NodeTally> = BTreeMap::new();
    for d in store.node_durations(pipeline, MOST_RUNS)? {
        if !ids.contains(d.run.as_str()) {
            continue;
        }
        let entry = nodes.entry(d.node.clone()).or_default();
        entry.0.push(d.seconds);
        entry.2 += 1;
        if d.succeeded {
            entry.1 += 1;
        } else {
            let first = d.error.as_deref().and_then(|e| e.lines().next()).unwrap_or("").to_string();
            *entry.3.entry(first).or_default() += 1;
        }
    }
    let mut failing: Vec<Value> = nodes
        .iter()
        .filter(|(_, n)| n.2 > n.1)
        .map(|(node, n)| {
            let (error, times) = n.3.iter().max_by_key(|(_, c)| **c).map(|(e, c)| (e.clone(), *c)).unwrap_or_default();
            json!({"node": node, "failures": n.2 - n.1, "runs": n.2, "most_frequent_error": error, "times": times})
        })
        .collect();
    failing.sort_by(|a, b| b["failures"].as_u64().cmp(&a["failures"].as_u64()));
    failing.truncate(5);

    let succeeded = runs.iter().filter(|r| r.status == RunStatus::Succeeded).count();
    let durations: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let (a, b) = (parse(&r.created_at)?, parse(r.finished_at.as_deref()?)?);
            Some(b.duration_since(a).ok()?.as_secs_f64())
        })
        .collect();
    Ok(json!({
        "pipeline": pipeline,
        "since": humantime::format_rfc3339_millis(since).to_string(),
        "runs": summary(durations, succeeded, runs.len()),
        "phases": order.iter().map(|p| {
            let (s, ok, all) = phases[p].clone();
            let mut v = summary(s, ok, all);
            v["phase"] = json!(p);
            v
        }).collect::<Vec<_>>(),
        "nodes": in_dag_order(store, &runs, &nodes)?.into_iter().map(|(node, NodeTally(s, ok, all, _))| {
            let mut v = summary(s.clone(), *ok, *all);
            v["node"] = json!(node);
            v
        }).collect::<Vec<_>>(),
        "failing": failing,
    }))
}

/// The nodes in the order their pipeline runs them (as planned by the newest run of
/// each pipeline, newest pipeline first), not by name: a node no such run plans (one
/// renamed since, say) comes after them, by name.
fn in_dag_order<'a>(
    store: &dyn Store,
    runs: &[RunRow],
    nodes: &'a BTreeMap<String, NodeTally>,
) -> Result<Vec<(&'a String, &'a NodeTally)>, StoreError> {
    let mut pipelines = std::collections::HashSet::new();
    let mut order: Vec<String> = Vec::new();
    for run in runs.iter().filter(|r| pipelines.insert(r.pipeline.as_str())) {
        let checkpoints = store.nodes(&run.id)?;
        for id in super::planned_nodes(store, run, &checkpoints) {
            if !order.contains(&id) {
                order.push(id);
            }
        }
    }
    let mut sorted: Vec<(&String, &NodeTally)> = nodes.iter().collect();
    // Stable: by name among the nodes not planned.
    sorted.sort_by_key(|(node, _)| order.iter().position(|o| o == *node).unwrap_or(usize::MAX));
    Ok(sorted)
}
