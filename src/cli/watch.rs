//! `phased watch PIPELINE --path DIR ...`: deploy, then redeploy after every burst of
//! changes, until Ctrl-C (which leaves every run resumable).

use super::parse_duration;
use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::cli::load::{Loaded, load, load_with_inputs, resolve_inputs};
use crate::cli::run::{ExecArgs, RunFormat};
use crate::cli::store::open_store;
use crate::cli::{CatalogArgs, exit, usage_error};
use crate::engine::{Options, Outcome};
use crate::event::{Event, Reporter};
use crate::paths::normalize;
use crate::plan::Plan;
use crate::reporter::{JsonLines, Lines};
use crate::reporter::{err_line, note_line};
use crate::secrets::Secrets;
use crate::watch::{Debouncer, Ignorer, describe};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OnChange {
    /// Stop the running deploy at the next safe point (between nodes), then deploy again.
    Cancel,
    /// Let the running deploy finish, then deploy once more.
    Queue,
}

#[derive(clap::Args, Debug)]
pub(super) struct WatchArgs {
    /// A pipeline file, or a deployment-type name (looked up in --pipelines, then built in).
    #[arg(add = crate::cli::complete::pipelines())]
    pipeline: String,
    /// A folder (or file) to watch; repeat for several.
    #[arg(long = "path", value_name = "DIR", required = true)]
    paths: Vec<PathBuf>,
    /// An input, `key=value` (the value is read as YAML); `a.b=c` nests.
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    input: Vec<String>,
    /// A YAML file of inputs (`-i` values override it).
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
    /// How long nothing must change before a redeploy starts (one quiet period for the whole tree).
    #[arg(long, value_name = "DURATION", default_value = "300ms", value_parser = parse_duration)]
    debounce: Duration,
    /// Paths to ignore, as globs relative to the watched folder (`dist/**`, `*.tmp`); repeat for several.
    #[arg(long = "ignore", value_name = "GLOB")]
    ignore: Vec<String>,
    /// What a change does while a deploy runs.
    #[arg(long, value_enum, default_value_t = OnChange::Cancel)]
    on_change: OnChange,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    catalog: CatalogArgs,
}

/// Passes events on, and notes the paths that starting nodes declare they write.
struct Noting {
    inner: Box<dyn Reporter>,
    writes: Arc<Mutex<Vec<PathBuf>>>,
}

impl Reporter for Noting {
    fn event(&mut self, event: &Event) {
        if !event.writes().is_empty() {
            self.writes.lock().expect("writes lock").extend(event.writes().iter().cloned());
        }
        self.inner.event(event);
    }

    fn finish(&mut self) {
        self.inner.finish();
    }

    fn output(&self) -> Option<crate::event::OutputSink> {
        self.inner.output()
    }
}

type RunFuture = Pin<Box<dyn Future<Output = Result<crate::app::Ended, crate::app::Error>>>>;

struct Running {
    id: String,
    stop: tokio::sync::watch::Sender<bool>,
    future: RunFuture,
}

fn say(message: impl std::fmt::Display) {
    note_line(format_args!("watch: {message}"));
}

