//! `phased prune --older-than 30d`: forget old runs (their rows, history, checkpoints,
//! events, logs and work folders), never what a deployment still needs: the newest
//! `--keep` succeeded runs of each target (the live release and those kept for
//! rollback), runs that are running or waiting, and interrupted runs (resumable)
//! unless `--interrupted` is given. Release folders and images belong to the
//! deployments themselves (`keep` of `release.switch`, `docker.retire`): never touched.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::cli::store::{data_dir, open_existing, store_error};
use crate::cli::{OutputFormat, StoreArgs, exit, usage_error};
use crate::engine::{self, lease};
use crate::reporter::{note_line, out_line};
use crate::store::{RunRow, RunStatus};

#[derive(clap::Args, Debug)]
pub(super) struct PruneArgs {
    /// Forget runs that finished (or started, if they never finished) longer ago than this
    /// (`30d`, `12h`); required to forget, with `--dry-run` it defaults to 30d.
    #[arg(long, value_name = "AGE", value_parser = crate::duration::parse_age)]
    older_than: Option<Duration>,
    /// Succeeded runs kept per target (per pipeline without one), newest first, however old.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    keep: u32,
    /// Also forget old interrupted runs (otherwise kept: they can be resumed).
    #[arg(long)]
    interrupted: bool,
    /// Say what would be forgotten, and forget nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    #[command(flatten)]
    store: StoreArgs,
}

/// The age `--dry-run` shows when given none (what the docs suggest).
const SUGGESTED_AGE: (&str, Duration) = ("30d", Duration::from_secs(30 * 24 * 3600));

enum Verdict {
    Forget,
    /// Newer than the cutoff.
    Recent,
    /// Old, and kept for this reason.
    Keep(String),
}

/// What becomes of a run.
fn verdict(run: &RunRow, releases: &HashMap<&str, Vec<&str>>, cutoff: SystemTime, args: &PruneArgs) -> Verdict {
    let when = run.finished_at.as_deref().unwrap_or(&run.created_at);
    let at = humantime::parse_rfc3339(when).unwrap_or(SystemTime::UNIX_EPOCH);
    let group = run.target.as_deref().unwrap_or(&run.pipeline);
    if at >= cutoff {
        return Verdict::Recent;
    }
    match run.status {
        RunStatus::Running | RunStatus::Queued => Verdict::Keep("running or waiting".into()),
        RunStatus::Interrupted if !args.interrupted => Verdict::Keep("interrupted: it can be resumed".into()),
        RunStatus::Succeeded if releases.get(group).is_some_and(|kept| kept.contains(&run.id.as_str())) => {
            Verdict::Keep(format!("one of the {} newest releases of `{group}`", args.keep))
        }
        _ => Verdict::Forget,
    }
}

