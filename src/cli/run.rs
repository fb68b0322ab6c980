//! `phased run`, `phased resume`: start or continue runs, with live output.

use std::path::{Path, PathBuf};

use crate::cli::load::{Loaded, load_with_inputs};
use crate::cli::store::{data_dir, is_last, open_run, open_store, store_error};
use crate::cli::{CatalogArgs, StoreArgs, exit, usage_error};
use crate::engine::{self, EngineError, Options, Outcome, lease};
use crate::event::Reporter;
use crate::report;
use crate::reporter::{Bar, JsonLines, Lines, Silent, err_line, note_line, out_line};
use crate::secrets::Secrets;
use crate::store::{ClaimError, RunStatus};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RunFormat {
    /// A live progress bar on a terminal, one line per event otherwise.
    Human,
    /// Nothing while running; the final status as JSON.
    Json,
    /// One JSON object per event.
    Jsonl,
}

#[derive(clap::Args, Debug)]
pub(super) struct RunArgs {
    /// A pipeline file, or a deployment-type name (looked up in --pipelines, then built in).
    #[arg(add = crate::cli::complete::pipelines())]
    pipeline: String,
    /// An input, `key=value` (the value is read as YAML: `8080` is a number); `a.b=c` nests.
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    input: Vec<String>,
    /// A YAML file of inputs (`-i` values override it).
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
    /// The run id (default: a new UUID); `deployment.short_id` is its first 8 characters.
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    catalog: CatalogArgs,
}

#[derive(clap::Args, Debug)]
pub(super) struct ResumeArgs {
    /// The run to continue (its id, any unique start of it, or `@last`).
    #[arg(required_unless_present = "all", conflicts_with = "all", add = crate::cli::complete::resumable_run_ids())]
    id: Option<String>,
    /// Rerun this node and everything that depends on it (qualified: `source.clone`).
    #[arg(long, value_name = "NODE", conflicts_with = "all")]
    from: Option<String>,
    /// Resume every interrupted run in the database, one after the other.
    #[arg(long)]
    all: bool,
    /// Take the pipeline files from disk (fixed since the run started) instead of the
    /// run's snapshot: unchanged finished nodes are kept, changed ones and what depends
    /// on them run again. `phased plan --resume ID --reload` shows what would rerun.
    #[arg(long, conflicts_with = "all")]
    reload: bool,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    catalog: CatalogArgs,
}

#[derive(clap::Args, Debug)]
pub(super) struct RollbackArgs {
    /// The target whose release to make live again (a project or service).
    #[arg(add = crate::cli::complete::targets())]
    target: String,
    /// The release (a run id or any unique start of it, from `phased releases TARGET`);
    /// default: the one before the live one.
    #[arg(long, value_name = "RUN", add = crate::cli::complete::release_ids())]
    to: Option<String>,
    /// The rollback run's id (default: a new UUID).
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    exec: ExecArgs,
}

/// `--parallel`, for every command that runs nodes.
#[derive(clap::Args, Debug)]
pub(super) struct ParallelArg {
    /// How many nodes may run at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) parallel: u16,
}

#[derive(clap::Args, Debug)]
pub(super) struct ExecArgs {
    #[command(flatten)]
    pub(super) parallel: ParallelArg,
    /// How the run shows itself.
    #[arg(long, value_enum, default_value_t = RunFormat::Human)]
    pub(super) format: RunFormat,
    /// Print each line a step prints, as `node | line` (also with `-v`; human format).
    #[arg(long)]
    pub(super) show_output: bool,
    #[command(flatten)]
    pub(super) notify: crate::cli::notify::NotifyTargets,
    #[command(flatten)]
    pub(super) store: StoreArgs,
}

impl ExecArgs {
    pub(super) fn show_output(&self) -> bool {
        self.show_output || crate::reporter::verbose()
    }