pub(super) fn watch(args: WatchArgs) -> u8 {
    let Loaded { plan, given, resolved } =
        match load_with_inputs(&args.pipeline, &args.catalog, args.inputs.as_deref(), &args.input) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        };
    let roots = match roots_of(&args.paths) {
        Ok(roots) => roots,
        Err(code) => return code,
    };
    if let Err(code) = open_store(&args.exec.store) {
        return code;
    }
    // The database's own files (and its logs and work folders) are not deploy input,
    // even when the database sits inside a watched folder; the rest of its folder is.
    let pipeline_files = pipeline_files_of(&plan);
    let ignorer = match Ignorer::new(&roots, &args.ignore, crate::cli::store::own_paths(&args.exec.store.db)) {
        Ok(ignorer) => ignorer,
        Err(e) => return usage_error(e, None),
    };
    crate::app::block_on(async move {
        let (fs_tx, mut fs_rx) = tokio::sync::mpsc::unbounded_channel::<notify::Result<notify::Event>>();
        let watcher = match watcher_of(&roots, fs_tx) {
            Ok(watcher) => watcher,
            Err(code) => return code,
        };
        let debouncer = Debouncer::new(args.debounce);
        let mut session = Session {
            args,
            given,
            roots,
            plan,
            resolved,
            watcher,
            pipeline_files,
            pipeline_dirs: BTreeSet::new(),
            ignorer,
            writes: Arc::new(Mutex::new(Vec::new())),
            debouncer,
            pipeline_changed: false,
            queued: None,
            running: None,
        };
        // Editors replace files by renaming: watch the folders of the pipeline's files
        // (its own and its sub-pipelines'), not the files.
        session.watch_pipeline_folders();
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).expect("SIGINT handler installs");
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");

        let mut stopping = false;
        let watched = session.roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ");
        let quiet = crate::duration::Duration(session.args.debounce);
        say(format!("watching {watched} (quiet period {quiet}); Ctrl-C to stop"));
        session.start("first deploy");

        loop {
            let deadline = session.debouncer.deadline();
            tokio::select! {
                _ = interrupt.recv() => stopping = true,
                _ = terminate.recv() => stopping = true,
                Some(event) = fs_rx.recv() => session.on_event(event),
                _ = sleep_until(deadline), if deadline.is_some() => session.on_quiet(),
                result = async { session.running.as_mut().expect("guarded by the condition").future.as_mut().await }, if session.running.is_some() => {
                    session.on_run_end(result);
                    if stopping {
                        return exit::INTERRUPTED;
                    }
                    session.start_queued();
                }
            }
            if stopping && session.running.is_none() {
                return exit::INTERRUPTED;
            }
        }
    })
}

/// The folders (or files) to watch, normalized; a usage error when one does not exist.
fn roots_of(paths: &[PathBuf]) -> Result<Vec<PathBuf>, u8> {
    let mut roots = Vec::new();
    for path in paths {
        if !path.exists() {
            return Err(usage_error(
                format!("`{}` does not exist", path.display()),
                Some("give folders to watch with --path"),
            ));
        }
        roots.push(normalize(path));
    }
    Ok(roots)
}

/// A watcher sending every event of the roots (recursively) to `fs_tx`.
fn watcher_of(
    roots: &[PathBuf],
    fs_tx: tokio::sync::mpsc::UnboundedSender<notify::Result<notify::Event>>,
) -> Result<notify::RecommendedWatcher, u8> {
    let mut watcher = match notify::recommended_watcher(move |event| {
        let _ = fs_tx.send(event);
    }) {
        Ok(w) => w,
        Err(e) => {
            err_line(format_args!("error: cannot watch files: {e}"));
            return Err(exit::ENVIRONMENT);
        }
    };
    use notify::Watcher;
    for root in roots {
        if let Err(e) = watcher.watch(root, notify::RecursiveMode::Recursive) {
            err_line(format_args!("error: cannot watch `{}`: {e}", root.display()));
            return Err(exit::ENVIRONMENT);
        }
    }
    Ok(watcher)
}

/// What the watch loop keeps between events: the pipeline (the last good version),
/// what is watched and ignored, the changes waiting for a quiet period, and the run.
struct Session {
    args: WatchArgs,
    given: Map<String, Value>,
    roots: Vec<PathBuf>,
    plan: Arc<Plan>,
    resolved: Map<String, Value>,
    watcher: notify::RecommendedWatcher,
    pipeline_files: BTreeSet<PathBuf>,
    pipeline_dirs: BTreeSet<PathBuf>,
    ignorer: Ignorer,
    /// The paths that starting nodes declare they write.
    writes: Arc<Mutex<Vec<PathBuf>>>,
    debouncer: Debouncer,
    pipeline_changed: bool,
    /// Changes seen during a run, deployed once it ends.
    queued: Option<BTreeSet<PathBuf>>,
    running: Option<Running>,
}

