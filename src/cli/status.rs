//! `phased status [ID]` and `phased cancel ID`. What a run recorded from its steps
//! (errors, outputs, a target from an input) is shown without terminal control
//! sequences (`terminal`).

pub(super) mod table;

use super::parse_duration;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use crate::cli::store::{open_existing, open_run, resolve_run};
use crate::cli::terminal::clean;
use crate::cli::{CatalogArgs, OutputFormat, StoreArgs, exit, usage_error};
use crate::engine::{self, lease};
use crate::store::{RunRow, RunStatus, Store, StoreError};

#[derive(clap::Args, Debug)]
pub(super) struct StatusArgs {
    /// One run in detail (its id, any unique start of it, or `@last`); without it, a
    /// table of runs.
    #[arg(add = crate::cli::complete::run_ids())]
    id: Option<String>,
    /// Only runs of this pipeline (deployment type).
    #[arg(long, value_name = "NAME", conflicts_with = "id", add = crate::cli::complete::pipelines())]
    pipeline: Option<String>,
    /// Only runs with this status (in any case: `failed`, `FAILED`).
    #[arg(long, value_enum, ignore_case = true, conflicts_with = "id")]
    status: Option<RunStatus>,
    /// Only runs of this target (the service or project a run deploys: its `concurrency.key`).
    #[arg(long, value_name = "TARGET", conflicts_with = "id", add = crate::cli::complete::targets())]
    target: Option<String>,
    /// At most this many runs, newest first (default: 20 in the table, every run with
    /// `--format json`; 0: every run).
    #[arg(long, value_name = "N", conflicts_with = "id")]
    limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    #[command(flatten)]
    color: crate::cli::terminal::ColorArg,
    /// Where the pipeline of a stopped run is looked for, to tell whether `resume` needs
    /// `--reload` (its `next:` line).
    #[command(flatten)]
    catalog: CatalogArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Args, Debug)]
pub(super) struct CancelArgs {
    /// The run to stop (its id, any unique start of it, or `@last`); it can be resumed later.
    #[arg(add = crate::cli::complete::active_run_ids())]
    id: String,
    /// `json`: the run as it is afterwards, as `status ID --format json` prints it.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    /// How long to wait for the process running it to stop.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    wait: Duration,
    #[command(flatten)]
    store: StoreArgs,
}

pub(super) fn status(args: StatusArgs) -> u8 {
    let db = &args.store.db;
    let mut store = match open_existing(&args.store) {
        Ok(Some(store)) => store,
        Ok(None) => return no_database(&args, db),
        Err(code) => return code,
    };
    let id = match &args.id {
        Some(id) => match resolve_run(store.as_ref(), id, db) {
            Ok(id) => Some(id),
            Err(code) => return code,
        },
        None => None,
    };
    let result = (|| -> Result<u8, StoreError> {
        // Marking dead holders' runs interrupted is a write: skipped where it cannot be
        // done (a read-only or full file system); what is shown is read all the same.
        if let Err(e) = lease::reap(store.as_mut(), engine::now_ms())
            && e.trouble() == crate::store::Trouble::Other
        {
            return Err(e);
        }
        match &id {
            Some(id) => {
                let Some(detail) = crate::read::view::run_json(store.as_ref(), id)? else {
                    return Ok(usage_error(format!("no run `{id}` in `{}`", crate::store::shown(db)), None));
                };
                match args.format {
                    OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&detail).expect("JSON")),
                    OutputFormat::Human => {
                        let colors = args.color.colors();
                        let mut shown = clean(&detail_text(&detail), colors).into_owned();
                        let logs = crate::cli::store::data_dir(&args.store.db).join("logs").join(id);
                        if logs.is_dir() {
                            let _ = writeln!(shown, "\n  logs      {}/<node>.log (`phased logs {id}`)", logs.display());
                        }
                        if let Some(row) = store.run(id)?
                            && let Some(next) = next_step(store.as_ref(), &row, &args.catalog)
                        {
                            let _ = writeln!(shown, "\nnext:     {next}");
                        }
                        print!("{shown}");
                    }
                }
            }
            None => list(&args, store.runs()?),
        }
        Ok(exit::OK)
    })();
    result.unwrap_or_else(|e| crate::cli::store::store_error(&e, db))
}

