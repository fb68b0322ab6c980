//! The PostgreSQL store (`--db postgres://...`): the tables of the SQLite store in
//! one database that several `phased` processes on several machines share. Same
//! interface, same semantics; what differs is how the decisions are serialized (row
//! locks, `FOR UPDATE SKIP LOCKED`, advisory locks) instead of SQLite's one writer.

mod conn;
mod queue;
mod rows;
mod schema;
mod service;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use super::{
    Admission, Alive, ClaimError, HistoryRow, Lease, Metrics, NewRun, NodeDuration, NodeRow, NotificationRow,
    RunFilter, RunRow, StopRequest, Store, StoreError, TokenRow, Write,
};
pub(crate) use conn::client;
use conn::{Conn, Link};
use rows::{NODE_COLUMNS, RUN_COLUMNS, json, node_row, run_row};

/// Whether `db` names a PostgreSQL database rather than a SQLite file.
pub fn is_url(db: &Path) -> bool {
    crate::paths::is_database_url(db)
}

/// The URL without its password, to be shown.
pub(crate) fn redact(url: &str) -> String {
    crate::paths::redact_url(url)
}

pub struct PgStore {
    link: Mutex<Link>,
    /// The URL without its password: what `path()` gives and messages show.
    shown: PathBuf,
}

impl PgStore {
    /// Connects, and migrates the schema when it is older than this phased.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        Ok(PgStore { link: Mutex::new(Link::open(url)?), shown: PathBuf::from(redact(url)) })
    }

    fn call<R: Send>(&self, f: impl FnMut(&mut Conn) -> Result<R, StoreError> + Send) -> Result<R, StoreError> {
        self.link.lock().unwrap_or_else(std::sync::PoisonError::into_inner).call(f)
    }
}

impl Store for PgStore {
    fn path(&self) -> &Path {
        &self.shown
    }

    fn save_snapshot(&mut self, hash: &str, root: &str, files: &Value, at: &str) -> Result<i64, StoreError> {
        let files = files.to_string();
        self.call(|c| {
            c.client.execute(
                "INSERT INTO snapshots (hash, root, files, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
                &[&hash, &root, &files, &at],
            )?;
            Ok(c.client.query_one("SELECT id FROM snapshots WHERE hash = $1", &[&hash])?.get(0))
        })
    }

    fn snapshot(&self, id: i64) -> Result<(String, String, Value), StoreError> {
        self.call(|c| {
            let st = c.cached("SELECT root, hash, files FROM snapshots WHERE id = $1")?;
            let row = c.client.query_one(&st, &[&id])?;
            Ok((row.get(0), row.get(1), json(row.get(2))))
        })
    }

    fn create_run(&mut self, run: &NewRun, alive: Alive<'_>) -> Result<Admission, StoreError> {
        self.call(|c| queue::create_run(c, run, alive))
    }

    fn claim_next(&mut self, lease: &Lease, now_ms: i64, alive: Alive<'_>) -> Result<Option<RunRow>, StoreError> {
        self.call(|c| queue::claim_next(c, lease, now_ms, alive))
    }

    fn admit(&mut self, id: &str, now_ms: i64, alive: Alive<'_>) -> Result<Admission, StoreError> {
        self.call(|c| queue::admit(c, id, now_ms, alive))
    }

    fn run_exists(&self, id: &str) -> Result<bool, StoreError> {
        self.call(|c| Ok(c.client.query_opt("SELECT 1 FROM deployments WHERE id = $1", &[&id])?.is_some()))
    }

    fn ids_starting_with(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.call(|c| {
            let rows = c.client.query(
                "SELECT id FROM deployments WHERE starts_with(id, $1) ORDER BY id <> $1, id LIMIT $2",
                &[&prefix, &(limit as i64)],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn write(&mut self, batch: &[Write]) -> Result<Vec<i64>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|c| write::write(c, batch))
    }

    fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM deployments WHERE id = $1");
        self.call(|c| {
            let st = c.cached(&sql)?;
            Ok(c.client.query_opt(&st, &[&id])?.as_ref().map(run_row))
        })
    }

    fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM deployments ORDER BY created_at DESC, id");
        self.call(|c| Ok(c.client.query(&sql, &[])?.iter().map(run_row).collect()))
    }

    fn metrics(&self) -> Result<Metrics, StoreError> {
        self.call(|c| service::metrics(&mut c.client))
    }

