//! `phased logs RUN [NODE] [-f]`: what a run's steps printed (masked, as recorded in
//! `<database folder>/logs/<run>/<node>.log`). Without NODE, every node's lines, each
//! prefixed with its node, nodes in the order they started; `-f` follows until the run
//! ends. Terminal control sequences a step printed are removed (`terminal`).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::store::{data_dir, open_run};
use crate::cli::terminal::clean;
use crate::cli::{StoreArgs, exit, usage_error};
use crate::reporter::out_line;
use crate::store::{RunStatus, Store};

#[derive(clap::Args, Debug)]
pub(super) struct LogsArgs {
    /// The run (its id, any unique start of it, or `@last`).
    #[arg(add = crate::cli::complete::run_ids())]
    run: String,
    /// One node's log (qualified: `source.clone`; an undo step is `<node>.undo`).
    node: Option<String>,
    /// Keep printing what the steps print until the run ends.
    #[arg(short, long)]
    follow: bool,
    /// `jsonl`: one JSON object per line, `{"node": ..., "line": ...}`.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    format: LogFormat,
    #[command(flatten)]
    color: crate::cli::terminal::ColorArg,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// The lines, prefixed with their node when every node is shown.
    Human,
    /// One JSON object per line.
    Jsonl,
}

/// How often a followed log is looked at.
const POLL: Duration = Duration::from_millis(100);

pub(super) fn logs(args: LogsArgs) -> u8 {
    let (store, run) = match open_run(&args.store, &args.run) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let folder = data_dir(&args.store.db).join("logs").join(&run);
    if let Some(node) = &args.node
        && !folder.join(format!("{node}.log")).exists()
        && !args.follow
    {
        return missing_node(store.as_ref(), &run, node);
    }
    let colors = args.color.colors();
    let mut readers: BTreeMap<String, Reader> = BTreeMap::new();
    let mut printed = false;
    loop {
        // Read the status first: what was written before the run ended is then read below.
        let ended =
            !matches!(store.run(&run), Ok(Some(row)) if matches!(row.status, RunStatus::Running | RunStatus::Queued));
        for node in nodes_with_logs(store.as_ref(), &run, &folder, args.node.as_deref()) {
            let reader = readers.entry(node.clone()).or_insert_with(|| Reader::new(folder.join(format!("{node}.log"))));
            for line in reader.new_lines(ended) {
                printed = true;
                match (&args.format, &args.node) {
                    (LogFormat::Jsonl, _) => {
                        out_line(format_args!("{}", serde_json::json!({"node": node, "line": line})));
                    }
                    (LogFormat::Human, Some(_)) => out_line(format_args!("{}", clean(&line, colors))),
                    (LogFormat::Human, None) => out_line(format_args!("{node} | {}", clean(&line, colors))),
                }
            }
        }
        if !args.follow || ended {
            if !printed && args.format == LogFormat::Human {
                crate::reporter::note_line(format_args!("(the steps of run `{run}` printed nothing)"));
            }
            return exit::OK;
        }
        std::thread::sleep(POLL);
    }
}

/// The nodes whose logs to show: one, or every node that has a log, in the order the
/// nodes started (undo steps and others after them, by name).
fn nodes_with_logs(store: &dyn Store, run: &str, folder: &Path, only: Option<&str>) -> Vec<String> {
    if let Some(node) = only {
        return vec![node.to_string()];
    }
    let mut logged: Vec<String> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log").map(str::to_string))
        .collect();
    logged.sort();
    let started: Vec<String> =
        store.nodes(run).map(|rows| rows.into_iter().map(|r| r.node).collect()).unwrap_or_default();
    let mut ordered: Vec<String> = started.into_iter().filter(|n| logged.contains(n)).collect();
    let rest: Vec<String> = logged.into_iter().filter(|n| !ordered.contains(n)).collect();
    ordered.extend(rest);
    ordered
}

fn missing_node(store: &dyn Store, run: &str, node: &str) -> u8 {
    let known: Vec<String> =
        store.nodes(run).map(|rows| rows.into_iter().map(|r| r.node).collect()).unwrap_or_default();
    if known.iter().any(|n| n == node) {
        out_line(format_args!("(node `{node}` of run `{run}` printed nothing)"));
        return exit::OK;
    }
    let hint = crate::suggest::hint(node, known.iter().map(String::as_str));
    usage_error(format!("run `{run}` has no node `{node}`"), hint.as_deref())
}

/// Reads a growing file line by line, from where it stopped.
struct Reader {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl Reader {
    fn new(path: PathBuf) -> Self {
        Reader { path, offset: 0, partial: String::new() }
    }

    /// The whole lines written since the last call; at the end, an unfinished last one too.
    fn new_lines(&mut self, at_end: bool) -> Vec<String> {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.path)
            && file.seek(SeekFrom::Start(self.offset)).is_ok()
            && let Ok(read) = file.read_to_string(&mut text)
        {
            self.offset += read as u64;
        }
        self.partial.push_str(&text);
        let mut lines: Vec<String> = Vec::new();
        while let Some(at) = self.partial.find('\n') {
            lines.push(self.partial[..at].to_string());
            self.partial.drain(..=at);
        }
        if at_end && !self.partial.is_empty() {
            lines.push(std::mem::take(&mut self.partial));
        }
        lines
    }
}