    /// What a run started or resumed from the command line gets: secrets from the
    /// environment, node logs beside the database.
    fn options<'r>(&self, reporter: &'r mut dyn Reporter) -> Options<'r> {
        Options {
            parallel: usize::from(self.parallel.parallel),
            secrets: Secrets::from_env(),
            reporter,
            data_dir: data_dir(&self.store.db),
            stop: None,
        }
    }
}

fn reporter(exec: &ExecArgs) -> Box<dyn Reporter> {
    use std::io::IsTerminal;
    let show_output = exec.show_output();
    match exec.format {
        RunFormat::Jsonl => Box::new(JsonLines),
        RunFormat::Json => Box::new(Silent),
        RunFormat::Human if crate::reporter::quiet() => Box::new(Silent),
        RunFormat::Human if std::io::stderr().is_terminal() && std::io::stdout().is_terminal() => {
            Box::new(Bar::new(show_output))
        }
        RunFormat::Human => Box::new(Lines { show_output }),
    }
}

fn exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Succeeded => exit::OK,
        Outcome::Failed => exit::FAILED,
        Outcome::FailedEnvironment => exit::ENVIRONMENT,
        Outcome::Interrupted | Outcome::Cancelled => exit::INTERRUPTED,
    }
}

/// Sends the run's notifications (and any left due by an earlier process), one quick
/// attempt each, then says in one line each what was not delivered. The command never
/// waits on a receiver that is down: the retries, after the backoff recorded in the
/// outbox, are `phased notify`'s and `phased serve`'s.
fn notify(exec: &ExecArgs, id: &str) {
    use crate::notify::{RETRIED_BY_NOTIFY, Sending, deliver_due, undelivered_line};
    crate::crash::point("run ended: its notifications recorded, not sent yet");
    let store_args = &exec.store;
    let Ok(mut store) = crate::store::open(&store_args.db, store_args.durability) else { return };
    let (secrets, guard) = (Secrets::from_env(), exec.notify.guard());
    let pending = crate::seam::block_on(async {
        deliver_due(store.as_mut(), &secrets, &guard, Some(id), Sending::QUICK).await?;
        deliver_due(store.as_mut(), &secrets, &guard, None, Sending::QUICK).await?;
        store.notifications(id)
    });
    if let Ok(rows) = pending {
        for n in rows.iter().filter(|n| n.status != "delivered") {
            err_line(format_args!("warning: {}", undelivered_line(n, RETRIED_BY_NOTIFY)));
        }
    }
}

/// After a run: its notifications, then a closing line for people (stderr), or the
/// status as JSON.
fn conclude(exec: &ExecArgs, id: &str, outcome: Outcome) {
    let (store_args, format) = (&exec.store, exec.format);
    notify(exec, id);
    let run_error = || {
        crate::store::open(&store_args.db, store_args.durability)
            .ok()
            .and_then(|store| crate::engine::view::run_json(store.as_ref(), id).ok().flatten())
            .and_then(|status| status["error"].as_str().map(str::to_string))
    };
    if outcome == Outcome::FailedEnvironment {
        // Whatever the format, an environment problem is said on stderr: scripts that
        // read stdout as JSON still show people why the command exited with 3.
        if let Some(error) = run_error() {
            err_line(format_args!("error: {error}"));
        }
    }
    if format == RunFormat::Human && crate::reporter::quiet() {
        // `-q` shows no progress: what went wrong is all it says (the error names the node).
        match outcome {
            Outcome::Failed if let Some(error) = run_error() => {
                err_line(format_args!("error: deployment {id} FAILED: {error}"));
                return;
            }
            Outcome::FailedEnvironment if run_error().is_some() => return,
            _ => {}
        }
    }
    if format == RunFormat::Json {
        if let Ok(store) = crate::store::open(&store_args.db, store_args.durability)
            && let Ok(Some(status)) = crate::engine::view::run_json(store.as_ref(), id)
        {
            out_line(format_args!("{}", serde_json::to_string_pretty(&status).expect("JSON of plain data")));
        }
        return;
    }
    if format == RunFormat::Jsonl {
        return;
    }
    let line = match outcome {
        Outcome::Succeeded => format!("deployment {id} is ACTIVE (see `phased status {id}`)"),
        Outcome::Failed => {
            format!("deployment {id} FAILED; fix the cause, then `phased resume {id}` (see `phased status {id}`)")
        }
        Outcome::FailedEnvironment => {
            format!("deployment {id} FAILED because of its environment; fix it, then `phased resume {id}`")
        }
        Outcome::Interrupted | Outcome::Cancelled => {
            format!("deployment {id} stopped; continue with `phased resume {id}`")
        }
    };
    match outcome {
        Outcome::Succeeded => note_line(format_args!("{line}")),
        _ => err_line(format_args!("{line}")),
    }
}