    fn runs_page(&self, filter: &RunFilter, before: Option<&str>, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM deployments d WHERE ($1::text IS NULL OR status = $1) \
             AND ($2::text IS NULL OR pipeline = $2) AND ($3::text IS NULL OR target = $3) \
             AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM deployments b WHERE b.id = $4 \
             AND (d.created_at < b.created_at OR (d.created_at = b.created_at AND d.id > b.id)))) \
             ORDER BY created_at DESC, id LIMIT $5"
        );
        self.call(|c| {
            let rows =
                c.client.query(&sql, &[&filter.status, &filter.pipeline, &filter.target, &before, &(limit as i64)])?;
            Ok(rows.iter().map(run_row).collect())
        })
    }

    fn nodes(&self, run: &str) -> Result<Vec<NodeRow>, StoreError> {
        let sql = format!(
            "SELECT {NODE_COLUMNS} FROM node_checkpoints WHERE deployment_id = $1 \
             ORDER BY COALESCE(started_at, finished_at) NULLS FIRST, node"
        );
        self.call(|c| {
            let st = c.cached(&sql)?;
            Ok(c.client.query(&st, &[&run])?.iter().map(|r| node_row(run, r)).collect())
        })
    }

    fn history(&self, run: &str) -> Result<Vec<HistoryRow>, StoreError> {
        self.call(|c| {
            let rows = c.client.query(
                "SELECT phase, progress, metadata, node, created_at FROM phase_history WHERE deployment_id = $1 ORDER BY seq",
                &[&run],
            )?;
            Ok(rows
                .iter()
                .map(|r| HistoryRow {
                    phase: r.get(0),
                    progress: r.get::<_, i32>(1) as u8,
                    metadata: r.get(2),
                    node: r.get(3),
                    at: r.get(4),
                })
                .collect())
        })
    }

    fn events(&self, run: Option<&str>, after: i64, limit: usize) -> Result<Vec<Value>, StoreError> {
        self.call(|c| {
            let st = c.cached(
                "SELECT seq, data FROM events WHERE seq > $1 AND ($2::text IS NULL OR deployment_id = $2) \
                 ORDER BY seq LIMIT $3",
            )?;
            let rows = c.client.query(&st, &[&after, &run, &(limit as i64)])?;
            Ok(rows
                .iter()
                .map(|r| {
                    let mut event = json(r.get(1));
                    if let Value::Object(fields) = &mut event {
                        fields.insert("seq".into(), Value::from(r.get::<_, i64>(0)));
                    }
                    event
                })
                .collect())
        })
    }

    fn record_delivery(
        &mut self,
        trigger: &str,
        delivery: &str,
        at: &str,
        unqueued_before: &str,
    ) -> Result<bool, StoreError> {
        self.call(|c| service::record_delivery(&mut c.client, trigger, delivery, at, unqueued_before))
    }

    fn forget_delivery(&mut self, trigger: &str, delivery: &str) -> Result<(), StoreError> {
        self.call(|c| service::forget_delivery(&mut c.client, trigger, delivery))
    }

    fn node_durations(&self, pipeline: Option<&str>, last_runs: usize) -> Result<Vec<NodeDuration>, StoreError> {
        self.call(|c| service::node_durations(&mut c.client, pipeline, last_runs))
    }

    fn delivery_run(&mut self, trigger: &str, delivery: &str, run: &str) -> Result<(), StoreError> {
        self.call(|c| service::delivery_run(&mut c.client, trigger, delivery, run))
    }

    fn latest_event(&self) -> Result<i64, StoreError> {
        self.call(|c| Ok(c.client.query_one("SELECT COALESCE(MAX(seq), 0)::bigint FROM events", &[])?.get(0)))
    }

    fn claim(
        &mut self,
        id: &str,
        lease: &Lease,
        now_ms: i64,
        alive: Alive<'_>,
    ) -> Result<(RunRow, RunRow), ClaimError> {
        self.call(|c| queue::claim(c, id, lease, now_ms, alive))?
    }

    fn request_cancel(&mut self, id: &str, alive: Alive<'_>) -> Result<Option<RunRow>, StoreError> {
        self.call(|c| queue::request_cancel(c, id, alive))
    }

    fn stop_requested(&self, id: &str) -> Result<StopRequest, StoreError> {
        let value: i32 = self.call(|c| {
            let st = c.cached("SELECT cancel_requested FROM deployments WHERE id = $1")?;
            Ok(c.client.query_one(&st, &[&id])?.get(0))
        })?;
        Ok(match value {
            0 => StopRequest::None,
            2 => StopRequest::Supersede,
            _ => StopRequest::Cancel,
        })
    }

    fn delete_runs(&mut self, ids: &[String]) -> Result<usize, StoreError> {
        let deleted = self.call(|c| {
            let mut tx = c.client.transaction()?;
            tx.execute("DELETE FROM events WHERE deployment_id = ANY($1)", &[&ids])?;
            tx.execute("DELETE FROM node_checkpoints WHERE deployment_id = ANY($1)", &[&ids])?;
            tx.execute("DELETE FROM phase_history WHERE deployment_id = ANY($1)", &[&ids])?;
            let deleted = tx.execute("DELETE FROM deployments WHERE id = ANY($1)", &[&ids])?;
            tx.execute(
                "DELETE FROM snapshots s WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.snapshot_id = s.id)",
                &[],
            )?;
            tx.commit()?;
            for id in ids {
                c.history_seq.remove(id);
            }
            Ok(deleted as usize)
        })?;
        Ok(deleted)
    }

    fn create_token(&mut self, token: &TokenRow) -> Result<bool, StoreError> {
        self.call(|c| service::create_token(&mut c.client, token))
    }

    fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.call(|c| service::tokens(&mut c.client))
    }

    fn revoke_token(&mut self, name: &str) -> Result<bool, StoreError> {
        self.call(|c| service::revoke_token(&mut c.client, name))
    }

    fn create_session(
        &mut self,
        hash: &str,
        token: &str,
        at: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.call(|c| service::create_session(&mut c.client, hash, token, at, expires_ms, now_ms))
    }

    fn session_token(&self, hash: &str, now_ms: i64) -> Result<Option<TokenRow>, StoreError> {
        self.call(|c| service::session_token(&mut c.client, hash, now_ms))
    }

    fn end_session(&mut self, hash: &str) -> Result<(), StoreError> {
        self.call(|c| Ok(c.client.execute("DELETE FROM sessions WHERE hash = $1", &[&hash]).map(drop)?))
    }

    fn due_notifications(&self, run: Option<&str>, now_ms: i64) -> Result<Vec<NotificationRow>, StoreError> {
        self.call(|c| service::due_notifications(&mut c.client, run, now_ms))
    }

    fn claim_notification(&mut self, id: i64, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
        self.call(|c| service::claim_notification(&mut c.client, id, now_ms, until_ms))
    }

    fn notification_attempt(
        &mut self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        next_at: Option<i64>,
        at: &str,
    ) -> Result<(), StoreError> {
        self.call(|c| service::notification_attempt(&mut c.client, id, delivered, error, next_at, at))
    }

    fn notifications(&self, run: &str) -> Result<Vec<NotificationRow>, StoreError> {
        self.call(|c| service::notifications(&mut c.client, run))
    }

    fn last_event_of(&self, run: &str) -> Result<i64, StoreError> {
        self.call(|c| {
            Ok(c.client
                .query_one("SELECT COALESCE(MAX(seq), 0)::bigint FROM events WHERE deployment_id = $1", &[&run])?
                .get(0))
        })
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        self.call(|c| service::token_by_hash(&mut c.client, hash))
    }

    fn touch_token(&mut self, name: &str, at: &str) -> Result<(), StoreError> {
        self.call(|c| {
            c.client.execute("UPDATE tokens SET last_used_at = $2 WHERE name = $1", &[&name, &at])?;
            Ok(())
        })
    }

    fn forget_cached(&mut self) {
        let _ = self.call(|c| {
            c.history_seq.clear();
            Ok(())
        });
    }

    fn wait_for_events(&self, _poll: std::time::Duration) {
        let waited = self.call(|c| {
            if !c.listening {
                c.client.batch_execute("LISTEN phased_events")?;
                c.listening = true;
            }
            use ::postgres::fallible_iterator::FallibleIterator;
            let mut notifications = c.client.notifications();
            if notifications.timeout_iter(std::time::Duration::from_secs(1)).next()?.is_some() {
                // Those that came meanwhile are the same news.
                while notifications.iter().next()?.is_some() {}
            }
            Ok(())
        });
        if waited.is_err() {
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    fn seed_query(&self, id: &str) -> Result<Vec<Value>, StoreError> {
        self.call(|c| {
            let rows = c.client.query(
                "SELECT id, phase, phase_progress, phase_metadata->>'buildType' as build_type, \
                 phase_metadata->>'sourceType' as source_type, phase_updated_at, status \
                 FROM deployments WHERE id = $1 ORDER BY phase_updated_at DESC",
                &[&id],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.get::<_, String>(0), "phase": r.get::<_, String>(1),
                        "phase_progress": i64::from(r.get::<_, i32>(2)),
                        "build_type": r.get::<_, Option<String>>(3), "source_type": r.get::<_, Option<String>>(4),
                        "phase_updated_at": r.get::<_, String>(5), "status": r.get::<_, String>(6),
                    })
                })
                .collect())
        })
    }
}
