//! `phased run`, `phased resume`: start or continue runs, with live output.

use std::path::{Path, PathBuf};

use crate::app::{Ended, Start, block_on, runs};
use crate::cli::failed::print_diagnostics;
use crate::cli::load::{Loaded, load_with_inputs, pipelines};
use crate::cli::store::{data_dir, db, is_last, open_run, open_store};
use crate::cli::{CatalogArgs, StoreArgs, exit, failed};
use crate::engine::{self, Options, Outcome};
use crate::event::Reporter;
use crate::reporter::{Bar, JsonLines, Lines, Silent, err_line, note_line, out_line};
use crate::secrets::Secrets;

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

/// After a run: what of its notifications was not delivered (one quick attempt each:
/// the retries, after the backoff recorded in the outbox, are `phased notify`'s and
/// `phased serve`'s), then a closing line for people (stderr), or the status as JSON.
fn conclude(format: RunFormat, ended: &Ended) {
    use crate::notify::{RETRIED_BY_NOTIFY, undelivered_line};
    for n in &ended.undelivered {
        err_line(format_args!("warning: {}", undelivered_line(n, RETRIED_BY_NOTIFY)));
    }
    let (id, outcome) = (&ended.id, ended.outcome);
    if outcome == Outcome::FailedEnvironment {
        // Whatever the format, an environment problem is said on stderr: scripts that
        // read stdout as JSON still show people why the command exited with 3.
        if let Some(error) = ended.error() {
            err_line(format_args!("error: {error}"));
        }
    }
    if format == RunFormat::Human && crate::reporter::quiet() {
        // `-q` shows no progress: what went wrong is all it says (the error names the node).
        match outcome {
            Outcome::Failed if let Some(error) = ended.error() => {
                err_line(format_args!("error: deployment {id} FAILED: {error}"));
                return;
            }
            Outcome::FailedEnvironment if ended.error().is_some() => return,
            _ => {}
        }
    }
    if format == RunFormat::Json {
        if let Some(status) = ended.detail() {
            out_line(format_args!("{}", serde_json::to_string_pretty(status).expect("JSON of plain data")));
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

/// What a run that ended says, and its exit code; or why it did not run.
fn finish(exec: &ExecArgs, reporter: Box<dyn Reporter>, ended: Result<Ended, crate::app::Error>) -> u8 {
    drop(reporter);
    match ended {
        Ok(ended) => {
            conclude(exec.format, &ended);
            exit_code(ended.outcome)
        }
        Err(e) => failed(e, &exec.store.db),
    }
}

pub(super) fn run(args: RunArgs) -> u8 {
    let Loaded { plan, resolved, .. } =
        match load_with_inputs(&args.pipeline, &args.catalog, args.inputs.as_deref(), &args.input) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        };
    let mut reporter = reporter(&args.exec);
    let options = args.exec.options(reporter.as_mut());
    let who = Start { id: args.id, actor: crate::actor::Actor::cli() };
    let guard = args.exec.notify.guard();
    let db = db(&args.exec.store);
    let started = runs::start(&db, (plan, resolved), who, options, Some(&guard));
    let ended = block_on(started);
    finish(&args.exec, reporter, ended)
}

pub(super) fn resume(args: ResumeArgs) -> u8 {
    let ids: Vec<String> = if args.all {
        let mut store = match open_store(&args.exec.store) {
            Ok(store) => store,
            Err(code) => return code,
        };
        match runs::interrupted(store.as_mut()) {
            Ok(ids) => ids,
            Err(e) => return failed(e, &args.exec.store.db),
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
        let reload = match reloaded(args.reload, &args.exec.store, &id, &args.catalog) {
            Ok(reload) => reload,
            Err(code) => return code,
        };
        let mut reporter = reporter(&args.exec);
        let options = args.exec.options(reporter.as_mut());
        let human = args.exec.format == RunFormat::Human;
        let pipelines = args.catalog.pipelines.clone();
        let note = move |info: &engine::ResumeInfo| {
            if human {
                say_resumed(info, &pipelines);
            }
        };
        let guard = args.exec.notify.guard();
        let db = db(&args.exec.store);
        let resumed = runs::resume(&db, (&id, args.from.as_deref()), reload, options, note, Some(&guard));
        let ended = block_on(resumed);
        worst = worst.max(finish(&args.exec, reporter, ended));
    }
    worst
}

/// What a resume found before it ran: processes left by the previous attempt, and how
/// the pipeline changed (reloaded, or changed on disk and not reloaded).
fn say_resumed(info: &engine::ResumeInfo, pipelines: &Path) {
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
        None if changed_on_disk(info, pipelines) => note_line(format_args!(
            "note: `{}` changed since run {} started; resuming with the pipeline it started with \
             (`--reload` takes it as it is now)",
            info.plan.source.name, info.id
        )),
        None => {}
    }
}

/// With `--reload`, the pipeline of run `id` as it is on disk now (its warnings said);
/// without, none. Problems are printed.
pub(super) fn reloaded(
    reload: bool,
    store: &StoreArgs,
    id: &str,
    catalog: &CatalogArgs,
) -> Result<Option<std::sync::Arc<crate::plan::Plan>>, u8> {
    if !reload {
        return Ok(None);
    }
    let store = open_store(store)?;
    match runs::pipeline_on_disk(store.as_ref(), id, &pipelines(catalog)) {
        Ok(loaded) => {
            print_diagnostics(&loaded.warnings);
            Ok(Some(loaded.plan))
        }
        Err(e) => Err(failed(e, store.path())),
    }
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
    let store = match open_store(&args.exec.store) {
        Ok(store) => store,
        Err(code) => return code,
    };
    // `--to` names a release as every command names a run: a unique start of its id, or
    // `@last`. What names no run at all is left to the rollback: "not a release of TARGET".
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
    drop(store);
    let mut reporter = reporter(&args.exec);
    let options = args.exec.options(reporter.as_mut());
    let target = args.target.as_str();
    let say = |release: &str| note_line(format_args!("rolling `{target}` back to release {release}"));
    let guard = args.exec.notify.guard();
    let what = (target, to.as_deref(), args.id.clone());
    let db = db(&args.exec.store);
    let started = crate::app::rollback::start(&db, what, crate::actor::Actor::cli(), options, say, Some(&guard));
    let ended = block_on(started);
    finish(&args.exec, reporter, ended)
}
