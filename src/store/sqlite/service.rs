//! The tables of `phased serve`: API tokens (their hashes) and webhook deliveries.

use rusqlite::{Connection, OptionalExtension, params};

use super::super::{Role, StoreError, TokenRow};

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
