//! The tables of `phased serve`: API tokens (their hashes) and webhook deliveries.

use rusqlite::{Connection, OptionalExtension, params};

use super::super::{NotificationRow, Role, StoreError, TokenRow};

pub(super) fn create_token(conn: &Connection, token: &TokenRow) -> Result<bool, StoreError> {
    let added = conn.execute(
        "INSERT OR IGNORE INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![token.name, token.role.as_str(), token.hash, token.created_at],
    )?;
    Ok(added == 1)
}

pub(super) fn tokens(conn: &Connection) -> Result<Vec<TokenRow>, StoreError> {
    let mut stmt = conn.prepare("SELECT name, role, hash, created_at, last_used_at FROM tokens ORDER BY name")?;
    let rows = stmt.query_map([], token_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn revoke_token(conn: &mut Connection, name: &str) -> Result<bool, StoreError> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM sessions WHERE token_name = ?1", [name])?;
    let removed = tx.execute("DELETE FROM tokens WHERE name = ?1", [name])? == 1;
    tx.commit()?;
    Ok(removed)
}

pub(super) fn create_session(
    conn: &Connection,
    hash: &str,
    token: &str,
    at: &str,
    expires_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now_ms])?;
    conn.execute(
        "INSERT INTO sessions (hash, token_name, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![hash, token, at, expires_ms],
    )?;
    Ok(())
}

pub(super) fn session_token(conn: &Connection, hash: &str, now_ms: i64) -> Result<Option<TokenRow>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT t.name, t.role, t.hash, t.created_at, t.last_used_at FROM sessions s \
             JOIN tokens t ON t.name = s.token_name WHERE s.hash = ?1 AND s.expires_at > ?2",
            params![hash, now_ms],
            token_row,
        )
        .optional()?)
}

pub(super) fn end_session(conn: &Connection, hash: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sessions WHERE hash = ?1", [hash])?;
    Ok(())
}

pub(super) fn touch_token(conn: &Connection, name: &str, at: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE tokens SET last_used_at = ?2 WHERE name = ?1", [name, at])?;
    Ok(())
}

pub(super) fn token_by_hash(conn: &Connection, hash: &str) -> Result<Option<TokenRow>, StoreError> {
    Ok(conn
        .query_row("SELECT name, role, hash, created_at, last_used_at FROM tokens WHERE hash = ?1", [hash], token_row)
        .optional()?)
}

pub(super) fn record_delivery(
    conn: &Connection,
    trigger: &str,
    delivery: &str,
    at: &str,
    unqueued_before: &str,
) -> Result<bool, StoreError> {
    // A delivery seen before that queued nothing (its server died in between) is taken
    // again once it is old enough that its first handler cannot still be at work.
    let added = conn.execute(
        "INSERT INTO deliveries (trigger, delivery, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (trigger, delivery) DO UPDATE SET created_at = excluded.created_at
         WHERE run_id IS NULL AND created_at < ?4",
        params![trigger, delivery, at, unqueued_before],
    )?;
    Ok(added == 1)
}

pub(super) fn forget_delivery(conn: &Connection, trigger: &str, delivery: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM deliveries WHERE trigger = ?1 AND delivery = ?2 AND run_id IS NULL",
        [trigger, delivery],
    )?;
    Ok(())
}

pub(super) fn delivery_run(conn: &Connection, trigger: &str, delivery: &str, run: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deliveries SET run_id = ?3 WHERE trigger = ?1 AND delivery = ?2",
        params![trigger, delivery, run],
    )?;
    Ok(())
}

fn token_row(row: &rusqlite::Row) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        name: row.get(0)?,
        role: Role::parse(&row.get::<_, String>(1)?).unwrap_or(Role::Read),
        hash: row.get(2)?,
        created_at: row.get(3)?,
        last_used_at: row.get(4)?,
    })
}

const NOTIFICATION_COLUMNS: &str = "id, deployment_id, outcome, url_template, format, body, status, attempts, next_at, \
                                    last_error, created_at, delivered_at";

fn notification_row(row: &rusqlite::Row) -> rusqlite::Result<NotificationRow> {
    Ok(NotificationRow {
        id: row.get(0)?,
        run: row.get(1)?,
        outcome: row.get(2)?,
        url_template: row.get(3)?,
        format: row.get(4)?,
        body: row.get(5)?,
        status: row.get(6)?,
        attempts: row.get(7)?,
        next_at: row.get(8)?,
        last_error: row.get(9)?,
        created_at: row.get(10)?,
        delivered_at: row.get(11)?,
    })
}

pub(super) fn insert_notification(tx: &rusqlite::Transaction, n: &NotificationRow) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO notifications (deployment_id, outcome, url_template, format, body, next_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![n.run, n.outcome, n.url_template, n.format, n.body, n.next_at, n.created_at])?;
    Ok(())
}

pub(super) fn due_notifications(
    conn: &Connection,
    run: Option<&str>,
    now_ms: i64,
) -> Result<Vec<NotificationRow>, StoreError> {
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE status = 'pending' AND next_at <= ?1 \
         AND (?2 IS NULL OR deployment_id = ?2) ORDER BY id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![now_ms, run], notification_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn notification_attempt(
    conn: &Connection,
    id: i64,
    delivered: bool,
    error: Option<&str>,
    next_at: Option<i64>,
    at: &str,
) -> Result<(), StoreError> {
    let status = super::super::rows::attempt_status(delivered, next_at);
    conn.execute(
        "UPDATE notifications SET status = ?2, attempts = attempts + 1, last_error = ?3, \
         next_at = COALESCE(?4, next_at), delivered_at = CASE WHEN ?2 = 'delivered' THEN ?5 ELSE delivered_at END \
         WHERE id = ?1",
        params![id, status, error, next_at, at],
    )?;
    Ok(())
}

pub(super) fn notifications(conn: &Connection, run: &str) -> Result<Vec<NotificationRow>, StoreError> {
    let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE deployment_id = ?1 ORDER BY id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([run], notification_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn claim_notification(conn: &Connection, id: i64, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE notifications SET next_at = ?3 WHERE id = ?1 AND status = 'pending' AND next_at <= ?2",
        params![id, now_ms, until_ms],
    )? == 1)
}
