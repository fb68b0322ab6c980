//! The tables of `phased serve` (tokens, sessions, deliveries, the notification
//! outbox), and the counts of `/metrics`, the ETA and `phased stats`.

use postgres::Client;

use super::super::{DURATION_BUCKETS, Histogram, Metrics, NodeDuration, NotificationRow, StoreError, TokenRow};
use super::rows::{NOTIFICATION_COLUMNS, TOKEN_COLUMNS, notification_row, token_row};

pub(super) fn create_token(client: &mut Client, token: &TokenRow) -> Result<bool, StoreError> {
    let added = client.execute(
        "INSERT INTO tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[&token.name, &token.role.as_str(), &token.hash, &token.created_at],
    )?;
    Ok(added == 1)
}

pub(super) fn tokens(client: &mut Client) -> Result<Vec<TokenRow>, StoreError> {
    let rows = client.query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name"), &[])?;
    Ok(rows.iter().map(token_row).collect())
}

pub(super) fn revoke_token(client: &mut Client, name: &str) -> Result<bool, StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("DELETE FROM sessions WHERE token_name = $1", &[&name])?;
    let removed = tx.execute("DELETE FROM tokens WHERE name = $1", &[&name])? == 1;
    tx.commit()?;
    Ok(removed)
}

pub(super) fn create_session(
    client: &mut Client,
    hash: &str,
    token: &str,
    at: &str,
    expires_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now_ms])?;
    tx.execute(
        "INSERT INTO sessions (hash, token_name, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        &[&hash, &token, &at, &expires_ms],
    )?;
    tx.commit()?;
    Ok(())
}

pub(super) fn session_token(client: &mut Client, hash: &str, now_ms: i64) -> Result<Option<TokenRow>, StoreError> {
    let row = client.query_opt(
        "SELECT t.name, t.role, t.hash, t.created_at, t.last_used_at FROM sessions s \
         JOIN tokens t ON t.name = s.token_name WHERE s.hash = $1 AND s.expires_at > $2",
        &[&hash, &now_ms],
    )?;
    Ok(row.as_ref().map(token_row))
}

pub(super) fn token_by_hash(client: &mut Client, hash: &str) -> Result<Option<TokenRow>, StoreError> {
    let row = client.query_opt(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"), &[&hash])?;
    Ok(row.as_ref().map(token_row))
}

pub(super) fn record_delivery(
    client: &mut Client,
    trigger: &str,
    delivery: &str,
    at: &str,
    unqueued_before: &str,
) -> Result<bool, StoreError> {
    // A delivery seen before that queued nothing (its server died in between) is taken
    // again once it is old enough that its first handler cannot still be at work.
    let added = client.execute(
        "INSERT INTO deliveries (trigger, delivery, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (trigger, delivery) DO UPDATE SET created_at = excluded.created_at \
         WHERE deliveries.run_id IS NULL AND deliveries.created_at < $4",
        &[&trigger, &delivery, &at, &unqueued_before],
    )?;
    Ok(added == 1)
}

pub(super) fn forget_delivery(client: &mut Client, trigger: &str, delivery: &str) -> Result<(), StoreError> {
    client.execute(
        "DELETE FROM deliveries WHERE trigger = $1 AND delivery = $2 AND run_id IS NULL",
        &[&trigger, &delivery],
    )?;
    Ok(())
}

pub(super) fn delivery_run(client: &mut Client, trigger: &str, delivery: &str, run: &str) -> Result<(), StoreError> {
    client.execute(
        "UPDATE deliveries SET run_id = $3 WHERE trigger = $1 AND delivery = $2",
        &[&trigger, &delivery, &run],
    )?;
    Ok(())
}

pub(super) fn due_notifications(
    client: &mut Client,
    run: Option<&str>,
    now_ms: i64,
) -> Result<Vec<NotificationRow>, StoreError> {
    let rows = client.query(
        &format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE status = 'pending' AND next_at <= $1 \
             AND ($2::text IS NULL OR deployment_id = $2) ORDER BY id"
        ),
        &[&now_ms, &run],
    )?;
    Ok(rows.iter().map(notification_row).collect())
}

pub(super) fn claim_notification(client: &mut Client, id: i64, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
    Ok(client.execute(
        "UPDATE notifications SET next_at = $3 WHERE id = $1 AND status = 'pending' AND next_at <= $2",
        &[&id, &now_ms, &until_ms],
    )? == 1)
}