fn engine_error(e: EngineError, db: &Path) -> u8 {
    match e {
        EngineError::Store(e) => store_error(&e, db),
        EngineError::Snapshot { run, diagnostics } => {
            for d in &diagnostics {
                err_line(format_args!("{}", report::human(d, false)));
            }
            usage_error(format!("the pipeline snapshot of run `{run}` does not compile with this phased"), None)
        }
        EngineError::Rejected { target, by } => {
            err_line(format_args!(
                "error: target `{target}` is busy with run {by}, and the pipeline's concurrency policy is `reject`"
            ));
            err_line(format_args!("  help: wait for it (`phased status {by}`), or cancel it (`phased cancel {by}`)"));
            exit::FAILED
        }
        EngineError::Target(message) => usage_error(message, Some("the target is rendered from the run's inputs")),
        EngineError::Reload { run, error } => usage_error(
            format!("cannot reload the pipeline of run `{run}`: {error}"),
            Some("the run is unchanged; resume it without --reload, or fix the pipeline so that it can"),
        ),
        EngineError::UnknownNode { run, node, help } => {
            usage_error(format!("no node `{node}` in run `{run}`"), help.as_deref())
        }
        EngineError::Claim(ClaimError::Store(e)) => store_error(&e, db),
        EngineError::Claim(ClaimError::Finished { id }) => {
            note_line(format_args!("run `{id}` already succeeded; nothing to resume"));
            exit::OK
        }
        EngineError::Claim(ClaimError::Held { id, pid, host }) => usage_error(
            format!("run `{id}` is being run by process {pid} on `{host}`"),
            Some("wait for it, or stop it with `phased cancel`"),
        ),
        other => usage_error(other, None),
    }
}

pub(super) fn run(args: RunArgs) -> u8 {
    let Loaded { plan, resolved, .. } =
        match load_with_inputs(&args.pipeline, &args.catalog, args.inputs.as_deref(), &args.input) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        };
    let store = match open_store(&args.exec.store) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let mut reporter = reporter(&args.exec);
    let options = args.exec.options(reporter.as_mut());
    let actor = crate::actor::Actor::cli();
    match crate::seam::block_on(engine::start(store, plan, resolved, (args.id, &actor), options)) {
        Ok((id, outcome)) => {
            drop(reporter);
            conclude(&args.exec, &id, outcome);
            exit_code(outcome)
        }
        Err(e) => engine_error(e, &args.exec.store.db),
    }
}

