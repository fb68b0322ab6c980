//! What finished nodes took: for `/metrics`, the ETA and `phased stats`.

use rusqlite::{Connection, params};

use super::super::{NodeDuration, StoreError};

/// The most node durations read at once: the newest are the ones that matter.
const MOST: i64 = 50_000;

pub(super) fn node_durations(conn: &Connection, pipeline: Option<&str>) -> Result<Vec<NodeDuration>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.pipeline, d.target, n.node, n.status = 'succeeded',
                (julianday(n.finished_at) - julianday(n.started_at)) * 86400.0, n.finished_at, n.error
         FROM node_checkpoints n JOIN deployments d ON d.id = n.deployment_id
         WHERE (n.status = 'succeeded' OR n.status = 'failed')
           AND n.started_at IS NOT NULL AND n.finished_at IS NOT NULL
           AND (?1 IS NULL OR d.pipeline = ?1)
         ORDER BY n.finished_at DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![pipeline, MOST], |r| {
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
