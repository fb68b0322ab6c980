//! `phased stats [PIPELINE] [--since 30d]`: per phase and node, how many runs, p50/p95
//! durations and success rates; the nodes that fail most, with their most frequent error.

use std::time::{Duration, SystemTime};

use crate::cli::store::{open_existing, store_error};
use crate::cli::{OutputFormat, StoreArgs, exit, usage_error};
use crate::reporter::out_line;

#[derive(clap::Args, Debug)]
pub(super) struct StatsArgs {
    /// A deployment type (default: every pipeline).
    pipeline: Option<String>,
    /// Runs that finished within this long (`30d`, `2w`, `12h`).
    #[arg(long, value_name = "AGE", default_value = "30d", value_parser = crate::duration::parse_age)]
    since: Duration,
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    #[command(flatten)]
    store: StoreArgs,
}

/// A duration as people read it: milliseconds below a second, then seconds, then
/// minutes (`340 ms`, `2.4 s`, `3m 05s`).
fn duration(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round();
    if ms < 1000.0 {
        format!("{ms} ms")
    } else if seconds < 59.95 {
        format!("{seconds:.1} s")
    } else {
        let whole = seconds.round() as u64;
        format!("{}m {:02}s", whole / 60, whole % 60)
    }
}

/// The table's rows: `(label, stats)`, or a section title alone.
type Row<'a> = (String, Option<&'a serde_json::Value>);

fn table(rows: &[Row<'_>]) {
    let width = rows.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0);
    out_line(format_args!("{:<width$}  {:>6}  {:>9}  {:>9}  {:>7}", "", "RUNS", "P50", "P95", "SUCCESS"));
    for (label, v) in rows {
        let Some(v) = v else {
            out_line(format_args!("{label}"));
            continue;
        };
        out_line(format_args!(
            "{label:<width$}  {:>6}  {:>9}  {:>9}  {:>7}",
            v["runs"].as_u64().unwrap_or(0),
            duration(v["p50_seconds"].as_f64().unwrap_or(0.0)),
            duration(v["p95_seconds"].as_f64().unwrap_or(0.0)),
            format!("{:.1}%", v["success_rate"].as_f64().unwrap_or(0.0) * 100.0),
        ));
    }
}

/// `Err(exit code)` when no run of `pipeline` was ever recorded: likely a typo.
fn check_known(store: &dyn crate::store::Store, pipeline: &str, db: &std::path::Path) -> Result<(), u8> {
    let runs = store.runs().map_err(|e| store_error(&e, db))?;
    if runs.iter().any(|r| r.pipeline == pipeline) {
        return Ok(());
    }
    let mut names: Vec<&str> = runs.iter().map(|r| r.pipeline.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let help = match crate::suggest::closest(pipeline, names.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None if names.is_empty() => "no run is recorded in this database yet".to_string(),
        None => format!("pipelines with runs: {}", crate::suggest::list(&names)),
    };
    Err(usage_error(format!("no run of pipeline `{pipeline}` in `{}`", crate::store::shown(db)), Some(&help)))
}

pub(super) fn stats(args: StatsArgs) -> u8 {
    let store = match open_existing(&args.store) {
        Ok(Some(store)) => store,
        Ok(None) => return usage_error(format!("no database at `{}`", crate::store::shown(&args.store.db)), None),
        Err(code) => return code,
    };
    if let Some(pipeline) = &args.pipeline
        && let Err(code) = check_known(store.as_ref(), pipeline, &args.store.db)
    {
        return code;
    }
    let since = SystemTime::now() - args.since;
    let stats = match crate::read::stats::stats(store.as_ref(), args.pipeline.as_deref(), since) {
        Ok(stats) => stats,
        Err(e) => return store_error(&e, &args.store.db),
    };
    if args.format == OutputFormat::Json {
        out_line(format_args!("{}", serde_json::to_string_pretty(&stats).expect("JSON")));
        return exit::OK;
    }
    let what = args.pipeline.as_deref().unwrap_or("every pipeline");
    if stats["runs"]["runs"] == 0 {
        out_line(format_args!("{what}: no run finished since {}", stats["since"].as_str().unwrap_or("")));
        return exit::OK;
    }
    out_line(format_args!("{what}, runs finished since {}", stats["since"].as_str().unwrap_or("")));
    let mut rows: Vec<Row<'_>> = vec![("whole runs".to_string(), Some(&stats["runs"]))];
    for (section, key, name) in [("phases", "phases", "phase"), ("nodes", "nodes", "node")] {
        rows.push((section.to_string(), None));
        for v in stats[key].as_array().into_iter().flatten() {
            rows.push((format!("  {}", v[name].as_str().unwrap_or("?")), Some(v)));
        }
    }
    table(&rows);
    let failing = stats["failing"].as_array().cloned().unwrap_or_default();
    if !failing.is_empty() {
        let width = rows.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0);
        out_line(format_args!("failing most"));
        for f in &failing {
            let node = format!("  {}", f["node"].as_str().unwrap_or("?"));
            out_line(format_args!(
                "{node:<width$}  {} of {} runs; most often ({}x): {}",
                f["failures"],
                f["runs"],
                f["times"],
                f["most_frequent_error"].as_str().unwrap_or("")
            ));
        }
    }
    exit::OK
}