pub(super) fn resume(args: ResumeArgs) -> u8 {
    let ids: Vec<String> = if args.all {
        let mut store = match open_store(&args.exec.store) {
            Ok(store) => store,
            Err(code) => return code,
        };
        if let Err(e) = lease::reap(store.as_mut(), engine::now_ms()) {
            return store_error(&e, &args.exec.store.db);
        }
        match store.runs() {
            Ok(runs) => runs.into_iter().rev().filter(|r| r.status == RunStatus::Interrupted).map(|r| r.id).collect(),
            Err(e) => return store_error(&e, &args.exec.store.db),
        }
    } else {
        let given = args.id.clone().expect("clap requires an id without --all");
        match open_run(&args.exec.store, &given) {
            Ok((_, id)) => vec![id],
            Err(code) => return code,
        }
    };
    if args.all && ids.is_empty() {
        note_line(format_args!("no interrupted runs to resume"));
        return exit::OK;
    }
    let mut worst = exit::OK;
    for id in ids {
        let store = match open_store(&args.exec.store) {
            Ok(store) => store,
            Err(code) => return code,
        };
        let mut reporter = reporter(&args.exec);
        let options = args.exec.options(reporter.as_mut());
        let human = args.exec.format == RunFormat::Human;
        let pipelines = args.catalog.pipelines.clone();
        let note = move |info: &engine::ResumeInfo| {
            if !human {
                return;
            }
            if info.killed > 0 {
                note_line(format_args!(
                    "stopped {} process(es) left running by the previous attempt of {}",
                    info.killed, info.id
                ));
            }
            match &info.reload {
                Some(reload) => {
                    let list = |ids: &[String]| if ids.is_empty() { "none".to_string() } else { ids.join(", ") };
                    note_line(format_args!(
                        "reloaded `{}`: changed: {}; finished nodes that run again: {}{}",
                        info.plan.source.name,
                        list(&reload.changed),
                        list(&info.rerun),
                        if reload.removed.is_empty() {
                            String::new()
                        } else {
                            format!("; removed: {}", reload.removed.join(", "))
                        }
                    ));
                }
                None if changed_on_disk(info, &pipelines) => note_line(format_args!(
                    "note: `{}` changed since run {} started; resuming with the pipeline it started with \
                     (`--reload` takes it as it is now)",
                    info.plan.source.name, info.id
                )),
                None => {}
            }
        };
        let reload = match reloaded(args.reload, store.as_ref(), &id, &args.catalog) {
            Ok(reload) => reload,
            Err(code) => return code,
        };
        let resumed = engine::resume(store, &id, args.from.as_deref(), reload, options, note);
        let code = match crate::seam::block_on(resumed) {
            Ok(outcome) => {
                drop(reporter);
                conclude(&args.exec, &id, outcome);
                exit_code(outcome)
            }
            Err(e) => engine_error(e, &args.exec.store.db),
        };
        worst = worst.max(code);
    }
    worst
}

/// With `--reload`, the pipeline of run `id` as it is on disk now; without, none.
pub(super) fn reloaded(
    reload: bool,
    store: &dyn crate::store::Store,
    id: &str,
    catalog: &CatalogArgs,
) -> Result<Option<std::sync::Arc<crate::plan::Plan>>, u8> {
    if reload { pipeline_on_disk(store, id, catalog).map(Some) } else { Ok(None) }
}

/// The pipeline of run `id` as it is on disk now: the file it started from, else its
/// deployment type in --pipelines or the built-in catalog. Problems are printed.
pub(super) fn pipeline_on_disk(
    store: &dyn crate::store::Store,
    id: &str,
    catalog: &CatalogArgs,
) -> Result<std::sync::Arc<crate::plan::Plan>, u8> {
    let db = store.path().to_path_buf();
    let row = match store.run(id) {
        Ok(Some(row)) => row,
        Ok(None) => return Err(usage_error(format!("no run `{id}` in `{}`", crate::store::shown(&db)), None)),
        Err(e) => return Err(store_error(&e, &db)),
    };
    let name = match store.snapshot(row.snapshot_id) {
        Ok((_, _, files)) => name_on_disk(&row, &files),
        Err(e) => return Err(store_error(&e, &db)),
    };
    match crate::cli::load::load(&name, catalog) {
        Ok(plan) => Ok(plan),
        Err(crate::cli::load::LoadError::Invalid) => Err(usage_error(
            format!("the pipeline `{name}` is invalid; run `{id}` is unchanged"),
            Some("fix the problems above, then `--reload` again"),
        )),
        Err(crate::cli::load::LoadError::Usage(message, help)) => Err(usage_error(message, help.as_deref())),
    }
}

/// What `--reload` loads for a run: the file it started from if it is still there,
/// else its deployment type by name.
fn name_on_disk(row: &crate::store::RunRow, files: &serde_json::Value) -> String {
    let root = files[engine::snapshot::ROOT]["path"].as_str().unwrap_or_default();
    if Path::new(root).is_file() { root.to_string() } else { row.pipeline.clone() }
}