impl Session {
    fn watch_pipeline_folders(&mut self) {
        watch_folders_of(&mut self.watcher, &self.pipeline_files, &mut self.pipeline_dirs);
    }

    fn start(&mut self, why: &str) {
        self.running = Some(start_run(&self.args, &self.plan, &self.resolved, &self.writes, why));
    }

    /// The paths nodes declared they write are ignored from now on.
    fn ignore_declared_writes(&mut self) {
        for declared in self.writes.lock().expect("writes lock").drain(..) {
            self.ignorer.add_prefix(&declared);
        }
    }

    /// A file event: its paths that are deploy input (or pipeline files) wait for a
    /// quiet period.
    fn on_event(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                say(format!("file watcher error: {e}"));
                return;
            }
        };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        self.ignore_declared_writes();
        for path in event.paths {
            let path = normalize(&path);
            if self.pipeline_files.contains(&path) {
                self.pipeline_changed = true;
                self.debouncer.add(path, Instant::now());
            } else if self.roots.iter().any(|r| path.starts_with(r)) && !self.ignorer.is_ignored(&path) {
                self.debouncer.add(path, Instant::now());
            }
        }
    }

    /// The quiet period after a burst of changes has passed: reload the pipeline if it
    /// changed, then deploy (or stop or queue behind the running deploy).
    fn on_quiet(&mut self) {
        let Some(mut changed) = self.debouncer.take_if_quiet(Instant::now()) else { return };
        // A step's own writes are declared in its `node_started` event, which
        // may be reported after the step began to write (the event is
        // reported once stored): they are ignored again here, a quiet
        // period later.
        self.ignore_declared_writes();
        changed.retain(|path| self.pipeline_files.contains(path) || !self.ignorer.is_ignored(path));
        if self.pipeline_changed {
            self.pipeline_changed = false;
            self.reload_pipeline(&mut changed);
        }
        if changed.is_empty() {
            return;
        }
        match &self.running {
            None => {
                let why = format!("{} changed", describe(&changed, &self.roots));
                self.start(&why);
            }
            Some(run) => {
                self.queued.get_or_insert_with(BTreeSet::new).extend(changed);
                if self.args.on_change == OnChange::Cancel {
                    say(format!("changes during run {}: stopping it at the next safe point", run.id));
                    let _ = run.stop.send(true);
                } else {
                    say(format!("changes during run {}: one more deploy after it", run.id));
                }
            }
        }
    }

    /// The pipeline's files changed: use the new version if it is valid (its edited
    /// files then count as changes), else keep the last good one.
    fn reload_pipeline(&mut self, changed: &mut BTreeSet<PathBuf>) {
        let edited: Vec<PathBuf> = changed.iter().filter(|p| self.pipeline_files.contains(*p)).cloned().collect();
        for file in &edited {
            changed.remove(file);
        }
        match reload(&self.args, &self.given) {
            Some((new_plan, new_inputs)) => {
                say("the pipeline changed and is valid; using the new version");
                self.plan = new_plan;
                self.resolved = new_inputs;
                // A sub-pipeline may have been added: watch its folder too.
                self.pipeline_files = pipeline_files_of(&self.plan);
                self.watch_pipeline_folders();
                changed.extend(edited);
            }
            None => {
                say("the pipeline changed but is invalid (see above); keeping the last good version");
            }
        }
    }

    /// The run ended: say how, and send its notifications.
    fn on_run_end(&mut self, result: Result<crate::app::Ended, crate::app::Error>) {
        let run = self.running.take().expect("a run was running");
        match result {
            Ok(crate::app::Ended { id, outcome, .. }) => {
                say(format!(
                    "run {id}: {}",
                    match outcome {
                        Outcome::Succeeded => "ACTIVE",
                        Outcome::Failed | Outcome::FailedEnvironment =>
                            "FAILED (fix the cause; the next change deploys again)",
                        Outcome::Interrupted => "interrupted",
                        Outcome::Cancelled => "superseded by newer changes",
                    }
                ));
                send_notifications(&self.args.exec, id);
            }
            Err(e) => say(format!("run {}: {e}", run.id)),
        }
    }

    /// Deploys the changes seen during the run that ended, if any.
    fn start_queued(&mut self) {
        if let Some(changed) = self.queued.take() {
            let why = format!("{} changed", describe(&changed, &self.roots));
            self.start(&why);
        }
    }
}