/// `status` where there is no database: nothing to show, and nothing created.
fn no_database(args: &StatusArgs, db: &std::path::Path) -> u8 {
    if let Some(id) = &args.id {
        let help = "pass the database the run was started with: --db PATH (or PHASED_DB)";
        return usage_error(
            format!("no run `{id}`: there is no database at `{}`", crate::store::shown(db)),
            Some(help),
        );
    }
    match args.format {
        OutputFormat::Json => println!("[]"),
        OutputFormat::Human => println!("no runs yet: there is no database at `{}`", crate::store::shown(db)),
    }
    exit::OK
}

/// The runs that pass the filters, newest first: as JSON, or as a table of at most
/// `--limit` (20 by default) that says when it is cut, and which filter matched nothing.
fn list(args: &StatusArgs, all: Vec<RunRow>) {
    let matching: Vec<&RunRow> = all
        .iter()
        .filter(|r| args.pipeline.as_ref().is_none_or(|p| &r.pipeline == p))
        .filter(|r| args.status.is_none_or(|s| s == r.status))
        .filter(|r| args.target.as_ref().is_none_or(|t| r.target.as_ref() == Some(t)))
        .collect();
    let limit = match (args.limit, args.format) {
        (Some(0), _) | (None, OutputFormat::Json) => usize::MAX,
        (Some(n), _) => n,
        (None, OutputFormat::Human) => table::DEFAULT_LIMIT,
    };
    let shown = &matching[..matching.len().min(limit)];
    if args.format == OutputFormat::Json {
        let list: Vec<Value> = shown.iter().map(|r| crate::read::view::row_json(r)).collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("JSON"));
        return;
    }
    if all.is_empty() {
        println!("no runs yet; start one with `phased run PIPELINE`");
        return;
    }
    if shown.is_empty() {
        println!("{}", clean(&no_match(args, &all), false));
        return;
    }
    print!("{}", table::table(shown, &all, args.color.colors()));
    if shown.len() < matching.len() {
        println!(
            "showing {} of {} runs, newest first; `--limit N` shows more (`--limit 0`: all)",
            shown.len(),
            matching.len()
        );
    }
}

/// `no run matches `--pipeline nop` (did you mean `noop`?)`: the filters, and the name
/// a filter was likely meant to give, among those of the runs there are.
fn no_match(args: &StatusArgs, all: &[RunRow]) -> String {
    let mut filters = Vec::new();
    let mut hint = None;
    let mut names = |given: &str, of: &dyn Fn(&RunRow) -> Option<&str>| {
        let mut known: Vec<&str> = all.iter().filter_map(of).collect();
        known.sort_unstable();
        known.dedup();
        if !known.contains(&given) && hint.is_none() {
            hint = crate::suggest::closest(given, known.iter().copied()).map(|best| format!("did you mean `{best}`?"));
        }
    };
    if let Some(pipeline) = &args.pipeline {
        filters.push(format!("--pipeline {pipeline}"));
        names(pipeline, &|r| Some(r.pipeline.as_str()));
    }
    if let Some(status) = args.status {
        filters.push(format!("--status {}", status.as_str()));
    }
    if let Some(target) = &args.target {
        filters.push(format!("--target {target}"));
        names(target, &|r| r.target.as_deref());
    }
    let filters = filters.join(" ");
    match hint {
        Some(hint) => format!("no run matches `{filters}` ({hint})"),
        None => format!("no run matches `{filters}`; `phased status` lists every run ({})", all.len()),
    }
}

