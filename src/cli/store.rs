//! The database the commands work on, and the folder beside it (node logs, work files).

use std::path::{Path, PathBuf};

use crate::app::Db;
use crate::cli::{StoreArgs, exit};
use crate::store::{Store, StoreError};

/// The database `--db` names.
pub(crate) fn db(args: &StoreArgs) -> Db {
    Db::new(&args.db, args.durability)
}

pub(crate) fn open_store(args: &StoreArgs) -> Result<Box<dyn Store>, u8> {
    db(args).open().map_err(|e| store_error(&e, &args.db))
}

/// Says what is wrong with the database (naming it) and what to do; exit code 3.
pub(crate) fn store_error(e: &StoreError, db: &Path) -> u8 {
    let (message, help) = e.explain(db);
    crate::reporter::err_line(format_args!("error: {message}"));
    crate::reporter::err_line(format_args!("  help: {help}"));
    exit::ENVIRONMENT
}

/// The database, if it exists: read commands never create one.
pub(crate) fn open_existing(args: &StoreArgs) -> Result<Option<Box<dyn Store>>, u8> {
    db(args).open_existing().map_err(|e| store_error(&e, &args.db))
}

/// An existing database and the run `id` (or a unique prefix of it) names there.
pub(crate) fn open_run(args: &StoreArgs, id: &str) -> Result<(Box<dyn Store>, String), u8> {
    let Some(store) = open_existing(args)? else {
        let message = format!("no run `{id}`: there is no database at `{}`", crate::store::shown(&args.db));
        let help = "pass the database the run was started with: --db PATH (or PHASED_DB)";
        return Err(crate::cli::usage_error(message, Some(help)));
    };
    let run = resolve_run(store.as_ref(), id, &args.db)?;
    Ok((store, run))
}

/// What names the newest run wherever a run id is taken: `@last` always (no run id
/// holds `@`), `last` when no run id starts with it.
pub(crate) const LAST: &str = "@last";

/// Whether `id` is `@last` or `last`: the newest run when no run id starts with it.
pub(crate) fn is_last(id: &str) -> bool {
    id == LAST || id == "last"
}

/// The run an id or a unique prefix of one names (`phased status 2aff1ec3`, as
/// printed), or `@last` (`last`) the newest run; a clear error when none or several
/// match. Every command that takes a run id resolves it here.
pub(crate) fn resolve_run(store: &dyn Store, id: &str, db: &Path) -> Result<String, u8> {
    let environment = |e: StoreError| {
        crate::reporter::err_line(format_args!("error: {e}"));
        exit::ENVIRONMENT
    };
    let found = if id == LAST { Vec::new() } else { store.ids_starting_with(id, 6).map_err(environment)? };
    match found.as_slice() {
        [] if is_last(id) => {
            let newest = store.runs_page(&crate::store::RunFilter::default(), None, 1).map_err(environment)?;
            match newest.into_iter().next() {
                Some(run) => Ok(run.id),
                None => Err(crate::cli::usage_error(
                    format!("no run in `{}` yet: `{id}` names the newest run", crate::store::shown(db)),
                    Some("start one with `phased run PIPELINE`"),
                )),
            }
        }
        [] => Err(crate::cli::usage_error(format!("no run `{id}` in `{}`", crate::store::shown(db)), None)),
        [only] => Ok(only.clone()),
        [first, ..] if first == id => Ok(first.clone()),
        many => {
            let shown: Vec<&str> = many.iter().take(5).map(String::as_str).collect();
            let more = if many.len() > 5 { ", ..." } else { "" };
            let message = format!("`{id}` is the start of several runs: {}{more}", shown.join(", "));
            Err(crate::cli::usage_error(message, Some("give more of the id")))
        }
    }
}

/// Node logs and scratch files live beside the database.
/// `PHASED_DATA_DIR` when set; with PostgreSQL (no file to be beside), `.phased` in
/// the current folder.
pub(crate) fn data_dir(db: &Path) -> PathBuf {
    let dir = match std::env::var_os("PHASED_DATA_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None if crate::store::is_url(db) => PathBuf::from(".phased"),
        None => db.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    // Absolute: steps run in folders of their own, and read these paths there.
    std::path::absolute(&dir).unwrap_or(dir)
}

/// What a database writes on its own: the file, its WAL and journal files, and the
/// node logs and work folders beside it.
pub(crate) fn own_paths(db: &Path) -> Vec<PathBuf> {
    let dir = data_dir(db);
    let mut paths: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_os_string();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect();
    paths.push(dir.join("logs"));
    paths.push(dir.join("work"));
    paths
}
