//! What finished nodes took: for `/metrics`, the ETA and `phased stats`.

use rusqlite::{Connection, params};

use super::super::{DURATION_BUCKETS, Histogram, Metrics, NodeDuration, StoreError};

pub(super) fn node_durations(
    conn: &Connection,
    pipeline: Option<&str>,
    last_runs: usize,
) -> Result<Vec<NodeDuration>, StoreError> {
    // The newest finished runs first (a few rows each; by the pipeline's index when
    // there is one), then their nodes by key.
    let runs = match pipeline {
        Some(_) => {
            "SELECT id, pipeline, target, created_at FROM deployments INDEXED BY deployments_pipeline \
                    WHERE pipeline = ?1 AND (status = 'succeeded' OR status = 'failed') \
                    ORDER BY created_at DESC LIMIT ?2"
        }
        None => {
            "SELECT id, pipeline, target, created_at FROM deployments \
                 WHERE ?1 IS NULL AND (status = 'succeeded' OR status = 'failed') \
                 ORDER BY created_at DESC LIMIT ?2"
        }
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT d.id, d.pipeline, d.target, n.node, n.status = 'succeeded',
                (julianday(n.finished_at) - julianday(n.started_at)) * 86400.0, n.finished_at, n.error
         FROM ({runs}) d
         JOIN node_checkpoints n ON n.deployment_id = d.id
         WHERE (n.status = 'succeeded' OR n.status = 'failed')
           AND n.started_at IS NOT NULL AND n.finished_at IS NOT NULL
         ORDER BY d.created_at DESC, n.finished_at DESC"
    ))?;
    let rows = stmt
        .query_map(params![pipeline, last_runs as i64], |r| {
            Ok(NodeDuration {
                run: r.get(0)?,
                pipeline: r.get(1)?,
                target: r.get(2)?,
                node: r.get(3)?,
                succeeded: r.get(4)?,
                seconds: r.get::<_, f64>(5)?.max(0.0),
                finished_at: r.get(6)?,
                error: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// `sum(d <= b0), sum(d <= b1), ..., count(d), total(d)` over a column `d` of seconds.
fn buckets() -> String {
    let mut sql: Vec<String> = DURATION_BUCKETS.iter().map(|b| format!("coalesce(sum(d <= {b}), 0)")).collect();
    sql.push("count(d)".into());
    sql.push("total(d)".into());
    sql.join(", ")
}

fn histogram(row: &rusqlite::Row, from: usize) -> rusqlite::Result<Histogram> {
    let n = DURATION_BUCKETS.len();
    let at_most = (0..n).map(|i| row.get::<_, i64>(from + i).map(|v| v as u64)).collect::<Result<_, _>>()?;
    Ok(Histogram { at_most, count: row.get::<_, i64>(from + n)? as u64, sum: row.get(from + n + 1)? })
}

pub(super) fn metrics(conn: &Connection) -> Result<Metrics, StoreError> {
    let mut out = Metrics::default();
    let mut stmt = conn
        .prepare_cached("SELECT pipeline, status, count(*) FROM deployments GROUP BY pipeline, status ORDER BY 1, 2")?;
    out.runs =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?.collect::<Result<_, _>>()?;
    out.queued =
        conn.query_row("SELECT count(*) FROM deployments WHERE status = 'queued'", [], |r| r.get::<_, i64>(0))? as u64;
    let runs = format!(
        "SELECT {} FROM (SELECT (julianday(finished_at) - julianday(created_at)) * 86400.0 AS d \
         FROM deployments WHERE finished_at IS NOT NULL)",
        buckets()
    );
    out.run_durations = conn.query_row(&runs, [], |r| histogram(r, 0))?;
    let nodes = format!(
        "SELECT pipeline, node, {} FROM (SELECT d.pipeline, n.node, \
         (julianday(n.finished_at) - julianday(n.started_at)) * 86400.0 AS d \
         FROM node_checkpoints n JOIN deployments d ON d.id = n.deployment_id \
         WHERE (n.status = 'succeeded' OR n.status = 'failed') AND n.started_at IS NOT NULL AND n.finished_at IS NOT NULL) \
         GROUP BY pipeline, node ORDER BY pipeline, node",
        buckets()
    );
    let mut stmt = conn.prepare_cached(&nodes)?;
    out.node_durations =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, histogram(r, 2)?)))?.collect::<Result<_, _>>()?;
    Ok(out)
}