/// What to do with a run that stopped short of ACTIVE: resume it, with `--reload` when
/// its pipeline changed on disk since it started (the run keeps the files it started
/// with; `--reload` takes them as they are now).
fn next_step(store: &dyn Store, row: &RunRow, catalog: &CatalogArgs) -> Option<String> {
    let id = &row.id;
    let why = match row.status {
        RunStatus::Failed => "fix the cause first",
        RunStatus::Interrupted | RunStatus::Cancelled => "it continues at the nodes that did not finish",
        _ => return None,
    };
    Some(match crate::app::runs::changed_since_started(store, row, &crate::cli::load::pipelines(catalog)) {
        Some(true) => format!(
            "phased resume {id} --reload  (its pipeline changed since the run started; \
             `phased plan --resume {id} --reload` shows what runs again)"
        ),
        _ => format!("phased resume {id}  ({why})"),
    })
}

/// The running node most past its usual time: `` `work` running 53.0s, usually 850ms ``.
fn overrunning(running: &Value) -> Option<String> {
    let now = std::time::SystemTime::now();
    running
        .as_array()?
        .iter()
        .filter_map(|n| {
            let usual = n["usual_seconds"].as_f64()?;
            let started = humantime::parse_rfc3339(n["started_at"].as_str()?).ok()?;
            let running = now.duration_since(started).ok()?.as_secs_f64();
            (running > usual).then(|| (running - usual, n["node"].as_str().unwrap_or("?").to_string(), running, usual))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, node, running, usual)| {
            let shown = |s: f64| table::short_duration((s * 1000.0) as u128);
            format!("`{node}` running {}, usually {}", shown(running), shown(usual))
        })
}

/// What a run deployed, in one line: the release, image and commit it recorded, else
/// its scalar inputs (`version=1.10 domain=example.com`).
fn deployed_line(deployed: &Value, inputs: &Value) -> Option<String> {
    let recorded: Vec<String> = ["release", "image", "commit"]
        .iter()
        .filter_map(|key| Some(format!("{key} {}", deployed.get(*key)?.as_str()?)))
        .collect();
    if !recorded.is_empty() {
        return Some(recorded.join(", "));
    }
    let scalars: Vec<String> = inputs
        .as_object()?
        .iter()
        .filter_map(|(name, value)| match value {
            Value::String(s) => Some(format!("{name}={s}")),
            Value::Number(_) | Value::Bool(_) => Some(format!("{name}={value}")),
            _ => None,
        })
        .collect();
    (!scalars.is_empty()).then(|| scalars.join(" "))
}