pub(super) fn prune(args: PruneArgs) -> u8 {
    let older_than = match (args.older_than, args.dry_run) {
        (Some(age), _) => age,
        (None, true) => {
            if args.format == OutputFormat::Human {
                out_line(format_args!(
                    "no --older-than given: showing what `--older-than {}` would do",
                    SUGGESTED_AGE.0
                ));
            }
            SUGGESTED_AGE.1
        }
        (None, false) => {
            return usage_error(
                "say how old a run must be to be forgotten: `--older-than AGE` (`30d`, `12h`)",
                Some(&format!(
                    "`phased prune --dry-run` shows what `--older-than {}` would forget, and forgets nothing",
                    SUGGESTED_AGE.0
                )),
            );
        }
    };
    let db = &args.store.db;
    let mut store = match open_existing(&args.store) {
        Ok(Some(store)) => store,
        Ok(None) => {
            note_line(format_args!("nothing to prune: there is no database at `{}`", crate::store::shown(db)));
            return exit::OK;
        }
        Err(code) => return code,
    };
    if let Err(e) = lease::reap(store.as_mut(), engine::now_ms()) {
        return store_error(&e, db);
    }
    let runs = match store.runs() {
        Ok(runs) => runs,
        Err(e) => return store_error(&e, db),
    };
    // Newest first: the first `keep` succeeded runs of each target are its releases.
    let mut releases: HashMap<&str, Vec<&str>> = HashMap::new();
    for run in runs.iter().filter(|r| r.status == RunStatus::Succeeded) {
        let kept = releases.entry(run.target.as_deref().unwrap_or(&run.pipeline)).or_default();
        if kept.len() < args.keep as usize {
            kept.push(&run.id);
        }
    }
    // The release a rollback made live is kept however old: it is what is served.
    for run in runs.iter().filter(|r| r.status == RunStatus::Succeeded) {
        if let Some(restored) = runs.iter().find(|r| Some(r.id.clone()) == crate::read::releases::rollback_of(run)) {
            let kept = releases.entry(restored.target.as_deref().unwrap_or(&restored.pipeline)).or_default();
            if !kept.contains(&restored.id.as_str()) && kept.first() == Some(&run.id.as_str()) {
                kept.push(&restored.id);
            }
        }
    }
    let cutoff = SystemTime::now() - older_than;
    let (mut forget, mut kept_old) = (Vec::new(), Vec::new());
    for run in &runs {
        match verdict(run, &releases, cutoff, &args) {
            Verdict::Forget => forget.push(run),
            Verdict::Keep(reason) => kept_old.push((run, reason)),
            Verdict::Recent => {}
        }
    }
    let data = data_dir(db);
    let mut bytes = 0;
    for run in forget.iter().filter(|r| crate::names::check_run_id(&r.id).is_ok()) {
        for folder in ["logs", "work"] {
            bytes += size_of(&data.join(folder).join(&run.id));
        }
    }
    let ids: Vec<String> = forget.iter().map(|r| r.id.clone()).collect();
    if !args.dry_run {
        if let Err(e) = store.delete_runs(&ids) {
            return store_error(&e, db);
        }
        // The rows go first: a folder left by a crash here is only disk space, never
        // a run that points at files that are gone.
        for id in &ids {
            // A run recorded before ids were checked may be called `..` or `.`: its
            // folders would be the data folder itself. Its rows go; no folder is touched.
            if let Err(why) = crate::names::check_run_id(id) {
                crate::reporter::err_line(format_args!("warning: not removing the folders of run `{id}`: {why}"));
                continue;
            }
            for folder in ["logs", "work"] {
                let path = data.join(folder).join(id);
                if let Err(e) = std::fs::remove_dir_all(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    crate::reporter::err_line(format_args!("warning: cannot remove `{}`: {e}", path.display()));
                }
            }
        }
    }
    match args.format {
        OutputFormat::Json => {
            let kept: Vec<_> = kept_old.iter().map(|(r, why)| json!({"id": r.id, "reason": why})).collect();
            let out = json!({"dry_run": args.dry_run, "pruned": ids, "bytes": bytes, "kept": kept});
            out_line(format_args!("{}", serde_json::to_string_pretty(&out).expect("JSON of plain data")));
        }
        OutputFormat::Human => {
            let verb = if args.dry_run { "would forget" } else { "forgot" };
            for run in &forget {
                out_line(format_args!(
                    "{verb} {} ({}, {}, {})",
                    run.id,
                    run.pipeline,
                    run.status.as_str(),
                    run.created_at
                ));
            }
            // On the same stream as what goes, in one list a reader can follow.
            let kept = if args.dry_run { "would keep" } else { "kept" };
            for (run, why) in &kept_old {
                out_line(format_args!("{kept} {} ({why})", run.id));
            }
            out_line(format_args!(
                "{verb} {} run{} and {} of logs and work files; {kept} {} older run{}",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                human_bytes(bytes),
                kept_old.len(),
                if kept_old.len() == 1 { "" } else { "s" },
            ));
        }
    }
    exit::OK
}

fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| size_of(&e.path())).sum()
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}
