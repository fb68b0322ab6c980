//! `phased migrate`: a SQLite database copied into an empty PostgreSQL one, table by
//! table in one PostgreSQL transaction (all of it, or nothing), keeping every id and
//! sequence number so that event streams resume where they were.

use std::path::Path;

use postgres::types::{ToSql, Type};
use rusqlite::types::Value as Sql;

use super::{Durability, SqliteStore, StoreError};

/// The tables in the order their references need, with the columns copied (those of
/// SQLite's schema; `deployments` in SQLite's row order, which PostgreSQL's
/// `queue_seq` then follows).
const TABLES: &[(&str, &str, &str)] = &[
    ("snapshots", "id, hash, root, files, created_at", "id"),
    (
        "deployments",
        "id, pipeline, status, phase, phase_progress, phase_metadata, phase_updated_at, inputs, snapshot_id, attempt, \
         best_progress, error, created_at, finished_at, lease_owner, lease_pid, lease_pid_start, lease_host, \
         heartbeat_at, cancel_requested, target, superseded_by, actor",
        "rowid",
    ),
    ("phase_history", "deployment_id, seq, phase, progress, metadata, node, created_at", "deployment_id, seq"),
    (
        "node_checkpoints",
        "deployment_id, node, status, attempt, outputs, error, started_at, finished_at",
        "deployment_id, node",
    ),
    ("events", "seq, deployment_id, event, node, data, created_at", "seq"),
    ("tokens", "name, role, hash, created_at, last_used_at", "name"),
    ("deliveries", "trigger, delivery, run_id, created_at", "trigger, delivery"),
    ("sessions", "hash, token_name, created_at, expires_at", "hash"),
    (
        "notifications",
        "id, deployment_id, outcome, url_template, format, body, status, attempts, next_at, last_error, created_at, \
         delivered_at",
        "id",
    ),
];

/// The identity columns whose sequences go on after the copied numbers.
const IDENTITIES: &[(&str, &str)] = &[("snapshots", "id"), ("events", "seq"), ("notifications", "id")];

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the PostgreSQL database `{url}` already holds runs ({runs}): migrate into an empty database")]
    NotEmpty { url: String, runs: i64 },
    #[error("run `{id}` is {status} in `{db}`: stop the phased processes using it before migrating")]
    Live { id: String, status: String, db: String },
    #[error("`{table}.{column}` of the SQLite database holds {found}, which PostgreSQL's `{ty}` cannot take")]
    Value { table: String, column: String, found: String, ty: String },
}

/// What was copied: (table, rows), in order.
pub type Copied = Vec<(&'static str, u64)>;

/// Copies the SQLite database at `from` into the PostgreSQL database at `to`, which
/// must hold no run; `progress` hears of each table as it is done.
pub fn sqlite_to_postgres(
    from: &Path,
    to: &str,
    alive: super::Alive<'_>,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<Copied, CopyError> {
    // Brought to this phased's schema first (what a command on it would do).
    let runs = super::RunStore::runs(&SqliteStore::open(from, Durability::Normal)?)?;
    let source = rusqlite::Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Open { path: from.to_path_buf(), source })?;
    let sql_err = |e: rusqlite::Error| CopyError::Store(StoreError::Sql(e));
    if let Some(live) = runs.iter().find(|r| alive(r)) {
        return Err(CopyError::Live {
            id: live.id.clone(),
            status: live.status.as_str().into(),
            db: from.display().to_string(),
        });
    }
    let url = super::redact(to);
    // Connected and migrated like any command would.
    drop(super::PgStore::open(to)?);
    let mut target = super::postgres::client(to)?;
    let mut tx = target.transaction().map_err(StoreError::from)?;
    let present: i64 = tx.query_one("SELECT count(*) FROM deployments", &[]).map_err(StoreError::from)?.get(0);
    if present > 0 {
        return Err(CopyError::NotEmpty { url, runs: present });
    }
    let mut copied = Vec::new();
    for (table, columns, order) in TABLES {
        let names: Vec<&str> = columns.split(',').map(str::trim).collect();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let insert = tx
            .prepare(&format!("INSERT INTO {table} ({columns}) VALUES ({})", marks.join(", ")))
            .map_err(StoreError::from)?;
        let types = insert.params().to_vec();
        let mut read = source.prepare(&format!("SELECT {columns} FROM {table} ORDER BY {order}")).map_err(sql_err)?;
        let mut rows = read.query([]).map_err(sql_err)?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(sql_err)? {
            let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(names.len());
            for (i, ty) in types.iter().enumerate() {
                let value: Sql = row.get(i).map_err(sql_err)?;
                values.push(convert(value, ty).map_err(|found| CopyError::Value {
                    table: table.to_string(),
                    column: names[i].to_string(),
                    found,
                    ty: ty.name().to_string(),
                })?);
            }
            let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
            tx.execute(&insert, &params).map_err(StoreError::from)?;
            count += 1;
        }
        progress(table, count);
        copied.push((*table, count));
    }
    for (table, column) in IDENTITIES {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                 GREATEST((SELECT COALESCE(MAX({column}), 0) FROM {table}), 1), \
                 (SELECT COUNT(*) > 0 FROM {table}))"
            ),
            &[],
        )
        .map_err(StoreError::from)?;
    }
    tx.commit().map_err(StoreError::from)?;
    Ok(copied)
}

/// A SQLite value as the PostgreSQL column's type takes it (the text of a `jsonb`
/// column is parsed); the value, shown, when it cannot be.
fn convert(value: Sql, ty: &Type) -> Result<Box<dyn ToSql + Sync>, String> {
    let shown = |v: &Sql| format!("{v:?}");
    Ok(match (value, ty) {
        (Sql::Null, &Type::INT4) => Box::new(None::<i32>),
        (Sql::Null, &Type::INT8) => Box::new(None::<i64>),
        (Sql::Null, &Type::JSONB) => Box::new(None::<serde_json::Value>),
        (Sql::Null, _) => Box::new(None::<String>),
        (Sql::Integer(v), &Type::INT4) => Box::new(i32::try_from(v).map_err(|_| v.to_string())?),
        (Sql::Integer(v), &Type::INT8) => Box::new(v),
        (Sql::Integer(v), &Type::TEXT) => Box::new(v.to_string()),
        (Sql::Text(v), &Type::TEXT) => Box::new(v),
        (Sql::Text(v), &Type::JSONB) => {
            Box::new(serde_json::from_str::<serde_json::Value>(&v).map_err(|_| format!("{v:?} (not JSON)"))?)
        }
        (Sql::Text(v), &Type::INT4) => Box::new(v.parse::<i32>().map_err(|_| format!("{v:?}"))?),
        (Sql::Text(v), &Type::INT8) => Box::new(v.parse::<i64>().map_err(|_| format!("{v:?}"))?),
        (other, _) => return Err(shown(&other)),
    })
}