pub(super) fn notification_attempt(
    client: &mut Client,
    id: i64,
    delivered: bool,
    error: Option<&str>,
    next_at: Option<i64>,
    at: &str,
) -> Result<(), StoreError> {
    let status = super::super::rows::attempt_status(delivered, next_at);
    client.execute(
        "UPDATE notifications SET status = $2, attempts = attempts + 1, last_error = $3, \
         next_at = COALESCE($4, next_at), delivered_at = CASE WHEN $2 = 'delivered' THEN $5 ELSE delivered_at END \
         WHERE id = $1",
        &[&id, &status, &error, &next_at, &at],
    )?;
    Ok(())
}

pub(super) fn notifications(client: &mut Client, run: &str) -> Result<Vec<NotificationRow>, StoreError> {
    let rows = client.query(
        &format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE deployment_id = $1 ORDER BY id"),
        &[&run],
    )?;
    Ok(rows.iter().map(notification_row).collect())
}

/// Seconds between two ISO-8601 text columns.
fn seconds(from: &str, to: &str) -> String {
    format!("EXTRACT(EPOCH FROM ({to}::timestamptz - {from}::timestamptz))::float8")
}

pub(super) fn node_durations(
    client: &mut Client,
    pipeline: Option<&str>,
    last_runs: usize,
) -> Result<Vec<NodeDuration>, StoreError> {
    let sql = format!(
        "SELECT d.id, d.pipeline, d.target, n.node, n.status = 'succeeded', {}, n.finished_at, n.error \
         FROM (SELECT id, pipeline, target, created_at FROM deployments \
               WHERE ($1::text IS NULL OR pipeline = $1) AND status IN ('succeeded', 'failed') \
               ORDER BY created_at DESC LIMIT $2) d \
         JOIN node_checkpoints n ON n.deployment_id = d.id \
         WHERE n.status IN ('succeeded', 'failed') AND n.started_at IS NOT NULL AND n.finished_at IS NOT NULL \
         ORDER BY d.created_at DESC, n.finished_at DESC",
        seconds("n.started_at", "n.finished_at")
    );
    let rows = client.query(&sql, &[&pipeline, &(last_runs as i64)])?;
    Ok(rows
        .iter()
        .map(|r| NodeDuration {
            run: r.get(0),
            pipeline: r.get(1),
            target: r.get(2),
            node: r.get(3),
            succeeded: r.get(4),
            seconds: r.get::<_, f64>(5).max(0.0),
            finished_at: r.get(6),
            error: r.get(7),
        })
        .collect())
}

/// `count(d <= b0), ..., count(d), sum(d)` over a column `d` of seconds.
fn buckets() -> String {
    let mut sql: Vec<String> =
        DURATION_BUCKETS.iter().map(|b| format!("count(*) FILTER (WHERE d <= {b})::bigint")).collect();
    sql.push("count(d)::bigint".into());
    sql.push("coalesce(sum(d), 0)::float8".into());
    sql.join(", ")
}

fn histogram(row: &postgres::Row, from: usize) -> Histogram {
    let n = DURATION_BUCKETS.len();
    Histogram {
        at_most: (0..n).map(|i| row.get::<_, i64>(from + i) as u64).collect(),
        count: row.get::<_, i64>(from + n) as u64,
        sum: row.get(from + n + 1),
    }
}

pub(super) fn metrics(client: &mut Client) -> Result<Metrics, StoreError> {
    let mut out = Metrics::default();
    let rows = client.query("SELECT pipeline, status, count(*) FROM deployments GROUP BY 1, 2 ORDER BY 1, 2", &[])?;
    out.runs = rows.iter().map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64)).collect();
    out.queued =
        client.query_one("SELECT count(*) FROM deployments WHERE status = 'queued'", &[])?.get::<_, i64>(0) as u64;
    let runs = format!(
        "SELECT {} FROM (SELECT {} AS d FROM deployments WHERE finished_at IS NOT NULL) x",
        buckets(),
        seconds("created_at", "finished_at")
    );
    out.run_durations = histogram(&client.query_one(&runs, &[])?, 0);
    let nodes = format!(
        "SELECT pipeline, node, {} FROM (SELECT d.pipeline, n.node, {} AS d \
         FROM node_checkpoints n JOIN deployments d ON d.id = n.deployment_id \
         WHERE n.status IN ('succeeded', 'failed') AND n.started_at IS NOT NULL AND n.finished_at IS NOT NULL) x \
         GROUP BY pipeline, node ORDER BY pipeline, node",
        buckets(),
        seconds("n.started_at", "n.finished_at")
    );
    out.node_durations = client.query(&nodes, &[])?.iter().map(|r| (r.get(0), r.get(1), histogram(r, 2))).collect();
    Ok(out)
}
