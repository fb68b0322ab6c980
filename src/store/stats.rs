//! A run's phase history, and what finished runs and nodes took, for both databases:
//! `/metrics`, the ETA and `phased stats`.

use serde_json::Value;

use super::backend::Backend;
use super::sql::{Db, Row, params};
use super::{DURATION_BUCKETS, Histogram, HistoryRow, Metrics, NodeDuration, StatsStore, StoreError};

impl<B: Backend> StatsStore for B {
    fn history(&self, run: &str) -> Result<Vec<HistoryRow>, StoreError> {
        let sql = "SELECT phase, progress, metadata, node, created_at FROM phase_history WHERE deployment_id = ?1 \
                   ORDER BY seq";
        let history = |r: &Row| HistoryRow {
            phase: r.text(0),
            progress: r.int(1) as u8,
            metadata: r.json(2),
            node: r.opt_text(3),
            at: r.text(4),
        };
        self.direct(|db| Ok(db.query(sql, params![run])?.iter().map(history).collect()))
    }

    fn metrics(&self) -> Result<Metrics, StoreError> {
        self.direct(metrics)
    }

    fn node_durations(&self, pipeline: Option<&str>, last_runs: usize) -> Result<Vec<NodeDuration>, StoreError> {
        self.direct(|db| node_durations(db, pipeline, last_runs))
    }

    /// The seed's dashboard query as written (DESIGN.md section 7).
    fn seed_query(&self, id: &str) -> Result<Vec<Value>, StoreError> {
        let sql = "SELECT id, phase, phase_progress, phase_metadata->>'buildType' as build_type, \
                   phase_metadata->>'sourceType' as source_type, phase_updated_at, status \
                   FROM deployments WHERE id = ?1 ORDER BY phase_updated_at DESC";
        let row = |r: &Row| {
            serde_json::json!({
                "id": r.text(0), "phase": r.text(1), "phase_progress": r.int(2),
                "build_type": r.opt_text(3), "source_type": r.opt_text(4),
                "phase_updated_at": r.text(5), "status": r.text(6),
            })
        };
        self.direct(|db| Ok(db.query(sql, params![id])?.iter().map(row).collect()))
    }
}

/// The durations of the finished nodes of the newest `last_runs` finished runs (of one
/// pipeline, or of all), newest first.
fn node_durations(db: &mut dyn Db, pipeline: Option<&str>, last_runs: usize) -> Result<Vec<NodeDuration>, StoreError> {
    let d = db.dialect();
    // The newest finished runs first (a few rows each; by the pipeline's index when
    // there is one), then their nodes by key.
    let (index, which) = match pipeline {
        Some(_) => (d.pipeline_index, "pipeline = ?1"),
        None => ("", "CAST(?1 AS TEXT) IS NULL"),
    };
    let sql = format!(
        "SELECT d.id, d.pipeline, d.target, n.node, n.status = 'succeeded', {}, n.finished_at, n.error \
         FROM (SELECT id, pipeline, target, created_at FROM deployments {index} \
               WHERE {which} AND (status = 'succeeded' OR status = 'failed') ORDER BY created_at DESC LIMIT ?2) d \
         JOIN node_checkpoints n ON n.deployment_id = d.id \
         WHERE (n.status = 'succeeded' OR n.status = 'failed') AND n.started_at IS NOT NULL \
         AND n.finished_at IS NOT NULL ORDER BY d.created_at DESC, n.finished_at DESC",
        d.seconds("n.started_at", "n.finished_at")
    );
    let rows = db.query(&sql, params![pipeline, last_runs])?;
    Ok(rows
        .iter()
        .map(|r| NodeDuration {
            run: r.text(0),
            pipeline: r.text(1),
            target: r.opt_text(2),
            node: r.text(3),
            succeeded: r.int(4) != 0,
            seconds: r.real(5).max(0.0),
            finished_at: r.text(6),
            error: r.opt_text(7),
        })
        .collect())
}

/// `count(d <= b0), ..., count(d), sum(d)` over a column `d` of seconds.
fn buckets() -> String {
    let mut sql: Vec<String> = DURATION_BUCKETS.iter().map(|b| format!("count(*) FILTER (WHERE d <= {b})")).collect();
    sql.push("count(d)".into());
    sql.push("coalesce(sum(d), 0)".into());
    sql.join(", ")
}

fn histogram(row: &Row, from: usize) -> Histogram {
    let n = DURATION_BUCKETS.len();
    Histogram {
        at_most: (0..n).map(|i| row.int(from + i) as u64).collect(),
        count: row.int(from + n) as u64,
        sum: row.real(from + n + 1),
    }
}

/// Counts for `/metrics`.
fn metrics(db: &mut dyn Db) -> Result<Metrics, StoreError> {
    let d = db.dialect();
    let mut out = Metrics::default();
    let rows = db.query("SELECT pipeline, status, count(*) FROM deployments GROUP BY 1, 2 ORDER BY 1, 2", params![])?;
    out.runs = rows.iter().map(|r| (r.text(0), r.text(1), r.int(2) as u64)).collect();
    out.queued = db.query_one("SELECT count(*) FROM deployments WHERE status = 'queued'", params![])?.int(0) as u64;
    let runs = format!(
        "SELECT {} FROM (SELECT {} AS d FROM deployments WHERE finished_at IS NOT NULL) x",
        buckets(),
        d.seconds("created_at", "finished_at")
    );
    out.run_durations = histogram(&db.query_one(&runs, params![])?, 0);
    let nodes = format!(
        "SELECT pipeline, node, {} FROM (SELECT d.pipeline, n.node, {} AS d \
         FROM node_checkpoints n JOIN deployments d ON d.id = n.deployment_id \
         WHERE (n.status = 'succeeded' OR n.status = 'failed') AND n.started_at IS NOT NULL \
         AND n.finished_at IS NOT NULL) x GROUP BY pipeline, node ORDER BY pipeline, node",
        buckets(),
        d.seconds("n.started_at", "n.finished_at")
    );
    out.node_durations = db.query(&nodes, params![])?.iter().map(|r| (r.text(0), r.text(1), histogram(r, 2))).collect();
    Ok(out)
}
