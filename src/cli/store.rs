//! The database the commands work on, and the folder beside it (node logs, work files).

use std::path::{Path, PathBuf};

use crate::cli::{StoreArgs, exit};
use crate::store::Store;

pub(crate) fn open_store(args: &StoreArgs) -> Result<Box<dyn Store>, u8> {
    crate::store::open(&args.db, args.durability).map_err(|e| {
        eprintln!("error: {e}");
        eprintln!("  help: pass another database with --db PATH (or PHASED_DB)");
        exit::ENVIRONMENT
    })
}

/// Node logs and scratch files live beside the database.
pub(crate) fn data_dir(db: &Path) -> PathBuf {
    db.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf)
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