fn detail_text(d: &Value) -> String {
    let mut out = String::new();
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let _ = writeln!(out, "run       {}", text(&d["id"]));
    let _ = writeln!(out, "pipeline  {}", text(&d["pipeline"]));
    if !d["target"].is_null() {
        let _ = writeln!(out, "target    {}", text(&d["target"]));
    }
    // In colour; `clean` takes the colour away where colours are not shown.
    let status = text(&d["status"]);
    let painted = table::paint(&status, RunStatus::parse(&status), true);
    let _ = writeln!(out, "status    {painted} (attempt {})", d["attempt"]);
    match d["phase_metadata"]["progressReached"].as_u64() {
        // A FAILED run records 0 as its progress; how far it got is in its metadata.
        Some(reached) if d["status"] == "failed" => {
            let _ = writeln!(out, "phase     {} after {reached}%", text(&d["phase"]));
            if let Some(node) = d["phase_metadata"]["failedNode"].as_str() {
                let phase = d["phase_metadata"]["failedPhase"].as_str().unwrap_or("-");
                let _ = writeln!(out, "failed    at node `{node}` ({phase})");
            }
        }
        _ => {
            let _ = writeln!(out, "phase     {} at {}%", text(&d["phase"]), d["phase_progress"]);
        }
    }
    let _ = writeln!(out, "started   {}", text(&d["created_at"]));
    if let Some(actor) = d["actor"].as_str() {
        let _ = writeln!(out, "by        {}", crate::actor::Actor::parse(actor).describe());
    }
    if let Some(line) = deployed_line(&d["deployed"], &d["inputs"]) {
        let _ = writeln!(out, "deployed  {line}");
    }
    if let Some(late) = overrunning(&d["running_nodes"]) {
        let _ = writeln!(out, "eta       {late}: longer than its history says, so no time left is promised");
    } else if let Some(eta) = d["eta_seconds"].as_f64() {
        let _ = writeln!(out, "eta       {eta:.0}s left (the median durations of its nodes' last runs)");
    }
    if !d["finished_at"].is_null() {
        let _ = writeln!(out, "finished  {}", text(&d["finished_at"]));
    }
    if !d["superseded_by"].is_null() {
        let _ = writeln!(out, "superseded by {}", text(&d["superseded_by"]));
    }
    if !d["error"].is_null() {
        let _ = writeln!(out, "error     {}", text(&d["error"]).lines().next().unwrap_or(""));
    }
    let _ = writeln!(out, "metadata  {}", d["phase_metadata"]);
    for n in d["notifications"].as_array().into_iter().flatten() {
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let detail = match n["status"].as_str() {
            Some("delivered") => format!("delivered at {}", text(&n["delivered_at"])),
            _ => format!("{} after {} attempt(s): {}", text(&n["status"]), n["attempts"], text(&n["last_error"])),
        };
        let _ = writeln!(out, "notify    {} ({}): {detail}", text(&n["outcome"]), text(&n["format"]));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "  {:<28}  {:<10}  {:>7}  {:>9}", "node", "status", "attempt", "duration");
    for n in d["nodes"].as_array().into_iter().flatten() {
        let duration = n["duration_ms"].as_u64().map_or("-".to_string(), |ms| format!("{:.2}s", ms as f64 / 1000.0));
        let attempt = n["attempt"].as_u64().unwrap_or(0);
        let _ =
            writeln!(out, "  {:<28}  {:<10}  {:>7}  {:>9}", text(&n["node"]), text(&n["status"]), attempt, duration);
        if let Some(error) = n["error"].as_str() {
            for line in error.lines().take(6) {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "  history");
    for h in d["history"].as_array().into_iter().flatten() {
        let node = h["node"].as_str().unwrap_or("");
        let _ = writeln!(
            out,
            "  {}  {:<17} {:>3}%  {:<20} {}",
            text(&h["at"]),
            text(&h["phase"]),
            h["progress"],
            node,
            h["metadata"]
        );
    }
    out
}

pub(super) fn cancel(args: CancelArgs) -> u8 {
    let (mut store, id) = match open_run(&args.store, &args.id) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let code = stop(&args, store.as_mut(), &id);
    if args.format == OutputFormat::Json && code != exit::ENVIRONMENT {
        match crate::read::view::run_json(store.as_ref(), &id) {
            Ok(Some(detail)) => println!("{}", serde_json::to_string_pretty(&detail).expect("JSON")),
            Ok(None) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ENVIRONMENT;
            }
        }
    }
    code
}

/// Asks for the stop and waits (up to `--wait`) for the holder to stop the run.
fn stop(args: &CancelArgs, store: &mut dyn Store, id: &str) -> u8 {
    use crate::app::{Cancel, Error, runs};
    // Said as `error: ...` without the database's advice: what `cancel` always said.
    let environment = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        exit::ENVIRONMENT
    };
    let row = match runs::cancel(store, id) {
        Ok(Cancel::Ended(row)) if row.status != RunStatus::Cancelled => {
            eprintln!("run `{}` already {}; nothing to cancel", row.id, row.status.as_str());
            return exit::OK;
        }
        Ok(Cancel::Ended(row) | Cancel::Asked(row)) if row.status == RunStatus::Cancelled => {
            eprintln!("run `{}` is cancelled; `phased resume {}` continues it", row.id, row.id);
            return exit::OK;
        }
        Ok(Cancel::Ended(row) | Cancel::Asked(row)) => row,
        Err(Error::NoRun(_)) => return usage_error(format!("no run `{id}`"), None),
        Err(e) => return environment(&e),
    };
    // A live process holds it: it stops at its next heartbeat.
    match runs::wait_stopped(store, &row.id, args.wait) {
        Ok(Some(r)) => {
            eprintln!("run `{}` is {}; `phased resume {}` continues it", r.id, r.status.as_str(), r.id);
            exit::OK
        }
        Ok(None) => {
            eprintln!("asked the process running `{}` to stop; it has not yet", args.id);
            exit::FAILED
        }
        Err(e) => environment(&e),
    }
}
