//! What finished nodes took: for `/metrics`, the ETA and `phased stats`.

use rusqlite::{Connection, params};

use super::super::{NodeDuration, StoreError};

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
