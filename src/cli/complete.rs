//! Dynamic shell completion (clap_complete's engine): with `COMPLETE=SHELL` in its
//! environment, `phased` prints the shell's registration script, or the candidates for
//! the word being completed, and exits. Run ids, targets and pipeline names come from
//! the database and the pipeline folders the command line (or `PHASED_DB`,
//! `PHASED_PIPELINES`) names. Completing never creates a database, and says nothing
//! when there is none.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap_complete::engine::{ArgValueCompleter, CompletionCandidate, PathCompleter, ValueCompleter};

use crate::store::{RunRow, RunStatus, Store};

/// Answers a completion request and exits, when the shell made one (`COMPLETE` is
/// set); else returns at once. Called before anything is printed.
pub(super) fn answer_if_asked() {
    use clap::CommandFactory;
    clap_complete::CompleteEnv::with_factory(crate::cli::Cli::command).complete();
}

/// Completes any run id (and `@last`).
pub(super) fn run_ids() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| ids(current, |_| true))
}

/// Completes the ids of runs that `resume` continues: those that did not succeed.
pub(super) fn resumable_run_ids() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        ids(current, |r| matches!(r.status, RunStatus::Failed | RunStatus::Interrupted | RunStatus::Cancelled))
    })
}

/// Completes the ids of runs that `cancel` stops: queued or running.
pub(super) fn active_run_ids() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        ids(current, |r| matches!(r.status, RunStatus::Queued | RunStatus::Running))
    })
}

/// Completes the ids of releases: succeeded runs.
pub(super) fn release_ids() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| ids(current, |r| r.status == RunStatus::Succeeded))
}

/// Completes the targets runs were recorded with.
pub(super) fn targets() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        let Some(current) = current.to_str() else { return Vec::new() };
        let mut seen: Vec<String> = Vec::new();
        for run in runs() {
            if let Some(target) = run.target
                && target.starts_with(current)
                && !seen.contains(&target)
            {
                seen.push(target);
            }
        }
        seen.into_iter().map(CompletionCandidate::new).collect()
    })
}

/// Completes deployment-type names (the pipeline folder's, then the built-in ones;
/// building blocks such as `sources/git` are left out), then pipeline files.
pub(super) fn pipelines() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        let Some(text) = current.to_str() else { return Vec::new() };
        let folder = flag_value("--pipelines", "PHASED_PIPELINES").unwrap_or_else(|| PathBuf::from("pipelines"));
        let catalog = crate::app::Pipelines::new(&folder).catalog();
        let mut candidates: Vec<CompletionCandidate> = catalog
            .names()
            .into_iter()
            .filter(|name| !name.contains('/') && name.starts_with(text))
            .map(|name| CompletionCandidate::new(name).help(Some("deployment type".into())))
            .collect();
        let yaml = |path: &Path| path.is_dir() || path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        candidates.extend(PathCompleter::any().filter(yaml).complete(current));
        candidates
    })
}

/// Ids of the runs that pass `keep` and start with `current`, newest first, each with
/// its pipeline, status and age as help; `@last` too when it fits.
fn ids(current: &OsStr, keep: impl Fn(&RunRow) -> bool) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else { return Vec::new() };
    let now = std::time::SystemTime::now();
    let all = runs();
    let mut candidates = Vec::new();
    if let Some(newest) = all.first()
        && crate::cli::store::LAST.starts_with(current)
    {
        candidates.push(
            CompletionCandidate::new(crate::cli::store::LAST)
                .help(Some(format!("the newest run ({})", crate::cli::terminal::clean(&newest.id, false)).into())),
        );
    }
    candidates.extend(all.iter().filter(|r| keep(r) && r.id.starts_with(current)).take(200).map(|r| {
        let help = format!("{} {} {}", r.pipeline, r.status.as_str(), super::status::table::age(&r.created_at, now));
        CompletionCandidate::new(&r.id).help(Some(crate::cli::terminal::clean(&help, false).into_owned().into()))
    }));
    candidates
}

/// Every run of the database the command line names, newest first; none when there is
/// no database or it cannot be read.
fn runs() -> Vec<RunRow> {
    let db = flag_value("--db", "PHASED_DB").unwrap_or_else(|| PathBuf::from(".phased/phased.db"));
    if !crate::store::is_url(&db) && !db.is_file() {
        return Vec::new();
    }
    let store: Option<Box<dyn Store>> = crate::app::Db::new(db, crate::store::Durability::Normal).open().ok();
    store.and_then(|s| s.runs().ok()).unwrap_or_default()
}

/// The value of `flag` on the command line being completed (`--db PATH` or
/// `--db=PATH`), else of the variable `env`.
fn flag_value(flag: &str, env: &str) -> Option<PathBuf> {
    let args: Vec<OsString> = std::env::args_os().collect();
    // The words of the command line being completed follow `--`.
    let words = args.iter().position(|a| a == "--").map_or(&args[..0], |i| &args[i + 1..]);
    let with_equals = format!("{flag}=");
    let mut found = None;
    for (i, word) in words.iter().enumerate() {
        let Some(text) = word.to_str() else { continue };
        if text == flag {
            found = words.get(i + 1).map(PathBuf::from);
        } else if let Some(value) = text.strip_prefix(&with_equals) {
            found = Some(PathBuf::from(value));
        }
    }
    found
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| std::env::var_os(env).filter(|v| !v.is_empty()).map(PathBuf::from))
}
