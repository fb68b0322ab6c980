//! `phased migrate`: moves a team's history from its SQLite file to PostgreSQL.

use std::path::PathBuf;

use crate::app::stores::CopyError;
use crate::cli::exit;
use crate::cli::store::store_error;
use crate::reporter::err_line;

#[derive(clap::Args, Debug)]
#[command(after_help = "Stop every phased process using the SQLite database first (a run that is \
still running there is refused). The SQLite file is left as it was; point --db (or PHASED_DB) \
at the URL from then on.")]
pub(crate) struct MigrateArgs {
    /// The database to copy: `sqlite:PATH` (or the path itself).
    #[arg(long, value_name = "sqlite:PATH")]
    from: String,
    /// The PostgreSQL database to copy it into, which must hold no run yet (its tables
    /// are made): `postgres://USER@HOST[:PORT]/NAME`.
    #[arg(long, value_name = "URL")]
    to: String,
}

pub(super) fn migrate(args: MigrateArgs) -> u8 {
    let from = PathBuf::from(args.from.strip_prefix("sqlite:").unwrap_or(&args.from));
    if crate::store::is_url(&from) {
        return crate::cli::usage_error(
            format!("--from `{}` is not a SQLite database", crate::store::shown(&from)),
            Some("phased migrates from a SQLite file into PostgreSQL: --from sqlite:PATH --to postgres://..."),
        );
    }
    if !from.is_file() {
        return crate::cli::usage_error(
            format!("there is no SQLite database at `{}`", from.display()),
            Some("give the file runs were recorded in: --from sqlite:PATH (the default is .phased/phased.db)"),
        );
    }
    let to = PathBuf::from(&args.to);
    if !crate::store::is_url(&to) {
        return crate::cli::usage_error(
            format!("--to `{}` is not a PostgreSQL URL", args.to),
            Some("give one like postgres://USER@HOST:5432/NAME"),
        );
    }
    let shown = crate::store::shown(&to);
    let mut said = |table: &str, rows: u64| err_line(format_args!("copied {table}: {rows} rows"));
    match crate::app::stores::migrate(&from, &args.to, &mut said) {
        Ok(copied) => {
            let runs = copied.iter().find(|(t, _)| *t == "deployments").map_or(0, |(_, n)| *n);
            let events = copied.iter().find(|(t, _)| *t == "events").map_or(0, |(_, n)| *n);
            println!("migrated {runs} runs and {events} events from `{}` to `{shown}`", from.display());
            let logs = super::store::data_dir(&from);
            println!("from now on: PHASED_DB='{shown}' PHASED_DATA_DIR='{}' (where the node logs are)", logs.display());
            exit::OK
        }
        Err(CopyError::Store(e)) => store_error(&e, &to),
        Err(e @ (CopyError::NotEmpty { .. } | CopyError::Live { .. })) => crate::cli::usage_error(e, None),
        Err(e) => {
            err_line(format_args!("error: {e}"));
            exit::FAILED
        }
    }
}
