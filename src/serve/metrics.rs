//! `GET /metrics`, in the Prometheus text format.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;

use super::{ApiResult, App};
use crate::store::RunStatus;

/// `GET /metrics`: Prometheus text: runs by status and pipeline, the queue's depth,
/// and the durations of finished runs and nodes.
pub(super) async fn metrics(State(app): State<Arc<App>>) -> ApiResult {
    let text = app
        .with_store(|store| {
            let runs = store.runs()?;
            let mut by: std::collections::BTreeMap<(String, &'static str), u64> = Default::default();
            for r in &runs {
                *by.entry((r.pipeline.clone(), r.status.as_str())).or_default() += 1;
            }
            let mut out = String::new();
            out.push_str("# HELP phased_runs Runs in the database, by pipeline and status.\n# TYPE phased_runs gauge\n");
            for ((pipeline, status), n) in &by {
                out.push_str(&format!("phased_runs{{pipeline=\"{}\",status=\"{status}\"}} {n}\n", escape(pipeline)));
            }
            let queued = runs.iter().filter(|r| r.status == RunStatus::Queued).count();
            out.push_str(&format!("# HELP phased_queue_depth Runs waiting for a worker or their target.\n# TYPE phased_queue_depth gauge\nphased_queue_depth {queued}\n"));
            let durations: Vec<f64> = runs
                .iter()
                .filter_map(|r| {
                    let (a, b) = (r.created_at.as_str(), r.finished_at.as_deref()?);
                    let (a, b) = (humantime::parse_rfc3339(a).ok()?, humantime::parse_rfc3339(b).ok()?);
                    Some(b.duration_since(a).ok()?.as_secs_f64())
                })
                .collect();
            head(&mut out, "phased_run_duration_seconds", "Durations of finished runs.");
            histogram(&mut out, "phased_run_duration_seconds", "", &durations);
            let mut nodes: std::collections::BTreeMap<(String, String), Vec<f64>> = Default::default();
            for d in store.node_durations(None, 10_000)? {
                nodes.entry((d.pipeline, d.node)).or_default().push(d.seconds);
            }
            head(&mut out, "phased_node_duration_seconds", "Durations of finished nodes, by pipeline and node.");
            for ((pipeline, node), values) in &nodes {
                let labels = format!("pipeline=\"{}\",node=\"{}\"", escape(pipeline), escape(node));
                histogram(&mut out, "phased_node_duration_seconds", &labels, values);
            }
            Ok(out)
        })
        .await?;
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
}

/// One histogram's series; `labels` (`a="x",b="y"`, or empty) go on every line.
fn histogram(out: &mut String, name: &str, labels: &str, values: &[f64]) {
    let (with, alone) = if labels.is_empty() {
        (String::new(), String::new())
    } else {
        (format!("{labels},"), format!("{{{labels}}}"))
    };
    for le in [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0] {
        let n = values.iter().filter(|v| **v <= le).count();
        out.push_str(&format!("{name}_bucket{{{with}le=\"{le}\"}} {n}\n"));
    }
    out.push_str(&format!("{name}_bucket{{{with}le=\"+Inf\"}} {}\n", values.len()));
    out.push_str(&format!("{name}_sum{alone} {}\n{name}_count{alone} {}\n", values.iter().sum::<f64>(), values.len()));
}