/// The files a plan was compiled from that are on disk: its own and its sub-pipelines'
/// (built-in ones are not files).
fn pipeline_files_of(plan: &Plan) -> BTreeSet<PathBuf> {
    crate::engine::snapshot::Snapshot::files_of(plan)
        .values()
        .map(|source| Path::new(&source.name))
        .filter(|path| path.is_file())
        .map(normalize)
        .collect()
}

fn watch_folders_of(watcher: &mut impl notify::Watcher, files: &BTreeSet<PathBuf>, watched: &mut BTreeSet<PathBuf>) {
    for dir in files.iter().filter_map(|f| f.parent()) {
        if watched.insert(dir.to_path_buf()) {
            let _ = watcher.watch(dir, notify::RecursiveMode::NonRecursive);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

fn reload(args: &WatchArgs, given: &Map<String, Value>) -> Option<(Arc<Plan>, Map<String, Value>)> {
    let plan = load(&args.pipeline, &args.catalog).ok()?;
    let resolved = resolve_inputs(&plan, given).ok()?;
    Some((plan, resolved))
}

fn start_run(
    args: &WatchArgs,
    plan: &Arc<Plan>,
    inputs: &Map<String, Value>,
    writes: &Arc<Mutex<Vec<PathBuf>>>,
    why: &str,
) -> Running {
    let id = uuid::Uuid::new_v4().to_string();
    say(format!("{why}: deploying (run {id})"));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let halt = crate::engine::Halt {
        drain: stop_rx,
        status: crate::store::RunStatus::Cancelled,
        reason: "superseded by newer changes".into(),
        now: None,
        ignore_signals: false,
    };
    let inner: Box<dyn Reporter> = match args.exec.format {
        RunFormat::Jsonl => Box::new(JsonLines),
        _ if crate::reporter::quiet() => Box::new(crate::reporter::Silent),
        _ => Box::new(Lines { show_output: args.exec.show_output() }),
    };
    let store_args = args.exec.store.clone();
    let plan = Arc::clone(plan);
    let inputs = inputs.clone();
    let writes = Arc::clone(writes);
    let parallel = usize::from(args.exec.parallel.parallel);
    let run_id = id.clone();
    let future: RunFuture = Box::pin(async move {
        let mut reporter = Noting { inner, writes };
        let data_dir = crate::cli::store::data_dir(&store_args.db);
        let options =
            Options { parallel, secrets: Secrets::from_env(), reporter: &mut reporter, data_dir, stop: Some(halt) };
        let who = crate::app::Start { id: Some(run_id), actor: crate::actor::Actor::watch() };
        crate::app::runs::start(&crate::cli::store::db(&store_args), (plan, inputs), who, options, None).await
    });
    Running { id, stop, future }
}

/// Sends a finished run's notifications beside the watch loop (retried for a while;
/// what is left is sent by the next phased process), then says what was not
/// delivered: watching goes on meanwhile.
fn send_notifications(exec: &super::run::ExecArgs, id: String) {
    use crate::notify::{RETRIED_BY_NOTIFY, undelivered_line};
    let (db, guard) = (crate::cli::store::db(&exec.store), exec.notify.guard());
    // On a thread of its own: its store calls may block it (`crate::seam`).
    std::thread::spawn(move || {
        crate::seam::block_on(async move {
            match crate::app::runs::notify_patiently(&db, &guard, &id).await {
                Some(Ok(rows)) => rows.iter().for_each(|n| {
                    crate::reporter::err_line(format_args!("warning: {}", undelivered_line(n, RETRIED_BY_NOTIFY)))
                }),
                Some(Err(e)) => tracing::warn!(run = %id, error = %e, "Could not send the run's notifications."),
                None => {}
            }
        })
    });
}