/// Whether the pipeline `--reload` would take for run `row` (its files and its
/// sub-pipelines') differs from the snapshot the run runs; `None` when that cannot be
/// told (the snapshot is unreadable, or the pipeline is gone or does not compile now).
pub(super) fn changed_since_started(
    store: &dyn crate::store::Store,
    row: &crate::store::RunRow,
    catalog: &CatalogArgs,
) -> Option<bool> {
    let (_, hash, files) = store.snapshot(row.snapshot_id).ok()?;
    let now = crate::cli::load::load_quietly(&name_on_disk(row, &files), catalog)?;
    Some(engine::snapshot::Snapshot::of(&now).hash != hash)
}

/// Whether the root file of a run differs from what is on disk now.
fn changed_on_disk(info: &engine::ResumeInfo, pipelines: &Path) -> bool {
    let path = Path::new(&info.plan.source.name);
    let current = std::fs::read_to_string(path)
        .ok()
        .or_else(|| std::fs::read_to_string(pipelines.join(format!("{}.yaml", info.plan.name))).ok());
    current.is_some_and(|text| text != info.plan.source.text)
}

/// `phased rollback TARGET [--to RUN]`: a new run of the release's `rollback:` pipeline,
/// with phases and progress like any run.
pub(super) fn rollback(args: RollbackArgs) -> u8 {
    use crate::engine::releases::{RollbackError, prepare};
    let store = match open_store(&args.exec.store) {
        Ok(store) => store,
        Err(code) => return code,
    };
    // `--to` names a release as every command names a run: a unique start of its id, or
    // `@last`. What names no run at all is left to `prepare`: "not a release of TARGET".
    let to = match &args.to {
        Some(given) if store.ids_starting_with(given, 1).is_ok_and(|found| found.is_empty()) && !is_last(given) => {
            Some(given.clone())
        }
        Some(given) => match crate::cli::store::resolve_run(store.as_ref(), given, &args.exec.store.db) {
            Ok(id) => Some(id),
            Err(code) => return code,
        },
        None => None,
    };
    let prepared = match prepare(store.as_ref(), &args.target, to.as_deref()).and_then(|prepared| {
        crate::seam::block_on(crate::engine::releases::check_image(&prepared))?;
        Ok(prepared)
    }) {
        Ok(prepared) => prepared,
        Err(RollbackError::Store(e)) => return store_error(&e, &args.exec.store.db),
        Err(e @ (RollbackError::Gone { .. } | RollbackError::ImageGone { .. })) => {
            err_line(format_args!("error: {e}"));
            err_line(format_args!(
                "  help: `phased releases {}` lists the releases; a release's folder or image is kept while it is one of the newest `keep`",
                args.target
            ));
            return exit::FAILED;
        }
        Err(e) => {
            err_line(format_args!("error: {e}"));
            err_line(format_args!("  help: `phased releases {}` lists the releases", args.target));
            return exit::FAILED;
        }
    };
    let Some(resolved) = crate::cli::load::resolve_inputs(&prepared.plan, &prepared.inputs) else {
        return usage_error(
            format!("release `{}` does not give its rollback pipeline the inputs it needs", prepared.release),
            None,
        );
    };
    note_line(format_args!("rolling `{}` back to release {}", args.target, prepared.release));
    let mut reporter = reporter(&args.exec);
    let options = args.exec.options(reporter.as_mut());
    let actor =
        crate::actor::Actor::Rollback { of: prepared.release.clone(), by: Box::new(crate::actor::Actor::cli()) };
    match crate::seam::block_on(engine::start(store, prepared.plan, resolved, (args.id, &actor), options)) {
        Ok((id, outcome)) => {
            drop(reporter);
            conclude(&args.exec, &id, outcome);
            exit_code(outcome)
        }
        Err(e) => engine_error(e, &args.exec.store.db),
    }
}
