//! `GET /metrics`, in the Prometheus text format, counted by the database.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;

use super::{ApiResult, App};
use crate::store::{DURATION_BUCKETS, Histogram};

/// `GET /metrics`: Prometheus text: runs by status and pipeline, the queue's depth,
/// and the durations of finished runs and nodes.
pub(super) async fn metrics(State(app): State<Arc<App>>) -> ApiResult {
    let m = app.with_store(|store| Ok(store.metrics()?)).await?;
    let mut out = String::new();
    out.push_str("# HELP phased_runs Runs in the database, by pipeline and status.\n# TYPE phased_runs gauge\n");
    for (pipeline, status, n) in &m.runs {
        out.push_str(&format!("phased_runs{{pipeline=\"{}\",status=\"{}\"}} {n}\n", escape(pipeline), escape(status)));
    }
    out.push_str(&format!(
        "# HELP phased_queue_depth Runs waiting for a worker or their target.\n# TYPE phased_queue_depth gauge\nphased_queue_depth {}\n",
        m.queued
    ));
    head(&mut out, "phased_run_duration_seconds", "Durations of finished runs.");
    histogram(&mut out, "phased_run_duration_seconds", "", &m.run_durations);
    head(&mut out, "phased_node_duration_seconds", "Durations of finished nodes, by pipeline and node.");
    for (pipeline, node, h) in &m.node_durations {
        let labels = format!("pipeline=\"{}\",node=\"{}\"", escape(pipeline), escape(node));
        histogram(&mut out, "phased_node_duration_seconds", &labels, h);
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
}

/// One histogram's series; `labels` (`a="x",b="y"`, or empty) go on every line.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (with, alone) = if labels.is_empty() {
        (String::new(), String::new())
    } else {
        (format!("{labels},"), format!("{{{labels}}}"))
    };
    for (le, n) in DURATION_BUCKETS.iter().zip(&h.at_most) {
        out.push_str(&format!("{name}_bucket{{{with}le=\"{le}\"}} {n}\n"));
    }
    out.push_str(&format!("{name}_bucket{{{with}le=\"+Inf\"}} {}\n", h.count));
    out.push_str(&format!("{name}_sum{alone} {}\n{name}_count{alone} {}\n", h.sum, h.count));
}
