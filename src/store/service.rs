//! The tables of `phased serve`, for both databases: API tokens (their hashes),
//! dashboard sessions, webhook deliveries, and the notification outbox.

use super::backend::Backend;
use super::columns::{NOTIFICATION_COLUMNS, TOKEN_COLUMNS, notification_row, token_row};
use super::sql::params;
use super::{NotificationRow, OutboxStore, ServiceStore, StoreError, TokenRow};

impl<B: Backend> ServiceStore for B {
    /// A delivery seen before that queued nothing (its server died in between) is
    /// taken again once it is old enough that its first handler cannot still be at work.
    fn record_delivery(&mut self, trigger: &str, delivery: &str, at: &str, before: &str) -> Result<bool, StoreError> {
        let sql = "INSERT INTO deliveries (trigger, delivery, created_at) VALUES (?1, ?2, ?3) \
                   ON CONFLICT (trigger, delivery) DO UPDATE SET created_at = excluded.created_at \
                   WHERE deliveries.run_id IS NULL AND deliveries.created_at < ?4";
        self.direct(|db| Ok(db.execute(sql, params![trigger, delivery, at, before])? == 1))
    }

    fn forget_delivery(&mut self, trigger: &str, delivery: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM deliveries WHERE trigger = ?1 AND delivery = ?2 AND run_id IS NULL";
        self.direct(|db| db.execute(sql, params![trigger, delivery]).map(drop))
    }

    fn delivery_run(&mut self, trigger: &str, delivery: &str, run: &str) -> Result<(), StoreError> {
        let sql = "UPDATE deliveries SET run_id = ?3 WHERE trigger = ?1 AND delivery = ?2";
        self.direct(|db| db.execute(sql, params![trigger, delivery, run]).map(drop))
    }

    fn create_token(&mut self, token: &TokenRow) -> Result<bool, StoreError> {
        let sql = "INSERT INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING";
        let TokenRow { name, role, hash, created_at, .. } = token;
        self.direct(|db| Ok(db.execute(sql, params![name, role.as_str(), hash, created_at])? == 1))
    }

    fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens t ORDER BY name");
        self.direct(|db| Ok(db.query(&sql, params![])?.iter().map(token_row).collect()))
    }

    fn revoke_token(&mut self, name: &str) -> Result<bool, StoreError> {
        self.transaction(|db| {
            db.execute("DELETE FROM sessions WHERE token_name = ?1", params![name])?;
            Ok(db.execute("DELETE FROM tokens WHERE name = ?1", params![name])? == 1)
        })
    }

    fn create_session(&mut self, hash: &str, token: &str, at: &str, expires: i64, now: i64) -> Result<(), StoreError> {
        self.transaction(|db| {
            db.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now])?;
            db.execute(
                "INSERT INTO sessions (hash, token_name, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, token, at, expires],
            )
            .map(drop)
        })
    }

    fn session_token(&self, hash: &str, now_ms: i64) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM sessions s JOIN tokens t ON t.name = s.token_name \
             WHERE s.hash = ?1 AND s.expires_at > ?2"
        );
        self.direct(|db| Ok(db.query_opt(&sql, params![hash, now_ms])?.as_ref().map(token_row)))
    }

    fn end_session(&mut self, hash: &str) -> Result<(), StoreError> {
        self.direct(|db| db.execute("DELETE FROM sessions WHERE hash = ?1", params![hash]).map(drop))
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens t WHERE hash = ?1");
        self.direct(|db| Ok(db.query_opt(&sql, params![hash])?.as_ref().map(token_row)))
    }

    fn touch_token(&mut self, name: &str, at: &str) -> Result<(), StoreError> {
        let sql = "UPDATE tokens SET last_used_at = ?2 WHERE name = ?1";
        self.direct(|db| db.execute(sql, params![name, at]).map(drop))
    }
}

impl<B: Backend> OutboxStore for B {
    fn due_notifications(&self, run: Option<&str>, now_ms: i64) -> Result<Vec<NotificationRow>, StoreError> {
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE status = 'pending' AND next_at <= ?1 \
             AND (CAST(?2 AS TEXT) IS NULL OR deployment_id = ?2) ORDER BY id"
        );
        self.direct(|db| Ok(db.query(&sql, params![now_ms, run])?.iter().map(notification_row).collect()))
    }

    fn claim_notification(&mut self, id: i64, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
        let sql = "UPDATE notifications SET next_at = ?3 WHERE id = ?1 AND status = 'pending' AND next_at <= ?2";
        self.direct(|db| Ok(db.execute(sql, params![id, now_ms, until_ms])? == 1))
    }

    fn notification_attempt(
        &mut self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        next_at: Option<i64>,
        at: &str,
    ) -> Result<(), StoreError> {
        let status = super::rows::attempt_status(delivered, next_at);
        let sql = "UPDATE notifications SET status = ?2, attempts = attempts + 1, last_error = ?3, \
                   next_at = COALESCE(?4, next_at), \
                   delivered_at = CASE WHEN ?2 = 'delivered' THEN ?5 ELSE delivered_at END WHERE id = ?1";
        self.direct(|db| db.execute(sql, params![id, status, error, next_at, at]).map(drop))
    }

    fn notifications(&self, run: &str) -> Result<Vec<NotificationRow>, StoreError> {
        let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE deployment_id = ?1 ORDER BY id");
        self.direct(|db| Ok(db.query(&sql, params![run])?.iter().map(notification_row).collect()))
    }
}
